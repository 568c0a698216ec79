"""What a leader checks and rewrites in produced batches, seen by real clients: record-level
errors (KIP-467) on compacted topics and for out-of-range timestamps, broker-side
recompression (compression.type), the topic configs Kafka 4.x refuses, DescribeProducers,
OffsetFetch for several groups in one request, and telemetry (KIP-714) left unadvertised."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KpTopicPartition
from kafka import errors as kp_errors

import helpers as h
import kafka_wire
from conftest import missing

TIMEOUT_S = 20
N = 40  # records per test; every tenth is the bad one


def one_record_per_batch_producer(bootstrap, **extra) -> Producer:
    return h.producer(
        bootstrap,
        **{"linger.ms": 0, "batch.num.messages": 1, "enable.idempotence": False, "retries": 0},
        **extra,
    )


def kp_producer(bootstrap, **extra) -> KafkaProducer:
    conf = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=0,
        enable_idempotence=False,
        retries=0,
        request_timeout_ms=10000,
        max_block_ms=10000,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def kp_read(bootstrap, topic, expected) -> list:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", request_timeout_ms=15000,
    )
    try:
        c.assign([KpTopicPartition(topic, 0)])
        out = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(out) < expected:
            assert time.monotonic() < deadline, f"timed out with {len(out)} of {expected}"
            for recs in c.poll(timeout_ms=500).values():
                out.extend(recs)
        for recs in c.poll(timeout_ms=300).values():
            out.extend(recs)
        return out
    finally:
        c.close()


def test_keyless_records_fail_alone_on_a_compacted_topic_confluent(broker):
    topic = "rv-compacted-ck"
    h.create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    p = one_record_per_batch_producer(broker.bootstrap)
    d = h.Deliveries()
    for i in range(N):
        key = None if i % 10 == 9 else b"k%d" % i
        p.produce(topic, key=key, value=b"v%d" % i, partition=0, on_delivery=d)
        p.poll(0)
    h.flush_all(p)
    failed = sorted(int(m.value()[1:]) for _, m in d.failed)
    assert failed == [i for i in range(N) if i % 10 == 9]
    assert {e.code() for e, _ in d.failed} == {KafkaError.INVALID_RECORD}
    ok = sorted((m.offset(), m.key(), m.value()) for m in d.ok)
    expected_values = [b"v%d" % i for i in range(N) if i % 10 != 9]
    assert [v for _, _, v in ok] == expected_values
    got = h.read_partitions(broker.bootstrap, topic, [0])
    assert [(r.offset, r.key, r.value) for r in got] == ok
    assert [r.offset for r in got] == list(range(len(expected_values)))


def test_keyless_records_fail_alone_on_a_compacted_topic_kafka_python(broker):
    topic = "rv-compacted-kp"
    h.create_topic(broker.bootstrap, topic, 1, {"cleanup.policy": "compact"})
    p = kp_producer(broker.bootstrap)
    failed, ok = [], []
    try:
        for i in range(N):
            key = None if i % 10 == 9 else b"k%d" % i
            try:
                md = p.send(topic, key=key, value=b"v%d" % i, partition=0).get(timeout=TIMEOUT_S)
                ok.append((md.offset, key, b"v%d" % i))
            except kp_errors.InvalidRecordError:
                failed.append(i)
    finally:
        p.close()
    assert failed == [i for i in range(N) if i % 10 == 9]
    got = kp_read(broker.bootstrap, topic, len(ok))
    assert [(r.offset, r.key, r.value) for r in got] == ok


def test_timestamps_out_of_range_are_refused(broker):
    topic = "rv-recent"
    h.create_topic(broker.bootstrap, topic, 1, {"message.timestamp.before.max.ms": "60000"})
    p = one_record_per_batch_producer(broker.bootstrap)
    d = h.Deliveries()
    now = int(time.time() * 1000)
    stamps = {"old": now - 3_600_000, "now": now, "future": now + 2 * 3_600_000, "soon": now + 60_000}
    for name, ts in stamps.items():
        p.produce(topic, value=name.encode(), partition=0, timestamp=ts, on_delivery=d)
    h.flush_all(p)
    assert sorted(m.value() for _, m in d.failed) == [b"future", b"old"]
    assert {e.code() for e, _ in d.failed} == {KafkaError.INVALID_TIMESTAMP}
    got = h.read_partitions(broker.bootstrap, topic, [0])
    assert [(r.value, r.timestamp[1]) for r in got] == [(b"now", now), (b"soon", now + 60_000)]

    kp = kp_producer(broker.bootstrap)
    try:
        with pytest.raises(kp_errors.InvalidTimestampError):
            kp.send(topic, value=b"kp-old", partition=0, timestamp_ms=now - 7_200_000).get(timeout=TIMEOUT_S)
    finally:
        kp.close()


def batch_codecs(bootstrap, topic) -> list[int]:
    """The compression codec of every stored batch, read raw off the wire (Fetch v4)."""
    codecs, offset = [], 0
    with kafka_wire.Connection(bootstrap) as conn:
        while True:
            [(_, err, hw, records)] = conn.fetch_v4(topic, 0, offset, max_wait_ms=0)
            assert err == 0
            pos, records = 0, records or b""
            while pos + 61 <= len(records):
                base, length = struct.unpack_from(">qi", records, pos)
                attributes, last_delta = struct.unpack_from(">hi", records, pos + 21)
                codecs.append(attributes & 7)
                offset = base + last_delta + 1
                pos += 12 + length
            if offset >= hw or pos == 0:
                return codecs


def test_a_zstd_topic_serves_zstd_batches_identical_to_what_was_sent(broker):
    topic = "rv-zstd"
    h.create_topic(broker.bootstrap, topic, 1, {"compression.type": "zstd", "compression.zstd.level": "7"})
    sent = []
    for codec in ["none", "gzip", "lz4"]:
        p = h.producer(broker.bootstrap, **{"compression.type": codec, "linger.ms": 50})
        d = h.Deliveries()
        for i in range(100):
            key, value = b"%s-%d" % (codec.encode(), i), (b"%s value %d " % (codec.encode(), i)) * (1 + i % 7)
            p.produce(topic, key=key, value=value, partition=0, on_delivery=d)
            sent.append((key, value))
        h.flush_all(p)
        d.assert_all_ok(100)
    kp = kp_producer(broker.bootstrap, compression_type="gzip", linger_ms=20)
    try:
        for i in range(50):
            key, value = b"kp-%d" % i, b"\x00\xffbinary\x01" * (i + 1)
            kp.send(topic, key=key, value=value, partition=0)
            sent.append((key, value))
        kp.flush(timeout=TIMEOUT_S)
    finally:
        kp.close()

    codecs = batch_codecs(broker.bootstrap, topic)
    assert codecs and set(codecs) == {4}, codecs

    got = h.read_partitions(broker.bootstrap, topic, [0])
    assert [(r.key, r.value) for r in got] == sent
    assert [r.offset for r in got] == list(range(len(sent)))
    assert [(r.key, r.value) for r in kp_read(broker.bootstrap, topic, len(sent))] == sent

    kcat = shutil.which("kcat")
    if kcat is None:
        missing("kcat is not installed (scripts/install-test-deps.sh)")
    out = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-t", topic, "-p", "0", "-C", "-e", "-o", "beginning", "-q",
         "-c", "300", "-f", "%k\t%s\n"],
        capture_output=True, timeout=60, check=True,
    ).stdout
    assert out.splitlines() == [k + b"\t" + v for k, v in sent[:300]]


def test_removed_and_invalid_configs_are_refused_as_kafka_4_does(broker):
    a = h.admin(broker.bootstrap)
    for key, value, message in [
        ("message.format.version", "3.0", "Unknown topic config name: message.format.version"),
        ("message.downconversion.enable", "true", "Unknown topic config name: message.downconversion.enable"),
        ("message.timestamp.difference.max.ms", "1000",
         "Unknown topic config name: message.timestamp.difference.max.ms"),
        ("compression.zstd.level", "23",
         "Invalid value 23 for configuration compression.zstd.level: Value must be no more than 22"),
    ]:
        fs = a.create_topics([NewTopic("rv-refused", 1, 1, config={key: value})], request_timeout=TIMEOUT_S)
        with pytest.raises(KafkaException) as e:
            fs["rv-refused"].result(timeout=TIMEOUT_S)
        err = e.value.args[0]
        assert (err.code(), err.str()) == (KafkaError.INVALID_CONFIG, message)
    # Kafka 4.x keys Strata stores without acting on are accepted.
    h.create_topic(a, "rv-accepted", 1, {"segment.jitter.ms": "10", "max.compaction.lag.ms": "60000"})


def test_describe_producers_kafka_python(broker):
    topic = "rv-producers"
    h.create_topic(broker.bootstrap, topic, 2)
    p = kp_producer(broker.bootstrap, enable_idempotence=True, acks="all", retries=3)
    try:
        for i in range(5):
            p.send(topic, value=b"%d" % i, partition=0).get(timeout=TIMEOUT_S)
    finally:
        p.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        states = admin.describe_producers([KpTopicPartition(topic, 0), KpTopicPartition(topic, 1)])
    finally:
        admin.close()
    [producer] = states[KpTopicPartition(topic, 0)].active_producers
    assert producer.producer_id >= 0
    assert (producer.producer_epoch, producer.last_sequence) == (0, 4)
    assert (producer.coordinator_epoch, producer.current_transaction_start_offset) == (-1, -1)
    assert states[KpTopicPartition(topic, 1)].active_producers == []


def test_offset_fetch_for_several_groups_in_one_request(broker):
    topic = "rv-groups"
    h.create_topic(broker.bootstrap, topic, 2)
    from confluent_kafka import Consumer

    for g, offsets in {"g-a": (3, 7), "g-b": (11, 0), "g-c": (5, 5)}.items():
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": g, "enable.auto.commit": False})
        try:
            # The first commits may find __consumer_offsets still being created and loaded.
            deadline = time.monotonic() + TIMEOUT_S
            while True:
                try:
                    c.commit(offsets=[TopicPartition(topic, i, o) for i, o in enumerate(offsets)],
                             asynchronous=False)
                    break
                except KafkaException as e:
                    retriable = e.args[0].code() in (KafkaError.NOT_COORDINATOR,
                                                     KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                     KafkaError.COORDINATOR_NOT_AVAILABLE)
                    if not retriable or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        finally:
            c.close()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        # kafka-python sends one OffsetFetch v8 naming all three groups (KIP-709).
        got = admin.list_group_offsets(["g-a", "g-b", "g-c", "g-none"])
    finally:
        admin.close()
    flat = {g: {tp.partition: om.offset for tp, om in offs.items()} for g, offs in got.items()}
    assert flat == {"g-a": {0: 3, 1: 7}, "g-b": {0: 11, 1: 0}, "g-c": {0: 5, 1: 5}, "g-none": {}}


def test_telemetry_is_not_advertised_and_clients_do_not_complain(broker):
    """KIP-714: confluent-kafka enables metrics push by default; with GetTelemetrySubscriptions
    unadvertised it must stay quiet, not log errors."""
    with kafka_wire.Connection(broker.bootstrap) as conn:
        err, apis, *_ = kafka_wire.api_versions(conn, 3)
    assert err == 0
    assert not set(apis) & {71, 72, 74}, "GetTelemetrySubscriptions, PushTelemetry, ListConfigResources"

    records = []

    class Capture(logging.Handler):
        def emit(self, record):
            records.append(record)

    log = logging.getLogger("rv-telemetry")
    log.addHandler(Capture())
    log.setLevel(logging.DEBUG)
    h.create_topic(broker.bootstrap, "rv-telemetry", 1)
    p = h.producer(broker.bootstrap, logger=log, **{"enable.metrics.push": True, "debug": "telemetry"})
    d = h.Deliveries()
    p.produce("rv-telemetry", value=b"x", on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(1)
    p.poll(1.0)
    loud = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert not loud, loud


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "uncompressed"])
def test_every_broker_codec_is_read_by_both_clients(broker, codec):
    """Each codec as Strata frames it (snappy-java blocks, an LZ4 frame, gzip) decodes in
    librdkafka (with CRC checks) and in kafka-python."""
    topic = f"rv-codec-{codec}"
    h.create_topic(broker.bootstrap, topic, 1, {"compression.type": codec, "compression.lz4.level": "1"})
    source = "zstd" if codec == "uncompressed" else "none"
    p = h.producer(broker.bootstrap, **{"compression.type": source, "linger.ms": 20})
    sent = [(b"k%d" % i, bytes(range(256)) * (1 + i % 40)) for i in range(60)]
    for k, v in sent:
        p.produce(topic, key=k, value=v, partition=0)
    h.flush_all(p)
    want = {"gzip": 1, "snappy": 2, "lz4": 3, "uncompressed": 0}[codec]
    assert set(batch_codecs(broker.bootstrap, topic)) == {want}
    assert [(r.key, r.value) for r in h.read_partitions(broker.bootstrap, topic, [0])] == sent
    assert [(r.key, r.value) for r in kp_read(broker.bootstrap, topic, len(sent))] == sent
