#!/usr/bin/env bash
# End-to-end benchmark: generate a city, load it into Sightline (over HTTP, durable
# acknowledgements), DuckDB and ClickHouse (chDB), ask all three the same questions,
# check the answers agree, and write a results table. Not run in CI.
#
#   benches/compare/run.sh [--communities 10] [--days 30] [--work /tmp/sightline-compare]
#
# Installs duckdb and chdb from PyPI into WORK/venv on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=/tmp/sightline-compare
for ((i = 1; i <= $#; i++)); do
  if [[ "${!i}" == "--work" ]]; then j=$((i + 1)); WORK="${!j}"; fi
done
mkdir -p "$WORK"
if [[ ! -x "$WORK/venv/bin/python" ]]; then
  python3 -m venv "$WORK/venv"
  "$WORK/venv/bin/pip" install --quiet duckdb chdb
fi
cargo build --release --bin sightline --bin http-load
"$WORK/venv/bin/python" -c 'import duckdb, chdb; print("duckdb", duckdb.__version__, "chdb", chdb.__version__)'
exec "$WORK/venv/bin/python" benches/compare/compare.py "$@"
