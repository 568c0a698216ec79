#!/usr/bin/env bash
# Produce throughput over TLS against plaintext (docs/BENCHMARKS.md, "TLS"): one `strata serve`
# with a PLAINTEXT and an SSL listener on 127.0.0.1, and strata-bench (built with its `tls`
# feature) alternating between them: plaintext, TLS, plaintext, TLS, ... so both see the same
# moments of the shared machine. 1 KiB records, acks=all, flat out, no consumers. A third run
# per round goes to a second SSL listener whose `ssl.cipher.suites` puts AES-256-GCM first, the
# suite OpenSSL clients ask for, to show what the broker's default (AES-128-GCM) saves.
# Usage: scripts/bench-tls.sh [seconds per run] [pairs] [flush policy: fsync|interval]
# Binaries from $CARGO_TARGET_DIR (or ./target)/$PROFILE (release by default).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-8}"
pairs="${2:-3}"
policy="${3:-fsync}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/${PROFILE:-release}"
work="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}")"
pid=""
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

scripts/gen-test-certs.sh "$work/certs" >/dev/null
if curl -sf http://127.0.0.1:19644/ready >/dev/null; then
  echo "another broker already answers on 127.0.0.1:19644; stop it first" >&2
  exit 1
fi
STRATA_LOG=warn "$bin/strata" serve --set "log.dirs=$work/data" --set "log.flush.policy=$policy" \
  --set "listeners=PLAINTEXT://127.0.0.1:19092,SSL://127.0.0.1:19094,AES256://127.0.0.1:19095,CONTROLLER://127.0.0.1:19093" \
  --set "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,AES256:SSL,CONTROLLER:PLAINTEXT" \
  --set "listener.name.aes256.ssl.cipher.suites=TLS_AES_256_GCM_SHA384,TLS_AES_128_GCM_SHA256" \
  --set "controller.quorum.voters=1@127.0.0.1:19093" --set log.remote.storage.default=false \
  --set "ssl.keystore.location=$work/certs/server-keystore.pem" \
  --set "http.listener=127.0.0.1:19644" >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  kill -0 "$pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  curl -sf http://127.0.0.1:19644/ready >/dev/null && break
  sleep 0.2
done

echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); flush policy $policy"
# The broker's CPU time (user + system) in clock ticks, to tell its share of a TLS run's cost
# from the client's (both are printed per MB produced).
broker_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
run() { # label, bootstrap, extra args...
  local label=$1 bootstrap=$2
  shift 2
  local before after mb
  before=$(broker_ticks)
  # The client's CPU time is that of the subshell's waited-for children (strata-bench, and a
  # few ticks of tail and python3), read once they have exited.
  mb=$("$bin/strata-bench" --bootstrap "$bootstrap" --topic "$label-$RANDOM" --record-size 1024 \
    --duration-s "$secs" --acks all --consumers 0 "$@" | tail -1 |
    python3 -c 'import json,sys; j = json.load(sys.stdin); print(j["produced_mb_per_s"], j["produced_mb_per_s"] * j["seconds"])'
    awk '{print $16 + $17}' "/proc/$BASHPID/stat")
  after=$(broker_ticks)
  echo "$label" $mb "$before $after $(getconf CLK_TCK)" |
    awk '{printf "%-11s %7.1f MB/s   broker CPU %.2f ms per MB   client CPU %.2f ms per MB\n", $1, $2, 1000 * ($6 - $5) / $7 / $3, 1000 * $4 / $7 / $3}'
}
# The first few GB a fresh broker writes are cheaper than the rest on the virtual machines this
# was measured on (the kernel's copy into the page cache runs about 4x slower once it reaches
# memory the guest had not used yet), so a warm-up run comes first and is not part of the
# comparison; FIRST=tls makes it a TLS run.
tls_args=(--set security.protocol=ssl --set "ssl.ca.location=$work/certs/ca.pem")
if [ "${FIRST:-plaintext}" = tls ]; then
  run warmup-tls 127.0.0.1:19094 "${tls_args[@]}"
else
  run warmup 127.0.0.1:19092
fi
for i in $(seq 1 "$pairs"); do
  run plaintext 127.0.0.1:19092
  run tls 127.0.0.1:19094 --set security.protocol=ssl --set "ssl.ca.location=$work/certs/ca.pem"
  run tls-aes256 127.0.0.1:19095 --set security.protocol=ssl --set "ssl.ca.location=$work/certs/ca.pem"
done
