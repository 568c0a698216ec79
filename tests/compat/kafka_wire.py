"""A tiny hand-rolled Kafka wire client for requests real clients refuse to send (a produce or
fetch to a partition that does not exist, garbage frames). Non-flexible versions only:
Produce v3, Fetch v4, Metadata v1."""

from __future__ import annotations

import socket
import struct
import time


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n: int) -> bytes:
    return uvarint_bytes((n << 1) ^ (n >> 63))  # zigzag


def string(s: str | None) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def record_batch(records: list[tuple[bytes | None, bytes | None]], timestamp_ms: int = 0) -> bytes:
    """An uncompressed magic-2 batch with base offset 0 and no producer id."""
    body = bytearray()
    for i, (k, v) in enumerate(records):
        r = bytearray(b"\x00")  # attributes
        r += varint(0)  # timestamp delta
        r += varint(i)  # offset delta
        r += varint(-1) if k is None else varint(len(k)) + k
        r += varint(-1) if v is None else varint(len(v)) + v
        r += varint(0)  # headers
        body += varint(len(r)) + r
    after_crc = (
        struct.pack(">hiqqqhii", 0, len(records) - 1, timestamp_ms, timestamp_ms, -1, -1, -1, len(records))
        + bytes(body)
    )
    crc = crc32c(after_crc)
    # baseOffset, batchLength (from partitionLeaderEpoch on), partitionLeaderEpoch, magic, crc
    length = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", 0, length, -1, 2, crc) + after_crc


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, fmt: str):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0] if len(v) == 1 else v

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.data[self.pos : self.pos + n].decode()
        self.pos += n
        return s

    def bytes_(self):
        n = self.take(">i")
        if n < 0:
            return None
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b


