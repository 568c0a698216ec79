"""Transactions with confluent-kafka (librdkafka): commit and abort seen through read_committed
and read_uncommitted consumers, zombie fencing, a producer killed inside its transaction until
the coordinator aborts it for its timeout, and a consume-transform-produce loop with
send_offsets_to_transaction (10,000 records; 100,000 with STRATA_SOAK=1)."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

import helpers as h
from conftest import die_with_parent, requires, strata_cli, wait_until
from test_metrics import get, sample

JS = Path(__file__).parent / "js"

SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": "3",
}


def create_topic(bootstrap: str, name: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)


def txn_producer(bootstrap: str, txn_id: str) -> Producer:
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5})
    p.init_transactions(30)
    return p


def read_all(bootstrap: str, topic: str, partitions: int, isolation: str, expect: int, timeout: float = 20) -> list[str]:
    """Every value of `topic` as a consumer with `isolation` sees it, reading until `expect`
    values arrived and then half a second more (so extra records would be caught)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[str] = []
    deadline = time.monotonic() + timeout
    settle = None
    while time.monotonic() < deadline:
        for m in c.consume(500, 0.2):
            if m.error() is None:
                got.append(m.value().decode())
        if len(got) >= expect:
            settle = settle or time.monotonic() + 0.5
            if time.monotonic() > settle:
                break
    c.close()
    return got


def test_commit_and_abort_are_seen_by_each_isolation_level(broker_factory):
    b = broker_factory(SETS)
    topic = "txn-ca"
    create_topic(b.bootstrap, topic, 2)
    p = txn_producer(b.bootstrap, "tx-commit-abort")
    batches = {"c1": True, "a1": False, "c2": True}
    for tag, commit in batches.items():
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value=f"{tag}-{i}".encode(), partition=i % 2)
        if commit:
            p.commit_transaction(30)
        else:
            p.flush(30)
            p.abort_transaction(30)
    committed = {f"{t}-{i}" for t, c in batches.items() if c for i in range(10)}
    everything = {f"{t}-{i}" for t in batches for i in range(10)}

    rc = read_all(b.bootstrap, topic, 2, "read_committed", len(committed))
    assert sorted(rc) == sorted(committed)
    ru = read_all(b.bootstrap, topic, 2, "read_uncommitted", len(everything))
    assert sorted(ru) == sorted(everything)


def test_a_second_producer_fences_the_first_and_aborts_its_transaction(broker_factory):
    b = broker_factory(SETS)
    topic = "txn-zombie"
    create_topic(b.bootstrap, topic, 1)
    zombie = txn_producer(b.bootstrap, "tx-zombie")
    zombie.begin_transaction()
    for i in range(5):
        zombie.produce(topic, value=f"zombie-{i}".encode(), partition=0)
    zombie.flush(30)

    # The new instance's init_transactions aborts the zombie's open transaction.
    fresh = txn_producer(b.bootstrap, "tx-zombie")
    fresh.begin_transaction()
    for i in range(5):
        fresh.produce(topic, value=f"fresh-{i}".encode(), partition=0)
    fresh.commit_transaction(30)

    with pytest.raises(KafkaException) as fenced:
        zombie.commit_transaction(10)
    err = fenced.value.args[0]
    assert err.fatal() or err.txn_requires_abort(), err
    assert "fenced" in err.str().lower() or "epoch" in err.str().lower(), err

    rc = read_all(b.bootstrap, topic, 1, "read_committed", 5)
    assert sorted(rc) == sorted(f"fresh-{i}" for i in range(5))
    # The zombie's records were written, and aborted: visible only to read_uncommitted.
    ru = read_all(b.bootstrap, topic, 1, "read_uncommitted", 10)
    assert sorted(ru) == sorted([f"fresh-{i}" for i in range(5)] + [f"zombie-{i}" for i in range(5)])


# Run in its own process so that it can be SIGKILLed mid-transaction: it opens a transaction,
# writes `n` records that are acknowledged, says "open" and waits to be killed.
KILLED_PRODUCER = """
import sys, time
from confluent_kafka import Producer
bootstrap, topic, txn_id, timeout_ms, n = sys.argv[1:6]
p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
              "transaction.timeout.ms": int(timeout_ms), "linger.ms": 5})
p.init_transactions(30)
p.begin_transaction()
for i in range(int(n)):
    p.produce(topic, value=f"killed-{i}".encode(), partition=0)
assert p.flush(30) == 0
print("open", flush=True)
time.sleep(600)
"""
KILLED_TXN_TIMEOUT_MS = 5000


