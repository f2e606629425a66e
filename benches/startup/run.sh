#!/usr/bin/env bash
# Start-up benchmark (issue 21): time from `sightline serve` starting on an existing
# store to its first trajectory answered (200), after a clean stop (SIGTERM) and
# after SIGKILL (with events acknowledged but unsealed: WAL replay), for a binary.
#
#   benches/startup/run.sh BINARY STORE_DIR PLATE [ROUNDS]
#
# STORE_DIR is used as is (build one with `startup-city`; copy it first if the binary
# must not change it). Prints one line per measurement: case, round, seconds.
set -euo pipefail
bin=$1; data=$2; plate=$3; rounds=${4:-3}
# `serve` would create an empty store: refuse a directory that is not a store.
[ -f "$data/dict.log" ] || { echo "$data is not a store" >&2; exit 2; }
port=$((18400 + RANDOM % 500))
pidfile=$(mktemp)
base="http://127.0.0.1:$port"
enc=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$plate")
url="$base/v1/trajectory?kind=vehicle&subject=$enc&from=2021-09-01T00:00:00%2B08:00&to=2021-12-01T00:00:00%2B08:00&limit=10"

# Starts the server and prints the seconds until the first trajectory answered 200.
start_and_time() {
    local t0 t1
    t0=$(date +%s.%N)
    "$bin" serve --data "$data" --listen "127.0.0.1:$port" --no-auth >/tmp/startup-bench-server.log 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" = 200 ]; do
        kill -0 "$pid" 2>/dev/null || { echo "server died" >&2; cat /tmp/startup-bench-server.log >&2; exit 1; }
        sleep 0.005
    done
    t1=$(date +%s.%N)
    # The answer must hold sightings, not an empty page.
    curl -s "$url" | grep -q '"events":\[{' || { echo "no events in the answer" >&2; exit 1; }
    python3 -c "print(f'{$t1-$t0:.3f}')"
}

# Late events for the first community, so the WAL holds unsealed events at the kill.
ingest() {
    python3 - "$base" <<'PY'
import json, sys, urllib.request
base = sys.argv[1]
lines = []
for i in range(20000):
    lines.append(json.dumps({"ts": 1630454400000 + i * 1000, "community": "3205080001",
        "device": "32050801011210000001", "kind": "vehicle",
        "subject": f"苏E{i % 5000:05d}", "direction": "in"}))
req = urllib.request.Request(base + "/v1/events", data="\n".join(lines).encode(),
    headers={"Content-Type": "application/x-ndjson"})
urllib.request.urlopen(req).read()
PY
}

# Warm-up: a first start builds whatever the binary keeps (and warms the page cache).
stop() { # SIGTERM or SIGKILL, then wait until the process is gone
    local p; p=$(cat "$pidfile"); kill "-$1" "$p"
    while kill -0 "$p" 2>/dev/null; do sleep 0.01; done
}
start_and_time >/dev/null; stop TERM
for r in $(seq 1 "$rounds"); do
    s=$(start_and_time); echo "clean $r $s"
    stop TERM
done
for r in $(seq 1 "$rounds"); do
    start_and_time >/dev/null
    ingest
    stop KILL
    s=$(start_and_time); echo "sigkill $r $s"
    stop TERM
done
