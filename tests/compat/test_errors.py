"""Error handling: requests for partitions that do not exist get clear errors promptly, and
malformed or hostile frames close only the offending connection."""

from __future__ import annotations

import os
import struct
import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

import helpers as h
import kafka_wire as wire

UNKNOWN_TOPIC_OR_PARTITION = 3


def test_produce_to_nonexistent_partition(broker):
    h.create_topic(broker.bootstrap, "one", 1)
    batch = wire.record_batch([(b"k", b"v")])
    with wire.Connection(broker.bootstrap) as c:
        # The partition does not exist: a clear error, no offset, and nothing stored.
        t0 = time.monotonic()
        assert c.produce_v3("one", 7, batch) == [(7, UNKNOWN_TOPIC_OR_PARTITION, -1)]
        # Nor a topic that does not exist (Produce never auto-creates).
        assert c.produce_v3("no-such-topic", 0, batch) == [(0, UNKNOWN_TOPIC_OR_PARTITION, -1)]
        assert time.monotonic() - t0 < 5
        # The same connection still works, and the good partition takes the batch.
        assert c.produce_v3("one", 0, batch) == [(0, 0, 0)]
    assert h.watermarks(broker.bootstrap, "one", 0) == (0, 1)

    # A real client: librdkafka refuses the partition with a delivery error, promptly.
    p = h.producer(broker.bootstrap, **{"message.timeout.ms": 10000})
    d = h.Deliveries()
    p.produce("one", key=b"k", value=b"v", partition=7, on_delivery=d)
    h.flush_all(p, timeout=15)
    assert not d.ok and len(d.failed) == 1
    assert d.failed[0][0].code() == KafkaError._UNKNOWN_PARTITION, d.failed[0][0]
    assert broker.is_running()


def test_fetch_from_nonexistent_partition(broker):
    h.create_topic(broker.bootstrap, "one", 1)
    with wire.Connection(broker.bootstrap) as c:
        # max_wait 5 s: an error must be answered at once, not after a long poll.
        t0 = time.monotonic()
        [(p, err, hw, records)] = c.fetch_v4("one", 7, 0, max_wait_ms=5000)
        assert (p, err, hw) == (7, UNKNOWN_TOPIC_OR_PARTITION, -1)
        assert not records
        [(p, err, hw, records)] = c.fetch_v4("no-such-topic", 0, 0, max_wait_ms=5000)
        assert (p, err) == (0, UNKNOWN_TOPIC_OR_PARTITION)
        assert time.monotonic() - t0 < 3, "errors should not wait out max_wait_ms"
        # The existing partition is fine on the same connection (empty, long poll bounded).
        [(p, err, hw, records)] = c.fetch_v4("one", 0, 0, max_wait_ms=100)
        assert (p, err, hw) == (0, 0, 0)

    assert broker.is_running()


def check_other_clients_work(p, deliveries, cons):
    """The long-lived producer and consumer connections still work: one more record goes
    through both."""
    n_before = len(deliveries.ok)
    p.produce("survivor", key=b"after-%d" % n_before, value=b"still works", on_delivery=deliveries)
    h.flush_all(p)
    deliveries.assert_all_ok(n_before + 1)
    assert deliveries.ok[-1].offset() == n_before
    deadline = time.monotonic() + 15
    while True:
        assert time.monotonic() < deadline, f"consumer did not receive offset {n_before}"
        msg = cons.poll(0.2)
        if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
            continue
        assert not msg.error(), msg.error()
        assert (msg.offset(), msg.key()) == (n_before, b"after-%d" % n_before)
        return


HOSTILE_FRAMES = {
    # Unknown api key 0x7f7f with random bytes after it.
    "garbage": struct.pack(">i", 16) + b"\x7f\x7f\x00\x00" + os.urandom(12),
    # A header that ends too early (Metadata v12 wants tagged fields after the client id).
    "bad-header": struct.pack(">i", 10) + struct.pack(">hhi", 3, 12, 1) + b"\x00\x00",
    # A valid Metadata v12 header (client id "x", no tags) and a body cut short: a compact
    # topics array of 4 entries, then nothing.
    "bad-body": struct.pack(">i", 13) + struct.pack(">hhih", 3, 12, 1, 1) + b"x" + b"\x00" + b"\x05",
    # A Metadata v1 body claiming 2^31-1 topics: must fail to parse, not try to allocate.
    "forged-count": struct.pack(">i", 15) + struct.pack(">hhih", 3, 1, 1, 1) + b"x" + struct.pack(">i", 0x7FFFFFFF),
    # A Produce v9 (flexible) body whose compact array length is a 5-byte varint overflow.
    "bad-varint": struct.pack(">i", 17) + struct.pack(">hhih", 0, 9, 1, 1) + b"x" + b"\x00" + b"\xff" * 6,
    # Too short to hold a request header.
    "short": struct.pack(">i", 3) + b"abc",
    # An unsupported version of a known api (Produce v99).
    "bad-version": struct.pack(">i", 10) + struct.pack(">hhih", 0, 99, 1, -1),
    # Size prefixes over socket.request.max.bytes (100 MiB), and a negative one; only a few
    # bytes follow: the broker must not wait for (or allocate) the announced size.
    "oversize-200MiB": struct.pack(">i", 200 * 1024 * 1024) + b"\x00\x03\x00\x01",
    "oversize-100MiB+1": struct.pack(">i", 100 * 1024 * 1024 + 1) + b"\x00\x03",
    "oversize-2GiB": struct.pack(">I", 0x7FFFFFFF) + b"\x00",
    "negative": struct.pack(">i", -5) + b"\x00",
}


def test_hostile_frames_close_only_their_connection(broker):
    h.create_topic(broker.bootstrap, "survivor", 1)
    p = h.producer(broker.bootstrap)
    d = h.Deliveries()
    cons = h.consumer(broker.bootstrap)
    cons.assign([TopicPartition("survivor", 0, 0)])
    check_other_clients_work(p, d, cons)

    for name, frame in HOSTILE_FRAMES.items():
        with wire.Connection(broker.bootstrap) as c:
            t0 = time.monotonic()
            c.send_raw(frame)
            assert c.closed_by_peer(timeout=10), f"{name}: connection left open"
            print(f"{name}: closed after {time.monotonic() - t0:.3f} s")
        assert broker.is_running(), f"broker died on {name}"
        check_other_clients_work(p, d, cons)

    # A connection that announces a big-but-legal frame and then sends nothing just waits;
    # it does not hold up anyone else.
    with wire.Connection(broker.bootstrap) as idle:
        idle.send_raw(struct.pack(">i", 50 * 1024 * 1024))
        check_other_clients_work(p, d, cons)
    assert broker.is_running()

    # And a raw well-formed request after all that.
    with wire.Connection(broker.bootstrap) as c:
        brokers, topics = c.metadata_v1(["survivor"])
        assert brokers == [1]
        assert topics == {"survivor": (0, 1)}
    cons.close()
    assert h.read_partitions(broker.bootstrap, "survivor", [0])[-1].offset == len(d.ok) - 1
