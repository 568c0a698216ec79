"""Durability beyond SIGKILL: the broker's data dir is on powerfs (powerfs.py), which keeps
unsynced writes in a volatile layer; a power cut SIGKILLs the broker, drops that layer and
restarts the broker on what was durable. A SIGKILL alone keeps the page cache, so only this
shows whether an acknowledged record was really on disk.

Each cycle runs an idempotent acks=all load (confluent-kafka) and cuts the power mid-stream;
every other cut is torn (files keep a random part of their unsynced appends).
The history checker (history.py) then reads every partition back and reports lost, duplicated,
reordered and phantom records. `log.flush.policy=fsync` (the default) must lose nothing
acknowledged; the mutation check runs the same load with `log.flush.policy=interval` and a long
interval, which must lose acknowledged records, and the checker must say so.

STRATA_SOAK=1 runs more cycles (STRATA_POWER_CUTS, default 25) and longer loads.
"""

from __future__ import annotations

import os
import random
import time

import pytest
from confluent_kafka import KafkaError

import helpers as h
from conftest import StrataBroker, requires
from history import History
from powerfs import PowerFs, cluster_on_powerfs, fuse_available

SOAK = bool(os.environ.get("STRATA_SOAK"))
CUTS = int(os.environ.get("STRATA_POWER_CUTS", "25" if SOAK else "8"))
PARTITIONS = 3
TOPIC = "power"


def leader(bootstrap: str, partition: int = 0) -> int:
    return h.partition_leader(bootstrap, TOPIC, partition)


pytestmark = requires(fuse_available(), "powerfs needs /dev/fuse, root and mfusepy (pip)")


@pytest.fixture
def powered(tmp_path, request):
    """A broker whose log dir is on powerfs; returns (broker, fs)."""
    fs = PowerFs(tmp_path / "mnt", tmp_path / "powerfs.log")
    made: list[StrataBroker] = []
    request.node._strata_brokers = made

    def make(extra_sets: dict[str, str] | None = None) -> tuple[StrataBroker, PowerFs]:
        d = tmp_path / "broker"
        d.mkdir()
        b = StrataBroker(d, extra_sets)
        b.data_dir = fs.mountpoint / "data"
        made.append(b)
        return b.start(), fs

    yield make
    for b in made:
        b.cleanup()
    fs.stop()


def power_cut(broker: StrataBroker, fs: PowerFs, torn_seed: int | None = None) -> dict[str, int]:
    fs.power_off()
    broker.kill()
    dropped = fs.power_cut(torn_seed)
    broker.start()  # fails the test if the broker cannot start on what survived
    return dropped


def load_then_cut(broker, fs, hist: History, cycle: int, seconds: float, rng) -> dict[str, int]:
    """Produces to every partition until a random moment in the next `seconds`, then cuts the
    power with requests in flight. Unacknowledged sends are purged (their outcome stays
    unknown to the checker: they may or may not be in the log)."""
    p = h.producer(broker.bootstrap, **{
        "enable.idempotence": True,
        "linger.ms": 1,
        "message.timeout.ms": 10000,
    })
    cb = hist.delivery_callback()

    def on_delivery(err, msg):
        if err is None or err.code() not in UNKNOWN:
            cb(err, msg)

    # One acknowledged record first, so every cycle cuts an established stream (a loaded
    # machine can take a second to connect and get a producer id).
    v = b"c%03d-warmup" % cycle
    hist.send(v, 0, producer=f"cycle{cycle}")
    p.produce(TOPIC, value=v, partition=0, on_delivery=on_delivery)
    h.flush_all(p)
    cut_at = time.monotonic() + seconds * rng.uniform(0.5, 1.0)
    i = 0
    while time.monotonic() < cut_at:
        v = b"c%03d-%07d" % (cycle, i)
        part = i % PARTITIONS
        hist.send(v, part, producer=f"cycle{cycle}")
        try:
            p.produce(TOPIC, value=v, partition=part, on_delivery=on_delivery)
        except BufferError:
            p.poll(0.01)
            p.produce(TOPIC, value=v, partition=part, on_delivery=on_delivery)
        i += 1
        if i % 50 == 0:
            p.poll(0)
            time.sleep(0.002)  # a steady stream, not one queue drained at the end
    # Every other cut is torn: files keep part of their unsynced appends, which recovery
    # must cut back to the last whole batch.
    dropped = power_cut(broker, fs, rng.randrange(1 << 30) if cycle % 2 else None)
    p.purge(in_queue=True, in_flight=True)
    p.flush(10)
    return dropped


