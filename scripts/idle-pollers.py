#!/usr/bin/env python3
"""Holds N long-polling Fetch requests open on an idle topic, as idle consumers do.

Each poller has one connection and one Fetch (v4, min_bytes 1, --max-wait-ms) in flight at a
time, at the partition's high watermark, re-sent as soon as it is answered. One asyncio loop in
one thread serves them all, so the pollers cost little CPU: with nothing to read each is
answered once per max wait. The topic is auto-created (by a Metadata request) if missing.

Prints, at the end (or on SIGINT/SIGTERM), how many fetches were answered, how many came back
early (before 90% of the max wait: something woke them, or they carried records or an error),
and the CPU time this process used.

Usage: scripts/idle-pollers.py --bootstrap 127.0.0.1:19092 --pollers 500 [--duration-s 30]
"""

import argparse
import asyncio
import os
import resource
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "compat"))
from kafka_wire import Connection, Reader, string  # noqa: E402

CLIENT_ID = string("idle-poller")


def fetch_v4(correlation_id: int, topic: str, partition: int, offset: int, max_wait_ms: int) -> bytes:
    body = (
        struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
        + struct.pack(">i", 1)
        + string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">iqi", partition, offset, 1 << 20)
    )
    frame = struct.pack(">hhi", 1, 4, correlation_id) + CLIENT_ID + body
    return struct.pack(">i", len(frame)) + frame


def parse_fetch_v4(payload: bytes) -> tuple[int, int, int]:
    """(error code, high watermark, record bytes) of the one partition asked for."""
    r = Reader(payload)
    r.take(">i")  # correlation id
    r.take(">i")  # throttle
    for _ in range(r.take(">i")):
        r.string()
        for _ in range(r.take(">i")):
            _p, err, hw, _lso = r.take(">ihqq")
            for _ in range(max(r.take(">i"), 0)):
                r.take(">qq")
            records = r.bytes_()
            return err, hw, len(records or b"")
    return -1, 0, 0


class Stats:
    def __init__(self):
        self.answered = 0
        self.early = 0
        self.errors = 0


async def poller(host, port, topic, partition, max_wait_ms, stats, stop):
    reader, writer = await asyncio.open_connection(host, port)
    offset, correlation_id = 0, 0
    try:
        while not stop.is_set():
            correlation_id += 1
            sent = time.monotonic()
            writer.write(fetch_v4(correlation_id, topic, partition, offset, max_wait_ms))
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            err, hw, nbytes = parse_fetch_v4(await reader.readexactly(size))
            stats.answered += 1
            if err != 0:
                stats.errors += 1
                await asyncio.sleep(max_wait_ms / 1000)
            elif time.monotonic() - sent < 0.9 * max_wait_ms / 1000 and nbytes == 0:
                stats.early += 1
            if hw >= 0:
                offset = hw
    finally:
        writer.close()


def partitions_of(bootstrap: str, topic: str) -> int:
    """Auto-creates the topic if needed; waits until it has partitions."""
    deadline = time.monotonic() + 30
    while True:
        with Connection(bootstrap) as c:
            _, topics = c.metadata_v1([topic])
        err, n = topics.get(topic, (-1, 0))
        if err == 0 and n > 0:
            return n
        if time.monotonic() > deadline:
            raise SystemExit(f"topic {topic} has no partitions (error {err})")
        time.sleep(0.2)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="idle")
    ap.add_argument("--pollers", type=int, default=500)
    ap.add_argument("--max-wait-ms", type=int, default=500)
    ap.add_argument("--duration-s", type=float, default=0, help="0: until SIGINT/SIGTERM")
    args = ap.parse_args()
    n = partitions_of(args.bootstrap, args.topic)
    host, port = args.bootstrap.rsplit(":", 1)
    stats, stop = Stats(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = []
    for i in range(args.pollers):
        tasks.append(asyncio.create_task(poller(host, int(port), args.topic, i % n, args.max_wait_ms, stats, stop)))
        if i % 50 == 49:
            await asyncio.sleep(0.01)  # spread the connects
    started = time.monotonic()
    print(f"idle-pollers: {args.pollers} pollers on {args.topic} ({n} partitions)", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.duration_s or None)
    except asyncio.TimeoutError:
        stop.set()
    elapsed = time.monotonic() - started
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"idle-pollers: {stats.answered} fetches answered in {elapsed:.1f} s "
        f"({stats.answered / max(elapsed, 1e-9):.0f}/s), {stats.early} early, {stats.errors} errors, "
        f"client CPU {100 * (ru.ru_utime + ru.ru_stime) / max(elapsed, 1e-9):.1f}%",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
