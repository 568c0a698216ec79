#!/usr/bin/env bash
# The single-node benchmark set of docs/BENCHMARKS.md ("Broker end to end"): one `strata serve`
# per durability policy on 127.0.0.1 with a fresh data dir, strata-bench on the same machine.
# Prints each run's table and JSON line, and the raw disk figures beside them.
# Usage: scripts/bench-broker.sh [seconds]   (release binaries from $CARGO_TARGET_DIR or ./target;
# BENCH_DIR chooses the directory, and so the filesystem, to write under; default $TMPDIR or /tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
pid=""
stop() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi; }
cleanup() { stop; rm -rf "$work"; }
trap cleanup EXIT

start() { # $1: flush policy
  stop
  if curl -sf http://127.0.0.1:19644/ready >/dev/null; then
    echo "another broker already answers on 127.0.0.1:19644; stop it first" >&2
    exit 1
  fi
  rm -rf "$work/data"
  STRATA_LOG=warn "$bin/strata" serve --set "log.dirs=$work/data" --set "log.flush.policy=$1" \
    --set "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
    --set "controller.quorum.voters=1@127.0.0.1:19093" \
    --set "http.listener=127.0.0.1:19644" >"$work/broker-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$work/broker-$1.log" >&2; exit 1; }
    curl -sf http://127.0.0.1:19644/ready >/dev/null && return
    sleep 0.2
  done
  echo "broker did not become ready" >&2
  exit 1
}
# CPU time the hypervisor gave to others while a run went on (this is a VM: stolen time shows up
# as stalls of a few milliseconds, in latency tails most of all).
cpu_ticks() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
run() { # title, strata-bench args...
  echo "== $1"
  shift
  local before after
  before=$(cpu_ticks)
  "$bin/strata-bench" --bootstrap 127.0.0.1:19092 "$@"
  after=$(cpu_ticks)
  echo "$before $after" | awk '{printf "steal: %.1f%% of CPU time\n", 100 * ($3 - $1) / ($4 - $2)}'
}

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
dd if=/dev/zero of="$work/dd" bs=1M count=2000 oflag=direct 2>&1 | tail -1 | sed 's/^/dd oflag=direct: /'
rm -f "$work/dd"
dd if=/dev/zero of="$work/dd" bs=1M count=2000 conv=fdatasync 2>&1 | tail -1 | sed 's/^/dd conv=fdatasync: /'
rm -f "$work/dd"

# Latency runs come first on each fresh broker, after `sync`: behind a flat-out run the kernel
# is still writing gigabytes of dirty pages back, and every fsync queues behind that.
start fsync
sync
run "5,000 records/s of 1 KiB, acks=all, end-to-end latency (fsync group commit)" \
  --topic lat --record-size 1024 --rate 5000 --duration-s "$secs" --acks all
run "5,000 records/s of 1 KiB, acks=all, linger.ms=0, end-to-end latency (fsync group commit)" \
  --topic lat0 --record-size 1024 --rate 5000 --duration-s "$secs" --acks all --linger-ms 0
curl -s http://127.0.0.1:19644/metrics | grep '^strata_log_flush_latency_seconds_\(sum\|count\)' || true
run "1 KiB records, acks=all, flat out (fsync group commit)" \
  --topic t1k --record-size 1024 --duration-s "$secs" --acks all --consumers 0
run "100 B records, acks=all, flat out (fsync group commit)" \
  --topic t100 --record-size 100 --duration-s "$secs" --acks all --consumers 0
run "consume the 1 KiB topic from page cache, 1 consumer" --topic t1k --mode consume
run "consume the 1 KiB topic from page cache, 3 consumers" --topic t1k --mode consume --consumers 3

start interval
sync
run "5,000 records/s of 1 KiB, acks=all, end-to-end latency (page cache)" \
  --topic lat --record-size 1024 --rate 5000 --duration-s "$secs" --acks all
run "5,000 records/s of 1 KiB, acks=all, linger.ms=0, end-to-end latency (page cache)" \
  --topic lat0 --record-size 1024 --rate 5000 --duration-s "$secs" --acks all --linger-ms 0
run "1 KiB records, acks=1, flat out (page cache)" \
  --topic t1k --record-size 1024 --duration-s "$secs" --acks 1 --consumers 0
