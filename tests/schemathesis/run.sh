#!/usr/bin/env bash
# The schemathesis stage: fuzzes a real ezw-server (demo workspace, fresh data directory) against
# docs/openapi.json as the server serves it, with the checks not_a_server_error,
# response_schema_conformance and content_type_conformance. Fails on any failure and prints the
# failing cases (with a curl command to reproduce each).
#
# Usage: tests/schemathesis/run.sh <path to the ezw-server binary>
#
# Environment:
#   EZW_SCHEMATHESIS_VENV          the virtualenv (default ~/.cache/ezw-schemathesis); created
#                                  from requirements.txt, reinstalled only when that file changes
#   EZW_SCHEMATHESIS_MAX_EXAMPLES  test cases per operation in the fuzzing phase (default 25)
#   EZW_SCHEMATHESIS_WORKERS       concurrent workers (default 2; 1 on a Python whose ast module is not
#                                  thread-safe)
#   EZW_SCHEMATHESIS_PYTHON        the interpreter for the virtualenv (default: the newest found)
#   EZW_SCHEMATHESIS_SEED          a seed, to replay a run
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
venv="${EZW_SCHEMATHESIS_VENV:-$HOME/.cache/ezw-schemathesis}"

# The newest Python found: CPython before 3.11.8 / 3.12.2 can fail with "AST constructor recursion
# depth mismatch" when Hypothesis describes strategies from several threads (gh-106905).
pick_python() {
  local candidates=(python3.13 python3.12)
  if command -v pyenv > /dev/null; then
    local root
    root="$(pyenv root)"
    candidates+=("$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3)
  fi
  candidates+=(python3)
  for py in "${candidates[@]}"; do
    if "$py" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' > /dev/null 2>&1; then
      echo "$py"
      return
    fi
  done
  echo "python3"
}

if [ "${EZW_SCHEMATHESIS_NETNS:-}" != 1 ]; then
  # Outside the namespace: install (PyPI is reachable here), then re-run this script inside one.
  python="${EZW_SCHEMATHESIS_PYTHON:-$(pick_python)}"
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

RUST_LOG="${RUST_LOG:-warn}" "$server_bin" --bind "127.0.0.1:$port" --data-dir "$work/data" --demo \
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

"$venv/bin/python" "$here/prepare.py" "$base" "$work/data/demo.json" > "$work/schemathesis.toml"
thread_safe_ast="$("$venv/bin/python" -c 'import sys; v = sys.version_info; print(int(v >= (3, 12, 2) or (3, 11, 8) <= v < (3, 12)))')"
workers="${EZW_SCHEMATHESIS_WORKERS:-$([ "$thread_safe_ast" = 1 ] && echo 2 || echo 1)}"
echo "schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}') on Python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $workers worker(s)"

schemathesis_run() {
  local name="$1"
  shift
  echo "-- schemathesis: $name"
  local schema=("$base/api/openapi.json")
  if [ -n "${EZW_SCHEMATHESIS_SCHEMA:-}" ]; then schema=("$EZW_SCHEMATHESIS_SCHEMA" --url "$base"); fi
  local args=(
    --config-file "$work/schemathesis.toml" run "${schema[@]}"
    --checks not_a_server_error,response_schema_conformance,content_type_conformance
    --phases examples,coverage,fuzzing
    --max-examples "${EZW_SCHEMATHESIS_MAX_EXAMPLES:-25}"
    --workers "$workers"
    --generation-database none
    --request-timeout 20
    --no-color
    --report junit --report-junit-path "$work/$name.xml"
  )
  if [ -n "${EZW_SCHEMATHESIS_SEED:-}" ]; then args+=(--seed "$EZW_SCHEMATHESIS_SEED"); fi
  local status=0
  "$venv/bin/schemathesis" "${args[@]}" "$@" || status=$?
  summarize "$name" "$work/$name.xml"
  if [ "$status" -ne 0 ]; then
    echo "schemathesis ($name) failed; the server's log:" >&2
    tail -50 "$work/server.log" >&2
    return "$status"
  fi
}

summarize() {
  "$venv/bin/python" - "$1" "$2" << 'PY'
import sys, xml.etree.ElementTree as ET
name, path = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except (OSError, ET.ParseError):
    sys.exit(0)
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
ops = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
print(f"schemathesis ({name}): {ops} operations, {failed} failed")
PY
}

started=$SECONDS
status=0
# The Channel API with the line token first: the workspace run may rotate the demo line's token.
schemathesis_run channel --include-path-regex '^/api/v1/' || status=1
# Everything else with the ID token, except the never-ending event stream, and logout (it would
# end the session the rest of the run uses), which runs last on its own.
schemathesis_run workspace --exclude-path-regex '^/api/v1/|^/api/live/stream$|^/api/auth/logout$' || status=1
if curl -s "$base/api/openapi.json" | grep -q '"/api/auth/logout"'; then
  schemathesis_run logout --include-path '/api/auth/logout' || status=1
fi
if ! kill -0 "$server_pid" 2> /dev/null; then
  echo "ezw-server exited during the run:" >&2
  tail -50 "$work/server.log" >&2
  status=1
fi
echo "schemathesis stage: $((SECONDS - started)) s, $( [ "$status" -eq 0 ] && echo passed || echo FAILED)"
exit "$status"
