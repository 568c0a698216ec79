#!/usr/bin/env bash
# Tests of the Terraform deployment (terraform/) and its packaging, fully offline:
#
#   - terraform fmt -check, and terraform validate of the module and both examples, with
#     the AWS provider from the machine's filesystem mirror (never the registry);
#   - terraform test with mock providers (the module's decisions; both examples plan);
#   - terraform apply / re-plan / destroy of examples/single-region against a local
#     moto_server, asserting through the emulator's AWS API what exists, that a re-plan
#     is a no-op, and what is gone after destroy (runs in the background meanwhile);
#   - checkov -d terraform/ --skip-download (also in the background);
#   - the rendered strata.toml (from the launch templates' user data, and a provider-less
#     render of the template) parsed as TOML with exactly Strata's keys and closed by
#     default (every listener SSL or SASL_SSL, mutual TLS inside, no ACL-less access), and by the real
#     broker: `strata serve --config FILE --print-config` (STRATA_BIN, else target/{release,debug}/strata);
#   - the systemd unit (systemd-analyze verify, hardening directives, one copy).
#
# Missing tools are reported as SKIPPED lines, never silently passed. Ends with
# "terraform: N passed, M failed" and exits non-zero on any failure.
#
# Environment:
#   STRATA_BIN              strata binary for the --print-config check
#   STRATA_TF_PROVIDER_MIRROR  Terraform provider filesystem mirror: a directory holding
#                           registry.terraform.io/hashicorp/aws/<5.x>/<os_arch>/ (what
#                           `terraform providers mirror DIR` writes). Unset: the script looks
#                           where Terraform itself would (a filesystem_mirror path in
#                           $TF_CLI_CONFIG_FILE or ~/.terraformrc, ~/.terraform.d/plugins,
#                           $XDG_DATA_HOME and $XDG_DATA_DIRS terraform/plugins), then
#                           searches local filesystems.
#                           (STRATA_TF_PLUGIN_MIRROR, its older name, is still read.)
#   STRATA_TEST_TOOLS       where pip installs moto/checkov venvs if missing
#                           (default ${XDG_CACHE_HOME:-$HOME/.cache}/strata-test-tools)
#   STRATA_TF_SKIP_MOTO=1, STRATA_TF_SKIP_CHECKOV=1   skip those (slow) steps, reported as SKIPPED
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-tf-test.XXXXXX")"
MOTO_PID=""
CHECKOV_PID=""
TOOLS="${STRATA_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/strata-test-tools}"

cleanup() {
  if [ -n "$CHECKOV_PID" ]; then kill "$CHECKOV_PID" 2>/dev/null || true; fi
  if [ -n "${MOTO_SECTION_PID:-}" ]; then kill "$MOTO_SECTION_PID" 2>/dev/null || true; fi
  if [ -f "$WORK/moto.pid" ]; then kill "$(cat "$WORK/moto.pid")" 2>/dev/null || true; fi
  if [ -n "$MOTO_PID" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

say() { printf '%s\n' "$*"; }
stamp() { printf '[%3ds] %s\n' "$SECONDS" "$*"; } # progress notes (not counted)
pass() { PASSED=$((PASSED + 1)); say "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); FAILED_NAMES+=("$1"); say "FAIL: $*"; }
skip() { SKIPPED=$((SKIPPED + 1)); say "SKIPPED: $*"; }

# check NAME LOGFILE CMD... : run CMD with its output in LOGFILE; on failure show the log's tail.
check() {
  local name="$1" log="$2"
  shift 2
  if "$@" >"$log" 2>&1; then
    pass "$name"
  else
    fail "$name (exit $?; log tail below)"
    tail -n 40 "$log" | sed 's/^/    | /'
  fi
}

# Fold the output of a checker run elsewhere (a python checker, the background moto
# section) into the totals: its PASS:/FAIL:/SKIPPED: lines count, other lines are shown.
fold() {
  local log="$1" line
  if ! grep -qE '^(PASS|FAIL|SKIPPED):' "$log"; then
    fail "no check result in $(basename "$log")"
    tail -n 40 "$log" | sed 's/^/    | /'
    return
  fi
  while IFS= read -r line; do
    case "$line" in
      PASS:*) PASSED=$((PASSED + 1)) ;;
      FAIL:*) FAILED=$((FAILED + 1)) && FAILED_NAMES+=("${line#FAIL: }") ;;
      SKIPPED:*) SKIPPED=$((SKIPPED + 1)) ;;
      "moto checks: "*) continue ;;
    esac
    say "$line"
  done <"$log"
}

