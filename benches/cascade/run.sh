#!/usr/bin/env bash
# Cascade benchmarks (BENCHMARKS.md, "Cascade (issue 18)"): each run starts `sightline
# serve` over a fresh store on 127.0.0.1, runs one `cascade-bench` and removes the store.
#
#   benches/cascade/run.sh KIND [KIND …]
#   for r in 1 2 3; do benches/cascade/run.sh sub10k upstream; done
#
# KIND:
#   sub10k    ack → delivery latency: a gat1400 subscription (pictures by reference),
#             vehicles uploaded at 10,000 objects/s for 30 s, 100 a request, each with
#             a 2,000-byte picture
#   sub5k     the same at 5,000 objects/s
#   upstream  upstream push: 300,000 vehicles (2,000-byte pictures) uploaded first, then
#             an upstream from event 0; the rate the backlog reaches the receiver
#   upstream64  the same with the pictures pushed as base64 `Data`
#
# Needs the release binaries: cargo build --release --bin sightline --bin cascade-bench
# Environment: DATA (default /tmp/sightline-cascade), PORT (default 18320), OUT
# (default /tmp/sightline-cascade-results).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-/tmp/sightline-cascade}
PORT=${PORT:-18320}
OUT=${OUT:-/tmp/sightline-cascade-results}
B=target/release
mkdir -p "$OUT"
for kind in "$@"; do
  case $kind in
    sub10k)   args="subscription --rate 10000 --seconds 30" ;;
    sub5k)    args="subscription --rate 5000 --seconds 30" ;;
    upstream) args="--batch 1000 upstream --objects 300000" ;;
    upstream64) args="--batch 1000 upstream --objects 300000 --image-data base64" ;;
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
    $B/cascade-bench --addr "127.0.0.1:$PORT" $args 2>&1
    echo "loadavg after $(cut -d' ' -f1-3 /proc/loadavg)"
  } | tee "$run.txt"
  kill "$server"
  wait "$server" 2>/dev/null || true
  rm -rf "$DATA"
done
