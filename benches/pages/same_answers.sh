#!/bin/bash
# Whole pages, `fields=ts,device` pages, 300-event pages and NDJSON streams of the 5 heavy
# vehicles of a `compare.py` run's store (`sightline gen --communities 10 --days 30
# --source-ids`) and of LIGHT (more subjects, URL-encoded, space-separated; optional),
# into OUTDIR; run it for two binaries, each on its own copy of the store, and `cmp` the files.
#   LIGHT="..." benches/pages/same_answers.sh BIN STORE PORT OUTDIR
set -euo pipefail
BIN=$1; STORE=$2; PORT=$3; OUT=$4
mkdir -p "$OUT"
"$BIN" serve --no-auth --data "$STORE" --listen "127.0.0.1:$PORT" > "$OUT/serve.log" 2>&1 &
PID=$!
for _ in $(seq 1 60); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 1; done
B="http://127.0.0.1:$PORT/v1/trajectory?kind=vehicle&from=1630425600000&to=1633017600000"
for p in %E8%8B%8FE1XFTU %E8%8B%8FEVVMBY %E8%8B%8FE7SWZK %E8%8B%8FEFWJKD %E8%8B%8FEF72863 ${LIGHT:-}; do
  curl -s "$B&subject=$p&limit=10000" -o "$OUT/$p.json"
  curl -s "$B&subject=$p&limit=10000&fields=ts,device" -o "$OUT/$p.pairs.json"
  curl -s "$B&subject=$p&limit=300" -o "$OUT/$p.300.json"
  curl -s "$B&subject=$p" -H 'Accept: application/x-ndjson' -o "$OUT/$p.ndjson"
done
kill -TERM $PID; wait $PID || true
