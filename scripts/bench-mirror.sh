#!/usr/bin/env bash
# One mirror link's copy rate beside one consumer reading the same topic: two single-node
# clusters on 127.0.0.1, strata-bench fills a 6-partition topic of 1 KiB records on the source,
# then (a) strata-bench reads it with one consumer, (b) a link copies it to the target, timed
# from `strata mirror create` until the target's end offsets equal the source's (this includes
# up to one --interval-ms before the mirror topic exists).
# `latency` mode instead: with the link running, strata-bench produces --rate records/s of
# 1 KiB (acks=all) to the source, each stamped with its send time, while its consumers read the
# TARGET: the latency figures are source produce call to visibility on the target.
# Usage: scripts/bench-mirror.sh [records]   (binaries from $BIN_DIR, else
#        $CARGO_TARGET_DIR/release or ./target/release; needs python3 with confluent-kafka)
#        scripts/bench-mirror.sh latency [records/s] [seconds]   (default 5000 and 30)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=copy
if [ "${1:-}" = latency ]; then
  mode=latency
  rate="${2:-5000}"
  seconds="${3:-30}"
  shift $#
fi
records="${1:-1000000}"
bin="${BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/release}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "$1"; tail -20 "$work"/*.log; exit 1; }

for c in src dst; do
  port=$([ "$c" = src ] && echo 275 || echo 276)
  STRATA_LOG=warn "$bin/strata" serve --set "log.dirs=$work/$c" \
    --set "listeners=PLAINTEXT://127.0.0.1:${port}92,CONTROLLER://127.0.0.1:${port}93" \
    --set "controller.quorum.voters=1@127.0.0.1:${port}93" \
    --set "http.listener=127.0.0.1:${port}44" >"$work/$c.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:${port}44/ready" >/dev/null && continue 2
    sleep 0.2
  done
  fail "$c did not become ready"
done
src=127.0.0.1:27592
dst=127.0.0.1:27692
if [ "$mode" = latency ]; then
  echo "== latency: $rate records/s of 1 KiB to the source for $seconds s, consumers on the target"
  "$bin/strata-bench" --bootstrap "$src" --topic m --partitions 6 --record-size 1024 \
    --records 6 --acks all --consumers 0 >/dev/null
  env -u STRATA_BIN "$bin/strata" mirror create bench --bootstrap-server "$dst" \
    --source-bootstrap-servers "$src" --topic m --interval-ms 200 >/dev/null
  for _ in $(seq 1 100); do
    "$bin/strata" mirror describe bench --bootstrap-server "$dst" 2>/dev/null \
      | grep -q "topic m.*state=mirroring" && break
    sleep 0.2
  done
  sleep 1 # the link fetchers connect to the source
  "$bin/strata-bench" --bootstrap "$src" --consume-bootstrap "$dst" --topic m \
    --record-size 1024 --rate "$rate" --duration-s "$seconds" --acks all --consumers 1 \
    --warmup-ms 2000
  exit 0
fi
echo "== filling the source: $records x 1 KiB records, 6 partitions, acks=all"
"$bin/strata-bench" --bootstrap "$src" --topic m --partitions 6 --record-size 1024 \
  --records "$records" --duration-s 600 --acks all --consumers 0 >/dev/null
bytes=$(curl -s http://127.0.0.1:27544/metrics | awk '/^strata_broker_topic_in_bytes_total\{topic="m"\}/ {print $2}')
echo "source topic: $bytes record bytes"
echo "== one consumer reading the source topic"
"$bin/strata-bench" --bootstrap "$src" --topic m --mode consume --consumers 1
echo "== one mirror link copying it"
start=$(date +%s.%N)
env -u STRATA_BIN "$bin/strata" mirror create bench --bootstrap-server "$dst" \
  --source-bootstrap-servers "$src" --topic m --interval-ms 200 >/dev/null
python3 - "$src" "$dst" <<'PY'
import sys, time
from confluent_kafka import Consumer, TopicPartition
src, dst = sys.argv[1], sys.argv[2]
def ends(b):
    c = Consumer({"bootstrap.servers": b, "group.id": "bench-mirror-probe"})
    try:
        md = c.list_topics("m", timeout=10).topics.get("m")
        if md is None or md.error or len(md.partitions) < 6:
            return None
        return [c.get_watermark_offsets(TopicPartition("m", p), timeout=10)[1] for p in range(6)]
    except Exception:
        return None  # the mirror topic's partitions are still being created
    finally:
        c.close()
want = ends(src)
while ends(dst) != want:
    time.sleep(0.2)
PY
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'link copied {$bytes/1e6:.0f} MB in {s:.2f} s: {$bytes/1e6/s:.0f} MB/s')"
