//! The load generator against a real server on 127.0.0.1: mixed load is reported per
//! operation, bounds stop it, and a server that is not there is an error it counts;
//! GA/T 1400 uploads carry pictures and the pictures are read back while they run.

use std::time::Duration;

use sightline_benches::gat1400;
use sightline_benches::load::{self, ingest_stream, query_stream, Limits};
use sightline_benches::{Traffic, TrafficConfig};
use sightline_testkit::{send, start};

fn small_city() -> Traffic {
    Traffic::new(TrafficConfig {
        communities: 2,
        days: 2,
        households_per_community: 100,
        ..Default::default()
    })
}

#[test]
fn mixed_load_is_reported_per_operation_and_bounds_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let addr = server.addr;
    let city = small_city();
    let events: usize = city.days().map(|d| d.len()).sum();

    // The whole city once, in binary batches: every event acknowledged.
    let once = ingest_stream(&city, 500, true, 2, None, true);
    let limits = Limits {
        duration: Duration::from_secs(60),
        max_events: None,
    };
    let r = load::run(addr, vec![once], limits, None, |_| {});
    assert_eq!(r.operations[0].items as usize, events);
    assert!(
        r.operations[0].errors.is_empty(),
        "{:?}",
        r.operations[0].errors
    );

    // Paced NDJSON ingest with three query kinds for about a second and a half.
    let streams = vec![
        ingest_stream(&city, 200, false, 1, Some(2000.0), false),
        query_stream(&city, "trajectory", 2, None),
        query_stream(&city, "cooccurrence", 1, None),
        query_stream(&city, "search", 1, Some(50.0)),
    ];
    let limits = Limits {
        duration: Duration::from_millis(1500),
        max_events: None,
    };
    let mut ticks = 0;
    let r = load::run(addr, streams, limits, Some(std::process::id()), |line| {
        assert!(
            line.contains("ingest:") && line.contains("search:"),
            "{line}"
        );
        ticks += 1;
    });
    assert!(ticks >= 1, "a progress line every second");
    assert!(r.seconds >= 1.5 && r.seconds < 10.0, "{}", r.seconds);
    let names: Vec<&str> = r.operations.iter().map(|o| o.op.as_str()).collect();
    assert_eq!(names, ["ingest", "trajectory", "cooccurrence", "search"]);
    for o in &r.operations {
        assert!(o.requests > 0 && o.items > 0, "{o:?}");
        assert!(o.errors.is_empty(), "{o:?}");
        let l = &o.latency_ms;
        assert!(
            l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
            "{l:?}"
        );
    }
    // Pacing holds the rate near its target (2,000 events/s; 50 searches/s).
    let ingest = &r.operations[0];
    assert!(
        ingest.items_per_second < 2600.0,
        "{}",
        ingest.items_per_second
    );
    assert!(
        r.operations[3].items_per_second < 65.0,
        "{}",
        r.operations[3].items_per_second
    );
    assert!(r.server_cpu_seconds.is_some() && r.generator_cpu_seconds > 0.0);
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert!(json["operations"][1]["latency_ms"]["p999"].is_number());
    assert!(r.text().contains("trajectory:"));

    // A count bound ends a long run early.
    let limits = Limits {
        duration: Duration::from_secs(60),
        max_events: Some(1000),
    };
    let r = load::run(
        addr,
        vec![ingest_stream(&city, 100, true, 1, None, false)],
        limits,
        None,
        |_| {},
    );
    assert!(r.operations[0].items >= 1000 && r.seconds < 30.0, "{r:?}");
}

#[test]
fn a_server_that_is_not_there_is_counted_as_errors() {
    // A port that was free a moment ago: connecting is refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let city = small_city();
    let limits = Limits {
        duration: Duration::from_millis(300),
        max_events: None,
    };
    let r = load::run(
        addr,
        vec![query_stream(&city, "trajectory", 1, Some(100.0))],
        limits,
        None,
        |_| {},
    );
    let o = &r.operations[0];
    assert_eq!(o.items, 0);
    assert!(
        o.errors.keys().all(|k| k.starts_with("io:")),
        "{:?}",
        o.errors
    );
    assert!(o.errors.values().sum::<u64>() > 0);
}

#[test]
fn a_stream_with_its_own_address_goes_there() {
    // The run's address refuses connections; the queries' own address is a server
    // (as a cluster's ingest and query nodes listen apart: `mix --query-addr`).
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let city = small_city();
    let mut queries = query_stream(&city, "trajectory", 1, Some(100.0));
    queries.addr = Some(server.addr);
    let limits = Limits {
        duration: Duration::from_millis(500),
        max_events: None,
    };
    let ingest = ingest_stream(&city, 100, true, 1, Some(1000.0), false);
    let r = load::run(refused, vec![ingest, queries], limits, None, |_| {});
    let (ingest, queries) = (&r.operations[0], &r.operations[1]);
    assert!(ingest.items == 0 && !ingest.errors.is_empty(), "{ingest:?}");
    assert!(
        queries.items > 0 && queries.errors.is_empty(),
        "{queries:?}"
    );
}

#[test]
fn ndjson_files_are_batched_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load::ndjson_files_stream(dir.path(), 4, false, 1, None, true).is_err());
    std::fs::write(
        dir.path().join("b.ndjson"),
        "{\"n\":4}\n{\"n\":5}\n\n{\"n\":6}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a.ndjson"),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not events").unwrap();
    let s = load::ndjson_files_stream(dir.path(), 4, false, 1, None, true).unwrap();
    let bodies: Vec<(String, u64)> = s
        .requests
        .iter()
        .map(|r| (String::from_utf8(r.body.clone()).unwrap(), r.items))
        .collect();
    assert_eq!(
        bodies,
        [
            ("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}".to_string(), 4),
            ("{\"n\":5}\n{\"n\":6}".to_string(), 2)
        ]
    );
    assert!(
        s.requests[0].head.contains("Content-Length: 31\r\n"),
        "{}",
        s.requests[0].head
    );
}

