//! SIGKILL during GA/T 1400 uploads with pictures: the server process is killed at a
//! different moment each round while the load generator uploads vehicle objects, each
//! with a JPEG picture (`POST /VIID/MotorVehicles`, 25 objects a request, pictures of
//! 0.5–24 KB, every eighth the same bytes as the one before it), and reads pictures
//! (`GET /v1/images/{id}` of the ids trajectory answers list); then it is restarted. An
//! object counts as acknowledged when its upload was answered 200 with `StatusCode` 0
//! for it. A request holding an object not acknowledged is sent again next round, whole,
//! as a platform retries.
//!
//! Checked: while the rounds run, a picture an answer listed is never answered other than
//! 200 (a failed connection aside). After the last kill, every acknowledged object's
//! event is found by its plate's trajectory, and its one `images` entry answers 200 with
//! exactly the bytes sent. Once everything unacknowledged is sent again, every object is
//! stored once, every `images` entry of every event (the change feed) answers with its
//! object's exact bytes, and the packs hold each distinct picture of a shard once, every
//! record whole (`pictures::verify`): nothing half-written is kept or served.
//!
//! `SIGHTLINE_PICTURE_KILL_ROUNDS=100 cargo test --release -p sightline-benches --test
//! crash_load pictures -- --nocapture` for a long run (CI runs 6 rounds).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sightline_benches::gat1400::{self, batches, picture_reads, upload_requests, upload_stream};
use sightline_benches::load::{self, Limits, Request};
use sightline_benches::traffic::to_gat1400;
use sightline_benches::{Traffic, TrafficConfig};
use sightline_storage::pictures::{PictureId, RECORD_HEADER};
use sightline_testkit::{get, send};

use super::{rounds_asked, run_until_killed, serve_until_killed, spawn, CHILD};

const TEST: &str =
    "pictures::sigkill_during_picture_uploads_keeps_every_acknowledged_object_and_its_exact_picture";

/// Objects per upload.
const BATCH: usize = 25;
/// Upload pace while the kills come, objects a second (rounds last 150–600 ms).
const UPLOAD_RATE: f64 = 1_000.0;
/// Bytes of a pack's header (`storage/FORMAT.md`, "Picture packs").
const PACK_HEADER: u64 = 8;

/// Object `i`'s picture: 0.5–24 KB, distinct, but every eighth the same bytes as the
/// one before it (stored once when both land in the same shard's pack).
fn picture(i: usize) -> Vec<u8> {
    let i = if i % 8 == 7 { i - 1 } else { i };
    gat1400::picture(i as u64, 500 + i * 7_919 % 24_000)
}

/// The first `n` vehicle objects of `traffic`, as GA/T 1400 upload objects (a day at a
/// time: object ids hold the time and the read's number within its day).
fn vehicle_objects(traffic: &Traffic, n: usize) -> Vec<Value> {
    let mut objects = Vec::new();
    for day in traffic.days() {
        let (mut v, _) = to_gat1400(&day);
        let Value::Array(list) = v["MotorVehicleListObject"]["MotorVehicleObject"].take() else {
            unreachable!("to_gat1400 writes a list")
        };
        objects.extend(list.into_iter().take(n - objects.len()));
        if objects.len() == n {
            return objects;
        }
    }
    panic!("the city has fewer than {n} vehicle reads");
}

