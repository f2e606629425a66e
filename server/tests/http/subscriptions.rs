//! Subscriptions delivered to a real receiver: down, up, restarted, SIGKILLed mid-delivery.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{
    call, ev, get, post, sample, spawn_server, start, wait_until, Receiver, GATE,
};

#[test]
fn subscriptions_deliver_at_least_once_in_order_across_outages_and_restarts() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let create = |a: SocketAddr, body: Value| {
        call(
            a,
            "POST",
            "/v1/subscriptions",
            "application/json",
            body.to_string().as_bytes(),
        )
    };
    for (body, field) in [
        (json!({"url": "ftp://x/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (
            json!({"url": format!("http://{}/h", rx.addr), "format": "xml"}),
            "format",
        ),
        (
            json!({"url": format!("http://{}/h", rx.addr), "kinds": ["car"]}),
            "kinds",
        ),
        (
            json!({"url": format!("http://{}/h", rx.addr), "batch": 0}),
            "batch",
        ),
    ] {
        let r = create(a, body);
        assert_eq!(
            (r.status, r.body["error"]["field"].as_str()),
            (400, Some(field)),
            "{}",
            r.body
        );
    }
    let r = create(
        a,
        json!({"url": format!("http://{}/hook", rx.addr), "kinds": ["vehicle"], "batch": 2, "from": 0}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();

    // The receiver is down: attempts fail, the status says so, nothing is lost.
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).body["stored"],
        7
    );
    let attempted = wait_until(Duration::from_secs(30), || {
        rx.attempts.load(Ordering::SeqCst) >= 2
    });
    assert!(attempted, "no delivery attempt");
    let list = get(a, "/v1/subscriptions").body;
    let st = &list["subscriptions"][0]["status"];
    assert!(st["failures_in_a_row"].as_u64().unwrap() >= 1, "{list}");
    assert!(st["last_error"].as_str().unwrap().contains("503"), "{list}");
    assert!(st["lag"].as_u64().unwrap() > 0, "{list}");

    // Back up: everything arrives, in order, once, only vehicles, two per delivery.
    rx.up.store(true, Ordering::SeqCst);
    rx.wait_for(3, "the three vehicle events");
    let ids = rx.ids();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .all(|b| b["events"].as_array().unwrap().len() <= 2));
    assert!(rx
        .bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .all(|e| e["kind"] == "vehicle"));
    let recovered = wait_until(Duration::from_secs(30), || {
        get(a, "/v1/subscriptions").body["subscriptions"][0]["status"]["failures_in_a_row"] == 0
    });
    assert!(recovered);

    // A restart resumes from the durable cursor: nothing again, the new ones after.
    server.stop();
    let mut server = start(dir.path(), |_| {});
    let a = server.addr;
    let more = [
        ev(
            "2021-09-04T08:00:00+08:00",
            GATE,
            "vehicle",
            "苏E70001",
            "in",
        ),
        ev("2021-09-04T08:00:05+08:00", GATE, "face", "F70001", "in"),
        ev(
            "2021-09-04T08:01:00+08:00",
            GATE,
            "vehicle",
            "苏E70002",
            "in",
        ),
    ]
    .join("\n");
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &more).body["stored"],
        3
    );
    rx.wait_for(5, "the two new vehicle events");
    std::thread::sleep(Duration::from_millis(300));
    let ids = rx.ids();
    assert_eq!(ids.len(), 5, "nothing delivered twice: {ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // The GA/T 1400 format, from the start.
    let r = create(
        a,
        json!({"url": format!("http://{}/viid", rx.addr), "format": "gat1400", "from": 0, "kinds": ["vehicle"]}),
    );
    assert_eq!(r.status, 201);
    let found = wait_until(Duration::from_secs(30), || {
        rx.bodies.lock().unwrap().iter().any(|b| {
            b["SubscribeNotificationListObject"]["SubscribeNotificationObject"][0]
                ["MotorVehicleObjectList"]["MotorVehicleObject"]
                .as_array()
                .is_some_and(|v| {
                    v.iter().any(|o| {
                        o["PlateNo"] == "苏E12345" && o["PassTime"].as_str().unwrap().len() == 14
                    })
                })
        })
    });
    assert!(found, "no GA/T 1400 notification");

    // Deleted: no more deliveries for it.
    let r = call(
        a,
        "DELETE",
        &format!("/v1/subscriptions/{id}"),
        "application/json",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        call(
            a,
            "DELETE",
            &format!("/v1/subscriptions/{id}"),
            "application/json",
            b""
        )
        .status,
        404
    );
    let before = rx.ids().len();
    let last = ev(
        "2021-09-04T09:00:00+08:00",
        GATE,
        "vehicle",
        "苏E70003",
        "in",
    );
    post(a, "/v1/events", "application/x-ndjson", &last);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.ids().len(), before);
    assert_eq!(
        get(a, "/v1/subscriptions").body["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.stop();
}

#[test]
fn a_subscription_killed_mid_delivery_resumes_without_losing_or_reordering() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start();
    rx.up.store(true, Ordering::SeqCst);
    rx.delay_ms.store(40, Ordering::SeqCst);
    let (mut child, a) = spawn_server(dir.path());
    let r = call(
        a,
        "POST",
        "/v1/subscriptions",
        "application/json",
        json!({"url": format!("http://{}/h", rx.addr), "batch": 5, "from": 0})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let body: Vec<String> = (0..200)
        .map(|i| {
            json!({"ts": 1_630_454_400_000i64 + i * 1000, "community": "3205080001",
                   "device": GATE, "kind": "vehicle", "subject": format!("苏E{:05}", i)})
            .to_string()
        })
        .collect();
    let r = post(a, "/v1/events", "application/x-ndjson", &body.join("\n"));
    let stored: Vec<u64> = r.body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(stored.len(), 200);
    // Kill it while deliveries are under way (each takes 40 ms at the receiver).
    rx.wait_for(30, "the first deliveries");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let delivered_before = rx.ids().len();
    assert!(delivered_before < 200, "killed too late to test anything");
    let (mut child, _) = spawn_server(dir.path());
    let arrived = || {
        let mut seen = rx.ids();
        seen.sort_unstable();
        seen.dedup();
        seen
    };
    assert!(
        wait_until(Duration::from_secs(60), || arrived() == stored),
        "not everything arrived: {} of 200",
        arrived().len()
    );
    // At least once, in order: first arrivals are strictly increasing; repeats are only
    // what was resent after the kill (the last two batches of five at most: a cursor
    // write overlaps the next delivery).
    let ids = rx.ids();
    let mut first = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for i in &ids {
        if seen.insert(*i) {
            first.push(*i);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert!(
        ids.len() - first.len() <= 10,
        "{} redelivered",
        ids.len() - first.len()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

/// A GA/T 1400 receiver answering HTTP 200 with `StatusCode` 1 "订阅不存在" (as
/// wvp-GB28181-pro dev/1400's notification receiver answers an unknown SubscribeID)
/// took nothing: the subscription counts nothing delivered, keeps its cursor, its
/// status says why, and it stops (`stopped`) instead of resending what the receiver
/// will never take.
#[test]
fn a_receiver_answering_a_non_zero_status_code_gets_nothing_counted_as_delivered() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                line.clear();
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = r#"{"ResponseStatusListObject":{"ResponseStatusObject":[{"Id":"x","RequestURL":"/VIID/SubscribeNotifications","StatusCode":1,"StatusString":"订阅不存在","LocalTime":"20210901080000"}]}}"#;
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/VIID+JSON\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), |_| {});
    let a = server.addr;
    let sub = json!({"url": format!("http://{receiver}/VIID/SubscribeNotifications"), "format": "gat1400", "from": 0});
    let r = post(a, "/v1/subscriptions", "application/json", &sub.to_string());
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        post(a, "/v1/events", "application/x-ndjson", &sample()).status,
        200
    );
    assert!(
        wait_until(Duration::from_secs(20), || get(a, "/v1/subscriptions").body
            ["subscriptions"][0]["status"]["stopped"]
            == true),
        "{}",
        get(a, "/v1/subscriptions").body
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "not tried again"
    );
    let list = get(a, "/v1/subscriptions").body;
    let status = &list["subscriptions"][0]["status"];
    assert_eq!(status["delivered"], 0, "{list}");
    assert_eq!(status["cursor"], 0, "{list}");
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("StatusCode 1"),
        "{list}"
    );
    assert!(status["failures_in_a_row"].as_u64().unwrap() >= 1, "{list}");
}
