//! Subscriptions on a cluster: kept in PostgreSQL, made on a query node
//! (`/v1/subscriptions`) or by a platform on an ingest node (`/VIID/Subscribes`),
//! delivered by whichever query node holds each one's lease, to receivers that are
//! small HTTP servers of this test. The bodies are compared with what a single-node
//! `serve` fed the same events sends; the lease holder is killed mid-delivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sightline_testkit::gat1400::{register, viid};

use super::*;

/// What a receiver got: the path, `User-Identify`, the body.
type Got = Arc<Mutex<Vec<(String, Option<String>, Value)>>>;

/// A receiver on 127.0.0.1: records every request's body as it arrives, then (after
/// `delay_ms`) answers 200 with a GA/T 1400 status of 0.
struct Receiver {
    addr: SocketAddr,
    got: Got,
    delay_ms: Arc<AtomicU64>,
    /// What it answers (GA/T 1400 status 0, unless set).
    answer: Arc<Mutex<Value>>,
    /// Requests whose answer is not sent yet.
    in_flight: Arc<AtomicUsize>,
}

impl Receiver {
    fn start(rt: &tokio::runtime::Runtime) -> Receiver {
        use http_body_util::BodyExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Got = Arc::default();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(
            json!({"ResponseStatusListObject": {"ResponseStatusObject": [
            {"Id": "", "StatusCode": 0, "StatusString": "正常"}]}}),
        ));
        let (g, d, f, a) = (
            got.clone(),
            delay_ms.clone(),
            in_flight.clone(),
            answer.clone(),
        );
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (g, d, f, a) = (g.clone(), d.clone(), f.clone(), a.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (g, d, f, a) = (g.clone(), d.clone(), f.clone(), a.clone());
                            async move {
                                f.fetch_add(1, Ordering::SeqCst);
                                let path = req.uri().path().to_string();
                                let who = req
                                    .headers()
                                    .get("user-identify")
                                    .and_then(|v| v.to_str().ok())
                                    .map(str::to_string);
                                let body = req.into_body().collect().await.unwrap().to_bytes();
                                let v: Value = serde_json::from_slice(&body).unwrap();
                                g.lock().unwrap().push((path, who, v));
                                let wait = d.load(Ordering::SeqCst);
                                tokio::time::sleep(Duration::from_millis(wait)).await;
                                f.fetch_sub(1, Ordering::SeqCst);
                                let ok = a.lock().unwrap().clone();
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(hyper::body::Bytes::from(
                                        ok.to_string(),
                                    )),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            got,
            delay_ms,
            answer,
            in_flight,
        }
    }

    fn bodies(&self) -> Vec<(String, Option<String>, Value)> {
        self.got.lock().unwrap().clone()
    }

    /// Every event of every JSON batch, by source id, each batch's index with it.
    fn events(&self) -> Vec<(usize, Value)> {
        let mut out = Vec::new();
        for (i, (_, _, b)) in self.bodies().iter().enumerate() {
            for e in b["events"].as_array().into_iter().flatten() {
                out.push((i, e.clone()));
            }
        }
        out
    }

    /// Every `MotorVehicleObject` of every notification.
    fn vehicles(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for (_, _, b) in self.bodies() {
            let list = &b["SubscribeNotificationListObject"]["SubscribeNotificationObject"];
            for n in list.as_array().into_iter().flatten() {
                let objects = &n["MotorVehicleObjectList"]["MotorVehicleObject"];
                out.extend(objects.as_array().into_iter().flatten().cloned());
            }
        }
        out
    }
}

/// The node delivering subscription `id`, as a listing says.
fn holder_of<'a>(listed: &'a Value, id: &str) -> &'a Value {
    let all = listed["subscriptions"].as_array();
    let one = all.into_iter().flatten().find(|s| s["id"] == id);
    &one.unwrap_or_else(|| panic!("{id} not in {listed}"))["status"]["holder"]
}

fn source_id(e: &Value) -> String {
    e["attrs"]["source_id"].as_str().unwrap_or("").to_string()
}

/// An event as both servers send it, but its id (each numbers its own).
fn without_id(e: &Value) -> Value {
    let mut e = e.clone();
    e.as_object_mut().unwrap().remove("id");
    e
}

#[test]
fn subscription_leases_fence_a_holder_replaced_changed_or_deleted() {
    let pg = Postgres::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Meta::connect(&pg.conninfo()).await.unwrap();
        m.create(4).await.unwrap();
        let body = r#"{"id":"s1","url":"http://127.0.0.1:9/"}"#;
        assert!(m.put_subscription("s1", "key-a", body, "0").await.unwrap());
        // Another owner's id is not taken over.
        assert!(!m
            .put_subscription("s1", "key-b", body, "0:9")
            .await
            .unwrap());
        assert_eq!(m.free_subscriptions().await.unwrap(), ["s1"]);
        // One holder at a time.
        let a = m
            .acquire_subscription("s1", "node-a", 60_000)
            .await
            .unwrap();
        let a = a.expect("free: taken");
        assert_eq!((a.cursor.as_str(), a.body_json.contains("s1")), ("0", true));
        assert!(m
            .acquire_subscription("s1", "node-b", 60_000)
            .await
            .unwrap()
            .is_none());
        assert!(m.free_subscriptions().await.unwrap().is_empty());
        assert!(m
            .advance_subscription("s1", a.epoch, "1:5", 3, Some(7))
            .await
            .unwrap());
        assert!(m.renew_subscription("s1", a.epoch, 60_000).await.unwrap());
        let row = m.subscription("s1").await.unwrap().unwrap();
        assert_eq!((row.cursor.as_str(), row.status.delivered), ("1:5", 3));
        assert_eq!(row.holder.as_deref(), Some("node-a"));
        // Its lease lapses (a node killed): another takes it with a later epoch, and
        // the first holder's writes change nothing.
        assert!(m.renew_subscription("s1", a.epoch, 1).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!m
            .advance_subscription("s1", a.epoch, "1:9", 1, None)
            .await
            .unwrap());
        assert_eq!(m.free_subscriptions().await.unwrap(), ["s1"]);
        let b = m
            .acquire_subscription("s1", "node-b", 60_000)
            .await
            .unwrap();
        let b = b.expect("expired: taken over");
        assert!(b.epoch > a.epoch);
        assert_eq!(b.cursor, "1:5", "from where the cursor was last written");
        assert!(!m
            .advance_subscription("s1", a.epoch, "1:9", 1, None)
            .await
            .unwrap());
        assert!(!m.renew_subscription("s1", a.epoch, 60_000).await.unwrap());
        assert!(!m.subscription_failed("s1", a.epoch, "late").await.unwrap());
        assert!(m
            .subscription_failed("s1", b.epoch, "refused")
            .await
            .unwrap());
        let row = m.subscription("s1").await.unwrap().unwrap();
        assert_eq!((row.cursor.as_str(), row.status.failures_total), ("1:5", 1));
        assert_eq!(row.status.last_error.as_deref(), Some("refused"));
        // A changed body ends the lease (its cursor kept): the holder is fenced and
        // the next take reads the new body.
        let changed = r#"{"id":"s1","url":"http://127.0.0.1:10/"}"#;
        assert!(m
            .put_subscription("s1", "key-a", changed, "0")
            .await
            .unwrap());
        assert!(!m
            .advance_subscription("s1", b.epoch, "2:1", 1, None)
            .await
            .unwrap());
        let c = m
            .acquire_subscription("s1", "node-a", 60_000)
            .await
            .unwrap();
        let c = c.expect("changed: free");
        assert!(c.epoch > b.epoch);
        assert_eq!(
            (c.cursor.as_str(), c.body_json.contains(":10/")),
            ("1:5", true)
        );
        // Released: free at once; deleted: every write refused.
        m.release_subscription("s1", c.epoch).await.unwrap();
        assert_eq!(m.free_subscriptions().await.unwrap(), ["s1"]);
        let d = m
            .acquire_subscription("s1", "node-b", 60_000)
            .await
            .unwrap()
            .unwrap();
        assert!(m.delete_subscription("s1").await.unwrap());
        assert!(!m
            .advance_subscription("s1", d.epoch, "3:1", 1, None)
            .await
            .unwrap());
        assert!(!m.renew_subscription("s1", d.epoch, 60_000).await.unwrap());
        assert!(m.subscriptions().await.unwrap().is_empty());
    });
}

