//! The subject → partitions directory (`sightline_cluster::directory`): built by an
//! indexer for the city's past days, used by a query node so a one-subject question
//! asks only the partitions that saw the subject, with answers still equal to a
//! single node's (its first week rolled up too); a late event of a built day, in a
//! partition the directory does not name, found at once through its `late_days` note;
//! and damaged directories, which make the query ask every partition.

use std::net::SocketAddr;
use std::time::Duration;

use sightline_cluster::partition::partition_of;
use sightline_testkit::wait_until;

use sightline_cluster::directory::rollup::week_of;

use super::{ask, city_queries, query_city, Env, PARTITIONS, SERIAL};

/// The directory settings of the test's nodes: any past day is frozen at once, the
/// ingest nodes' reading of the frozen days may be 2 s old, the builder steps twice a
/// second.
const DIRECTORY: &str = "[directory]
min_age_ms = 0
frozen_view_ms = 2000
every_ms = 500
buckets = 16
";

/// Partition calls this query node has made so far (answered by its own replicas,
/// other nodes' or the indexers).
fn calls(addr: SocketAddr) -> u64 {
    let h = sightline_testkit::get(addr, "/health").body;
    let a = &h["answered"];
    ["local", "replica", "indexer"]
        .iter()
        .map(|k| a[k].as_u64().unwrap())
        .sum()
}

/// One trajectory page's events (ids taken out) and the partition calls it made.
fn trajectory_calls(addr: SocketAddr, target: &str) -> (serde_json::Value, u64) {
    let before = calls(addr);
    let r = sightline_testkit::get(addr, target);
    assert_eq!(r.status, 200, "{target}: {}", r.body);
    (super::without_ids(r.body), calls(addr) - before)
}

