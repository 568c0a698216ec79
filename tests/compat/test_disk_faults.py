"""Disk faults on a real broker: its log dirs are on powerfs (powerfs.py), which fails the
writes, fsyncs or reads of the paths a test names (EIO), fails writes with ENOSPC, or flips a
stored bit.

- EIO on a write, an fsync or a read takes that log dir offline (Kafka's
  LogDirFailureChannel): its partitions answer KAFKA_STORAGE_ERROR and acknowledge nothing
  more, the broker reports them in its heartbeat so the controller elects other leaders and
  drops it from their ISR, its other log dir keeps serving, and once every dir is offline the
  broker halts, so the controller fences it and a follower leads.
- ENOSPC refuses the produce (KAFKA_STORAGE_ERROR), keeps the dir online, and the log takes
  writes again once space is back, without a gap or a torn batch.
- A flipped bit is never served; the range is restored by itself: from another replica (the
  leader gives up the partition, truncates to the batch, fetches it again and rejoins the
  ISR, byte-identical) or from the tiered copy of an uploaded segment. A sole copy stays
  unserved.

The history checker (history.py) checks every acknowledged record afterwards.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from confluent_kafka import KafkaError

import helpers as h
from conftest import StrataBroker, requires, wait_until
from history import History
from powerfs import PowerFs, cluster_on_powerfs, fuse_available

TOPIC = "faults"


def leader(bootstrap: str, partition: int = 0) -> int:
    return h.partition_leader(bootstrap, TOPIC, partition)


pytestmark = requires(fuse_available(), "powerfs needs /dev/fuse, root and mfusepy (pip)")


@pytest.fixture
def on_powerfs(tmp_path, request):
    """A broker with two log dirs, `a` and `b`, on powerfs; returns (broker, fs)."""
    fs = PowerFs(tmp_path / "mnt", tmp_path / "powerfs.log")
    d = tmp_path / "broker"
    d.mkdir()
    dirs = f"{fs.mountpoint / 'a'},{fs.mountpoint / 'b'}"
    b = StrataBroker(d, {"log.dirs": dirs})
    request.node._strata_brokers = [b]
    b.start()
    yield b, fs
    b.cleanup()
    fs.stop()


def metric(broker: StrataBroker, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{broker.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{want} missing from /metrics")


def partitions_in(fs: PowerFs, log_dir: str) -> list[int]:
    return sorted(int(p.name.rsplit("-", 1)[1])
                  for p in (fs.mountpoint / log_dir).iterdir() if p.name.startswith(TOPIC + "-"))


def log_bytes(fs: PowerFs, log_dir: str, partition: int) -> int:
    return sum(f.stat().st_size for f in (fs.mountpoint / log_dir / f"{TOPIC}-{partition}").glob("*.log"))


def produce(bootstrap: str, hist: History, partition: int, n: int, tag: str) -> h.Deliveries:
    """`n` acks=all records to `partition`, without retries, so that a refusal's error code
    reaches the delivery report as the broker sent it."""
    p = h.producer(bootstrap, **{"retries": 0, "message.timeout.ms": 8000})
    d = h.Deliveries()
    cb = hist.delivery_callback()

    def both(err, msg):
        cb(err, msg)
        d(err, msg)

    for i in range(n):
        v = f"{tag}-{partition}-{i:04d}".encode()
        hist.send(v, partition, producer=f"{tag}-{partition}")
        p.produce(TOPIC, value=v, partition=partition, on_delivery=both)
    p.flush(20)
    return d


def refused_with(d: h.Deliveries, code) -> None:
    assert not d.ok, f"{len(d.ok)} records acknowledged on a failed disk"
    assert d.failed, "no delivery report"
    codes = {err.code() for err, _ in d.failed}
    assert codes == {code}, f"refused with {codes}, expected {code}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["eio-write", "eio-fsync"])
def test_eio_takes_the_log_dir_offline_and_the_other_dir_keeps_serving(on_powerfs, fault):
    broker, fs = on_powerfs
    h.create_topic(broker.bootstrap, TOPIC, 4)
    in_a, in_b = partitions_in(fs, "a"), partitions_in(fs, "b")
    assert len(in_a) == 2 and len(in_b) == 2, (in_a, in_b)
    hist = History()
    for part in range(4):
        produce(broker.bootstrap, hist, part, 20, "before").assert_all_ok(20)

    fs.set_faults([(fault, "b/*")])
    refused_with(produce(broker.bootstrap, hist, in_b[0], 5, "failed"),
                 KafkaError.KAFKA_STORAGE_ERROR)
    # The whole dir is offline, not only the partition that met the fault: the broker reports
    # both its partitions to the controller, which leaves them without a leader (this broker
    # holds their only replica); nothing more reaches the disk.
    size_before = log_bytes(fs, "b", in_b[1])
    wait_until(lambda: all(leader(broker.bootstrap, p) == -1 for p in in_b), 30,
               f"partitions {in_b} to lose their leader")
    assert log_bytes(fs, "b", in_b[1]) == size_before
    # The other dir serves as before; the broker stays up.
    produce(broker.bootstrap, hist, in_a[0], 20, "after").assert_all_ok(20)
    assert broker.is_running()
    read_a = h.read_partitions(broker.bootstrap, TOPIC, in_a)
    assert [r.value for r in read_a if r.partition == in_a[0]][-1] == f"after-{in_a[0]}-0019".encode()
    assert metric(broker, "strata_log_dirs_offline") == 1
    kind = "write" if fault == "eio-write" else "fsync"
    assert metric(broker, "strata_log_storage_errors_total", f'kind="{kind}"') >= 1
    assert "log dir offline" in broker.log_text()

    # The disk is replaced (the fault cleared) and the broker restarted: recovery brings the
    # dir back with every acknowledged record.
    fs.set_faults([])
    broker.kill()
    broker.start()
    read = h.read_partitions(broker.bootstrap, TOPIC, range(4), timeout=60)
    hist.read_all("final", read, range(4))
    report = hist.check()
    report.assert_ok()
    assert report.recovered == 4 * 20 + 20
    produce(broker.bootstrap, hist, in_b[1], 3, "again").assert_all_ok(3)
    assert metric(broker, "strata_log_dirs_offline") == 0


@pytest.mark.timeout(120)
def test_enospc_refuses_the_produce_and_loses_nothing(on_powerfs):
    broker, fs = on_powerfs
    h.create_topic(broker.bootstrap, TOPIC, 1)
    hist = History()
    produce(broker.bootstrap, hist, 0, 30, "before").assert_all_ok(30)

    fs.set_faults([("enospc", "*.log")])
    refused_with(produce(broker.bootstrap, hist, 0, 10, "full"), KafkaError.KAFKA_STORAGE_ERROR)
    # A full disk is not a failed disk: the dir stays online and serves reads.
    assert metric(broker, "strata_log_dirs_offline") == 0
    assert metric(broker, "strata_log_storage_errors_total", 'kind="disk_full"') >= 1
    assert [r.value for r in h.read_partitions(broker.bootstrap, TOPIC, [0])] == [
        f"before-0-{i:04d}".encode() for i in range(30)]

    # Space is back: the next records follow the acknowledged ones without a gap.
    fs.set_faults([])
    after = produce(broker.bootstrap, hist, 0, 10, "after")
    after.assert_all_ok(10)
    assert sorted(m.offset() for m in after.ok) == list(range(30, 40))
    broker.kill()
    broker.start()
    read = h.read_partitions(broker.bootstrap, TOPIC, [0])
    h.assert_contiguous(read)
    hist.read_all("final", read, [0])
    report = hist.check()
    report.assert_ok()
    assert report.recovered == 40
    assert report.unacknowledged_found == 0, "a refused append was left in the log"


@pytest.mark.timeout(180)
def test_eio_on_fsync_of_a_leaders_only_log_dir_halts_it_and_a_follower_leads(tmp_path, request):
    """Three nodes, one log dir each: the leader's fsyncs fail, so its only dir goes offline
    and it halts (Kafka: all log dirs failed). It is fenced, a follower in the ISR leads, and
    every record acknowledged with acks=all is there."""
    with cluster_on_powerfs(tmp_path, request) as (c, fs):
        c.start_all()
        c.wait_ready()
        from confluent_kafka.admin import NewTopic

        a = h.admin(c.bootstrap())
        a.create_topics(
            [NewTopic(TOPIC, 1, 3, config={"min.insync.replicas": "2"})],
            request_timeout=15)[TOPIC].result(timeout=15)
        wait_until(lambda: leader(c.bootstrap()) > 0, 30, "a leader")
        old = leader(c.bootstrap())
        hist = History()
        p = h.producer(c.bootstrap(), **{"enable.idempotence": True, "linger.ms": 1})
        cb = hist.delivery_callback()
        for i in range(50):
            hist.send(b"r-%04d" % i, 0)
            p.produce(TOPIC, value=b"r-%04d" % i, partition=0, on_delivery=cb)
        h.flush_all(p)

        fs.set_faults([("eio-fsync", f"node{old}/*")])
        # Records sent from now on are acknowledged only by a new leader, or not at all.
        for i in range(50, 100):
            hist.send(b"r-%04d" % i, 0)
            p.produce(TOPIC, value=b"r-%04d" % i, partition=0, on_delivery=cb)
        wait_until(lambda: not c.node(old).is_running(), 30, f"node {old} to halt")
        assert "halting: every log dir is offline" in c.node(old).log_text()
        others = ",".join(b.bootstrap for b in c.nodes if b.node_id != old)
        wait_until(lambda: leader(others) not in (-1, old), 30, "a follower to lead")
        h.flush_all(p, 60)
        read = h.read_partitions(others, TOPIC, [0], timeout=60)
        hist.read_all("final", read, [0])
        report = hist.check()
        print(f"leader's dir failed: {report.counts()}")
        report.assert_ok()
        assert report.recovered >= 50


@pytest.mark.timeout(120)
def test_bit_flip_in_a_sealed_segment_is_not_served(on_powerfs):
    """A bit rots in a sealed segment (a disk returning bad data): consumers get the batches
    before it and after it, never the corrupt one; the broker logs and counts it."""
    broker, fs = on_powerfs
    h.create_topic(broker.bootstrap, TOPIC, 1, {"segment.bytes": "4096"})
    p = h.producer(broker.bootstrap, **{"linger.ms": 0})
    d = h.Deliveries()
    values = [b"%04d-" % i + b"x" * 300 for i in range(40)]
    for v in values:  # one record a batch: batch n holds offset n
        p.produce(TOPIC, value=v, partition=0, on_delivery=d)
        p.flush(10)
    d.assert_all_ok(40)
    seg = next((fs.mountpoint / "a" / f"{TOPIC}-0").glob("00000000000000000000.log"), None)
    if seg is None:
        seg = next((fs.mountpoint / "b" / f"{TOPIC}-0").glob("00000000000000000000.log"))
    # The sealed first segment holds batches 0-9 of equal size; a bit inside batch 1's records.
    batch_bytes = seg.stat().st_size // 10
    assert seg.stat().st_size == 10 * batch_bytes, seg.stat().st_size
    fs.flip_bit(seg, batch_bytes + 200, 3)

    def poll_from(offset: int, seconds: float, want: int | None = None) -> list:
        from confluent_kafka import TopicPartition

        c = h.consumer(broker.bootstrap)
        got = []
        try:
            c.assign([TopicPartition(TOPIC, 0, offset)])
            end = time.monotonic() + seconds
            while time.monotonic() < end and (want is None or len(got) < want):
                m = c.poll(0.2)
                if m is not None and not m.error():
                    got.append((m.offset(), m.value()))
        finally:
            c.close()
        return got

    # From the start: offset 0, then nothing (the broker refuses to serve the bad batch).
    assert poll_from(0, 3) == [(0, values[0])]
    # Past it, everything is served intact.
    assert poll_from(2, 10, want=38) == [(i, values[i]) for i in range(2, 40)]
    assert metric(broker, "strata_log_storage_errors_total", 'kind="corrupt"') >= 1
    assert "corrupt batch in a segment: not served" in broker.log_text()
    # Nothing holds another copy (one replica; uploads fail on powerfs): it stays so, and the
    # log says why.
    wait_until(lambda: "this is the only replica and there is no tiered copy" in broker.log_text(),
               10, "the reason it cannot be restored")
    assert metric(broker, "strata_log_corrupt_ranges_repaired_total", 'source="replica"') == 0
    assert metric(broker, "strata_log_corrupt_ranges_repaired_total", 'source="remote"') == 0
    assert metric(broker, "strata_log_dirs_offline") == 0


@pytest.mark.timeout(120)
def test_eio_on_read_takes_the_log_dir_offline(on_powerfs):
    """A sealed segment cannot be read back (EIO): the dir goes offline as for a failed
    write (its partition loses its leader: this broker held the only replica), consumers get
    nothing from it, and the other dir keeps serving."""
    broker, fs = on_powerfs
    h.create_topic(broker.bootstrap, TOPIC, 2, {"segment.bytes": "4096"})
    in_a, in_b = partitions_in(fs, "a"), partitions_in(fs, "b")
    for part in (in_a[0], in_b[0]):
        p = h.producer(broker.bootstrap, **{"linger.ms": 0})
        d = h.Deliveries()
        for i in range(30):
            p.produce(TOPIC, value=b"%04d-" % i + b"r" * 300, partition=part, on_delivery=d)
            p.flush(10)
        d.assert_all_ok(30)
    fs.set_faults([("eio-read", "b/*.log")])
    fs.drop_caches()
    from confluent_kafka import TopicPartition

    c = h.consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(TOPIC, in_b[0], 0)])
        end = time.monotonic() + 4
        got = []
        while time.monotonic() < end:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append(m.offset())
    finally:
        c.close()
    assert got == []
    assert metric(broker, "strata_log_dirs_offline") == 1
    assert metric(broker, "strata_log_storage_errors_total", 'kind="read"') >= 1
    wait_until(lambda: leader(broker.bootstrap, in_b[0]) == -1, 30, "the partition to go offline")
    assert len(h.read_partitions(broker.bootstrap, TOPIC, [in_a[0]])) == 30


@pytest.mark.timeout(180)
def test_eio_on_fsync_of_one_of_two_log_dirs_moves_its_leaderships_and_the_broker_stays(
        tmp_path, request):
    """Three nodes with two log dirs each: one dir of a leader fails its fsyncs. The broker
    reports the partitions there in its heartbeat, so the controller elects other leaders for
    them and drops the broker from their ISR, while it keeps serving its other dir; every
    acknowledged record is there."""
    from confluent_kafka.admin import NewTopic

    with cluster_on_powerfs(tmp_path, request, two_dirs=True) as (c, fs):
        c.start_all()
        c.wait_ready()
        a = h.admin(c.bootstrap())
        a.create_topics([NewTopic(TOPIC, 4, 3, config={"min.insync.replicas": "2"})],
                        request_timeout=15)[TOPIC].result(timeout=15)
        wait_until(lambda: all(leader(c.bootstrap(), p) > 0 for p in range(4)), 30, "leaders")
        target, old = 0, leader(c.bootstrap(), 0)
        root = fs.mountpoint / f"node{old}"
        failed, good = ("a", "b") if (root / "a" / f"{TOPIC}-{target}").exists() else ("b", "a")
        kept = {int(p.name.rsplit("-", 1)[1]) for p in (root / good).iterdir()
                if p.name.startswith(TOPIC + "-")}
        assert kept, "placement puts partitions in both dirs"
        hist = History()
        p = h.producer(c.bootstrap(), **{"enable.idempotence": True, "linger.ms": 1})
        cb = hist.delivery_callback()

        def send(tag: str, n: int):
            for i in range(n):
                v = f"{tag}-{i:04d}".encode()
                hist.send(v, i % 4)
                p.produce(TOPIC, value=v, partition=i % 4, on_delivery=cb)

        send("before", 100)
        h.flush_all(p)
        # The partition logs of the dir fail (the first dir also holds the metadata log, whose
        # disk failing is not survived, as in Kafka: that is not what this test is about).
        fs.set_faults([("eio-fsync", f"node{old}/{failed}/{TOPIC}-*")])
        send("during", 100)

        def moved():
            md = h.admin(c.bootstrap()).list_topics(TOPIC, timeout=5).topics[TOPIC]
            pm = md.partitions[target]
            return pm.leader not in (-1, old) and old not in pm.isrs

        wait_until(moved, 60, f"partition {target} to move off node {old}")
        h.flush_all(p, 60)
        assert c.node(old).is_running(), "one dir of two failed: the broker serves on"
        assert "log dir offline" in c.node(old).log_text()
        md = h.admin(c.bootstrap()).list_topics(TOPIC, timeout=5).topics[TOPIC]
        for part in kept:
            assert old in md.partitions[part].isrs, f"partition {part} in the good dir left the ISR"
        read = h.read_partitions(c.bootstrap(), TOPIC, range(4), timeout=60)
        hist.read_all("final", read, range(4))
        report = hist.check()
        print(f"one of two dirs failed: {report.counts()}")
        report.assert_ok()
        assert report.recovered == 200


def _consume(bootstrap: str, n: int, seconds: float) -> list[tuple[int, bytes]]:
    """Offsets and values of partition 0 from offset 0 until `n` records came (retriable
    fetch errors, such as KAFKA_STORAGE_ERROR while a repair moves the leadership, are
    skipped: the client retries them)."""
    from confluent_kafka import TopicPartition

    c = h.consumer(bootstrap)
    got: list[tuple[int, bytes]] = []
    try:
        c.assign([TopicPartition(TOPIC, 0, 0)])
        end = time.monotonic() + seconds
        while time.monotonic() < end and len(got) < n:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
    finally:
        c.close()
    return got


def _produce_one_per_batch(bootstrap: str, values: list[bytes]) -> None:
    p = h.producer(bootstrap, **{"linger.ms": 0})
    d = h.Deliveries()
    for v in values:  # one record a batch: batch n holds offset n
        p.produce(TOPIC, value=v, partition=0, on_delivery=d)
        p.flush(10)
    d.assert_all_ok(len(values))


def _batches(partition_dir) -> bytes:
    """The partition's batches as stored, segment after segment."""
    return b"".join(f.read_bytes() for f in sorted(partition_dir.glob("*.log")))


