#!/usr/bin/env bash
# Transactional against idempotent produce (docs/BENCHMARKS.md, "Transactional produce"): one
# `strata serve` on 127.0.0.1 with the default durability (fsync before the acknowledgement),
# strata-bench on the same machine, runs alternating idempotent and transactional (A B A B ...)
# so that drift in the machine's load hits both alike, after an unreported idempotent warm-up
# run. Prints each run's JSON line, then the mean records/s of each and their ratio.
# Usage: scripts/bench-txn.sh [seconds per run] [rounds] [records per transaction]
# (binaries from $CARGO_TARGET_DIR or ./target, profile $PROFILE: release by default;
# EXTRA_SETS adds `--set KEY=VALUE` words for the broker, BENCH_SETS words for strata-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
rounds="${2:-3}"
per_txn="${3:-1000}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/${PROFILE:-release}"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

if curl -sf http://127.0.0.1:19644/ready >/dev/null; then
  echo "another broker already answers on 127.0.0.1:19644; stop it first" >&2
  exit 1
fi
# No tiering: with the default local store every segment would be copied on the same disk
# during the runs, and the copies could push the disk to its pressure marks.
STRATA_LOG=warn "$bin/strata" serve --set "log.dirs=$work/data" \
  --set "transaction.state.log.num.partitions=3" --set log.remote.storage.default=false \
  --set "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
  --set "controller.quorum.voters=1@127.0.0.1:19093" \
  --set "http.listener=127.0.0.1:19644" ${EXTRA_SETS:-} >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  curl -sf http://127.0.0.1:19644/ready >/dev/null && break
  sleep 0.2
done

run() { # name, extra strata-bench args...
  local name="$1"; shift
  "$bin/strata-bench" --bootstrap 127.0.0.1:19092 --topic "bench-$name" --partitions 6 \
    --record-size 1024 --acks all --duration-s "$secs" --consumers 0 ${BENCH_SETS:-} "$@" | tail -1 \
    | tee -a "$work/$name.jsonl"
}
# An unreported warm-up run first: on a VM, a fresh broker's first gigabytes are written faster
# than later ones (docs/BENCHMARKS.md, "A second look on an idle machine"), which would favour
# whichever mode ran first.
run warmup --idempotence >/dev/null
for r in $(seq 1 "$rounds"); do
  run idempotent --idempotence
  run transactional --transactional-id "bench-txn-$r" --records-per-txn "$per_txn"
done
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
rate = {}
for name in ("idempotent", "transactional"):
    runs = [json.loads(l)["produced_records_per_s"] for l in open(f"{w}/{name}.jsonl")]
    rate[name] = sum(runs) / len(runs)
    print(f"{name:<14} mean {rate[name]:>9.0f} records/s  runs {[round(x) for x in runs]}")
print(f"transactional / idempotent = {rate['transactional'] / rate['idempotent']:.2f}")
PY
