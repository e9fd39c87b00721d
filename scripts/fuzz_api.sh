#!/usr/bin/env bash
# API fuzzing: schemathesis against the running service's own /openapi.json.
#
# 1. starts `fmrecall serve` on 127.0.0.1:<free port> in a temporary folder, with an admin token, a
#    write token, a SQLite registry and the demo model (trained at start, a few seconds);
# 2. runs schemathesis (PyPI, pinned, in its own venv) over every operation of the document, all
#    phases (examples, coverage, fuzzing, stateful), with a fixed seed and a bounded number of
#    examples per operation, and these checks: no 5xx; every status documented; every body, error
#    bodies included, conforms to the documented schema (so every error is the one
#    `{"error": {"code", "message", "field"?}}` shape); content types and headers as documented;
#    schema-violating requests rejected with a 4xx; secured routes refuse requests without the token;
#    unsupported methods answered 405;
# 3. checks that the service is still ready afterwards, that its log has no panic, and that it exits
#    with status 0 on SIGTERM.
#
# Not checked: `positive_data_acceptance` (every schema-valid request answered 2xx). The document
# cannot express the cross-field rules (a layer's weight shapes must agree with its input; a user is
# an id or features), so schema-valid requests that break them are rightly answered 400.
#
# Run from the repository root after `cargo build --release`:   bash scripts/fuzz_api.sh
# Settings (environment): BIN (target/release/fmrecall), EXAMPLES (per operation, 150), SEED (1),
# MAX_TIME (seconds, 240: a hard stop for the schemathesis run), FMRECALL_FUZZ_VENV
# (/tmp/fmrecall-fuzz), KEEP_TMP=1 keeps the folder with the log and the schemathesis report.
# Everything binds 127.0.0.1; the script stops the server whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/fmrecall}
EXAMPLES=${EXAMPLES:-150}
SEED=${SEED:-1}
MAX_TIME=${MAX_TIME:-240}
SCHEMATHESIS_VERSION=4.32.5
venv=${FMRECALL_FUZZ_VENV:-/tmp/fmrecall-fuzz}

[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 2; }
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fmrecall-fuzz.XXXXXX")
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
ADMIN_TOKEN="fuzz-admin-$RANDOM$RANDOM"
export FMRECALL_DATABASE__URL="sqlite://$TMP/registry.db"
export FMRECALL_SERVER__DEMO_MODEL_DIR="$TMP/demo"
export FMRECALL_SERVER__ADMIN_TOKEN="$ADMIN_TOKEN"
export FMRECALL_SERVER__WRITE_TOKEN="fuzz-writer"
export FMRECALL_SERVER__LOG_FORMAT=json
export FMRECALL_TRAIN__EPOCHS=5
export FMRECALL_DATABASE__POLL_SECONDS=0.5
"$BIN" serve --bind "127.0.0.1:$PORT" >"$TMP/serve.out" 2>"$TMP/serve.log" &
SERVER_PID=$!
for _ in $(seq 1 240); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited during start-up:" >&2; tail -20 "$TMP/serve.log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/readyz" || true)" = 200 ] && break
    sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/readyz")" = 200 ] || { echo "not ready" >&2; exit 1; }

echo "== schemathesis $SCHEMATHESIS_VERSION against $BASE/openapi.json ($EXAMPLES examples per operation, seed $SEED)"
started=$(date +%s)
set +e
# From the temporary folder: schemathesis keeps a cache in its working directory.
# One worker: with two, hypothesis parses lambda sources from two threads at once, which trips
# CPython 3.11's AST constructor ("SystemError: AST constructor recursion depth mismatch",
# cpython#106905) and failed a CI run with a runtime error that was no finding about the API.
repo=$PWD
cd "$TMP"
timeout --signal=INT "$MAX_TIME" "$venv/bin/schemathesis" run "$BASE/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
    --request-timeout 20 --continue-on-failure --max-failures 100 \
    --generation-database none --no-color \
    --report junit --report-dir "$TMP/report" 2>&1 | tee "$TMP/schemathesis.out"
status=${PIPESTATUS[0]}
set -e
cd "$repo"
echo "schemathesis: exit status $status after $(( $(date +%s) - started )) s"

problems=0
if [ "$status" != 0 ]; then
    echo "FAIL: schemathesis found failures (above)" >&2
    problems=1
fi
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "FAIL: the server died during the run" >&2
    tail -20 "$TMP/serve.log" >&2
    exit 1
fi
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE/readyz" || true)
[ "$code" = 200 ] || { echo "FAIL: /readyz answers $code after the run" >&2; problems=1; }
if grep -q 'panicked' "$TMP/serve.log"; then
    echo "FAIL: the server log has a panic:" >&2
    grep -m5 'panicked' "$TMP/serve.log" >&2
    problems=1
fi
requests=$(grep -c '"message":"request"' "$TMP/serve.log" || true)
server_errors=$(grep '"message":"request"' "$TMP/serve.log" | grep -c '"status":5' || true)
echo "requests served: $requests, of which 5xx: $server_errors"

kill -TERM "$SERVER_PID"
exit_status=""
for _ in $(seq 1 150); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        set +e; wait "$SERVER_PID"; exit_status=$?; set -e
        break
    fi
    sleep 0.2
done
SERVER_PID=""
[ "$exit_status" = 0 ] || { echo "FAIL: the server did not exit cleanly on SIGTERM (status ${exit_status:-none})" >&2; problems=1; }
[ "$problems" = 0 ] && echo "API fuzzing: no failure"
exit "$problems"
