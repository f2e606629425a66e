//! Subscriptions: push matching events to a downstream HTTP endpoint, at least once,
//! in commit order, from a durable cursor.
//!
//! A subscription is a URL, a filter (kinds, communities, devices, subjects) and a
//! format (Sightline JSON or GA/T 1400 `SubscribeNotificationListObject`). Its worker
//! reads the change feed after its cursor, POSTs a batch, and only when the receiver
//! answers 2xx moves the cursor and makes it durable (the catalog). A failed delivery
//! is retried with exponential backoff (0.5 s doubling to 60 s) and shown in the
//! subscription's status; a restart resumes from the durable cursor, so a receiver that
//! was down gets everything when it returns. The cursor's write overlaps the next
//! delivery, so a crash resends at most the last two batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::feed::{self, Ask};
use crate::App;

const TREE: &str = "subscriptions";
const CURSORS: &str = "subscription_cursors";
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A subscription as created (and kept in the catalog).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subscription {
    pub id: String,
    /// `http://host:port/path` of the receiver.
    pub url: String,
    pub kinds: Option<Vec<String>>,
    pub communities: Option<Vec<String>>,
    pub devices: Option<Vec<String>>,
    pub subjects: Option<Vec<String>>,
    /// `sightline` or `gat1400`.
    pub format: String,
    /// Most events per delivery.
    pub batch: usize,
    /// The key that created it, and that key's communities: it never delivers more
    /// than its creator may see.
    pub owner: String,
    pub scope: Option<Vec<String>>,
    pub created_ms: i64,
    /// Deliver watchlist alerts (its cursor: an alert id) instead of events.
    #[serde(default)]
    pub alerts: bool,
}

/// How delivery is going.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Every event with an id up to this was delivered (or did not match).
    pub cursor: u64,
    pub delivered: u64,
    pub failures_in_a_row: u64,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
}

/// A running subscription: its worker and the status it keeps.
type Running = (tokio::task::JoinHandle<()>, Arc<Mutex<Status>>);

/// Running subscriptions: their workers and statuses.
#[derive(Default)]
pub struct Registry {
    running: Mutex<HashMap<String, Running>>,
}

/// The receiver's address and path, from an `http://` URL.
pub fn target(url: &str) -> Result<(String, String), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// receivers (put a TLS proxy in front for https)".into());
    }
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((format!("{host}:{port}"), path))
}

impl Registry {
    /// Starts the workers of every stored subscription.
    pub(crate) fn start_all(app: &Arc<App>) -> Result<(), String> {
        let stored = app
            .store
            .catalog()
            .kv_list(TREE)
            .map_err(|e| e.to_string())?;
        for (_, bytes) in stored {
            let s: Subscription = serde_json::from_slice(&bytes)
                .map_err(|e| format!("a stored subscription is unreadable: {e}"))?;
            Self::start(app, s)?;
        }
        Ok(())
    }

    /// Stores a new subscription and starts its worker (its cursor: now, or `from`).
    pub(crate) fn create(app: &Arc<App>, s: Subscription, from: Option<u64>) -> Result<(), String> {
        let c = app.store.catalog();
        let cursor = from.unwrap_or_else(|| match s.alerts {
            true => app.watch.last(),
            false => app.store.applied_through(),
        });
        c.kv_put(CURSORS, &s.id, &cursor.to_le_bytes())
            .and_then(|()| c.kv_put(TREE, &s.id, &serde_json::to_vec(&s).expect("serializes")))
            .map_err(|e| e.to_string())?;
        Self::start(app, s)
    }

    fn start(app: &Arc<App>, s: Subscription) -> Result<(), String> {
        let cursor = match app.store.catalog().kv_get(CURSORS, &s.id) {
            Ok(Some(b)) if b.len() == 8 => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            Ok(_) => 0,
            Err(e) => return Err(e.to_string()),
        };
        let status = Arc::new(Mutex::new(Status {
            cursor,
            ..Default::default()
        }));
        let task = match s.alerts {
            true => tokio::spawn(deliver_alerts(app.clone(), s.clone(), status.clone())),
            false => tokio::spawn(deliver(app.clone(), s.clone(), status.clone())),
        };
        app.subscriptions
            .running
            .lock()
            .expect("subscriptions")
            .insert(s.id.clone(), (task, status));
        Ok(())
    }

    /// Stops and forgets a subscription; false if there is none.
    pub(crate) fn delete(app: &App, id: &str) -> Result<bool, String> {
        let running = app
            .subscriptions
            .running
            .lock()
            .expect("subscriptions")
            .remove(id);
        if let Some((task, _)) = &running {
            task.abort();
        }
        let c = app.store.catalog();
        let existed = c.kv_get(TREE, id).map_err(|e| e.to_string())?.is_some();
        c.kv_delete(TREE, id)
            .and_then(|()| c.kv_delete(CURSORS, id))
            .map_err(|e| e.to_string())?;
        Ok(existed || running.is_some())
    }