def latest_offsets(admin: AdminClient, tp: TopicPartition) -> tuple[int, int]:
    """(last stable offset, high watermark): ListOffsets latest at READ_COMMITTED and at
    READ_UNCOMMITTED."""
    out = []
    for level in (IsolationLevel.READ_COMMITTED, IsolationLevel.READ_UNCOMMITTED):
        fs = admin.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level, request_timeout=10)
        out.append(fs[tp].result(10).offset)
    return out[0], out[1]


def poll_values(c: Consumer, until, timeout: float) -> list[tuple[int, str]]:
    """(offset, value) of the records `c` returns until `until(got, at_eof)` holds."""
    got: list[tuple[int, str]] = []
    at_eof = False
    deadline = time.monotonic() + timeout
    while not until(got, at_eof) and time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error() is not None:
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            at_eof = True
            continue
        at_eof = False
        got.append((m.offset(), m.value().decode()))
    return got


def test_a_killed_producers_transaction_holds_the_lso_until_its_timeout_aborts_it(broker_factory):
    # Timeouts are looked for at the transaction's deadline; the interval is only a backstop.
    b = broker_factory({**SETS, "transaction.abort.timed.out.transaction.cleanup.interval.ms": "500"})
    topic = "txn-killed"
    create_topic(b.bootstrap, topic, 1)
    tp = TopicPartition(topic, 0)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    plain = h.producer(b.bootstrap)
    for i in range(3):
        plain.produce(topic, value=f"before-{i}".encode(), partition=0)
    h.flush_all(plain)

    # One read_committed consumer follows the partition from the start to the end.
    rc = h.consumer(b.bootstrap, **{"isolation.level": "read_committed", "group.id": "rc-killed"})
    rc.assign([TopicPartition(topic, 0, 0)])
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_PRODUCER, b.bootstrap, topic, "tx-killed", str(KILLED_TXN_TIMEOUT_MS), "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,
    )
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)
        line = child.stdout.readline() if ready else ""
        exited = child.poll() is not None
        assert line == "open\n", f"the producer did not open its transaction: {line!r} {child.stderr.read() if exited else ''}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    opened = time.monotonic()
    assert child.returncode == -signal.SIGKILL

    # Offsets 0-2 committed, 3-7 in the open transaction, 8-10 written after it: read_committed
    # readers stop at 3 until the transaction ends.
    for i in range(3):
        plain.produce(topic, value=f"during-{i}".encode(), partition=0)
    h.flush_all(plain)
    assert latest_offsets(admin, tp) == (3, 11)
    text = get(b, "/metrics")[1]
    assert sample(text, "strata_log_open_transactions", f'{{topic="{topic}"}}') == 1
    assert sample(text, "strata_log_last_stable_offset_lag", f'{{topic="{topic}"}}') == 8
    held = poll_values(rc, lambda got, eof: eof and len(got) >= 3, 5)
    held += poll_values(rc, lambda got, eof: False, 0.5)
    assert held == [(i, f"before-{i}") for i in range(3)]
    # Still inside the transaction's timeout, so what was checked above was the held state.
    assert time.monotonic() - opened < KILLED_TXN_TIMEOUT_MS / 1000, "too slow to see the LSO held"

    # The coordinator aborts it for its timeout: one abort marker at 11, and the LSO reaches
    # the high watermark.
    wait_until(lambda: latest_offsets(admin, tp) == (12, 12), 20, "the timed-out transaction's abort")
    def aborted_counted():
        text = get(b, "/metrics")[1]
        return text if sample(text, "strata_txn_completed_total", '{result="abort"}') == 1 else None

    text = wait_until(aborted_counted, 10, "the abort to complete")
    assert sample(text, "strata_txn_timed_out_total") == 1
    assert sample(text, "strata_log_open_transactions", f'{{topic="{topic}"}}') == 0
    assert sample(text, "strata_log_last_stable_offset_lag", f'{{topic="{topic}"}}') == 0

    after = txn_producer(b.bootstrap, "tx-after")
    after.begin_transaction()
    for i in range(3):
        after.produce(topic, value=f"after-{i}".encode(), partition=0)
    after.commit_transaction(30)

    # The same consumer goes on past the aborted records to what came after them.
    released = poll_values(rc, lambda got, eof: len(got) >= 6, 15)
    released += poll_values(rc, lambda got, eof: False, 0.5)
    rc.close()
    assert released == [(8 + i, f"during-{i}") for i in range(3)] + [(12 + i, f"after-{i}") for i in range(3)]
    # The killed producer's records are there, aborted: only read_uncommitted returns them
    # (librdkafka reads read_committed unless told otherwise).
    ru = [(r.offset, r.value.decode()) for r in h.read_partitions(b.bootstrap, topic, [0], **{"isolation.level": "read_uncommitted"})]
    assert ru == (
        [(i, f"before-{i}") for i in range(3)]
        + [(3 + i, f"killed-{i}") for i in range(5)]
        + [(8 + i, f"during-{i}") for i in range(3)]
        + [(12 + i, f"after-{i}") for i in range(3)]
    )
    rc_again = [(r.offset, r.value.decode()) for r in h.read_partitions(b.bootstrap, topic, [0], **{"isolation.level": "read_committed"})]
    assert rc_again == held + released