class Connection:
    """One socket, one request at a time, with bounded waits."""

    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.correlation_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def request(self, api_key: int, version: int, body: bytes) -> Reader:
        self.correlation_id += 1
        header = struct.pack(">hhi", api_key, version, self.correlation_id) + string("strata-compat-raw")
        frame = header + body
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self.recv_exact(4))[0]
        payload = self.recv_exact(size)
        r = Reader(payload)
        corr = r.take(">i")
        assert corr == self.correlation_id, f"correlation id {corr} != {self.correlation_id}"
        return r

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True once the peer closes (EOF or reset); False if it stays open for `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            except socket.timeout:
                return False
            if not data:
                return True
            # Anything the broker answers before closing is ignored here.
        return False

    # ---- typed requests ---------------------------------------------------------------

    def produce_v3(self, topic: str, partition: int, batch: bytes, acks: int = -1):
        """Returns [(partition, error_code, base_offset)] for the topic."""
        body = (
            string(None)
            + struct.pack(">hi", acks, 10000)
            + struct.pack(">i", 1)
            + string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">i", partition)
            + struct.pack(">i", len(batch))
            + batch
        )
        r = self.request(0, 3, body)
        out = []
        for _ in range(r.take(">i")):
            r.string()
            for _ in range(r.take(">i")):
                p, err, base, _append_time = r.take(">ihqq")
                out.append((p, err, base))
        return out

    def fetch_v4(self, topic: str, partition: int, offset: int, max_wait_ms: int = 5000):
        """Returns [(partition, error_code, high_watermark, records)] for the topic."""
        body = (
            struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
            + struct.pack(">i", 1)
            + string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">iqi", partition, offset, 1 << 20)
        )
        r = self.request(1, 4, body)
        r.take(">i")  # throttle
        out = []
        for _ in range(r.take(">i")):
            r.string()
            for _ in range(r.take(">i")):
                p, err, hw, _lso = r.take(">ihqq")
                n_aborted = r.take(">i")
                for _ in range(max(n_aborted, 0)):
                    r.take(">qq")
                out.append((p, err, hw, r.bytes_()))
        return out

    def metadata_v1(self, topics: list[str] | None = None):
        """Returns (broker ids, {topic: (error_code, n_partitions)})."""
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
        r = self.request(3, 1, body)
        brokers = []
        for _ in range(r.take(">i")):
            node = r.take(">i")
            r.string()
            r.take(">i")
            r.string()
            brokers.append(node)
        r.take(">i")  # controller
        out = {}
        for _ in range(r.take(">i")):
            err = r.take(">h")
            name = r.string()
            r.take(">b")
            n = r.take(">i")
            for _ in range(n):
                r.take(">hii")  # error, partition, leader
                for _ in range(r.take(">i")):  # replicas
                    r.take(">i")
                for _ in range(r.take(">i")):  # isr
                    r.take(">i")
            out[name] = (err, n)
        return brokers, out


def uvarint(r: Reader) -> int:
    shift = value = 0
    while True:
        b = r.take(">B")
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7


def tagged_fields(r: Reader) -> dict[int, bytes]:
    out = {}
    for _ in range(uvarint(r)):
        tag = uvarint(r)
        size = uvarint(r)
        out[tag] = r.data[r.pos : r.pos + size]
        r.pos += size
    return out


def api_versions(conn: Connection, version: int):
    """ApiVersions at `version` (0..3). Returns (error_code, {api_key: (min, max)},
    top-level tagged fields {tag: raw bytes}, per-api tagged fields, trailing bytes).
    ApiVersions responses always use response header v0, even at flexible versions."""
    if version >= 3:
        # Request header v2 (client id + tags); body: client_software_name/version, tags.
        conn.correlation_id += 1
        header = struct.pack(">hhi", 18, version, conn.correlation_id) + string("compat") + b"\x00"
        body = b"\x07strata\x04" + b"1.0" + b"\x00"
        frame = header + body
        conn.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", conn.recv_exact(4))[0]
        r = Reader(conn.recv_exact(size))
        assert r.take(">i") == conn.correlation_id
    else:
        r = conn.request(18, version, b"")
    err = r.take(">h")
    flexible = version >= 3
    n = uvarint(r) - 1 if flexible else r.take(">i")
    apis, api_tags = {}, {}
    for _ in range(n):
        key, lo, hi = r.take(">hhh")
        apis[key] = (lo, hi)
        if flexible:
            api_tags[key] = tagged_fields(r)
    top_tags = {}
    if version >= 1:
        r.take(">i")  # throttle
    if flexible:
        top_tags = tagged_fields(r)
    return err, apis, top_tags, api_tags, len(r.data) - r.pos


def compact_string(s: str) -> bytes:
    b = s.encode()
    return uvarint_bytes(len(b) + 1) + b


def uvarint_bytes(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_compact_string(r: Reader) -> str | None:
    n = uvarint(r) - 1
    if n < 0:
        return None
    s = r.data[r.pos : r.pos + n].decode()
    r.pos += n
    return s


def flexible_request(conn: Connection, api_key: int, version: int, body: bytes) -> Reader:
    """A request with header v2 (client id + tags), its response read past header v1."""
    conn.correlation_id += 1
    header = struct.pack(">hhi", api_key, version, conn.correlation_id) + string("strata-compat-raw") + b"\x00"
    frame = header + body
    conn.sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", conn.recv_exact(4))[0]
    r = Reader(conn.recv_exact(size))
    assert r.take(">i") == conn.correlation_id
    tagged_fields(r)
    return r


def describe_quorum(conn: Connection, version: int, topic: str = "__cluster_metadata", partition: int = 0) -> dict:
    """DescribeQuorum (key 55, flexible at every version) for one topic partition, decoded."""
    body = (
        uvarint_bytes(2) + compact_string(topic)
        + uvarint_bytes(2) + struct.pack(">i", partition) + b"\x00"  # partition, its tags
        + b"\x00"  # topic tags
        + b"\x00"  # top-level tags
    )
    r = flexible_request(conn, 55, version, body)
    out: dict = {"error_code": r.take(">h"), "topics": [], "nodes": []}
    if version >= 2:
        out["error_message"] = read_compact_string(r)

    def replicas():
        rs = []
        for _ in range(uvarint(r) - 1):
            rep = {"replica_id": r.take(">i")}
            if version >= 2:
                r.pos += 16  # directory id
            rep["log_end_offset"] = r.take(">q")
            if version >= 1:
                rep["last_fetch_timestamp"] = r.take(">q")
                rep["last_caught_up_timestamp"] = r.take(">q")
            tagged_fields(r)
            rs.append(rep)
        return rs

    for _ in range(uvarint(r) - 1):
        topic_out = {"topic_name": read_compact_string(r), "partitions": []}
        for _ in range(uvarint(r) - 1):
            p = {"partition_index": r.take(">i"), "error_code": r.take(">h")}
            if version >= 2:
                p["error_message"] = read_compact_string(r)
            p["leader_id"], p["leader_epoch"], p["high_watermark"] = r.take(">iiq")
            p["current_voters"] = replicas()
            p["observers"] = replicas()
            tagged_fields(r)
            topic_out["partitions"].append(p)
        tagged_fields(r)
        out["topics"].append(topic_out)
    if version >= 2:
        for _ in range(uvarint(r) - 1):
            node = {"node_id": r.take(">i"), "listeners": []}
            for _ in range(uvarint(r) - 1):
                name, host = read_compact_string(r), read_compact_string(r)
                node["listeners"].append((name, host, r.take(">H")))
                tagged_fields(r)
            tagged_fields(r)
            out["nodes"].append(node)
    tagged_fields(r)
    assert r.pos == len(r.data), f"{len(r.data) - r.pos} trailing bytes"
    return out
