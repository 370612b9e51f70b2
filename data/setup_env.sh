#!/usr/bin/env bash
# Creates .venv and installs the project (torch==2.13.0 CPU build from the local wheel dir when
# present; never unpinned). Idempotent: re-running only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev,ray]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
