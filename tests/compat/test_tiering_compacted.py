"""A compacted topic tiered to S3 (moto_server) with real clients.

1,000 keys are updated over and over (15 MB by default, 100 MB with STRATA_SOAK=1) and every
tenth key is then deleted, on a topic with cleanup.policy=compact and remote.storage.enable=true.
The cleaner's output goes up, local retention drops it, and remote compaction rewrites the
bucket's segments: afterwards the segments the manifest names hold each key at most once and no
deleted key (the records are counted in the objects themselves), and a consumer from offset 0
reads the newest value of every key and nothing of a deleted one.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until
from test_tiering import BUCKET, bucket_keys, moto, s3_client  # noqa: F401 (moto: fixture)

SOAK = os.environ.get("STRATA_SOAK") == "1"
KEYS = 1000
RECORD_BYTES = 1000
TOTAL_BYTES = (100 if SOAK else 15) * 1024 * 1024
ROUNDS = TOTAL_BYTES // (KEYS * RECORD_BYTES)
SEGMENT_BYTES = 1048576
TOPIC = "tiered-compacted"


def key_of(k: int) -> bytes:
    return f"key-{k:05d}".encode()


def value_of(k: int, round_: int) -> bytes:
    head = f"{k}:{round_}:".encode()
    return head + b"v" * (RECORD_BYTES - len(head))


def varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (Kafka's record fields) at `pos`: (value, next position)."""
    shift = raw = 0
    while True:
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos


def segment_records(data: bytes):
    """(offset, key, value) of every record of an uncompressed segment object; control
    batches (transaction markers) are skipped."""
    pos = 0
    while pos + 61 <= len(data):
        base = int.from_bytes(data[pos : pos + 8], "big", signed=True)
        length = int.from_bytes(data[pos + 8 : pos + 12], "big")
        attributes = int.from_bytes(data[pos + 21 : pos + 23], "big")
        count = int.from_bytes(data[pos + 57 : pos + 61], "big")
        assert attributes & 0x7 == 0, "the test writes uncompressed batches"
        at = pos + 61
        for _ in range(count):
            size, at = varint(data, at)
            end = at + size
            at += 1  # record attributes
            _, at = varint(data, at)  # timestamp delta
            delta, at = varint(data, at)
            klen, at = varint(data, at)
            key = data[at : at + klen] if klen >= 0 else None
            at += max(klen, 0)
            vlen, at = varint(data, at)
            value = data[at : at + vlen] if vlen >= 0 else None
            if not attributes & 0x20:
                yield base + delta, key, value
            at = end
        pos += 12 + length


def manifest(port: int) -> dict | None:
    keys = [k for k in bucket_keys(port) if k.endswith("manifest.json") and f"/{TOPIC}-" in k]
    if not keys:
        return None
    text = s3_client(port).get_object(Bucket=BUCKET, Key=keys[0])["Body"].read().decode()
    return json.loads(text.rsplit("\ncrc32:", 1)[0])


