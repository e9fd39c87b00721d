#!/usr/bin/env bash
# Milvus against the in-process index on one model and one machine (docs/milvus.md):
#
# 1. trains a model (synthetic with ITEMS items, or MovieLens 100K with DATA=path/to/ml-100k), or
#    takes MODEL=an artifact folder;
# 2. starts Milvus 2.3.5 standalone (MILVUS_SERVER=path of milvus-server) on a free port, and
#    `fmrecall serve` on the same model: exact (the reference), the in-process default (auto), and
#    one on Milvus with metric l2 (norm-reduced) per index type of MILVUS_INDEXES; with IP=1 one
#    more on Milvus with raw inner products;
# 3. recall@10 and recall@100 of each served answer against the exact server's, through the API
#    (RECALL_USERS users, seen items excluded as served);
# 4. wrk (2 threads, DURATION s, CONNS connections) on POST /v1/recall k=10 and k=100 for each
#    of auto and Milvus; Milvus's and each server's resident memory.
#
# Run from the repository root after `cargo build --release`:
#   MILVUS_SERVER=V/bin/milvus-server bash benches/milvus.sh
# Settings: ITEMS (20000), USERS (2000), EPOCHS (3), DIM (64), DATA, MODEL, DURATION (10),
# CONNS (16), RECALL_USERS (200), IP (0), WRK (1; 0 skips the throughput rows), AUTO (1; 0 skips
# the in-process server: a 1M-item graph takes long to build here), USER_BASE (the
# first user id: 0 for synthetic data, 1 with DATA=ml-100k), SPLIT (random:0.2; none skips the
# evaluation, which at 1M items costs more than the training), BIN (target/release/fmrecall),
# EFS (request `ef` values, e.g. "256 512": extra recall rows for the Milvus servers with each
# request asking that breadth, which raises both the candidates and HNSW's ef).
# MILVUS_INDEXES ("hnsw"; e.g. "hnsw ivf_flat flat": one Milvus server per index type, each with its
# own collection). FMRECALL_INDEX__MILVUS__* in the environment reach the Milvus servers (e.g.
# MIN_EXTRA, SEARCH_EF, HNSW_M).
set -euo pipefail
# No registry: the models and servers of this run stay in its temporary folder.
export FMRECALL_DATABASE__URL=
BIN=${BIN:-target/release/fmrecall}
ITEMS=${ITEMS:-20000}
USERS=${USERS:-2000}
EPOCHS=${EPOCHS:-3}
DIM=${DIM:-64}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16}
RECALL_USERS=${RECALL_USERS:-200}
WRK=${WRK:-1}
AUTO=${AUTO:-1}
if [ -n "${DATA:-}" ]; then USER_BASE=${USER_BASE:-1}; else USER_BASE=${USER_BASE:-0}; fi
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in wrk curl python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (wrk: apt-get install wrk)" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release first" >&2; exit 2; }
[ -x "${MILVUS_SERVER:-}" ] || { echo "set MILVUS_SERVER to milvus-server (pip install milvus==2.3.5)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fmrecall-milvus.XXXXXX")
PIDS=()
MILVUS_PID=""
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    if [ -n "$MILVUS_PID" ]; then
        kill -TERM -- "-$MILVUS_PID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 -- "-$MILVUS_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$MILVUS_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

echo "# fmrecall: Milvus vs in-process recall ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores)"
echo "uptime at start: $(uptime)"

# ---- 1. the model ----
if [ -n "${MODEL:-}" ]; then
    :
elif [ -n "${DATA:-}" ]; then
    MODEL="$TMP/model"
    "$BIN" train --format movielens --data "$DATA" --split ua --out "$MODEL" >"$TMP/train.log" 2>&1
else
    MODEL="$TMP/model"
    "$BIN" train --format synthetic --users "$USERS" --items "$ITEMS" --features hybrid \
        --epochs "$EPOCHS" --dim "$DIM" --split "${SPLIT:-random:0.2}" --no-refit --out "$MODEL" \
        >"$TMP/train.log" 2>&1
fi
echo "model: $MODEL"

# ---- 2. Milvus and the servers ----
MPORT=$(free_port)
setsid "$MILVUS_SERVER" --data "$TMP/milvus" --proxy-port "$MPORT" >"$TMP/milvus-server.log" 2>&1 &
MILVUS_PID=$!
for _ in $(seq 1 240); do
    curl -sf --max-time 2 "http://127.0.0.1:$MPORT/v1/vector/collections" >/dev/null && break
    sleep 0.5
done
declare -A PORT SERVER_PID
serve() {  # serve NAME ENV...
    local name=$1; shift
    local port; port=$(free_port)
    env FMRECALL_DATABASE__URL= FMRECALL_INDEX__MILVUS__ADDRESS="127.0.0.1:$MPORT" "$@" \
        "$BIN" serve --bind "127.0.0.1:$port" --model "$MODEL" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    SERVER_PID[$name]=$!
    PORT[$name]=$port
    for _ in $(seq 1 1200); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/readyz" || true)" = 200 ] && return
        kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "$name exited:" >&2; tail -5 "$TMP/$name.log" >&2; exit 1; }
        sleep 0.5
    done
    echo "$name not ready" >&2; exit 1
}
serve exact FMRECALL_INDEX__KIND=exact
[ "$AUTO" = 1 ] && serve auto FMRECALL_INDEX__KIND=auto
NAMES=""
[ "$AUTO" = 1 ] && NAMES="auto"
for index_type in ${MILVUS_INDEXES:-hnsw}; do
    t0=$(date +%s.%N)
    serve "milvus_$index_type" FMRECALL_INDEX__KIND=milvus FMRECALL_INDEX__MILVUS__METRIC=l2 \
        FMRECALL_INDEX__MILVUS__INDEX_TYPE="$index_type" \
        FMRECALL_INDEX__MILVUS__COLLECTION_PREFIX="fmrecall_$index_type" \
        FMRECALL_INDEX__MILVUS__ALIAS="fmrecall_serving_$index_type"
    echo "milvus_$index_type server ready after $(python3 -c "import time; print(round(time.time() - $t0, 1))") s (collection written, flushed, indexed, loaded and checked)"
    NAMES="$NAMES milvus_$index_type"