#[test]
fn generated_files_ingest_as_ndjson_and_as_binary_batches() {
    let files = tempfile::tempdir().unwrap();
    let city = small_city();
    let mut n = 0;
    for (d, day) in city.days().enumerate() {
        let text: Vec<String> = day
            .iter()
            .map(sightline_benches::traffic::to_ndjson)
            .collect();
        n += text.len() as u64;
        std::fs::write(
            files.path().join(format!("day-{d:03}.ndjson")),
            text.join("\n"),
        )
        .unwrap();
    }
    for binary in [false, true] {
        let store = tempfile::tempdir().unwrap();
        let server = start(store.path(), |_| {});
        let addr = server.addr;
        let s = load::ndjson_files_stream(files.path(), 700, binary, 2, None, true).unwrap();
        let limits = Limits {
            duration: Duration::from_secs(60),
            max_events: None,
        };
        let r = load::run(addr, vec![s], limits, None, |_| {});
        assert_eq!(
            r.operations[0].items, n,
            "binary {binary}: {:?}",
            r.operations[0]
        );
        assert!(r.operations[0].errors.is_empty());
    }
    std::fs::write(files.path().join("z.ndjson"), "{\"ts\":\"soon\"}").unwrap();
    assert!(load::ndjson_files_stream(files.path(), 700, true, 1, None, true).is_err());
}

#[test]
fn pictures_are_distinct_jpegs_of_the_size_asked() {
    let a = gat1400::picture(1, 200_000);
    let b = gat1400::picture(2, 200_000);
    assert_eq!((a.len(), b.len()), (200_000, 200_000));
    assert_eq!(&a[..4], [0xFF, 0xD8, 0xFF, 0xE0]);
    assert_ne!(a, b);
    assert_eq!(
        a,
        gat1400::picture(1, 200_000),
        "the same bytes on every run"
    );
    assert_eq!(gat1400::picture(3, 0).len(), gat1400::MIN_PICTURE_BYTES);
}

#[test]
fn gat1400_uploads_carry_pictures_that_are_read_back_while_they_run() {
    let city = small_city();
    let files = tempfile::tempdir().unwrap();
    for (d, day) in city.days().enumerate() {
        let (vehicles, _) = sightline_benches::traffic::to_gat1400(&day);
        std::fs::write(
            files.path().join(format!("day-{d:03}-motorvehicles.json")),
            vehicles.to_string(),
        )
        .unwrap();
    }
    let objects = gat1400::vehicle_objects(files.path(), Some(600)).unwrap();
    assert_eq!(objects.iter().map(Vec::len).sum::<usize>(), 600);

    // Without pictures the bodies are the files' objects as they are, a batch never
    // spanning two files.
    let plain = gat1400::upload_requests(&objects, 400, |_| None);
    let first = serde_json::json!({"MotorVehicleListObject":
        {"MotorVehicleObject": &objects[0][..400]}});
    assert_eq!(plain[0].body, first.to_string().into_bytes());
    assert_eq!(plain[0].picture_bytes, 0);
    assert_eq!(plain.len(), gat1400::batches(&objects, 400).len());
    assert!(plain.len() > 600 / 400 + 1, "batches end with their file");

    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let addr = server.addr;
    gat1400::register_catalog(addr, &city).unwrap();
    gat1400::register_platform(addr).unwrap();
    let bytes = 3_000;
    let requests =
        gat1400::upload_requests(&objects, 50, |i| Some(gat1400::picture(i as u64, bytes)));
    let mut upload = gat1400::upload_stream(requests, 2, Some(400.0));
    let reads = gat1400::picture_reads(&city, &objects, 50, 50.0, 1, None);
    upload.on_ack = Some(reads.on_upload_ack);
    let limits = Limits {
        duration: Duration::from_secs(60),
        max_events: Some(600),
    };
    let r = load::run(
        addr,
        vec![upload, reads.trajectory, reads.images],
        limits,
        None,
        |_| {},
    );
    let (up, images) = (&r.operations[0], &r.operations[2]);
    assert_eq!(up.items, 600, "{up:?}");
    assert_eq!(up.pictures.as_ref().unwrap().bytes, 600 * bytes as u64);
    for o in &r.operations {
        assert!(o.errors.is_empty(), "{o:?}");
    }
    assert!(images.items > 0, "{images:?}");
    assert_eq!(
        images.pictures.as_ref().unwrap().bytes,
        images.items * bytes as u64
    );
    assert!(r.text().contains("MB/s of pictures"), "{}", r.text());

    // A picture the server lists is the one sent.
    let stored = sightline_testkit::get(addr, "/v1/feed?after=0&limit=1");
    let event = &stored.body["events"][0];
    let id = event["images"][0]["id"].as_str().unwrap();
    let request = format!("GET /v1/images/{id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answer = send(addr, request.as_bytes());
    assert_eq!(answer.status, 200);
    let sent = objects[0]
        .iter()
        .position(|o| o["MotorVehicleID"] == event["attrs"]["source_id"])
        .unwrap();
    assert_eq!(answer.body, gat1400::picture(sent as u64, bytes));
}
