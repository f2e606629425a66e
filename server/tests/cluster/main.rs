//! The cluster on real engines (feature `cluster`): three NATS JetStream nodes,
//! SeaweedFS's S3 gateway and PostgreSQL on 127.0.0.1 (`sightline_testkit::cluster`),
//! `sightline cluster ingest` and `sightline cluster index` as child processes.
//!
//! Every test checks the same thing at its end: each event acknowledged by an ingest
//! node (a 200 answer) is present exactly once in what is committed — every partition
//! restored from the catalog and object storage into a fresh store, events compared by
//! source id with what was acknowledged.
//!
//! The query role's test (`query_nodes_answer_as_a_single_node_…`) compares the
//! query nodes' answers with a single-node `sightline serve` fed the same events:
//! answered from the query nodes' read replicas (the indexers stopped), while a query
//! node is killed mid-query, and after an indexer is killed. The keys' test
//! (`keys_from_the_cluster_catalog_…`) does the same with keys scoped to communities
//! on both, and checks the query node's audit log.
//!
//! The GA/T 1400 gateway's test (`gat1400.rs`) has cameras register on one ingest
//! node and upload pictures to another, and compares a query node with `serve`.
//!
//! `cargo test -p sightline-server --features cluster --test cluster`

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sightline_cluster::meta::Meta;
use sightline_cluster::objects::Objects;
use sightline_cluster::{janitor, log, restore, ClusterConfig};
use sightline_storage::StoreConfig;
use sightline_testkit::cluster::{NatsCluster, Postgres, Seaweed};
use sightline_testkit::{call, wait_until};

mod cache;
mod console;
mod fanout;
mod feed;
mod gat1400;
mod limits;
mod pool;
mod subs;
mod takeover;
mod tls;
mod upstreams;
mod watch;

/// The tests share two cores: one cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: u32 = 4;
/// Long enough for a debug build's commits under load; short for the test's waits.
const LEASE_MS: u64 = 3_000;
/// The cluster's shared secret for partition requests (every test's nodes send it).
const PARTITION_TOKEN: &str = "the test cluster's partition secret, 32+ chars";
const COMMITTED: Duration = Duration::from_secs(120);

struct Env {
    nats: NatsCluster,
    s3: Seaweed,
    pg: Postgres,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    /// Source id → times acknowledged (a re-send acknowledged again counts once).
    acked: BTreeSet<String>,
    next: usize,
    /// Lines added to the `[query]` table of the nodes spawned from now on.
    query_extra: String,
    /// Lines added to every node's `cluster.toml` before its first table.
    top_extra: String,
    /// Lines added to the `[index]` table of the nodes spawned from now on.
    index_extra: String,
    /// The `[gat1400]` table of the nodes spawned from now on (by default loopback
    /// receivers allowed: the tests' receivers are on 127.0.0.1).
    gat1400: String,
}

/// A `sightline cluster …` child process, killed when dropped.
struct Node {
    child: Child,
    name: String,
    stderr: PathBuf,
}