done
if [ "${IP:-0}" = 1 ]; then
    serve milvus_ip FMRECALL_INDEX__KIND=milvus FMRECALL_INDEX__MILVUS__METRIC=ip \
        FMRECALL_INDEX__MIN_RECALL=0 FMRECALL_INDEX__MILVUS__ALIAS=fmrecall_serving_ip
    NAMES="$NAMES milvus_ip"
fi
for name in $NAMES; do
    curl -s "http://127.0.0.1:${PORT[$name]}/v1/model" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("%s: version %s, index %s, items %s, search %s, load-time quality %s" % (sys.argv[1], m["version"],
      m["index"]["kind"], m["index"]["items"], json.dumps(m["index"]["params"].get("search_params")),
      json.dumps(m.get("index_quality"))))' "$name"
done | sort -u

# ---- 3. recall through the API ----
USER_IDS=$(curl -s "http://127.0.0.1:${PORT[exact]}/v1/model" | python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["users"])')
python3 - "$RECALL_USERS" "$USER_IDS" "$USER_BASE" "${PORT[exact]}" "${EFS:-}" $(for n in $NAMES; do echo "$n=${PORT[$n]}"; done) <<'EOF'
import json, os, sys, time, urllib.request
n_users, users, base, exact_port = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
efs = [int(e) for e in sys.argv[5].split()]
servers = {}
for a in sys.argv[6:]:
    name, port = a.split("=")
    servers[name] = (port, None)
    if name.startswith("milvus"):
        for ef in efs:
            servers["%s ef=%d" % (name, ef)] = (port, ef)
def recall(port, user, k, ef=None):
    body = {"user_id": str(user), "k": k}
    if ef is not None:
        body["ef"] = ef
    req = urllib.request.Request("http://127.0.0.1:%s/v1/recall" % port,
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    return [i["item_id"] for i in json.load(urllib.request.urlopen(req, timeout=30))["items"]]
# The load-time check (and IVF's nprobe tuning) uses the users at indexes 0, s, 2s, ... (s = users
# // check_queries): report on the others, so nothing the load tuned on is reported. Synthetic
# user ids are their indexes; MovieLens's index order is their first rating, so there the two
# samples may share users.
check = int(os.environ.get("FMRECALL_INDEX__CHECK_QUERIES", "200"))
checked = set(range(0, users, max(1, users // check))[:check])
others = [i for i in range(users) if i not in checked]
sample = [base + i for i in others[::max(1, len(others) // n_users)]][:n_users]
print("reported users: %d, none of the %d the load checked%s" % (len(sample), len(checked),
      "" if base == 0 else " (by index; MovieLens ids may overlap)"))
print()
truths = {k: [set(recall(exact_port, u, k)) for u in sample] for k in (10, 100)}
print("| index | recall@10 | recall@100 | users | mean ms per recall (sequential) |")
print("|---|---|---|---|---|")
for name, (port, ef) in servers.items():
    row = []
    started, calls = time.time(), 0
    for k in (10, 100):
        found = total = 0
        for u, truth in zip(sample, truths[k]):
            got = recall(port, u, k, ef)
            calls += 1
            found += len(truth.intersection(got)); total += len(truth)
        row.append(found / max(total, 1))
    ms = (time.time() - started) * 1000 / max(calls, 1)
    print("| %s | %.4f | %.4f | %d | %.1f |" % (name, row[0], row[1], len(sample), ms), flush=True)
EOF

# ---- 4. throughput and memory ----
echo
echo "| index | k | connections | requests/s | p50 ms | p99 ms | non-2xx + socket errors | load1 before/after |"
echo "|---|---|---|---|---|---|---|---|"
WRK_NAMES=$NAMES
[ "$WRK" = 1 ] || WRK_NAMES=""
for name in $WRK_NAMES; do
    for k in 10 100; do
        l0=$(cut -d' ' -f1 /proc/loadavg)
        out="$TMP/wrk.$name.$k"
        wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 5s -s "$HERE/wrk/recall.lua" \
            "http://127.0.0.1:${PORT[$name]}/v1/recall" -- "$k" "$USER_IDS" 0 >"$out" 2>&1
        python3 - "$name" "$k" "$CONNS" "$l0" "$(cut -d' ' -f1 /proc/loadavg)" "$out" <<'EOF'
import json, sys
name, k, c, l0, l1, path = sys.argv[1:]
j = json.loads([l for l in open(path) if l.startswith("WRKJSON ")][0][8:])
errs = j["status"] + j["connect"] + j["read"] + j["write"] + j["timeout"]
print("| %s | %s | %s | %.0f | %.2f | %.2f | %d | %s / %s |" % (name, k, c, j["rps"], j["p50_ms"], j["p99_ms"], errs, l0, l1))
EOF
    done
done
echo
MILVUS_BIN_PID=$(pgrep -g "$MILVUS_PID" -f 'milvus run standalone' | head -1 || true)
echo "resident memory: Milvus standalone $( [ -n "$MILVUS_BIN_PID" ] && rss_mib "$MILVUS_BIN_PID" ) MiB"
for name in exact $NAMES; do echo "  fmrecall serve ($name): $(rss_mib "${SERVER_PID[$name]}") MiB"; done
echo "uptime at end: $(uptime)"
