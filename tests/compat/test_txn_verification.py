"""KIP-890 transaction verification: a partition leader asks the transaction coordinator
whether a partition is in the producer's ongoing transaction before it appends the first
transactional batch of that transaction there.

On the wire: a batch for a partition never added to the transaction is refused
(INVALID_TXN_STATE), and a batch that arrives after its transaction was aborted is refused and
leaves no open transaction behind (the last stable offset reaches the log end); with
`transaction.partition.verification.enable=false` (set at run time, a dynamic broker config)
the same late batch opens a transaction that nothing ends. With confluent-kafka: commits and
aborts still work, and each transaction asks once per partition however many batches it
writes; on three nodes the leaders ask a coordinator on another broker.
"""

from __future__ import annotations

import struct

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import (
    AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType,
)

import kafka_wire as wire
from conftest import wait_until
from test_cluster import Cluster
from test_metrics import get, series
from test_transactions import txn_batch
from test_txn_coordinator import create_topic, read_all, txn_producer

SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
}
INVALID_TXN_STATE = 48
NOT_ENOUGH_REPLICAS = 19
RETRIABLE = {14, 15, 16, 19}  # coordinator loading, not available, not coordinator; not enough replicas


def init_producer_id(c: wire.Connection, txn_id: str) -> tuple[int, int]:
    """FindCoordinator (which creates `__transaction_state`), then InitProducerId v1 for
    `txn_id`, retried while the coordinator comes up."""
    def coordinator():
        r = c.request(10, 1, wire.string(txn_id) + struct.pack(">b", 1))
        r.take(">i")
        return r.take(">h") == 0

    wait_until(coordinator, 30, "FindCoordinator", interval=0.2)

    def attempt():
        r = c.request(22, 1, wire.string(txn_id) + struct.pack(">i", 60000))
        _throttle, err, pid, epoch = r.take(">ihqh")
        assert err in RETRIABLE or err == 0, err
        return (pid, epoch) if err == 0 else None

    return wait_until(attempt, 30, "InitProducerId", interval=0.2)


def add_partitions(c: wire.Connection, txn_id: str, pid: int, epoch: int, topic: str, partitions: list[int]) -> list[int]:
    """AddPartitionsToTxn v1 (a producer's); the partition error codes."""
    body = (
        wire.string(txn_id) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) + wire.string(topic)
        + struct.pack(">i", len(partitions)) + b"".join(struct.pack(">i", p) for p in partitions)
    )
    r = c.request(24, 1, body)
    r.take(">i")
    codes = []
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            _p, err = r.take(">ih")
            codes.append(err)
    return codes


def end_txn(c: wire.Connection, txn_id: str, pid: int, epoch: int, commit: bool) -> int:
    r = c.request(26, 1, wire.string(txn_id) + struct.pack(">qhb", pid, epoch, 1 if commit else 0))
    _throttle, err = r.take(">ih")
    return err


def produce(c: wire.Connection, topic: str, partition: int, batch: bytes, txn_id: str) -> tuple[int, int]:
    """Produce v3, acks=-1; (error code, base offset)."""
    body = (
        wire.string(txn_id) + struct.pack(">hi", -1, 10000) + struct.pack(">i", 1) + wire.string(topic)
        + struct.pack(">ii", 1, partition) + struct.pack(">i", len(batch)) + batch
    )
    r = c.request(0, 3, body)
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    _p, err, base, _t = r.take(">ihqq")
    return err, base


def latest(c: wire.Connection, topic: str, partition: int, read_committed: bool) -> int:
    """ListOffsets v2 "latest": the last stable offset with read_committed, else the high
    watermark."""
    body = (
        struct.pack(">ib", -1, 1 if read_committed else 0) + struct.pack(">i", 1) + wire.string(topic)
        + struct.pack(">i", 1) + struct.pack(">iq", partition, -1)
    )
    r = c.request(2, 2, body)
    r.take(">i")
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    _p, err, _ts, offset = r.take(">ihqq")
    assert err == 0, err
    return offset


def verifications(brokers) -> dict[tuple[str, str], float]:
    """strata_txn_verifications_total summed over `brokers`, by (coordinator, result)."""
    total: dict[tuple[str, str], float] = {}
    for b in brokers:
        status, text = get(b, "/metrics")
        assert status == 200
        for labels, v in series(text, "strata_txn_verifications_total").items():
            key = (dict(labels)["coordinator"], dict(labels)["result"])
            total[key] = total.get(key, 0) + v
    return total