@pytest.mark.timeout(180)
def test_bit_flip_on_a_leader_is_restored_from_a_replica(tmp_path, request):
    """Three nodes, RF 3: a bit rots in a sealed segment of the leader. The leader gives up
    the partition (reported offline, so the controller elects another ISR member), truncates
    its log to the corrupt batch and fetches it again from the new leader, then rejoins the
    ISR; consumers read every record intact, and its copy ends byte-identical to the others'."""
    from confluent_kafka.admin import NewTopic

    with cluster_on_powerfs(tmp_path, request) as (c, fs):
        c.start_all()
        c.wait_ready()
        a = h.admin(c.bootstrap())
        a.create_topics([NewTopic(TOPIC, 1, 3, config={
            "min.insync.replicas": "2", "segment.bytes": "4096",
            "remote.storage.enable": "false"})], request_timeout=15)[TOPIC].result(timeout=15)
        wait_until(lambda: leader(c.bootstrap()) > 0, 30, "a leader")
        old = leader(c.bootstrap())
        values = [b"%04d-" % i + b"x" * 300 for i in range(40)]
        _produce_one_per_batch(c.bootstrap(), values)
        wait_until(lambda: len(_isr(c.bootstrap())) == 3, 30, "a full ISR")
        dirs = {b.node_id: fs.mountpoint / f"node{b.node_id}" / f"{TOPIC}-0" for b in c.nodes}
        seg = dirs[old] / "00000000000000000000.log"
        batch_bytes = seg.stat().st_size // 10
        assert seg.stat().st_size == 10 * batch_bytes, seg.stat().st_size
        fs.flip_bit(seg, batch_bytes + 200, 3)  # inside batch 1's records

        assert _consume(c.bootstrap(), 40, 60) == list(enumerate(values))
        wait_until(lambda: metric(c.node(old), "strata_log_corrupt_ranges_repaired_total",
                                  'source="replica"') == 1, 30, "the repair to be counted")
        wait_until(lambda: old in _isr(c.bootstrap()) and len(_isr(c.bootstrap())) == 3, 60,
                   f"node {old} back in the ISR")
        log = c.node(old).log_text()
        print("\n".join(line for line in log.splitlines() if "corrupt" in line or "leadership" in line or "fenc" in line))
        for step in ["corrupt batch: leaving the ISR",
                     "corrupt batch: truncating to it and fetching it again from the leader",
                     "corrupt range restored from the leader"]:
            assert step in log, step
        # It left the ISR and the leadership: a leader other than it took over meanwhile.
        assert any(f"leader={n}" in log for n in (b.node_id for b in c.nodes) if n != old)
        others = [n for n in dirs if n != old]
        wait_until(lambda: all(_batches(dirs[old]) == _batches(dirs[n]) for n in others), 30,
                   "the repaired copy to equal the others")
        # And it is served again from the repaired replica (whichever node leads now).
        assert _consume(c.node(old).bootstrap, 40, 30) == list(enumerate(values))


