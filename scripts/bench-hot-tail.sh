#!/usr/bin/env bash
# Bytes copied between brokers to move a tiered and an untiered partition of the same size to a
# new broker (docs/BENCHMARKS.md, "Moving a tiered partition"): four `strata serve` processes on
# 127.0.0.1 (three voters and a broker-only node) tiering to one file:// bucket, default
# durability (fsync before the acknowledgement), driven by
# tests/compat/test_hot_tail.py::test_hot_tail_bench. For each topic it prints the partition's
# size, the record bytes the new replica fetched from the leader
# (strata_replication_fetch_bytes_total) and the time from AlterPartitionReassignments to the
# end of the move. Every file it writes lives in one temp dir, removed at the end.
# Usage: scripts/bench-hot-tail.sh [MiB per topic, default 1024]
# (binary from $CARGO_TARGET_DIR or ./target, profile $PROFILE: release by default)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-1024}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/${PROFILE:-release}"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
trap 'rm -rf "$work"' EXIT
STRATA_BIN="$bin/strata" STRATA_HOT_TAIL_BENCH_MB="$mb" \
  python3 -m pytest tests/compat/test_hot_tail.py::test_hot_tail_bench -q -s \
  -p no:cacheprovider --basetemp="$work/pytest" 2>&1 | grep -E "^bench-|passed|failed|Error"
