#!/bin/bash
# Instructions in the trajectory page handler (callgrind), 10 pages of the demo month's
# heaviest plate, as BENCHMARKS.md "Segment format 4" measured them.
#   benches/format4/page_instructions.sh BIN STORE PORT OUT
# BIN: a `sightline` binary; STORE: a store made by `BIN demo --data STORE` (stopped);
# OUT: the callgrind output file; FIELDS (env, optional): the `fields` asked for
# (e.g. ts,device). Prints the top of the inclusive profile.
set -euo pipefail
BIN=$1; STORE=$2; PORT=$3; OUT=$4
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  --toggle-collect='sightline_server::queries::trajectory::page*' \
  "$BIN" serve --no-auth --data "$STORE" --listen "127.0.0.1:$PORT" > "$OUT.log" 2>&1 &
VG=$!
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 1; done
FROM=$(date -u -d '-35 days' +%Y-%m-%dT00:00:00.000%%2B08:00)
TO=$(date -u -d '+1 day' +%Y-%m-%dT00:00:00.000%%2B08:00)
U="http://127.0.0.1:$PORT/v1/trajectory?kind=vehicle&subject=%E8%8B%8FED47462&limit=10000&from=$FROM&to=$TO${FIELDS:+&fields=$FIELDS}"
for _ in $(seq 1 10); do curl -s -o /dev/null -w '%{http_code} %{size_download}\n' "$U"; done
kill -TERM $VG; wait $VG || true
callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null \
  | grep -E 'PROGRAM TOTALS|trajectory::page |AttrsAt::visit |write_json |write_fields |verify_rows ' | head -12
