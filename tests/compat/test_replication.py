"""ISR replication across three `strata serve` processes on 127.0.0.1, with real clients
(confluent-kafka) and SIGKILL.

- Records written with acks=all reach every replica: after the leader is killed, the new leader
  serves all of them, in order, and the ISR shrinks to the survivors and grows back when the
  killed broker returns and catches up.
- min.insync.replicas: with too few in-sync replicas, acks=all writes are refused
  (NOT_ENOUGH_REPLICAS) and nothing is acknowledged.
- Chaos: an idempotent acks=all producer writes numbered records while the partition leader is
  SIGKILLed every few seconds and restarted; afterwards every acknowledged record is readable
  exactly once, in order. The failover time (kill to the first acknowledgement after it) is
  printed; $STRATA_CHAOS_SECONDS sets the length (default 20 s, 60 s in the soak run) and
  $STRATA_FAILOVER_OUT appends the times as JSON. Each kill's wall-clock time and victim, and
  the brokers' log directory, are printed too (`chaos kill:` and `chaos timeline:` lines), for
  `failover_phases.py` to break each failover into its steps.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import helpers as h
from conftest import wait_until
from history import History
from test_cluster import Cluster, run

CHAOS_SECONDS = float(os.environ.get("STRATA_CHAOS_SECONDS", "20"))


@pytest.fixture
def cluster(tmp_path, request):
    c = Cluster(tmp_path, extra={"replica.lag.time.max.ms": "3000"})
    request.node._strata_brokers = c.nodes
    c.start_all()
    c.wait_ready()
    yield c
    c.cleanup()


def create(cluster: Cluster, name: str, partitions: int = 1, min_isr: int = 2):
    a = AdminClient({"bootstrap.servers": cluster.bootstrap()})
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=3,
                  config={"min.insync.replicas": str(min_isr)})],
        request_timeout=10, operation_timeout=10,
    )
    for f in fs.values():
        f.result(timeout=15)


def partition_meta(cluster: Cluster, topic: str, partition: int = 0):
    """(leader, replicas, isr) as a live broker reports them, or None."""
    for b in cluster.live():
        try:
            md = AdminClient({"bootstrap.servers": b.bootstrap, "socket.timeout.ms": 2000}).list_topics(topic, timeout=3)
        except Exception:  # noqa: BLE001 - that broker is still starting
            continue
        t = md.topics.get(topic)
        if t is None or t.error or partition not in t.partitions:
            continue
        p = t.partitions[partition]
        return p.leader, sorted(p.replicas), sorted(p.isrs)
    return None


def wait_isr(cluster: Cluster, topic: str, want: list[int], timeout: float = 30):
    def ok():
        m = partition_meta(cluster, topic)
        return m if m and m[2] == sorted(want) and m[0] in want else None
    return wait_until(ok, timeout, f"ISR of {topic} to be {want}")


def produce_numbered(bootstrap: str, topic: str, start: int, count: int, **extra) -> list[int]:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "linger.ms": 5, **extra})
    acked: list[int] = []
    errors: list[str] = []

    def cb(err, msg):
        if err is None:
            acked.append(int(msg.value()))
        else:
            errors.append(str(err))

    for i in range(start, start + count):
        p.produce(topic, value=str(i).encode(), partition=0, on_delivery=cb)
        p.poll(0)
    p.flush(60)
    assert not errors, errors[:3]
    return acked


def read_records(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[tuple[int, bytes]]:
    """(offset, value) of partition 0 from offset 0, until `expected` records or `timeout`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{time.time_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise AssertionError(f"consume error: {m.error()}")
                out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out


def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[int]:
    out = read_records(bootstrap, topic, expected, timeout)
    offsets = [o for o, _ in out]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offsets out of order"
    return [int(v) for _, v in out]


@pytest.mark.timeout(300)
def test_acks_all_records_survive_the_leader_and_the_isr_heals(cluster):
    create(cluster, "replicated")
    leader, replicas, isr = wait_isr(cluster, "replicated", [1, 2, 3])
    assert replicas == [1, 2, 3]
    acked = produce_numbered(cluster.bootstrap(), "replicated", 0, 2000)
    assert sorted(acked) == list(range(2000))

    victim = cluster.node(leader)
    victim.kill()
    survivors = [b for b in (1, 2, 3) if b != leader]
    new_leader, _, isr = wait_isr(cluster, "replicated", survivors)
    assert new_leader != leader
    described = run("topics", "describe", "replicated", "--bootstrap-server", cluster.bootstrap().split(",")[0])
    assert described.returncode == 0, described.stderr
    row = next(line for line in described.stdout.splitlines() if "Partition: 0" in line)
    assert f"Leader: {new_leader}" in row and "Replicas: 1,2,3" in row, row
    assert f"Isr: {','.join(map(str, sorted(survivors)))}" in row or \
        f"Isr: {','.join(map(str, sorted(survivors, reverse=True)))}" in row, row
    # Everything acknowledged is on the new leader, once, in order.
    assert read_all(cluster.bootstrap(), "replicated", 2000) == list(range(2000))
    more = produce_numbered(cluster.bootstrap(), "replicated", 2000, 500)
    assert sorted(more) == list(range(2000, 2500))

    # The killed broker returns as a follower, copies what it missed and rejoins the ISR.
    victim.start()
    wait_isr(cluster, "replicated", [1, 2, 3], timeout=40)
    # Every replica now holds the same log, byte for byte: followers copy the leader's
    # batches as they are (offsets, epochs, CRCs), and the returned one dropped any tail of its
    # own that was never committed.
    def same_logs():
        logs = [log_bytes(cluster.node(b), "replicated", 0) for b in (1, 2, 3)]
        return logs[0] if logs[0] and all(x == logs[0] for x in logs) else None
    assert wait_until(same_logs, 30, "identical logs on every replica")


def log_bytes(node, topic: str, partition: int) -> bytes:
    d = node.data_dir / f"{topic}-{partition}"
    return b"".join(p.read_bytes() for p in sorted(d.glob("*.log")))


@pytest.mark.timeout(300)
def test_a_leader_whose_port_refuses_is_reported_leaderless_until_it_is_replaced(tmp_path, request):
    """A follower whose fetcher finds the leader's port refusing knows the process is gone before
    the controller fences it: its Metadata names no leader for those partitions (so clients poll
    for the new one), and names the new leader once the controller has moved it."""
    # A long reconnect grace: the controller fences the killed broker only after 8 s.
    c = Cluster(tmp_path, extra={"broker.session.reconnect.grace.ms": "8000",
                                 "broker.session.timeout.ms": "20000"})
    request.node._strata_brokers = c.nodes
    try:
        c.start_all()
        controller = c.wait_ready()
        create(c, "refusing", partitions=3)
        meta = {}

        def leaders():
            for p in range(3):
                m = partition_meta(c, "refusing", p)
                if not m or m[0] < 0 or len(m[2]) != 3:
                    return None
                meta[p] = m
            return True

        wait_until(leaders, 30, "a leader and a full ISR for every partition")
        p, (victim, _, _) = next((p, m) for p, m in meta.items() if m[0] != controller)
        c.node(victim).kill()
        survivor = next(b for b in c.live())

        def reported_leader():
            md = AdminClient({"bootstrap.servers": survivor.bootstrap}).list_topics("refusing", timeout=3)
            return md.topics["refusing"].partitions[p].leader

        killed_at = time.monotonic()
        wait_until(lambda: reported_leader() == -1, 5, "the dead leader's partition reported leaderless")
        leaderless_after = time.monotonic() - killed_at
        # The controller has not fenced it yet: the refusal alone made the partition leaderless.
        d = c.describe(survivor)
        assert any(b[0] == victim and not b[3] for b in d["brokers"]), d["brokers"]
        assert leaderless_after < 4, leaderless_after
        # Once fenced, the partition has a new leader among the survivors.
        new = wait_until(lambda: (l := reported_leader()) not in (-1, victim) and l, 20,
                         "a new leader after the fence")
        assert new in [b.node_id for b in c.live()]
        # The dead broker's other partitions are untouched on the survivors' side: every
        # partition it did not lead kept its leader throughout.
        for q, m in meta.items():
            if m[0] != victim:
                assert partition_meta(c, "refusing", q)[0] == m[0]
    finally:
        c.cleanup()


def test_min_insync_replicas_refuses_acks_all_writes(cluster):
    create(cluster, "guarded", min_isr=3)
    leader, _, _ = wait_isr(cluster, "guarded", [1, 2, 3])
    assert sorted(produce_numbered(cluster.bootstrap(), "guarded", 0, 10)) == list(range(10))
    follower = next(b for b in (1, 2, 3) if b != leader)
    cluster.node(follower).kill()
    wait_isr(cluster, "guarded", [b for b in (1, 2, 3) if b != follower])

    p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all", "retries": 0,
                  "message.timeout.ms": 5000, "enable.idempotence": False})
    results: list = []
    p.produce("guarded", value=b"refused", partition=0, on_delivery=lambda e, m: results.append(e))
    p.flush(15)
    assert len(results) == 1 and results[0] is not None
    assert results[0].code() in (KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT), results[0]
    # acks=1 still works; the refused record is not there.
    p1 = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": 1})
    p1.produce("guarded", value=b"10", partition=0)
    p1.flush(15)
    assert read_all(cluster.bootstrap(), "guarded", 11) == list(range(11))


