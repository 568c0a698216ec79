"""Consumer groups of the consumer protocol (KIP-848) with confluent-kafka 2.16
(`group.protocol=consumer`): the broker assigns, members come, go and crash, offsets stay.

kafka-python (3.0.12) and kafkajs implement only the classic protocol (neither sends
ConsumerGroupHeartbeat), so librdkafka is the client here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import strata_cli, wait_until

SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
}

# One consumer process: reads, commits each record synchronously, and logs "R p o v" when a
# record arrives and "C p o" once its commit succeeded. SIGTERM closes it (leaving the group).
WORKER = r"""
import signal, sys
from confluent_kafka import Consumer
bootstrap, group, topic, log = sys.argv[1:5]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
              "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic])
with open(log, "a", buffering=1) as out:
    out.write("started\n")
    while not stop:
        m = c.poll(0.1)
        if m is None or m.error() is not None:
            continue
        out.write(f"R {m.partition()} {m.offset()} {m.value().decode()}\n")
        try:
            c.commit(message=m, asynchronous=False)
            out.write(f"C {m.partition()} {m.offset()}\n")
        except Exception as e:
            out.write(f"E {m.partition()} {m.offset()} {e}\n")
c.close()
"""


def create_topic(bootstrap: str, name: str, partitions: int):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        f.result(30)


def produce(bootstrap: str, topic: str, partitions: int, tag: str, per_partition: int) -> set[str]:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    values = set()
    for part in range(partitions):
        for i in range(per_partition):
            v = f"{tag}-{part}-{i}"
            values.add(v)
            p.produce(topic, value=v.encode(), partition=part)
    assert p.flush(30) == 0
    return values


class Worker:
    def __init__(self, tmp: Path, name: str, bootstrap: str, group: str, topic: str):
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, bootstrap, group, topic, str(self.log)],
            stdin=subprocess.DEVNULL,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def read(self) -> list[tuple[int, int, str]]:
        return [(int(p), int(o), v) for kind, p, o, v in (l.split(" ", 3) for l in self.lines() if l.startswith("R "))]

    def committed(self) -> dict[int, int]:
        """Partition → the last offset whose commit succeeded."""
        last = {}
        for l in self.lines():
            if l.startswith("C "):
                _, p, o = l.split()
                last[int(p)] = max(last.get(int(p), -1), int(o))
        return last

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def consumed_values(workers) -> set[str]:
    return {v for w in workers for _, _, v in w.read()}


def describe(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(30)


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_members_join_leave_and_crash_without_losing_records(broker_factory, tmp_path):
    broker = broker_factory(SETS)
    bs = broker.bootstrap
    topic, group = "kip848", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bs, topic, 6)
    workers = {n: Worker(tmp_path, n, bs, group, topic) for n in ("a", "b", "c")}
    try:
        expected = produce(bs, topic, 6, "one", 20)
        ws = lambda: list(workers.values())
        wait_until(lambda: expected <= consumed_values(ws()), 60, "the first records consumed")
        # Three members share the six partitions.
        d = describe(bs, group)
        assert d.type == ConsumerGroupType.CONSUMER
        assert len(d.members) == 3
        owned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
        assert owned == list(range(6))
        # `strata groups describe` shows the consumer group and who owns each partition.
        # Owners move one revocation at a time, so the three owners may take a few heartbeats.
        members = {m.member_id for m in d.members}

        def cli_shows_three_owners():
            out = strata_cli("groups", bs, "describe", group).stdout
            assert f"Group: {group}\tState: " in out and "\tProtocol: consumer uniform\t" in out, out
            rows = [l.split() for l in out.splitlines() if l.startswith(topic + " ")]
            assert sorted(int(r[1]) for r in rows) == list(range(6)), out
            return {r[5] for r in rows} == members

        wait_until(cli_shows_three_owners, 30, "the CLI to show the three owners", interval=0.5)

        workers["a"].stop()
        workers["d"] = Worker(tmp_path, "d", bs, group, topic)
        expected |= produce(bs, topic, 6, "two", 20)
        wait_until(lambda: expected <= consumed_values(ws()), 60, "records after a leave and a join")

        workers["b"].proc.kill()
        workers["b"].proc.wait(10)
        expected |= produce(bs, topic, 6, "three", 20)
        wait_until(lambda: expected <= consumed_values(ws()), 60, "records after a crash")
        # The crashed member's session ended: only c and d remain, holding all six partitions.
        wait_until(lambda: len(describe(bs, group).members) == 2, 30, "the killed member removed")
        d = describe(bs, group)
        owned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
        assert owned == list(range(6))
    finally:
        for w in workers.values():
            w.stop()

    # Every record was consumed; the committed offsets cover all of them.
    assert consumed_values(workers.values()) == expected
    assert committed_offsets(bs, group, topic, 6) == [60] * 6
    # Duplicates only for records the killed member read after its last successful commit.
    reads = Counter((p, o) for w in workers.values() for p, o, _ in w.read())
    killed_reads = {(p, o) for p, o, _ in workers["b"].read()}
    killed_commits = workers["b"].committed()
    for (p, o), n in reads.items():
        if n > 1:
            assert (p, o) in killed_reads, f"{p}/{o} read {n} times, not by the killed member"
            assert o > killed_commits.get(p, -1), f"{p}/{o} re-read although the killed member committed it"
    # Failed commits show up in the logs: none expected, except STALE_MEMBER_EPOCH. Like Kafka
    # before KIP-1251 (assignment epochs), the broker refuses a commit whose member epoch is
    # older than the member's current one, and a commit racing an epoch bump gets it. Such a
    # commit loses no progress that matters here: a later commit covers it, and a partition
    # that moved on before one did would show up above as a record read twice by a live member.
    failed = [l for w in workers.values() for l in w.lines() if l.startswith("E ")]
    assert not [l for l in failed if "STALE_MEMBER_EPOCH" not in l], failed


def test_classic_group_upgraded_to_the_consumer_protocol_keeps_its_offsets(broker_factory):
    broker = broker_factory(SETS)
    bs = broker.bootstrap
    topic, group = "upgrade", f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bs, topic, 2)
    first = produce(bs, topic, 2, "old", 10)
    base = {"bootstrap.servers": bs, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    classic = Consumer({**base, "group.protocol": "classic", "session.timeout.ms": 6000})
    classic.subscribe([topic])
    seen = set()
    deadline = time.monotonic() + 30
    while seen != first and time.monotonic() < deadline:
        m = classic.poll(0.2)
        if m is not None and m.error() is None:
            seen.add(m.value().decode())
    assert seen == first
    classic.commit(asynchronous=False)
    classic.close()
    second = produce(bs, topic, 2, "new", 5)

    upgraded = Consumer({**base, "group.protocol": "consumer"})
    upgraded.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < len(second) and time.monotonic() < deadline:
        m = upgraded.poll(0.2)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    # Resumed at the classic group's offsets: only the new records, nothing from the start.
    assert sorted(got) == sorted(second)
    assert describe(bs, group).type == ConsumerGroupType.CONSUMER
    upgraded.close()


def test_regex_subscription_picks_up_a_topic_created_later(broker_factory):
    broker = broker_factory(SETS)
    bs = broker.bootstrap
    group = f"g-{uuid.uuid4().hex[:8]}"
    create_topic(bs, "prefix-a", 1)
    create_topic(bs, "other", 1)
    want = produce(bs, "prefix-a", 1, "a", 3)
    produce(bs, "other", 1, "x", 3)
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "group.protocol": "consumer",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["^prefix.*"])
    got = set()
    try:
        deadline = time.monotonic() + 30
        while not want <= got and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.add(m.value().decode())
        create_topic(bs, "prefix-b", 2)
        want |= produce(bs, "prefix-b", 2, "b", 3)
        deadline = time.monotonic() + 40
        while not want <= got and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.add(m.value().decode())
        # Both matching topics, never the other one.
        assert got == want
    finally:
        c.close()