impl Node {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), sig) };
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
    /// Whether the process ended within `within`.
    fn exited_within(&mut self, within: Duration) -> bool {
        let child = &mut self.child;
        wait_until(within, || child.try_wait().ok().flatten().is_some())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::env::var_os("SIGHTLINE_TEST_LOGS").is_some() {
            eprintln!("--- {} ---\n{}", self.name, self.log());
        }
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    fn start() -> Env {
        let started = Instant::now();
        let env = Env::start_with(NatsCluster::start(), Seaweed::start(), Postgres::start());
        eprintln!("engines up in {:?}", started.elapsed());
        env
    }

    /// An environment over engines started already (e.g. serving TLS).
    fn start_with(nats: NatsCluster, s3: Seaweed, pg: Postgres) -> Env {
        Env {
            nats,
            s3,
            pg,
            dir: tempfile::tempdir().unwrap(),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            acked: BTreeSet::new(),
            next: 0,
            query_extra: String::new(),
            top_extra: String::new(),
            index_extra: String::new(),
            gat1400: "receive_allow = [\"127.0.0.1/32\"]".into(),
        }
    }

    /// `cluster.toml` for a node called `name`.
    fn config_file(&self, name: &str) -> PathBuf {
        self.config_file_with(name, "")
    }

    /// `cluster.toml` for `name`, with `ingest` lines added to its `[ingest]` table.
    fn config_file_with(&self, name: &str, ingest: &str) -> PathBuf {
        let nats: Vec<String> = self.nats.urls().iter().map(|u| format!("{u:?}")).collect();
        let text = format!(
            r#"nats = [{nats}]
postgres = "{pg}"
partitions = {PARTITIONS}
partition_token = "{PARTITION_TOKEN}"
{top_extra}

[s3]
endpoint = "{endpoint}"
bucket = "{bucket}"
access_key = "{ak}"
secret_key = "{sk}"

[ingest]
listen = "127.0.0.1:0"
{ingest}

[query]
listen = "127.0.0.1:0"
timeout_ms = 90000
retry_ms = 60000
data = "{replicas}"
{query_extra}

[index]
data = "{data}"
owner = "{name}"
lease_ms = {LEASE_MS}
renew_ms = 500
commit_interval_ms = 1000
janitor_age_s = 3600
{index_extra}

[gat1400]
{gat1400}
"#,
            nats = nats.join(", "),
            pg = self.pg.conninfo(),
            endpoint = self.s3.endpoint(),
            bucket = self.s3.bucket,
            ak = self.s3.access_key,
            sk = self.s3.secret_key,
            data = self.dir.path().join(format!("data-{name}")).display(),
            replicas = self.dir.path().join(format!("replicas-{name}")).display(),
            query_extra = self.query_extra,
            top_extra = self.top_extra,
            index_extra = self.index_extra,
            gat1400 = self.gat1400,
        );
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn config(&self) -> ClusterConfig {
        ClusterConfig::from_file(&self.config_file("test")).unwrap()
    }

    fn spawn(&self, role: &str, name: &str, envs: &[(&str, &str)]) -> (Node, Option<SocketAddr>) {
        self.spawn_with(role, name, envs, "")
    }

    fn spawn_with(
        &self,
        role: &str,
        name: &str,
        envs: &[(&str, &str)],
        ingest: &str,
    ) -> (Node, Option<SocketAddr>) {
        let stderr = self.dir.path().join(format!("{name}.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sightline"));
        cmd.args(["cluster", role, "--config"])
            .arg(self.config_file_with(name, ingest))
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let node = Node {
            child,
            name: name.into(),
            stderr,
        };
        if role == "index" {
            assert!(
                wait_until(Duration::from_secs(60), || node.log().contains("started")),
                "{name} did not start: {}",
                node.log()
            );
            return (node, None);
        }
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        while out.read_line(&mut line).unwrap_or(0) > 0 {
            let announced = line.trim().split_once("listening on ").map(|(_, a)| a);
            if let Some(addr) = announced.and_then(|a| a.split_once("://")).map(|(_, a)| a) {
                return (node, Some(addr.parse().unwrap()));
            }
            line.clear();
        }
        panic!("{name} did not start: {}", node.log());
    }

    fn ingest(&self, name: &str) -> (Node, SocketAddr) {
        let (node, addr) = self.spawn("ingest", name, &[]);
        (node, addr.unwrap())
    }

    fn indexer(&self, name: &str, envs: &[(&str, &str)]) -> Node {
        self.spawn("index", name, envs).0
    }

    fn query_node(&self, name: &str) -> (Node, SocketAddr) {
        let (node, addr) = self.spawn("query", name, &[]);
        (node, addr.unwrap())
    }

    /// `n` new events (unique source ids, ten communities), as NDJSON.
    fn batch(&mut self, n: usize) -> (String, Vec<String>) {
        self.batch_on(n, 0)
    }

    /// [`Env::batch`] on day `day` after the first (2025-12-01, UTC).
    fn batch_on(&mut self, n: usize, day: i64) -> (String, Vec<String>) {
        let mut body = String::new();
        let mut ids = Vec::new();
        for _ in 0..n {
            let i = self.next;
            self.next += 1;
            let (line, id) = test_event(i, day);
            body.push_str(&line);
            body.push('\n');
            ids.push(id);
        }
        (body, ids)
    }

    /// Posts `n` new events to `addr` until one answer is 200 (a re-send is
    /// deduplicated); records them as acknowledged.
    fn post(&mut self, addr: SocketAddr, n: usize) {
        self.post_on(addr, n, 0)
    }

    /// [`Env::post`] of events on day `day` after the first ([`Env::batch_on`]).
    fn post_on(&mut self, addr: SocketAddr, n: usize, day: i64) {
        let (body, ids) = self.batch_on(n, day);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = call(
                addr,
                "POST",
                "/v1/events",
                "application/x-ndjson",
                body.as_bytes(),
            );
            if reply.status == 200 {
                let b = &reply.body;
                let answered = b["stored"].as_u64().unwrap() + b["duplicates"].as_u64().unwrap();
                assert_eq!(answered, n as u64, "{b}");
                assert_eq!(b["ids"].as_array().unwrap().len(), n);
                self.acked.extend(ids);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ingest kept failing: {} {}",
                reply.status,
                reply.body
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Posts NDJSON `body` to `addr` until one answer is 200; how many it stored
    /// or found duplicate.
    fn post_body(&self, addr: SocketAddr, body: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let reply = call(
                addr,
                "POST",
                "/v1/events",
                "application/x-ndjson",
                body.as_bytes(),
            );
            if reply.status == 200 {
                let b = &reply.body;
                assert_eq!(b["rejected"], 0, "{b}");
                return b["stored"].as_u64().unwrap() + b["duplicates"].as_u64().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "ingest kept failing: {}",
                reply.body
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the committed segments hold at least `want` events.
    fn wait_committed_events(&self, want: u64) {
        let meta = self.meta();
        let mut have = 0;
        let ok = wait_until(COMMITTED, || {
            have = self.rt.block_on(meta.committed_events()).unwrap_or(0);
            have >= want
        });
        assert!(ok, "committed {have} of {want} events");
    }

    /// Every committed event (all partitions restored), as comparable tuples, sorted.
    fn restored_events(&self) -> Vec<EventKey> {
        let cfg = self.config();
        let objects = Objects::new(&cfg.s3).unwrap();
        let meta = self.meta();
        let root = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        for p in 0..PARTITIONS {
            let dir = root.path().join(format!("p{p}"));
            let (store, _) = self
                .rt
                .block_on(restore::restore_partition(
                    &meta,
                    &objects,
                    p,
                    &dir,
                    StoreConfig::default(),
                ))
                .unwrap();
            all.extend(events_of(&store));
        }
        all.sort();
        all
    }

    fn meta(&self) -> Meta {
        self.rt
            .block_on(Meta::connect(&self.pg.conninfo()))
            .unwrap()
    }

    /// Waits until the committed segments hold at least every acknowledged event.
    fn wait_committed(&self) {
        let meta = self.meta();
        let want = self.acked.len() as u64;
        let mut have = 0;
        let ok = wait_until(COMMITTED, || {
            have = self.rt.block_on(meta.committed_events()).unwrap_or(0);
            have >= want
        });
        assert!(ok, "committed {have} of {want} acknowledged events");
    }

    /// Every partition restored from the catalog and S3: source id → copies.
    fn restored(&self) -> BTreeMap<String, usize> {
        let cfg = self.config();
        let objects = Objects::new(&cfg.s3).unwrap();
        let meta = self.meta();
        let root = tempfile::tempdir().unwrap();
        let mut found = BTreeMap::new();
        for p in 0..PARTITIONS {
            let dir = root.path().join(format!("p{p}"));
            let (store, _) = self
                .rt
                .block_on(restore::restore_partition(
                    &meta,
                    &objects,
                    p,
                    &dir,
                    StoreConfig::default(),
                ))
                .unwrap();
            for e in store.read_events(i64::MIN, i64::MAX, None).unwrap() {
                let id = e
                    .event
                    .source_id()
                    .expect("every test event has a source id")
                    .to_string();
                *found.entry(id).or_insert(0) += 1;
            }
        }
        found
    }

    /// Every acknowledged event exactly once, nothing else.
    fn assert_exactly_once(&self) {
        self.wait_committed();
        let found = self.restored();
        let twice: Vec<_> = found.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "events committed more than once: {twice:?}"
        );
        let missing: Vec<_> = self
            .acked
            .iter()
            .filter(|id| !found.contains_key(*id))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "acknowledged, not committed ({} in all): {missing:?}",
            self.acked.len() - found.len().min(self.acked.len())
        );
        let extra: Vec<_> = found
            .keys()
            .filter(|id| !self.acked.contains(*id))
            .take(5)
            .collect();
        assert!(extra.is_empty(), "committed, never acknowledged: {extra:?}");
        assert_eq!(found.len(), self.acked.len());
    }

    /// Partitions whose lease `owner` holds now.
    fn owned_by(&self, owner: &str) -> Vec<u32> {
        let meta = self.meta();
        (0..PARTITIONS)
            .filter(|p| {
                let (o, ..) = self.rt.block_on(meta.lease(*p)).unwrap();
                o.as_deref() == Some(owner)
            })
            .collect()
    }
}

/// The `i`-th test event of `Env::batch_on` on day `day` (NDJSON line, source id):
/// the same line every time it is made, so a test can send it again.
fn test_event(i: usize, day: i64) -> (String, String) {
    let id = format!("src-{i:08}");
    let event = serde_json::json!({
        "ts": 1_764_547_200_000i64 + day * 86_400_000 + (i as i64 % 86_400) * 1_000,
        "community": format!("32050800{:02}", i % 10),
        "device": format!("3205080{:1}01121000{:04}", i % 10, i % 13),
        "kind": if i.is_multiple_of(3) { "face" } else { "vehicle" },
        "subject": format!("苏E{:05}", i % 997),
        "direction": if i.is_multiple_of(2) { "in" } else { "out" },
        "attrs": { "source_id": id, "lane": (i % 4) as i64 },
    });
    (event.to_string(), id)
}

/// An event as compared: every field as stored, attributes in their encoding.
type EventKey = (
    i64,
    String,
    String,
    &'static str,
    String,
    &'static str,
    Vec<u8>,
);

fn events_of(store: &sightline_storage::Store) -> Vec<EventKey> {
    store
        .read_events(i64::MIN, i64::MAX, None)
        .unwrap()
        .into_iter()
        .map(|s| {
            let e = s.event;
            (
                e.ts_ms(),
                e.community().to_string(),
                e.device().as_str().to_string(),
                e.kind().as_str(),
                e.subject().to_string(),
                e.direction().as_str(),
                e.attr_bytes().to_vec(),
            )
        })
        .collect()
}

#[test]
fn a_synthetic_city_through_the_cluster_equals_a_single_node_store_fed_the_same_events() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let _x1 = env.indexer("index-1", &[]);
    let _x2 = env.indexer("index-2", &[]);
    let city = sightline_synth::Traffic::new(sightline_synth::TrafficConfig {
        communities: 6,
        days: 2,
        households_per_community: 40,
        visitor_vehicles: 300,
        source_ids: true,
        drivers: true,
        ..Default::default()
    });
    // The oracle: one store fed the same events, as `sightline serve` would be.
    let oracle_dir = tempfile::tempdir().unwrap();
    let oracle = sightline_storage::Store::open(oracle_dir.path(), StoreConfig::default()).unwrap();
    let mut answered = 0;
    let mut sent = 0;
    for (d, day) in city.days().enumerate() {
        let valid: Vec<_> = day
            .iter()
            .map(|e| oracle.validate(e.clone()).unwrap())
            .collect();
        oracle.append(&valid).unwrap();
        for (i, chunk) in day.chunks(700).enumerate() {
            let body: String = chunk
                .iter()
                .map(|e| sightline_synth::to_ndjson(e) + "\n")
                .collect();
            answered += env.post_body(if (d + i).is_multiple_of(2) { a1 } else { a2 }, &body);
            sent += chunk.len() as u64;
        }
    }
    assert_eq!(answered, sent);
    let expected = events_of(&oracle);
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert!(
        expected.len() > 2_000,
        "a city of {} events",
        expected.len()
    );
    env.wait_committed_events(expected.len() as u64);
    let got = env.restored_events();
    assert_eq!(got.len(), expected_sorted.len());
    assert!(
        got == expected_sorted,
        "the cluster's events differ from the single node's"
    );
    // The indexers' partition listeners answer only the cluster's nodes: a request
    // without the shared secret, or with another, is refused before its body is read.
    let owners = env.rt.block_on(env.meta().owners()).unwrap();
    let address: SocketAddr = owners.values().next().unwrap().2.parse().unwrap();
    let body = "x".repeat(64);
    let ctype = sightline_cluster::serving::CONTENT_TYPE;
    let refused = sightline_testkit::post(address, "/v1/partition", ctype, &body);
    assert_eq!(refused.status, 401, "{}", refused.body);
    let wrong = sightline_testkit::send(
        address,
        format!(
            "POST /v1/partition HTTP/1.1\r\nHost: {address}\r\nContent-Type: {ctype}\r\n\
             Authorization: Bearer another secret entirely, 32+ chars\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(
        wrong.status,
        401,
        "{}",
        String::from_utf8_lossy(&wrong.body)
    );
    let health = sightline_testkit::get(address, "/health");
    assert_eq!(health.status, 200, "{}", health.body);
}

#[test]
fn a_catalog_made_before_bundles_takes_their_columns_and_keeps_its_rows() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    // The segments table as the first release made it: one object a segment.
    env.pg.psql(
        "CREATE TABLE segments (partition integer NOT NULL, segment_id bigint NOT NULL,
            community integer NOT NULL, span integer NOT NULL, file text NOT NULL,
            events integer NOT NULL, max_seq bigint NOT NULL, object_key text NOT NULL UNIQUE,
            epoch bigint NOT NULL, PRIMARY KEY (partition, segment_id));
         INSERT INTO segments VALUES (3, 7, 1, 20000, 'segments/20000/1-7.seg', 5, 9,
            'p3/e1/seg/20000/1-7.seg', 1);",
    );
    let mut meta = env.meta();
    assert_eq!(
        env.rt.block_on(meta.create(PARTITIONS)).unwrap(),
        PARTITIONS
    );
    // Twice: the second start finds the columns and changes nothing.
    assert_eq!(
        env.rt.block_on(meta.create(PARTITIONS)).unwrap(),
        PARTITIONS
    );
    let rows = env.rt.block_on(meta.segments(3)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].object_key, "p3/e1/seg/20000/1-7.seg");
    assert_eq!(rows[0].object_range, None, "an old row is its whole object");
    // Two segments in one object are allowed now.
    env.pg.psql(
        "INSERT INTO segments VALUES (3, 8, 1, 20001, 'a', 1, 10, 'p3/e2/bundle/8-9-2-0.segs', 2, 0, 100),
                                     (3, 9, 2, 20001, 'b', 1, 11, 'p3/e2/bundle/8-9-2-0.segs', 2, 100, 50);",
    );
    let rows = env.rt.block_on(meta.segments(3)).unwrap();
    assert_eq!(rows[2].object_range, Some((100, 50)));
}