def _isr(bootstrap: str) -> list[int]:
    try:
        md = h.admin(bootstrap).list_topics(TOPIC, timeout=5)
    except Exception:  # noqa: BLE001 - no broker answered yet
        return []
    t = md.topics.get(TOPIC)
    if not t or t.error or 0 not in t.partitions:
        return []
    return list(t.partitions[0].isrs)


@pytest.mark.timeout(120)
def test_bit_flip_in_an_uploaded_segment_is_served_from_the_tiered_copy(tmp_path, request):
    """A tiered topic (its bucket outside powerfs) on one broker: bits rot in two uploaded
    segments, the oldest local one and a later one. Reads of them go to the remote copy, so a
    consumer reads every record intact; the oldest local copy is dropped, the later one is
    kept (its reads go remote) since segments before it remain."""
    fs = PowerFs(tmp_path / "mnt", tmp_path / "powerfs.log")
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    d = tmp_path / "broker"
    d.mkdir()
    b = StrataBroker(d, {"log.dirs": str(fs.mountpoint / "a"),
                         "remote.storage.uri": f"file://{bucket}",
                         "remote.log.manager.task.interval.ms": "200"})
    request.node._strata_brokers = [b]
    try:
        b.start()
        h.create_topic(b.bootstrap, TOPIC, 1, {"segment.bytes": "4096",
                                               "remote.storage.enable": "true"})
        values = [b"%04d-" % i + b"t" * 300 for i in range(40)]
        _produce_one_per_batch(b.bootstrap, values)
        # Segments 0-9, 10-19 and 20-29 are sealed; wait for their upload.
        wait_until(lambda: len(list(bucket.rglob("*.log"))) >= 3, 30, "three uploaded segments")
        part = fs.mountpoint / "a" / f"{TOPIC}-0"
        first, middle = part / "00000000000000000000.log", part / "00000000000000000020.log"
        batch_bytes = first.stat().st_size // 10
        fs.flip_bit(first, 2 * batch_bytes + 150, 5)
        fs.flip_bit(middle, 5 * batch_bytes + 150, 1)

        assert _consume(b.bootstrap, 40, 30) == list(enumerate(values))
        assert metric(b, "strata_log_corrupt_ranges_repaired_total", 'source="remote"') == 2
        assert "its segment is served from the tiered copy" in b.log_text()
        assert not first.exists(), "the oldest local copy is dropped"
        assert middle.exists()
        # Again, now that the ranges are known: still every record.
        assert _consume(b.bootstrap, 40, 30) == list(enumerate(values))
    finally:
        b.cleanup()
        fs.stop()


