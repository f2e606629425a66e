#!/usr/bin/env bash
# Picture benchmarks (BENCHMARKS.md, "Pictures (issue 17)"): GA/T 1400 vehicle uploads
# with and without a 200 KB picture each, bytes of the picture packs against bytes sent,
# and `GET /v1/images/{id}` latency while uploads run. Each run starts `sightline serve`
# over a fresh store on 127.0.0.1, runs one `http-load gat1400` and removes the store
# (a run with pictures writes up to 3 GB). Not run in CI.
#
#   benches/pictures/run.sh KIND [KIND …]      # run the kinds in turn, once each
#   for r in 1 2 3; do benches/pictures/run.sh pics plain reads paced; done
#
# KIND:
#   pics     15,000 objects, one 200,000-byte picture each, 100 a request, flat out
#   pics10   the same, 10 a request
#   plain    the whole month (256,166 objects) without pictures, 1,000 a request
#   reads    as pics, with picture reads (2 connections, 100/s asked)
#   paced    9,000 objects paced at 300/s (100 a request), with the same reads
#   paced10  the same, 10 a request
#   light    500 objects paced at 20/s (10 a request), with the same reads
#   trickle  60 objects paced at 2/s (10 a request), with the same reads
#
# Needs the release binaries and the city's GA/T 1400 files:
#   cargo build --release --bin sightline --bin http-load
#   target/release/sightline gen --out /tmp/g14 --communities 10 --days 30 --format gat1400
# Environment: CITY (default /tmp/g14/gat1400), DATA (default /tmp/sightline-pictures),
# PORT (default 18313), OUT (default /tmp/sightline-pictures-results: the load
# generator's output, its JSON report and the store's stats per run).
set -euo pipefail
cd "$(dirname "$0")/../.."
CITY=${CITY:-/tmp/g14/gat1400}
DATA=${DATA:-/tmp/sightline-pictures}
PORT=${PORT:-18313}
OUT=${OUT:-/tmp/sightline-pictures-results}
B=target/release
mkdir -p "$OUT"
reads="--image-connections 2 --image-rate 100"
for kind in "$@"; do
  case $kind in
    pics)    args="--batch 100 --picture-bytes 200000 --objects 15000" ;;
    pics10)  args="--batch 10 --picture-bytes 200000 --objects 15000" ;;
    plain)   args="--batch 1000" ;;
    reads)   args="--batch 100 --picture-bytes 200000 --objects 15000 $reads" ;;
    paced)   args="--batch 100 --picture-bytes 200000 --objects 9000 --rate 300 $reads" ;;
    paced10) args="--batch 10 --picture-bytes 200000 --objects 9000 --rate 300 $reads" ;;
    light)   args="--batch 10 --picture-bytes 200000 --objects 500 --rate 20 $reads" ;;
    trickle) args="--batch 10 --picture-bytes 200000 --objects 60 --rate 2 $reads" ;;
    *) echo "run.sh: unknown kind $kind" >&2; exit 2 ;;
  esac
  run="$OUT/$kind-$(date +%H%M%S)"
  rm -rf "$DATA" && mkdir -p "$DATA"
  $B/sightline serve --no-auth --data "$DATA" --listen "127.0.0.1:$PORT" > "$run.serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$PORT/health" && break
    sleep 0.1
  done
  {
    echo "== $kind: loadavg before $(cut -d' ' -f1-3 /proc/loadavg)"
    # shellcheck disable=SC2086
    $B/http-load --addr "127.0.0.1:$PORT" --seconds 60 --server-pid $server \
      --json "$run.json" gat1400 --from "$CITY" $args 2>&1 | grep -v '^ *[0-9]* s |'
    echo "loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"
    if [[ -d "$DATA/pictures" ]]; then
      echo "pictures/: $(find "$DATA/pictures" -name '*.pack' -printf '%s\n' \
        | awk '{s += $1} END {printf "%d", s}') bytes in packs (apparent), \
$(du -s --block-size=1 "$DATA/pictures" | cut -f1) allocated (du), \
$(find "$DATA/pictures" -name '*.pack' | wc -l) packs"
    fi
  } | tee "$run.txt"
  curl -s "http://127.0.0.1:$PORT/v1/admin/stats" > "$run.stats.json" || true
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -rf "$DATA"
done
