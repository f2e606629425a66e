#!/usr/bin/env bash
# Soak: the real server under ingest and queries for a long time, at half the ingest
# rate it reaches flat out under the same query load. Records the server's memory and
# the load generator's per-second progress, then summarises by window: ingest rate,
# query rate, errors, server RSS. Not run in CI.
#
#   benches/soak/soak.sh [--minutes 30] [--work /tmp/sightline-soak] [--share 0.5]
#                        [--rate EVENTS_PER_SECOND] [--cool 3]
#
# Steps: build; start `sightline serve` on 127.0.0.1 (ephemeral port) over WORK/data;
# calibrate 20 s flat out (binary ingest + trajectory and search at 100 queries/s
# each); soak at SHARE of that ingest rate (or at --rate, without calibrating) with
# the same queries; then COOL minutes with no load, while maintenance seals what is
# left in memory (the heap should fall back to where it started); summarise
# (benches/soak/summary.py). Needs disk for about minutes × 60 × rate × 25 bytes.
#
# The generator sends the same synthetic week again and again, so every day's data
# grows all run long (thirty-fold in thirty minutes). Co-occurrence over the whole
# week slows in proportion, past the query time limit, so it is left out here; its
# cost against data size is in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=30
WORK=/tmp/sightline-soak
SHARE=0.5
RATE=
COOL=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) MINUTES="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --share) SHARE="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --cool) COOL="$2"; shift 2 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build --release --bin sightline --bin http-load
rm -rf "$WORK" && mkdir -p "$WORK"
target/release/sightline serve --no-auth --listen 127.0.0.1:0 --data "$WORK/data" \
  > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; kill $SAMPLER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  ADDR=$(sed -n 's|^listening on http://||p' "$WORK/server.out")
  [[ -n "$ADDR" ]] && break
  sleep 0.1
done
echo "server pid $SERVER on $ADDR"
# Server memory (all resident, and anonymous: the heap, without the mapped segment
# files the kernel can drop), data size, events in memory parts and the last
# maintenance pass's duration (from /metrics) every 10 s.
(
  echo "seconds,epoch,rss_kib,rss_anon_kib,data_kib,memory_events,maintenance_s"
  t0=$(date +%s)
  while kill -0 "$SERVER" 2>/dev/null; do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
    anon=$(awk '/RssAnon/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
    data=$(du -sk "$WORK/data" 2>/dev/null | cut -f1)
    metrics=$(curl -s --max-time 5 "http://$ADDR/metrics" || true)
    mem_events=$(awk '$1 == "sightline_memory_events" {print $2}' <<< "$metrics")
    maint=$(awk '$1 == "sightline_maintenance_last_duration_seconds" {print $2}' <<< "$metrics")
    now=$(date +%s)
    echo "$(( now - t0 )),$now,$rss,$anon,$data,${mem_events:-},${maint:-}"
    sleep 10
  done
) > "$WORK/memory.csv" &
SAMPLER=$!
LOAD=(target/release/http-load --addr "$ADDR" --days 7 --server-pid "$SERVER")
MIX=(mix --binary --batch 5000 --ingest-connections 2 --query-connections 2 --query-rate 100
  --queries trajectory,search)
if [[ -z "$RATE" ]]; then
  "${LOAD[@]}" --seconds 20 --json "$WORK/calibrate.json" "${MIX[@]}" 2> "$WORK/calibrate.progress"
  MAX=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(int(r['operations'][0]['items_per_second']))" "$WORK/calibrate.json")
  RATE=$(python3 -c "print(int($MAX * $SHARE))")
  echo "flat out: $MAX events/s under query load; soaking at $RATE events/s for $MINUTES min"
else
  MAX=0
  echo "soaking at $RATE events/s for $MINUTES min"
fi
date +%s > "$WORK/soak.start"
"${LOAD[@]}" --seconds $((MINUTES * 60)) --json "$WORK/soak.json" "${MIX[@]}" \
  --ingest-rate "$RATE" 2> "$WORK/soak.progress"
echo "load done; $COOL min with no load"
sleep $((COOL * 60))
python3 benches/soak/summary.py "$WORK" "$MAX" "$RATE"
