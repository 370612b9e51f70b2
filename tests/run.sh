#!/usr/bin/env bash
# README's second command (and .ci/run): lint, type-check and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash data/setup_env.sh
if [ ! -x /usr/bin/chromium ]; then  # the browser tests drive Debian's Chromium
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