/// A platform of community 3205080001 (its GA/T 1400 login and device).
const PLATFORM: &str = "32050801012000000009";
const A: &str = "3205080001";

#[test]
fn subscriptions_deliver_as_serve_across_a_killed_query_node_and_to_a_gat1400_platform() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "gat1400", "add", PLATFORM, "--community", A])
        .args([
            "--community-name",
            A,
            "--kind",
            "platform",
            "--password",
            "pw",
        ])
        .arg("--config")
        .arg(&cli)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let detective = super::console::cli_key(&cli, "admin", Some(A), "district admin");
    let feed = super::console::cli_key(&cli, "ingest", None, "feed");
    let (_ingest, ia) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (q1, qa1) = env.query_node("query-1");
    let (q2, qa2) = env.query_node("query-2");
    let single_dir = tempfile::tempdir().unwrap();
    let single = sightline_testkit::start(single_dir.path(), |_| {});
    let s = single.addr;

    let (to_cluster, to_platform, to_serve, to_serve_viid) = (
        Receiver::start(&env.rt),
        Receiver::start(&env.rt),
        Receiver::start(&env.rt),
        Receiver::start(&env.rt),
    );
    // Slow answers: a batch is always in flight when the holder is killed.
    to_cluster.delay_ms.store(1_500, Ordering::SeqCst);
    let hook = |r: &Receiver| format!("http://{}/hook", r.addr);

    // A key sees no more than its communities: asking for another is refused; its
    // subscription is confined to A.
    let other = json!({"url": hook(&to_cluster), "communities": ["3205080002"]});
    let (status, refused) = ask_as(
        qa1,
        Some(&detective),
        "POST",
        "/v1/subscriptions",
        &other.to_string(),
    );
    // Another community's: 403 naming the field, as every query answers it.
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["field"], "communities", "{refused}");
    let (status, refused) = ask_as(qa1, Some(&feed), "POST", "/v1/subscriptions", "{}");
    assert_eq!(
        status, 403,
        "an ingest key subscribes to nothing: {refused}"
    );
    let sub = json!({"url": hook(&to_cluster), "kinds": ["vehicle"], "batch": 20});
    let (status, made) = ask_as(
        qa1,
        Some(&detective),
        "POST",
        "/v1/subscriptions",
        &sub.to_string(),
    );
    assert_eq!(status, 201, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["scope"], json!([A]), "{made}");
    assert!(made["status"]["cursor"].is_string(), "{made}");
    // The same on `serve`, by its communities (its key is every community's).
    for (r, format) in [(&to_serve, "sightline"), (&to_serve_viid, "gat1400")] {
        let sub = json!({"url": hook(r), "kinds": ["vehicle"], "communities": [A], "batch": 20,
                         "format": format});
        let made = call(
            s,
            "POST",
            "/v1/subscriptions",
            "application/json",
            sub.to_string().as_bytes(),
        );
        assert_eq!(made.status, 201, "{}", made.body);
    }

    // A platform registers on the ingest node and subscribes to motor vehicles.
    let (status, registered) = register(ia, "/VIID/System/Register", PLATFORM, "pw");
    assert_eq!(status, 200, "{registered}");
    let ident = vec![("User-Identify", PLATFORM.to_string())];
    let subscribe_id = "320508010120000000092025120100001";
    let subscribe = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": subscribe_id, "Title": "vehicles of A", "SubscribeDetail": "13",
        "ResourceURI": "", "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", to_platform.addr),
        "OperateType": 0}]}});
    let (status, _, answer) = viid(
        ia,
        "POST",
        "/VIID/Subscribes",
        &ident,
        &subscribe.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let st = &answer["ResponseStatusListObject"]["ResponseStatusObject"][0];
    assert_eq!(
        (st["StatusCode"].as_i64(), st["Id"].as_str()),
        (Some(0), Some(subscribe_id)),
        "{answer}"
    );
    let (status, _, listed) = viid(ia, "GET", "/VIID/Subscribes", &ident, "");
    assert_eq!(status, 200, "{listed}");
    let listed = &listed["SubscribeListObject"]["SubscribeObject"];
    assert_eq!(listed[0]["SubscribeID"], subscribe_id, "{listed}");
    assert_eq!(listed[0]["SubscribeStatus"], 0, "{listed}");
    // Unregistered: refused as on `serve`.
    let stranger = vec![("User-Identify", "32050801012000000999".to_string())];
    let (status, _, _) = viid(ia, "GET", "/VIID/Subscribes", &stranger, "");
    assert_eq!(status, 401);

    // Events of ten communities, to the cluster and to `serve`.
    let post = |env: &mut Env, n: usize| {
        let (body, _) = env.batch(n);
        let (status, sent) = ask_as(ia, Some(&feed), "POST", "/v1/events", &body);
        assert_eq!(status, 200, "{sent}");
        let r = call(
            s,
            "POST",
            "/v1/events",
            "application/x-ndjson",
            body.as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        body
    };
    let mut sent = post(&mut env, 300);
    // The holder of the JSON subscription is killed while a batch is in flight.
    assert!(
        wait_until(Duration::from_secs(60), || {
            to_cluster.in_flight.load(Ordering::SeqCst) > 0
        }),
        "no delivery began"
    );
    let (_, listed) = ask_as(qa1, Some(&detective), "GET", "/v1/subscriptions", "");
    let holder = holder_of(&listed, &id)
        .as_str()
        .unwrap_or_else(|| panic!("{listed}"))
        .to_string();
    let batches_before = to_cluster.bodies().len();
    let (mut q1, mut q2) = (Some(q1), Some(q2));
    let survivor = match holder.starts_with("query-1") {
        true => {
            q1.take().unwrap().signal(libc::SIGKILL);
            qa2
        }
        false => {
            q2.take().unwrap().signal(libc::SIGKILL);
            qa1
        }
    };
    // Its answer was not sent when its sender died: the last batch that arrived
    // was in flight, so its events must arrive again.
    assert!(
        to_cluster.in_flight.load(Ordering::SeqCst) > 0,
        "the batch was answered before the kill"
    );
    let in_flight: BTreeSet<String> = to_cluster
        .events()
        .iter()
        .filter(|(b, _)| *b == batches_before - 1)
        .map(|(_, e)| source_id(e))
        .collect();
    assert!(!in_flight.is_empty(), "a batch in flight has events");
    sent.push_str(&post(&mut env, 300));

    // Every vehicle of A, from the survivor, as `serve` sends them.
    let expected: BTreeSet<String> = sent
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["community"] == A && e["kind"] == "vehicle")
        .map(|e| source_id(&e))
        .collect();
    assert_eq!(expected.len(), 40, "vehicles of {A} among 600 events");
    let ids = |r: &Receiver| -> BTreeSet<String> {
        r.events().iter().map(|(_, e)| source_id(e)).collect()
    };
    let vehicle_ids = |r: &Receiver| -> BTreeSet<String> {
        r.vehicles()
            .iter()
            .map(|o| o["MotorVehicleID"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let all_in = wait_until(Duration::from_secs(90), || {
        ids(&to_cluster) == expected
            && ids(&to_serve) == expected
            && vehicle_ids(&to_platform) == expected
            && vehicle_ids(&to_serve_viid) == expected
    });
    assert!(
        all_in,
        "cluster {} of {}, platform {}, serve {}",
        ids(&to_cluster).len(),
        expected.len(),
        vehicle_ids(&to_platform).len(),
        ids(&to_serve).len()
    );
    assert!(
        to_cluster.bodies().len() > batches_before,
        "the survivor delivered"
    );
    let again: BTreeSet<String> = to_cluster
        .events()
        .iter()
        .filter(|(b, _)| *b >= batches_before)
        .map(|(_, e)| source_id(e))
        .collect();
    assert!(
        in_flight.is_subset(&again),
        "the batch in flight at the kill was sent again: {in_flight:?} not all in {again:?}"
    );
    let (_, listed) = ask_as(survivor, Some(&detective), "GET", "/v1/subscriptions", "");
    let now_held = holder_of(&listed, &id).as_str().unwrap_or("");
    assert!(!now_held.is_empty() && now_held != holder, "{listed}");

    // Each body as `serve` sends it; each event as `serve` sends it, but its id.
    let mut single_events: BTreeMap<String, Value> = BTreeMap::new();
    for (_, e) in to_serve.events() {
        single_events.insert(source_id(&e), without_id(&e));
    }
    for (_, _, b) in to_cluster.bodies() {
        let keys: Vec<&String> = b.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["events", "subscription"], "{b}");
        assert_eq!(b["subscription"], id.as_str());
    }
    let mut times: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (batch, e) in to_cluster.events() {
        let sid = source_id(&e);
        assert_eq!(without_id(&e), single_events[&sid], "{sid}");
        times.entry(sid).or_default().push(batch);
    }
    // Sent twice only within the batch in flight when its holder died.
    let twice: BTreeSet<usize> = times
        .values()
        .filter(|b| b.len() > 1)
        .map(|b| b[0])
        .collect();
    assert!(
        twice.len() <= 1,
        "duplicates from more than one batch: {times:?}"
    );
    assert!(times.values().all(|b| b.len() <= 2), "{times:?}");

    // The platform's notifications: its SubscribeID and title, this 视图库's id, and
    // each object as `serve` builds it.
    let server_id = env.config().ingest.viid_server_id;
    for (path, who, b) in to_platform.bodies() {
        assert_eq!(path, "/VIID/SubscribeNotifications");
        assert_eq!(who.as_deref(), Some(server_id.as_str()));
        let n = &b["SubscribeNotificationListObject"]["SubscribeNotificationObject"][0];
        assert_eq!(
            (n["SubscribeID"].as_str(), n["Title"].as_str()),
            (Some(subscribe_id), Some("vehicles of A")),
            "{b}"
        );
    }
    let by_id = |r: &Receiver| -> BTreeMap<String, Value> {
        r.vehicles()
            .into_iter()
            .map(|o| (o["MotorVehicleID"].as_str().unwrap().to_string(), o))
            .collect()
    };
    assert_eq!(by_id(&to_platform), by_id(&to_serve_viid));

    // A disposition through the ingest node: a watchlist of the platform's community
    // whose alerts a query node pushes as DispositionNotifications.
    let to_disposition = Receiver::start(&env.rt);
    let disposition_id = "320508010120000000092025120100009";
    let dispose = json!({"DispositionListObject": {"DispositionObject": [{
        "DispositionID": disposition_id, "Title": "stolen", "DispositionCategory": "2",
        "TargetFeature": "苏A99999", "Reason": "case 7",
        "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", to_disposition.addr)}]}});
    let (status, _, answer) = viid(
        ia,
        "POST",
        "/VIID/Dispositions",
        &ident,
        &dispose.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{answer}"
    );
    let (_, lists) = ask_as(survivor, Some(&detective), "GET", "/v1/watchlists", "");
    assert_eq!(lists["watchlists"][0]["id"], disposition_id, "{lists}");
    assert_eq!(lists["watchlists"][0]["scope"], json!([A]), "{lists}");
    // Sightings of the plate until the ingest node's matcher has the list (it reads
    // the lists every renewal); then one of another community (out of the scope)
    // and one more of A.
    let sighting = |n: usize, community: &str| {
        json!({"ts": 1_764_547_200_000i64 + n as i64, "community": community,
               "device": format!("3205080{}011210000001", &community[9..]), "kind": "vehicle",
               "subject": "苏A99999", "direction": "in", "attrs": {"source_id": format!("stolen-{n}")}})
        .to_string()
    };
    let mut n = 0;
    let alerted = wait_until(Duration::from_secs(20), || {
        n += 1;
        let (_, sent) = ask_as(ia, Some(&feed), "POST", "/v1/events", &sighting(n, A));
        sent["alerts"].as_u64().unwrap_or(0) > 0
    });
    assert!(alerted, "no alert raised");
    let (status, _) = ask_as(
        ia,
        Some(&feed),
        "POST",
        "/v1/events",
        &sighting(1000, "3205080002"),
    );
    assert_eq!(status, 200);
    let (status, sent) = ask_as(ia, Some(&feed), "POST", "/v1/events", &sighting(1001, A));
    assert_eq!((status, sent["alerts"].as_u64()), (200, Some(1)), "{sent}");
    let notified_ids = || -> Vec<String> {
        let mut out = Vec::new();
        for (_, _, b) in to_disposition.bodies() {
            let list = &b["DispositionNotificationListObject"]["DispositionNotificationObject"];
            for d in list.as_array().into_iter().flatten() {
                out.push(d["CntObjectID"].as_str().unwrap_or("").to_string());
            }
        }
        out
    };
    let notified = wait_until(Duration::from_secs(20), || {
        notified_ids().contains(&"stolen-1001".to_string())
    });
    assert!(
        notified,
        "no disposition notification: {:?}",
        notified_ids()
    );
    assert_eq!(
        notified_ids(),
        [format!("stolen-{n}"), "stolen-1001".to_string()],
        "only the sightings of the platform's community"
    );
    let (path, who, b) = to_disposition.bodies()[0].clone();
    assert_eq!(
        (path.as_str(), who.as_deref()),
        ("/VIID/DispositionNotifications", Some(server_id.as_str()))
    );
    let list = b["DispositionNotificationListObject"]["DispositionNotificationObject"]
        .as_array()
        .unwrap()
        .clone();
    let d = &list[0];
    assert_eq!(
        (d["DispositionID"].as_str(), d["Title"].as_str()),
        (Some(disposition_id), Some("stolen")),
        "{b}"
    );
    assert_eq!(d["MotorVehicleObject"]["PlateNo"], "苏A99999", "{b}");
    assert_eq!(d["CntObjectID"], format!("stolen-{n}"), "{b}");
    // Revoked: the list and its notifications go.
    let (status, _, answer) = viid(
        ia,
        "DELETE",
        &format!("/VIID/Dispositions?IDList={disposition_id}"),
        &ident,
        "",
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{answer}"
    );
    let (_, lists) = ask_as(survivor, Some(&detective), "GET", "/v1/watchlists", "");
    assert_eq!(lists["watchlists"], json!([]), "{lists}");
    let row = env.rt.block_on(async {
        let m = Meta::connect(&env.pg.conninfo()).await.unwrap();
        m.subscription(&format!("disposition-{disposition_id}"))
            .await
            .unwrap()
    });
    assert!(
        row.is_none(),
        "its notifications' subscription is gone: {row:?}"
    );

    // Cancelled on the ingest node (GA/T 1400.4 取消订阅): listed with SubscribeStatus 1
    // and the cancel's reason, as on `serve`; no longer delivered.
    let cancel = format!("/VIID/Subscribes/{subscribe_id}");
    let body = json!({"SubscribeObject": {"SubscribeID": subscribe_id, "CancelReason": "结案"}});
    let (status, _, answer) = viid(ia, "PUT", &cancel, &ident, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );
    let (status, _, listed) = viid(ia, "GET", "/VIID/Subscribes?SubscribeStatus=1", &ident, "");
    assert_eq!(status, 200, "{listed}");
    let o = &listed["SubscribeListObject"]["SubscribeObject"][0];
    assert_eq!(
        (&o["SubscribeID"], &o["SubscribeStatus"], &o["CancelReason"]),
        (&json!(subscribe_id), &json!(1), &json!("结案")),
        "{listed}"
    );
    let (status, _, refused) = viid(ia, "GET", "/VIID/Subscribes?PlateNo=1", &ident, "");
    assert_eq!(status, 400, "{refused}");
    // Deleted: gone from every list.
    let (status, _, answer) = viid(ia, "DELETE", &cancel, &ident, "");
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"],
        0
    );
    let (_, _, listed) = viid(ia, "GET", "/VIID/Subscribes", &ident, "");
    assert_eq!(
        listed["SubscribeListObject"]["SubscribeObject"],
        json!([]),
        "{listed}"
    );
    let (status, gone) = ask_as(
        survivor,
        Some(&detective),
        "DELETE",
        &format!("/v1/subscriptions/{id}"),
        "",
    );
    assert_eq!(status, 200, "{gone}");
    let (_, listed) = ask_as(survivor, Some(&detective), "GET", "/v1/subscriptions", "");
    assert_eq!(listed["subscriptions"], json!([]), "{listed}");
    drop((q1, q2));
}

