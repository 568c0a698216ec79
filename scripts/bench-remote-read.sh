#!/usr/bin/env bash
# Remote reads against an S3-compatible server on this machine (docs/BENCHMARKS.md, "Tiered
# storage: remote reads"): s3s-fs serves a bucket from a directory, one `strata serve` tiers two
# topics into it and local retention drops their sealed segments, then, alternating, `ROUNDS`
# times:
#   A  the server itself: the `.log` objects of topic rr1 read with 8 concurrent 8 MiB ranged GETs
#      (and, for scale, one plain GET stream);
#   B  one consumer replaying topic rr1 (1 partition) from offset 0 (strata-bench consume);
#   C  three consumers replaying topic rr3 (3 partitions) together.
# The chunk cache is kept smaller than a topic (remote.cache.bytes), so every replay is cold.
#
# Usage: scripts/bench-remote-read.sh [MB, default 1024: half into rr1, half into rr3]
# STRATA_BIN / STRATA_BENCH_BIN choose the binaries (default $CARGO_TARGET_DIR or ./target,
# release); ROUNDS (default 2); EXTRA_SETS adds `--set KEY=VALUE` words for the broker;
# LATENCY=0 skips D: produce latency at 5,000 records/s alone and beside a backfill;
# CONSUMER_SETS (e.g. "max.partition.fetch.bytes=8388608") adds a B+ run per round: one consumer
# with those client settings (`--set` words of strata-bench).
# s3s-fs comes from `STRATA_BENCH_DEPS=1 scripts/install-test-deps.sh`; boto3 (for A) comes
# with moto from the same script.
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-1024}"
rounds="${ROUNDS:-2}"
bin_dir="${CARGO_TARGET_DIR:-$PWD/target}/release"
strata="${STRATA_BIN:-$bin_dir/strata}"
bench="${STRATA_BENCH_BIN:-$bin_dir/strata-bench}"
command -v s3s-fs >/dev/null || { echo "s3s-fs not found: STRATA_BENCH_DEPS=1 scripts/install-test-deps.sh" >&2; exit 1; }
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
s3_pid="" broker_pid=""
cleanup() {
  for p in $broker_pid $s3_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
mkdir -p "$work/s3/bench"
s3s-fs --host 127.0.0.1 --port 19900 --access-key "$AWS_ACCESS_KEY_ID" \
  --secret-key "$AWS_SECRET_ACCESS_KEY" "$work/s3" >"$work/s3s.log" 2>&1 &
s3_pid=$!

# shellcheck disable=SC2086
STRATA_LOG=warn "$strata" serve --set "log.dirs=$work/data" --set "log.flush.policy=interval" \
  --set "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
  --set "controller.quorum.voters=1@127.0.0.1:19093" --set "http.listener=127.0.0.1:19644" \
  --set "remote.storage.uri=s3://bench/strata" --set "remote.storage.s3.endpoint=http://127.0.0.1:19900" \
  --set "remote.log.manager.task.interval.ms=500" --set "remote.cache.bytes=134217728" \
  ${EXTRA_SETS:-} >"$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 1 150); do
  kill -0 "$broker_pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  curl -sf http://127.0.0.1:19644/ready >/dev/null && break
  sleep 0.2
done
curl -sf http://127.0.0.1:19644/ready >/dev/null || { echo "broker not ready" >&2; exit 1; }

topic_sets=(--config segment.bytes=67108864 --config local.retention.bytes=1 --config retention.ms=-1)
"$strata" topics --bootstrap-server 127.0.0.1:19092 create rr1 --partitions 1 "${topic_sets[@]}"
"$strata" topics --bootstrap-server 127.0.0.1:19092 create rr3 --partitions 3 "${topic_sets[@]}"
records=$((mb * 1024 / 2))
for t in rr1 rr3; do
  "$bench" --bootstrap 127.0.0.1:19092 --topic "$t" --record-size 1024 --records "$records" \
    --duration-s 3600 --acks 1 --consumers 0 | grep -i "produced\|MB/s" | head -3
done

echo "waiting for uploads and local retention"
# Segment data only: index files are preallocated, and the chunk cache lives under data too.
local_log_mb() { find "$work/data" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print int(s / 1048576)}'; }
for _ in $(seq 1 600); do
  lag=$(curl -s http://127.0.0.1:19644/metrics | awk '/^strata_tiering_upload_lag_bytes /{print $2}')
  # Left locally: each partition's active segment (at most 64 MiB).
  if [ "${lag:-1}" = "0" ] && [ "$(local_log_mb)" -le 300 ]; then break; fi
  sleep 1
done
echo "local data: $(local_log_mb) MB; remote: $(du -sm --apparent-size "$work/s3" | cut -f1) MB"

direct() {
  python3 - "$work/s3/bench" <<'EOF'
import concurrent.futures as cf, sys, time, boto3, botocore.config
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:19900",
                  config=botocore.config.Config(max_pool_connections=16))
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="strata/rr1-"):
    keys += [(o["Key"], o["Size"]) for o in page.get("Contents", []) if o["Key"].endswith(".log")]
rng = 8 << 20
jobs = [(k, a, min(a + rng, n)) for k, n in keys for a in range(0, n, rng)]
def get(job):
    k, a, b = job
    return len(s3.get_object(Bucket="bench", Key=k, Range=f"bytes={a}-{b - 1}")["Body"].read())
t = time.monotonic()
with cf.ThreadPoolExecutor(8) as ex:
    total = sum(ex.map(get, jobs))
dt = time.monotonic() - t
print(f"A  8 concurrent ranged GETs: {total / 1e6:.0f} MB in {dt:.2f} s = {total / 1e6 / dt:.1f} MB/s")
t, total = time.monotonic(), 0
for k, _ in keys[: max(1, len(keys) // 2)]:
    total += len(s3.get_object(Bucket="bench", Key=k)["Body"].read())
dt = time.monotonic() - t
print(f"A1 one plain GET stream:     {total / 1e6:.0f} MB in {dt:.2f} s = {total / 1e6 / dt:.1f} MB/s")
EOF
}
consume() { # label, topic, consumers, strata-bench words...
  local out label="$1" topic="$2" n="$3"
  shift 3
  out=$("$bench" --bootstrap 127.0.0.1:19092 --topic "$topic" --mode consume --consumers "$n" "$@")
  echo "$out" | awk -v l="$label" '/consumed MB\/s/{print l, "consumed MB/s:", $NF} /read .* records/{print l, $0}'
}
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); binary $strata"
for r in $(seq 1 "$rounds"); do
  echo "-- round $r"
  direct
  consume "B " rr1 1
  for kv in ${CONSUMER_SETS:-}; do consume "B+ $kv" rr1 1 --set "$kv"; done
  consume "C " rr3 3
done
if [ "${LATENCY:-1}" = "1" ]; then
  # D: produce latency at 5,000 records/s of 1 KiB (acks=all), alone and beside a backfill
  # (three consumers replaying rr3 from the remote part).
  lat() { "$bench" --bootstrap 127.0.0.1:19092 --topic lat --record-size 1024 --rate 5000 \
    --duration-s 10 --acks all | grep -iE "p50|p99|latency" | sed "s/^/D $1: /"; }
  lat "alone       "
  "$bench" --bootstrap 127.0.0.1:19092 --topic rr3 --mode consume --consumers 3 >/dev/null &
  backfill=$!
  lat "with backfill"
  wait "$backfill" || true
fi
curl -s http://127.0.0.1:19644/metrics | grep -E '^strata_tiering_(store_requests_total|cache_(hits|memory_hits|misses|prefetched_chunks)_total)' || true
