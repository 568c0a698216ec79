"""A history checker for queue-like logs (the anomalies Jepsen's Kafka workload looks for).

A test records every send (in the order each producer issued it, with the partition it asked
for), every outcome (acknowledged at an offset, failed, or unknown), and every record each
consumer read, in the order it read them. `History.check()` then reports:

- lost: an acknowledged record that a complete read of its partition does not contain;
- duplicate: one sent value found at two different positions (idempotence broken);
- reordered: two records one producer sent to a partition, read in the other order;
- phantom: a record read that was never sent;
- inconsistent: two reads that disagree on the record at one (partition, offset), or a record
  read only at other positions than the one its acknowledgement named;
- nonmonotonic: a consumer whose offsets in a partition did not strictly increase (without a
  seek it recorded).

Values identify records, so every value a test sends must be unique.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Send:
    producer: str
    index: int  # order among this producer's sends
    partition: int | None
    acked_at: tuple[int, int] | None = None  # (partition, offset)
    failed: bool = False


@dataclass
class Report:
    acknowledged: int = 0
    recovered: int = 0  # acknowledged and found by a complete read
    unacknowledged_found: int = 0  # sent, not acknowledged (failed or unknown), yet present
    lost: list = field(default_factory=list)
    duplicate: list = field(default_factory=list)
    reordered: list = field(default_factory=list)
    phantom: list = field(default_factory=list)
    inconsistent: list = field(default_factory=list)
    nonmonotonic: list = field(default_factory=list)

    ANOMALIES = ("lost", "duplicate", "reordered", "phantom", "inconsistent", "nonmonotonic")

    @property
    def ok(self) -> bool:
        return not any(getattr(self, a) for a in self.ANOMALIES)

    def counts(self) -> str:
        base = (f"acknowledged={self.acknowledged} recovered={self.recovered} lost={len(self.lost)} "
                f"unacknowledged_found={self.unacknowledged_found}")
        others = " ".join(f"{a}={len(getattr(self, a))}" for a in self.ANOMALIES[1:] if getattr(self, a))
        return f"{base} {others}".strip()

    def describe(self) -> str:
        lines = [self.counts()]
        for a in self.ANOMALIES:
            items = getattr(self, a)
            if items:
                lines.append(f"{a} ({len(items)}), first: {items[:5]}")
        return "\n".join(lines)

    def assert_ok(self):
        assert self.ok, "history anomalies:\n" + self.describe()


class History:
    def __init__(self):
        self.sends: dict[bytes, Send] = {}
        self._per_producer: dict[str, int] = {}
        # consumer -> list of events: ("read", partition, offset, value) or ("seek", partition)
        self.reads: dict[str, list[tuple]] = {}
        self.complete: dict[str, set[int]] = {}  # consumer -> partitions it read wholly

    # -- recording --

    def send(self, value: bytes, partition: int | None = None, producer: str = "p0"):
        assert value not in self.sends, f"value {value!r} sent twice: the checker needs unique values"
        i = self._per_producer.get(producer, 0)
        self._per_producer[producer] = i + 1
        self.sends[value] = Send(producer, i, partition)

    def ack(self, value: bytes, partition: int, offset: int):
        self.sends[value].acked_at = (partition, offset)

    def fail(self, value: bytes):
        self.sends[value].failed = True

    def delivery_callback(self):
        """A confluent-kafka `on_delivery` that records acknowledgements and failures."""

        def cb(err, msg):
            if err is None:
                self.ack(msg.value(), msg.partition(), msg.offset())
            else:
                self.fail(msg.value())

        return cb

    def read(self, consumer: str, partition: int, offset: int, value: bytes):
        self.reads.setdefault(consumer, []).append(("read", partition, offset, value))

    def seek(self, consumer: str, partition: int):
        self.reads.setdefault(consumer, []).append(("seek", partition))

    def read_all(self, consumer: str, records, partitions):
        """A complete read of `partitions` (from their start to their end): `records` have
        .partition, .offset and .value, in the order they were received."""
        for r in records:
            self.read(consumer, r.partition, r.offset, r.value)
        self.complete.setdefault(consumer, set()).update(partitions)

    # -- checking --

    def check(self) -> Report:
        rep = Report()
        log: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> the first value read there
        found_complete: set[bytes] = set()
        # A complete read that found nothing counts too: then everything acknowledged is lost.
        completely_read: set[int] = set().union(*self.complete.values())
        for consumer, events in self.reads.items():
            complete = self.complete.get(consumer, set())
            last: dict[int, int] = {}
            for ev in events:
                if ev[0] == "seek":
                    last.pop(ev[1], None)
                    continue
                _, p, o, v = ev
                if p in last and o <= last[p]:
                    rep.nonmonotonic.append((consumer, p, last[p], o))
                last[p] = o
                prev = log.setdefault((p, o), v)
                if prev != v:
                    rep.inconsistent.append(((p, o), prev, v))
                s = self.sends.get(v)
                if s is None:
                    rep.phantom.append((p, o, v))
                    continue
                if p in complete:
                    found_complete.add(v)
        # The log as read, in offset order: each value once, each producer's in its send order.
        where: dict[bytes, list[tuple[int, int]]] = {}
        for pos in sorted(log):
            where.setdefault(log[pos], []).append(pos)
        newest: dict[tuple[str, int], tuple[int, bytes]] = {}  # (producer, partition) -> (index, value)
        for pos in sorted(log):
            v = log[pos]
            s = self.sends.get(v)
            if s is None or where[v][0] != pos:
                continue
            key = (s.producer, pos[0])
            if key in newest and newest[key][0] > s.index:
                rep.reordered.append((v, pos, "after", newest[key][1]))
            else:
                newest[key] = (s.index, v)
        rep.duplicate = [(v, ps) for v, ps in where.items() if len(ps) > 1]
        for v, s in self.sends.items():
            if s.acked_at is not None and v in where and s.acked_at not in where[v]:
                # Acknowledged at one position, read only at others: the offset it was given
                # now holds something else (or nothing).
                rep.inconsistent.append((v, "acked at", s.acked_at, "read at", where[v]))
            if s.acked_at is not None:
                rep.acknowledged += 1
                if s.acked_at[0] not in completely_read:
                    continue
                if v in found_complete:
                    rep.recovered += 1
                else:
                    rep.lost.append((v, s.acked_at))
            elif v in where:
                rep.unacknowledged_found += 1
        return rep