@pytest.mark.timeout(600)
def test_chaos_kill_the_leader_repeatedly(cluster):
    create(cluster, "chaos")
    wait_isr(cluster, "chaos", [1, 2, 3])
    acked: list[int] = []
    ack_times: list[float] = []
    failed: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()
    hist = History()

    def produce():
        p = Producer({"bootstrap.servers": cluster.bootstrap(), "acks": "all",
                      "enable.idempotence": True, "linger.ms": 2,
                      "message.timeout.ms": 120000, "topic.metadata.refresh.interval.ms": 1000,
                      "retry.backoff.ms": 50, "retry.backoff.max.ms": 200,
                      "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 200})

        def cb(err, msg):
            with lock:
                if err is None:
                    acked.append(int(msg.value()))
                    ack_times.append(time.monotonic())
                    hist.ack(msg.value(), msg.partition(), msg.offset())
                else:
                    failed.append(str(err))
                    hist.fail(msg.value())

        i = 0
        while not stop.is_set():
            try:
                p.produce("chaos", value=str(i).encode(), partition=0, on_delivery=cb)
                with lock:
                    hist.send(str(i).encode(), 0)
                i += 1
            except BufferError:
                pass
            p.poll(0.002)
        p.flush(120)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    kills: list[float] = []
    # Wall-clock time and node id of each kill, to line up with the brokers' logs.
    kill_log: list[dict] = []
    t_end = time.monotonic() + CHAOS_SECONDS
    while time.monotonic() < t_end:
        time.sleep(3)
        m = partition_meta(cluster, "chaos")
        if not m or m[0] < 0:
            continue
        victim = cluster.node(m[0])
        if not victim.is_running() or len(cluster.live()) < 3:
            continue
        victim.kill()
        kills.append(time.monotonic())
        kill_log.append({"at": time.time(), "victim": m[0]})
        print(f"\nchaos kill: {json.dumps(kill_log[-1])}", flush=True)
        time.sleep(2)
        victim.start()
        wait_until(lambda: (m := partition_meta(cluster, "chaos")) and len(m[2]) == 3, 60,
                   "the restarted broker to rejoin the ISR")
    stop.set()
    t.join(180)
    assert not t.is_alive(), "the producer did not finish"
    assert kills, "no leader was killed"
    assert not failed, failed[:3]

    with lock:
        acked_sorted = sorted(acked)
        times = sorted(ack_times)
    records = read_records(cluster.bootstrap(), "chaos", len(acked_sorted))
    # Every record was acknowledged, so reading as many as were acknowledged reads it all.
    hist.read_all("final", [h.Rec(0, o, None, v) for o, v in records], [0])
    report = hist.check()
    print(f"\nhistory: {report.counts()}")
    report.assert_ok()
    offsets = [o for o, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), "offsets out of order"
    values = [int(v) for _, v in records]
    # Exactly once, in order: the log holds each number once, ascending, and every acknowledged
    # number is among them.
    assert values == sorted(values), "records out of order"
    assert len(values) == len(set(values)), "duplicated records"
    missing = set(acked_sorted) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"

    failovers = []
    for k, entry in zip(kills, kill_log):
        after = [x for x in times if x > k]
        if after:
            failovers.append(after[0] - k)
            entry["failover_s"] = after[0] - k
    med, mx = statistics.median(failovers), max(failovers)
    print(f"\n{len(acked_sorted)} records acknowledged across {len(kills)} leader kills; "
          f"failover median {med:.3f} s, max {mx:.3f} s, all {[round(f, 3) for f in failovers]}")
    print("chaos timeline: " + json.dumps({
        "topic": "chaos", "partition": 0,
        "logs": str(cluster.nodes[0].dir.parent),
        "nodes": {b.node_id: str(b.dir) for b in cluster.nodes},
        "kills": kill_log}), flush=True)
    out = os.environ.get("STRATA_FAILOVER_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"kills": len(kills), "records": len(acked_sorted), "median_s": med,
                                "max_s": mx, "times_s": failovers}) + "\n")