def test_consume_transform_produce_is_exactly_once(broker_factory):
    n = 100_000 if os.environ.get("STRATA_SOAK") == "1" else 10_000
    b = broker_factory(SETS)
    src, dst, group = "ctp-in", "ctp-out", "ctp-group"
    create_topic(b.bootstrap, src, 2)
    create_topic(b.bootstrap, dst, 2)
    p = Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 20})
    for i in range(n):
        p.produce(src, value=str(i).encode(), partition=i % 2)
    assert p.flush(60) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": group,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([src])
    producer = txn_producer(b.bootstrap, "tx-ctp")
    done = 0
    aborted_once = False
    deadline = time.monotonic() + (600 if n > 10_000 else 60)
    while done < n and time.monotonic() < deadline:
        msgs = [m for m in consumer.consume(1000, 0.5) if m.error() is None]
        if not msgs:
            continue
        producer.begin_transaction()
        for m in msgs:
            producer.produce(dst, value=f"out-{m.value().decode()}".encode(), partition=m.partition())
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        if not aborted_once:
            # One aborted batch: its output must never be seen, and its input is read again
            # from the committed offsets.
            aborted_once = True
            producer.abort_transaction(30)
            committed = consumer.committed(consumer.assignment(), 10)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            continue
        producer.commit_transaction(30)
        done += len(msgs)
    assert done == n, f"transformed {done} of {n}"

    # The last transaction's offsets become visible once its commit marker reaches the
    # offsets partition, which follows EndTxn's answer.
    ends = [consumer.get_watermark_offsets(TopicPartition(src, q), 10)[1] for q in (0, 1)]
    assert ends == [n // 2, n // 2]
    wait_until(
        lambda: [tp.offset for tp in consumer.committed([TopicPartition(src, 0), TopicPartition(src, 1)], 10)] == ends,
        15,
        "the group's committed offsets to reach the input's end",
    )
    consumer.close()

    out = read_all(b.bootstrap, dst, 2, "read_committed", n, timeout=120)
    assert len(out) == n, f"{len(out)} outputs for {n} inputs"
    assert sorted(out) == sorted(f"out-{i}" for i in range(n))


def test_the_cli_lists_describes_and_aborts_a_transaction(broker_factory):
    b = broker_factory(SETS)
    topic = "txn-cli"
    create_topic(b.bootstrap, topic, 1)
    p = txn_producer(b.bootstrap, "tx-cli")
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"open-{i}".encode(), partition=0)
    p.flush(30)

    listed = strata_cli("transactions", b, "list", "--state", "Ongoing").stdout
    assert any(line.split()[:1] == ["tx-cli"] and "Ongoing" in line for line in listed.splitlines()), listed
    described = strata_cli("transactions", b, "describe", "tx-cli").stdout
    assert "state:            Ongoing" in described, described
    assert f"partitions:       {topic} [0]" in described, described

    strata_cli("transactions", b, "abort", "tx-cli")
    described = strata_cli("transactions", b, "describe", "tx-cli").stdout
    assert "state:            Empty" in described, described
    with pytest.raises(KafkaException):
        p.commit_transaction(10)
    assert read_all(b.bootstrap, topic, 1, "read_committed", 0, timeout=3) == []
    assert sorted(read_all(b.bootstrap, topic, 1, "read_uncommitted", 3)) == [f"open-{i}" for i in range(3)]


