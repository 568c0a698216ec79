#!/usr/bin/env bash
# Throughput with replication factor 3 beside replication factor 1 on one machine: three
# `strata serve` processes on 127.0.0.1 (each broker and controller voter), then strata-bench
# producing 1 KiB records with acks=all to a 6-partition topic of each replication factor.
# Usage: scripts/bench-replication.sh [seconds]   (release binaries from $CARGO_TARGET_DIR or ./target)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

voters="1@127.0.0.1:19193,2@127.0.0.1:19293,3@127.0.0.1:19393"
cluster_id="bench-$(date +%s)"
for i in 1 2 3; do
  common=(--set "log.dirs=$work/n$i" --set "node.id=$i" --set "controller.quorum.voters=$voters")
  env -u STRATA_BIN "$bin/strata" format --cluster-id "$cluster_id" "${common[@]}" >/dev/null
  STRATA_LOG=warn "$bin/strata" serve "${common[@]}" \
    --set "listeners=PLAINTEXT://127.0.0.1:19${i}92,CONTROLLER://127.0.0.1:19${i}93" \
    --set "http.listener=127.0.0.1:19${i}44" >"$work/n$i.log" 2>&1 &
  pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:19${i}44/ready" >/dev/null && break
    sleep 0.2
  done
done
bootstrap="127.0.0.1:19192,127.0.0.1:19292,127.0.0.1:19392"
for rf in 1 3; do
  echo "== replication factor $rf, 1 KiB records, acks=all, fsync group commit"
  "$bin/strata-bench" --bootstrap "$bootstrap" --topic "rf$rf" --replication-factor "$rf" \
    --record-size 1024 --duration-s "$secs" --acks all --consumers 0
done
echo "== replication factor 3, 5,000 records/s of 1 KiB, acks=all, end-to-end latency"
"$bin/strata-bench" --bootstrap "$bootstrap" --topic "rf3-latency" --replication-factor 3 \
  --record-size 1024 --duration-s "$secs" --acks all --rate 5000 --consumers 1
