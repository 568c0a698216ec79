"""Restore from the bucket alone: a three-node cluster tiers a plain topic, a topic with keys
and an idempotent producer's topic to a shared bucket (a local directory every node names in
remote.storage.uri) with small segments; every node is SIGKILLed and its data dir deleted; a
fresh cluster on the same bucket runs `strata restore`. Every uploaded record reads back at
the same offset, record by record (key, value, headers, timestamp), each partition continues
after its remote end with the same topic id, and a new write lands right after it. A consumer
group's committed offsets, exported to the bucket, come back: the group resumes at them. A
tiered compacted topic comes back too: what it reads is a subset of what was uploaded, at the
same offsets, with the same newest value of every key (remote compaction may drop older ones).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import strata_bin, wait_until
from helpers import Deliveries, flush_all, producer, read_partitions, sort_po, watermarks
from test_cluster import Cluster

TOPICS = {"plain": 3, "keyed": 2, "idem": 1}
RECORDS = {"plain": 450, "keyed": 300, "idem": 200}
GROUP = "restore-group/1"
TOPIC_CONFIG = {"segment.bytes": "4096", "retention.ms": "-1"}
COMPACTED = "compacted"
COMPACTED_RECORDS = 300
COMPACTED_CONFIG = {"segment.bytes": "4096", "cleanup.policy": "compact", "remote.storage.enable": "true"}


def sets(bucket: Path) -> dict[str, str]:
    return {
        "remote.storage.uri": f"file://{bucket}",
        "remote.log.manager.task.interval.ms": "200",
        "remote.group.offsets.export.interval.ms": "200",
        "default.replication.factor": "3",
        "offsets.topic.replication.factor": "3",
        "log.cleaner.backoff.ms": "200",
    }


def remote_ends(bucket: Path) -> dict[tuple[str, int], int]:
    """(topic, partition) -> last uploaded offset, from the partition manifests."""
    out = {}
    for m in bucket.glob("*/*/manifest.json"):
        body = m.read_text().rsplit("\ncrc32:", 1)[0]
        doc = json.loads(body)
        ends = [s["end_offset"] for s in doc["segments"] if s["state"] == "CopySegmentFinished"]
        if ends:
            out[(doc["topic"], doc["partition"])] = max(ends)
    return out


def topic_ids(bucket: Path) -> dict[str, str]:
    out = {}
    for t in bucket.glob("*/topic.json"):
        doc = json.loads(t.read_text().rsplit("\ncrc32:", 1)[0])
        out[doc["topic"]] = (doc["topic_id"], doc["partitions"], doc["configs"])
    return out


def produce_all(bootstrap: str):
    for topic, n in RECORDS.items():
        extra = {"enable.idempotence": True} if topic == "idem" else {}
        p = producer(bootstrap, **extra)
        d = Deliveries()
        for i in range(n):
            key = f"k{i % 17}".encode() if topic == "keyed" else None
            p.produce(
                topic,
                value=f"{topic}-{i:05d}-".encode() + b"x" * 60,
                key=key,
                partition=-1 if topic == "keyed" else i % TOPICS[topic],
                headers=[("i", str(i).encode())],
                on_delivery=d,
            )
            if i % 40 == 39:
                p.flush(10)
        flush_all(p)
        d.assert_all_ok(n)
    p = producer(bootstrap)
    d = Deliveries()
    for i in range(COMPACTED_RECORDS):
        p.produce(COMPACTED, key=f"c{i % 23}".encode(), value=f"{i:05d}-".encode() + b"y" * 60,
                  partition=0, on_delivery=d)
        if i % 40 == 39:
            p.flush(10)
    flush_all(p)
    d.assert_all_ok(COMPACTED_RECORDS)


def newest(recs) -> dict:
    """The newest value of each key."""
    out = {}
    for r in sort_po(recs):
        out[r.key] = r.value
    return out


@pytest.mark.timeout(300)
def test_a_cluster_is_rebuilt_from_its_bucket(tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (tmp_path / "old").mkdir()
    old = Cluster(tmp_path / "old", extra=sets(bucket))
    new = None
    try:
        old.start_all()
        old.wait_ready()
        a = AdminClient({"bootstrap.servers": old.bootstrap(), "socket.timeout.ms": 5000})
        fs = a.create_topics(
            [NewTopic(t, num_partitions=n, replication_factor=3, config=TOPIC_CONFIG) for t, n in TOPICS.items()]
            + [NewTopic(COMPACTED, num_partitions=1, replication_factor=3, config=COMPACTED_CONFIG)],
            request_timeout=15,
        )
        for f in fs.values():
            f.result(timeout=15)
        produce_all(old.bootstrap())

        # Wait until every partition's sealed segments are uploaded (the active one never is).
        def uploaded():
            ends = remote_ends(bucket)
            for t, n in TOPICS.items():
                for p in range(n):
                    _, high = watermarks(old.bootstrap(), t, p)
                    if ends.get((t, p), -1) < high - 60:
                        return None
            _, high = watermarks(old.bootstrap(), COMPACTED, 0)
            if ends.get((COMPACTED, 0), -1) < high - 60:
                return None
            ids = topic_ids(bucket)
            return ends if set(ids) >= set(TOPICS) | {COMPACTED} else None

        ends = wait_until(uploaded, 40, "the sealed segments of every partition in the bucket", interval=0.5)
        ids = topic_ids(bucket)
        assert {t: v[1] for t, v in ids.items()} == {**TOPICS, COMPACTED: 1}
        assert ids["plain"][2] == TOPIC_CONFIG
        assert ids[COMPACTED][2] == COMPACTED_CONFIG
        before = {
            t: sort_po(r for r in read_partitions(old.bootstrap(), t, range(n)) if r.offset <= ends[(t, r.partition)])
            for t, n in TOPICS.items()
        }
        for t, n in TOPICS.items():
            for p in range(n):
                offsets = [r.offset for r in before[t] if r.partition == p]
                assert offsets == list(range(ends[(t, p)] + 1)), f"{t}-{p}"
        compacted_end = ends[(COMPACTED, 0)]
        before_compacted = [r for r in read_partitions(old.bootstrap(), COMPACTED, [0]) if r.offset <= compacted_end]

        # A group commits offsets inside the uploaded part; the export reaches the bucket.
        committed = {p: ends[("plain", p)] - 7 * (p + 1) for p in range(TOPICS["plain"])}
        g = Consumer({"bootstrap.servers": old.bootstrap(), "group.id": GROUP, "enable.auto.commit": False})
        g.commit(offsets=[TopicPartition("plain", p, o) for p, o in committed.items()], asynchronous=False)
        g.close()
        export = bucket / "__strata_groups" / (GROUP.encode().hex() + ".json")

        def exported():
            if not export.exists():
                return None
            doc = json.loads(export.read_text())
            got = {int(p): v["offset"] for p, v in doc["offsets"].get("plain", {}).items()}
            return got == committed

        wait_until(exported, 20, "the group's offsets exported to the bucket", interval=0.2)

        # Lose every disk.
        for b in old.nodes:
            b.kill()
        for b in old.nodes:
            shutil.rmtree(b.data_dir)

        (tmp_path / "new").mkdir()
        new = Cluster(tmp_path / "new", extra=sets(bucket))
        new.start_all()
        new.wait_ready()
        p = subprocess.run(
            [str(strata_bin()), "restore", "--bootstrap-server", new.nodes[0].bootstrap,
             "--remote-storage-uri", f"file://{bucket}", "--timeout-seconds", "60"],
            capture_output=True, text=True, timeout=90,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        for t in [*TOPICS, COMPACTED]:
            assert f"topic {t}\tid={ids[t][0]}" in p.stdout, p.stdout

        # Every uploaded record at its offset, exactly as it was.
        for t, n in TOPICS.items():
            after = sort_po(read_partitions(new.bootstrap(), t, range(n)))
            assert after == before[t], t
            for part in range(n):
                low, high = watermarks(new.bootstrap(), t, part)
                assert (low, high) == (0, ends[(t, part)] + 1), f"{t}-{part}"
        after_compacted = read_partitions(new.bootstrap(), COMPACTED, [0])
        uploaded = {r.offset: r for r in before_compacted}
        assert after_compacted and all(uploaded.get(r.offset) == r for r in after_compacted)
        assert newest(after_compacted) == newest(before_compacted)
        assert watermarks(new.bootstrap(), COMPACTED, 0) == (0, compacted_end + 1)

        # The group resumes from its committed offsets, at the same records.
        assert f"group {GROUP}\toffsets restored" in p.stdout, p.stdout
        g = Consumer({"bootstrap.servers": new.bootstrap(), "group.id": GROUP, "enable.auto.commit": False,
                      "auto.offset.reset": "error"})
        try:
            got = g.committed([TopicPartition("plain", p) for p in committed], timeout=20)
            assert {tp.partition: tp.offset for tp in got} == committed
            g.subscribe(["plain"])
            first = {}
            deadline = time.monotonic() + 30
            while len(first) < len(committed):
                assert time.monotonic() < deadline, f"group resumed only on {sorted(first)}"
                m = g.poll(0.5)
                if m is None or m.error():
                    continue
                first.setdefault(m.partition(), (m.offset(), m.value()))
            plain = {(r.partition, r.offset): r.value for r in before["plain"]}
            assert first == {p: (o, plain[(p, o)]) for p, o in committed.items()}
        finally:
            g.close()

        # The same topic ids, and new writes continue after the remote end.
        a2 = AdminClient({"bootstrap.servers": new.bootstrap(), "socket.timeout.ms": 5000})
        md = a2.list_topics(timeout=10)
        assert set(TOPICS) <= set(md.topics)
        for t in ("plain", "idem"):
            extra = {"enable.idempotence": True} if t == "idem" else {}
            pr = producer(new.bootstrap(), **extra)
            d = Deliveries()
            pr.produce(t, value=b"after", partition=0, on_delivery=d)
            flush_all(pr)
            d.assert_all_ok(1)
            assert d.ok[0].offset() == ends[(t, 0)] + 1
    finally:
        old.cleanup()
        if new is not None:
            new.cleanup()