def disable_verification(bootstrap: str):
    """Turns verification off on every broker: a dynamic broker config (confluent-kafka names
    no default resource, so broker 1 stores it cluster-wide)."""
    entry = ConfigEntry("transaction.partition.verification.enable", "false",
                        incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.incremental_alter_configs([res]).values():
        f.result(10)


@pytest.mark.parametrize("verify", [True, False], ids=["verification", "no-verification"])
def test_unadded_and_late_batches_are_refused_and_leave_no_hanging_transaction(broker_factory, verify):
    b = broker_factory(SETS)
    topic = "txv-wire"
    create_topic(b.bootstrap, topic, 2)
    if not verify:
        disable_verification(b.bootstrap)
    with wire.Connection(b.bootstrap) as c:
        pid, epoch = init_producer_id(c, "tv")
        assert add_partitions(c, "tv", pid, epoch, topic, [0]) == [0]
        if verify:
            # Partition 1 was never added: the coordinator says so, and nothing is written.
            assert produce(c, topic, 1, txn_batch(pid, epoch, 0, [b"x"]), "tv") == (INVALID_TXN_STATE, -1)
            assert latest(c, topic, 1, read_committed=False) == 0
        assert produce(c, topic, 0, txn_batch(pid, epoch, 0, [b"a0"]), "tv") == (0, 0)
        assert produce(c, topic, 0, txn_batch(pid, epoch, 1, [b"a1"]), "tv") == (0, 1)
        assert end_txn(c, "tv", pid, epoch, commit=False) == 0
        # The abort marker lands at offset 2 once written.
        wait_until(lambda: latest(c, topic, 0, read_committed=True) == 3, 10, "the abort marker")

        # A batch of the aborted transaction that was still in flight arrives now.
        def late():
            err, base = produce(c, topic, 0, txn_batch(pid, epoch, 2, [b"late"]), "tv")
            # While the abort completes the coordinator answers CONCURRENT_TRANSACTIONS, which
            # the producer is told as a retriable NOT_ENOUGH_REPLICAS.
            return None if err == NOT_ENOUGH_REPLICAS else (err, base)

        outcome = wait_until(late, 10, "an answer to the late batch")
        hw = latest(c, topic, 0, read_committed=False)
        lso = latest(c, topic, 0, read_committed=True)
        if verify:
            assert outcome == (INVALID_TXN_STATE, -1)
            assert (hw, lso) == (3, 3)
        else:
            # Kafka before 3.6: the late batch opens a transaction no coordinator knows of, and
            # read_committed consumers stop before it for good.
            assert outcome == (0, 3)
            assert (hw, lso) == (4, 3)
    if verify:
        v = verifications([b])
        assert v[("local", "refused")] == 2  # partition 1, and the late batch
        assert v[("local", "verified")] == 1  # the first batch of partition 0 only
        assert v[("remote", "verified")] == 0


def test_a_transactional_producer_verifies_each_partition_once_per_transaction(broker_factory):
    b = broker_factory(SETS)
    topic = "txv-client"
    create_topic(b.bootstrap, topic, 2)
    p = txn_producer(b.bootstrap, "tv-client")
    group = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "tv-group"})
    outcomes = {"c1": True, "a1": False, "c2": True}
    for n, (tag, commit) in enumerate(outcomes.items()):
        p.begin_transaction()
        # Several batches per partition in each transaction, and the group's offsets
        # (TxnOffsetCommit on the group's offsets partition, verified too).
        for round_ in range(4):
            for i in range(4):
                p.produce(topic, value=f"{tag}-{round_}-{i}".encode(), partition=i % 2)
            p.flush(30)
        p.send_offsets_to_transaction([TopicPartition(topic, 0, 10 + n)], group.consumer_group_metadata(), 30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    committed = sorted(f"{t}-{r}-{i}" for t, c in outcomes.items() if c for r in range(4) for i in range(4))
    everything = sorted(f"{t}-{r}-{i}" for t in outcomes for r in range(4) for i in range(4))
    assert sorted(read_all(b.bootstrap, topic, 2, "read_committed", len(committed))) == committed
    assert sorted(read_all(b.bootstrap, topic, 2, "read_uncommitted", len(everything))) == everything
    # The committed transactions' offsets only: the last one's.
    assert [tp.offset for tp in group.committed([TopicPartition(topic, 0)], 10)] == [12]
    group.close()
    v = verifications([b])
    # One question per transaction and partition (two data partitions and the offsets
    # partition), none per batch; none refused.
    assert v[("local", "verified")] == 9
    assert v[("local", "refused")] == 0
    assert v[("local", "error")] == 0


@pytest.fixture
def three_nodes(tmp_path, request):
    c = Cluster(tmp_path, extra={**SETS, "transaction.state.log.replication.factor": "1"})
    request.node._strata_brokers = c.nodes
    c.start_all()
    c.wait_ready()
    yield c
    c.cleanup()


def test_leaders_ask_a_coordinator_on_another_broker(three_nodes):
    topic = "txv-remote"
    # One replica per partition, spread over the three brokers: at least two of them lead a
    # partition of a transaction that another broker coordinates.
    a = AdminClient({"bootstrap.servers": three_nodes.bootstrap()})
    for f in a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        f.result(30)
    p = txn_producer(three_nodes.bootstrap(), "tv-remote")
    for tag, commit in {"c": True, "a": False}.items():
        p.begin_transaction()
        for i in range(9):
            p.produce(topic, value=f"{tag}-{i}".encode(), partition=i % 3)
        p.flush(30)
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    committed = sorted(f"c-{i}" for i in range(9))
    assert sorted(read_all(three_nodes.bootstrap(), topic, 3, "read_committed", 9)) == committed
    v = verifications(three_nodes.nodes)
    # Three partitions, two transactions: six questions, at least four to another broker
    # (the coordinator leads at most one of the three partitions).
    assert v[("local", "verified")] + v[("remote", "verified")] == 6
    assert v[("remote", "verified")] >= 4
    assert sum(n for (_, result), n in v.items() if result != "verified") == 0

