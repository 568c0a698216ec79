"""Transactions on the partition side, with real consumers: transactional batches of two
producers written through the wire (InitProducerId, Produce with a transactional id), one
transaction committed and one aborted with WriteTxnMarkers, then read by confluent-kafka and
kcat consumers at both isolation levels.

The test plays the transaction coordinator's part on the wire (its markers), so the broker
runs with `transaction.partition.verification.enable=false`: the coordinator it would ask has
never heard of these producers (test_txn_verification.py covers verification).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import time

import helpers as h
import kafka_wire as wire

TOPIC = "txn-compat"


def init_producer_id(c: wire.Connection) -> tuple[int, int]:
    r = c.request(22, 0, wire.string(None) + struct.pack(">i", 60000))
    _throttle, err, pid, epoch = r.take(">ihqh")
    assert err == 0, err
    return pid, epoch


def txn_batch(pid: int, epoch: int, seq: int, values: list[bytes], transactional: bool = True) -> bytes:
    """An uncompressed magic-2 batch of a producer (the transactional bit when asked)."""
    ts = int(time.time() * 1000)
    body = bytearray()
    for i, v in enumerate(values):
        r = bytearray(b"\x00") + wire.varint(0) + wire.varint(i) + wire.varint(-1)
        r += wire.varint(len(v)) + v + wire.varint(0)
        body += wire.varint(len(r)) + r
    attributes = 0x10 if transactional else 0
    after_crc = (
        struct.pack(">hiqqqhii", attributes, len(values) - 1, ts, ts, pid, epoch, seq, len(values))
        + bytes(body)
    )
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, length, -1, 2, wire.crc32c(after_crc)) + after_crc


def produce(c: wire.Connection, batch: bytes, transactional_id: str | None) -> tuple[int, int]:
    """Produce v3 with the request's transactional id; (error code, base offset)."""
    body = (
        wire.string(transactional_id)
        + struct.pack(">hi", -1, 10000)
        + struct.pack(">i", 1)
        + wire.string(TOPIC)
        + struct.pack(">ii", 1, 0)
        + struct.pack(">i", len(batch))
        + batch
    )
    r = c.request(0, 3, body)
    assert r.take(">i") == 1
    r.string()
    assert r.take(">i") == 1
    _p, err, base, _t = r.take(">ihqq")
    return err, base


def write_txn_markers(c: wire.Connection, pid: int, epoch: int, commit: bool) -> list[int]:
    """WriteTxnMarkers v1 for partition 0 of the topic; the partition error codes."""
    marker = (
        struct.pack(">qhb", pid, epoch, 1 if commit else 0)
        + wire.uvarint_bytes(2)  # one topic
        + wire.compact_string(TOPIC)
        + wire.uvarint_bytes(2)  # one partition
        + struct.pack(">i", 0)
        + b"\x00"  # topic tags
        + struct.pack(">i", 3)  # coordinator epoch
        + b"\x00"  # marker tags
    )
    r = wire.flexible_request(c, 27, 1, wire.uvarint_bytes(2) + marker + b"\x00")
    codes = []
    for _ in range(wire.uvarint(r) - 1):
        assert r.take(">q") == pid
        for _ in range(wire.uvarint(r) - 1):
            assert wire.read_compact_string(r) == TOPIC
            for _ in range(wire.uvarint(r) - 1):
                _p, err = r.take(">ih")
                codes.append(err)
                wire.tagged_fields(r)
            wire.tagged_fields(r)
        wire.tagged_fields(r)
    return codes


def kcat_values(bootstrap: str, isolation: str) -> list[bytes]:
    out = subprocess.run(
        ["kcat", "-C", "-b", bootstrap, "-t", TOPIC, "-p", "0", "-o", "beginning", "-e", "-q",
         "-f", "%s\\n", "-X", f"isolation.level={isolation}"],
        capture_output=True, timeout=60, check=True,
    )
    return out.stdout.split(b"\n")[:-1]


def test_read_committed_consumers_skip_aborted_transactions(broker_factory):
    broker = broker_factory({"transaction.partition.verification.enable": "false"})
    h.create_topic(broker.bootstrap, TOPIC)
    with wire.Connection(broker.bootstrap) as c:
        a_pid, a_epoch = init_producer_id(c)
        b_pid, b_epoch = init_producer_id(c)
        assert produce(c, txn_batch(a_pid, a_epoch, 0, [b"a0", b"a1"]), "ta") == (0, 0)
        assert produce(c, txn_batch(b_pid, b_epoch, 0, [b"b0", b"b1"]), "tb") == (0, 2)
        assert produce(c, txn_batch(a_pid, a_epoch, 2, [b"a2"]), "ta") == (0, 4)
        # While both are open, a read_committed consumer sees nothing.
        assert h.read_partitions(broker.bootstrap, TOPIC, [0], **{"isolation.level": "read_committed"}) == []
        assert write_txn_markers(c, a_pid, a_epoch, commit=True) == [0]  # offset 5
        assert write_txn_markers(c, b_pid, b_epoch, commit=False) == [0]  # offset 6
        # After the markers, an ordinary record.
        plain = txn_batch(-1, -1, -1, [b"p"], transactional=False)
        assert produce(c, plain, None) == (0, 7)

    committed = h.read_partitions(broker.bootstrap, TOPIC, [0], **{"isolation.level": "read_committed"})
    assert [(r.offset, r.value) for r in committed] == [(0, b"a0"), (1, b"a1"), (4, b"a2"), (7, b"p")]
    uncommitted = h.read_partitions(broker.bootstrap, TOPIC, [0], **{"isolation.level": "read_uncommitted"})
    assert [(r.offset, r.value) for r in uncommitted] == [
        (0, b"a0"), (1, b"a1"), (2, b"b0"), (3, b"b1"), (4, b"a2"), (7, b"p"),
    ]
    if shutil.which("kcat"):
        assert kcat_values(broker.bootstrap, "read_committed") == [b"a0", b"a1", b"a2", b"p"]
        assert kcat_values(broker.bootstrap, "read_uncommitted") == [b"a0", b"a1", b"b0", b"b1", b"a2", b"p"]