# Outcomes that say nothing about whether the record reached the log.
UNKNOWN = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT, KafkaError._TRANSPORT,
           KafkaError._MSG_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN)


def run_cycles(broker, fs, cycles: int, seconds: float, seed: int) -> tuple[History, list]:
    rng = random.Random(seed)
    # Small segments, so cuts land around rolls too (new segment files, their directory
    # fsync, indexes and recovery-point checkpoints), and small indexes to keep powerfs small.
    h.create_topic(broker.bootstrap, TOPIC, PARTITIONS,
                   {"segment.bytes": str(256 * 1024), "segment.index.bytes": "8192"})
    hist = History()
    drops = []
    for cycle in range(cycles):
        drops.append(load_then_cut(broker, fs, hist, cycle, seconds, rng))
    read = h.read_partitions(broker.bootstrap, TOPIC, range(PARTITIONS), timeout=60)
    hist.read_all("final", read, range(PARTITIONS))
    return hist, drops


def summary(name: str, hist: History, report, drops) -> str:
    dropping = sum(1 for d in drops if d["files_reverted"])
    torn = sum(d["torn_files"] for d in drops)
    return (f"{name}: {len(drops)} power cuts, {report.counts()}; cuts that dropped unsynced "
            f"data: {dropping}, files left with a torn tail: {torn}")


