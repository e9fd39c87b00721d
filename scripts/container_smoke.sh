#!/usr/bin/env bash
# Runs what the container runs, outside Docker (CI has no Docker engine): the Dockerfile's own
# build command, then its ENTRYPOINT + CMD with its ENV (read from the Dockerfile itself), then
# its HEALTHCHECK command; a recall request; and a clean exit on SIGTERM. Paths under
# /var/lib/fmrecall and /models move to a temporary folder, and the port to a free one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build=$(grep -E '^RUN cargo build --release --locked$' Dockerfile | tail -1 | sed 's/^RUN //')
[ -n "$build" ] || { echo "no 'RUN cargo build --release --locked' in Dockerfile" >&2; exit 1; }
echo "== $build"
$build

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# ENV lines of the runtime stage, with the container's paths and port remapped.
envs=$(python3 - "$tmp" "$port" <<'PY'
import re, shlex, sys
tmp, port = sys.argv[1], sys.argv[2]
text = open("Dockerfile").read().split("FROM debian")[-1]
block = re.search(r"^ENV (.*?)(?<!\\)$", text, re.S | re.M).group(1).replace("\\\n", " ")
for pair in shlex.split(block):
    key, value = pair.split("=", 1)
    value = value.replace("/var/lib/fmrecall", tmp).replace("/models", tmp + "/models").replace(":8080", ":" + port)
    print(f"{key}={value}")
PY
)
entry=$(python3 -c 'import json,re; t=open("Dockerfile").read(); print(" ".join(json.loads(re.search(r"^ENTRYPOINT (.*)$", t, re.M).group(1)) + json.loads(re.search(r"^CMD (.*)$", t, re.M).group(1))))')
health=$(python3 -c 'import json,re; t=open("Dockerfile").read(); print(" ".join(json.loads(re.search(r"CMD (\[.*\])$", t.split("HEALTHCHECK")[1].splitlines()[0]).group(1))))')
echo "== env:"; echo "$envs" | sed 's/^/   /'
echo "== entrypoint: $entry; healthcheck: $health"

cd "$tmp"
export PATH="$root/target/release:$PATH"
# shellcheck disable=SC2086
env $envs $entry > "$tmp/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
ok=""
for _ in $(seq 1 240); do
  # shellcheck disable=SC2086
  if env $envs $health 2>/dev/null; then ok=1; break; fi
  kill -0 $pid 2>/dev/null || { echo "server exited:"; cat "$tmp/serve.log"; exit 1; }
  sleep 0.5
done
[ -n "$ok" ] || { echo "healthcheck never passed"; tail -20 "$tmp/serve.log"; exit 1; }
python3 - "$port" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
for _ in range(240):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            if r.status == 200:
                break
    except Exception:
        time.sleep(0.5)
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/recall", data=b'{"user_id": "1", "k": 3}',
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=10) as r:
    body = json.load(r)
assert len(body["items"]) == 3, body
print("== recall answered:", [i["item_id"] for i in body["items"]], "model", body["model_version"])
PY
kill -TERM $pid
wait $pid && echo "== clean exit on SIGTERM" || { echo "exit status $? on SIGTERM"; tail -5 "$tmp/serve.log"; exit 1; }
ls "$tmp/data/fmrecall.db" > /dev/null && echo "== state written under the volume path"