finish() {
  say ""
  if [ "$FAILED" -gt 0 ]; then
    say "failed checks:"
    printf '  - %s\n' "${FAILED_NAMES[@]}"
  fi
  say "terraform: $PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ]
}

# Never reach real AWS: anything not sent to the loopback endpoints dies at a closed port.
# (pip, which installs missing tools from PyPI, runs without these: no_proxy_env.)
no_proxy_env() { env -u HTTPS_PROXY -u HTTP_PROXY -u https_proxy -u http_proxy "$@"; }
export HTTPS_PROXY="http://127.0.0.1:9" HTTP_PROXY="http://127.0.0.1:9"
export https_proxy="$HTTPS_PROXY" http_proxy="$HTTP_PROXY"
export NO_PROXY="127.0.0.1,localhost" no_proxy="127.0.0.1,localhost"
export AWS_EC2_METADATA_DISABLED=true CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1 TF_INPUT=0
unset AWS_PROFILE AWS_SESSION_TOKEN TF_PLUGIN_CACHE_DIR 2>/dev/null || true

# --- 0. terraform and the provider mirror ---------------------------------------------

if ! command -v terraform >/dev/null 2>&1; then
  skip "ALL terraform checks: no 'terraform' on PATH (Terraform >= 1.11 is needed: write-only attributes, terraform test with mock_provider)"
  finish
  exit $?
fi
say "using $(terraform version 2>/dev/null | head -n 1)"

# A mirror is a directory with registry.terraform.io/hashicorp/aws/<version>/<os_arch>/,
# <os_arch> being the platform this terraform runs on.
PLATFORM="$(terraform version -json 2>/dev/null | sed -nE 's/.*"platform":[[:space:]]*"([^"]+)".*/\1/p' | head -n 1)"
PLATFORM="${PLATFORM:-linux_amd64}"
mirror_ok() { compgen -G "$1/registry.terraform.io/hashicorp/aws/5.*/$PLATFORM/terraform-provider-aws_*" >/dev/null; }

# filesystem_mirror paths named by a Terraform CLI config file.
config_mirrors() {
  if [ -f "$1" ]; then sed -nE 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"([^"]+)".*/\1/p' "$1"; fi
}

find_mirror() {
  local cand dir
  local -a cands=()
  # Where Terraform itself looks: a configured filesystem mirror, then its implicit local
  # mirror directories; then the place earlier versions of this script used.
  while IFS= read -r cand; do cands+=("$cand"); done < <(
    config_mirrors "${TF_CLI_CONFIG_FILE:-}"
    config_mirrors "$HOME/.terraformrc"
  )
  cands+=("$HOME/.terraform.d/plugins" "${XDG_DATA_HOME:-$HOME/.local/share}/terraform/plugins")
  IFS=: read -r -a dirs <<<"${XDG_DATA_DIRS:-/usr/local/share:/usr/share}"
  for dir in "${dirs[@]}"; do cands+=("$dir/terraform/plugins"); done
  for cand in "${cands[@]}"; do
    if [ -n "$cand" ] && mirror_ok "$cand"; then
      printf '%s\n' "$cand"
      return 0
    fi
  done
  # Last resort: search the filesystem (bounded depth, local filesystems only).
  cand="$(find / -xdev -maxdepth 7 -type d -path '*/registry.terraform.io/hashicorp/aws' \
    -not -path '/proc/*' -not -path "$WORK/*" 2>/dev/null | head -n 1)"
  if [ -n "$cand" ]; then
    cand="${cand%/registry.terraform.io/hashicorp/aws}"
    if mirror_ok "$cand"; then
      printf '%s\n' "$cand"
      return 0
    fi
  fi
  return 1
}

# A mirror named explicitly must be one: never fall back to another behind the caller's back.
MIRROR="${STRATA_TF_PROVIDER_MIRROR:-${STRATA_TF_PLUGIN_MIRROR:-}}"
if [ -n "$MIRROR" ]; then
  if ! mirror_ok "$MIRROR"; then
    fail "STRATA_TF_PROVIDER_MIRROR=$MIRROR holds no registry.terraform.io/hashicorp/aws/5.x/$PLATFORM/terraform-provider-aws_*"
    finish
    exit $?
  fi
elif ! MIRROR="$(find_mirror)"; then
  skip "ALL terraform checks: no Terraform provider filesystem mirror holding registry.terraform.io/hashicorp/aws/5.x/$PLATFORM (set STRATA_TF_PROVIDER_MIRROR; 'terraform providers mirror DIR' in a module dir makes one); refusing to download providers"
  finish
  exit $?
fi
say "provider mirror: $MIRROR ($(basename "$(dirname "$(compgen -G "$MIRROR/registry.terraform.io/hashicorp/aws/5.*/$PLATFORM" | head -n 1)")"))"

