"""Tiered storage with real clients against a real S3-compatible server (moto_server, started
here) and against the local-directory store.

50 MB go in with segment.bytes=1 MiB and local.retention.bytes=2 MiB: the bucket holds the
sealed segments, the partition directory stays under its bound, and a consumer from offset 0
reads every record in order with its content checked; again after a broker restart. With S3,
the server is made unreachable in the middle of uploads (a TCP proxy in front of moto is shut,
so the broker sees connection refused while moto keeps its data) and brought back: nothing is
lost, and the local log held every segment meanwhile.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import accepts_connections, die_with_parent, free_port, missing, wait_until

SEGMENT_BYTES = 1048576
LOCAL_RETENTION_BYTES = 2097152
RECORD_BYTES = 1000
TOTAL_BYTES = 50 * 1024 * 1024
RECORDS = TOTAL_BYTES // RECORD_BYTES
BUCKET = "strata-tiering"
TOPIC = "tiered"


def value_for(i: int) -> bytes:
    head = f"{i:010d}:".encode()
    body = (str(i % 9973).encode() * 200)[: RECORD_BYTES - len(head)]
    return head + body


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; stop() closes the listener and every connection,
    so clients see the server as down; start() listens on the same port again."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.sock: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(64)
        self.sock = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, s: socket.socket):
        while True:
            try:
                client, _ = s.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
                except OSError:
                    pass
            self.conns.clear()


@pytest.fixture
def moto(tmp_path, monkeypatch):
    exe = shutil.which("moto_server")
    if exe is None:
        missing("moto_server is not installed (scripts/install-test-deps.sh installs it)")
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )
    wait_until(lambda: accepts_connections(port), 30, "moto_server to listen")
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{BUCKET}", method="PUT")
    urllib.request.urlopen(req, timeout=10).read()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    proxy = TcpProxy(port)
    proxy.start()
    yield port, proxy
    proxy.stop()
    proc.kill()
    proc.wait(timeout=10)
    log.close()


def s3_client(port: int):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def bucket_keys(port: int) -> list[str]:
    s3 = s3_client(port)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def create_topic(bootstrap: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fs = admin.create_topics(
        [
            NewTopic(
                TOPIC,
                num_partitions=1,
                replication_factor=1,
                config={
                    "segment.bytes": str(SEGMENT_BYTES),
                    "local.retention.bytes": str(LOCAL_RETENTION_BYTES),
                    "retention.ms": "-1",
                },
            )
        ]
    )
    fs[TOPIC].result(timeout=30)


def produce(bootstrap: str, start: int, count: int):
    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 262144,
            "enable.idempotence": True,
        }
    )
    errors = []

    def cb(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(start, start + count):
        while True:
            try:
                p.produce(TOPIC, value=value_for(i), partition=0, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]


def consume_all(bootstrap: str, count: int):
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 8 * 1024 * 1024,
            "check.crcs": True,
        }
    )
    c.assign([TopicPartition(TOPIC, 0, 0)])
    expected = 0
    deadline = time.monotonic() + 120
    try:
        while expected < count:
            assert time.monotonic() < deadline, f"consumed {expected} of {count}"
            msgs = c.consume(num_messages=2000, timeout=1.0)
            for m in msgs:
                assert m.error() is None, m.error()
                assert m.offset() == expected, (m.offset(), expected)
                assert m.value() == value_for(expected), f"content of offset {expected}"
                expected += 1
    finally:
        c.close()


def log_bytes(part_dir: Path) -> int:
    total = 0
    for p in part_dir.glob("*.log"):
        try:
            total += p.stat().st_size
        except FileNotFoundError:  # retention deleted it meanwhile
            pass
    return total


def local_start(part_dir: Path) -> int:
    return min(int(p.stem) for p in part_dir.glob("*.log") if p.exists())


def check_manifest(text: str, local_start_offset: int) -> int:
    """The manifest names contiguous segments from offset 0 up to the local log start."""
    body = text.rsplit("\ncrc32:", 1)[0]
    segs = json.loads(body)["segments"]
    assert segs and segs[0]["base_offset"] == 0, segs[:1]
    for a, b in zip(segs, segs[1:]):
        assert b["base_offset"] == a["end_offset"] + 1, (a, b)
    assert segs[-1]["end_offset"] + 1 >= local_start_offset
    assert all(s["state"] == "CopySegmentFinished" for s in segs)
    return len(segs)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("store", ["s3", "local"])
def test_tiered_topic_round_trip(store, broker_factory, request, tmp_path):
    sets = {
        "remote.log.manager.task.interval.ms": "200",
        "log.retention.check.interval.ms": "1000",
    }
    if store == "s3":
        port, proxy = request.getfixturevalue("moto")
        sets.update(
            {
                "remote.storage.uri": f"s3://{BUCKET}/cluster-a",
                "remote.storage.s3.endpoint": f"http://127.0.0.1:{proxy.port}",
                "remote.storage.s3.region": "us-east-1",
                "remote.storage.s3.path.style": "true",
            }
        )

        def count_logs():
            return sum(1 for k in bucket_keys(port) if k.endswith(".log"))

        def read_manifest():
            key = next(k for k in bucket_keys(port) if k.endswith("manifest.json"))
            return s3_client(port).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    else:
        remote_dir = tmp_path / "remote-store"
        sets["remote.storage.uri"] = f"file://{remote_dir}"

        def count_logs():
            return sum(1 for _ in remote_dir.rglob("*.log"))

        def read_manifest():
            return next(remote_dir.rglob("manifest.json")).read_text()

    b = broker_factory(sets)
    create_topic(b.bootstrap)
    part_dir = b.data_dir / f"{TOPIC}-0"
    half = RECORDS // 2
    produce(b.bootstrap, 0, half)

    if store == "s3":
        # The server goes away in the middle of uploads: writes go on, the local log keeps
        # every segment, nothing is lost when it comes back.
        proxy.stop()
        produce(b.bootstrap, half, RECORDS - half)
        time.sleep(3)
        assert log_bytes(part_dir) > LOCAL_RETENTION_BYTES + SEGMENT_BYTES, (
            "segments not yet uploaded must stay on local disk"
        )
        proxy.start()
    else:
        produce(b.bootstrap, half, RECORDS - half)

    wait_until(
        lambda: log_bytes(part_dir) <= LOCAL_RETENTION_BYTES + SEGMENT_BYTES,
        60,
        "local retention to trim the partition directory",
        0.5,
    )
    assert log_bytes(part_dir) <= LOCAL_RETENTION_BYTES + SEGMENT_BYTES
    manifest = read_manifest()
    segments = check_manifest(manifest, local_start(part_dir))
    # Orphans of uploads cut off by the outage may remain until the sweep (grace period).
    assert segments >= 30 and count_logs() >= segments
    if store == "s3":
        keys = bucket_keys(port)
        assert all(k.startswith(f"cluster-a/{TOPIC}-") for k in keys), keys[:3]
        assert sum(k.endswith("manifest.json") for k in keys) == 1
        for ext in (".index", ".timeindex", ".epochs"):
            # Every manifest segment has all its objects (outage orphans may add more).
            assert sum(k.endswith(ext) for k in keys) >= segments, ext
    consume_all(b.bootstrap, RECORDS)
    metrics = _metrics(b)
    if store == "s3":
        assert _metric(metrics, "strata_tiering_upload_errors_total") > 0
    assert _metric(metrics, "strata_tiering_remote_fetch_bytes_total") > 0

    b.restart()
    consume_all(b.bootstrap, RECORDS)
    b.stop()


def _metrics(b) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=10) as r:
        return r.read().decode()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
