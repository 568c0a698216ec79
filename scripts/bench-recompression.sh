#!/usr/bin/env bash
# The cost of broker-side recompression (docs/BENCHMARKS.md, "Broker-side recompression"): one
# `strata serve` (page cache, so the disk does not hide the CPU), two topics of 6 partitions,
# `compression.type=producer` (the zero-copy path) and one recompressing codec, produced to flat
# out with uncompressed batches by strata-bench, in alternating A/B pairs. Prints each run and
# the broker's CPU time per run.
# Usage: scripts/bench-recompression.sh [seconds] [pairs] [codec]
#   (release binaries from $CARGO_TARGET_DIR or ./target; codec: zstd by default)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
pairs="${2:-3}"
codec="${3:-zstd}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

if curl -sf http://127.0.0.1:19644/ready >/dev/null; then
  echo "another broker already answers on 127.0.0.1:19644; stop it first" >&2
  exit 1
fi
STRATA_LOG=warn "$bin/strata" serve --set "log.dirs=$work/data" --set "log.flush.policy=interval" \
  --set "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
  --set "controller.quorum.voters=1@127.0.0.1:19093" \
  --set "http.listener=127.0.0.1:19644" >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:19644/ready >/dev/null && break
  sleep 0.2
done
broker_cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # utime + stime, in clock ticks
hz=$(getconf CLK_TCK)

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $(seq 1 "$pairs"); do
  for t in producer "$codec"; do
    topic="rc-$t-$n"
    "$bin/strata" topics create --bootstrap-server 127.0.0.1:19092 "$topic" --partitions 6 \
      --replication-factor 1 --config "compression.type=$t" >/dev/null
    before=$(broker_cpu)
    echo "== pair $n, compression.type=$t, 1 KiB records, acks=1, flat out, producer batches uncompressed"
    "$bin/strata-bench" --bootstrap 127.0.0.1:19092 --topic "$topic" --record-size 1024 \
      --duration-s "$secs" --acks 1 --consumers 0 --compression none
    after=$(broker_cpu)
    echo "broker CPU: $(( (after - before) * 1000 / hz )) ms"
  done
done