cat >"$WORK/terraform.rc" <<EOF
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/*/*"]
  }
  direct {
    exclude = ["registry.terraform.io/*/*"]
  }
}
EOF
export TF_CLI_CONFIG_FILE="$WORK/terraform.rc"

# Work on a copy of the repo's Terraform (same relative layout), so init's lock files,
# .terraform dirs, state and override files never land in the work tree.
SRC="$WORK/src"
mkdir -p "$SRC/tests"
cp -R "$ROOT/terraform" "$SRC/terraform"
cp -R "$ROOT/tests/terraform" "$SRC/tests/terraform"
find "$SRC" \( -name .terraform -o -name '.terraform.lock.hcl' -o -name '*.tfstate*' \) -prune -exec rm -rf {} +

# --- 1. apply / re-plan / destroy against moto_server, in the background (the long pole) ---------------------------------------

RENDER="$WORK/render"
mkdir -p "$RENDER"
MOTO_PY=""
MOTO_SKIP_REASON=""
moto_setup() {
  if [ "${STRATA_TF_SKIP_MOTO:-}" = 1 ]; then
    MOTO_SKIP_REASON="STRATA_TF_SKIP_MOTO=1"
    return 1
  fi
  if python3 -c 'import moto.server, flask, boto3' >/dev/null 2>&1; then
    MOTO_PY="$(command -v python3)"
  elif [ -x "$TOOLS/moto/bin/python" ] && "$TOOLS/moto/bin/python" -c 'import moto.server, flask, boto3' >/dev/null 2>&1; then
    MOTO_PY="$TOOLS/moto/bin/python"
  else
    say "installing moto[server] with pip into $TOOLS/moto (first run only)..."
    mkdir -p "$TOOLS"
    if python3 -m venv "$TOOLS/moto" >"$WORK/moto-install.log" 2>&1 &&
      no_proxy_env "$TOOLS/moto/bin/pip" install --quiet 'moto[server]' >>"$WORK/moto-install.log" 2>&1; then
      MOTO_PY="$TOOLS/moto/bin/python"
    else
      MOTO_SKIP_REASON="moto[server] is not importable and 'pip install moto[server]' into $TOOLS/moto failed: $(tail -n 1 "$WORK/moto-install.log")"
      rm -rf "$TOOLS/moto"
      return 1
    fi
  fi
}

