#!/usr/bin/env bash
# docs/BENCHMARKS.md, "Long-poll wake-ups": does a crowd of idle long-polling consumers on other
# partitions slow a busy partition? strata-bench produces at a fixed rate to a 1-partition topic
# with one consumer measuring end-to-end latency, while scripts/idle-pollers.py holds N Fetch
# requests (max_wait_ms 500) open on an idle topic. Each run starts a fresh single-node broker
# (as scripts/bench-broker.sh does) and reports the e2e latency and the broker's CPU use.
# Runs alternate between the broker binaries given, so drift of the machine hits all alike.
#
# Usage: scripts/bench-long-poll.sh [-s seconds] [-n pollers] [-r rounds] [-p flush-policy] NAME=BINARY...
#   e.g. scripts/bench-long-poll.sh before=/tmp/strata-before after=target/release/strata
# strata-bench comes from $CARGO_TARGET_DIR/release or ./target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=20 pollers=500 rounds=3 policy=interval
while getopts "s:n:r:p:" o; do
  case $o in s) secs=$OPTARG ;; n) pollers=$OPTARG ;; r) rounds=$OPTARG ;; p) policy=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
bench="${CARGO_TARGET_DIR:-$PWD/target}/release/strata-bench"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
pid="" ppid_=""
stop() {
  if [ -n "$ppid_" ]; then kill "$ppid_" 2>/dev/null || true; wait "$ppid_" 2>/dev/null || true; ppid_=""; fi
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; fi
}
cleanup() { stop; rm -rf "$work"; }
trap cleanup EXIT

start() { # $1: broker binary
  stop
  if curl -sf http://127.0.0.1:19644/ready >/dev/null; then
    echo "another broker already answers on 127.0.0.1:19644; stop it first" >&2
    exit 1
  fi
  rm -rf "$work/data"
  STRATA_LOG=warn "$1" serve --set "log.dirs=$work/data" --set "log.flush.policy=$policy" \
    --set "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" \
    --set "controller.quorum.voters=1@127.0.0.1:19093" \
    --set "http.listener=127.0.0.1:19644" --set "num.partitions=8" >"$work/broker.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
    curl -sf http://127.0.0.1:19644/ready >/dev/null && return
    sleep 0.2
  done
  echo "broker did not become ready" >&2
  exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of the broker
steal() { awk '/^cpu /{print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $secs s per run, $pollers idle pollers, $rounds rounds, log.flush.policy=$policy"
results="$work/results"
for round in $(seq 1 "$rounds"); do
  for n in 0 "$pollers"; do
    for named in "$@"; do
      name="${named%%=*}" binary="${named#*=}"
      start "$binary"
      if [ "$n" -gt 0 ]; then
        python3 scripts/idle-pollers.py --bootstrap 127.0.0.1:19092 --topic idle --pollers "$n" >"$work/pollers.log" 2>&1 &
        ppid_=$!
        sleep 3 # connected and waiting
      fi
      sync
      t0=$(cpu_ticks "$pid") s0=$(steal) w0=$(date +%s.%N)
      "$bench" --bootstrap 127.0.0.1:19092 --topic busy --partitions 1 --record-size 1024 \
        --rate 5000 --duration-s "$secs" --acks all --consumers 1 >"$work/bench.out" 2>"$work/bench.err"
      t1=$(cpu_ticks "$pid") s1=$(steal) w1=$(date +%s.%N)
      polled=""
      if [ -n "$ppid_" ]; then
        kill -INT "$ppid_"; wait "$ppid_" || true; ppid_=""
        polled=$(grep 'answered' "$work/pollers.log" | sed 's/^idle-pollers: //')
      fi
      stop
      json=$(grep '^{' "$work/bench.out" | tail -1)
      line=$(python3 -c '
import json, sys
j = json.loads(sys.argv[1]); e = j["e2e_latency_ms"]
w0, w1 = map(float, sys.argv[3].split())
cpu = 100 * float(sys.argv[2]) / float(sys.argv[7]) / (w1 - w0)
steal = sys.argv[4].split()
st = 100 * (float(steal[2]) - float(steal[0])) / max(float(steal[3]) - float(steal[1]), 1)
p50, p99, p999, rate = e["p50"], e["p99"], e["p999"], j["produced_records_per_s"]
print(f"{sys.argv[5]:<8} {sys.argv[6]:>7} {p50:>8.2f} {p99:>8.2f} {p999:>8.2f} {cpu:>9.1f}% {rate:>9.0f} {st:>6.1f}%")
' "$json" "$((t1 - t0))" "$w0 $w1" "$s0 $s1" "$name" "$n" "$(getconf CLK_TCK)")
      echo "$line" >>"$results"
      echo "round $round: $line   ${polled}"
    done
  done
done
echo
echo "== medians over $rounds rounds: e2e latency ms, broker CPU (% of one core), records/s, steal"
printf '%-8s %7s %8s %8s %8s %10s %9s %7s\n' binary pollers p50 p99 p99.9 "broker CPU" rec/s steal
python3 - "$results" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault((f[0], int(f[1])), []).append([float(x.rstrip("%")) for x in f[2:]])
for (name, n), runs in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    m = [statistics.median(col) for col in zip(*runs)]
    print(f"{name:<8} {n:>7} {m[0]:>8.2f} {m[1]:>8.2f} {m[2]:>8.2f} {m[3]:>9.1f}% {m[4]:>9.0f} {m[5]:>6.1f}%")
EOF