#[test]
fn subscription_changes_bounds_batched_leases_and_dispositions_in_the_catalog() {
    use sightline_cluster::alerts::NewAlert;
    use sightline_cluster::subscriptions::Added;
    use sightline_cluster::watchlists::WatchlistRow;
    let pg = Postgres::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Meta::connect(&pg.conninfo()).await.unwrap();
        m.create(4).await.unwrap();
        let body = r#"{"id":"x","url":"http://127.0.0.1:9/"}"#;
        // Bounded per owner (2 here) and in all (3 here).
        let add = |id: &'static str, owner: &'static str| {
            let m = &m;
            async move {
                m.add_subscription(id, owner, body, "0", 3, 2)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(add("a1", "p1").await, Added::Added);
        assert_eq!(add("a2", "p1").await, Added::Added);
        assert_eq!(add("a3", "p1").await, Added::Full { total: false });
        assert_eq!(add("b1", "p2").await, Added::Added);
        assert_eq!(add("b2", "p2").await, Added::Full { total: true });
        assert_eq!(add("a1", "p2").await, Added::Exists);
        assert_eq!(m.subscriptions().await.unwrap().len(), 3);

        // A change keeps the cursor and ends the lease; another's change, or one
        // after a cancel, writes nothing (no row made again from the start).
        let l = m.acquire_subscription("a1", "n", 60_000).await.unwrap();
        let l = l.unwrap();
        assert!(m
            .advance_subscription("a1", l.epoch, "1:5", 1, None)
            .await
            .unwrap());
        let changed = r#"{"id":"x","url":"http://127.0.0.1:10/"}"#;
        assert!(!m.change_subscription("a1", "p2", changed).await.unwrap());
        assert!(m.change_subscription("a1", "p1", changed).await.unwrap());
        let row = m.subscription("a1").await.unwrap().unwrap();
        assert_eq!(row.cursor, "1:5");
        assert!(
            row.body_json.contains(":10/") && row.holder.is_none(),
            "{row:?}"
        );
        assert!(!m
            .advance_subscription("a1", l.epoch, "1:9", 1, None)
            .await
            .unwrap());
        assert!(!m.delete_subscription_of("a1", "p2").await.unwrap());
        assert!(m.delete_subscription_of("a1", "p1").await.unwrap());
        assert!(!m.change_subscription("a1", "p1", changed).await.unwrap());
        assert!(m.subscription("a1").await.unwrap().is_none());

        // Leases renewed and released in one statement each.
        let x = m.acquire_subscription("a2", "n", 60_000).await.unwrap();
        let y = m.acquire_subscription("b1", "n", 60_000).await.unwrap();
        let held = [
            ("a2".to_string(), x.unwrap().epoch),
            ("b1".to_string(), y.unwrap().epoch),
        ];
        let mut asked = held.to_vec();
        asked.push(("a1".to_string(), 1));
        let mut renewed = m.renew_subscriptions(&asked, 60_000).await.unwrap();
        renewed.sort();
        assert_eq!(renewed, ["a2", "b1"]);
        assert!(m.free_subscriptions().await.unwrap().is_empty());
        m.release_subscriptions(&held).await.unwrap();
        assert_eq!(m.free_subscriptions().await.unwrap(), ["a2", "b1"]);

        // Dispositions are their platform's: another platform's id, or a /v1
        // watchlist's, is neither replaced nor revoked.
        let list = |id: &str, reason: &str| WatchlistRow {
            id: id.into(),
            name: id.into(),
            reason: reason.into(),
            expires_ms: None,
            entries_json: r#"[{"kind":"vehicle","subject":"苏A1"}]"#.into(),
            scope: Some(vec![A.into()]),
        };
        assert!(m.put_disposition(&list("d", "p1's"), "p1").await.unwrap());
        assert!(m
            .put_disposition(&list("d", "p1's again"), "p1")
            .await
            .unwrap());
        assert!(!m.put_disposition(&list("d", "p2's"), "p2").await.unwrap());
        m.put_watchlist(&list("w", "a key's")).await.unwrap();
        assert!(!m.put_disposition(&list("w", "p1's"), "p1").await.unwrap());
        assert!(m
            .put_subscription("disposition-d", "p1", body, "0")
            .await
            .unwrap());
        assert_eq!(
            m.revoke_disposition("d", "disposition-d", "p2")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            m.revoke_disposition("w", "disposition-w", "p1")
                .await
                .unwrap(),
            None
        );
        let reasons: Vec<String> = m
            .watchlists()
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.reason)
            .collect();
        assert_eq!(reasons, ["p1's again", "a key's"]);
        assert!(m.subscription("disposition-d").await.unwrap().is_some());
        assert_eq!(
            m.revoke_disposition("d", "disposition-d", "p1")
                .await
                .unwrap(),
            Some(true)
        );
        assert!(m.subscription("disposition-d").await.unwrap().is_none());
        assert_eq!(
            m.revoke_disposition("d", "disposition-d", "p1")
                .await
                .unwrap(),
            Some(false)
        );

        // Alerts of no community of a reader: its page is empty and says how far
        // it read, so it moves past them.
        let alert = |n: usize, community: &str| NewAlert {
            watchlist: "w".into(),
            community: community.into(),
            msg_id: format!("m{n}"),
            body: "{}".into(),
        };
        m.add_alerts(&[alert(1, "3205080002"), alert(2, "3205080002")])
            .await
            .unwrap();
        let last = m.last_alert_id().await.unwrap();
        let scope = [A.to_string()];
        let (page, head) = m.alerts_page(0, 10, Some(&scope)).await.unwrap();
        assert!(page.is_empty());
        assert_eq!(head, last);
        m.add_alerts(&[alert(3, A)]).await.unwrap();
        let (page, head) = m.alerts_page(last, 10, Some(&scope)).await.unwrap();
        assert_eq!((page.len(), head), (1, last + 1));
        assert_eq!(page[0].0, last + 1);
    });
}