#[test]
fn subject_queries_ask_only_the_partitions_a_directory_names_and_late_events_are_found() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    // No builder while the city is ingested (its days, long past, would be frozen at
    // once and most of the city noted late): a third indexer builds afterwards.
    env.top_extra = format!("{DIRECTORY}build = false\n");
    let (_i1, a1) = env.ingest("ingest-1");
    let _x1 = env.indexer("index-1", &[]);
    let _x2 = env.indexer("index-2", &[]);
    let (q1, qa1) = env.query_node("query-1");
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let mut events: Vec<serde_json::Value> = Vec::new();
    for day in query_city() {
        for body in day {
            let r =
                sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
            assert_eq!(r.status, 200, "{}", r.body);
            env.post_body(a1, &body);
            events.extend(
                body.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
    }
    let mut days: std::collections::BTreeSet<i32> = events
        .iter()
        .map(|e| sightline_cluster::directory::day_of(e["ts"].as_i64().unwrap()))
        .collect();
    assert!(days.len() >= 2, "the city spans days: {days:?}");
    // The rest of the city's first week, a few events a day, so the week rolls up.
    let (monday, _) = week_of(*days.first().unwrap());
    let base = sightline_cluster::directory::day_of(1_764_547_200_000);
    for d in (monday..monday + 7).filter(|d| !days.contains(d)) {
        let (body, _) = env.batch_on(3, i64::from(d - base));
        let r = sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(env.post_body(a1, &body), 3);
        events.extend(
            body.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    days.extend(monday..monday + 7);
    env.wait_committed_events(events.len() as u64);

    env.top_extra = DIRECTORY.into();
    let _x3 = env.indexer("index-3", &[]);
    let (asked, range) = city_queries(&events);
    let meta = env.meta();
    let built = || {
        let dirs = env.rt.block_on(meta.directories_of("day")).unwrap();
        dirs.iter()
            .map(|d| d.start_day)
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(120), || built() == days),
        "directories built for {:?}, want {days:?}",
        built()
    );
    let week = || env.rt.block_on(meta.directories_of("week")).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || week()
            .iter()
            .any(|w| w.start_day == monday)),
        "the week of {monday} not rolled up: {:?}",
        week()
    );

    // Every family answers as the single node, routed or not.
    for q in &asked {
        let (want, got) = (ask(single.addr, q), ask(qa1, q));
        assert!(
            got == want,
            "{} {} differs:\n cluster {got}\n single  {want}",
            q.name,
            q.target
        );
    }

    // A vehicle seen in one community only: its trajectory asks one partition, where
    // a range reaching today (no directory) asks them all.
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for e in events.iter().filter(|e| e["kind"] == "vehicle") {
        seen.entry(e["subject"].as_str().unwrap().into())
            .or_default()
            .insert(e["community"].as_str().unwrap().into());
    }
    let (subject, community) = seen
        .iter()
        .find(|(_, cs)| cs.len() == 1)
        .map(|(s, cs)| (s.clone(), cs.iter().next().unwrap().clone()))
        .expect("a vehicle of one community");
    let enc = sightline_testkit::enc;
    let target = format!(
        "/v1/trajectory?kind=vehicle&subject={}&{range}&limit=1000",
        enc(&subject)
    );
    let (got, n) = trajectory_calls(qa1, &target);
    let want = super::without_ids(sightline_testkit::get(single.addr, &target).body);
    assert_eq!(got, want);
    assert!(!got["events"].as_array().unwrap().is_empty());
    // `fields` as the single node answers it: those members only, stays unchanged.
    let some = format!("{target}&fields=ts,device");
    let (got_some, _) = trajectory_calls(qa1, &some);
    assert_eq!(
        got_some,
        super::without_ids(sightline_testkit::get(single.addr, &some).body)
    );
    assert_eq!(got_some["stays"], got["stays"]);
    // (The members as a set: serde_json's map sorts them.)
    assert_eq!(
        got_some["events"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["device", "ts"]
    );
    assert_eq!(
        n, 1,
        "a one-community subject over built days asks one partition"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let h = sightline_testkit::get(qa1, "/health").body;
    assert!(h["directory_cache_bytes"].as_u64().unwrap() > 0, "{h}");
    let to_today = format!(
        "/v1/trajectory?kind=vehicle&subject={}&from={}&to={}&limit=1000",
        enc(&subject),
        now - 300 * 86_400_000,
        now + 1
    );
    let (_, all) = trajectory_calls(qa1, &to_today);
    assert_eq!(
        all,
        u64::from(PARTITIONS),
        "today has no directory: every partition"
    );
    eprintln!(
        "fan-out of a one-community trajectory: {n} call(s) with directories, {PARTITIONS} without"
    );

    // A late event of a built day, in another partition than the subject's: acknowledged,
    // noted, and found by the next trajectory (without the note the directory would
    // keep that partition out).
    let home = partition_of(&community, PARTITIONS);
    let elsewhere = (0..10)
        .map(|c| format!("32050800{c:02}"))
        .chain(
            events
                .iter()
                .map(|e| e["community"].as_str().unwrap().to_string()),
        )
        .find(|c| partition_of(c, PARTITIONS) != home)
        .expect("a community of another partition");
    let ts = events
        .iter()
        .filter(|e| e["subject"] == subject.as_str())
        .map(|e| e["ts"].as_i64().unwrap())
        .min()
        .unwrap()
        + 1;
    let late = serde_json::json!({
        "ts": ts,
        "community": elsewhere,
        "device": format!("{}011210009999", &elsewhere[..8]),
        "kind": "vehicle",
        "subject": subject,
        "direction": "in",
        "attrs": {"source_id": "late-1"},
    })
    .to_string()
        + "\n";
    let r = sightline_testkit::post(single.addr, "/v1/events", "application/x-ndjson", &late);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(env.post_body(a1, &late), 1);
    let day = sightline_cluster::directory::day_of(ts);
    let (_, noted) = env.rt.block_on(meta.directories_for(day, day)).unwrap();
    assert_eq!(
        noted,
        vec![partition_of(&elsewhere, PARTITIONS)],
        "the late event's partition and day are noted before its answer"
    );
    let want = super::without_ids(sightline_testkit::get(single.addr, &target).body);
    assert!(
        wait_until(Duration::from_secs(30), || trajectory_calls(qa1, &target).0
            == want),
        "the late event is not found: {} vs {want}",
        trajectory_calls(qa1, &target).0
    );

    // Every registered directory is named for the janitor, which removes listed
    // objects nothing names (an unregistered one: `main.rs`'s janitor test).
    let named = env.rt.block_on(meta.committed_keys()).unwrap();
    for kind in ["day", "week"] {
        for row in env.rt.block_on(meta.directories_of(kind)).unwrap() {
            assert!(
                named.contains(&row.object_key),
                "{kind}: {}",
                row.object_key
            );
        }
    }

    // A directory that does not read (its header damaged, under a new key so no cache
    // holds it; the day's own and its week's): every partition is asked, logged, and
    // the answer is still right.
    let objects = sightline_cluster::objects::Objects::new(&env.config().s3).unwrap();
    for kind in ["day", "week"] {
        let rows = env.rt.block_on(meta.directories_of(kind)).unwrap();
        let row = rows.iter().find(|r| r.covers(day)).unwrap();
        let mut bytes = env
            .rt
            .block_on(objects.get(&row.object_key))
            .unwrap()
            .to_vec();
        bytes[40] ^= 1;
        let damaged = format!("dir/damaged/{kind}");
        env.rt
            .block_on(objects.put_create(&damaged, bytes.into()))
            .unwrap();
        env.pg.psql(&format!(
            "UPDATE directories SET object_key = '{damaged}' WHERE object_key = '{}'",
            row.object_key
        ));
    }
    let (got, n) = trajectory_calls(qa1, &target);
    assert_eq!(got, want);
    assert!(
        n >= u64::from(PARTITIONS),
        "{n} calls with a damaged directory"
    );
    assert!(
        q1.log().contains("a directory cannot be read"),
        "not logged: {}",
        q1.log()
    );
}