moto_run() {
  # Its own copy of the tree: the validate step inits the same example concurrently.
  local port endpoint ex="$WORK/moto-src/terraform/examples/single-region" data="$WORK/data/moto-single-region"
  mkdir -p "$WORK/moto-src"
  cp -R "$SRC/terraform" "$WORK/moto-src/terraform"
  port="$("$MOTO_PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  endpoint="http://127.0.0.1:$port"
  "$MOTO_PY" "$SRC/tests/terraform/moto_server.py" -H 127.0.0.1 -p "$port" >"$WORK/moto-server.log" 2>&1 &
  MOTO_PID=$!
  local up=0
  for _ in $(seq 1 60); do
    if "$MOTO_PY" -c "import urllib.request,sys; urllib.request.urlopen('$endpoint/moto-api/', timeout=1)" >/dev/null 2>&1; then
      up=1
      break
    fi
    sleep 0.5
  done
  if [ "$up" != 1 ]; then
    fail "moto_server did not come up on $endpoint"
    tail -n 20 "$WORK/moto-server.log" | sed 's/^/    | /'
    return
  fi
  stamp "moto_server (pid $MOTO_PID) on $endpoint"
  echo "$MOTO_PID" >"$WORK/moto.pid"

  # Every service the example touches goes to moto.
  cat >"$ex/moto_override.tf" <<EOF
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    ec2            = "$endpoint"
    elbv2          = "$endpoint"
    iam            = "$endpoint"
    kms            = "$endpoint"
    s3             = "$endpoint"
    ssm            = "$endpoint"
    sts            = "$endpoint"
    autoscaling    = "$endpoint"
    cloudwatch     = "$endpoint"
    cloudwatchlogs = "$endpoint"
    secretsmanager = "$endpoint"
    acmpca         = "$endpoint"
  }
}
EOF
  local vars=(-var "strata_binary_url=https://example.invalid/strata")
  tfx() { (cd "$ex" && TF_DATA_DIR="$data" "$@"); }

  if ! tfx terraform init -input=false -no-color >"$WORK/moto-init.log" 2>&1; then
    fail "terraform init of the single-region example"
    tail -n 30 "$WORK/moto-init.log" | sed 's/^/    | /'
    return
  fi
  local applied=0
  if tfx timeout 480 terraform apply -auto-approve -input=false -no-color -parallelism=30 "${vars[@]}" >"$WORK/moto-apply.log" 2>&1; then
    stamp "apply done"
    pass "terraform apply of examples/single-region against moto ($(grep -oE 'Resources: [0-9]+ added' "$WORK/moto-apply.log"))"
    applied=1
  else
    fail "terraform apply of examples/single-region against moto"
    grep -E -A12 '^Error' "$WORK/moto-apply.log" | head -n 60 | sed 's/^/    | /'
  fi

  if [ "$applied" = 1 ]; then
    tfx terraform output -json >"$WORK/outputs.json" 2>"$WORK/outputs.err" || true
    "$MOTO_PY" "$SRC/tests/terraform/moto_assert.py" present "$endpoint" "$WORK/outputs.json" "$RENDER" 2>&1 || true

    if tfx terraform plan -input=false -no-color -out="$WORK/replan.tfplan" "${vars[@]}" >"$WORK/moto-replan.log" 2>&1 &&
      tfx terraform show -json "$WORK/replan.tfplan" >"$WORK/replan.json" 2>>"$WORK/moto-replan.log"; then
      stamp "re-plan done"
      "$MOTO_PY" "$SRC/tests/terraform/moto_assert.py" noop "$WORK/replan.json" 2>&1 || true
    else
      fail "terraform plan after apply"
      tail -n 30 "$WORK/moto-replan.log" | sed 's/^/    | /'
    fi
  fi

  # Destroy whatever exists, even after a failed apply. The state was just refreshed by
  # the re-plan, so skip destroy's own refresh.
  if tfx timeout 420 terraform destroy -auto-approve -input=false -no-color -refresh=false -parallelism=30 "${vars[@]}" >"$WORK/moto-destroy.log" 2>&1; then
    stamp "destroy done"
    pass "terraform destroy of examples/single-region against moto ($(grep -oE 'Resources: [0-9]+ destroyed' "$WORK/moto-destroy.log"))"
  else
    fail "terraform destroy of examples/single-region against moto"
    grep -E -A12 '^Error' "$WORK/moto-destroy.log" | head -n 60 | sed 's/^/    | /'
  fi
  if [ "$applied" = 1 ]; then
    "$MOTO_PY" "$SRC/tests/terraform/moto_assert.py" absent "$endpoint" "$WORK/outputs.json" 2>&1 || true
  fi
}


# The apply mostly waits on the provider's polling, so it runs in the background while
# the unit tests use the CPU. Its PASS/FAIL lines are folded in once it is done.
MOTO_SECTION_PID=""
(
  # This subshell's own counters are discarded; its output lines are what counts.
  trap 'if [ -f "$WORK/moto.pid" ]; then kill "$(cat "$WORK/moto.pid")" 2>/dev/null || true; fi' EXIT
  if moto_setup; then
    moto_run
  else
    skip "terraform apply/re-plan/destroy against moto_server: $MOTO_SKIP_REASON"
  fi
) >"$WORK/moto-section.log" 2>&1 &
MOTO_SECTION_PID=$!

# --- 2. checkov, started in the background (slow, independent) -------------------------------------------

checkov_setup() {
  if [ "${STRATA_TF_SKIP_CHECKOV:-}" = 1 ]; then
    echo "STRATA_TF_SKIP_CHECKOV=1" >"$WORK/checkov.skip"
    return 1
  fi
  if command -v checkov >/dev/null 2>&1; then
    CHECKOV="$(command -v checkov)"
  elif [ -x "$TOOLS/checkov/bin/checkov" ]; then
    CHECKOV="$TOOLS/checkov/bin/checkov"
  else
    # Its own venv: checkov pins boto3/botocore versions that moto and awscli disagree with.
    mkdir -p "$TOOLS"
    if python3 -m venv "$TOOLS/checkov" >"$WORK/checkov-install.log" 2>&1 &&
      no_proxy_env "$TOOLS/checkov/bin/pip" install --quiet checkov >>"$WORK/checkov-install.log" 2>&1; then
      CHECKOV="$TOOLS/checkov/bin/checkov"
    else
      echo "not on PATH and 'pip install checkov' into $TOOLS/checkov failed: $(tail -n 1 "$WORK/checkov-install.log")" >"$WORK/checkov.skip"
      rm -rf "$TOOLS/checkov"
      return 1
    fi
  fi
}
(
  CHECKOV=""
  if checkov_setup; then
    # The source tree itself (reported paths read better than a temp copy's).
    # --skip-download: never fetch policies or guidelines from the network.
    "$CHECKOV" -d "$ROOT/terraform" --skip-download --quiet --compact >"$WORK/checkov.log" 2>&1
    echo $? >"$WORK/checkov.rc"
    echo "$SECONDS" >"$WORK/checkov.done"
  fi
) &
CHECKOV_PID=$!