@pytest.mark.timeout(300 if SOAK else 150)
def test_fsync_policy_loses_no_acknowledged_record_across_power_cuts(powered):
    broker, fs = powered()
    hist, drops = run_cycles(broker, fs, CUTS, 3.0 if SOAK else 1.5, seed=CUTS)
    report = hist.check()
    print(summary("fsync", hist, report, drops))
    report.assert_ok()
    assert report.acknowledged > CUTS * 50, report.counts()
    assert report.recovered == report.acknowledged
    # The cuts really dropped data: unacknowledged appends and tails the broker never synced.
    assert any(d["files_reverted"] for d in drops), drops
    # And the log goes on after the last restart: new records get the offsets after the end.
    ends = {p: h.watermarks(broker.bootstrap, TOPIC, p)[1] for p in range(PARTITIONS)}
    d = h.Deliveries()
    p = h.producer(broker.bootstrap, **{"enable.idempotence": True})
    for part in range(PARTITIONS):
        p.produce(TOPIC, value=b"after-%d" % part, partition=part, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(PARTITIONS)
    assert {r.partition: r.offset for r in h.acked_records(d)} == ends


@pytest.mark.timeout(150)
def test_interval_policy_loses_acknowledged_records_and_the_checker_reports_them(powered):
    """The mutation check: acknowledging before fsync must show up as lost records, or the
    test above could not fail."""
    broker, fs = powered({
        "log.flush.policy": "interval",
        "log.flush.interval.ms": "600000",
        "log.flush.offset.checkpoint.interval.ms": "600000",
    })
    hist, drops = run_cycles(broker, fs, 2, 1.0, seed=1)
    report = hist.check()
    print(summary("interval", hist, report, drops))
    assert not report.ok
    assert report.lost, report.describe()
    assert report.recovered < report.acknowledged


@pytest.mark.timeout(120)
def test_committed_metadata_survives_power_cuts(powered):
    """Topics created (committed in the Raft log) just before a cut exist after it, with their
    partitions and configs, in the same cluster; and the node starts every time. The first cut
    comes right after the first start, when the log dir, the metadata log and the partition
    directories have just been created."""
    broker, fs = powered()
    admin = h.admin(broker.bootstrap)
    cluster_id = admin.list_topics(timeout=h.OP_TIMEOUT_S).cluster_id
    made: dict[str, int] = {}
    for cut in range(4):
        name = f"meta-{cut}"
        h.create_topic(broker.bootstrap, name, cut + 1, {"retention.ms": str(3600000 + cut)})
        made[name] = cut + 1
        power_cut(broker, fs, torn_seed=cut if cut % 2 else None)
        admin = h.admin(broker.bootstrap)
        md = admin.list_topics(timeout=h.OP_TIMEOUT_S)
        assert md.cluster_id == cluster_id
        have = {t: len(m.partitions) for t, m in md.topics.items() if t.startswith("meta-")}
        assert have == made, f"after cut {cut}: {have}"
    from confluent_kafka.admin import ConfigResource

    res = [ConfigResource("topic", t) for t in made]
    for r, f in admin.describe_configs(res).items():
        cut = int(r.name.split("-")[1])
        assert f.result(timeout=h.OP_TIMEOUT_S)["retention.ms"].value == str(3600000 + cut)
    # The partitions are usable: a record to each is acknowledged at offset 0.
    d = h.Deliveries()
    p = h.producer(broker.bootstrap)
    for t, n in made.items():
        for part in range(n):
            p.produce(t, value=b"x", partition=part, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(sum(made.values()))
    assert {r.offset for r in h.acked_records(d)} == {0}


@pytest.mark.timeout(240)
def test_cluster_power_cut_keeps_acks_all_records(tmp_path, request):
    """Three nodes on one power supply: every node loses its unsynced data at once, so
    replication cannot stand in for the disk. Records acknowledged with acks=all (after the
    leader's fsync and the ISR's fetch) must all be there after the restart."""
    with cluster_on_powerfs(tmp_path, request, sync=True) as (c, fs):
        c.start_all()
        c.wait_ready()
        a = h.admin(c.bootstrap())
        from confluent_kafka.admin import NewTopic

        a.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})],
                        request_timeout=15)[TOPIC].result(timeout=15)
        hist = History()
        rng = random.Random(7)
        cycles = 6 if SOAK else 3
        for cycle in range(cycles):

            def cut():
                fs.power_off()
                for b in c.nodes:
                    b.kill()
                fs.power_cut(rng.randrange(1 << 30) if cycle % 2 else None)

            produce_then(c.bootstrap(), hist, cycle, 1.5, cut)
            c.start_all()
            c.wait_ready()
        read = read_when_led(c.bootstrap())
        hist.read_all("final", read, range(PARTITIONS))
        report = hist.check()
        print(f"cluster: {cycles} power cuts of all three nodes, {report.counts()}")
        report.assert_ok()
        assert report.acknowledged > cycles * 50, report.counts()


def produce_then(bootstrap: str, hist: History, cycle: int, seconds: float, cut,
                 partitions: int = PARTITIONS):
    """An idempotent acks=all stream for `seconds` (after a first acknowledged record), then
    `cut()` with requests in flight; what is not acknowledged by then is purged and stays
    unknown."""
    p = h.producer(bootstrap, **{"enable.idempotence": True, "linger.ms": 1,
                                 "message.timeout.ms": 30000})
    cb = hist.delivery_callback()

    def on_delivery(err, msg):
        if err is None or err.code() not in UNKNOWN:
            cb(err, msg)

    v = b"c%03d-warmup" % cycle
    hist.send(v, 0, producer=f"cycle{cycle}")
    p.produce(TOPIC, value=v, partition=0, on_delivery=on_delivery)
    h.flush_all(p)
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        v = b"c%03d-%07d" % (cycle, i)
        hist.send(v, i % partitions, producer=f"cycle{cycle}")
        p.produce(TOPIC, value=v, partition=i % partitions, on_delivery=on_delivery)
        i += 1
        if i % 20 == 0:
            p.poll(0.005)
    cut()
    p.purge(in_queue=True, in_flight=True)
    p.flush(10)


def read_when_led(bootstrap: str):
    """Reads every partition once each has a leader again."""
    def led():
        md = h.admin(bootstrap).list_topics(TOPIC, timeout=5)
        t = md.topics.get(TOPIC)
        return t and not t.error and all(pm.leader >= 0 for pm in t.partitions.values())

    from conftest import wait_until

    wait_until(led, 30, "a leader for every partition")
    return h.read_partitions(bootstrap, TOPIC, range(PARTITIONS), timeout=60)


