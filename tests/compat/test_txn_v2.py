"""Transaction version 2 (KIP-890 part 2) on the wire, through kafka-python 3.0.12's protocol
classes at the versions a transaction version 2 producer sends (none of the clients here
drives version 2 itself: librdkafka and kafka-python stop at version 1, kafkajs before it).

The producer never sends AddPartitionsToTxn or AddOffsetsToTxn: Produce v12 and
TxnOffsetCommit v5 put the partition in the transaction at the leader. Every EndTxn v5 bumps the
epoch and answers the one to go on with, so a late batch of an ended transaction is fenced at
the partition. confluent-kafka's read_committed consumer then sees exactly the committed
records, and the group's committed offset is the one of the committed transaction.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import KafkaAdminClient
from kafka.protocol.admin import DescribeTransactionsRequest
from kafka.protocol.producer import EndTxnRequest, ProduceRequest, TxnOffsetCommitRequest

import struct

import kafka_wire as wire
from conftest import wait_until
from test_transactions import txn_batch
from test_txn_coordinator import create_topic, read_all
from test_txn_verification import init_producer_id

SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
}
TOPIC = "tv2"
TXN_ID = "tv2-producer"
INVALID_PRODUCER_EPOCH = 47
INVALID_CONFIG = 40


def send(admin: KafkaAdminClient, request):
    async def go():
        return await admin._manager.send(request, node_id=1)

    return admin._manager.run(go)


def produce(admin, pid: int, epoch: int, seq: int, partition: int, values: list[bytes]) -> tuple[int, int]:
    """Produce v12 (acks=all) of one transactional batch; (error code, base offset)."""
    data = ProduceRequest.TopicProduceData
    request = ProduceRequest(
        transactional_id=TXN_ID, acks=-1, timeout_ms=10000,
        topic_data=[data(name=TOPIC, partition_data=[data.PartitionProduceData(
            index=partition, records=txn_batch(pid, epoch, seq, values))])],
        min_version=12, max_version=12,
    )
    [topic] = send(admin, request).responses
    [p] = topic.partition_responses
    return p.error_code, p.base_offset


def end_txn(admin, pid: int, epoch: int, commit: bool) -> tuple[int, int, int]:
    """EndTxn v5; (error code, producer id, producer epoch) from the answer."""
    r = send(admin, EndTxnRequest(transactional_id=TXN_ID, producer_id=pid, producer_epoch=epoch,
                                  committed=commit, min_version=5, max_version=5))
    return r.error_code, r.producer_id, r.producer_epoch


def wait_complete(admin):
    """Until the coordinator has written the ended transaction's markers. An EndTxn at the
    epoch an end answered, sent while that transaction is still PrepareCommit or
    PrepareAbort, is fenced (Kafka's endTransaction for transaction version 2 does the same),
    so a producer's next end waits for it as its next send does."""
    def complete():
        [t] = send(admin, DescribeTransactionsRequest(transactional_ids=[TXN_ID], min_version=0, max_version=0)).transaction_states
        assert t.error_code == 0
        return t.transaction_state in ("CompleteCommit", "CompleteAbort")

    wait_until(complete, 30, "the transaction to complete", interval=0.05)


def txn_offset_commit(admin, group: str, pid: int, epoch: int, offset: int) -> int:
    """TxnOffsetCommit v5 of `offset` on partition 0 for `group`; the partition's error code."""
    t = TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic
    request = TxnOffsetCommitRequest(
        transactional_id=TXN_ID, group_id=group, producer_id=pid, producer_epoch=epoch,
        generation_id=-1, member_id="", group_instance_id=None,
        topics=[t(name=TOPIC, partitions=[t.TxnOffsetCommitRequestPartition(
            partition_index=0, committed_offset=offset, committed_leader_epoch=-1, committed_metadata="")])],
        min_version=5, max_version=5,
    )
    [topic] = send(admin, request).topics
    [p] = topic.partitions
    return p.error_code


def find_group_coordinator(c: wire.Connection, group: str):
    """FindCoordinator v1 for `group` (which creates `__consumer_offsets`), as a producer asks
    before its first TxnOffsetCommit; retried while the coordinator comes up."""
    def found():
        r = c.request(10, 1, wire.string(group) + struct.pack(">b", 0))
        r.take(">i")
        return r.take(">h") == 0

    wait_until(found, 30, "FindCoordinator", interval=0.2)


def committed(bootstrap: str, group: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        [tp] = c.committed([TopicPartition(TOPIC, 0)], timeout=10)
        return tp.offset
    finally:
        c.close()


def set_level(bootstrap: str, value: str):
    """The finalized transaction.version level (confluent-kafka names no default resource;
    Strata stores a broker resource's dynamic configs cluster-wide)."""
    entry = ConfigEntry("strata.feature.transaction.version", value, incremental_operation=AlterConfigOpType.SET)
    res = ConfigResource(ResourceType.BROKER, "1", incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.incremental_alter_configs([res]).values():
        f.result(10)


@pytest.mark.timeout(120)
def test_a_version_2_producer_adds_nothing_itself_and_moves_to_a_new_epoch_at_each_end(broker_factory):
    b = broker_factory(SETS)
    create_topic(b.bootstrap, TOPIC, 2)
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        features = admin.describe_features()
        assert features["transaction.version"]["supported"] == (0, 2)
        assert features["transaction.version"]["finalized"] == (2, 2)

        with wire.Connection(b.bootstrap) as c:
            pid, epoch = init_producer_id(c, TXN_ID)
            find_group_coordinator(c, "g")
        assert epoch == 0

        # Transaction 1, committed: two partitions, no AddPartitionsToTxn.
        assert produce(admin, pid, 0, 0, 0, [b"c-0", b"c-1"]) == (0, 0)
        assert produce(admin, pid, 0, 0, 1, [b"c-2"]) == (0, 0)
        assert produce(admin, pid, 0, 2, 0, [b"c-3"]) == (0, 2)
        assert end_txn(admin, pid, 0, commit=True) == (0, pid, 1)
        # Retried, the commit gets the same answer and writes nothing more.
        assert end_txn(admin, pid, 0, commit=True) in [(0, pid, 1), (51, -1, -1)]  # 51: still completing

        # Transaction 2 at epoch 1 starts at sequence 0, and the group's offset goes with it.
        assert produce(admin, pid, 1, 0, 0, [b"a-0"])[0] == 0
        assert txn_offset_commit(admin, "g", pid, 1, 111) == 0
        # A late batch of transaction 1 is fenced: its markers carry epoch 1.
        assert produce(admin, pid, 0, 3, 1, [b"late"])[0] == INVALID_PRODUCER_EPOCH
        assert end_txn(admin, pid, 1, commit=False) == (0, pid, 2)

        # Transaction 3 commits only an offset.
        assert txn_offset_commit(admin, "g", pid, 2, 222) == 0
        assert end_txn(admin, pid, 2, commit=True) == (0, pid, 3)
        # An end at epoch 3 while that commit's markers are still being written would be
        # fenced (they can take a moment): the producer waits for them first.
        wait_complete(admin)
        # An abort with nothing added is allowed and bumps the epoch too.
        assert end_txn(admin, pid, 3, commit=False) == (0, pid, 4)
        # The old epoch is fenced.
        assert end_txn(admin, pid, 3, commit=True)[0] in (INVALID_PRODUCER_EPOCH, 90, 48)
    finally:
        admin.close()

    assert sorted(read_all(b.bootstrap, TOPIC, 2, "read_committed", 4)) == ["c-0", "c-1", "c-2", "c-3"]
    assert sorted(read_all(b.bootstrap, TOPIC, 2, "read_uncommitted", 5)) == ["a-0", "c-0", "c-1", "c-2", "c-3"]
    assert committed(b.bootstrap, "g") == 222


@pytest.mark.timeout(60)
def test_the_finalized_level_follows_the_cluster_config(broker_factory):
    b = broker_factory(SETS)
    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        before = admin.describe_features()["transaction.version"]
        assert before["finalized"] == (2, 2)
        set_level(b.bootstrap, "0")
        after = admin.describe_features()["transaction.version"]
        assert "finalized" not in after and after["supported"] == (0, 2)
        set_level(b.bootstrap, "1")
        now = admin.describe_features()["transaction.version"]
        assert now["finalized"] == (1, 1)
        assert now["finalized_epoch"] > before["finalized_epoch"]
    finally:
        admin.close()
    with pytest.raises(Exception) as refused:
        set_level(b.bootstrap, "3")
    assert "no more than 2" in str(refused.value)