/// Requests `pending` as one upload stream over two connections at `rate`; each
/// object an answer reports stored (`StatusCode` 0) is marked in `acked`, any other
/// status is recorded in `refused`.
fn uploads(
    pending: Vec<usize>,
    requests: &[Request],
    object_of: &Arc<HashMap<String, usize>>,
    acked: &Arc<Vec<AtomicBool>>,
    refused: &Arc<Mutex<Vec<String>>>,
    rate: Option<f64>,
) -> load::Stream {
    let (object_of, acked, refused) = (object_of.clone(), acked.clone(), refused.clone());
    let batch: Vec<Request> = pending.iter().map(|&i| requests[i].clone()).collect();
    let mut s = upload_stream(batch, 2, rate);
    s.on_answer = Some(Arc::new(move |_, body: &[u8]| {
        let answer: Value = serde_json::from_slice(body).unwrap();
        let statuses = answer["ResponseStatusListObject"]["ResponseStatusObject"]
            .as_array()
            .unwrap_or_else(|| panic!("not a status list: {answer}"));
        for st in statuses {
            let id = st["Id"].as_str().unwrap();
            match st["StatusCode"].as_i64() {
                Some(0) => acked[object_of[id]].store(true, Ordering::SeqCst),
                _ => refused.lock().unwrap().push(st.to_string()),
            }
        }
    }));
    s
}

/// The requests holding an object not yet acknowledged.
fn unacked(batched: &[(usize, usize)], acked: &[AtomicBool]) -> Vec<usize> {
    (0..batched.len())
        .filter(|&r| {
            let (first, n) = batched[r];
            (first..first + n).any(|i| !acked[i].load(Ordering::SeqCst))
        })
        .collect()
}

/// A server process killed when dropped, so a failing check leaves none behind.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /v1/images/{id}`: status and bytes.
fn image(addr: SocketAddr, id: &str) -> (u16, Vec<u8>) {
    let request =
        format!("GET /v1/images/{id} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let a = send(addr, request.as_bytes());
    (a.status, a.body)
}

/// Every event in the store, from the change feed.
fn feed(addr: SocketAddr) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0u64;
    loop {
        let page = get(addr, &format!("/v1/feed?after={after}&limit=1000"));
        assert_eq!(page.status, 200, "{}", page.body);
        let Value::Array(events) = page.body["events"].clone() else {
            panic!("{}", page.body)
        };
        if events.is_empty() {
            return all;
        }
        all.extend(events);
        after = page.body["next_after"].as_u64().unwrap();
    }
}