@pytest.mark.timeout(120)
def test_a_log_dir_unreadable_at_startup_starts_offline(on_powerfs):
    """The broker restarts with one of its two log dirs unreadable (EIO on reads of its
    segments): it starts with that dir offline, as Kafka does, instead of refusing to start;
    the partitions there are reported offline (no leader: this broker held their only
    replica) and the other dir serves. Once the disk reads again, a restart brings them back
    with every record."""
    broker, fs = on_powerfs
    h.create_topic(broker.bootstrap, TOPIC, 2)
    in_a, in_b = partitions_in(fs, "a"), partitions_in(fs, "b")
    assert len(in_a) == 1 and len(in_b) == 1, (in_a, in_b)
    hist = History()
    for part in range(2):
        produce(broker.bootstrap, hist, part, 20, "before").assert_all_ok(20)
    broker.kill()
    fs.set_faults([("eio-read", "b/*.log")])
    fs.drop_caches()
    broker.start()
    wait_until(lambda: leader(broker.bootstrap, in_b[0]) == -1, 30,
               "the unreadable dir's partition to go offline")
    assert broker.is_running()
    assert metric(broker, "strata_log_dirs_offline") == 1
    assert "log dir offline" in broker.log_text()
    produce(broker.bootstrap, hist, in_a[0], 5, "after").assert_all_ok(5)
    assert [r.value for r in h.read_partitions(broker.bootstrap, TOPIC, in_a)][-1] == \
        f"after-{in_a[0]}-0004".encode()

    fs.set_faults([])
    broker.kill()
    broker.start()
    read = h.read_partitions(broker.bootstrap, TOPIC, range(2), timeout=60)
    hist.read_all("final", read, range(2))
    report = hist.check()
    report.assert_ok()
    assert report.recovered == 2 * 20 + 5
    assert metric(broker, "strata_log_dirs_offline") == 0