# --- 3. fmt -------------------------------------------------------------------

check "terraform fmt -check -recursive terraform/ tests/terraform/" "$WORK/fmt.log" \
  bash -c 'terraform fmt -check -recursive -diff "$1/terraform" && terraform fmt -check -recursive -diff "$1/tests/terraform"' _ "$ROOT"

# --- 4. validate ----------------------------------------------------------------------------

# (examples/* validate modules/strata-network as their child module.)
DIRS=(terraform/modules/strata-cluster terraform/examples/single-region terraform/examples/two-region-mirror)
for d in "${DIRS[@]}"; do
  log="$WORK/validate-$(basename "$d").log"
  check "terraform init (filesystem mirror) + validate: $d" "$log" \
    bash -c 'cd "$1" && TF_DATA_DIR="$2" terraform init -backend=false -input=false -no-color && TF_DATA_DIR="$2" terraform validate -no-color' _ "$SRC/$d" "$WORK/data/$(basename "$d")"
done

# --- 5. terraform test (mock providers) ----------------------------------------------------

for d in terraform/modules/strata-cluster terraform/examples/single-region terraform/examples/two-region-mirror; do
  log="$WORK/test-$(basename "$d").log"
  if (cd "$SRC/$d" && TF_DATA_DIR="$WORK/data/$(basename "$d")" timeout 300 terraform test -no-color) >"$log" 2>&1; then
    pass "terraform test (mock_provider): $d — $(grep -E '^Success!' "$log" | sed 's/^Success! //')"
  else
    fail "terraform test (mock_provider): $d"
    grep -vE '^  - ' "$log" | tail -n 60 | sed 's/^/    | /'
  fi
done

# --- 6. collect the moto section ------------------------------------------------------------

stamp "unit tests done; waiting for the moto section"
wait "$MOTO_SECTION_PID" || true
MOTO_SECTION_PID=""
fold "$WORK/moto-section.log"

# --- 7. collect checkov ----------------------------------------------------------------------------

wait "$CHECKOV_PID" || true
CHECKOV_PID=""
if [ -f "$WORK/checkov.skip" ]; then
  skip "checkov: $(cat "$WORK/checkov.skip")"
elif [ "$(cat "$WORK/checkov.rc" 2>/dev/null)" = 0 ]; then
  stamp "checkov finished at $(cat "$WORK/checkov.done")s"
  pass "checkov -d terraform/ --skip-download ($(grep -oE 'Passed checks: [0-9]+, Failed checks: [0-9]+, Skipped checks: [0-9]+' "$WORK/checkov.log" | paste -sd ';' | sed 's/;/; /g'))"
else
  fail "checkov -d terraform/ --skip-download"
  grep -E -A4 '^Check: ' "$WORK/checkov.log" | head -n 80 | sed 's/^/    | /'
  tail -n 5 "$WORK/checkov.log" | sed 's/^/    | /'
fi

# --- 8. the rendered strata.toml -----------------------------------------------------------

# A provider-less render of the template for a broker-only node (works without moto).
if (cd "$SRC/tests/terraform/render" && TF_DATA_DIR="$WORK/data/render" terraform init -input=false -no-color >/dev/null &&
  TF_DATA_DIR="$WORK/data/render" terraform apply -auto-approve -input=false -no-color >/dev/null &&
  TF_DATA_DIR="$WORK/data/render" terraform output -raw strata_toml) >"$RENDER/broker-4.toml" 2>"$WORK/render.log"; then
  pass "template renders without providers (sample broker-only node 4)"
else
  fail "template render (tests/terraform/render)"
  tail -n 20 "$WORK/render.log" | sed 's/^/    | /'
  rm -f "$RENDER/broker-4.toml"
