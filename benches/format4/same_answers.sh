#!/bin/bash
# The JSON page and the NDJSON stream of three vehicles' trajectories from one binary
# on its store, into OUTDIR; run it for two binaries and `cmp` the files.
#   benches/format4/same_answers.sh BIN STORE PORT OUTDIR
set -euo pipefail
BIN=$1; STORE=$2; PORT=$3; OUT=$4
mkdir -p "$OUT"
"$BIN" serve --no-auth --data "$STORE" --listen "127.0.0.1:$PORT" > "$OUT/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 1; done
FROM=$(date -u -d '-35 days' +%Y-%m-%dT00:00:00.000%%2B08:00)
TO=$(date -u -d '+1 day' +%Y-%m-%dT00:00:00.000%%2B08:00)
for p in %E8%8B%8FED47462 %E8%8B%8FE4UP04 %E8%8B%8FED00000; do
  U="http://127.0.0.1:$PORT/v1/trajectory?kind=vehicle&subject=$p&limit=10000&from=$FROM&to=$TO"
  curl -s "$U" -o "$OUT/$p.json"
  curl -s "$U" -H 'Accept: application/x-ndjson' -o "$OUT/$p.ndjson"
done
kill -TERM $PID; wait $PID || true
ls -l "$OUT"