    /// Every subscription with its status.
    pub(crate) fn list(app: &App) -> Result<Vec<(Subscription, Status)>, String> {
        let running = app.subscriptions.running.lock().expect("subscriptions");
        let mut out = Vec::new();
        for (_, bytes) in app
            .store
            .catalog()
            .kv_list(TREE)
            .map_err(|e| e.to_string())?
        {
            let s: Subscription = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
            let status = running
                .get(&s.id)
                .map(|(_, st)| st.lock().expect("status").clone())
                .unwrap_or_default();
            out.push((s, status));
        }
        Ok(out)
    }

    /// Stops every worker (at shutdown).
    pub fn stop_all(&self) {
        for (_, (task, _)) in self.running.lock().expect("subscriptions").drain() {
            task.abort();
        }
    }
}

/// The subscription's body for a batch of events (already serialized as in the API).
fn body(s: &Subscription, events: &[Value], now_ms: i64) -> Value {
    if s.format != "gat1400" {
        return json!({"subscription": s.id, "events": events});
    }
    let (mut vehicles, mut faces) = (Vec::new(), Vec::new());
    for e in events {
        let time = crate::gat1400::local_time(crate::feed::epoch_ms_of(e).unwrap_or(now_ms));
        let source = e["attrs"]["source_id"].as_str().map(str::to_string);
        let id = source.unwrap_or_else(|| format!("{}", e["id"]));
        match e["kind"].as_str() {
            Some("vehicle") => vehicles.push(json!({"MotorVehicleID": id, "DeviceID": e["device"],
                "PassTime": time, "PlateNo": e["subject"], "PlateColor": e["attrs"]["plate_color"]})),
            Some("face") => faces.push(json!({"FaceID": id, "DeviceID": e["device"],
                "ShotTime": time, "ArchiveID": e["subject"]})),
            _ => {}
        }
    }
    let first = events.first().and_then(|e| e["id"].as_u64()).unwrap_or(0);
    json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [{
        "NotificationID": format!("{}{first:020}", s.id),
        "SubscribeID": s.id,
        "Title": "Sightline",
        "TriggerTime": crate::gat1400::local_time(now_ms),
        "InfoIDs": events.iter().filter_map(|e| e["id"].as_u64()).map(|i| i.to_string()).collect::<Vec<_>>().join(","),
        "MotorVehicleObjectList": {"MotorVehicleObject": vehicles},
        "FaceObjectList": {"FaceObject": faces},
    }]}})
}

/// POSTs `body` to the receiver; Ok when it answered 2xx.
async fn post(addr: &str, path: &str, body: Vec<u8>) -> Result<(), String> {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let status = res.status();
        let _ = res.into_body().collect().await;
        match status.is_success() {
            true => Ok(()),
            false => Err(format!("{addr} answered {status}")),
        }
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("{addr} did not answer within {DELIVERY_TIMEOUT:?}")))
}