/// A second platform of community A.
const PLATFORM_B: &str = "32050801012000000008";

#[test]
fn subscribes_and_dispositions_are_their_platforms_and_bounded() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    // query.public_url is checked as serve --public-url: no path; a trailing `/`
    // dropped.
    for (url, ok) in [("http://lb:8080/", true), ("http://lb:8080/x", false)] {
        env.query_extra = format!("public_url = {url:?}");
        let read = ClusterConfig::from_file(&env.config_file("url"));
        match ok {
            true => assert_eq!(
                read.unwrap().query.public_url.as_deref(),
                Some("http://lb:8080")
            ),
            false => assert!(read.unwrap_err().to_string().contains("public_url")),
        }
    }
    env.query_extra = "replicas = 0\nmax_subscriptions_per_owner = 2".into();
    let cli = env.config_file("cli");
    let (events, _) = env.batch(200);
    // Two platforms of A, and a camera of A (which may neither subscribe nor dispose).
    let camera = "32050801011320000007";
    for (code, kind) in [
        (PLATFORM, "platform"),
        (PLATFORM_B, "platform"),
        (camera, "face_camera"),
    ] {
        let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "gat1400", "add", code, "--community", A])
            .args(["--community-name", A, "--kind", kind])
            .args(["--password", "pw", "--config"])
            .arg(&cli)
            .output()
            .unwrap();
        assert!(login.status.success(), "{login:?}");
    }
    let detective = super::console::cli_key(&cli, "admin", Some(A), "district admin");
    let feed = super::console::cli_key(&cli, "ingest", None, "feed");
    let (_ingest, ia) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (_q, qa) = env.query_node("query-1");
    let to = Receiver::start(&env.rt);
    for platform in [PLATFORM, PLATFORM_B] {
        let (status, registered) = register(ia, "/VIID/System/Register", platform, "pw");
        assert_eq!(status, 200, "{registered}");
    }
    let (p1, p2) = (
        vec![("User-Identify", PLATFORM.to_string())],
        vec![("User-Identify", PLATFORM_B.to_string())],
    );
    let first = |answer: &Value| -> (i64, String) {
        let st = &answer["ResponseStatusListObject"]["ResponseStatusObject"][0];
        let text = st["StatusString"].as_str().unwrap_or("").to_string();
        (st["StatusCode"].as_i64().unwrap_or(-1), text)
    };
    let subscribe = |who: &Vec<(&str, String)>, id: &str, title: &str| -> (i64, String) {
        let body = json!({"SubscribeListObject": {"SubscribeObject": [{
            "SubscribeID": id, "Title": title, "SubscribeDetail": "13", "ResourceURI": "",
            "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", to.addr),
            "OperateType": 0}]}});
        let (status, _, answer) = viid(ia, "POST", "/VIID/Subscribes", who, &body.to_string());
        assert_eq!(status, 200, "{answer}");
        first(&answer)
    };
    let meta = |id: String| {
        env.rt.block_on(async {
            let m = Meta::connect(&env.pg.conninfo()).await.unwrap();
            m.subscription(&id).await.unwrap()
        })
    };
    // A camera of A, registered, may neither subscribe nor dispose (as on `serve`: it
    // would be pushed more than it may read): 403, status 4, nothing made.
    let registered = wait_until(Duration::from_secs(30), || {
        register(ia, "/VIID/System/Register", camera, "pw").0 == 200
    });
    assert!(registered, "the camera never registered");
    let by_camera = vec![("User-Identify", camera.to_string())];
    for (path, body) in [
        (
            "/VIID/Subscribes",
            json!({"SubscribeListObject": {"SubscribeObject": [{
                "SubscribeID": "320508010120000000092025120100077", "SubscribeDetail": "13",
                "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", to.addr)}]}}),
        ),
        (
            "/VIID/Dispositions",
            json!({"DispositionListObject": {"DispositionObject": [{
                "DispositionID": "320508010120000000092025120100078", "Title": "t",
                "DispositionCategory": "2", "TargetFeature": "苏A9*",
                "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", to.addr)}]}}),
        ),
    ] {
        let (status, _, answer) = viid(ia, "POST", path, &by_camera, &body.to_string());
        assert_eq!(status, 403, "{path}: {answer}");
        assert_eq!(answer["ResponseStatusObject"]["StatusCode"], 4, "{answer}");
    }
    assert!(meta("viid-320508010120000000092025120100077".into()).is_none());
    assert!(meta("disposition-320508010120000000092025120100078".into()).is_none());
    let s1 = "320508010120000000092025120100001";
    assert_eq!(subscribe(&p1, s1, "one").0, 0);
    let made = meta(format!("viid-{s1}")).expect("made");
    // Changed by its platform: the cursor kept. Another platform's SubscribeID:
    // refused, changed or cancelled.
    assert_eq!(subscribe(&p1, s1, "one, changed").0, 0);
    let changed = meta(format!("viid-{s1}")).expect("kept");
    assert_eq!(changed.cursor, made.cursor);
    assert!(changed.body_json.contains("one, changed"), "{changed:?}");
    let (code, text) = subscribe(&p2, s1, "taken");
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("another platform"), "{text}");
    let (_, _, answer) = viid(ia, "DELETE", &format!("/VIID/Subscribes/{s1}"), &p2, "");
    assert_eq!(first(&answer).0, 4, "{answer}");
    let still = meta(format!("viid-{s1}")).expect("not cancelled by another");
    assert_eq!(
        (still.owner.as_str(), still.cursor),
        (PLATFORM, made.cursor)
    );
    // query.max_subscriptions_per_owner = 2: a third of one platform is refused.
    assert_eq!(
        subscribe(&p1, "320508010120000000092025120100002", "two").0,
        0
    );
    let (code, text) = subscribe(&p1, "320508010120000000092025120100003", "three");
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("max_subscriptions_per_owner"), "{text}");
    // And a key's on /v1, whose new subscription's cursor shows only the positions
    // of its community's partition (the stored one has the others' heads too).
    // A query string on the write is refused, as on `serve`, nothing taken.
    let (status, refused) = ask_as(ia, Some(&feed), "POST", "/v1/events?dry_run=1", &events);
    assert_eq!(
        (status, &refused["error"]["field"]),
        (400, &json!("dry_run")),
        "{refused}"
    );
    let (status, sent) = ask_as(ia, Some(&feed), "POST", "/v1/events", &events);
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["duplicates"], 0, "the refused batch was taken: {sent}");
    let partitions = env.config().partitions;
    let ours = sightline_cluster::partition::partition_of(A, partitions);
    let positions = |cursor: &str| -> BTreeSet<u32> {
        let pairs = cursor.split('.').filter_map(|p| p.split_once(':'));
        pairs.map(|(p, _)| p.parse().unwrap()).collect()
    };
    let sub = json!({"url": format!("http://{}/hook", to.addr)}).to_string();
    let mut shown = String::new();
    let others_stored = wait_until(Duration::from_secs(30), || {
        let (status, made) = ask_as(qa, Some(&detective), "POST", "/v1/subscriptions", &sub);
        assert_eq!(status, 201, "{made}");
        let id = made["id"].as_str().unwrap().to_string();
        shown = made["status"]["cursor"].as_str().unwrap().to_string();
        let stored = meta(id.clone()).expect("made").cursor;
        if positions(&stored).iter().any(|p| *p != ours) {
            return true;
        }
        let (status, _) = ask_as(
            qa,
            Some(&detective),
            "DELETE",
            &format!("/v1/subscriptions/{id}"),
            "",
        );
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(200));
        false
    });
    assert!(others_stored, "no other partition's head stored");
    assert!(
        positions(&shown).iter().all(|p| *p == ours),
        "{shown} shows partitions other than {ours}"
    );
    let (status, made) = ask_as(qa, Some(&detective), "POST", "/v1/subscriptions", &sub);
    assert_eq!(status, 201, "{made}");
    let (status, refused) = ask_as(qa, Some(&detective), "POST", "/v1/subscriptions", &sub);
    assert_eq!(status, 429, "{refused}");
    assert_eq!(
        refused["error"]["code"], "too_many_subscriptions",
        "{refused}"
    );

    // A disposition touched by another platform: refused, put or revoked.
    let dispose = |who: &Vec<(&str, String)>, id: &str, op: &str| -> (i64, String) {
        let body = json!({"DispositionListObject": {"DispositionObject": [{
            "DispositionID": id, "Title": "stolen", "DispositionCategory": "2",
            "TargetFeature": "苏A99999", "Reason": "case 7", "OperateType": op,
            "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", to.addr)}]}});
        let (status, _, answer) = viid(ia, "POST", "/VIID/Dispositions", who, &body.to_string());
        assert_eq!(status, 200, "{answer}");
        first(&answer)
    };
    let d = "320508010120000000092025120100009";
    assert_eq!(dispose(&p1, d, "0").0, 0);
    let (code, text) = dispose(&p2, d, "0");
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("another platform"), "{text}");
    assert_eq!(dispose(&p2, d, "1").0, 4);
    let (_, _, answer) = viid(
        ia,
        "DELETE",
        &format!("/VIID/Dispositions?IDList={d}"),
        &p2,
        "",
    );
    assert_eq!(first(&answer).0, 4, "{answer}");
    let pushed = meta(format!("disposition-{d}")).expect("still there");
    assert_eq!(pushed.owner, PLATFORM);
    // A /v1 watchlist is no platform's disposition.
    let w = json!({"name": "a key's", "reason": "case 8",
                   "entries": [{"kind": "vehicle", "subject": "苏A88888"}]});
    let (status, list) = ask_as(
        qa,
        Some(&detective),
        "POST",
        "/v1/watchlists",
        &w.to_string(),
    );
    assert_eq!(status, 201, "{list}");
    let wid = list["id"].as_str().unwrap().to_string();
    assert_eq!(dispose(&p1, &wid, "0").0, 4);
    assert_eq!(dispose(&p1, &wid, "1").0, 4);
    let (_, lists) = ask_as(qa, Some(&detective), "GET", "/v1/watchlists", "");
    let reasons: BTreeSet<&str> = lists["watchlists"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, BTreeSet::from(["case 7", "case 8"]), "{lists}");
    // Its own platform revokes it: the list and its subscription go.
    assert_eq!(dispose(&p1, d, "1").0, 0);
    assert!(meta(format!("disposition-{d}")).is_none());
}