#[test]
fn two_ingest_nodes_and_two_indexers_commit_every_acknowledged_event_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let x1 = env.indexer("index-1", &[]);
    let x2 = env.indexer("index-2", &[]);
    for round in 0..20u32 {
        env.post(if round.is_multiple_of(2) { a1 } else { a2 }, 250);
        if round == 9 {
            // A second commit of the same days: compaction merges them, the merged
            // segment replaces the first in the catalog.
            env.wait_committed();
        }
    }
    // A re-sent batch is acknowledged as duplicates and stored once.
    let (body, _) = {
        let saved = env.next;
        env.next -= 250;
        let b = env.batch(250);
        env.next = saved;
        b
    };
    let reply = call(
        a1,
        "POST",
        "/v1/events",
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["duplicates"], 250, "{}", reply.body);
    // A bad record is refused by line and field; the rest of its batch goes on.
    let (mut body, ids) = env.batch(2);
    body.push_str("{\"ts\":1764547200000,\"community\":\"3205080001\",\"device\":\"12\",\"kind\":\"vehicle\",\"subject\":\"苏E1\"}\n");
    let reply = call(
        a2,
        "POST",
        "/v1/events",
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["stored"], 2);
    assert_eq!(reply.body["errors"][0]["line"], 3);
    assert_eq!(reply.body["errors"][0]["field"], "device");
    env.acked.extend(ids);
    env.assert_exactly_once();
    // Both indexers hold partitions (the fair share).
    assert!(wait_until(Duration::from_secs(30), || {
        !env.owned_by("index-1").is_empty() && !env.owned_by("index-2").is_empty()
    }));
    // A binary batch (`serve`'s wire encoding) goes the same way.
    let inputs: Vec<sightline_storage::EventInput> = (0..50)
        .map(|i| sightline_storage::EventInput {
            ts_ms: 1_764_547_200_000 + i,
            community: "3205080003".into(),
            device: "32050803011210000001".into(),
            kind: "vehicle".into(),
            subject: format!("苏B{i:05}"),
            direction: "out".into(),
            attrs: [(
                "source_id".to_string(),
                sightline_storage::AttrValue::Str(format!("bin-{i}")),
            )]
            .into_iter()
            .collect(),
        })
        .collect();
    let body = sightline_server::wire::encode(&inputs);
    let reply = call(
        a2,
        "POST",
        "/v1/events",
        sightline_server::wire::CONTENT_TYPE,
        &body,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["stored"], 50);
    env.acked.extend((0..50).map(|i| format!("bin-{i}")));
    // With keys listed, an ingest node refuses a request without one of them.
    let token = "sl_cluster_test_token";
    let keys = format!(
        "token_sha256 = [\"{}\"]",
        sightline_server::auth::sha256_hex(token.as_bytes())
    );
    let (_keyed, a3) = env.spawn_with("ingest", "ingest-keyed", &[], &keys);
    let a3 = a3.unwrap();
    let (body, ids) = env.batch(3);
    let refused = call(
        a3,
        "POST",
        "/v1/events",
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(refused.status, 401, "{}", refused.body);
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let accepted = sightline_testkit::send(a3, request.as_bytes());
    assert_eq!(
        accepted.status,
        200,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    env.acked.extend(ids);
    env.assert_exactly_once();
    let logs = x1.log() + &x2.log();
    assert!(
        logs.lines().any(|l| l.contains("committed")
            && l.contains("replaced=")
            && !l.contains("replaced=0")),
        "no commit replaced compacted segments: {logs}"
    );
    // A clean stop (SIGTERM) commits and gives the leases back at once: index-2
    // holds every partition long before a lease could have lapsed.
    let mut x1 = x1;
    x1.signal(libc::SIGTERM);
    let status = x1.child.wait().unwrap();
    assert!(status.success(), "{status:?}: {}", x1.log());
    assert!(env.owned_by("index-1").is_empty());
    assert!(
        wait_until(Duration::from_secs(10), || env.owned_by("index-2").len()
            == PARTITIONS as usize),
        "index-2 did not take index-1's partitions"
    );
    env.post(a1, 100);
    env.assert_exactly_once();
    // One object a partition a commit: every listed segment lies in its commit's
    // bundle, several to a bundle, each range within the object.
    let meta = env.meta();
    let objects = Objects::new(&env.config().s3).unwrap();
    let sizes: std::collections::HashMap<String, u64> = env
        .rt
        .block_on(objects.list(None))
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let mut rows = 0;
    let mut bundles = BTreeSet::new();
    for p in 0..PARTITIONS {
        for r in env.rt.block_on(meta.segments(p)).unwrap() {
            assert!(r.object_key.contains("/bundle/"), "{}", r.object_key);
            let (offset, len) = r.object_range.expect("a bundled segment has its range");
            assert!(offset + len <= sizes[&r.object_key], "{r:?}");
            bundles.insert(r.object_key.clone());
            rows += 1;
        }
    }
    assert!(
        bundles.len() < rows,
        "{rows} segments in {} objects",
        bundles.len()
    );
    eprintln!("{rows} segments in {} bundles", bundles.len());
    eprintln!("{} events, {:?} in all", env.acked.len(), started.elapsed());
}

/// One process holding every role (`sightline cluster run --roles
/// ingest,index,query`): events posted to its ingest listener are committed by its
/// indexer and answered by its query listener as a single node answers them; SIGTERM
/// stops all three.
#[test]
fn one_process_holds_every_role() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let stderr = env.dir.path().join("all.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "cluster",
            "run",
            "--roles",
            "ingest,index,query",
            "--config",
        ])
        .arg(env.config_file("all"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    let mut line = String::new();
    while addrs.len() < 2 && out.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some((_, a)) = line.trim().split_once("listening on ") {
            addrs.push(
                a.split_once("://")
                    .unwrap()
                    .1
                    .parse::<SocketAddr>()
                    .unwrap(),
            );
        }
        line.clear();
    }
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(addrs.len(), 2, "two listeners: {}", log());
    // Which is which, by what each says of itself.
    let role = |a: SocketAddr| sightline_testkit::get(a, "/health").body["role"].clone();
    let (ia, qa) = match role(addrs[0]) == serde_json::json!("ingest") {
        true => (addrs[0], addrs[1]),
        false => (addrs[1], addrs[0]),
    };
    assert_eq!(role(ia), serde_json::json!("ingest"));
    assert_eq!(role(qa), serde_json::json!("query"));
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let (body, _) = env.batch(400);
    assert_eq!(env.post_body(ia, &body), 400);
    let r = sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let (from, to) = (1_764_547_200_000i64, 1_764_547_200_000i64 + 86_400_000);
    let counts = format!("/v1/counts?from={from}&to={to}&by=community");
    let expected = sightline_testkit::get(single.addr, &counts).body;
    assert!(
        wait_until(Duration::from_secs(90), || sightline_testkit::get(
            qa, &counts
        )
        .body
            == expected),
        "the query listener never answered as a single node: {} vs {expected}\n{}",
        sightline_testkit::get(qa, &counts).body,
        log()
    );
    // Committed by its own indexer.
    let meta = env.meta();
    assert!(
        wait_until(Duration::from_secs(60), || env
            .rt
            .block_on(meta.committed_keys())
            .is_ok_and(|k| !k.is_empty())),
        "nothing committed: {}",
        log()
    );
    // SIGTERM stops every role.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert!(
        wait_until(Duration::from_secs(30), || child
            .try_wait()
            .unwrap()
            .is_some()),
        "still running after SIGTERM: {}",
        log()
    );
    assert!(child.wait().unwrap().success(), "{}", log());
}