/// One subscription's delivery state: where to, the backoff, and the cursor write in
/// flight (overlapped with the next delivery; awaited before the one after, so writes
/// land in order).
struct Sender {
    app: Arc<App>,
    id: String,
    status: Arc<Mutex<Status>>,
    addr: String,
    path: String,
    backoff: Duration,
    persisting: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl Sender {
    fn new(app: &Arc<App>, s: &Subscription, status: &Arc<Mutex<Status>>) -> Option<Sender> {
        let (addr, path) = target(&s.url).ok()?;
        Some(Sender {
            app: app.clone(),
            id: s.id.clone(),
            status: status.clone(),
            addr,
            path,
            backoff: Duration::from_millis(500),
            persisting: None,
        })
    }

    /// Starts writing `cursor` durably once the write before it is done; that earlier
    /// write's outcome.
    async fn keep(&mut self, cursor: u64) -> Result<(), String> {
        let previous = match self.persisting.take() {
            Some(h) => h.await.unwrap_or_else(|e| Err(e.to_string())),
            None => Ok(()),
        };
        let (a, id) = (self.app.clone(), self.id.clone());
        self.persisting = Some(tokio::task::spawn_blocking(move || {
            a.store
                .catalog()
                .kv_put(CURSORS, &id, &cursor.to_le_bytes())
                .map_err(|e| e.to_string())
        }));
        previous
    }

    /// POSTs `payload` (`n` items, after which the cursor is `next`). On a 2xx the
    /// cursor moves and its durable write starts; otherwise the failure is recorded
    /// and the next attempt waits out the backoff. True when delivered.
    async fn send(&mut self, payload: Vec<u8>, next: u64, n: u64) -> bool {
        match post(&self.addr, &self.path, payload).await {
            Ok(()) => {
                let previous = self.keep(next).await;
                self.backoff = Duration::from_millis(500);
                let mut st = self.status.lock().expect("status");
                st.cursor = next;
                st.delivered += n;
                st.failures_in_a_row = 0;
                st.last_success_ms = Some(crate::now_ms());
                st.last_error = previous
                    .err()
                    .map(|e| format!("cannot keep the cursor: {e}"));
                true
            }
            Err(e) => {
                {
                    let mut st = self.status.lock().expect("status");
                    st.failures_in_a_row += 1;
                    st.last_error = Some(e);
                }
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                false
            }
        }
    }
}

/// The alert worker: alerts after the cursor (an alert id), delivered in order.
async fn deliver_alerts(app: Arc<App>, s: Subscription, status: Arc<Mutex<Status>>) {
    let Some(mut sender) = Sender::new(&app, &s, &status) else {
        return;
    };
    let mut cursor = status.lock().expect("status").cursor;
    loop {
        let notified = app.watch.signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (a, scope, batch) = (app.clone(), s.scope.clone(), s.batch.max(1));
        let Ok(Ok(alerts)) = tokio::task::spawn_blocking(move || {
            a.watch.alerts(&a.store, cursor, batch, scope.as_deref())
        })
        .await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Some(next) = alerts.last().and_then(|a| a["id"].as_u64()) else {
            let _ = tokio::time::timeout(Duration::from_secs(30), notified).await;
            continue;
        };
        let payload = serde_json::to_vec(&json!({"subscription": s.id, "alerts": alerts}))
            .expect("serializes");
        if sender.send(payload, next, alerts.len() as u64).await {
            cursor = next;
        }
    }
}

/// The worker: feed pages after the cursor, filtered, delivered, cursor kept.
async fn deliver(app: Arc<App>, s: Subscription, status: Arc<Mutex<Status>>) {
    let Some(mut sender) = Sender::new(&app, &s, &status) else {
        return;
    };
    let communities = {
        let d = app.store.dictionaries();
        let allowed = |c: &String| s.scope.as_ref().is_none_or(|sc| sc.contains(c));
        match (&s.communities, &s.scope) {
            (None, None) => None,
            (Some(cs), _) => Some(
                cs.iter()
                    .filter(|c| allowed(c))
                    .filter_map(|c| d.community_id(c))
                    .collect(),
            ),
            (None, Some(sc)) => Some(
                sc.iter()
                    .filter_map(|c| d.community_id(c))
                    .collect::<Vec<u32>>(),
            ),
        }
    };
    let mut cursor = status.lock().expect("status").cursor;
    let mut last_persist = Instant::now();
    loop {
        let ask = Ask {
            after: cursor,
            limit: s.batch.max(1),
            kind: None,
            communities: communities.clone(),
        };
        let (a, sub) = (app.clone(), s.clone());
        let Ok((events, next)) = tokio::task::spawn_blocking(move || {
            let page = feed::page(&a.store, &ask);
            let events: Vec<Value> = page
                .events
                .iter()
                .filter(|(e, _)| {
                    sub.kinds
                        .as_ref()
                        .is_none_or(|k| k.iter().any(|k| k == e.kind.as_str()))
                        && sub
                            .devices
                            .as_ref()
                            .is_none_or(|d| d.iter().any(|d| **d == *e.device))
                        && sub
                            .subjects
                            .as_ref()
                            .is_none_or(|x| x.iter().any(|x| **x == *e.subject))
                })
                .filter_map(|(e, at)| serde_json::to_value(crate::api::event_out(e, at)).ok())
                .collect();
            (events, page.next_after)
        })
        .await
        else {
            return;
        };
        if events.is_empty() {
            if next > cursor {
                cursor = next;
                status.lock().expect("status").cursor = cursor;
                // Skipping non-matching events needs no urgency: written once a second.
                if last_persist.elapsed() > Duration::from_secs(1) {
                    let _ = sender.keep(cursor).await;
                    last_persist = Instant::now();
                }
                continue;
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            feed::wait(&app.feed_signal, &app.store, cursor, deadline).await;
            continue;
        }
        let n = events.len() as u64;
        let payload = serde_json::to_vec(&body(&s, &events, crate::now_ms())).expect("serializes");
        if sender.send(payload, next, n).await {
            cursor = next;
            last_persist = Instant::now();
        }
    }
}
