"""Mirror links beyond one-to-one copies: failback and a three-node target.

Failback: after a failover (the target promoted and written to), `strata mirror reverse` on
the old source makes its topics mirrors of the new primary. Each partition's divergent tail
(what the old source took after the link stopped) is removed, kept in a file and reported
with its count; the old source then converges record by record. Promoting there and
reversing again is the way back.

A three-node target: transactional data (committed and aborted transactions) mirrored to
mirror topics replicated three times; read_committed and read_uncommitted views equal the
source's, offset by offset, so the markers sit at the same offsets; failover catches up every
partition whichever broker leads it. Producers are idempotent (and transactional) on both
sides: a promoted copy never hands out a producer id that the mirrored data uses.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from conftest import strata_cli, wait_until
from helpers import Deliveries, admin, create_topic, flush_all, producer, read_partitions, sort_po, watermarks
from test_mirror import assert_same_records, ends, topics_of, wait_converged

pytestmark = pytest.mark.timeout(150)


def produce(bootstrap: str, topic: str, counts: dict[int, int], tag: str) -> None:
    # Idempotent on both sides: a promoted copy holds the producer state of the other cluster's
    # producers, and must never hand their ids to its own.
    p = producer(bootstrap, **{"enable.idempotence": True})
    d = Deliveries()
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, key=f"{tag}-{partition}-{i}".encode(), value=f"{tag}-v{i}".encode(),
                      headers=[("tag", tag.encode())], partition=partition, on_delivery=d)
    flush_all(p)
    d.assert_all_ok(sum(counts.values()))


def metric(broker, name: str, **labels) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            out[re.search(r'partition="(\d+)"', line).group(1)] = float(line.rsplit(" ", 1)[1])
    return out


def test_failback_reports_the_divergent_tail_and_converges_both_ways(broker_factory):
    a_broker, b_broker = broker_factory(), broker_factory()
    a, b = a_broker.bootstrap, b_broker.bootstrap  # a: the primary; b: its disaster-recovery copy
    create_topic(a, "orders", partitions=2)
    produce(a, "orders", {0: 20, 1: 20}, "first")
    strata_cli("mirror", b, "create", "dr", "--source-bootstrap-servers", a, "--topic", "orders",
               "--interval-ms", "300")
    wait_converged(a, b, "orders", 2)

    # The link is cut while the primary still takes writes (a partitioned region): these
    # records never reach the copy. Then the copy fails over and takes its own writes.
    strata_cli("mirror", b, "pause", "dr")
    produce(a, "orders", {0: 5, 1: 3}, "lost")
    strata_cli("mirror", b, "failover", "dr")
    assert ends(b, "orders", 2) == [20, 20]
    produce(b, "orders", {0: 7, 1: 4}, "after-failover")

    # The old primary returns: reverse the link there. Each partition's tail past offset 20
    # is removed, kept and counted.
    out = strata_cli("mirror", a, "reverse", "back", "--source-bootstrap-servers", b,
                     "--topic", "orders", "--interval-ms", "300").stdout
    tails = {
        m[0]: int(m[1]) for m in re.findall(
            r"divergent topic=orders\tpartition=(\d)\tfrom_offset=20\tend_offset=\d+\trecords=(\d+)\t", out)
    }
    assert tails == {"0": 5, "1": 3}, out
    assert "divergent records total=8" in out, out
    kept = re.findall(r"kept=(\S+)", out)
    assert len(kept) == 2 and all(k.endswith(".log") for k in kept), out
    # The kept file holds the removed batches (Kafka's log format: the keys are readable).
    data = open(kept[0], "rb").read()
    assert b"lost-0-0" in data and b"lost-0-4" in data and b"first" not in data
    assert metric(a_broker, "strata_mirror_divergent_records_total", topic="orders") == {"0": 5.0, "1": 3.0}

    wait_converged(b, a, "orders", 2)
    assert_same_records(b, a, "orders", 2)
    assert not [r for r in read_partitions(a, "orders", range(2)) if r.value.startswith(b"lost")]
    assert "topic orders\tlink=back\tpartitions=2\tstate=mirroring" in strata_cli("mirror", a, "list").stdout
    # The old primary is now a read-only mirror.
    p = producer(a, retries=0)
    d = Deliveries()
    p.produce("orders", value=b"nope", partition=0, on_delivery=d)
    p.flush(10)
    assert len(d.failed) == 1 and not d.ok

    # More writes on the new primary keep flowing back.
    produce(b, "orders", {0: 3, 1: 3}, "more")
    wait_converged(b, a, "orders", 2)

    # Failback: promote on the old primary, write there, and reverse the original link on b.
    strata_cli("mirror", a, "failover", "back")
    produce(a, "orders", {0: 2, 1: 1}, "home")
    out = strata_cli("mirror", b, "reverse", "dr", "--source-bootstrap-servers", a, "--topic", "orders",
                     "--interval-ms", "300").stdout
    assert "divergent records total=0" in out, out
    wait_converged(a, b, "orders", 2)
    assert_same_records(a, b, "orders", 2)
    assert ends(a, "orders", 2) == [20 + 7 + 3 + 2, 20 + 4 + 3 + 1]


TXN_SETS = {
    "offsets.topic.num.partitions": "3",
    "transaction.state.log.num.partitions": "3",
}


def test_transactions_mirror_exactly_to_a_three_node_target(broker_factory, tmp_path, request):
    from test_cluster import Cluster
    from test_txn_coordinator import txn_producer

    src = broker_factory(TXN_SETS).bootstrap
    (tmp_path / "target").mkdir()
    c = Cluster(tmp_path / "target", extra={**TXN_SETS, "default.replication.factor": "3"})
    request.node._strata_brokers.extend(c.nodes)
    c.start_all()
    try:
        c.wait_ready()
        dst = c.bootstrap()
        create_topic(src, "payments", partitions=3)
        p = txn_producer(src, "tx-mirror")
        for tag, commit in (("kept", True), ("dropped", False), ("kept2", True)):
            p.begin_transaction()
            for i in range(30):
                p.produce("payments", key=f"{tag}-{i}".encode(), value=f"{tag}-{i}".encode(), partition=i % 3)
            if commit:
                p.commit_transaction(30)
            else:
                p.flush(30)
                p.abort_transaction(30)
        produce(src, "payments", {0: 5, 1: 5, 2: 5}, "plain")

        strata_cli("mirror", c.nodes[0].bootstrap, "create", "dr", "--source-bootstrap-servers", src, "--topic", "payments",
                   "--interval-ms", "300")
        wait_converged(src, dst, "payments", 3, timeout=60)
        md = admin(dst).list_topics("payments", timeout=10).topics["payments"]
        assert all(len(pm.replicas) == 3 for pm in md.partitions.values()), md.partitions

        for isolation in ("read_committed", "read_uncommitted"):
            a = sort_po(read_partitions(src, "payments", range(3), **{"isolation.level": isolation}))
            # Any broker of the target answers the same (followers included after the high
            # watermark moved): read through the whole cluster.
            b = sort_po(read_partitions(dst, "payments", range(3), **{"isolation.level": isolation}))
            assert a == b, f"{isolation}: {len(a)} source records, {len(b)} mirrored"
            values = [r.value for r in a]
            assert sum(v.startswith(b"dropped") for v in values) == (30 if isolation == "read_uncommitted" else 0)
            assert sum(v.startswith(b"kept") for v in values) == 60
        # Same data offsets and same ends: the markers (the offsets no record has) are at the
        # same offsets on both sides.
        # Per partition: 10 records of each of three transactions, their 3 markers, 5 plain.
        assert ends(src, "payments", 3) == ends(dst, "payments", 3) == [38, 38, 38]
        assert [watermarks(src, "payments", q) for q in range(3)] == [watermarks(dst, "payments", q) for q in range(3)]
        assert "payments" in topics_of(dst)

        # Fail over right after one more transaction reaches the source: every partition,
        # whichever target broker leads it, catches up with the source before it is promoted.
        leaders = {pm.leader for pm in md.partitions.values()}
        assert len(leaders) > 1, f"partitions all led by {leaders}"
        p.begin_transaction()
        for i in range(30):
            p.produce("payments", value=f"last-{i}".encode(), partition=i % 3)
        p.commit_transaction(30)
        out = strata_cli("mirror", c.nodes[0].bootstrap, "failover", "dr")
        assert "behind" not in out.stderr, out.stderr
        assert ends(dst, "payments", 3) == ends(src, "payments", 3) == [49, 49, 49], leaders
        assert "topic payments\tlink=dr\tpartitions=3\tstate=promoted" in out.stdout, out.stdout

        # A transactional producer on the promoted topic gets a producer id of the target's
        # own, never one whose copied state (epoch, sequences) the mirror holds.
        q = txn_producer(dst, "tx-after-failover")
        q.begin_transaction()
        for i in range(6):
            q.produce("payments", value=f"target-{i}".encode(), partition=i % 3)
        q.commit_transaction(30)
        committed = [r.value for r in read_partitions(dst, "payments", range(3), **{"isolation.level": "read_committed"})]
        assert sorted(v for v in committed if v.startswith(b"target-")) == [f"target-{i}".encode() for i in range(6)]
        assert ends(dst, "payments", 3) == [52, 52, 52]
    finally:
        c.cleanup()


def test_reverse_on_a_three_node_old_source_truncates_every_replica(broker_factory, tmp_path, request):
    """The reversed partitions' followers drop the divergent tail too (the leader epoch moves
    with the reverse, so they find the divergence as after any leader change): with the
    leader of a partition killed afterwards, the replica that takes over holds exactly the
    new primary's records."""
    from test_cluster import Cluster, create_topics

    (tmp_path / "old").mkdir()
    a = Cluster(tmp_path / "old")
    request.node._strata_brokers.extend(a.nodes)
    a.start_all()
    try:
        a.wait_ready()
        b = broker_factory().bootstrap
        create_topics(a.bootstrap(), ["orders"], partitions=2, rf=3, timeout=20)
        produce(a.bootstrap(), "orders", {0: 20, 1: 20}, "first")
        strata_cli("mirror", b, "create", "dr", "--source-bootstrap-servers", a.bootstrap(),
                   "--topic", "orders", "--interval-ms", "300")
        wait_converged(a.bootstrap(), b, "orders", 2)
        strata_cli("mirror", b, "pause", "dr")
        produce(a.bootstrap(), "orders", {0: 6, 1: 2}, "lost")
        strata_cli("mirror", b, "failover", "dr")
        produce(b, "orders", {0: 3, 1: 9}, "after-failover")

        out = strata_cli("mirror", a.nodes[0].bootstrap, "reverse", "back", "--source-bootstrap-servers", b,
                         "--topic", "orders", "--interval-ms", "300").stdout
        assert "divergent records total=8" in out, out
        wait_converged(b, a.bootstrap(), "orders", 2)
        assert_same_records(b, a.bootstrap(), "orders", 2)

        md = admin(a.bootstrap()).list_topics("orders", timeout=10).topics["orders"]
        leader = md.partitions[0].leader
        wait_until(
            lambda: all(len(pm.isrs) == 3 for pm in admin(a.bootstrap()).list_topics("orders", timeout=10)
                        .topics["orders"].partitions.values()),
            20, "every replica back in the ISR", interval=0.3,
        )
        a.node(leader).kill()
        live = a.bootstrap()
        wait_until(
            lambda: admin(live).list_topics("orders", timeout=10).topics["orders"].partitions[0].leader
            not in (-1, leader),
            30, "a new leader for orders-0", interval=0.3,
        )
        produce(b, "orders", {0: 4, 1: 4}, "more")
        wait_converged(b, live, "orders", 2, timeout=40)
        assert_same_records(b, live, "orders", 2)
        assert not [r for r in read_partitions(live, "orders", range(2)) if r.value.startswith(b"lost")]
    finally:
        a.cleanup()