#[test]
fn an_indexer_killed_between_upload_and_commit_is_replaced_from_the_checkpoint() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let doomed = env.indexer(
        "index-1",
        &[("SIGHTLINE_CLUSTER_FAULT", "pause-before-commit")],
    );
    let _x2 = env.indexer("index-2", &[]);
    for _ in 0..8 {
        env.post(a1, 250);
    }
    assert!(
        wait_until(Duration::from_secs(60), || doomed
            .log()
            .contains("fault point")),
        "the fault point was not reached: {}",
        doomed.log()
    );
    doomed.signal(libc::SIGKILL);
    for _ in 0..4 {
        env.post(a1, 250);
    }
    env.assert_exactly_once();
    assert!(env.owned_by("index-1").is_empty());
    drop(doomed);
    // What index-1 uploaded and never committed is garbage: the janitor removes it
    // (any age here), and nothing committed.
    let cfg = env.config();
    let objects = Objects::new(&cfg.s3).unwrap();
    let meta = env.meta();
    // A subject directory a builder put and never registered (it died in between)
    // is garbage too.
    let unregistered = sightline_cluster::directory::object_key("day", 19_000, 0xdead);
    env.rt
        .block_on(objects.put_create(&unregistered, vec![1u8, 2, 3].into()))
        .unwrap();
    let committed = env.rt.block_on(meta.committed_keys()).unwrap();
    let before = env.rt.block_on(objects.list(None)).unwrap();
    let orphans: BTreeSet<String> = before
        .iter()
        .map(|o| o.key.clone())
        .filter(|k| !committed.contains(k))
        .collect();
    assert!(!orphans.is_empty(), "index-1 left no upload behind");
    assert!(orphans.contains(&unregistered), "{orphans:?}");
    let now = i64::MAX / 2;
    let removed: BTreeSet<String> = env
        .rt
        .block_on(janitor::sweep(&meta, &objects, now, 0))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(removed, orphans);
    env.assert_exactly_once();
}

#[test]
fn an_indexer_stopped_past_its_lease_is_fenced_when_it_continues() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    // index-1 stops between its uploads and its commit; index-2 starts once it did.
    let stopped = env.indexer(
        "index-1",
        &[("SIGHTLINE_CLUSTER_FAULT", "pause-before-commit:2000")],
    );
    env.post(a1, 500);
    assert!(
        wait_until(Duration::from_secs(60), || stopped
            .log()
            .contains("fault point")),
        "the fault point was not reached: {}",
        stopped.log()
    );
    stopped.signal(libc::SIGSTOP);
    let x2 = env.indexer("index-2", &[]);
    for _ in 0..4 {
        env.post(a1, 250);
    }
    // index-2 takes every partition once index-1's leases lapse.
    assert!(
        wait_until(Duration::from_secs(60), || env.owned_by("index-2").len()
            == PARTITIONS as usize),
        "index-2 did not take over: it holds {:?}; its log:\n{}",
        env.owned_by("index-2"),
        x2.log()
    );
    env.wait_committed();
    stopped.signal(libc::SIGCONT);
    assert!(
        wait_until(Duration::from_secs(30), || stopped
            .log()
            .contains("commit refused by the epoch check")),
        "index-1's commit was not refused: {}",
        stopped.log()
    );
    for _ in 0..4 {
        env.post(a1, 250);
    }
    env.assert_exactly_once();
}

#[test]
fn ingest_goes_on_when_the_stream_leader_is_killed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let (_i2, a2) = env.ingest("ingest-2");
    let _x1 = env.indexer("index-1", &[]);
    env.post(a1, 500);
    let cfg = env.config();
    let leader = env
        .rt
        .block_on(async {
            let js = log::connect(&cfg).await?;
            log::stream_leader(&js, &cfg).await
        })
        .unwrap()
        .expect("the stream has a leader");
    // The stream keeps messages for `stream_max_age_s` (default 3 days), not forever.
    let max_age = env
        .rt
        .block_on(async {
            let js = log::connect(&cfg).await?;
            Ok::<_, sightline_cluster::ClusterError>(
                log::stream_info(&js, &cfg).await?.config.max_age,
            )
        })
        .unwrap();
    assert_eq!(max_age, Duration::from_secs(cfg.stream_max_age_s));
    assert_eq!(cfg.stream_max_age_s, 3 * 86_400);
    env.nats.kill(&leader);
    for round in 0..8u32 {
        env.post(if round.is_multiple_of(2) { a1 } else { a2 }, 250);
    }
    let new_leader = env
        .rt
        .block_on(async {
            let js = log::connect(&cfg).await?;
            log::stream_leader(&js, &cfg).await
        })
        .unwrap();
    assert!(new_leader.is_some_and(|l| l != leader));
    env.assert_exactly_once();
    // An ingest node says it is healthy only while connected to NATS (a load
    // balancer then sends events elsewhere): with every NATS node gone, 503.
    let health = sightline_testkit::get(a1, "/health");
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["nats"], "connected");
    for name in env.nats.names() {
        env.nats.kill(&name);
    }
    assert!(
        wait_until(Duration::from_secs(20), || sightline_testkit::get(
            a1, "/health"
        )
        .status
            == 503),
        "ingest-1 still says it is healthy with NATS gone: {}",
        sightline_testkit::get(a1, "/health").body
    );
    // Events then are refused at once, 503 with Retry-After, not after every PubAck
    // wait of every retry (~40 s, past the 15 s this client waits, as cameras' and
    // HTTP clients' timeouts are).
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(a1).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = r#"{"ts":1764547200000,"community":"3205080001","device":"32050801011210000001","kind":"vehicle","subject":"苏E1NATS","direction":"in"}"#;
    let request = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    c.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let read = c.read_to_string(&mut answer);
    assert!(read.is_ok(), "no answer within 15 s: {read:?}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("not connected to NATS"), "{answer}");
}

#[test]
fn sealing_waits_while_postgres_restarts_and_nothing_is_lost() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let x1 = env.indexer("index-1", &[]);
    env.post(a1, 500);
    env.wait_committed();
    env.pg.stop();
    for _ in 0..6 {
        env.post(a1, 250);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(x1.log().contains("commit failed"), "{}", x1.log());
    env.pg.resume();
    env.post(a1, 250);
    env.assert_exactly_once();
}

#[test]
fn a_hung_postgres_pauses_sealing_and_a_stopping_indexer_does_not_wait_for_it() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let mut x1 = env.indexer("index-1", &[]);
    env.post(a1, 500);
    env.wait_committed();
    // Whichever call a commit or a renewal makes first (the retention policy's read
    // comes first in a commit since the cluster has retention; a connection given
    // up is made again, bounded too).
    let pg_gave_up = |log: &str| {
        [
            "the commit timed out",
            "renewing the lease timed out",
            "reading the retention policy timed out",
            "PostgreSQL connect timed out",
        ]
        .iter()
        .any(|s| log.contains(s))
    };
    // PostgreSQL stops answering (its connections stay open): ingest goes on and the
    // indexer's calls time out. When it answers again, the same indexer settles what
    // it left in doubt and commits everything once.
    env.pg.freeze();
    for _ in 0..4 {
        env.post(a1, 250);
    }
    assert!(
        wait_until(Duration::from_secs(30), || pg_gave_up(&x1.log())),
        "no PostgreSQL call of index-1 timed out: {}",
        x1.log()
    );
    env.pg.thaw();
    env.post(a1, 250);
    env.assert_exactly_once();
    let log = x1.log();
    if log.contains("the commit timed out") {
        assert!(log.contains("commit in doubt settled"), "{log}");
    }
    // Hung again: a SIGTERM ends the indexer within its bounded calls.
    env.pg.freeze();
    let before = x1.log().matches("timed out").count();
    env.post(a1, 250);
    assert!(
        wait_until(Duration::from_secs(30), || x1
            .log()
            .matches("timed out")
            .count()
            > before),
        "no call of index-1 timed out the second time: {}",
        x1.log()
    );
    x1.signal(libc::SIGTERM);
    // Each partition's last commit (a connect and a call, a lease each) and release,
    // and the members' leave: a few leases, with room for a loaded machine.
    let bound = Duration::from_millis(6 * LEASE_MS) + Duration::from_secs(15);
    let asked = std::time::Instant::now();
    assert!(
        x1.exited_within(bound),
        "index-1 did not stop within {bound:?} while PostgreSQL hung: {}",
        x1.log()
    );
    eprintln!("index-1 stopped {:?} after SIGTERM", asked.elapsed());
    env.pg.thaw();
    // Nothing index-1 read and did not commit is lost: another indexer replays it.
    let _x2 = env.indexer("index-2", &[]);
    env.post(a1, 250);
    env.assert_exactly_once();
}

