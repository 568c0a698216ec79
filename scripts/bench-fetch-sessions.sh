#!/usr/bin/env bash
# Bytes a follower's fetcher sends and receives per idle fetch round, with incremental fetch
# sessions (KIP-227) and without: two `strata serve` processes on 127.0.0.1 (both brokers and
# controller voters), a 1,000-partition topic of replication factor 2 (each broker leads about
# half and follows the rest), nothing produced. Once every follower has caught up, the fetchers'
# counters (strata_replica_fetcher_{request,response}_bytes_total, ..._requests_total) are read
# on both brokers before and after an idle window; rounds are the requests sent meanwhile.
# "off" runs with max.incremental.fetch.session.cache.slots=0: the leader grants no session, so
# every round names every partition, as followers fetched before sessions existed.
# Usage: scripts/bench-fetch-sessions.sh [idle seconds] [partitions]
#   binaries from $BIN_DIR, else $CARGO_TARGET_DIR/release or ./target/release
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
partitions="${2:-1000}"
bin="${BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/release}"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'cleanup; rm -rf "$work"' EXIT

# metric <node> <series>: the value of one series on a node's /metrics (0 when absent).
metric() {
  curl -sf "http://127.0.0.1:29${1}44/metrics" | awk -v s="$2" '$1 == s { v = $2 } END { print v + 0 }'
}

run() {
  local mode="$1" slots="$2"
  rm -rf "${work:?}"/n*
  local voters="1@127.0.0.1:29193,2@127.0.0.1:29293"
  for i in 1 2; do
    local common=(--set "log.dirs=$work/n$i" --set "node.id=$i" --set "controller.quorum.voters=$voters")
    env -u STRATA_BIN "$bin/strata" format --cluster-id "fsess-$mode" "${common[@]}" >/dev/null
    STRATA_LOG=warn "$bin/strata" serve "${common[@]}" \
      --set "listeners=PLAINTEXT://127.0.0.1:29${i}92,CONTROLLER://127.0.0.1:29${i}93" \
      --set "http.listener=127.0.0.1:29${i}44" \
      --set "max.incremental.fetch.session.cache.slots=$slots" >"$work/n$i-$mode.log" 2>&1 &
    pids+=($!)
  done
  for i in 1 2; do
    for _ in $(seq 1 150); do
      curl -sf "http://127.0.0.1:29${i}44/ready" >/dev/null && break
      sleep 0.2
    done
  done
  env -u STRATA_BIN "$bin/strata" topics create idle --bootstrap-server 127.0.0.1:29192 \
    --partitions "$partitions" --replication-factor 2 >/dev/null
  # Settled: every replica exists and no led partition is under-replicated.
  for _ in $(seq 1 300); do
    local ok=1
    for i in 1 2; do
      [ "$(metric "$i" strata_replication_partitions)" = "$partitions" ] || ok=0
      [ "$(metric "$i" strata_replication_under_replicated_partitions)" = "0" ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 0.2
  done
  sleep 2
  declare -A before
  local series=(strata_replica_fetcher_request_bytes_total strata_replica_fetcher_response_bytes_total
    'strata_replica_fetcher_requests_total{kind="full"}' 'strata_replica_fetcher_requests_total{kind="incremental"}')
  for i in 1 2; do for s in "${series[@]}"; do before[$i$s]="$(metric "$i" "$s")"; done; done
  sleep "$secs"
  echo "== sessions $mode: $partitions partitions, RF 2, two brokers, idle ${secs} s"
  for i in 1 2; do
    local d=()
    for s in "${series[@]}"; do d+=("$(echo "$(metric "$i" "$s") - ${before[$i$s]}" | bc)"); done
    local rounds=$((d[2] + d[3]))
    printf 'node %s fetcher: %d rounds (%d full, %d incremental), %d B/round sent, %d B/round received\n' \
      "$i" "$rounds" "${d[2]}" "${d[3]}" "$((d[0] / (rounds > 0 ? rounds : 1)))" "$((d[1] / (rounds > 0 ? rounds : 1)))"
  done
  cleanup
}

run off 0
run on 1000
