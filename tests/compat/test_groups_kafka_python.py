"""Consumer groups and group administration with kafka-python."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from conftest import wait_until

GROUP_SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}


def setup_topic(bootstrap: str, topic: str, partitions: int, count: int) -> set[bytes]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    p = KafkaProducer(bootstrap_servers=bootstrap)
    values = set()
    for i in range(count):
        v = f"v{i}".encode()
        values.add(v)
        p.send(topic, value=v, partition=i % partitions)
    p.flush()
    p.close()
    return values


def group_consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        consumer_timeout_ms=15000,
    )


def read_all(c: KafkaConsumer, want: int) -> list:
    out = []
    deadline = time.monotonic() + 30
    while len(out) < want and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():
            out.extend(records)
    return out


def test_kafka_python_group_consumes_end_to_end(broker_factory):
    b = broker_factory(GROUP_SETS)
    topic = f"kp-{uuid.uuid4().hex[:8]}"
    group = f"kpg-{uuid.uuid4().hex[:8]}"
    values = setup_topic(b.bootstrap, topic, 4, 100)

    c = group_consumer(b.bootstrap, topic, group)
    got = read_all(c, 100)
    assert {r.value for r in got} == values and len(got) == 100
    c.commit()
    assert {p: c.committed(TopicPartition(topic, p)) for p in range(4)} == {p: 25 for p in range(4)}
    c.close()

    # A second consumer in the group starts at the committed offsets and finds nothing left.
    c2 = group_consumer(b.bootstrap, topic, group)
    got = []
    deadline = time.monotonic() + 30
    while len(c2.assignment()) < 4 and time.monotonic() < deadline:
        for records in c2.poll(timeout_ms=200).values():
            got.extend(records)
    assert c2.assignment() == {TopicPartition(topic, p) for p in range(4)}
    assert {p: c2.position(TopicPartition(topic, p)) for p in range(4)} == {p: 25 for p in range(4)}
    for _ in range(5):
        for records in c2.poll(timeout_ms=200).values():
            got.extend(records)
    assert got == []
    c2.close()


def test_kafka_python_admin_lists_describes_and_deletes_groups(broker_factory):
    b = broker_factory(GROUP_SETS)
    topic = f"kpa-{uuid.uuid4().hex[:8]}"
    group = f"kpag-{uuid.uuid4().hex[:8]}"
    setup_topic(b.bootstrap, topic, 2, 10)

    c = group_consumer(b.bootstrap, topic, group)
    assert len(read_all(c, 10)) == 10
    c.commit()

    admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
    try:
        listed = {g["group_id"]: g for g in admin.list_groups()}
        assert listed[group]["protocol_type"] == "consumer", listed
        assert listed[group]["group_state"] == "Stable", listed
        assert group in {g["group_id"] for g in admin.list_groups(states_filter=["Stable"])}
        assert group not in {g["group_id"] for g in admin.list_groups(states_filter=["Empty"])}

        desc = admin.describe_groups([group])[group]
        assert desc["error"] is None, desc
        assert desc["group_state"] == "Stable", desc
        assert desc["protocol_type"] == "consumer", desc
        assert len(desc["members"]) == 1, desc
        member = desc["members"][0]
        assert member["client_host"] == "/127.0.0.1", member
        assert topic in str(member["member_assignment"]), member

        offsets = admin.list_group_offsets(group)[group]
        assert {tp.partition: om.offset for tp, om in offsets.items()} == {0: 5, 1: 5}

        # A group with a member cannot be deleted.
        assert dict(admin.delete_groups([group]))[group] == "NonEmptyGroupError"

        c.close()
        wait_until(
            lambda: admin.describe_groups([group])[group]["group_state"] == "Empty",
            20,
            "the group to become empty",
        )
        assert group in {g["group_id"] for g in admin.list_groups(states_filter=["empty"])}
        assert dict(admin.delete_groups([group]))[group] == "OK"
        assert group not in {g["group_id"] for g in admin.list_groups()}
        assert admin.list_group_offsets(group)[group] == {}
        assert dict(admin.delete_groups([group]))[group] == "GroupIdNotFoundError"
    finally:
        admin.close()