fi

RENDERED=()
for f in "$RENDER"/broker-*.toml; do
  [ -e "$f" ] && RENDERED+=("$f")
done
say "rendered configs: ${#RENDERED[@]} ($( [ ${#RENDERED[@]} -gt 0 ] && basename -a "${RENDERED[@]}" | tr '\n' ' '))"

for f in "${RENDERED[@]}"; do
  id="$(basename "$f" .toml)"
  id="${id#broker-}"
  check "strata.toml node $id: valid TOML, exactly Strata's keys and types, node.id = $id" "$WORK/toml-$id.log" \
    python3 "$SRC/tests/terraform/check_toml.py" "$f" "$id"
done

for f in "$RENDER"/user-data-*.sh; do
  [ -e "$f" ] || continue
  id="$(basename "$f" .sh)"
  id="${id#user-data-}"
  check "user data of broker $id (from its launch template) is valid bash (bash -n)" "$WORK/bash-n-$id.log" bash -n "$f"
done

STRATA="${STRATA_BIN:-}"
if [ -z "$STRATA" ]; then
  for cand in "$ROOT/target/release/strata" "$ROOT/target/debug/strata"; do
    if [ -x "$cand" ]; then
      STRATA="$cand"
      break
    fi
  done
fi
if [ -n "${STRATA_BIN:-}" ] && [ ! -x "$STRATA_BIN" ]; then
  fail "strata serve --print-config: STRATA_BIN=$STRATA_BIN is not an executable file"
elif [ -z "$STRATA" ]; then
  skip "strata serve --print-config on the rendered configs: no strata binary (set STRATA_BIN, or build target/release/strata or target/debug/strata)"
elif [ ${#RENDERED[@]} -eq 0 ]; then
  fail "strata serve --print-config: no rendered config to check"
else
  say "broker binary: $STRATA"
  for f in "${RENDERED[@]}"; do
    id="$(basename "$f" .toml)"
    id="${id#broker-}"
    log="$WORK/print-config-$id.log"
    if timeout 30 "$STRATA" serve --config "$f" --print-config >"$log" 2>&1 </dev/null &&
      grep -Eq "node\.id[^0-9]*\b$id\b" "$log"; then
      pass "strata serve --config broker-$id.toml --print-config: exit 0, echoes node.id = $id"
    else
      fail "strata serve --config broker-$id.toml --print-config (exit non-zero, or no node.id $id in its output)"
      sed 's/^/    | /' "$f"
      say "    | --- broker output:"
      tail -n 30 "$log" | sed 's/^/    | /'
    fi
  done
fi

# --- 9. the systemd unit -------------------------------------------------------------------

UNIT_SRC="terraform/modules/strata-cluster/files/strata.service"
unit_one_copy() {
  [ -L packaging/strata.service ] && [ "$(readlink -f packaging/strata.service)" = "$(readlink -f "$UNIT_SRC")" ]
}
check "packaging/strata.service is a symlink to the module's $UNIT_SRC (one copy)" "$WORK/unit-link.log" unit_one_copy

unit_directives() {
  local d missing=0
  for d in 'User=strata' 'Group=strata' 'LimitNOFILE=1048576' 'Restart=on-failure' 'KillSignal=SIGTERM' \
    'TimeoutStopSec=' 'ProtectSystem=strict' 'ReadWritePaths=/var/lib/strata' 'NoNewPrivileges=yes' \
    'ExecStart=/usr/local/bin/strata serve --config /etc/strata/strata.toml'; do
    if ! grep -q "^$d" "$UNIT_SRC"; then
      echo "missing: $d"
      missing=1
    fi
  done
  return $missing
}
check "strata.service carries the hardening and lifecycle directives" "$WORK/unit-directives.log" unit_directives

if command -v systemd-analyze >/dev/null 2>&1; then
  unit_verify() {
    # The binary is not installed here: that one complaint is expected, anything else fails.
    mkdir -p "$WORK/unit" && cp "$UNIT_SRC" "$WORK/unit/strata.service"
    systemd-analyze verify "$WORK/unit/strata.service" >"$WORK/unit-verify.out" 2>&1 || true
    cat "$WORK/unit-verify.out"
    ! grep -v 'Command /usr/local/bin/strata is not executable' "$WORK/unit-verify.out" | grep -q .
  }
  check "systemd-analyze verify strata.service (no unknown keys or errors)" "$WORK/unit-verify.log" unit_verify
else
  skip "systemd-analyze verify: systemd-analyze not installed"
fi

finish