/// `[gat1400] receive_allow`/`receive_deny` on a cluster, as `serve`'s
/// `--viid-receive-*`: an ingest node refuses a platform's `ReceiveAddr` where the
/// cluster may not send (status 4 naming why), and a query node delivers a platform's
/// subscription only to an address its policy permits — an admin key's receiver is
/// the operator's own and not checked.
#[test]
fn platform_receivers_are_judged_by_the_receive_policy_on_ingest_and_query_nodes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args(["cluster", "gat1400", "add", PLATFORM, "--community", A])
        .args(["--community-name", A, "--kind", "platform"])
        .args(["--password", "pw", "--config"])
        .arg(&cli)
        .output()
        .unwrap();
    assert!(login.status.success(), "{login:?}");
    let admin = super::console::cli_key(&cli, "admin", None, "city admin");
    let feed = super::console::cli_key(&cli, "ingest", None, "feed");
    // The defaults (no loopback) and a denied network on one ingest node, loopback
    // allowed on another; the query node has the defaults.
    env.gat1400 = r#"receive_deny = ["10.0.0.0/8"]"#.into();
    let (_strict, sa) = env.ingest("ingest-strict");
    env.gat1400 = r#"receive_allow = ["127.0.0.1/32"]"#.into();
    let (_lax, la) = env.ingest("ingest-lax");
    env.gat1400 = String::new();
    let _indexer = env.indexer("index-1", &[]);
    let (_q, qa) = env.query_node("query-1");
    let to = Receiver::start(&env.rt);
    let (events, _) = env.batch(60);
    for at in [sa, la] {
        let (status, registered) = register(at, "/VIID/System/Register", PLATFORM, "pw");
        assert_eq!(status, 200, "{registered}");
    }
    let p1 = vec![("User-Identify", PLATFORM.to_string())];
    let first = |answer: &Value| -> (i64, String) {
        let st = &answer["ResponseStatusListObject"]["ResponseStatusObject"][0];
        let text = st["StatusString"].as_str().unwrap_or("").to_string();
        (st["StatusCode"].as_i64().unwrap_or(-1), text)
    };
    let subscribe = |at: SocketAddr, id: &str, receive: &str| -> (i64, String) {
        let body = json!({"SubscribeListObject": {"SubscribeObject": [{
            "SubscribeID": id, "Title": "t", "SubscribeDetail": "13", "ResourceURI": "",
            "ReceiveAddr": receive, "OperateType": 0}]}});
        let (status, _, answer) = viid(at, "POST", "/VIID/Subscribes", &p1, &body.to_string());
        assert_eq!(status, 200, "{answer}");
        first(&answer)
    };
    let meta = |id: String| {
        env.rt.block_on(async {
            let m = Meta::connect(&env.pg.conninfo()).await.unwrap();
            m.subscription(&id).await.unwrap()
        })
    };
    let loopback = format!("http://{}/VIID/SubscribeNotifications", to.addr);
    for (n, (receive, why)) in [
        (loopback.as_str(), "unless gat1400.receive_allow names"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://localhost:9/x", "loopback"),
        (
            "http://10.1.2.3:8080/x",
            "10.0.0.0/8, denied by gat1400.receive_deny",
        ),
        ("ftp://192.168.1.2/x", "http"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("32050801012000000009202512010010{n}");
        let (code, text) = subscribe(sa, &id, receive);
        // Not http(s): 8, as on `serve`; where we may not send: 4.
        let want = if why == "http" { 8 } else { 4 };
        assert_eq!(code, want, "{receive}: {text}");
        assert!(text.contains(why), "{receive}: {text}");
        assert!(meta(format!("viid-{id}")).is_none(), "{receive} stored");
    }
    let body = json!({"DispositionListObject": {"DispositionObject": [{
        "DispositionID": "320508010120000000092025120100200", "Title": "stolen",
        "DispositionCategory": "2", "TargetFeature": "苏A99999", "Reason": "case 7",
        "OperateType": "0", "ReceiveAddr": "http://169.254.169.254/x"}]}});
    let (status, _, answer) = viid(sa, "POST", "/VIID/Dispositions", &p1, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    let (code, text) = first(&answer);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("169.254.169.254"), "{text}");
    assert!(meta("disposition-320508010120000000092025120100200".into()).is_none());

    // Taken where loopback is allowed; the query node (defaults) never connects.
    let taken = "320508010120000000092025120100300";
    assert_eq!(subscribe(la, taken, &loopback).0, 0);
    let hook = json!({"url": format!("http://{}/hook", to.addr)}).to_string();
    let (status, made) = ask_as(qa, Some(&admin), "POST", "/v1/subscriptions", &hook);
    assert_eq!(status, 201, "{made}");
    let (status, sent) = ask_as(la, Some(&feed), "POST", "/v1/events", &events);
    assert_eq!(status, 200, "{sent}");
    let admins = wait_until(Duration::from_secs(90), || {
        to.bodies().iter().any(|(path, _, _)| path == "/hook")
    });
    assert!(admins, "the admin key's receiver got nothing");
    let mut last = None;
    let refused = wait_until(Duration::from_secs(60), || {
        last = meta(format!("viid-{taken}")).and_then(|r| r.status.last_error);
        last.as_deref()
            .is_some_and(|e| e.contains("receiver policy"))
    });
    assert!(refused, "{last:?}");
    let notified: Vec<_> = to
        .bodies()
        .into_iter()
        .filter(|(path, _, _)| path != "/hook")
        .collect();
    assert!(notified.is_empty(), "{notified:?}");
}

/// A `ResourceURI` naming a tollgate (type 121) gets, on a cluster as on `serve`, the
/// objects taken at that tollgate — whichever camera took them, judged by the object's
/// uploaded `TollgateID` (`deliver::taken`) — and not another tollgate's.
#[test]
fn a_tollgate_subscription_gets_what_any_camera_took_there() {
    const GATE: &str = "32050801011210000009";
    const OTHER_GATE: &str = "32050801011210000008";
    const CAM: &str = "32050801011320000001";
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut env = Env::start();
    env.query_extra = "replicas = 0".into();
    let cli = env.config_file("cli");
    for (code, kind, password) in [
        (PLATFORM, "platform", "pw"),
        (CAM, "checkpoint_camera", "c"),
    ] {
        let login = Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["cluster", "gat1400", "add", code, "--community", A])
            .args(["--community-name", A, "--kind", kind])
            .args(["--password", password, "--config"])
            .arg(&cli)
            .output()
            .unwrap();
        assert!(login.status.success(), "{login:?}");
    }
    let (_ingest, ia) = env.ingest("ingest-1");
    let _indexer = env.indexer("index-1", &[]);
    let (_q, qa) = env.query_node("query-1");
    let to = Receiver::start(&env.rt);
    assert_eq!(register(ia, "/VIID/System/Register", PLATFORM, "pw").0, 200);
    let p1 = vec![("User-Identify", PLATFORM.to_string())];
    let body = json!({"SubscribeListObject": {"SubscribeObject": [{
        "SubscribeID": "320508010120000000092025120100400", "Title": "卡口",
        "SubscribeDetail": "13", "ResourceURI": GATE,
        "ReceiveAddr": format!("http://{}/VIID/SubscribeNotifications", to.addr),
        "OperateType": 0}]}});
    let (status, _, answer) = viid(ia, "POST", "/VIID/Subscribes", &p1, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{answer}"
    );
    assert_eq!(register(ia, "/VIID/System/Register", CAM, "c").0, 200);
    let vehicle = |gate: &str, i: u64| {
        json!({"MotorVehicleID": format!("{CAM}0220251201083000{i:05}02{i:05}"), "InfoKind": 1,
               "DeviceID": CAM, "TollgateID": gate, "PassTime": format!("202512010830{i:02}"),
               "PlateNo": format!("苏E7TG{i}"), "PlateColor": "2"})
    };
    let (elsewhere, at_gate) = (vehicle(OTHER_GATE, 1), vehicle(GATE, 2));
    let upload =
        json!({"MotorVehicleListObject": {"MotorVehicleObject": [elsewhere, at_gate.clone()]}});
    let camera = vec![("User-Identify", CAM.to_string())];
    let (status, _, answer) = viid(
        ia,
        "POST",
        "/VIID/MotorVehicles",
        &camera,
        &upload.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let ids = || -> Vec<String> {
        to.vehicles()
            .iter()
            .filter_map(|o| o["MotorVehicleID"].as_str().map(str::to_string))
            .collect()
    };
    let want = at_gate["MotorVehicleID"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(90), || ids().contains(&want)),
        "{:?}",
        to.bodies()
    );
    // The other tollgate's, uploaded before it in the same partition: passed by.
    assert_eq!(ids(), vec![want]);

    // A receiver refusing an object for good (5 to 8): passed, and counted as
    // refused, not delivered; one that says it does not know the subscription stops
    // it (resending never helps), as on `serve`.
    let ops = super::console::cli_key(&cli, "admin", None, "ops");
    let status = || -> Value {
        let (_, listed) = ask_as(qa, Some(&ops), "GET", "/v1/subscriptions", "");
        listed["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "viid-320508010120000000092025120100400")
            .map(|s| s["status"].clone())
            .unwrap_or_default()
    };
    let answer = |code: u32, text: &str| {
        *to.answer.lock().unwrap() = json!({"ResponseStatusListObject": {"ResponseStatusObject": [
            {"Id": "", "StatusCode": code, "StatusString": text}]}});
    };
    let one_more = |i: u64| {
        let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [vehicle(GATE, i)]}});
        let (status, _, _) = viid(
            ia,
            "POST",
            "/VIID/MotorVehicles",
            &camera,
            &upload.to_string(),
        );
        assert_eq!(status, 200);
    };
    answer(6, "对象格式错误");
    one_more(3);
    assert!(
        wait_until(Duration::from_secs(60), || status()["refused"] == 1),
        "{}",
        status()
    );
    let st = status();
    assert_eq!(st["delivered"], 1, "{st}");
    assert!(
        st["last_refusal"]
            .as_str()
            .unwrap()
            .contains("StatusCode 6"),
        "{st}"
    );
    assert_eq!(st["stopped"], false, "{st}");
    answer(1, "订阅不存在");
    one_more(4);
    assert!(
        wait_until(Duration::from_secs(60), || status()["stopped"] == true),
        "{}",
        status()
    );
    let posts = to.bodies().len();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(to.bodies().len(), posts, "stopped: not sent again");

    // A disposition (布控) of the platform: each hit is notified with the object as the
    // camera uploaded it, read from object storage by the query node's worker (on a
    // blocking thread: it once panicked there, "Cannot start a runtime from within a
    // runtime", and nothing was sent).
    let to_d = Receiver::start(&env.rt);
    let body = json!({"DispositionListObject": {"DispositionObject": [{
        "DispositionID": "32050800005030000001dispo0001", "Title": "被盗车辆",
        "DispositionCategory": "2", "TargetFeature": "苏E7TG9",
        "ReceiveAddr": format!("http://{}/VIID/DispositionNotifications", to_d.addr),
        "OperateType": 0}]}});
    let (status, _, answer) = viid(ia, "POST", "/VIID/Dispositions", &p1, &body.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["ResponseStatusListObject"]["ResponseStatusObject"][0]["StatusCode"], 0,
        "{answer}"
    );
    let hits = || -> Vec<Value> {
        to_d.bodies()
            .iter()
            .flat_map(|(_, _, b)| {
                b["DispositionNotificationListObject"]["DispositionNotificationObject"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    };
    // Uploaded until the ingest node's matcher has read the list.
    let mut i = 10;
    let notified = wait_until(Duration::from_secs(60), || {
        i += 1;
        let mut v = vehicle(GATE, i);
        v["PlateNo"] = "苏E7TG9".into();
        let upload = json!({"MotorVehicleListObject": {"MotorVehicleObject": [v]}});
        viid(
            ia,
            "POST",
            "/VIID/MotorVehicles",
            &camera,
            &upload.to_string(),
        );
        !hits().is_empty()
    });
    assert!(notified, "no disposition notification: {:?}", to_d.bodies());
    let hit = &hits()[0];
    let o = &hit["MotorVehicleObject"];
    assert_eq!(o["PlateNo"], "苏E7TG9", "{hit}");
    assert_eq!(
        (&o["InfoKind"], &o["TollgateID"]),
        (&json!(1), &json!(GATE)),
        "the object as uploaded, not one rebuilt from its event: {hit}"
    );
    assert_eq!(hit["CntObjectID"], o["MotorVehicleID"], "{hit}");
}
