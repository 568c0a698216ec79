"""`__consumer_offsets` is compacted: many commits to the same partitions leave a bounded log."""

from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

SEGMENT_BYTES = 16384


def offsets_log_bytes(data_dir: Path) -> int:
    total = 0
    for d in data_dir.glob("__consumer_offsets-*"):
        for f in d.glob("*.log"):
            try:
                total += f.stat().st_size
            except FileNotFoundError:
                pass  # swapped out by the cleaner between listing and stat
    return total


def test_consumer_offsets_stays_bounded_after_cleaning(broker_factory):
    b = broker_factory(
        {
            "offsets.topic.num.partitions": "1",
            "offsets.topic.segment.bytes": str(SEGMENT_BYTES),
            "group.initial.rebalance.delay.ms": "0",
        }
    )
    topic = f"cmp-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        f.result(30)

    group = f"cg-{uuid.uuid4().hex[:8]}"
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group, "enable.auto.commit": False})
    commits = 1500
    for i in range(commits):
        c.commit(offsets=[TopicPartition(topic, p, i) for p in range(3)], asynchronous=False)
    written = offsets_log_bytes(b.data_dir)
    # Each commit is a record batch of three offset records: far more than a few segments.
    assert written > 10 * SEGMENT_BYTES, written

    # The cleaner keeps only the latest record per key in closed segments.
    bound = 3 * SEGMENT_BYTES
    wait_until(lambda: offsets_log_bytes(b.data_dir) < bound, 60, f"__consumer_offsets under {bound} bytes")

    # The compacted log still holds the latest commits, in memory and after a reload.
    tps = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    assert {tp.partition: tp.offset for tp in tps} == {0: commits - 1, 1: commits - 1, 2: commits - 1}
    c.close()
    b.kill()
    b.restart()
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": group})
    tps = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=20)
    assert {tp.partition: tp.offset for tp in tps} == {0: commits - 1, 1: commits - 1, 2: commits - 1}
    c.close()
