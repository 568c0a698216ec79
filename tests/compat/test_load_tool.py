"""strata-bench, the load tool, against a live broker: a short fixed-rate run reports what it did
as one JSON line, and the broker holds exactly the records it says it produced."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

import helpers as h
from conftest import requires

REPO = Path(__file__).resolve().parents[2]


def bench_bin() -> Path | None:
    for c in (
        os.environ.get("STRATA_BENCH_BIN"),
        os.environ.get("CARGO_TARGET_DIR") and str(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "strata-bench"),
        str(REPO / "target" / "debug" / "strata-bench"),
    ):
        if c and Path(c).is_file():
            return Path(c)
    return None


BENCH = bench_bin()


@requires(BENCH is not None, "strata-bench is not built (cargo build --workspace --bins)")
def test_fixed_rate_run_reports_json_and_matches_the_log(broker):
    r = subprocess.run(
        [str(BENCH), "--bootstrap", broker.bootstrap, "--topic", "bench", "--partitions", "3",
         "--record-size", "200", "--rate", "2000", "--duration-s", "2", "--acks", "all"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["produce_errors"] == 0
    produced = result["produced_records"]
    # 2000/s for 2 s; the scheduler may run a little short but never far over.
    assert 3000 <= produced <= 4100, result
    assert result["consumed_records"] == produced
    assert 0 < result["e2e_latency_ms"]["p50"] <= result["e2e_latency_ms"]["p99"] <= result["e2e_latency_ms"]["max"]
    total = sum(h.watermarks(broker.bootstrap, "bench", p)[1] for p in range(3))
    assert total == produced

    r = subprocess.run([str(BENCH), "--bootstrap", broker.bootstrap, "--topic", "bench", "--mode", "consume"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    read = json.loads(r.stdout.strip().splitlines()[-1])
    assert read["consumed_records"] == produced


@requires(BENCH is not None, "strata-bench is not built (cargo build --workspace --bins)")
def test_transactional_mode_commits_every_records_per_txn(broker_factory):
    broker = broker_factory({"transaction.state.log.num.partitions": "3"})
    r = subprocess.run(
        [str(BENCH), "--bootstrap", broker.bootstrap, "--topic", "bench-txn", "--partitions", "3",
         "--record-size", "1024", "--records", "2500", "--records-per-txn", "1000",
         "--transactional-id", "bench-txn", "--duration-s", "60", "--acks", "all", "--warmup-ms", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["transactional"] and result["records_per_txn"] == 1000, result
    assert result["produce_errors"] == 0 and result["produced_records"] == 2500, result
    # Three transactions (1000, 1000, 500 records), each ended by a commit marker on every
    # partition it wrote: the logs hold more offsets than records.
    end = sum(h.watermarks(broker.bootstrap, "bench-txn", p)[1] for p in range(3))
    assert 2500 < end <= 2500 + 3 * 3, end
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "bench-txn-check",
                  "isolation.level": "read_committed", "enable.partition.eof": True,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("bench-txn", p, 0) for p in range(3)])
    read, eof = 0, set()
    deadline = time.time() + 60
    while len(eof) < 3 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
            continue
        assert len(m.value()) == 1024
        read += 1
    c.close()
    assert eof == {0, 1, 2} and read == 2500, (eof, read)
