"""Shared client helpers for the compatibility suite (confluent-kafka based)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

OP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Rec:
    """A record as read back (or as acknowledged), for exact comparison."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple | None = None
    timestamp: tuple | None = None


def admin(bootstrap: str, **extra) -> AdminClient:
    conf = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}
    conf.update(extra)
    return AdminClient(conf)


def create_topic(bootstrap_or_admin, name: str, partitions: int = 1, config: dict | None = None):
    a = admin(bootstrap_or_admin) if isinstance(bootstrap_or_admin, str) else bootstrap_or_admin
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=OP_TIMEOUT_S,
    )
    fs[name].result(timeout=OP_TIMEOUT_S)


def producer(bootstrap: str, **extra) -> Producer:
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 30000,
    }
    conf.update(extra)
    return Producer(conf)


class Deliveries:
    """Collects delivery reports; `produce` + `flush_all` give the acknowledged offsets."""

    def __init__(self):
        self.ok: list = []
        self.failed: list = []

    def __call__(self, err, msg):
        if err is not None:
            self.failed.append((err, msg))
        else:
            self.ok.append(msg)

    def assert_all_ok(self, expected: int):
        assert not self.failed, f"{len(self.failed)} deliveries failed, first: {self.failed[0][0]}"
        assert len(self.ok) == expected, f"{len(self.ok)} delivery reports, expected {expected}"


def flush_all(p: Producer, timeout: float = OP_TIMEOUT_S):
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout} s"


def acked_records(deliveries: Deliveries) -> list[Rec]:
    """Acknowledged records as Rec; delivery reports carry no headers, so headers is None."""
    return [
        Rec(m.partition(), m.offset(), m.key(), m.value(), None, None)
        for m in deliveries.ok
    ]


def _headers(h):
    return tuple(h) if h else None


def consumer(bootstrap: str, **extra) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        # The client wants a group id, but nothing here uses the group: partitions are assigned
        # explicitly and nothing is committed.
        "group.id": "strata-compat-assign",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
        "socket.timeout.ms": 10000,
        # Verify every batch's CRC-32C as read: catches a broker that rewrites a covered
        # field (offsets are not covered; LogAppendTime is) without recomputing it.
        "check.crcs": True,
    }
    conf.update(extra)
    return Consumer(conf)


def read_partitions(
    bootstrap: str,
    topic: str,
    partitions,
    start_offset: int = 0,
    timeout: float = OP_TIMEOUT_S,
    **extra,
) -> list[Rec]:
    """Reads every partition from `start_offset` to its end (partition EOF) with assign()."""
    partitions = list(partitions)
    c = consumer(bootstrap, **extra)
    try:
        c.assign([TopicPartition(topic, p, start_offset) for p in partitions])
        out: list[Rec] = []
        at_eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(partitions):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out reading {topic}: {len(out)} records, EOF on {sorted(at_eof)} "
                    f"of {partitions}"
                )
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                raise KafkaException(msg.error())
            at_eof.discard(msg.partition())
            out.append(
                Rec(
                    msg.partition(),
                    msg.offset(),
                    msg.key(),
                    msg.value(),
                    _headers(msg.headers()),
                    msg.timestamp(),
                )
            )
        return out
    finally:
        c.close()


def by_partition(recs) -> dict[int, list[Rec]]:
    out: dict[int, list[Rec]] = {}
    for r in recs:
        out.setdefault(r.partition, []).append(r)
    return out


def assert_contiguous(recs: list[Rec], start: int = 0):
    """Offsets of one partition's records are start, start+1, ... in order."""
    offsets = [r.offset for r in recs]
    assert offsets == list(range(start, start + len(recs))), (
        f"offsets not contiguous from {start}: first differences at "
        f"{[(i, o) for i, o in enumerate(offsets) if o != start + i][:5]}"
    )


def strip(recs, headers=True, timestamp=False):
    """Records reduced to what a comparison needs."""
    return [
        Rec(
            r.partition,
            r.offset,
            r.key,
            r.value,
            r.headers if headers else None,
            r.timestamp if timestamp else None,
        )
        for r in recs
    ]


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=OP_TIMEOUT_S)
    finally:
        c.close()


def partition_leader(bootstrap: str, topic: str, partition: int = 0) -> int:
    """The partition's leader as the metadata says, -1 while it has none or nobody answers."""
    try:
        md = admin(bootstrap).list_topics(topic, timeout=5)
    except Exception:  # noqa: BLE001 - no broker answered yet
        return -1
    t = md.topics.get(topic)
    if not t or t.error or partition not in t.partitions:
        return -1
    return t.partitions[partition].leader


def sort_po(recs) -> list[Rec]:
    """Sorted by (partition, offset)."""
    return sorted(recs, key=lambda r: (r.partition, r.offset))
