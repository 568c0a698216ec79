#!/usr/bin/env bash
# Installs what the tests need, then runs every test: Rust unit and integration tests, the
# real-client compatibility suite, and the Terraform checks.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== cargo build"
cargo build --workspace --bins --quiet

echo "== cargo test"
cargo test --workspace 2>&1

echo "== compatibility tests with real Kafka clients"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export STRATA_BIN="$target_dir/debug/strata"
export STRATA_BENCH_BIN="$target_dir/debug/strata-bench"
python3 -m pytest tests/compat -q -p no:cacheprovider

if [ -f scripts/test-terraform.sh ]; then
  echo "== terraform"
  bash scripts/test-terraform.sh
fi
