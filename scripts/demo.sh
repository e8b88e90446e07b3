#!/usr/bin/env bash
# Zero-setup demo on the embedded defaults: SQLite + the local scheduler.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q .
exec .venv/bin/mqi-communicator demo "$@"
