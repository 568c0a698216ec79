"""Incremental fetch sessions (KIP-227) with real clients.

- A kafka-python consumer assigned many partitions reads every record exactly once and in order,
  through two waves of produced records, while the broker serves it from an incremental fetch
  session (its metrics count the session and the incremental requests). librdkafka does not
  implement fetch sessions (it always fetches sessionless, epoch -1): the same check with
  confluent-kafka asserts that, so the day it starts using them the test says so.
- Two brokers replicating a topic of many partitions: every acks=all record (min.insync.replicas
  = 2) is read back in order, and each broker's fetcher talks to the other in an incremental
  session: after the first full request, the requests it sends are incremental.
"""

from __future__ import annotations

import re
import time
import urllib.request

from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KpTopicPartition

import helpers as h
from conftest import wait_until
from test_cluster import Cluster

PARTITIONS = 48
PER_WAVE = 30
TIMEOUT_S = 30


def metrics(broker) -> dict[tuple[str, frozenset], float]:
    """Every sample on /metrics, keyed by (name, labels as a set of (label, value))."""
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", text, re.M):
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def produce_wave(bootstrap: str, topic: str, partitions: int, start: int, count: int, **extra):
    p = h.producer(bootstrap, **extra)
    d = h.Deliveries()
    for part in range(partitions):
        for i in range(start, start + count):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part, on_delivery=d)
        p.poll(0)
    h.flush_all(p)
    d.assert_all_ok(partitions * count)


def assert_all_in_order(got: dict[int, list[tuple[int, bytes]]], partitions: int, total: int):
    for part in range(partitions):
        want = [(i, f"{part}-{i}".encode()) for i in range(total)]
        assert got.get(part) == want, f"partition {part}: {got.get(part, [])[:5]}... != {want[:5]}..."


def test_kafka_python_consumer_reads_everything_in_order_in_an_incremental_session(broker):
    topic = "fs-kafka-python"
    h.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_wave(broker.bootstrap, topic, PARTITIONS, 0, PER_WAVE)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=15000, fetch_max_wait_ms=200)
    got: dict[int, list[tuple[int, bytes]]] = {}

    def poll_until(total: int):
        deadline = time.monotonic() + TIMEOUT_S
        while sum(len(v) for v in got.values()) < PARTITIONS * total:
            assert time.monotonic() < deadline, f"read {sum(len(v) for v in got.values())} records"
            for tp, recs in c.poll(timeout_ms=500).items():
                got.setdefault(tp.partition, []).extend((r.offset, r.value) for r in recs)

    try:
        c.assign([KpTopicPartition(topic, p) for p in range(PARTITIONS)])
        c.seek_to_beginning()
        poll_until(PER_WAVE)
        before = metrics(broker)
        produce_wave(broker.bootstrap, topic, PARTITIONS, PER_WAVE, PER_WAVE)
        poll_until(2 * PER_WAVE)
        assert not any(c.poll(timeout_ms=1000).values()), "records beyond what was produced"
        after = metrics(broker)
    finally:
        c.close()
    assert_all_in_order(got, PARTITIONS, 2 * PER_WAVE)
    assert sample(before, "strata_fetch_session_cache_sessions", kind="consumer") == 1
    assert sample(before, "strata_fetch_session_cache_partitions") == PARTITIONS
    # The second wave was read through the session.
    incremental = "strata_fetch_requests_total"
    assert sample(after, incremental, kind="consumer", context="incremental") > sample(
        before, incremental, kind="consumer", context="incremental")
    assert sample(after, incremental, kind="consumer", context="error") == 0


def test_confluent_consumer_reads_everything_in_order_without_sessions(broker):
    topic = "fs-confluent"
    h.create_topic(broker.bootstrap, topic, PARTITIONS)
    produce_wave(broker.bootstrap, topic, PARTITIONS, 0, PER_WAVE)
    c = h.consumer(broker.bootstrap, **{"enable.partition.eof": False, "fetch.wait.max.ms": 200})
    got: dict[int, list[tuple[int, bytes]]] = {}

    def poll_until(total: int):
        deadline = time.monotonic() + TIMEOUT_S
        while sum(len(v) for v in got.values()) < PARTITIONS * total:
            assert time.monotonic() < deadline, f"read {sum(len(v) for v in got.values())} records"
            for m in c.consume(1000, timeout=0.5):
                assert not m.error(), m.error()
                got.setdefault(m.partition(), []).append((m.offset(), m.value()))

    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        poll_until(PER_WAVE)
        produce_wave(broker.bootstrap, topic, PARTITIONS, PER_WAVE, PER_WAVE)
        poll_until(2 * PER_WAVE)
        assert not c.consume(100, timeout=1.0), "records beyond what was produced"
    finally:
        c.close()
    assert_all_in_order(got, PARTITIONS, 2 * PER_WAVE)
    after = metrics(broker)
    assert sample(after, "strata_fetch_requests_total", kind="consumer", context="sessionless") > 0
    assert sample(after, "strata_fetch_session_cache_sessions", kind="consumer") == 0


def test_two_brokers_replicate_through_incremental_sessions(tmp_path, request):
    c = Cluster(tmp_path, n=2)
    request.node._strata_brokers = c.nodes
    try:
        c.start_all()
        c.wait_ready(brokers=2)
        topic, partitions = "fs-replicated", 24
        a = AdminClient({"bootstrap.servers": c.bootstrap()})
        fs = a.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=2,
                                       config={"min.insync.replicas": "2"})], request_timeout=15)
        fs[topic].result(timeout=15)
        produce_wave(c.bootstrap(), topic, partitions, 0, PER_WAVE, **{"enable.idempotence": True})
        got = h.by_partition(h.read_partitions(c.bootstrap(), topic, range(partitions)))
        assert_all_in_order({p: [(r.offset, r.value) for r in recs] for p, recs in got.items()},
                            partitions, PER_WAVE)

        seen = {}

        def sessions_in_use():
            for b in c.nodes:
                m = metrics(b)
                full = sample(m, "strata_replica_fetcher_requests_total", kind="full")
                incremental = sample(m, "strata_replica_fetcher_requests_total", kind="incremental")
                sessions = sample(m, "strata_fetch_session_cache_sessions", kind="follower")
                seen[b.bootstrap] = {"full": full, "incremental": incremental, "follower_sessions": sessions}
                # Each broker leads some partitions and follows the others' (leaders spread).
                # A session error or a restarted fetcher costs one full request and may leave
                # the old session in the leader's cache until it is evicted, as in Kafka;
                # incremental requests must still be the rule.
                if not (full >= 1 and incremental > 2 * full and sessions >= 1):
                    return None
            return True

        try:
            wait_until(sessions_in_use, 30, "both fetchers in incremental sessions")
        except AssertionError as e:
            raise AssertionError(f"{e}; last seen per node: {seen}") from None
    finally:
        c.cleanup()