@pytest.mark.parametrize("link", ["active", "paused"])
def test_a_transaction_the_source_left_open_is_aborted_when_promoted(broker_factory, link):
    """A source transaction still open at the failover (its producer never committed, so no
    marker will ever arrive) is aborted by the promoted partition's leader: no coordinator of
    the new primary owns it, and left open it would hold read_committed consumers at its
    first offset for good. Over an active link the failover first waits a while for the
    source to end it; a paused link (the source cut off) is promoted at once."""
    from confluent_kafka import KafkaException, TopicPartition

    from test_txn_coordinator import latest_offsets, txn_producer

    src = broker_factory(TXN_SETS).bootstrap
    dst_broker = broker_factory(TXN_SETS)
    dst = dst_broker.bootstrap
    create_topic(src, "ledger", partitions=2)
    p = txn_producer(src, "tx-left-open")
    p.begin_transaction()
    for i in range(10):
        p.produce("ledger", value=f"committed-{i}".encode(), partition=i % 2)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(10):
        p.produce("ledger", value=f"open-{i}".encode(), partition=i % 2)
    p.flush(30)

    strata_cli("mirror", dst, "create", "dr", "--source-bootstrap-servers", src, "--topic", "ledger",
               "--interval-ms", "300")
    # Per partition: 5 committed records, their marker, 5 records of the open transaction.
    # (last stable offset, high watermark): the open transaction holds the first at 6.
    def offsets(bootstrap: str) -> list[tuple[int, int]] | None:
        try:
            return [latest_offsets(admin(bootstrap), TopicPartition("ledger", q)) for q in range(2)]
        except KafkaException:  # the mirror topic is not there yet
            return None

    assert offsets(src) == [(6, 11), (6, 11)]
    wait_until(lambda: offsets(dst) == [(6, 11), (6, 11)], 30, "the open transaction mirrored")
    if link == "paused":
        strata_cli("mirror", dst, "pause", "dr")
    strata_cli("mirror", dst, "failover", "dr")

    # One abort marker per partition, after the open transaction's records.
    wait_until(lambda: offsets(dst) == [(12, 12), (12, 12)], 20, "abort markers on the promoted partitions")
    # The counter moves just after the marker is committed.
    wait_until(lambda: metric(dst_broker, "strata_mirror_promotion_aborted_transactions_total", topic="ledger") == {
        "0": 1.0, "1": 1.0}, 10, "each abort counted")
    committed = read_partitions(dst, "ledger", range(2), **{"isolation.level": "read_committed"})
    assert sorted(r.value for r in committed) == sorted(f"committed-{i}".encode() for i in range(10))
    everything = read_partitions(dst, "ledger", range(2), **{"isolation.level": "read_uncommitted"})
    assert sum(r.value.startswith(b"open-") for r in everything) == 10

    # A transaction on the new primary is read committed past the aborted one.
    q = txn_producer(dst, "tx-after-promotion")
    q.begin_transaction()
    for i in range(4):
        q.produce("ledger", value=f"new-{i}".encode(), partition=i % 2)
    q.commit_transaction(30)
    committed = read_partitions(dst, "ledger", range(2), **{"isolation.level": "read_committed"})
    assert sorted(r.value for r in committed if r.value.startswith(b"new-")) == [f"new-{i}".encode() for i in range(4)]
    assert offsets(dst) == [(15, 15), (15, 15)]

    # Only a promotion aborts: a broker that restarts leading the promoted topic leaves the
    # transactions of the new primary's own producers alone.
    q.begin_transaction()
    for i in range(4):
        q.produce("ledger", value=f"across-{i}".encode(), partition=i % 2)
    q.flush(30)
    dst_broker.restart()
    q.commit_transaction(60)
    committed = read_partitions(dst, "ledger", range(2), **{"isolation.level": "read_committed"})
    assert sorted(r.value for r in committed if r.value.startswith(b"across-")) == [
        f"across-{i}".encode() for i in range(4)]
    assert offsets(dst) == [(18, 18), (18, 18)]
    p.abort_transaction(30)
