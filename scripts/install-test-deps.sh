#!/usr/bin/env bash
# Installs what the test suite needs: Debian packages (kcat, promtool, Node.js), the Python
# clients, kafkajs and moto. Idempotent: skips what is already present.
#
# Tests that need one of these skip with a reason when it is missing, but fail when $CI is set:
# CI runs this script first, so there a missing tool is a broken setup, not a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
# Test certificates (scripts/gen-test-certs.sh).
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# The kafkajs group tests (tests/compat/js) run under Node.js.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
# powerfs (tests/compat/powerfs.py, the power-cut tests) mounts through libfuse 3.
ldconfig -p 2>/dev/null | grep -q 'libfuse3\.so' || need_apt+=(libfuse3-3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No daemons are started in containers without an init system; the tools are all we need.
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -r tests/compat/requirements.txt

# kafkajs for the group tests (tests/compat/js), at the version package-lock.json pins.
if [ ! -d tests/compat/js/node_modules/kafkajs ]; then
  (cd tests/compat/js && npm install --no-audit --no-fund --silent)
fi

# The S3-compatible server the tiering tests start (tiering/tests/conformance.rs,
# tests/compat/test_tiering.py). From PyPI; boto3 comes with it.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server]"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi

# The S3-compatible server of scripts/bench-remote-read.sh (not needed by the tests, and a
# long Rust build, so only on request). 0.14.1 still builds with rustc 1.95; later releases need newer.
if [ "${STRATA_BENCH_DEPS:-}" = "1" ] && ! command -v s3s-fs >/dev/null 2>&1; then
  echo "installing s3s-fs"
  cargo install --locked s3s-fs@0.14.1 --features binary
fi
