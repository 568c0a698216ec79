"""confluent-kafka (librdkafka, as bundled in the wheel) against Strata: admin, produce, consume.

Consumers use assign() with explicit offsets, never the group protocol (not implemented yet),
and never commit.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

import helpers as h
from conftest import wait_until

T = h.OP_TIMEOUT_S


def describe_topic_configs(a, topic: str) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return a.describe_configs([res], request_timeout=T)[res].result(timeout=T)


def partition_counts(a) -> dict[str, int]:
    md = a.list_topics(timeout=T)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated:DeprecationWarning")
def test_admin_create_describe_alter_delete(broker):
    a = h.admin(broker.bootstrap)
    fs = a.create_topics(
        [
            NewTopic("adm-a", num_partitions=2, replication_factor=1,
                     config={"retention.ms": "3600000", "cleanup.policy": "delete"}),
            NewTopic("adm-b", num_partitions=1, replication_factor=1),
        ],
        request_timeout=T,
    )
    for f in fs.values():
        f.result(timeout=T)
    counts = partition_counts(a)
    assert counts.get("adm-a") == 2 and counts.get("adm-b") == 1, counts

    # Creating it again is refused with TOPIC_ALREADY_EXISTS.
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic("adm-a", 2, 1)], request_timeout=T)["adm-a"].result(timeout=T)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    # Invalid configs are refused and nothing is created.
    for bad in ({"retention.ms": "not-a-number"}, {"no.such.config": "1"}):
        with pytest.raises(KafkaException) as e:
            a.create_topics([NewTopic("adm-bad", 1, 1, config=bad)], request_timeout=T)[
                "adm-bad"
            ].result(timeout=T)
        assert e.value.args[0].code() == KafkaError.INVALID_CONFIG, (bad, e.value)
    assert "adm-bad" not in partition_counts(a)

    # Describe: the overrides are dynamic topic configs, the rest defaults.
    cfg = describe_topic_configs(a, "adm-a")
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.ms"].is_default
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["max.message.bytes"].value == "1048588"
    assert cfg["max.message.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert "segment.bytes" in cfg

    # IncrementalAlterConfigs: set one key, delete another.
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        "adm-a",
        incremental_configs=[
            ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", None, incremental_operation=AlterConfigOpType.DELETE),
        ],
    )
    a.incremental_alter_configs([res], request_timeout=T)[res].result(timeout=T)
    cfg = describe_topic_configs(a, "adm-a")
    assert cfg["retention.ms"].value == "1000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # AlterConfigs (legacy) replaces the whole set of overrides.
    res = ConfigResource(ConfigResource.Type.TOPIC, "adm-a", set_config={"segment.bytes": "1048576"})
    a.alter_configs([res], request_timeout=T)[res].result(timeout=T)
    cfg = describe_topic_configs(a, "adm-a")
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["segment.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].value != "1000"

    # Delete: gone from the listing.
    a.delete_topics(["adm-b"], request_timeout=T)["adm-b"].result(timeout=T)
    wait_until(lambda: "adm-b" not in partition_counts(a), 10, "adm-b to leave the metadata")
    assert "adm-a" in partition_counts(a)
    with pytest.raises(KafkaException) as e:
        a.delete_topics(["adm-b"], request_timeout=T)["adm-b"].result(timeout=T)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_delete_topic_really_deletes_data(broker):
    a = h.admin(broker.bootstrap)
    h.create_topic(a, "gone", 2)
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for i in range(20):
        p.produce("gone", key=b"k%d" % i, value=b"v%d" % i, partition=i % 2, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(20)
    assert len(h.read_partitions(broker.bootstrap, "gone", [0, 1])) == 20

    a.delete_topics(["gone"], request_timeout=T)["gone"].result(timeout=T)

    def recreate():
        try:
            h.create_topic(a, "gone", 2)
            return True
        except KafkaException as e:
            if e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return False
            raise

    wait_until(recreate, 15, "the deleted topic to be creatable again", interval=0.2)
    for part in (0, 1):
        assert h.watermarks(broker.bootstrap, "gone", part) == (0, 0)
    assert h.read_partitions(broker.bootstrap, "gone", [0, 1]) == []

    # And the new topic works from offset 0.
    d = h.Deliveries()
    p.produce("gone", key=b"new", value=b"data", partition=1, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(1)
    assert (d.ok[0].partition(), d.ok[0].offset()) == (1, 0)


def test_describe_cluster(broker):
    a = h.admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=T).result(timeout=T)
    assert [n.id for n in desc.nodes] == [1]
    assert (desc.nodes[0].host, desc.nodes[0].port) == ("127.0.0.1", broker.port)
    assert desc.controller.id == 1
    assert desc.cluster_id


def test_idempotent_producer_acks_all(broker):
    h.create_topic(broker.bootstrap, "idem", 3)
    p = h.producer(broker.bootstrap, **{"enable.idempotence": True, "acks": "all"})
    d = h.Deliveries()
    n = 3000
    for i in range(n):
        p.produce("idem", key=b"key-%d" % (i % 50), value=b"value-%06d" % i, on_delivery=d)
        if i % 500 == 0:
            p.poll(0)
    h.flush_all(p)
    d.assert_all_ok(n)

    acked = h.sort_po(h.acked_records(d))
    read = h.read_partitions(broker.bootstrap, "idem", [0, 1, 2])
    assert h.strip(h.sort_po(read)) == acked
    parts = h.by_partition(read)
    for part, recs in parts.items():
        h.assert_contiguous(recs)
        values = [r.value for r in recs]
        assert values == sorted(values), f"partition {part}: not in production order"
    # A key always lands in one partition.
    homes: dict[bytes, set[int]] = {}
    for r in read:
        homes.setdefault(r.key, set()).add(r.partition)
    assert all(len(s) == 1 for s in homes.values())

    # Reading from the middle of a partition starts exactly there.
    busiest = max(parts, key=lambda k: len(parts[k]))
    mid = len(parts[busiest]) // 2
    tail = h.read_partitions(broker.bootstrap, "idem", [busiest], start_offset=mid)
    assert h.strip(tail) == h.strip(parts[busiest][mid:])


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compression(broker, codec):
    topic = f"comp-{codec}"
    h.create_topic(broker.bootstrap, topic, 2)
    p = h.producer(
        broker.bootstrap,
        **{"compression.type": codec, "linger.ms": 50, "batch.num.messages": 200},
    )
    d = h.Deliveries()
    n = 1000
    sent_headers = {}
    for i in range(n):
        key = b"k%04d" % i
        value = (b"compressible %d " % (i % 7)) * (1 + i % 40)
        sent_headers[key] = (("codec", codec.encode()), ("i", str(i).encode()))
        p.produce(topic, key=key, value=value, partition=i % 2, headers=list(sent_headers[key]), on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(n)
    read = h.read_partitions(broker.bootstrap, topic, [0, 1])
    # Delivery reports carry no headers: compare those with what was sent.
    assert h.strip(h.sort_po(read), headers=False) == h.sort_po(h.acked_records(d))
    assert all(r.headers == sent_headers[r.key] for r in read)
    for recs in h.by_partition(read).values():
        h.assert_contiguous(recs)
        assert [int(r.key[1:]) for r in recs] == sorted(int(r.key[1:]) for r in recs)


def test_headers_null_keys_and_values(broker):
    h.create_topic(broker.bootstrap, "nulls", 1)
    cases = [
        (None, b"value with null key", None),
        (b"key with null value", None, None),
        (None, None, None),
        (b"", b"", None),  # empty, not null
        (b"k", b"v", [("h1", b"a"), ("h1", b"duplicate key"), ("empty", b""), ("nullval", None)]),
        (b"\x00\xff binary", bytes(range(256)), [("bin", bytes(range(256)))]),
        (b"unicode", "grüße ✓".encode(), [("ünï", "çödé".encode())]),
    ]
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for key, value, headers in cases:
        p.produce("nulls", key=key, value=value, headers=headers, on_delivery=d)
        p.flush(T)  # one batch each, so every case is its own batch
    d.assert_all_ok(len(cases))
    read = h.read_partitions(broker.bootstrap, "nulls", [0])
    got = [(r.offset, r.key, r.value, list(r.headers) if r.headers else None) for r in read]
    want = [(i, k, v, hd) for i, (k, v, hd) in enumerate(cases)]
    assert got == want


def test_large_record_900kb(broker):
    h.create_topic(broker.bootstrap, "large", 1)
    p = h.producer(broker.bootstrap, **{"message.max.bytes": 1048588, "linger.ms": 0})
    d = h.Deliveries()
    payloads = [os.urandom(900 * 1024) for _ in range(3)]
    for i, v in enumerate(payloads):
        p.produce("large", key=b"big-%d" % i, value=v, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(3)
    read = h.read_partitions(broker.bootstrap, "large", [0])
    assert [(r.offset, r.key, r.value) for r in read] == [
        (i, b"big-%d" % i, v) for i, v in enumerate(payloads)
    ]

    # A batch over the topic's max.message.bytes (1048588) is refused, not stored.
    p2 = h.producer(broker.bootstrap, **{"message.max.bytes": 4_000_000, "linger.ms": 0})
    d2 = h.Deliveries()
    p2.produce("large", key=b"too-big", value=os.urandom(1_100_000), on_delivery=d2)
    h.flush_all(p2)
    assert not d2.ok and len(d2.failed) == 1
    assert d2.failed[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE, d2.failed[0][0]
    assert h.watermarks(broker.bootstrap, "large", 0) == (0, 3)


def test_timestamps_and_offsets_for_times(broker):
    h.create_topic(broker.bootstrap, "times", 1)
    base = 1_700_000_000_000
    stamps = [base + i * 1000 for i in range(10)]
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for i, ts in enumerate(stamps):
        p.produce("times", key=b"t%d" % i, value=b"at %d" % ts, timestamp=ts, on_delivery=d)
        if i % 3 == 2:
            p.flush(T)  # several batches, so lookups cross batch boundaries
    h.flush_all(p)
    d.assert_all_ok(len(stamps))
    read = h.read_partitions(broker.bootstrap, "times", [0])
    assert [(r.offset, r.timestamp) for r in read] == [
        (i, (TIMESTAMP_CREATE_TIME, ts)) for i, ts in enumerate(stamps)
    ]

    c = h.consumer(broker.bootstrap)
    try:
        def lookup(ts):
            [tp] = c.offsets_for_times([TopicPartition("times", 0, ts)], timeout=T)
            assert tp.error is None, tp.error
            return tp.offset

        assert lookup(0) == 0
        assert lookup(base - 1) == 0
        assert lookup(base) == 0
        assert lookup(base + 1) == 1
        assert lookup(base + 2500) == 3
        assert lookup(stamps[7]) == 7
        assert lookup(stamps[-1]) == 9
        assert lookup(stamps[-1] + 1) == -1  # nothing at or after: OFFSET_END
    finally:
        c.close()


def test_create_partitions(broker):
    a = h.admin(broker.bootstrap)
    h.create_topic(a, "grow", 1)
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for i in range(10):
        p.produce("grow", key=b"before-%d" % i, value=b"v", partition=0, on_delivery=d)
    h.flush_all(p)

    a.create_partitions([NewPartitions("grow", 4)], request_timeout=T)["grow"].result(timeout=T)
    assert partition_counts(a)["grow"] == 4

    # Fewer than now is refused.
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("grow", 2)], request_timeout=T)["grow"].result(timeout=T)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    # The producer learns of the new partitions (its metadata refreshes) and can write them.
    p2 = h.producer(broker.bootstrap)
    for part in (1, 2, 3):
        for i in range(5):
            p2.produce("grow", key=b"after-%d-%d" % (part, i), value=b"v", partition=part, on_delivery=d)
    h.flush_all(p2)
    d.assert_all_ok(25)
    read = h.read_partitions(broker.bootstrap, "grow", [0, 1, 2, 3])
    assert h.strip(h.sort_po(read)) == h.sort_po(h.acked_records(d))
    assert {k: len(v) for k, v in h.by_partition(read).items()} == {0: 10, 1: 5, 2: 5, 3: 5}
    for recs in h.by_partition(read).values():
        h.assert_contiguous(recs)


def test_small_fetch_sizes_still_make_progress(broker):
    """A batch bigger than max.partition.fetch.bytes / fetch.max.bytes is still returned
    whole (KIP-74), so a consumer with small limits is never stuck."""
    h.create_topic(broker.bootstrap, "kip74", 1)
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    d = h.Deliveries()
    payloads = [os.urandom(300 * 1024) for _ in range(4)]
    for i, v in enumerate(payloads):
        p.produce("kip74", key=b"%d" % i, value=v, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(4)
    read = h.read_partitions(
        broker.bootstrap, "kip74", [0],
        **{"max.partition.fetch.bytes": 10000, "fetch.max.bytes": 20000, "message.max.bytes": 20000,
           "receive.message.max.bytes": 1_000_000},
    )
    assert [(r.offset, r.value) for r in read] == list(enumerate(payloads))


def test_acks_0_and_1(broker):
    h.create_topic(broker.bootstrap, "acks", 2)
    for part, acks in ((0, "0"), (1, "1")):
        p = h.producer(broker.bootstrap, acks=acks)
        d = h.Deliveries()
        for i in range(500):
            p.produce("acks", key=b"a%s-%d" % (acks.encode(), i), value=b"v%d" % i, partition=part, on_delivery=d)
        h.flush_all(p)
        d.assert_all_ok(500)
        # acks=0 gets no offsets back; the records must still all arrive, in order.
        wait_until(lambda: h.watermarks(broker.bootstrap, "acks", part)[1] == 500, 15,
                   f"acks={acks} records to become visible")
    read = h.read_partitions(broker.bootstrap, "acks", [0, 1])
    for part, acks in ((0, "0"), (1, "1")):
        recs = [r for r in read if r.partition == part]
        assert [(r.offset, r.key, r.value) for r in recs] == [
            (i, b"a%s-%d" % (acks.encode(), i), b"v%d" % i) for i in range(500)
        ]


def test_offset_out_of_range(broker):
    h.create_topic(broker.bootstrap, "oor", 1)
    p = h.producer(broker.bootstrap)
    for i in range(10):
        p.produce("oor", value=b"%d" % i, partition=0)
    h.flush_all(p)

    # auto.offset.reset=error: fetching past the end is reported, not silently waited on.
    c = h.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition("oor", 0, 1000)])
        deadline = time.monotonic() + 15
        err = None
        while err is None:
            assert time.monotonic() < deadline, "no error for an out-of-range offset"
            msg = c.poll(0.5)
            if msg is not None and msg.error() and msg.error().code() != KafkaError._PARTITION_EOF:
                err = msg.error()
            elif msg is not None and not msg.error():
                pytest.fail(f"got a record at {msg.offset()}")
        assert err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE), err
    finally:
        c.close()

    # auto.offset.reset=earliest: the consumer starts over at the log start.
    read = h.read_partitions(broker.bootstrap, "oor", [0], start_offset=1000,
                             **{"auto.offset.reset": "earliest"})
    assert [(r.offset, r.value) for r in read] == [(i, b"%d" % i) for i in range(10)]


def test_delete_records(broker):
    a = h.admin(broker.bootstrap)
    h.create_topic(a, "trim", 1)
    p = h.producer(broker.bootstrap)
    for i in range(20):
        p.produce("trim", value=b"%d" % i, partition=0)
        if i % 5 == 4:
            p.flush(T)  # several batches
    h.flush_all(p)
    [res] = a.delete_records([TopicPartition("trim", 0, 12)], request_timeout=T).values()
    deleted = res.result(timeout=T)
    assert deleted.low_watermark == 12
    assert h.watermarks(broker.bootstrap, "trim", 0) == (12, 20)
    read = h.read_partitions(broker.bootstrap, "trim", [0], start_offset=0,
                             **{"auto.offset.reset": "earliest"})
    assert [(r.offset, r.value) for r in read] == [(i, b"%d" % i) for i in range(12, 20)]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_log_append_time(broker, codec):
    """With message.timestamp.type=LogAppendTime the broker stamps each batch (and must fix
    the batch CRC, which the consumer checks) and reports the time in the produce response."""
    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME

    topic = f"lat-{codec}"
    h.create_topic(broker.bootstrap, topic, 1, config={"message.timestamp.type": "LogAppendTime"})
    p = h.producer(broker.bootstrap, **{"compression.type": codec})
    d = h.Deliveries()
    before = int(time.time() * 1000)
    for i in range(50):
        p.produce(topic, key=b"%d" % i, value=b"old stamp %d" % i, timestamp=1_000_000 + i, on_delivery=d)
    h.flush_all(p)
    after = int(time.time() * 1000)
    d.assert_all_ok(50)
    for m in d.ok:
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME and before - 1000 <= ts <= after + 1000, m.timestamp()
    read = h.read_partitions(broker.bootstrap, topic, [0])
    assert [(r.offset, r.value) for r in read] == [(i, b"old stamp %d" % i) for i in range(50)]
    for r in read:
        kind, ts = r.timestamp
        assert kind == TIMESTAMP_LOG_APPEND_TIME, r.timestamp
        assert before - 1000 <= ts <= after + 1000, (ts, before, after)


def test_idempotent_producer_across_broker_restart(broker):
    """The same idempotent producer keeps going across a clean broker restart and a SIGKILL:
    no fatal error, no duplicates, no gaps."""
    h.create_topic(broker.bootstrap, "idem-restart", 2)
    errors = []
    p = h.producer(
        broker.bootstrap,
        **{"enable.idempotence": True, "error_cb": lambda e: errors.append(e),
           "message.timeout.ms": 60000, "reconnect.backoff.max.ms": 500},
    )
    d = h.Deliveries()
    n = 0

    def burst(count):
        nonlocal n
        for _ in range(count):
            p.produce("idem-restart", key=b"k%d" % (n % 10), value=b"%06d" % n, on_delivery=d)
            n += 1
        h.flush_all(p, timeout=45)

    burst(1000)
    broker.stop()
    broker.start()
    burst(1000)
    broker.kill()
    broker.restart()
    burst(1000)
    d.assert_all_ok(3000)
    fatal = [e for e in errors if e.fatal()]
    assert not fatal, fatal
    read = h.read_partitions(broker.bootstrap, "idem-restart", [0, 1])
    assert h.strip(h.sort_po(read)) == h.sort_po(h.acked_records(d))
    assert sorted(r.value for r in read) == [b"%06d" % i for i in range(3000)]
    for recs in h.by_partition(read).values():
        h.assert_contiguous(recs)


def test_topic_names(broker):
    a = h.admin(broker.bootstrap)
    good = ["a", "with.dots", "with_underscores-and-dashes", "MiXeD.Case_9", "x" * 249]
    fs = a.create_topics([NewTopic(n, 1, 1) for n in good], request_timeout=T)
    for n, f in fs.items():
        f.result(timeout=T)
    assert set(good) <= set(partition_counts(a))
    bad = ["", ".", "..", "has space", "slash/name", "x" * 250, "ünïcode"]
    fs = a.create_topics([NewTopic(n, 1, 1) for n in bad if n], request_timeout=T)
    for n, f in fs.items():
        with pytest.raises(KafkaException) as e:
            f.result(timeout=T)
        assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION, (n, e.value)
    assert set(partition_counts(a)) == set(good)
    # The longest legal name works end to end.
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    p.produce("x" * 249, key=b"k", value=b"v", on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(1)
    assert [(r.offset, r.key, r.value) for r in h.read_partitions(broker.bootstrap, "x" * 249, [0])] == [
        (0, b"k", b"v")
    ]


def test_concurrent_producers_one_partition(broker):
    """Several producers (separate connections) append to one partition at once: every record
    lands once, offsets are dense, and each producer's records keep their order."""
    import threading

    h.create_topic(broker.bootstrap, "shared", 1)
    n_producers, n_each = 4, 2000
    results = {}

    def run(pid):
        p = h.producer(broker.bootstrap, **{"enable.idempotence": pid % 2 == 0, "linger.ms": 1})
        d = h.Deliveries()
        for i in range(n_each):
            p.produce("shared", key=b"p%d" % pid, value=b"%d:%06d" % (pid, i), on_delivery=d)
            if i % 200 == 0:
                p.poll(0)
        p.flush(30)
        results[pid] = d

    threads = [threading.Thread(target=run, args=(pid,)) for pid in range(n_producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "producer thread hung"
    acked = []
    for pid, d in results.items():
        d.assert_all_ok(n_each)
        acked += h.acked_records(d)
    assert len(results) == n_producers
    read = h.read_partitions(broker.bootstrap, "shared", [0])
    h.assert_contiguous(read)
    assert h.strip(read) == h.sort_po(acked)
    for pid in range(n_producers):
        mine = [r.value for r in read if r.key == b"p%d" % pid]
        assert mine == [b"%d:%06d" % (pid, i) for i in range(n_each)]
