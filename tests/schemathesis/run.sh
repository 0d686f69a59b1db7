#!/usr/bin/env bash
# The schemathesis stage: fuzzes a real ezw-server (demo workspace, fresh data directory) against
# docs/openapi.json as the server serves it, with the checks not_a_server_error,
# status_code_conformance, response_schema_conformance and content_type_conformance. Fails on any
# failure and prints the failing cases (with a curl command to reproduce each).
#
# Usage: tests/schemathesis/run.sh <path to the ezw-server binary>
#
# Environment:
#   EZW_SCHEMATHESIS_VENV          the virtualenv (default ~/.cache/ezw-schemathesis); created
#                                  from requirements.txt, reinstalled only when that file or the
#                                  Python version changes
#   EZW_SCHEMATHESIS_MAX_EXAMPLES  test cases per operation in the fuzzing phase (default 100)
#   EZW_SCHEMATHESIS_WORKERS       concurrent workers (default 1)
#   EZW_SCHEMATHESIS_PYTHON        the interpreter for the virtualenv (default python3)
#   EZW_SCHEMATHESIS_SEED          a seed, to replay a run
#   EZW_SCHEMATHESIS_REPORT_DIR    keep JUnit and HAR reports of every run there
#   EZW_SCHEMATHESIS_SCHEMA        a schema file to use instead of the served document (to iterate
#                                  on docs/openapi.json without rebuilding the server)
#
# The server and schemathesis run in a new network namespace that has only a loopback interface:
# whatever the fuzzer makes the server call (webhook targets, vendor API base URLs, DNS lookups of
# fuzzed host names) fails on this machine and reaches no other host.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
server_bin="${1:?usage: run.sh <ezw-server binary>}"
server_bin="$(cd "$(dirname "$server_bin")" && pwd)/$(basename "$server_bin")"
if [ -n "${EZW_SCHEMATHESIS_SCHEMA:-}" ]; then
  EZW_SCHEMATHESIS_SCHEMA="$(cd "$(dirname "$EZW_SCHEMATHESIS_SCHEMA")" && pwd)/$(basename "$EZW_SCHEMATHESIS_SCHEMA")"
  export EZW_SCHEMATHESIS_SCHEMA
fi
if [ -n "${EZW_SCHEMATHESIS_REPORT_DIR:-}" ]; then
  mkdir -p "$EZW_SCHEMATHESIS_REPORT_DIR"
  EZW_SCHEMATHESIS_REPORT_DIR="$(cd "$EZW_SCHEMATHESIS_REPORT_DIR" && pwd)"
  export EZW_SCHEMATHESIS_REPORT_DIR
fi
venv="${EZW_SCHEMATHESIS_VENV:-$HOME/.cache/ezw-schemathesis}"

if [ "${EZW_SCHEMATHESIS_NETNS:-}" != 1 ]; then
  # Outside the namespace: install (PyPI is reachable here), then re-run this script inside one.
  python="${EZW_SCHEMATHESIS_PYTHON:-python3}"
  wanted="$("$python" -c 'import sys; print(sys.version)' && cat "$here/requirements.txt")"
  if [ "$wanted" != "$(cat "$venv/installed" 2> /dev/null)" ]; then
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
    printf '%s' "$wanted" > "$venv/installed"
  fi
  command -v unshare > /dev/null && command -v ip > /dev/null || {
    echo "the schemathesis stage needs unshare(1) and ip(8) (util-linux, iproute2)" >&2
    exit 1
  }
  for flags in --net "--net --map-root-user"; do
    # shellcheck disable=SC2086
    if unshare $flags true 2> /dev/null; then
      # shellcheck disable=SC2086
      exec unshare $flags env EZW_SCHEMATHESIS_NETNS=1 bash "$0" "$server_bin"
    fi
  done
  echo "cannot create a network namespace (unshare --net): run as root or enable user namespaces" >&2
  exit 1
fi

ip link set lo up
# The namespace is new and private, so a fixed port cannot collide with anything.
port=47130
base="http://127.0.0.1:$port"
work="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG="${RUST_LOG:-error}" "$server_bin" --bind "127.0.0.1:$port" --data-dir "$work/data" --demo \
  --allow-private-webhook-targets > "$work/server.log" 2>&1 &
server_pid=$!
ready=0
for _ in $(seq 1 120); do
  if curl -fsS -o /dev/null "$base/healthz" 2> /dev/null; then ready=1; break; fi
  if ! kill -0 "$server_pid" 2> /dev/null; then break; fi
  sleep 0.5
