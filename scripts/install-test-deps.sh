#!/usr/bin/env bash
# Installs what the test suite needs: Debian packages (kcat) and the Python clients.
# Idempotent: skips what is already present.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No daemons are started in containers without an init system; the tools are all we need.
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

python3 -m pip install --quiet --disable-pip-version-check -r tests/compat/requirements.txt

# kafkajs for the group tests (tests/compat/js); skipped, and those tests with it, without npm.
if command -v npm >/dev/null 2>&1; then
  if [ ! -d tests/compat/js/node_modules/kafkajs ]; then
    (cd tests/compat/js && npm install --no-audit --no-fund --silent)
  fi
else
  echo "npm not found: the kafkajs tests will be skipped"
fi