#[test]
fn a_commit_in_doubt_is_settled_whether_it_took_effect_or_not() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    // index-1's first commit takes effect and its answer is lost; index-2's first is
    // lost before it is sent. Both are in doubt; each must be settled the right way.
    let settled = |log: &str, landed: &str| {
        log.lines()
            .any(|l| l.contains("commit in doubt settled") && l.contains(landed))
    };
    let x1 = env.indexer(
        "index-1",
        &[("SIGHTLINE_CLUSTER_FAULT", "lose-commit-answer")],
    );
    env.post(a1, 500);
    assert!(
        wait_until(Duration::from_secs(60), || settled(
            &x1.log(),
            "landed=true"
        )),
        "index-1's commit in doubt was not settled as taken: {}",
        x1.log()
    );
    let x2 = env.indexer("index-2", &[("SIGHTLINE_CLUSTER_FAULT", "lose-commit")]);
    assert!(
        wait_until(Duration::from_secs(60), || env.owned_by("index-2").len()
            == PARTITIONS as usize / 2),
        "index-2 took no fair share: {}",
        x2.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !settled(&x2.log(), "landed=false") {
        assert!(
            std::time::Instant::now() < deadline,
            "index-2's lost commit was not settled as lost: {}",
            x2.log()
        );
        env.post(a1, 100);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(x1.log().contains("fault point: committed, the answer lost"));
    assert!(x2
        .log()
        .contains("fault point: the commit lost before it was sent"));
    // Both partitions' owners go on committing (a commit that took effect, sent
    // again, had its rows refused as duplicates forever), and every event is listed
    // once.
    for _ in 0..4 {
        env.post(a1, 250);
    }
    env.assert_exactly_once();
    for x in [&x1, &x2] {
        assert!(!x.log().contains("duplicate key"), "{}", x.log());
    }
}

/// The synthetic city of the query test: its NDJSON bodies (chunks of 700 events).
fn query_city() -> Vec<Vec<String>> {
    let city = sightline_synth::Traffic::new(sightline_synth::TrafficConfig {
        communities: 6,
        days: 2,
        households_per_community: 40,
        visitor_vehicles: 300,
        source_ids: true,
        drivers: true,
        ..Default::default()
    });
    city.days()
        .map(|day| {
            day.chunks(700)
                .map(|chunk| {
                    chunk
                        .iter()
                        .map(|e| sightline_synth::to_ndjson(e) + "\n")
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// An answer with event ids taken out (they differ between a cluster and one store),
/// and co-occurrence's lift rounded to two places (summed in another order).
fn without_ids(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(events) = v.get_mut("events").and_then(|e| e.as_array_mut()) {
        for e in events {
            e.as_object_mut().unwrap().remove("id");
        }
    }
    if let Some(o) = v.as_object_mut() {
        if o.contains_key("ts") && o.contains_key("subject") {
            o.remove("id");
        }
        o.remove("next_cursor");
    }
    if let Some(cands) = v.get_mut("candidates").and_then(|c| c.as_array_mut()) {
        for c in cands {
            let lift = c["lift"].as_f64().unwrap();
            c["lift"] = serde_json::json!((lift * 100.0).round() / 100.0);
        }
    }
    v
}

/// Every page of a trajectory from `addr`, ids taken out.
fn trajectory_pages(addr: SocketAddr, target: &str) -> Vec<serde_json::Value> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            None => target.to_string(),
            Some(c) => format!("{target}&cursor={}", sightline_testkit::enc(c)),
        };
        let r = sightline_testkit::get(addr, &url);
        assert_eq!(r.status, 200, "{url}: {}", r.body);
        cursor = r.body["next_cursor"].as_str().map(str::to_string);
        pages.push(without_ids(r.body));
        if cursor.is_none() {
            return pages;
        }
        assert!(pages.len() < 1000, "a trajectory without end");
    }
}

/// What the query test asks, and how: (name, method, target, body).
struct Asked {
    name: String,
    post: Option<String>,
    target: String,
}

/// One answer of `addr` to `q`, ids taken out (a trajectory: all its pages).
fn ask(addr: SocketAddr, q: &Asked) -> serde_json::Value {
    if q.target.starts_with("/v1/trajectory") {
        return serde_json::Value::Array(trajectory_pages(addr, &q.target));
    }
    let r = match &q.post {
        Some(body) => sightline_testkit::post(addr, &q.target, "application/json", body),
        None => sightline_testkit::get(addr, &q.target),
    };
    assert_eq!(r.status, 200, "{} {}: {}", q.name, q.target, r.body);
    without_ids(r.body)
}

/// Every query family over the city `events`: the busiest vehicles and faces, the
/// whole range, two communities; and the range as a query string.
fn city_queries(events: &[serde_json::Value]) -> (Vec<Asked>, String) {
    // What to ask: the busiest vehicles and faces, the whole range, two communities.
    let from = events
        .iter()
        .map(|e| e["ts"].as_i64().unwrap())
        .min()
        .unwrap();
    let to = events
        .iter()
        .map(|e| e["ts"].as_i64().unwrap())
        .max()
        .unwrap()
        + 1;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut communities = BTreeSet::new();
    for e in events {
        let k = (
            e["kind"].as_str().unwrap().to_string(),
            e["subject"].as_str().unwrap().to_string(),
        );
        *seen.entry(k).or_default() += 1;
        communities.insert(e["community"].as_str().unwrap().to_string());
    }
    let mut busiest: Vec<_> = seen.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let vehicles: Vec<String> = busiest
        .iter()
        .filter(|((k, _), _)| k == "vehicle")
        .take(3)
        .map(|((_, s), _)| s.clone())
        .collect();
    let face = busiest
        .iter()
        .find(|((k, _), _)| k == "face")
        .map(|((_, s), _)| s.clone());
    let communities: Vec<String> = communities.into_iter().collect();
    let enc = sightline_testkit::enc;
    let range = format!("from={from}&to={to}");
    let mut asked = Vec::new();
    let get = |name: &str, target: String| Asked {
        name: name.into(),
        post: None,
        target,
    };
    for v in &vehicles {
        asked.push(get(
            "trajectory",
            format!(
                "/v1/trajectory?kind=vehicle&subject={}&{range}&limit=40",
                enc(v)
            ),
        ));
        asked.push(get(
            "cooccurrence",
            format!(
                "/v1/cooccurrence?kind=vehicle&subject={}&{range}&window=120s",
                enc(v)
            ),
        ));
        asked.push(get(
            "overnight",
            format!("/v1/overnight?kind=vehicle&subject={}&{range}", enc(v)),
        ));
    }
    if let Some(f) = &face {
        asked.push(get(
            "trajectory",
            format!(
                "/v1/trajectory?kind=face&subject={}&{range}&limit=25",
                enc(f)
            ),
        ));
        asked.push(get(
            "cooccurrence",
            format!(
                "/v1/cooccurrence?kind=face&subject={}&{range}&scope=community",
                enc(f)
            ),
        ));
    }
    let day = 86_400_000;
    asked.push(Asked {
        name: "collision".into(),
        post: Some(
            serde_json::json!({"kind": "vehicle", "min_conditions": 2, "conditions": [
            {"communities": [communities[0]], "from": from, "to": from + day},
            {"communities": [communities[1]], "from": from, "to": to},
            {"communities": [communities[2], communities[3]], "from": from + day / 2, "to": to}]})
            .to_string(),
        ),
        target: "/v1/collision".into(),
    });
    asked.push(get(
        "counts",
        format!("/v1/counts?{range}&by=device&per=hour"),
    ));
    asked.push(get(
        "search",
        format!("/v1/search?q={}&mode=exact", enc(&vehicles[0])),
    ));
    let prefix: String = vehicles[1].chars().take(3).collect();
    asked.push(get(
        "search",
        format!(
            "/v1/search?q={}&mode=prefix&kind=vehicle&limit=50",
            enc(&prefix)
        ),
    ));
    asked.push(get(
        "frequency",
        format!(
            "/v1/frequency?community={}&kind=vehicle&{range}&min_count=2",
            communities[0]
        ),
    ));
    asked.push(get(
        "first-seen",
        format!(
            "/v1/first-seen?community={}&kind=vehicle&from={}&to={to}&lookback=1d",
            communities[1],
            from + day
        ),
    ));
    asked.push(get(
        "nocturnal",
        format!("/v1/nocturnal?kind=vehicle&{range}&min_night=1&max_day=3"),
    ));
    (asked, range)
}

#[test]
fn query_nodes_answer_as_a_single_node_and_survive_a_killed_indexer_and_query_node() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::start();
    let (_i1, a1) = env.ingest("ingest-1");
    let x1 = env.indexer("index-1", &[]);
    let x2 = env.indexer("index-2", &[]);
    // The query nodes start before the events: their replicas are made from the log
    // (and, after query-2 is killed, query-1's from the committed segments).
    let (q1, qa1) = env.query_node("query-1");
    let (q2, qa2) = env.query_node("query-2");
    // The oracle: `sightline serve` (in this process) fed the same NDJSON.
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let mut events: Vec<serde_json::Value> = Vec::new();
    let mut sent = 0u64;
    for day in query_city() {
        for body in day {
            let r =
                sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            assert_eq!(r.body["rejected"], 0, "{}", r.body);
            sent += env.post_body(a1, &body);
            events.extend(
                body.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
    }
    assert_eq!(sent, events.len() as u64);
    assert!(events.len() > 2_000, "a city of {} events", events.len());
    env.wait_committed_events(events.len() as u64);

    let (asked, range) = city_queries(&events);
    let expected: Vec<serde_json::Value> = asked.iter().map(|q| ask(single.addr, q)).collect();
    for (q, e) in asked.iter().zip(&expected) {
        let n = match e {
            serde_json::Value::Array(pages) => pages
                .iter()
                .map(|p| p["events"].as_array().unwrap().len())
                .sum(),
            v => v
                .as_object()
                .unwrap()
                .values()
                .filter_map(|x| x.as_array())
                .map(Vec::len)
                .sum::<usize>(),
        };
        eprintln!("{} {}: {n} rows", q.name, q.target);
    }
    assert!(
        expected.iter().any(|e| e
            .get("subjects")
            .is_some_and(|s| !s.as_array().unwrap().is_empty())),
        "collision found nothing"
    );

    let check_all = |addr: SocketAddr, when: &str| {
        for (q, e) in asked.iter().zip(&expected) {
            let got = ask(addr, q);
            assert!(
                got == *e,
                "{when}: {} {} differs:\n cluster {got}\n single  {e}",
                q.name,
                q.target
            );
        }
    };

    // Replicas: each partition on the query node rendezvous hashing ranks first, each
    // node knowing where the other's are, and every replica caught up with the log.
    let names = ["query-1", "query-2"];
    let placed = |name: &str| -> Vec<u32> {
        (0..PARTITIONS)
            .filter(|p| sightline_cluster::replica::rendezvous(*p, &names, 1) == [name])
            .collect()
    };
    let (own1, own2) = (placed("query-1"), placed("query-2"));
    assert!(
        !own1.is_empty() && !own2.is_empty(),
        "the test wants replicas on both query nodes: {own1:?} {own2:?}"
    );
    let health = |addr: SocketAddr| sightline_testkit::get(addr, "/health").body;
    let numbers = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_u64().unwrap() as u32)
            .collect()
    };
    let placed_as_hashed = || {
        let (h1, h2) = (health(qa1), health(qa2));
        numbers(&h1["replicas"]) == own1
            && numbers(&h2["replicas"]) == own2
            && numbers(&h1["replicated_elsewhere"]) == own2
            && numbers(&h2["replicated_elsewhere"]) == own1
    };
    assert!(
        wait_until(Duration::from_secs(60), placed_as_hashed),
        "replicas not placed: {} {}",
        health(qa1),
        health(qa2)
    );
    let counts = asked.iter().position(|q| q.name == "counts").unwrap();
    for addr in [qa1, qa2] {
        assert!(
            wait_until(Duration::from_secs(60), || ask(addr, &asked[counts])
                == expected[counts]),
            "the replicas did not catch up with the log"
        );
    }
    // Each replica reports how far it has read: the whole log, and it answers.
    for (addr, own) in [(qa1, &own1), (qa2, &own2)] {
        let read_all = || {
            let h = health(addr);
            own.iter().all(|p| {
                let lag = &h["replica_lag"][p.to_string()];
                lag["serving"] == true
                    && lag["appended"].is_u64()
                    && lag["log_last"] == lag["appended"]
            })
        };
        assert!(
            wait_until(Duration::from_secs(30), read_all),
            "replica lag not reported: {}",
            health(addr)
        );
    }

    // The indexers stopped: every answer comes from the replicas, this node's own
    // (in process) and the other's (over HTTP).
    x1.signal(libc::SIGSTOP);
    x2.signal(libc::SIGSTOP);
    check_all(qa1, "query node 1, from replicas");
    check_all(qa2, "query node 2, from replicas");
    for h in [health(qa1), health(qa2)] {
        let a = &h["answered"];
        assert!(
            a["local"].as_u64().unwrap() > 0 && a["replica"].as_u64().unwrap() > 0,
            "{h}"
        );
    }

    // NDJSON: the trajectory streamed whole, a list answer as lines.
    let whole = asked[0].target.replace("&limit=40", "");
    for target in [
        whole.clone(),
        format!("{}&limit=30", asked[3].target.replace("&limit=40", "")),
        format!("/v1/counts?{range}&by=kind&per=day"),
    ] {
        let (single_lines, cluster_lines) =
            (get_ndjson(single.addr, &target), get_ndjson(qa2, &target));
        assert!(!single_lines.is_empty(), "{target}");
        assert_eq!(cluster_lines, single_lines, "{target}");
    }

    // An event by its cluster id, as the trajectory listed it.
    let first = sightline_testkit::get(qa1, &asked[0].target);
    assert_eq!(first.status, 200, "{}", first.body);
    let e = &first.body["events"][0];
    let by_id = sightline_testkit::get(qa1, &format!("/v1/events/{}", e["id"]));
    assert_eq!(by_id.status, 200, "{}", by_id.body);
    assert_eq!(by_id.body, *e);
    // The replicas' event ids are the indexers' (the committed ones): each event the
    // page lists is, in its partition restored from the catalog, at the local
    // sequence number its id names.
    let (cfg, meta) = (env.config(), env.meta());
    let objects = Objects::new(&cfg.s3).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut restored: BTreeMap<u32, sightline_storage::Store> = BTreeMap::new();
    for e in first.body["events"].as_array().unwrap() {
        let (p, seq) = sightline_cluster::partition::split_event_id(e["id"].as_u64().unwrap());
        let store = restored.entry(p).or_insert_with(|| {
            let dir = root.path().join(format!("p{p}"));
            env.rt
                .block_on(restore::restore_partition(
                    &meta,
                    &objects,
                    p,
                    &dir,
                    StoreConfig::default(),
                ))
                .unwrap()
                .0
        });
        let committed = store
            .read_events(i64::MIN, i64::MAX, None)
            .unwrap()
            .into_iter()
            .find(|s| s.seq == seq)
            .unwrap_or_else(|| panic!("no event {seq} in partition {p}: {e}"));
        assert_eq!(
            committed.event.source_id(),
            e["attrs"]["source_id"].as_str(),
            "{e}"
        );
    }
    // `serve`'s errors: an unknown parameter, a bad kind.
    for target in [
        format!("{}&colour=red", asked[1].target),
        format!("/v1/counts?{range}&kind=boat"),
    ] {
        let (c, s) = (
            sightline_testkit::get(qa1, &target),
            sightline_testkit::get(single.addr, &target),
        );
        assert_eq!((c.status, &c.body), (s.status, &s.body), "{target}");
    }
    x1.signal(libc::SIGCONT);
    x2.signal(libc::SIGCONT);

    // A query node killed mid-query: queries run on query-1 (which asks query-2 for
    // query-2's partitions) while query-2 is killed; every answer still comes, equal
    // to the single node's, the failed calls re-sent elsewhere.
    let single_whole = get_ndjson(single.addr, &whole);
    // Rounds completed by each worker; the first failure, which ends the wait.
    let rounds = [
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ];
    let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let done = std::sync::atomic::AtomicBool::new(false);
    let load = std::sync::atomic::Ordering::SeqCst;
    let mut q2 = q2;
    std::thread::scope(|s| {
        for worker in 0..2 {
            let (rounds, failed, done, check_all, whole, single_whole) =
                (&rounds, &failed, &done, &check_all, &whole, &single_whole);
            s.spawn(move || {
                while !done.load(load) {
                    let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        assert_eq!(
                            get_ndjson(qa1, whole),
                            *single_whole,
                            "worker {worker}: the streamed trajectory"
                        );
                        check_all(qa1, "while query-2 was killed");
                    }));
                    if let Err(e) = round {
                        let why = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        *failed.lock().unwrap() = Some(format!("worker {worker}: {why}"));
                        done.store(true, load);
                        return;
                    }
                    rounds[worker].fetch_add(1, load);
                }
            });
        }
        // (The workers stop before any assertion here can fail, or the scope would
        // wait for them for ever; a worker that fails ends the waits at once.)
        let failing = || failed.lock().unwrap().is_some();
        let started = wait_until(Duration::from_secs(120), || {
            failing() || rounds.iter().all(|r| r.load(load) >= 1)
        });
        q2.signal(libc::SIGKILL);
        let _ = q2.child.wait();
        let at_kill: Vec<usize> = rounds.iter().map(|r| r.load(load)).collect();
        // Every worker completes two more rounds: the one under way at the kill (if
        // any) and at least one begun after it.
        let went_on = wait_until(Duration::from_secs(180), || {
            failing()
                || rounds
                    .iter()
                    .zip(&at_kill)
                    .all(|(r, k)| r.load(load) >= k + 2)
        });
        done.store(true, load);
        if let Some(why) = failed.lock().unwrap().take() {
            panic!("a query failed while query-2 was killed: {why}");
        }
        assert!(
            started && went_on,
            "the queries stopped: {:?} rounds per worker ({at_kill:?} at the kill)",
            rounds.iter().map(|r| r.load(load)).collect::<Vec<_>>()
        );
    });
    let log = q1.log();
    assert!(
        log.lines().any(
            |l| l.contains("a partition call failed; asking the next") && l.contains("query-2")
        ),
        "query-1 never re-sent a call query-2 failed: {log}"
    );
    // Every replica numbers events as its owner: checked against the owners' commits,
    // never found otherwise.
    for (name, log) in [("query-1", &log), ("query-2", &q2.log())] {
        assert!(
            log.contains("replica numbering agrees with its owner's commit"),
            "{name} never checked a replica against a commit: {log}"
        );
        assert!(!log.contains("diverged"), "{name}: {log}");
    }
    assert!(health(qa1)["answered"]["indexer"].as_u64().unwrap() > 0);
    // The same event ids, whoever answered.
    let again = sightline_testkit::get(qa1, &asked[0].target);
    assert_eq!(again.body, first.body);

    // query-2's membership lapses: its partitions move to query-1, whose replicas
    // then answer everything (no call reaches an indexer).
    let all: Vec<u32> = (0..PARTITIONS).collect();
    assert!(
        wait_until(Duration::from_secs(60), || numbers(
            &health(qa1)["replicas"]
        ) == all),
        "query-1 did not take query-2's partitions: {}",
        health(qa1)
    );
    let before = health(qa1)["answered"].clone();
    check_all(qa1, "query-1 alone");
    let after = health(qa1)["answered"].clone();
    assert_eq!(after["indexer"], before["indexer"], "{after}");
    assert_eq!(after["replica"], before["replica"], "{after}");
    assert!(after["local"].as_u64() > before["local"].as_u64());

    // An indexer killed: answers go on (from the replicas), and the other indexer
    // takes its partitions.
    assert!(
        wait_until(Duration::from_secs(30), || !env
            .owned_by("index-1")
            .is_empty()),
        "index-1 holds no partition"
    );
    x1.signal(libc::SIGKILL);
    check_all(qa1, "after index-1 was killed");
    assert!(
        wait_until(Duration::from_secs(60), || env.owned_by("index-2").len()
            == PARTITIONS as usize),
        "index-2 did not take index-1's partitions"
    );
    drop(q2);
}

