"""Consumer groups with confluent-kafka (librdkafka): rebalances, commits, resume, restart."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

GROUP_SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}


def create_topic(bootstrap: str, name: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for f in fs.values():
        f.result(30)


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int) -> set[str]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = set()
    for part in range(partitions):
        for i in range(per_partition):
            v = f"{part}-{i}"
            values.add(v)
            p.produce(topic, value=v.encode(), key=str(i).encode(), partition=part)
    assert p.flush(30) == 0
    return values


def consumer(bootstrap: str, group: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    conf.update(extra)
    return Consumer(conf)


def assignments(consumers):
    return [{(tp.topic, tp.partition) for tp in c.assignment()} for c in consumers]


def poll_all(consumers, seconds: float, sink: list | None = None):
    """Polls every consumer round-robin; returns {consumer index: [messages]}. With a `sink`,
    each consumer also commits what it read and the values go to the sink."""
    got = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                got[i].append(m)
                if sink is not None:
                    sink.append(m.value().decode())
                    c.commit(message=m, asynchronous=False)
    return got


def settle(consumers, partitions: int, timeout: float = 40, sink: list | None = None):
    """Polls until the members' assignments cover every partition exactly once."""

    def balanced():
        poll_all(consumers, 0.3, sink)
        a = assignments(consumers)
        flat = [tp for s in a for tp in s]
        return len(flat) == partitions and len(set(flat)) == partitions and all(a)

    wait_until(balanced, timeout, "a balanced assignment")


def test_three_consumers_share_partitions_and_rebalance(broker_factory):
    b = broker_factory(GROUP_SETS)
    topic = f"grp-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 6)
    values = produce(b.bootstrap, topic, 6, 20)

    consumers = [consumer(b.bootstrap, group, **{"client.id": f"c{i}"}) for i in range(3)]
    try:
        seen: list[str] = []
        for c in consumers:
            c.subscribe([topic])
        settle(consumers, 6, sink=seen)
        a = assignments(consumers)
        assert all(len(s) == 2 for s in a), a

        # Each consumer reads (and commits, record by record) part of what it is assigned.
        poll_all(consumers, 0.5, seen)

        # One member leaves; the other two take over its partitions.
        leaving = consumers.pop()
        leaving.close()
        settle(consumers, 6, sink=seen)
        a = assignments(consumers)
        assert sorted(len(s) for s in a) == [3, 3], a

        deadline = time.monotonic() + 30
        while len(seen) < len(values) and time.monotonic() < deadline:
            poll_all(consumers, 1, seen)
        # Everything read once across the group: nothing missing, nothing twice.
        assert sorted(seen) == sorted(values)

        # Commits read back.
        committed = consumers[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
        assert {tp.partition: tp.offset for tp in committed} == {p: 20 for p in range(6)}
    finally:
        for c in consumers:
            c.close()


def test_resume_at_committed_offsets_and_survive_sigkill(broker_factory):
    b = broker_factory(GROUP_SETS)
    topic = f"res-{uuid.uuid4().hex[:8]}"
    group = f"g-{uuid.uuid4().hex[:8]}"
    create_topic(b.bootstrap, topic, 3)
    produce(b.bootstrap, topic, 3, 10)

    # A first consumer reads everything and commits an explicit position per partition.
    c = consumer(b.bootstrap, group)
    c.subscribe([topic])
    read = poll_all([c], 5)[0]
    assert len(read) == 30
    positions = {0: 4, 1: 7, 2: 10}
    c.commit(offsets=[TopicPartition(topic, p, o) for p, o in positions.items()], asynchronous=False)
    c.close()

    # A new member of the group resumes there and gets nothing below the committed offsets.
    c2 = consumer(b.bootstrap, group)
    c2.subscribe([topic])
    got = poll_all([c2], 5)[0]
    expected = {(p, o) for p, start in positions.items() for o in range(start, 10)}
    assert {(m.partition(), m.offset()) for m in got} == expected
    c2.close()

    # Many more commits, then SIGKILL: the last committed offsets survive the restart.
    c3 = consumer(b.bootstrap, f"{group}-standalone")
    for i in range(50):
        c3.commit(offsets=[TopicPartition(topic, p, i) for p in range(3)], asynchronous=False)
    c3.close()
    b.kill()
    b.restart()

    def committed(g):
        c = consumer(b.bootstrap, g)
        try:
            tps = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
            return {tp.partition: tp.offset for tp in tps}
        finally:
            c.close()

    assert wait_until(lambda: committed(group) == positions or None, 30, "committed offsets after restart")
    assert committed(f"{group}-standalone") == {0: 49, 1: 49, 2: 49}