@pytest.mark.timeout(240)
def test_cluster_power_cut_then_a_follower_leads(tmp_path, request):
    """After a power cut of every node, the old leader of a partition comes back last, so a
    follower that was in the ISR must lead. It must have every record acknowledged with
    acks=all: the high watermark may only pass what the ISR holds durably."""
    from conftest import wait_until
    # The followers' disks are slow: their fsyncs end well after the leader's.
    with cluster_on_powerfs(tmp_path, request, sync=True, fsync_delay_ms=50) as (c, fs):
        c.start_all()
        c.wait_ready()
        from confluent_kafka.admin import NewTopic

        a = h.admin(c.bootstrap())
        a.create_topics([NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "3"})],
                        request_timeout=15)[TOPIC].result(timeout=15)
        hist = History()
        cycles = 4 if SOAK else 2
        for cycle in range(cycles):
            wait_until(lambda: leader(c.bootstrap()) > 0, 30, "a leader")
            old = leader(c.bootstrap())
            slow = " ".join(f"/node{b.node_id}/" for b in c.nodes if b.node_id != old)
            (fs.mountpoint / ".slow_fsync").write_text(slow)

            def cut():
                fs.power_off()
                for b in c.nodes:
                    b.kill()
                fs.power_cut()

            produce_then(c.bootstrap(), hist, cycle, 1.5, cut, partitions=1)
            others = [b for b in c.nodes if b.node_id != old]
            for b in others:
                b.start()
            boot = ",".join(b.bootstrap for b in others)
            wait_until(lambda: leader(boot) in {b.node_id for b in others}, 60,
                       f"a follower of {old} to lead")
            c.node(old).start()
            c.wait_ready()
        wait_until(lambda: leader(c.bootstrap()) > 0, 30, "a leader")
        read = h.read_partitions(c.bootstrap(), TOPIC, [0], timeout=60)
        hist.read_all("final", read, [0])
        report = hist.check()
        print(f"cluster, follower leads: {cycles} power cuts, {report.counts()}")
        report.assert_ok()


@pytest.mark.timeout(120)
def test_a_failing_fsync_acknowledges_nothing(powered):
    """Fault injection: every fsync fails with EIO (powerfs with its power off, the broker
    still running). No record may be acknowledged, and the broker halts: its only log dir is
    offline, as Kafka halts when every log dir failed (test_disk_faults.py covers one dir of
    several). After a power cut and restart the acknowledged records are all there and the
    partition takes writes again."""
    broker, fs = powered()
    h.create_topic(broker.bootstrap, TOPIC, 1)
    hist = History()
    p = h.producer(broker.bootstrap, **{"enable.idempotence": True, "message.timeout.ms": 4000})
    cb = hist.delivery_callback()
    for i in range(100):
        hist.send(b"ok-%03d" % i, 0)
        p.produce(TOPIC, value=b"ok-%03d" % i, partition=0, on_delivery=cb)
    h.flush_all(p)
    fs.power_off()
    d = h.Deliveries()
    for i in range(50):
        hist.send(b"eio-%03d" % i, 0)  # outcome unknown to the checker: it may be on disk
        p.produce(TOPIC, value=b"eio-%03d" % i, partition=0, on_delivery=d)
    p.flush(15)
    assert not d.ok, f"{len(d.ok)} records acknowledged although every fsync failed"
    assert len(d.failed) == 50
    from conftest import wait_until

    wait_until(lambda: not broker.is_running(), 30, "the broker to halt")
    assert "halting: every log dir is offline" in broker.log_text()
    assert "Input/output error" in broker.log_text()

    power_cut(broker, fs)
    hist.read_all("final", h.read_partitions(broker.bootstrap, TOPIC, [0]), [0])
    report = hist.check()
    report.assert_ok()
    assert report.recovered == 100
    assert report.unacknowledged_found == 0, "records whose fsync failed survived the cut"
    d = h.Deliveries()
    p = h.producer(broker.bootstrap)
    p.produce(TOPIC, value=b"after", partition=0, on_delivery=d)
    h.flush_all(p)
    d.assert_all_ok(1)