/// A GET asking for NDJSON, its lines parsed (chunks joined) with event ids taken out.
fn get_ndjson(addr: SocketAddr, target: &str) -> Vec<serde_json::Value> {
    get_ndjson_as(addr, None, target)
}

/// [`get_ndjson`] with `token` as the request's key.
fn get_ndjson_as(addr: SocketAddr, token: Option<&str>, target: &str) -> Vec<serde_json::Value> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let answer = sightline_testkit::send(
        addr,
        format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Accept: application/x-ndjson\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(
        answer.status,
        200,
        "{target}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    let head = answer.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let mut rest = &answer.body[..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut body = Vec::new();
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        body
    } else {
        rest.to_vec()
    };
    String::from_utf8(body)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            if let Some(o) = v.as_object_mut() {
                o.remove("id");
            }
            v
        })
        .collect()
}

/// An answer: its status and its JSON body (`null` when it is not JSON).
type Answered = (u16, serde_json::Value);

/// One request with `token` as its key (none: no key sent).
fn ask_as(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    target: &str,
    body: &str,
) -> Answered {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let a = sightline_testkit::send(addr, request.as_bytes());
    (
        a.status,
        serde_json::from_slice(&a.body).unwrap_or(serde_json::Value::Null),
    )
}

/// The status of a request whose head promises a body of 1 MB that never comes: read
/// as soon as the head of the answer arrives (a server that waited for the body would
/// not answer within the 10 s allowed).
fn status_before_body(addr: SocketAddr, token: Option<&str>, target: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer before the body was sent: {e}"),
        }
    }
    let head = String::from_utf8_lossy(&got).to_string();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

