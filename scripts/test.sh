#!/usr/bin/env bash
# Installs what the tests need, then runs every test: Rust unit and integration tests, the
# real-client compatibility suite, and the Terraform checks.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

# A one-shot build has no use for incremental state; it only costs disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
echo "== disk before the build"
df -h "$(dirname "$target_dir")" | tail -1

echo "== cargo build"
cargo build --workspace --bins --quiet

echo "== cargo test"
cargo test --workspace 2>&1

echo "== disk after the Rust tests"
df -h "$(dirname "$target_dir")" | tail -1
du -sh "$target_dir" 2>/dev/null || true

echo "== compatibility tests with real Kafka clients"
export STRATA_BIN="$target_dir/debug/strata"
export STRATA_BENCH_BIN="$target_dir/debug/strata-bench"
python3 -m pytest tests/compat -q -p no:cacheprovider --durations=30

if [ -f scripts/test-terraform.sh ]; then
  echo "== terraform"
  bash scripts/test-terraform.sh
fi
