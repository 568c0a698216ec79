"""A new replica of a tiered topic copies only the hot tail: moving a partition to a new broker
(AlterPartitionReassignments, through kafka-python's KafkaAdminClient) on four `strata serve`
processes that tier to one `file://` bucket.

A tiered topic's partition of several MB, all but its active segment uploaded (and all of it
still on the leader's disk too), moves from broker 1 to the empty broker 4. Broker 4 starts its log after the remote log's end and fetches only the leader's tail:
its `strata_replication_fetch_bytes_total` for the partition stays under 5% of the bytes the
partition holds. Once broker 1 has dropped its copy, every record is read back from broker 4
from offset 0, offset by offset and byte for byte (the history from the bucket, the tail from
its disk); the idempotent producer that wrote it carries on against broker 4, which took its
state from the remote producer snapshot; and broker 4, now the leader, uploads from its local log start on: the manifest stays
one contiguous run from offset 0, nothing uploaded twice, nothing deleted. The same move of an
untiered topic of the same size copies all of it.

`STRATA_HOT_TAIL_BENCH_MB` turns `test_hot_tail_bench` on: the same two moves at that size
(scripts/bench-hot-tail.sh, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, TopicPartition as CTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient, TopicPartition

from conftest import wait_until
from helpers import consumer, flush_all, producer
from test_cluster import Cluster
from test_metrics import get, series

SEGMENT_BYTES = 128 * 1024
RECORD_BYTES = 1000


_PATTERN = bytes(range(251)) * (70 * 1024 // 251 + 2)


def value_for(i: int, size: int = RECORD_BYTES) -> bytes:
    """Record i: its index, then bytes that differ from one record to the next (at most 64 KiB)."""
    head = f"{i:010d}:".encode()
    at = (i * 7) % 251
    return head + _PATTERN[at:at + size - len(head)]


def topic_configs(tiered: bool, segment_bytes: int = SEGMENT_BYTES) -> dict[str, str]:
    # The leader keeps every segment on its disk too (local retention as total retention):
    # only the new replica's start after the remote end keeps the uploaded part from being
    # copied.
    return {"segment.bytes": str(segment_bytes), "retention.ms": "-1",
            "remote.storage.enable": "true" if tiered else "false"}


def leader_of(bootstrap: str, topic: str) -> tuple[list[int], int] | None:
    md = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000}).list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error or 0 not in t.partitions:
        return None
    return list(t.partitions[0].replicas), t.partitions[0].leader


def idempotent_producer(bootstrap: str, batch_bytes: int = 64 * 1024):
    return producer(bootstrap, **{"acks": "all", "enable.idempotence": True, "linger.ms": 20,
                                  "batch.size": batch_bytes, "message.timeout.ms": 600_000,
                                  "topic.metadata.refresh.interval.ms": 1000})


def produce(bootstrap: str, topic: str, first: int, count: int, size: int = RECORD_BYTES, p=None):
    p = p or idempotent_producer(bootstrap)
    errors = []
    for i in range(first, first + count):
        while True:
            try:
                p.produce(topic, value_for(i, size), partition=0,
                          on_delivery=lambda err, _m: err and errors.append(err))
                break
            except BufferError:
                p.poll(0.05)
    flush_all(p, 300)
    assert not errors, errors[:3]


def metric(broker, name: str, **want) -> float:
    status, text = get(broker, "/metrics")
    assert status == 200
    total = 0.0
    for labels, v in series(text, name).items():
        if all((k, val) in labels for k, val in want.items()):
            total += v
    return total


def manifest(bucket: Path, topic: str) -> list[dict]:
    found = [p for p in bucket.rglob("manifest.json") if p.parent.parent.name.startswith(f"{topic}-")]
    if not found:
        return []
    body = found[0].read_text().rsplit("\ncrc32:", 1)[0]
    return [s for s in json.loads(body)["segments"] if s["state"] == "CopySegmentFinished"]


def contiguous_from_zero(segs: list[dict]) -> bool:
    if not segs or segs[0]["base_offset"] != 0:
        return False
    return all(b["base_offset"] == a["end_offset"] + 1 for a, b in zip(segs, segs[1:]))


def active_base(part_dir: Path) -> int:
    return max(int(p.stem) for p in part_dir.glob("*.log"))


def read_back(bootstrap: str, topic: str, count: int, size: int = RECORD_BYTES):
    """Every record from offset 0, checked offset by offset and byte for byte."""
    c = consumer(bootstrap, **{"fetch.max.bytes": 8 << 20, "max.partition.fetch.bytes": 4 << 20})
    c.assign([CTopicPartition(topic, 0, 0)])
    expected = 0
    deadline = time.monotonic() + 120
    try:
        while expected < count:
            assert time.monotonic() < deadline, f"read {expected} of {count} records of {topic}"
            for m in c.consume(2000, timeout=1.0):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    continue
                assert m.offset() == expected, (m.offset(), expected)
                assert m.value() == value_for(expected, size), f"content of {topic} offset {expected}"
                expected += 1
    finally:
        c.close()


def move_to_new_broker(cluster: Cluster, admin: KafkaAdminClient, topic: str, tiered: bool,
                       records: int, size: int = RECORD_BYTES, bucket: Path | None = None,
                       segment_bytes: int = SEGMENT_BYTES, wait_s: float = 60,
                       p=None) -> tuple[float, float, float]:
    """Creates `topic` on broker 1, fills it, moves it to broker 4 and waits until broker 1 has
    dropped its copy. Returns (bytes broker 4 fetched for it, bytes produced into it, seconds
    from the reassignment to its end)."""
    boot = cluster.bootstrap()
    creator = AdminClient({"bootstrap.servers": boot})
    creator.create_topics(
        [NewTopic(topic, num_partitions=1, replica_assignment=[[1]], config=topic_configs(tiered, segment_bytes))],
        operation_timeout=10,
    )[topic].result(timeout=10)
    wait_until(lambda: leader_of(boot, topic) == ([1], 1), 20, f"{topic} on broker 1")
    produce(boot, topic, 0, records, size, p)
    # The per-topic counters are refreshed from the replicas, not at each append.
    produced = wait_until(
        lambda: (v := metric(cluster.node(1), "strata_broker_topic_in_bytes_total", topic=topic)) >= records * size and v,
        20, f"broker 1 to count {topic}'s bytes")
    part_dir = cluster.node(1).data_dir / f"{topic}-0"
    if tiered:
        # Every sealed segment uploaded; the leader still holds them all locally.
        def uploaded():
            segs = manifest(bucket, topic)
            return (segs and contiguous_from_zero(segs)
                    and segs[-1]["end_offset"] + 1 == active_base(part_dir))
        wait_until(uploaded, wait_s, f"{topic}'s sealed segments uploaded", interval=0.2)
    before = metric(cluster.node(4), "strata_replication_fetch_bytes_total", topic=topic, partition="0")
    tp = TopicPartition(topic, 0)
    t0 = time.monotonic()
    assert admin.alter_partition_reassignments({tp: [4]}) == {tp: None}
    wait_until(lambda: admin.list_partition_reassignments() == {}, wait_s, f"the move of {topic}", interval=0.1)
    moved_s = time.monotonic() - t0
    wait_until(lambda: leader_of(boot, topic) == ([4], 4), 20, f"broker 4 to lead {topic}")
    wait_until(lambda: not part_dir.exists(), 20, f"broker 1 to delete its copy of {topic}")
    fetched = metric(cluster.node(4), "strata_replication_fetch_bytes_total", topic=topic, partition="0") - before
    return fetched, produced, moved_s


def start_cluster(tmp_path, request, bucket: Path) -> Cluster:
    cluster = Cluster(tmp_path, n=3, broker_only=1, extra={
        "auto.leader.rebalance.enable": "false",
        # Only the moves the test makes: the balancer would fill the empty broker 4 by itself.
        "strata.balancer.enable": "false",
        "remote.storage.uri": f"file://{bucket}",
        "remote.log.manager.task.interval.ms": "100",
        "log.retention.check.interval.ms": "500",
    })
    request.node._strata_brokers = cluster.nodes
    for b in cluster.nodes:
        b.start()
    cluster.wait_ready(4)
    return cluster


@pytest.mark.timeout(240)
def test_a_new_replica_of_a_tiered_topic_copies_only_the_hot_tail(tmp_path, request):
    bucket = tmp_path / "bucket"
    cluster = start_cluster(tmp_path, request, bucket)
    try:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30_000)
        records = 5000  # ~5 MB: 38 segments of 128 KiB
        # One idempotent producer throughout: the new leader knows it from the producer
        # snapshot it started with, so its next sequence numbers are accepted, not refused.
        p = idempotent_producer(cluster.bootstrap())
        fetched, produced, _ = move_to_new_broker(cluster, admin, "hot-tiered", True, records, bucket=bucket, p=p)
        print(f"tiered: fetched {fetched:.0f} of {produced:.0f} bytes")
        assert 0 < fetched < 0.05 * produced, (fetched, produced)
        # Broker 4 starts its local log after the remote end; what lies below is in the bucket.
        new_dir = cluster.node(4).data_dir / "hot-tiered-0"
        segs = manifest(bucket, "hot-tiered")
        assert min(int(p.stem) for p in new_dir.glob("*.log")) == segs[-1]["end_offset"] + 1
        read_back(cluster.bootstrap(), "hot-tiered", records)

        # As leader, broker 4 uploads from its local log start on: one run from offset 0.
        uploaded_before = {s["segment_id"] for s in segs}
        produce(cluster.bootstrap(), "hot-tiered", records, 1000, p=p)
        wait_until(lambda: len(manifest(bucket, "hot-tiered")) >= len(segs) + 3, 60,
                   "broker 4 to upload its segments", interval=0.2)
        after = manifest(bucket, "hot-tiered")
        assert contiguous_from_zero(after), [(s["base_offset"], s["end_offset"]) for s in after]
        assert uploaded_before <= {s["segment_id"] for s in after}, "nothing uploaded before was deleted"
        assert after[len(segs)]["base_offset"] == segs[-1]["end_offset"] + 1
        read_back(cluster.bootstrap(), "hot-tiered", records + 1000)

        fetched_plain, produced_plain, _ = move_to_new_broker(cluster, admin, "hot-plain", False, records)
        print(f"untiered: fetched {fetched_plain:.0f} of {produced_plain:.0f} bytes")
        assert fetched_plain >= 0.95 * produced_plain, (fetched_plain, produced_plain)
        read_back(cluster.bootstrap(), "hot-plain", records)
        admin.close()
    finally:
        cluster.cleanup()


BENCH_MB = int(os.environ.get("STRATA_HOT_TAIL_BENCH_MB", "0"))


@pytest.mark.skipif(BENCH_MB <= 0, reason="set STRATA_HOT_TAIL_BENCH_MB to measure (docs/BENCHMARKS.md)")
@pytest.mark.timeout(3600)
def test_hot_tail_bench(tmp_path, request):
    """Bytes copied between brokers, and the time, to move a BENCH_MB MiB tiered partition and an
    untiered one of the same size to a new broker."""
    bucket = tmp_path / "bucket"
    cluster = start_cluster(tmp_path, request, bucket)
    try:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap(), request_timeout_ms=30_000)
        size = 16 * 1024
        records = BENCH_MB * 1024 * 1024 // size
        for topic, tiered in (("bench-tiered", True), ("bench-plain", False)):
            fetched, produced, moved_s = move_to_new_broker(
                cluster, admin, topic, tiered, records, size, bucket, segment_bytes=16 << 20, wait_s=1800,
                p=idempotent_producer(cluster.bootstrap(), batch_bytes=1 << 20))
            print(f"\n{topic}: {produced / 2**20:.0f} MiB partition; the new replica fetched "
                  f"{fetched / 2**20:.2f} MiB ({100 * fetched / produced:.2f}%) from the leader; "
                  f"move {moved_s:.1f} s")
        admin.close()
    finally:
        cluster.cleanup()
