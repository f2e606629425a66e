#!/bin/bash
# Instructions of the whole server (every thread, callgrind) for 10 whole trajectory pages:
# the 5 heavy vehicles of a `compare.py` run's store (`sightline gen --communities 10
# --days 30 --source-ids`) asked once (segments opened and verified), counters zeroed,
# asked twice more, counters dumped before the server stops. Prints PROGRAM TOTALS.
#   benches/pages/server_instructions.sh BIN STORE PORT OUT
# STORE is changed by the run: give it a copy.
set -euo pipefail
BIN=$1; STORE=$2; PORT=$3; OUT=$4
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  "$BIN" serve --no-auth --data "$STORE" --listen "127.0.0.1:$PORT" > "$OUT.log" 2>&1 &
VG=$!
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 1; done
run() { for p in %E8%8B%8FE1XFTU %E8%8B%8FEVVMBY %E8%8B%8FE7SWZK %E8%8B%8FEFWJKD %E8%8B%8FEF72863; do
curl -s -o /dev/null "http://127.0.0.1:$PORT/v1/trajectory?kind=vehicle&subject=$p&from=1630425600000&to=1633017600000&limit=10000"; done; }
run; sleep 1; callgrind_control -z $VG >/dev/null; run; run; callgrind_control -d $VG > /dev/null; sleep 1
kill -TERM $VG; wait $VG || true
for f in "$OUT".*; do case $f in *.log) ;; *) echo "$f $(callgrind_annotate "$f" 2>/dev/null | grep 'PROGRAM TOTALS')";; esac; done