/// An event's stored pictures: (id, `bytes`) of each `images` entry.
fn images_of(event: &Value) -> Vec<(String, u64)> {
    event["images"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|im| {
            let id = im["id"].as_str().unwrap_or_else(|| panic!("{im}"));
            (id.to_string(), im["bytes"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn sigkill_during_picture_uploads_keeps_every_acknowledged_object_and_its_exact_picture() {
    if let Some(dir) = std::env::var_os(CHILD) {
        serve_until_killed(&dir);
    }
    let rounds = rounds_asked("SIGHTLINE_PICTURE_KILL_ROUNDS", 6);
    // Enough objects for every round at the pace, and more left for the retry (the
    // city has 250–400 vehicle reads a day; queries may span 400 days).
    let wanted = (rounds as f64 * 0.4 * UPLOAD_RATE) as usize + 300;
    let traffic = Traffic::new(TrafficConfig {
        seed: 17,
        communities: 2,
        days: (wanted / 250 + 2).min(400) as u32,
        households_per_community: 80,
        visitor_vehicles: 150,
        ..Default::default()
    });
    let objects = vehicle_objects(&traffic, wanted);
    let files = vec![objects];
    let objects = &files[0];
    let pictures: Vec<Vec<u8>> = (0..objects.len()).map(picture).collect();
    let requests = upload_requests(&files, BATCH, |i| Some(pictures[i].clone()));
    let batched: Vec<(usize, usize)> = batches(&files, BATCH)
        .into_iter()
        .map(|(first, chunk)| (first, chunk.len()))
        .collect();
    let object_of: Arc<HashMap<String, usize>> = Arc::new(
        objects
            .iter()
            .enumerate()
            .map(|(i, o)| (o["MotorVehicleID"].as_str().unwrap().to_string(), i))
            .collect(),
    );
    assert_eq!(object_of.len(), objects.len(), "object ids are distinct");
    let acked: Arc<Vec<AtomicBool>> =
        Arc::new((0..objects.len()).map(|_| AtomicBool::new(false)).collect());
    let refused = Arc::new(Mutex::new(Vec::new()));
    let picture_bytes: usize = pictures.iter().map(Vec::len).sum();
    let _ = writeln!(
        std::io::stderr(),
        "{} objects, {picture_bytes} bytes of pictures, in {} uploads",
        objects.len(),
        requests.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let mut reads_answered = 0;
    for round in 0..rounds {
        let (child, addr) = spawn(dir.path(), TEST);
        gat1400::register_catalog(addr, &traffic).unwrap();
        gat1400::register_platform(addr).unwrap();
        let wait = Duration::from_millis(150 + (round * 7919 % 450) as u64);
        let pending = unacked(&batched, &acked);
        let reads = picture_reads(&traffic, &files, BATCH, 100.0, 1, Some(200.0));
        let mut upload = uploads(
            pending.clone(),
            &requests,
            &object_of,
            &acked,
            &refused,
            Some(UPLOAD_RATE),
        );
        let learn = reads.on_upload_ack;
        upload.on_ack = Some(Arc::new(move |j| learn(pending[j])));
        let streams = vec![upload, reads.trajectory, reads.images];
        let report = run_until_killed(round, child, addr, wait, streams);
        for op in &report.operations {
            for kind in op.errors.keys() {
                assert!(
                    kind.starts_with("io"),
                    "round {round}: {} answered {kind}",
                    op.op
                );
            }
        }
        reads_answered += report.operations[2].items;
        let refused = refused.lock().unwrap();
        assert!(refused.is_empty(), "objects refused: {refused:?}");
    }
    let acked_in_rounds = acked.iter().filter(|a| a.load(Ordering::SeqCst)).count();
    assert!(
        acked_in_rounds > 0 && acked_in_rounds < objects.len(),
        "the rounds should acknowledge some objects and leave others ({acked_in_rounds} of {})",
        objects.len()
    );

    // After the last kill: every acknowledged object, through its plate's trajectory.
    let (server, addr) = spawn(dir.path(), TEST);
    let server = Server(server);
    let durable_unacked = feed(addr)
        .iter()
        .filter(|e| {
            let id = e["attrs"]["source_id"].as_str().unwrap();
            !acked[object_of[id]].load(Ordering::SeqCst)
        })
        .count();
    let cfg = traffic.config();
    let range = format!(
        "from={}&to={}",
        cfg.start_ms,
        cfg.start_ms + cfg.days as i64 * 86_400_000
    );
    let mut by_plate: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, o) in objects.iter().enumerate() {
        if acked[i].load(Ordering::SeqCst) {
            by_plate
                .entry(o["PlateNo"].as_str().unwrap())
                .or_default()
                .push(i);
        }
    }
    for (plate, acked_objects) in &by_plate {
        let subject = form_urlencoded::byte_serialize(plate.as_bytes()).collect::<String>();
        let t = get(
            addr,
            &format!("/v1/trajectory?kind=vehicle&subject={subject}&{range}&limit=10000"),
        );
        assert_eq!(t.status, 200, "{}", t.body);
        let mut found: HashMap<&str, Vec<&Value>> = HashMap::new();
        for e in t.body["events"].as_array().unwrap() {
            let id = e["attrs"]["source_id"].as_str().unwrap();
            found.entry(id).or_default().push(e);
        }
        for &i in acked_objects {
            let id = objects[i]["MotorVehicleID"].as_str().unwrap();
            let events = found.get(id).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(events.len(), 1, "acknowledged object {id}: {events:?}");
            let images = images_of(events[0]);
            assert_eq!(images.len(), 1, "acknowledged object {id}: {images:?}");
            let (status, bytes) = image(addr, &images[0].0);
            assert_eq!(
                status, 200,
                "acknowledged object {id}'s picture {}",
                images[0].0
            );
            assert!(
                bytes == pictures[i],
                "acknowledged object {id}: other bytes served"
            );
        }
    }

    // The platform sends again what it never saw acknowledged.
    gat1400::register_catalog(addr, &traffic).unwrap();
    gat1400::register_platform(addr).unwrap();
    let everything = Limits {
        duration: Duration::from_secs(600),
        max_events: None,
    };
    let retry = uploads(
        unacked(&batched, &acked),
        &requests,
        &object_of,
        &acked,
        &refused,
        None,
    );
    let report = load::run(addr, vec![retry], everything, None, |_| {});
    assert!(report.operations[0].errors.is_empty(), "{report:?}");
    assert!(refused.lock().unwrap().is_empty());
    assert!(unacked(&batched, &acked).is_empty());

    // Every event in the store is an object sent, stored once, and each of its pictures
    // answers with exactly that object's bytes. Distinct pictures per pack, for below.
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut in_packs: HashMap<(String, i32), HashMap<u64, u64>> = HashMap::new();
    for e in &feed(addr) {
        let id = e["attrs"]["source_id"].as_str().unwrap();
        let i = *object_of
            .get(id)
            .unwrap_or_else(|| panic!("an event no one sent: {e}"));
        *stored.entry(id.to_string()).or_default() += 1;
        let images = images_of(e);
        assert_eq!(images.len(), 1, "{e}");
        let (pid, bytes) = &images[0];
        assert_eq!(*bytes, pictures[i].len() as u64, "{e}");
        let (status, served) = image(addr, pid);
        assert_eq!(status, 200, "{pid} of {id}");
        assert!(served == pictures[i], "{pid} of {id}: other bytes served");
        let p: PictureId = pid.parse().unwrap();
        in_packs
            .entry((p.community, p.span))
            .or_default()
            .insert(p.offset, *bytes);
        // The object as uploaded is kept beside its pictures: a record of its own.
        let url = e["object"]
            .as_str()
            .unwrap_or_else(|| panic!("no object kept: {e}"));
        let kept = send(
            addr,
            format!("GET {url} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(kept.status, 200, "{url} of {id}");
        let object: Value = serde_json::from_slice(&kept.body).unwrap();
        assert_eq!(object["MotorVehicleID"], id, "{url}: another object kept");
        let o: PictureId = url.trim_start_matches("/v1/objects/").parse().unwrap();
        in_packs
            .entry((o.community, o.span))
            .or_default()
            .insert(o.offset, kept.body.len() as u64);
    }
    assert_eq!(stored.len(), objects.len(), "every object stored");
    assert!(stored.values().all(|&n| n == 1), "an object stored twice");
    drop(server);

    // The packs hold each distinct picture of their shard once, every record whole:
    // nothing from a cut-off upload stays behind, and no retry stored its bytes again.
    let packs = dir.path().join("pictures");
    let (checked, damaged) =
        sightline_storage::pictures::verify(&packs, sightline_storage::io::os().as_ref()).unwrap();
    assert!(damaged.is_empty(), "{damaged:?}");
    let distinct: usize = in_packs.values().map(HashMap::len).sum();
    assert_eq!(
        checked, distinct,
        "records in the packs, against the pictures and objects listed"
    );
    let want: u64 = in_packs
        .values()
        .map(|p| PACK_HEADER + p.values().map(|b| RECORD_HEADER as u64 + b).sum::<u64>())
        .sum();
    let on_disk: u64 = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(
        on_disk, want,
        "bytes of the packs, against the pictures they hold"
    );
    let shared = (0..objects.len()).filter(|i| i % 8 == 7).count();
    let _ = writeln!(
        std::io::stderr(),
        "{rounds} SIGKILL rounds: {acked_in_rounds} of {} objects acknowledged during the \
         rounds, each found with its exact picture ({durable_unacked} more durable though \
         their answer never arrived); {reads_answered} picture reads answered while the \
         kills came; after retrying, all stored once, {distinct} distinct pictures \
         in {} packs ({shared} objects share a picture with the one before), {on_disk} bytes, \
         every record whole",
        objects.len(),
        in_packs.len(),
    );
}