def test_the_cli_aborts_a_hanging_transaction_on_its_partition(broker_factory):
    """`strata transactions abort --topic --partition --start-offset`, for a transaction that
    no coordinator will end: the partition's leader writes the abort marker of the one open
    from that offset, and the last stable offset moves on."""
    b = broker_factory(SETS)
    topic = "txn-hanging"
    create_topic(b.bootstrap, topic, 1)
    plain = h.producer(b.bootstrap)
    for i in range(2):
        plain.produce(topic, value=f"before-{i}".encode(), partition=0)
    h.flush_all(plain)
    p = txn_producer(b.bootstrap, "tx-hanging")
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"open-{i}".encode(), partition=0)
    p.flush(30)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    tp = TopicPartition(topic, 0)
    assert latest_offsets(admin, tp) == (2, 5)

    wrong = strata_cli("transactions", b, "abort", "--topic", topic, "--partition", "0", "--start-offset", "3",
                       ok=False)
    assert "no transaction is open from offset 3 (open from: [2])" in wrong.stderr, wrong.stderr
    assert latest_offsets(admin, tp) == (2, 5)
    out = strata_cli("transactions", b, "abort", "--topic", topic, "--partition", "0", "--start-offset", "2")
    assert f"open on {topic}-0 from offset 2" in out.stdout, out.stdout
    # The abort marker at offset 5.
    assert latest_offsets(admin, tp) == (6, 6)
    assert sorted(read_all(b.bootstrap, topic, 1, "read_committed", 2)) == ["before-0", "before-1"]
    # The coordinator's own end of the transaction changes nothing more.
    p.abort_transaction(30)
    assert sorted(read_all(b.bootstrap, topic, 1, "read_committed", 2)) == ["before-0", "before-1"]
    assert sorted(read_all(b.bootstrap, topic, 1, "read_uncommitted", 5)) == sorted(
        [f"before-{i}" for i in range(2)] + [f"open-{i}" for i in range(3)])


@requires(
    shutil.which("node") is not None and (JS / "node_modules" / "kafkajs").is_dir(),
    "node or kafkajs missing: run scripts/install-test-deps.sh",
)
def test_kafkajs_transaction_commit_and_abort(broker_factory):
    b = broker_factory(SETS)
    topic = "txn-js"
    create_topic(b.bootstrap, topic, 2)
    out = subprocess.run(
        ["node", str(JS / "txn_produce.js"), b.bootstrap, topic, "tx-kafkajs", "20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ok": True}
    committed = [f"js-commit-{i}" for i in range(20)]
    aborted = [f"js-abort-{i}" for i in range(20)]
    assert sorted(read_all(b.bootstrap, topic, 2, "read_committed", 20)) == sorted(committed)
    assert sorted(read_all(b.bootstrap, topic, 2, "read_uncommitted", 40)) == sorted(committed + aborted)


def test_markers_reach_partitions_led_by_other_brokers(tmp_path, request):
    """Three brokers: the coordinator writes markers in process where it leads and by
    WriteTxnMarkers elsewhere; read_committed sees exactly the committed transaction."""
    from test_cluster import Cluster, create_topics

    c = Cluster(tmp_path, extra=SETS)
    request.node._strata_brokers = c.nodes
    c.start_all()
    try:
        c.wait_ready()
        topic = "txn-cluster"
        create_topics(c.bootstrap(), [topic], partitions=3, rf=3, timeout=20)
        md = AdminClient({"bootstrap.servers": c.bootstrap()}).list_topics(topic, timeout=10)
        leaders = {p.leader for p in md.topics[topic].partitions.values()}
        assert len(leaders) > 1, f"partitions all led by {leaders}"
        p = txn_producer(c.bootstrap(), "tx-cluster")
        for tag, commit in (("kept", True), ("dropped", False)):
            p.begin_transaction()
            for i in range(30):
                p.produce(topic, value=f"{tag}-{i}".encode(), partition=i % 3)
            if commit:
                p.commit_transaction(30)
            else:
                p.flush(30)
                p.abort_transaction(30)
        kept = [f"kept-{i}" for i in range(30)]
        dropped = [f"dropped-{i}" for i in range(30)]
        assert sorted(read_all(c.bootstrap(), topic, 3, "read_committed", 30)) == sorted(kept)
        assert sorted(read_all(c.bootstrap(), topic, 3, "read_uncommitted", 60)) == sorted(kept + dropped)
    finally:
        c.cleanup()