done
if [ "$ready" -ne 1 ]; then
  echo "ezw-server did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
fi

"$venv/bin/python" "$here/prepare.py" "$base" "$work/data/demo.json" "$work"
# One worker by default: on this 2-core machine two finish no sooner (the server shares the
# cores), and with several, Hypothesis on CPython 3.11 can fail with "AST constructor recursion
# depth mismatch" (CPython gh-106905).
workers="${EZW_SCHEMATHESIS_WORKERS:-1}"
echo "schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}') on Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $workers worker(s)"

# schemathesis_run <report name> <config: channel | workspace> <filters...>
schemathesis_run() {
  local name="$1" config="$2"
  shift 2
  echo "-- schemathesis: $name"
  local schema=("$base/api/openapi.json")
  if [ -n "${EZW_SCHEMATHESIS_SCHEMA:-}" ]; then schema=("$EZW_SCHEMATHESIS_SCHEMA" --url "$base"); fi
  local args=(
    --config-file "$work/$config.toml" run "${schema[@]}"
    --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance
    --phases examples,coverage,fuzzing
    --max-examples "${EZW_SCHEMATHESIS_MAX_EXAMPLES:-100}"
    --workers "$workers"
    --generation-database none
    --request-timeout 20
    --no-color
  )
  if [ -n "${EZW_SCHEMATHESIS_SEED:-}" ]; then args+=(--seed "$EZW_SCHEMATHESIS_SEED"); fi
  if [ -n "${EZW_SCHEMATHESIS_REPORT_DIR:-}" ]; then
    args+=(--report junit,har --report-dir "$EZW_SCHEMATHESIS_REPORT_DIR/$name")
  fi
  local status=0
  # From the temporary directory: schemathesis keeps a cache (.schemathesis/) in its working directory.
  (cd "$work" && "$venv/bin/schemathesis" "${args[@]}" "$@") 2>&1 | tee "$work/$name.log" || status=$?
  # "Test cases:" is followed by "  N generated, N passed, ..." in schemathesis' summary.
  local ops cases
  ops="$(grep -o 'Tested: [0-9]*' "$work/$name.log" | awk '{print $2}' | tail -1)"
  cases="$(grep -A1 '^Test cases:' "$work/$name.log" | grep -o '[0-9]* generated' | awk '{print $1}' | tail -1)"
  total_ops=$((total_ops + ${ops:-0}))
  total_cases=$((total_cases + ${cases:-0}))
  echo "schemathesis ($name): ${ops:-0} operations, ${cases:-0} test cases, $([ "$status" -eq 0 ] && echo passed || echo FAILED)"
  if [ "$status" -ne 0 ]; then
    echo "schemathesis ($name) failed (the failing cases and how to reproduce them are above); the server's log:" >&2
    tail -50 "$work/server.log" >&2
    return "$status"
  fi
}

started=$SECONDS
status=0
total_ops=0
total_cases=0
# The Channel API with the line token first (the workspace run may rotate the demo line's token),
# then everything else with the ID token, except the never-ending event stream. Each run's DELETE
# operations go last, in a pass of their own, so they cannot remove what the others test with;
# logout, which ends the session the workspace run uses, goes at the very end.
# (schemathesis ORs filters of different kinds but ANDs the regex ones given together.)
schemathesis_run channel channel --include-path-regex '^/api/v1/' --exclude-method DELETE || status=1
schemathesis_run channel-delete channel --include-path-regex '^/api/v1/' --include-method-regex '(?i)^delete$' || status=1
schemathesis_run workspace workspace --exclude-path-regex '^/api/v1/|^/api/live/stream$|^/api/auth/logout$' \
  --exclude-method DELETE || status=1
schemathesis_run workspace-delete workspace --include-path-regex '^/(?!api/v1/)' --include-method-regex '(?i)^delete$' \
  || status=1
schemathesis_run logout workspace --include-path /api/auth/logout || status=1
if ! kill -0 "$server_pid" 2> /dev/null; then
  echo "ezw-server exited during the run:" >&2
  tail -50 "$work/server.log" >&2
  status=1
fi
echo "schemathesis stage: $total_ops operations, $total_cases test cases in $((SECONDS - started)) s, $([ "$status" -eq 0 ] && echo passed || echo FAILED)"
exit "$status"