@pytest.mark.timeout(600 if SOAK else 240)
def test_compacted_topic_is_tiered_and_compacted_in_the_bucket(broker_factory, moto):  # noqa: F811
    port, proxy = moto
    b = broker_factory(
        {
            "remote.storage.uri": f"s3://{BUCKET}/compacted",
            "remote.storage.s3.endpoint": f"http://127.0.0.1:{proxy.port}",
            "remote.storage.s3.region": "us-east-1",
            "remote.storage.s3.path.style": "true",
            "remote.log.manager.task.interval.ms": "200",
            "remote.compaction.interval.ms": "1000",
            "log.cleaner.backoff.ms": "200",
            "log.retention.check.interval.ms": "1000",
        }
    )
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    config = {
        "cleanup.policy": "compact",
        "remote.storage.enable": "true",
        "segment.bytes": str(SEGMENT_BYTES),
        "local.retention.bytes": str(2 * SEGMENT_BYTES),
        "min.cleanable.dirty.ratio": "0.1",
        "delete.retention.ms": "0",
        "file.delete.delay.ms": "0",
    }
    admin.create_topics([NewTopic(TOPIC, 1, 1, config=config)])[TOPIC].result(30)

    p = Producer(
        {
            "bootstrap.servers": b.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "enable.idempotence": True,
            "compression.type": "none",
        }
    )
    expected: dict[bytes, bytes] = {}

    def send(key: bytes, value: bytes | None):
        while True:
            try:
                p.produce(TOPIC, key=key, value=value, partition=0)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)

    started = time.monotonic()
    for r in range(ROUNDS):
        for k in range(KEYS):
            expected[key_of(k)] = value_of(k, r)
            send(key_of(k), expected[key_of(k)])
    deleted = {key_of(k) for k in range(0, KEYS, 10)}
    for key in sorted(deleted):
        del expected[key]
        send(key, None)
    assert p.flush(60) == 0
    # Keys written once, enough to roll the segments holding the updates past the cleaner.
    for i in range(2 * SEGMENT_BYTES // RECORD_BYTES):
        key = f"filler-{i:05d}".encode()
        expected[key] = value_of(i, -1)
        send(key, expected[key])
    assert p.flush(60) == 0
    written = ROUNDS * KEYS + len(deleted)
    produced_s = time.monotonic() - started

    # The updates are uploaded and the remote log is compacted up to its end.
    def compacted():
        m = manifest(port)
        if m is None:
            return False
        live = [s for s in m["segments"] if s["state"] == "CopySegmentFinished"]
        end = max((s["end_offset"] for s in live), default=-1)
        return (
            end >= written - 1
            and m.get("compacted_end_offset") == end
            and len(live) == len(m["segments"])
        )

    wait_until(compacted, 150 if SOAK else 90, "remote compaction of the uploaded updates", 0.5)
    compacted_s = time.monotonic() - started - produced_s

    # The bucket: each key at most once, no deleted key, in the segments the manifest names.
    m = manifest(port)
    listing = bucket_keys(port)
    s3 = s3_client(port)
    in_bucket: dict[bytes, int] = {}
    remote_bytes = 0
    for seg in m["segments"]:
        key = next(k for k in listing if seg["segment_id"] in k and k.endswith(".log"))
        data = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        remote_bytes += len(data)
        for offset, k, v in segment_records(data):
            assert seg["base_offset"] <= offset <= seg["end_offset"], (offset, seg)
            in_bucket[k] = in_bucket.get(k, 0) + 1
            assert v is not None or k not in expected, f"tombstone of live key {k!r}"
    assert in_bucket, "the bucket holds the newest values"
    assert max(in_bucket.values()) == 1, [k for k, n in in_bucket.items() if n > 1][:5]
    assert not deleted & in_bucket.keys(), sorted(deleted & in_bucket.keys())[:5]
    assert len(in_bucket) <= len(expected)
    assert remote_bytes < TOTAL_BYTES // 5, remote_bytes

    # A consumer from offset 0: the newest value of every key, nothing of a deleted one.
    c = Consumer(
        {
            "bootstrap.servers": b.bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "check.crcs": True,
        }
    )
    c.assign([TopicPartition(TOPIC, 0, 0)])
    low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
    # Segments the cleaner emptied before upload leave gaps, not a later log start.
    assert low == 0, low
    seen: dict[bytes, bytes] = {}
    last = -1
    deadline = time.monotonic() + 60
    while last < high - 1:
        assert time.monotonic() < deadline, f"read up to {last} of {high}"
        for msg in c.consume(num_messages=5000, timeout=1.0):
            assert msg.error() is None, msg.error()
            assert msg.offset() > last, (msg.offset(), last)
            last = msg.offset()
            if msg.value() is None:
                seen.pop(msg.key(), None)
            else:
                seen[msg.key()] = msg.value()
    c.close()
    assert seen == expected
    print(
        f"\n{written} updates ({TOTAL_BYTES >> 20} MB) over {KEYS} keys: produced in "
        f"{produced_s:.1f} s, uploaded and compacted {compacted_s:.1f} s later; the bucket "
        f"holds {sum(in_bucket.values())} records in {len(m['segments'])} segments "
        f"({remote_bytes} bytes)"
    )
    b.stop()


@pytest.mark.timeout(180)
def test_consumer_offsets_tiered_behind_the_flag_load_from_the_remote_part(broker_factory, tmp_path):
    """With strata.remote.storage.internal.topics.enable, __consumer_offsets is tiered and its
    local log drops what went up; after a restart the coordinator loads the committed offsets
    that now live only in the remote part."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    remote_dir = tmp_path / "remote-store"
    b = broker_factory(
        {
            "remote.storage.uri": f"file://{remote_dir}",
            "strata.remote.storage.internal.topics.enable": "true",
            "offsets.topic.num.partitions": "1",
            "offsets.topic.segment.bytes": "16384",
            "log.local.retention.bytes": "32768",
            "log.cleaner.backoff.ms": "200",
            "remote.log.manager.task.interval.ms": "200",
            "remote.compaction.interval.ms": "500",
            "group.initial.rebalance.delay.ms": "0",
        }
    )
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(30)
    groups = {f"g-{i:04d}": 1000 + i for i in range(600)}

    def commit_all():
        for g, offset in groups.items():
            req = ConsumerGroupTopicPartitions(g, [TopicPartition("t", 0, offset)])
            # A partition's error comes back in the result (the coordinator may still be
            # loading the offsets topic it just created), not as an exception.
            for _ in range(50):
                done = admin.alter_consumer_group_offsets([req])[g].result(30)
                if all(tp.error is None for tp in done.topic_partitions):
                    break
                time.sleep(0.1)
            else:
                pytest.fail(f"commit of {g}: {done.topic_partitions}")

    commit_all()
    part_dir = b.data_dir / "__consumer_offsets-0"

    def local_start() -> int:
        return min(int(p.stem) for p in part_dir.glob("*.log") if p.exists())

    def uploaded_and_dropped():
        manifests = list(remote_dir.rglob("manifest.json"))
        if not any("__consumer_offsets-" in str(m) for m in manifests):
            return False
        return local_start() > 0

    wait_until(uploaded_and_dropped, 60, "__consumer_offsets uploaded and trimmed locally", 0.5)
    first_local = local_start()
    b.kill()
    b.restart()
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    # The first groups' commits are below the local log start: only the remote part has them.
    def committed(g: str):
        try:
            return admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)])[g].result(30)
        except KafkaException as e:  # the coordinator is still loading
            assert e.args[0].code() == KafkaError.COORDINATOR_LOAD_IN_PROGRESS, e
            return None

    for g in [*list(groups)[:5], *list(groups)[-2:]]:
        got = wait_until(lambda: committed(g), 30, f"the offsets of {g}", 0.2)
        assert [(tp.topic, tp.partition, tp.offset) for tp in got.topic_partitions] == [("t", 0, groups[g])], g
    assert local_start() >= first_local > 0
    b.stop()
