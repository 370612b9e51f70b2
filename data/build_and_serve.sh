#!/usr/bin/env bash
# README's first command: set up, fetch the offline assets, build the default atlas, start the app.
# A finished atlas is reused (stages are recorded); pass --rebuild to build it afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash data/setup_env.sh
if [ "${1:-}" = "--rebuild" ] || [ ! -f data/atlases/default/atlas.duckdb ]; then
  args=()
  [ "${1:-}" = "--rebuild" ] && args=(--overwrite corpus)
  .venv/bin/sae-atlas build "${args[@]}"
fi
exec .venv/bin/sae-atlas app --port "${PORT:-8501}"