@pytest.mark.timeout(300)
def test_a_follower_behind_the_tiered_log_rebuilds_after_the_remote_end(tmp_path, request):
    # In a cluster, every broker must see the same object store.
    shared = tmp_path / "remote"
    shared.mkdir()
    c = Cluster(tmp_path, extra={
        "replica.lag.time.max.ms": "3000",
        "remote.storage.uri": f"file://{shared}",
        "remote.log.manager.task.interval.ms": "200",
    })
    request.node._strata_brokers = c.nodes
    try:
        c.start_all()
        c.wait_ready()
        a = AdminClient({"bootstrap.servers": c.bootstrap()})
        fs = a.create_topics([NewTopic("tiered-rf3", num_partitions=1, replication_factor=3, config={
            "min.insync.replicas": "2", "segment.bytes": "65536", "local.retention.bytes": "131072",
            "remote.storage.enable": "true"})], request_timeout=10, operation_timeout=10)
        for f in fs.values():
            f.result(timeout=15)
        leader, _, _ = wait_isr(c, "tiered-rf3", [1, 2, 3])
        follower = next(b for b in (1, 2, 3) if b != leader)
        c.node(follower).kill()
        wait_isr(c, "tiered-rf3", [b for b in (1, 2, 3) if b != follower])

        p = Producer({"bootstrap.servers": c.bootstrap(), "acks": "all", "linger.ms": 5})
        n = 3000
        for i in range(n):
            p.produce("tiered-rf3", value=f"{i:06d}".encode() + b"." * 1000, partition=0)
            if i % 500 == 0:
                p.poll(0)
        assert p.flush(60) == 0

        def first_base(node):
            logs = sorted((node.data_dir / "tiered-rf3-0").glob("*.log"))
            return int(logs[0].stem) if logs else None
        # The leader uploads sealed segments and drops them locally past local.retention.bytes.
        wait_until(lambda: (fb := first_base(c.node(leader))) and fb > 0, 60,
                   "the leader to move its oldest segments to the object store")

        c.node(follower).start()
        wait_isr(c, "tiered-rf3", [1, 2, 3], timeout=60)
        # The follower did not copy the tiered part back: its log starts after the remote end.
        assert first_base(c.node(follower)) > 0
        assert "rebuilding the replica after the remote log's end" in c.node(follower).log_text()
        values = read_all_values(c.bootstrap(), "tiered-rf3", n)
        assert values == [f"{i:06d}" for i in range(n)]
    finally:
        c.cleanup()


def read_all_values(bootstrap: str, topic: str, expected: int) -> list[str]:
    out = read_records(bootstrap, topic, expected)
    for i, (offset, _) in enumerate(out):
        assert offset == i, f"offset {offset} after {i} records"
    return [v[:6].decode() for _, v in out]
