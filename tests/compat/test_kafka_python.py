"""kafka-python (pure Python, its own protocol code) against Strata: produce and consume round
trips with assigned partitions (no consumer group)."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import helpers as h

TIMEOUT_S = 20


def make_producer(bootstrap, **extra) -> KafkaProducer:
    conf = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        request_timeout_ms=10000,
        max_block_ms=10000,
    )
    conf.update(extra)
    return KafkaProducer(**conf)


def make_consumer(bootstrap, **extra) -> KafkaConsumer:
    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        request_timeout_ms=15000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def read_all(consumer: KafkaConsumer, expected: int, timeout=TIMEOUT_S):
    """Polls until `expected` records arrived, then once more to see that nothing else does."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < expected:
        assert time.monotonic() < deadline, f"timed out with {len(out)} of {expected} records"
        for recs in consumer.poll(timeout_ms=500).values():
            out.extend(recs)
    for recs in consumer.poll(timeout_ms=300).values():
        out.extend(recs)
    return out


def test_round_trip_multiple_partitions(broker):
    topic = "kp-multi"
    h.create_topic(broker.bootstrap, topic, 4)
    p = make_producer(broker.bootstrap)
    try:
        futures = []
        sent = {}
        for i in range(2000):
            part = i % 4
            key = f"key-{i}".encode()
            value = f"value-{i}-".encode() * (1 + i % 13)
            futures.append((key, value, p.send(topic, key=key, value=value, partition=part)))
        p.flush(timeout=TIMEOUT_S)
        for key, value, f in futures:
            md = f.get(timeout=TIMEOUT_S)
            sent[(md.partition, md.offset)] = (key, value)
    finally:
        p.close(timeout=TIMEOUT_S)
    assert len(sent) == 2000
    for part in range(4):
        offsets = sorted(o for (pp, o) in sent if pp == part)
        assert offsets == list(range(500)), f"partition {part}: acknowledged offsets not 0..499"

    c = make_consumer(broker.bootstrap)
    try:
        tps = [TopicPartition(topic, part) for part in range(4)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        recs = read_all(c, 2000)
        assert c.end_offsets(tps) == {tp: 500 for tp in tps}
        assert c.beginning_offsets(tps) == {tp: 0 for tp in tps}
    finally:
        c.close()
    got = {(r.partition, r.offset): (r.key, r.value) for r in recs}
    assert len(recs) == 2000, "duplicates or extra records"
    assert got == sent
    for part in range(4):
        offsets = [r.offset for r in recs if r.partition == part]
        assert offsets == list(range(500)), f"partition {part}: read out of order"


def test_keyed_default_partitioner_and_nulls(broker):
    topic = "kp-keyed"
    h.create_topic(broker.bootstrap, topic, 3)
    p = make_producer(broker.bootstrap, compression_type="gzip")
    try:
        cases = [(f"user-{i % 17}".encode(), f"event-{i}".encode()) for i in range(300)]
        cases += [(None, b"no key"), (b"tombstone", None)]
        futures = [(k, v, p.send(topic, key=k, value=v, headers=[("n", str(i).encode())]))
                   for i, (k, v) in enumerate(cases)]
        p.flush(timeout=TIMEOUT_S)
        sent = {}
        for i, (k, v, f) in enumerate(futures):
            md = f.get(timeout=TIMEOUT_S)
            sent[(md.partition, md.offset)] = (k, v, [("n", str(i).encode())])
    finally:
        p.close(timeout=TIMEOUT_S)

    c = make_consumer(broker.bootstrap)
    try:
        tps = [TopicPartition(topic, part) for part in range(3)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        recs = read_all(c, len(cases))
    finally:
        c.close()
    got = {(r.partition, r.offset): (r.key, r.value, list(r.headers)) for r in recs}
    assert len(recs) == len(cases)
    assert got == sent
    homes = {}
    for r in recs:
        if r.key is not None:
            homes.setdefault(r.key, set()).add(r.partition)
    assert all(len(s) == 1 for s in homes.values()), "a key landed in two partitions"


def test_seek_to_offset_and_cross_client(broker):
    """Written by confluent-kafka, read by kafka-python from an explicit offset."""
    topic = "kp-cross"
    h.create_topic(broker.bootstrap, topic, 1)
    prod = h.producer(broker.bootstrap)
    d = h.Deliveries()
    for i in range(100):
        prod.produce(topic, key=b"k%d" % i, value=b"v%d" % i, on_delivery=d)
    h.flush_all(prod)
    d.assert_all_ok(100)

    c = make_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek(tp, 60)
        recs = read_all(c, 40)
        assert c.position(tp) == 100
    finally:
        c.close()
    assert [(r.offset, r.key, r.value) for r in recs] == [
        (i, b"k%d" % i, b"v%d" % i) for i in range(60, 100)
    ]


def test_long_poll_wakes_on_new_data(broker):
    """A consumer waiting at the end (fetch_max_wait_ms=5000) gets a new record as soon as it
    is written, not when its long poll times out."""
    topic = "kp-longpoll"
    h.create_topic(broker.bootstrap, topic, 1)
    c = make_consumer(broker.bootstrap, fetch_max_wait_ms=5000)
    p = make_producer(broker.bootstrap, linger_ms=0)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        assert c.poll(timeout_ms=1000) == {}  # now parked in a long poll at offset 0
        latencies = []
        for i in range(3):
            t0 = time.monotonic()
            p.send(topic, key=b"k", value=b"%d" % i, partition=0).get(timeout=TIMEOUT_S)
            got = []
            while not got:
                assert time.monotonic() - t0 < 10, "record never arrived"
                for recs in c.poll(timeout_ms=100).values():
                    got.extend(recs)
            latencies.append(time.monotonic() - t0)
            assert [(r.offset, r.value) for r in got] == [(i, b"%d" % i)]
        assert max(latencies) < 2.5, f"long poll did not wake on new data: {latencies}"
    finally:
        p.close(timeout=TIMEOUT_S)
        c.close()


def test_admin_client(broker):
    """kafka-python's own admin client: create, describe, alter, grow and delete a topic."""
    from kafka import KafkaAdminClient
    from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, NewPartitions

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        res = a.create_topics(
            {"kpa": {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}}
        )
        [created] = res["topics"]
        assert (created["name"], created["error_code"], created["num_partitions"]) == ("kpa", 0, 2)
        assert created["configs"]["retention.ms"]["value"] == "3600000"
        assert created["configs"]["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert a.list_topics() == ["kpa"]

        [desc] = a.describe_topics(["kpa"])
        assert desc["topic_id"] == created["topic_id"]
        assert [(p["partition_index"], p["leader_id"], p["replica_nodes"], p["isr_nodes"])
                for p in desc["partitions"]] == [(0, 1, [1], [1]), (1, 1, [1], [1])]

        def overrides():
            cfg = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "kpa")])
            return {k: v["value"] for k, v in cfg["topic"]["kpa"].items()}

        assert overrides() == {"retention.ms": "3600000"}
        res = a.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, "kpa",
            configs={"retention.ms": "1000", "segment.bytes": (AlterConfigOp.SET, "1048576")},
        )])
        assert res == {"topic": {"kpa": "OK"}}
        assert overrides() == {"retention.ms": "1000", "segment.bytes": "1048576"}

        res = a.create_partitions({"kpa": NewPartitions(4)})
        assert [(r.name, r.error_code) for r in res.results] == [("kpa", 0)]
        [desc] = a.describe_topics(["kpa"])
        assert len(desc["partitions"]) == 4

        cluster = a.describe_cluster()
        assert cluster["controller_id"] == 1
        assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [
            (1, "127.0.0.1", broker.port)
        ]

        res = a.delete_topics(["kpa"])
        assert [(t["name"], t["error_code"]) for t in res["topics"]] == [("kpa", 0)]
        assert a.list_topics() == []
    finally:
        a.close()


def test_offsets_for_times(broker):
    topic = "kp-times"
    h.create_topic(broker.bootstrap, topic, 1)
    base = 1_600_000_000_000
    p = make_producer(broker.bootstrap, linger_ms=0)
    try:
        for i in range(10):
            p.send(topic, value=b"%d" % i, partition=0, timestamp_ms=base + 10 * i).get(timeout=TIMEOUT_S)
    finally:
        p.close(timeout=TIMEOUT_S)
    c = make_consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0)
        got = c.offsets_for_times({tp: base + 35})[tp]
        assert (got.offset, got.timestamp) == (4, base + 40)
        assert c.offsets_for_times({tp: base + 1000})[tp] is None
        c.assign([tp])
        c.seek(tp, 4)
        recs = read_all(c, 6)
        assert [(r.offset, r.timestamp, r.value) for r in recs] == [
            (i, base + 10 * i, b"%d" % i) for i in range(4, 10)
        ]
    finally:
        c.close()