/// The key id of a token (`sl_<id>_<secret>`).
fn id_of(token: &str) -> &str {
    token.split('_').nth(1).unwrap()
}

#[test]
fn keys_from_the_cluster_catalog_confine_queries_and_every_query_is_audited() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    // Keys made with the CLI against the cluster's PostgreSQL, before any node runs.
    let cli_config = env.config_file("cli");
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "keys"])
            .args(args)
            .arg("--config")
            .arg(&cli_config)
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        );
        assert!(out.status.success(), "{args:?}: {stderr}");
        (stdout, stderr)
    };
    let create = |role: &str, communities: Option<&str>| {
        let mut args = vec!["create", "--role", role, "--name", "test"];
        if let Some(c) = communities {
            args.extend(["--communities", c]);
        }
        let (token, said) = cli(&args);
        let token = token.trim().to_string();
        assert!(token.starts_with("sl_"), "{token}");
        assert!(said.contains(id_of(&token)), "{said}");
        token
    };
    let (ours, elsewhere) = (["3205080001", "3205080002"], "3205080005");
    let ingest = create("ingest", None);
    let ingest_00 = create("ingest", Some("3205080000"));
    let investigator = create("investigate", None);
    let scoped = create("investigate", Some(&ours.join(",")));
    let doomed = create("investigate", Some("3205080003"));
    // Mistakes are named, and nothing is made.
    for (args, named) in [
        (&["create", "--role", "detective"][..], "--role"),
        (
            &["create", "--role", "investigate", "--communities", ""],
            "--communities",
        ),
        (&["revoke", "0badc0de"], "no key 0badc0de"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "keys"])
            .args(args)
            .arg("--config")
            .arg(&cli_config)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains(named),
            "{args:?}: {said}"
        );
    }
    let (listed, _) = cli(&["list"]);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    for t in [&ingest, &investigator, &scoped] {
        let secret = t.rsplit('_').next().unwrap();
        assert!(!listed.contains(secret), "a token listed: {listed}");
    }
    assert!(
        listed.contains(&format!(
            "{}\tinvestigate\t{}\tactive",
            id_of(&scoped),
            ours.join(",")
        )),
        "{listed}"
    );
    // A token listed in the configuration lets in unscoped, beside the table's keys.
    let listed_token = "sl_cfg_listed_query_token";
    env.query_extra = format!(
        "token_sha256 = [\"{}\"]",
        sightline_server::auth::sha256_hex(listed_token.as_bytes())
    );

    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let (mut q1, qa) = env.query_node("query-1");
    // The oracle: `sightline serve` with keys of the same roles and scopes.
    let single_dir = tempfile::tempdir().unwrap();
    let single_keys: Vec<String> = {
        use sightline_server::auth::{create, Role};
        let store = sightline_storage::Store::open(single_dir.path(), Default::default()).unwrap();
        let scope = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect());
        [
            (Role::Ingest, None),
            (Role::Ingest, scope(&["3205080000"])),
            (Role::Investigate, None),
            (Role::Investigate, scope(&ours)),
        ]
        .into_iter()
        .map(|(role, c)| create(&store, "t", role, c, 0).unwrap().1)
        .collect()
    };
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;
    let (s_ingest, s_ingest_00, s_investigator, s_scoped) = (
        &single_keys[0],
        &single_keys[1],
        &single_keys[2],
        &single_keys[3],
    );

    // Ingest: no key is refused before the body; a key scoped to one community
    // writes only that one's records, each other refused as `serve` refuses it.
    assert_eq!(status_before_body(a1, None, "/v1/events"), 401);
    let (body, _) = env.batch(10);
    let cluster = ask_as(a1, Some(&ingest_00), "POST", "/v1/events", &body);
    let oracle = ask_as(s, Some(s_ingest_00), "POST", "/v1/events", &body);
    assert_eq!(cluster.0, 200, "{}", cluster.1);
    assert_eq!(
        (cluster.1["stored"].clone(), cluster.1["rejected"].clone()),
        (1.into(), 9.into())
    );
    assert_eq!(cluster.1["errors"], oracle.1["errors"], "{}", cluster.1);
    assert_eq!(
        ask_as(a1, Some(&investigator), "POST", "/v1/events", &body).0,
        403,
        "an investigator's key does not ingest"
    );
    let (body, _) = env.batch(2_000);
    for (addr, token) in [(a1, ingest.as_str()), (s, s_ingest.as_str())] {
        let r = ask_as(addr, Some(token), "POST", "/v1/events", &body);
        assert_eq!((r.0, r.1["stored"].as_u64()), (200, Some(2_000)), "{}", r.1);
    }

    // Every request to the query node, counted: each must be one audit entry.
    let asked = std::cell::Cell::new(0usize);
    let q = |token: Option<&str>, method: &str, target: &str, body: &str| {
        asked.set(asked.get() + 1);
        ask_as(qa, token, method, target, body)
    };
    let (from, to) = (1_764_547_200_000i64, 1_764_547_200_000i64 + 86_400_000);
    let range = format!("from={from}&to={to}");
    let counts = format!("/v1/counts?{range}&by=community");
    let expected = ask_as(s, Some(s_investigator), "GET", &counts, "");
    assert_eq!(expected.0, 200, "{}", expected.1);
    assert!(
        wait_until(Duration::from_secs(90), || q(
            Some(&investigator),
            "GET",
            &counts,
            ""
        ) == expected),
        "the query node never caught up: {:?}",
        q(Some(&investigator), "GET", &counts, "")
    );
    assert_eq!(q(Some(listed_token), "GET", &counts, ""), expected);
    let health = sightline_testkit::get(qa, "/health").body;
    assert!(
        health["keys_age_ms"].as_u64().is_some_and(|ms| ms < 5_000),
        "{health}"
    );

    // What to ask: vehicles seen both inside and outside the scope.
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut places: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["kind"] == "vehicle") {
        places
            .entry(e["subject"].as_str().unwrap())
            .or_default()
            .insert(e["community"].as_str().unwrap());
    }
    let straddling: Vec<&str> = places
        .iter()
        .filter(|(_, c)| c.iter().any(|c| ours.contains(c)) && c.iter().any(|c| !ours.contains(c)))
        .map(|(s, _)| *s)
        .take(3)
        .collect();
    assert_eq!(straddling.len(), 3, "{places:?}");
    let enc = sightline_testkit::enc;
    let mut targets: Vec<(&str, String, String)> = Vec::new();
    let get = |t: String| ("GET", t, String::new());
    for v in &straddling {
        targets.push(get(format!(
            "/v1/trajectory?kind=vehicle&subject={}&{range}&limit=1000",
            enc(v)
        )));
        targets.push(get(format!(
            "/v1/cooccurrence?kind=vehicle&subject={}&{range}&window=60s&scope=community",
            enc(v)
        )));
    }
    targets.extend([
        get(counts.clone()),
        get(format!(
            "/v1/search?q={}&mode=prefix&kind=vehicle&limit=50",
            enc("苏E0")
        )),
        get(format!("/v1/search?q={}&mode=exact", enc(straddling[0]))),
        get(format!(
            "/v1/frequency?community={}&kind=vehicle&{range}&min_count=1",
            ours[0]
        )),
        // A community outside the scope, named: refused as `serve` refuses it (403
        // naming the field).
        get(format!(
            "/v1/frequency?community={elsewhere}&kind=vehicle&{range}&min_count=1"
        )),
        get(format!(
            "/v1/first-seen?community={elsewhere}&kind=vehicle&{range}"
        )),
        get(format!(
            "/v1/counts?{range}&by=device&community={elsewhere}"
        )),
    ]);
    targets.push((
        "POST",
        "/v1/collision".into(),
        serde_json::json!({"kind": "vehicle", "min_conditions": 1, "conditions": [
            {"communities": [ours[0]], "from": from, "to": to},
            {"communities": [elsewhere], "from": from, "to": to}]})
        .to_string(),
    ));
    targets.push((
        "POST",
        "/v1/collision".into(),
        serde_json::json!({"kind": "vehicle", "min_conditions": 1, "conditions": [
            {"communities": [ours[0]], "from": from, "to": to},
            {"communities": [ours[1]], "from": from, "to": to}]})
        .to_string(),
    ));
    // The single node's vocabulary catches up on its own schedule.
    let searched = wait_until(Duration::from_secs(30), || {
        let (_, b) = ask_as(s, Some(s_investigator), "GET", &targets[7].1, "");
        b["subjects"].as_array().is_some_and(|s| s.len() == 50)
    });
    assert!(searched, "the single node's vocabulary never caught up");
    for (method, target, body) in &targets {
        let wide = q(Some(&investigator), method, target, body);
        let narrow = q(Some(&scoped), method, target, body);
        let single_wide = ask_as(s, Some(s_investigator), method, target, body);
        let single_narrow = ask_as(s, Some(s_scoped), method, target, body);
        let named_elsewhere = target.contains(elsewhere) || body.contains(elsewhere);
        match named_elsewhere {
            true => assert_eq!(
                (narrow.0, narrow.1["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{target} {body}: {}",
                narrow.1
            ),
            false => assert_eq!(narrow.0, 200, "{target}: {}", narrow.1),
        }
        assert_eq!(
            (wide.0, without_ids(wide.1.clone())),
            (single_wide.0, without_ids(single_wide.1)),
            "{target}, unscoped"
        );
        assert_eq!(
            (narrow.0, without_ids(narrow.1.clone())),
            (single_narrow.0, without_ids(single_narrow.1)),
            "{target}, scoped"
        );
        if named_elsewhere {
            continue;
        }
        // Nothing of another community in a scoped answer.
        let text = narrow.1.to_string();
        for c in ["3205080000", "3205080003", elsewhere, "3205080008"] {
            assert!(!text.contains(c), "{target} leaks {c}: {text}");
        }
        if target.starts_with("/v1/trajectory") {
            // The scoped trajectory is the unscoped one with other communities' sightings taken out.
            let of = |v: &serde_json::Value| v["events"].as_array().unwrap().clone();
            let filtered: Vec<serde_json::Value> = of(&wide.1)
                .into_iter()
                .filter(|e| ours.contains(&e["community"].as_str().unwrap()))
                .collect();
            assert!(
                filtered.len() < of(&wide.1).len() && !filtered.is_empty(),
                "{}",
                wide.1
            );
            assert_eq!(of(&narrow.1), filtered, "{target}");
            // Streamed whole (NDJSON), in scope too, as `serve` streams it.
            let streamed = |addr, token| {
                asked.set(asked.get() + usize::from(addr == qa));
                get_ndjson_as(addr, Some(token), target)
            };
            let narrow_lines = streamed(qa, scoped.as_str());
            assert_eq!(narrow_lines.len(), filtered.len(), "{target}");
            assert_eq!(narrow_lines, streamed(s, s_scoped.as_str()), "{target}");
            // By id: an event outside the scope is as absent as an unknown one.
            for e in of(&wide.1) {
                let by_id = format!("/v1/events/{}", e["id"]);
                let (status, got) = q(Some(&scoped), "GET", &by_id, "");
                match ours.contains(&e["community"].as_str().unwrap()) {
                    true => assert_eq!((status, &got), (200, &e)),
                    false => assert_eq!(
                        (status, got["error"]["code"].as_str()),
                        (404, Some("no_such_event")),
                        "{by_id} leaks: {got}"
                    ),
                }
            }
        }
    }

    // Refused: no key, a wrong key, another role — before any body is read.
    let traj = &targets[0].1;
    let refusal = |token: Option<&str>| {
        let (status, body) = q(token, "GET", traj, "");
        (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(refusal(None), (401, "unauthorized".into()));
    assert_eq!(
        refusal(Some("sl_0badc0de_0000")),
        (401, "unauthorized".into())
    );
    assert_eq!(refusal(Some(&ingest)), (403, "forbidden".into()));
    for token in [None, Some("sl_0badc0de_0000")] {
        asked.set(asked.get() + 1);
        assert_eq!(status_before_body(qa, token, "/v1/collision"), 401);
    }

    // A revoked key is refused within a renewal interval (500 ms here).
    assert_eq!(refusal(Some(&doomed)).0, 200);
    cli(&["revoke", id_of(&doomed)]);
    let revoked = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || refusal(Some(&doomed)).0 == 401),
        "a revoked key still answered"
    );
    let took = revoked.elapsed();
    eprintln!("revoked key refused {took:?} after the revocation");
    assert!(took < Duration::from_millis(2_500), "{took:?}");
    let (listed, _) = cli(&["list"]);
    assert!(
        listed.contains(&format!(
            "{}\tinvestigate\t3205080003\trevoked",
            id_of(&doomed)
        )),
        "{listed}"
    );

    // The audit log: one entry per request, the chain verified by `sightline audit
    // verify` once the node has stopped.
    q1.signal(libc::SIGTERM);
    assert!(q1.exited_within(Duration::from_secs(30)), "{}", q1.log());
    let dir = env.dir.path().join("replicas-query-1-audit");
    let verify = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["audit", "verify", "--data"])
        .arg(&dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        said.contains(&format!("{} entries, chain intact", asked.get())),
        "{said} (asked {})",
        asked.get()
    );
    let entries: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |key: &str, endpoint: &str, status: u16| {
        entries
            .iter()
            .find(|e| {
                e["key"] == key
                    && e["endpoint"].as_str().unwrap().starts_with(endpoint)
                    && e["status"] == status
            })
            .unwrap_or_else(|| panic!("no entry {key} {endpoint} {status}"))
    };
    let t = find(id_of(&scoped), "/v1/trajectory", 200);
    assert!(t["params"].as_str().unwrap().contains("subject="), "{t}");
    assert!(t["results"].as_u64().unwrap() > 0, "{t}");
    // Each stream's entry, with its count: as many as its pages'.
    let trajectories: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| e["key"] == id_of(&scoped) && e["endpoint"] == "/v1/trajectory")
        .collect();
    assert_eq!(trajectories.len(), 2 * straddling.len(), "{trajectories:?}");
    for pair in trajectories.chunks(2) {
        assert_eq!(pair[0]["results"], pair[1]["results"], "{pair:?}");
    }
    let c = find(id_of(&scoped), "/v1/collision", 403);
    assert!(
        c["params"].as_str().unwrap().contains(elsewhere),
        "the body: {c}"
    );
    find(id_of(&scoped), "/v1/events/", 404);
    find("-", "GET /v1/trajectory", 401);
    find("-", "POST /v1/collision", 401);
    find(id_of(&ingest), "GET /v1/trajectory", 403);
    find(id_of(&doomed), "/v1/trajectory", 200);
    assert!(entries
        .iter()
        .any(|e| e["key"].as_str().unwrap().starts_with("token_sha256:")));

    // A query node whose audit log cannot be written (a full disk) withholds every
    // answer, 503 `audit_unavailable`; a refusal is still answered as one.
    let (_q2, qa2) = env.spawn(
        "query",
        "query-2",
        &[("SIGHTLINE_CLUSTER_FAULT", "audit-disk-full")],
    );
    let qa2 = qa2.unwrap();
    let (status, body) = ask_as(qa2, Some(&scoped), "GET", &counts, "");
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{body}"
    );
    assert_eq!(ask_as(qa2, None, "GET", &counts, "").0, 401);
}
