#!/bin/bash
# Instructions in the trajectory page handler (callgrind, toggled on it): the 5 heavy
# vehicles of a `compare.py` run's store (`sightline gen --communities 10 --days 30
# --source-ids`) asked once (segments opened and verified), counters zeroed, asked twice
# more (10 pages, 6,032 sightings); prints the inclusive lines of the main functions.
# (Pages written in parts count only the query's thread here: see server_instructions.sh.)
#   benches/pages/page_instructions.sh BIN STORE_COPY PORT OUT [FIELDS]
BIN=$1; STORE=$2; PORT=$3; OUT=$4; FIELDS=${5:-}
valgrind --tool=callgrind --callgrind-out-file="$OUT" \
  --toggle-collect='sightline_server::queries::trajectory::page*' \
  "$BIN" serve --no-auth --data "$STORE" --listen "127.0.0.1:$PORT" > "$OUT.log" 2>&1 &
VG=$!
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/health" && break; sleep 1; done
run() { for p in %E8%8B%8FE1XFTU %E8%8B%8FEVVMBY %E8%8B%8FE7SWZK %E8%8B%8FEFWJKD %E8%8B%8FEF72863; do
U="http://127.0.0.1:$PORT/v1/trajectory?kind=vehicle&subject=$p&from=1630425600000&to=1633017600000&limit=10000${FIELDS:+&fields=$FIELDS}"
curl -s -o /dev/null "$U"; done; }
run; callgrind_control -z $VG >/dev/null; run; run
kill -TERM $VG; wait $VG || true
callgrind_annotate --inclusive=yes "$OUT" 2>/dev/null | grep -E "PROGRAM TOTALS|trajectory::trajectory |write_fields |visit_row_out |walk_row |put_str |Rfc3339|posting_rows |subject_runs |memcpy" | head -30
