"""Online migration between the group protocols (KIP-848), member by member, with real
clients: a group of classic consumers (confluent-kafka, `group.protocol=classic`) reading a
six-partition topic while a producer keeps producing is upgraded one consumer at a time to
`group.protocol=consumer`, then downgraded the same way (one replacement a kafka-python
consumer), without losing or double-committing a record and keeping its offsets.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import wait_until

SETS = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "3",
    "group.consumer.heartbeat.interval.ms": "500",
    "group.consumer.session.timeout.ms": "6000",
}
PARTITIONS = 6

# One consumer process of the given kind: reads, commits each record synchronously, and logs
# "R p o" when a record arrives and "C p o" once its commit succeeded ("E p o why" if it
# failed). SIGTERM closes it, which leaves the group.
WORKER = r"""
import signal, sys
bootstrap, group, topic, log, kind = sys.argv[1:6]
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
out = open(log, "a", buffering=1)
if kind == "kafka-python":
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      session_timeout_ms=6000, heartbeat_interval_ms=500)
    out.write("started\n")
    while not stop:
        for tp, ms in c.poll(timeout_ms=100).items():
            for m in ms:
                out.write(f"R {m.partition} {m.offset}\n")
                try:
                    c.commit({tp: OffsetAndMetadata(m.offset + 1, None, -1)})
                    out.write(f"C {m.partition} {m.offset}\n")
                except Exception as e:
                    out.write(f"E {m.partition} {m.offset} {e!r}\n")
    c.close()
else:
    from confluent_kafka import Consumer
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "group.protocol": kind,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    if kind == "classic":
        conf.update({"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
    c = Consumer(conf)
    c.subscribe([topic])
    out.write("started\n")
    while not stop:
        m = c.poll(0.1)
        if m is None or m.error() is not None:
            continue
        out.write(f"R {m.partition()} {m.offset()}\n")
        try:
            c.commit(message=m, asynchronous=False)
            out.write(f"C {m.partition()} {m.offset()}\n")
        except Exception as e:
            out.write(f"E {m.partition()} {m.offset()} {e}\n")
    c.close()
"""


class Worker:
    def __init__(self, tmp: Path, name: str, kind: str, bootstrap: str, group: str, topic: str):
        self.name, self.kind = name, kind
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, bootstrap, group, topic, str(self.log), kind],
            stdin=subprocess.DEVNULL,
        )

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def entries(self, kind: str) -> list[tuple[int, int]]:
        return [(int(l.split()[1]), int(l.split()[2])) for l in self.lines() if l.startswith(kind + " ")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


class KeepProducing:
    """Produces to every partition in turn until stopped; knows how many records each got."""

    def __init__(self, bootstrap: str, topic: str):
        self.p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic, self.sent = topic, [0] * PARTITIONS
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.done.is_set():
            for part in range(PARTITIONS):
                self.p.produce(self.topic, value=f"{part}-{self.sent[part]}".encode(), partition=part)
                self.sent[part] += 1
            self.p.poll(0)
            time.sleep(0.05)

    def counts(self) -> list[int]:
        """Records sent per partition so far, all acknowledged."""
        sent = list(self.sent)
        assert self.p.flush(30) == 0
        return sent

    def stop(self) -> list[int]:
        self.done.set()
        self.thread.join(10)
        assert self.p.flush(30) == 0
        return list(self.sent)


def describe(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group])[group].result(30)


def committed_offsets(bootstrap: str, group: str, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        got = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
        return [tp.offset for tp in got]
    finally:
        c.close()


def test_rolling_upgrade_and_downgrade_member_by_member(broker_factory, tmp_path):
    broker = broker_factory(SETS)
    bs = broker.bootstrap
    topic, group = "migrate", f"g-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bs})
    for f in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)]).values():
        f.result(30)

    workers: list[Worker] = []
    live: dict[str, Worker] = {}

    def start(name: str, kind: str):
        w = Worker(tmp_path, name, kind, bs, group, topic)
        workers.append(w)
        live[name] = w

    def committed_records() -> Counter:
        return Counter(e for w in workers for e in w.entries("C"))

    def committed_ends() -> list[int]:
        """Per partition, the offset after the last record whose commit succeeded. (A failed
        commit, e.g. STALE_MEMBER_EPOCH while a member's epoch moves, is covered by the next.)"""
        ends = [0] * PARTITIONS
        for p, o in committed_records():
            ends[p] = max(ends[p], o + 1)
        return ends

    def caught_up(what: str):
        want = producer.counts()
        wait_until(lambda: all(e >= w for e, w in zip(committed_ends(), want)), 40,
                   f"records committed {what}", interval=0.2)

    def owners_cover_all(d) -> bool:
        owned = sorted(tp.partition for m in d.members for tp in m.assignment.topic_partitions)
        return owned == list(range(PARTITIONS))

    producer = KeepProducing(bs, topic)
    try:
        for n in ("a", "b", "c"):
            start(n, "classic")
        caught_up("by the classic group")
        wait_until(lambda: len(describe(bs, group).members) == 3, 20, "three classic members", interval=0.2)
        assert describe(bs, group).type == ConsumerGroupType.CLASSIC

        # Upgrade: each classic consumer is replaced by one of the consumer protocol. The first
        # joins a classic group with three live members, which converts and keeps them.
        for i, n in enumerate(("a", "b", "c")):
            start(n + "2", "consumer")
            if i == 0:
                wait_until(lambda: describe(bs, group).type == ConsumerGroupType.CONSUMER, 20,
                           "the group to become a consumer group", interval=0.2)
                assert len(describe(bs, group).members) == 4
            live.pop(n).stop()
            caught_up(f"after {n} was replaced by a consumer-protocol member")
        wait_until(lambda: len(describe(bs, group).members) == 3 and owners_cover_all(describe(bs, group)),
                   20, "three consumer-protocol members owning every partition", interval=0.2)
        assert describe(bs, group).type == ConsumerGroupType.CONSUMER

        # Downgrade: classic consumers (one of them kafka-python) replace the consumer-protocol
        # ones; they are classic members of the consumer group until the last consumer-protocol
        # member leaves, when the group becomes classic again.
        for n, kind in (("a2", "classic"), ("b2", "kafka-python"), ("c2", "classic")):
            start(n.replace("2", "3"), kind)
            time.sleep(1)
            live.pop(n).stop()
            caught_up(f"after {n} was replaced by a {kind} member")
            expected = ConsumerGroupType.CLASSIC if n == "c2" else ConsumerGroupType.CONSUMER
            assert describe(bs, group).type == expected, n
        wait_until(lambda: len(describe(bs, group).members) == 3, 20, "three classic members", interval=0.2)
        sent = producer.stop()
        caught_up("at the end")
    finally:
        producer.done.set()
        for w in workers:
            w.stop()

    # Exactly once by committed offsets: every record produced was read, no record was
    # committed by two members (nobody read a partition someone else still owned), and the
    # group's offsets are at the end of every partition.
    read = {e for w in workers for e in w.entries("R")}
    assert read == {(p, o) for p in range(PARTITIONS) for o in range(sent[p])}
    commits = committed_records()
    assert committed_ends() == sent
    twice = {e: n for e, n in commits.items() if n > 1}
    assert not twice, f"records committed by two members: {sorted(twice)[:10]}"
    assert committed_offsets(bs, group, topic) == sent
    assert describe(bs, group).type == ConsumerGroupType.CLASSIC
