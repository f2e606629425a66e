//! Delivery: each subscription's worker reads the feed (or the alert log) after its
//! cursor, POSTs a batch, and moves the cursor only when the receiver took it.
//!
//! What a batch's body is (Sightline JSON, GA/T 1400 notifications), how it is sent
//! and judged ([`post`]) and how failures back off ([`Backoff`]) are the same for a
//! cluster's query nodes (`crate::cluster::delivery`): what they need of the server
//! they run in is the [`Host`] seam (`App` here; the cluster's object storage there).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

use super::{target as target_of, Status, Subscription, CURSORS};
use crate::feed::{self, Ask};
use crate::gat1400::pictures::sub_images_mut;
use crate::http::out::EventOut;
use crate::App;

const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The wait after a failed delivery: 0.5 s, doubling to 60 s, back to 0.5 s after a
/// success.
pub(crate) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(FIRST_BACKOFF)
    }
}

impl Backoff {
    /// A delivery went through.
    pub(crate) fn reset(&mut self) {
        self.0 = FIRST_BACKOFF;
    }
    /// A delivery failed: the wait before the next attempt (doubled for the one after).
    pub(crate) fn next(&mut self) -> Duration {
        let wait = self.0;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        wait
    }
}

/// What delivery needs of the server it runs in (`serve`'s [`App`], or a cluster's
/// query node): where receivers fetch its pictures, its GA/T 1400 id, and the bytes
/// it keeps of a GA/T 1400 upload.
pub(crate) trait Host: Send + Sync {
    /// Where receivers fetch this server's pictures (`http://host:port`).
    fn public_base(&self) -> String;
    /// This 视图库's id (`User-Identify` of its notifications).
    fn viid_server_id(&self) -> &str;
    /// The stored bytes of a picture (`/v1/images/{id}`) or of an object as uploaded
    /// (`/v1/objects/{id}`); `None` when there are none or they cannot be read.
    fn stored(&self, what: Stored, id: &str) -> Option<Vec<u8>>;
}

/// What [`Host::stored`] is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    Picture,
    Object,
}

impl Host for App {
    fn public_base(&self) -> String {
        public_base(self)
    }
    fn viid_server_id(&self) -> &str {
        &self.config.viid_server_id
    }
    fn stored(&self, _: Stored, id: &str) -> Option<Vec<u8>> {
        // Pictures and objects are one store on `serve`.
        let pid: sightline_storage::pictures::PictureId = id.parse().ok()?;
        self.store.pictures().get(&pid).ok()?
    }
}

/// The subscription's body for a batch of events (already serialized as in the API).
pub(crate) fn body(host: &dyn Host, s: &Subscription, events: &[Value], now_ms: i64) -> Value {
    match s.format.as_str() {
        "gat1400" => notifications(host, s, events, now_ms),
        _ => json!({"subscription": s.id, "events": events}),
    }
}

/// Where receivers fetch this server's pictures: the configured public URL, else
/// `http://` and the listening address.
pub(crate) fn public_base(app: &App) -> String {
    app.config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", app.config.listen))
}

/// A GA/T 1400 resource class an event goes out as: its kind, the object's id field,
/// the notification's list and item keys, and the upload path, list and item keys.
pub(crate) struct Class {
    pub kind: &'static str,
    pub id_field: &'static str,
    pub notified_list: &'static str,
    pub item: &'static str,
    pub upload_path: &'static str,
    pub upload_list: &'static str,
}

/// Motor vehicles, faces, persons and non-motor vehicles, in the order notifications
/// list them.
pub(crate) const CLASSES: [Class; 4] = [
    Class {
        kind: "vehicle",
        id_field: "MotorVehicleID",
        notified_list: "MotorVehicleObjectList",
        item: "MotorVehicleObject",
        upload_path: "/VIID/MotorVehicles",
        upload_list: "MotorVehicleListObject",
    },
    Class {
        kind: "face",
        id_field: "FaceID",
        notified_list: "FaceObjectList",
        item: "FaceObject",
        upload_path: "/VIID/Faces",
        upload_list: "FaceListObject",
    },
    Class {
        kind: "person",
        id_field: "PersonID",
        notified_list: "PersonObjectList",
        item: "PersonObject",
        upload_path: "/VIID/Persons",
        upload_list: "PersonListObject",
    },
    Class {
        kind: "nonmotor",
        id_field: "NonMotorVehicleID",
        notified_list: "NonMotorVehicleObjectList",
        item: "NonMotorVehicleObject",
        upload_path: "/VIID/NonMotorVehicles",
        upload_list: "NonMotorVehicleListObject",
    },
];

/// How an object's pictures go: left out, by `StoragePath` (this server's
/// `/v1/images/{id}`, absolute), or as base64 `Data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pictures {
    Omitted,
    Reference,
    Data,
}

/// The GA/T 1400 object of an event (serialized as in the API): its class (an index
/// into [`CLASSES`]), its id and the object — as it was uploaded when the store kept
/// it, else built from the event (absent fields left out, never `null`) — with its
/// pictures as `pictures` says. `None` for a kind GA/T 1400 has no object for.
pub(crate) fn object_of(
    app: &dyn Host,
    e: &Value,
    now_ms: i64,
    pictures: Pictures,
    base: &str,
) -> Option<(usize, String, Value)> {
    let slot = CLASSES.iter().position(|c| e["kind"] == c.kind)?;
    let id_field = CLASSES[slot].id_field;
    let mut o = kept_object(app, e).unwrap_or_else(|| built_object(e, id_field, now_ms));
    match pictures {
        Pictures::Omitted => {
            if let Some(m) = o.as_object_mut() {
                m.remove("SubImageList");
            }
        }
        Pictures::Reference | Pictures::Data => {
            if pictures == Pictures::Data {
                embed_pictures(app, &mut o);
            }
            absolute_storage_paths(&mut o, base);
        }
    }
    let id = o[id_field]
        .as_str()
        .or_else(|| o["PersionID"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| e["id"].to_string());
    Some((slot, id, o))
}

/// A batch as a GA/T 1400 `SubscribeNotificationListObject`: one notification, with
/// the subscriber's `SubscribeID` and `Title`, the objects' own ids as `InfoIDs`, and
/// each object as [`object_of`] makes it: pictures of a `/VIID/Subscribes`
/// subscription as base64 `Data` (what wvp-GB28181-pro's receiver stores; a
/// `StoragePath` here needs an API key) unless it asked for references (`ImageData`
/// 0) or none (`ResultImageDeclare` -1); of a `/v1/subscriptions` one by reference.
fn notifications(app: &dyn Host, s: &Subscription, events: &[Value], now_ms: i64) -> Value {
    let base = app.public_base();
    let pictures = match &s.viid {
        Some(v) if v.no_images => Pictures::Omitted,
        Some(v) if v.by_reference && !v.with_data => Pictures::Reference,
        Some(_) => Pictures::Data,
        None => Pictures::Reference,
    };
    let mut lists: Vec<Vec<Value>> = vec![Vec::new(); CLASSES.len()];
    let mut ids = Vec::new();
    for e in events {
        let Some((slot, id, o)) = object_of(app, e, now_ms, pictures, &base) else {
            continue;
        };
        ids.push(id);
        lists[slot].push(o);
    }
    let (subscribe_id, title) = match &s.viid {
        Some(v) => (v.subscribe_id.clone(), v.title.clone()),
        None => (s.id.clone(), "Sightline".to_string()),
    };
    // The batch's identity: its first event's time, and for the sequence its last
    // event (the greatest id) and the subscription — a resend of the same batch
    // repeats the id; one read again that has grown or changed since (more events,
    // another partition's) ends elsewhere and has another; the batches of one
    // subscription in one second end at different events; one upload sent to three
    // subscriptions is three notifications of three ids. Events without an id (none
    // is sent so) are told apart by their objects' ids.
    let first_ms = events
        .first()
        .and_then(|e| e["ts"].as_str())
        .and_then(|t| crate::params::parse_time("ts", t).ok())
        .unwrap_or(now_ms);
    let sequence = batch_sequence(&s.id, events, &ids);
    let mut n = json!({
        "NotificationID": notification_id(&subscribe_id, app.viid_server_id(), first_ms, sequence),
        "SubscribeID": subscribe_id,
        "Title": title,
        "TriggerTime": crate::gat1400::local_time(now_ms),
        "InfoIDs": ids.join(","),
    });
    for (class, objects) in CLASSES.iter().zip(lists) {
        if !objects.is_empty() {
            n[class.notified_list] = json!({ class.item: objects });
        }
    }
    json!({"SubscribeNotificationListObject": {"SubscribeNotificationObject": [n]}})
}

/// A notification's id in the form GA/T 1400 gives ids a platform makes (33 digits):
/// the subscription's first 12 (the subscriber's organisation code; else this
/// 视图库's), `04` (a notification), a time (14 digits) and a 5-digit sequence — for a
/// batch of events its first event's time and its last event and subscription (a
/// hash), for an alert its raising time and number — so a resend of one notification
/// repeats its id and the notifications of one upload to several subscriptions differ.
fn notification_id(subscribe_id: &str, server_id: &str, at_ms: i64, sequence: u64) -> String {
    let org = |s: &str| {
        s.get(..12)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string)
    };
    let org = org(subscribe_id)
        .or_else(|| org(server_id))
        .unwrap_or_else(|| "0".repeat(12));
    format!(
        "{org}04{}{:05}",
        crate::gat1400::local_time(at_ms),
        sequence % 100_000
    )
}

/// The sequence of subscription `subscription`'s notification of `events` (their
/// objects' ids `object_ids`): its last event (the greatest id; without ids, a hash
/// of the objects' ids) and a hash of the subscription, modulo 100,000.
fn batch_sequence(subscription: &str, events: &[Value], object_ids: &[String]) -> u64 {
    const SEQUENCES: u64 = 100_000;
    let last = match events.iter().filter_map(|e| e["id"].as_u64()).max() {
        Some(id) => id,
        None => fnv1a(object_ids.join(",").as_bytes()),
    };
    (last % SEQUENCES + fnv1a(subscription.as_bytes()) % SEQUENCES) % SEQUENCES
}

/// FNV-1a (64 bits): a hash that stays the same across builds and restarts (a resent
/// notification keeps its id).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The events of a page `sub` takes, as `write` makes them (the API's form): those
/// its filters pass, and — a GA/T 1400 subscription naming tollgates — another
/// camera's whose object as uploaded was taken at one of them (its `TollgateID`,
/// read through `host`). `serve`'s delivery and a cluster's alike.
pub(crate) fn taken<'a, T: 'a>(
    host: &dyn Host,
    sub: &Subscription,
    page: impl IntoIterator<Item = &'a (sightline_query::Sighting, T)>,
    write: impl Fn(&sightline_query::Sighting, &T) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    let tollgates = sub.viid.as_ref().map_or(&[][..], |v| &v.tollgates[..]);
    let mut events = Vec::new();
    for (e, at) in page {
        let strict = sub.matches(e);
        if !strict && !sub.maybe_at_tollgate(e) {
            continue;
        }
        let v = write(e, at)?;
        // Another camera's object passes when taken at a subscribed tollgate.
        if strict
            || kept_object(host, &v)
                .is_some_and(|o| crate::gat1400::subscribes::at_tollgate(&o, tollgates))
        {
            events.push(v);
        }
    }
    Ok(events)
}

/// The object an event came from, as uploaded (`GET /v1/objects/{id}`).
fn kept_object(app: &dyn Host, e: &Value) -> Option<Value> {
    let id = e["object"].as_str()?.strip_prefix("/v1/objects/")?;
    let bytes = app.stored(Stored::Object, id)?;
    serde_json::from_slice(&bytes).ok()
}

/// An object from an event alone (one made through `/v1/events`, one whose kept copy
/// cannot be read, and an alert's): the fields the event has, none `null`; its time
/// `now_ms` when the event shows none.
fn built_object(e: &Value, id_field: &str, now_ms: i64) -> Value {
    let time = crate::gat1400::local_time(crate::feed::epoch_ms_of(e).unwrap_or(now_ms));
    let id = e["attrs"]["source_id"]
        .as_str()
        .map_or_else(|| standard_id(e, &time), str::to_string);
    let mut o = json!({ id_field: id, "DeviceID": e["device"] });
    let subject = e["subject"].as_str().unwrap_or("");
    match e["kind"].as_str() {
        Some("vehicle") | Some("nonmotor") => {
            o[if id_field == "MotorVehicleID" {
                "PassTime"
            } else {
                "AppearTime"
            }] = time.into();
            if !subject.starts_with(crate::gat1400::objects::UNPLATED) {
                o["PlateNo"] = subject.into();
            }
            if let Some(c) = e["attrs"]["plate_color"].as_str() {
                o["PlateColor"] = c.into();
            }
        }
        Some("face") => {
            o["ShotTime"] = time.into();
            o["ArchiveID"] = subject.into();
        }
        _ => o["PersonAppearTime"] = time.into(),
    }
    if let Some(images) = e["images"].as_array() {
        let subs: Vec<Value> = images
            .iter()
            .filter_map(|i| {
                let mut sub = json!({"StoragePath": i.get("url")?});
                for (from, to) in [("type", "Type"), ("image_id", "ImageID")] {
                    if let Some(v) = i.get(from).filter(|v| !v.is_null()) {
                        sub[to] = v.clone();
                    }
                }
                Some(sub)
            })
            .collect();
        if !subs.is_empty() {
            o["SubImageList"] = json!({"SubImageInfoObject": subs});
        }
    }
    o
}

/// A 48-character object id in GA/T 1400's form for an event that came without one
/// (made through `/v1/events`): the device (20), the object type (2: 01 person, 02
/// motor vehicle, 03 non-motor vehicle, 06 face), the time (14) and a sequence (5) —
/// the source id — then the type and the sequence again. The sequence is the event
/// id's last five digits, so a resend repeats the id.
fn standard_id(e: &Value, time: &str) -> String {
    let device = e["device"].as_str().unwrap_or("");
    let device = match device.len() == 20 && device.bytes().all(|b| b.is_ascii_digit()) {
        true => device.to_string(),
        false => "0".repeat(20),
    };
    let kind = match e["kind"].as_str() {
        Some("person") => "01",
        Some("vehicle") => "02",
        Some("nonmotor") => "03",
        _ => "06",
    };
    let seq = e["id"].as_u64().unwrap_or(0) % 100_000;
    format!("{device}{kind}{time}{seq:05}{kind}{seq:05}")
}

/// The stored pictures of an object as base64 `Data` in place of their `StoragePath`
/// (a picture that cannot be read keeps its reference).
fn embed_pictures(app: &dyn Host, o: &mut Value) {
    use base64::Engine;
    for entry in sub_images_mut(o) {
        let bytes = entry["StoragePath"]
            .as_str()
            .and_then(|p| p.strip_prefix("/v1/images/"))
            .and_then(|id| app.stored(Stored::Picture, id));
        if let (Some(bytes), Some(m)) = (bytes, entry.as_object_mut()) {
            m.remove("StoragePath");
            m.insert(
                "Data".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
            );
        }
    }
}

/// Picture URLs this server serves (`/v1/images/…`) made absolute for the receiver.
fn absolute_storage_paths(o: &mut Value, base: &str) {
    for entry in sub_images_mut(o) {
        if let Some(path) = entry["StoragePath"].as_str().filter(|p| p.starts_with('/')) {
            entry["StoragePath"] = format!("{base}{path}").into();
        }
    }
}

/// Why a delivery did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: crate::http::client::ConnectError,
    },
    #[error("{addr}: {source}")]
    Exchange { addr: String, source: hyper::Error },
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("{addr} answered {status}")]
    Refused {
        addr: String,
        status: hyper::StatusCode,
    },
    #[error("{addr} did not answer within {DELIVERY_TIMEOUT:?}")]
    Timeout { addr: String },
    #[error("{addr} answered StatusCode {code} ({text:?}): not taken")]
    NotTaken {
        addr: String,
        code: String,
        text: String,
    },
    #[error("{addr} answered StatusCode {code} ({text:?}): it does not know the subscription; stopped until it is placed again")]
    Gone {
        addr: String,
        code: String,
        text: String,
    },
    #[error("cannot keep the cursor: {0}")]
    Cursor(#[from] sightline_storage::StorageError),
    #[error("cannot keep the cursor: its task failed: {0}")]
    CursorTask(String),
}

/// Alerts as GA/T 1400 `DispositionNotificationListObject`: one notification per
/// alert, carrying the matched object (`MotorVehicleObject`, `FaceObject`,
/// `PersonObject` or `NonMotorVehicleObject`, as its event shows it).
pub(crate) fn disposition_notifications(app: &dyn Host, alerts: &[Value]) -> Value {
    let base = app.public_base();
    let list: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let e = &a["event"];
            let raised = crate::params::parse_time("raised", a["raised"].as_str().unwrap_or(""))
                .unwrap_or_else(|_| crate::now_ms());
            // GA/T 1400 (and wvp-GB28181-pro's DispositionNotificationObject) carries
            // a hit as `MotorVehicleObject` or `PersonObject`: a face (category 1, a
            // person) goes as the latter.
            let (key, id_field) = match e["kind"].as_str() {
                Some("vehicle") => ("MotorVehicleObject", "MotorVehicleID"),
                Some("nonmotor") => ("NonMotorVehicleObject", "NonMotorVehicleID"),
                Some("person") => ("PersonObject", "PersonID"),
                _ => ("PersonObject", "FaceID"),
            };
            let mut object =
                kept_object(app, e).unwrap_or_else(|| built_object(e, id_field, raised));
            absolute_storage_paths(&mut object, &base);
            let server_id = app.viid_server_id();
            let seq = a["id"].as_u64().unwrap_or(0);
            json!({
                "NotificationID": notification_id(server_id, server_id, raised, seq),
                "DispositionID": crate::gat1400::dispositions::disposition_of(
                    a["watchlist"].as_str().unwrap_or("")),
                "Title": a["name"],
                "TriggerTime": crate::gat1400::local_time(raised), "CntObjectID": object[id_field],
                key: object,
            })
        })
        .collect();
    json!({"DispositionNotificationListObject": {"DispositionNotificationObject": list}})
}

/// The first non-zero `StatusCode` of a GA/T 1400 answer (`ResponseStatusListObject`
/// or a single `ResponseStatusObject`; the code as an integer or a string), with its
/// `StatusString`. An answer that holds no status at all refuses nothing.
pub(crate) fn refusal(answer: &[u8]) -> Option<(String, String)> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let statuses: Vec<&Value> = match v.pointer("/ResponseStatusListObject/ResponseStatusObject") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => v.get("ResponseStatusObject").into_iter().collect(),
    };
    statuses.into_iter().find_map(|s| {
        let code = match s.get("StatusCode")? {
            Value::Number(n) => n.to_string(),
            Value::String(t) => t.trim().to_string(),
            _ => return None,
        };
        (code != "0").then(|| {
            let text = s["StatusString"].as_str().unwrap_or("").to_string();
            (code, text)
        })
    })
}

/// One request to `addr` (the origin: TCP or TLS by its scheme), bounded by
/// [`DELIVERY_TIMEOUT`]: the answer's status, headers and body.
pub(crate) async fn exchange(
    addr: &str,
    req: hyper::http::request::Builder,
    body: Vec<u8>,
    tls: &crate::http::client::Outbound,
) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes), DeliveryError> {
    let addr_ = || addr.to_string();
    let attempt = async {
        let mut sender = crate::http::client::connect(addr, tls)
            .await
            .map_err(|source| DeliveryError::Connect {
                addr: addr_(),
                source,
            })?;
        let host = addr
            .split_once("://")
            .map_or(addr, |(_, authority)| authority);
        let req = req
            .header(hyper::header::HOST, host)
            .body(Full::new(Bytes::from(body)))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|source| DeliveryError::Exchange {
                addr: addr_(),
                source,
            })?;
        let (head, body) = res.into_parts();
        let answer = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|source| DeliveryError::Exchange {
                addr: addr_(),
                source,
            })?;
        Ok((head.status, head.headers, answer))
    };
    tokio::time::timeout(DELIVERY_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(DeliveryError::Timeout { addr: addr_() }))
}

/// A GA/T 1400 request's headers: its content type and the sender's id.
pub(crate) fn viid_request(
    method: hyper::Method,
    path: &str,
    user_identify: &str,
) -> hyper::http::request::Builder {
    hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(
            hyper::header::CONTENT_TYPE,
            "application/VIID+JSON;charset=UTF-8",
        )
        .header("User-Identify", user_identify)
}

/// What a GA/T 1400 receiver's or upstream's answer says of the `sent` objects, status
/// by status: 0, or "already exists" (a resend after a crash), is taken; 5 to 8 (the
/// object is wrong there: resending cannot help) is refused for good and passed — for
/// uploads only when the answer has one status an object sent, for a notification
/// (one object holding the batch) the whole batch; a device the other side does not
/// know yet ("不存在"/"未注册"/"not exist") is sent again; for a notification, an explicit "订阅不存在" means the receiver does
/// not know the subscription (`Gone`); anything else (1, 2 busy, 3, 4, 9, or no code)
/// is sent again.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Taken, but for `refused` objects refused for good (the last one's code and text).
    Taken {
        refused: u64,
        last: Option<(String, String)>,
    },
    Retry(String, String),
    Gone(String, String),
}

pub(crate) fn verdict(answer: &[u8], notification: bool, sent: u64) -> Verdict {
    let Ok(v) = serde_json::from_slice::<Value>(answer) else {
        return Verdict::Taken {
            refused: 0,
            last: None,
        };
    };
    let statuses: Vec<&Value> = match v.pointer("/ResponseStatusListObject/ResponseStatusObject") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => v.get("ResponseStatusObject").into_iter().collect(),
    };
    let (mut refused, mut last) = (0, None);
    let one_each = statuses.len() as u64 == sent;
    for s in statuses {
        let code = match s.get("StatusCode") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(t)) => t.trim().to_string(),
            _ => continue,
        };
        if code == "0" {
            continue;
        }
        let text = s["StatusString"].as_str().unwrap_or("").to_string();
        let lower = text.to_ascii_lowercase();
        let unknown = ["订阅不存在", "不存在订阅", "订阅ID不存在"]
            .iter()
            .any(|w| text.contains(w))
            || [
                "subscription not exist",
                "subscription does not exist",
                "no such subscription",
            ]
            .iter()
            .any(|w| lower.contains(w));
        // Not there (yet): a device or subscription the other side does not know.
        let missing = unknown
            || ["不存在", "未注册"].iter().any(|w| text.contains(w))
            || ["not exist", "not found", "not registered"]
                .iter()
                .any(|w| lower.contains(w));
        if !missing
            && ["已存在", "重复", "already exist", "duplicate"]
                .iter()
                .any(|w| lower.contains(w))
        {
            continue;
        }
        match code.parse::<i64>() {
            _ if notification && unknown => return Verdict::Gone(code, text),
            // A notification is one object holding the batch: its refusal refuses
            // every event in it (resending it forever would stop every later one).
            Ok(5..=8) if !missing && (one_each || notification) => {
                refused += if one_each { 1 } else { sent };
                last = Some((code, text));
            }
            _ => return Verdict::Retry(code, text),
        }
    }
    Verdict::Taken { refused, last }
}

/// POSTs `body` to the receiver; Ok when it answered 2xx (and, for a GA/T 1400
/// receiver or upstream, when its [`verdict`] is `Taken`: the objects it refused for
/// good, the last one's code and text).
pub(crate) async fn post(
    addr: &str,
    path: &str,
    body: Vec<u8>,
    viid: Option<(&str, bool)>,
    sent: u64,
    tls: &crate::http::client::Outbound,
) -> Result<(u64, Option<(String, String)>), DeliveryError> {
    // GA/T 1400 receivers expect its content type and the sender's 视图库 id.
    let req = match viid {
        Some((id, _)) => viid_request(hyper::Method::POST, path, id),
        None => hyper::Request::post(path).header(hyper::header::CONTENT_TYPE, "application/json"),
    };
    let (status, _, answer) = exchange(addr, req, body, tls).await?;
    if !status.is_success() {
        return Err(DeliveryError::Refused {
            addr: addr.to_string(),
            status,
        });
    }
    // A GA/T 1400 receiver says per object whether it took it: HTTP 200 with a
    // non-zero StatusCode is not a delivery, unless resending cannot help.
    let Some((_, notification)) = viid else {
        return Ok((0, None));
    };
    match verdict(&answer, notification, sent) {
        Verdict::Taken { refused, last } => Ok((refused, last)),
        Verdict::Retry(code, text) => Err(DeliveryError::NotTaken {
            addr: addr.to_string(),
            code,
            text,
        }),
        Verdict::Gone(code, text) => Err(DeliveryError::Gone {
            addr: addr.to_string(),
            code,
            text,
        }),
    }
}

/// Where a subscription's deliveries go, and as what.
pub(crate) enum Target {
    /// A receiver of Sightline JSON.
    Json,
    /// A GA/T 1400 receiver (notifications): `User-Identify` is this server's id.
    Viid(String),
    /// An upstream 视图库 this server registered with: uploads under its registration,
    /// registering again when the upstream answers 401.
    Upstream(Arc<super::upstream::Session>),
}

impl Target {
    pub(crate) fn of(
        app: &App,
        s: &Subscription,
        session: Option<Arc<super::upstream::Session>>,
    ) -> Target {
        match (session, s.format.as_str()) {
            (Some(session), _) => Target::Upstream(session),
            (None, "gat1400") => Target::Viid(
                s.viid
                    .as_ref()
                    .and_then(|v| v.identify.clone())
                    .unwrap_or_else(|| app.config.viid_server_id.clone()),
            ),
            (None, _) => Target::Json,
        }
    }
}

/// One POST of a batch: where (a path on the target's origin), the body, how many
/// items it carries, and the cursor once it is taken.
pub(crate) struct Delivery {
    pub path: String,
    pub payload: Vec<u8>,
    pub n: u64,
    pub next: u64,
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
    backoff: Backoff,
    persisting: Option<tokio::task::JoinHandle<Result<(), sightline_storage::StorageError>>>,
    target: Target,
    /// How it connects: for a receiver a platform named, only where
    /// `--viid-receive-allow`/`-deny` and the defaults permit (`http::egress`).
    outbound: crate::http::client::Outbound,
}

impl Sender {
    fn new(
        app: &Arc<App>,
        s: &Subscription,
        status: &Arc<Mutex<Status>>,
        target: Target,
    ) -> Option<Sender> {
        let (addr, path) = target_of(&s.url).ok()?;
        Some(Sender {
            app: app.clone(),
            id: s.id.clone(),
            status: status.clone(),
            addr,
            path,
            backoff: Backoff::default(),
            persisting: None,
            target,
            outbound: match s.platform_named() {
                true => app.outbound.checked(&app.config.viid_receive),
                false => app.outbound.clone(),
            },
        })
    }

    /// Starts writing `cursor` durably once the write before it is done; that earlier
    /// write's outcome.
    async fn keep(&mut self, cursor: u64) -> Result<(), DeliveryError> {
        let previous = match self.persisting.take() {
            Some(h) => match h.await {
                Ok(done) => done.map_err(DeliveryError::from),
                Err(e) => Err(DeliveryError::CursorTask(e.to_string())),
            },
            None => Ok(()),
        };
        let (a, id) = (self.app.clone(), self.id.clone());
        self.persisting = Some(tokio::task::spawn_blocking(move || {
            a.store
                .catalog()
                .kv_put(CURSORS, &id, &cursor.to_le_bytes())
        }));
        previous
    }

    /// POSTs `d` (to the subscription's URL, or for an upstream to `d.path`). When it
    /// is taken the cursor moves and its durable write starts; otherwise the failure
    /// is recorded and the next attempt waits out the backoff. True when delivered.
    async fn send(&mut self, d: Delivery) -> bool {
        let tls = &self.outbound;
        let (path, viid) = match &self.target {
            Target::Json => (self.path.as_str(), None),
            Target::Viid(id) => (self.path.as_str(), Some((id.as_str(), true))),
            Target::Upstream(session) => (d.path.as_str(), Some((session.device_id(), false))),
        };
        match post(&self.addr, path, d.payload, viid, d.n, tls).await {
            Ok((refused, last)) => {
                let previous = self.keep(d.next).await;
                self.backoff.reset();
                let mut st = self.status.lock().expect("status");
                st.cursor = d.next;
                st.delivered += d.n.saturating_sub(refused);
                st.refused += refused;
                if let Some((code, text)) = last {
                    tracing::warn!(subscription = %self.id, %code, %text, "objects refused for good: passed");
                    st.last_refusal = Some(format!("StatusCode {code} ({text:?})"));
                }
                st.failures_in_a_row = 0;
                st.last_success_ms = Some(crate::now_ms());
                st.last_error = previous.err().map(|e| e.to_string());
                true
            }
            Err(e) => {
                let mut why = e.to_string();
                // The upstream does not know us (it restarted, or our registration
                // lapsed): register again before the next attempt.
                if let (
                    Target::Upstream(session),
                    DeliveryError::Refused {
                        status: hyper::StatusCode::UNAUTHORIZED,
                        ..
                    },
                ) = (&self.target, &e)
                {
                    session.forget();
                    why = match session.register(&self.app.outbound).await {
                        Ok(()) => format!("{why}: registered again"),
                        Err(r) => format!("{why}: registering again failed: {r}"),
                    };
                }
                let gone = matches!(e, DeliveryError::Gone { .. });
                {
                    let mut st = self.status.lock().expect("status");
                    st.failures_in_a_row += 1;
                    st.failures_total += 1;
                    st.last_error = Some(why);
                    st.stopped = gone;
                }
                if gone {
                    // Resending to a receiver that does not know the subscription
                    // never helps: the worker waits until it is replaced or deleted.
                    tracing::warn!(subscription = %self.id, error = %e, "delivery stopped");
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(self.backoff.next()).await;
                false
            }
        }
    }
}

/// The alert worker: alerts after the cursor (an alert id), delivered in order.
pub(crate) async fn alerts(app: Arc<App>, s: Subscription, status: Arc<Mutex<Status>>) {
    let target = Target::of(&app, &s, None);
    let Some(mut sender) = Sender::new(&app, &s, &status, target) else {
        return;
    };
    let mut cursor = status.lock().expect("status").cursor;
    loop {
        let notified = app.watch.signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (a, scope, batch) = (app.clone(), s.scope.clone(), s.batch.max(1));
        let Ok(Ok((alerts, examined))) = tokio::task::spawn_blocking(move || {
            a.watch.alerts(&a.store, cursor, batch, scope.as_deref())
        })
        .await
        else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Past the last alert looked at, other communities' too.
        let Some(next) = examined else {
            let _ = tokio::time::timeout(Duration::from_secs(30), notified).await;
            continue;
        };
        let alerts: Vec<Value> = alerts
            .into_iter()
            .filter(|a| {
                s.watchlist
                    .as_ref()
                    .is_none_or(|w| a["watchlist"] == w.as_str())
            })
            .collect();
        if alerts.is_empty() {
            // Another list's alerts: nothing to send; go on past them.
            cursor = next;
            status.lock().expect("status").cursor = cursor;
            let _ = sender.keep(cursor).await;
            continue;
        }
        let payload = match s.format.as_str() {
            "gat1400" => disposition_notifications(&*app, &alerts),
            _ => json!({"subscription": s.id, "alerts": alerts}),
        };
        let payload = serde_json::to_vec(&payload).expect("serializes");
        let d = Delivery {
            path: String::new(),
            payload,
            n: alerts.len() as u64,
            next,
        };
        if sender.send(d).await {
            cursor = next;
        }
    }
}

/// The communities a subscription reads (codes, resolved by each page): those it
/// names within its creator's scope (`None`: every community).
pub(crate) fn communities_of(s: &Subscription) -> Option<Vec<String>> {
    let allowed = |c: &&String| s.scope.as_ref().is_none_or(|sc| sc.contains(c));
    match (&s.communities, &s.scope) {
        (None, None) => None,
        (Some(cs), _) => Some(cs.iter().filter(allowed).cloned().collect()),
        (None, Some(sc)) => Some(sc.clone()),
    }
}

/// The deliveries of one feed page's matching events (`events`, after which the cursor
/// is `next_after`): one notification or JSON batch for a receiver; for an upstream,
/// one upload per run of events of one class, each moving the cursor past its run.
fn deliveries(app: &App, s: &Subscription, events: &[Value], next_after: u64) -> Vec<Delivery> {
    if events.is_empty() {
        return Vec::new();
    }
    let now_ms = crate::now_ms();
    match &s.upstream {
        Some(up) => super::upstream::uploads(app, s, up, events, next_after, now_ms),
        None => vec![Delivery {
            path: String::new(),
            payload: serde_json::to_vec(&body(app, s, events, now_ms)).expect("serializes"),
            n: events.len() as u64,
            next: next_after,
        }],
    }
}

/// The worker: feed pages after the cursor, filtered, delivered, cursor kept.
pub(crate) async fn events(
    app: Arc<App>,
    s: Subscription,
    status: Arc<Mutex<Status>>,
    target: Target,
) {
    let Some(mut sender) = Sender::new(&app, &s, &status, target) else {
        return;
    };
    let mut cursor = status.lock().expect("status").cursor;
    let mut last_persist = Instant::now();
    loop {
        // Codes, resolved by each page after it reads how far events are readable: a
        // community named before its first event has no id yet, and resolving once at
        // the start delivered nothing of it, ever.
        let ask = Ask {
            after: cursor,
            limit: s.batch.max(1),
            kind: None,
            communities: communities_of(&s),
        };
        let (a, sub) = (app.clone(), s.clone());
        let Ok(built) = tokio::task::spawn_blocking(move || {
            let page = feed::page(&a.store, &ask).map_err(|e| e.to_string())?;
            let events = taken(&*a, &sub, &page.events, |e, at| {
                serde_json::to_value(EventOut::of(e, at)).map_err(|e| e.to_string())
            })?;
            Ok::<_, String>((
                deliveries(&a, &sub, &events, page.next_after),
                page.next_after,
            ))
        })
        .await
        else {
            return;
        };
        // An event whose attributes cannot be read (a damaged segment: the error names
        // the file) is not skipped: the cursor stays before it, the status says why,
        // and the page is tried again later.
        let (deliveries, next) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(subscription = %s.id, error = %e, "an event cannot be read for delivery");
                status.lock().expect("status").last_error =
                    Some(format!("an event cannot be read: {e}"));
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if deliveries.is_empty() {
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
            feed::wait_for(&app.feed_signal, &app.store, cursor, deadline).await;
            continue;
        }
        for d in deliveries {
            let next = d.next;
            if !sender.send(d).await {
                // Read again from the cursor: what was not taken goes again, in order.
                break;
            }
            cursor = next;
            last_persist = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification's sequence: the same batch again is the same; a batch read
    /// again that grew, or that another partition's event changed, is another; the
    /// next batches of one subscription are others; one batch to two subscriptions is
    /// two.
    #[test]
    fn a_notifications_sequence_follows_its_batch_and_subscription() {
        let batch = |ids: &[u64]| -> Vec<Value> {
            ids.iter().map(|i| serde_json::json!({"id": i})).collect()
        };
        let seq = |sub: &str, ids: &[u64]| batch_sequence(sub, &batch(ids), &[]);
        let first = seq("viid-1", &[10, 11, 12]);
        assert_eq!(seq("viid-1", &[10, 11, 12]), first, "a resend");
        assert_ne!(seq("viid-1", &[10, 11, 12, 13]), first, "grown");
        assert_ne!(seq("viid-1", &[10, 11, 40]), first, "changed");
        let mut seen = std::collections::HashSet::new();
        for k in 0..1000u64 {
            let ids: Vec<u64> = (k * 7..k * 7 + 7).collect();
            assert!(seen.insert(seq("viid-1", &ids)), "batch {k} repeats an id");
        }
        assert_ne!(seq("viid-2", &[10, 11, 12]), first, "another subscription");
        // Without event ids, the objects' ids tell batches apart.
        let a = batch_sequence("viid-1", &[], &["A".into(), "B".into()]);
        assert_eq!(a, batch_sequence("viid-1", &[], &["A".into(), "B".into()]));
        assert_ne!(a, batch_sequence("viid-1", &[], &["A".into(), "C".into()]));
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_a_minute_and_resets_on_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(
            waits,
            [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]
        );
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(500));
    }

    #[test]
    fn a_gat1400_answer_with_a_non_zero_status_is_a_refusal() {
        let list = r#"{"ResponseStatusListObject":{"ResponseStatusObject":[
            {"Id":"a","StatusCode":0},{"Id":"b","StatusCode":"1","StatusString":"订阅不存在"}]}}"#;
        assert_eq!(
            refusal(list.as_bytes()),
            Some(("1".into(), "订阅不存在".into()))
        );
        let one = br#"{"ResponseStatusObject":{"StatusCode":4,"StatusString":"x"}}"#;
        assert_eq!(refusal(one), Some(("4".into(), "x".into())));
        let fine = br#"{"ResponseStatusListObject":{"ResponseStatusObject":[{"StatusCode":"0"}]}}"#;
        assert_eq!(refusal(fine), None);
        assert_eq!(refusal(b""), None, "no status: nothing refused");
    }

    #[test]
    fn a_gat1400_answer_is_judged_status_by_status() {
        let list = |codes: &[(&str, &str)]| {
            let statuses: Vec<Value> = codes
                .iter()
                .map(|(c, t)| json!({"StatusCode": c, "StatusString": t}))
                .collect();
            json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}}).to_string()
        };
        let taken = |refused, last: Option<(&str, &str)>| Verdict::Taken {
            refused,
            last: last.map(|(c, t)| (c.to_string(), t.to_string())),
        };
        let v = |codes: &[(&str, &str)], notification| {
            verdict(list(codes).as_bytes(), notification, codes.len() as u64)
        };
        assert_eq!(v(&[("0", "")], true), taken(0, None));
        assert_eq!(v(&[("1", "数据已存在"), ("0", "")], false), taken(0, None));
        assert_eq!(
            v(&[("8", "PlateNo"), ("0", ""), ("5", "x")], false),
            taken(2, Some(("5", "x")))
        );
        assert_eq!(
            v(&[("8", "x"), ("2", "设备忙")], false),
            Verdict::Retry("2".into(), "设备忙".into()),
            "one retryable status resends the batch"
        );
        assert_eq!(
            v(&[("1", "订阅不存在")], true),
            Verdict::Gone("1".into(), "订阅不存在".into())
        );
        assert_eq!(
            v(&[("4", "")], true),
            Verdict::Retry("4".into(), "".into()),
            "4 alone (not registered there, an auth failure) is sent again"
        );
        assert_eq!(
            v(&[("1", "subscription not exists")], true),
            Verdict::Gone("1".into(), "subscription not exists".into())
        );
        assert_eq!(
            v(&[("1", "device not exists")], false),
            Verdict::Retry("1".into(), "device not exists".into()),
            "not exists is not already exists"
        );
        assert_eq!(
            v(&[("8", "设备不存在")], false),
            Verdict::Retry("8".into(), "设备不存在".into()),
            "a device the upstream does not know yet is sent again"
        );
        // One status for a notification of three events: the notification (all
        // three) refused, passed — resending it forever would stop every later one.
        assert_eq!(
            verdict(list(&[("7", "too large")]).as_bytes(), true, 3),
            taken(3, Some(("7", "too large")))
        );
        // An upload of three answered by one status: which object? Sent again.
        assert_eq!(
            verdict(list(&[("7", "too large")]).as_bytes(), false, 3),
            Verdict::Retry("7".into(), "too large".into())
        );
        // "unknown" in a refusal's text is no unknown device.
        assert_eq!(
            v(&[("7", "unknown field Foo")], false),
            taken(1, Some(("7", "unknown field Foo")))
        );
        assert_eq!(
            v(&[("4", "")], false),
            Verdict::Retry("4".into(), "".into()),
            "an upload is not a subscription"
        );
        assert_eq!(
            v(&[("1", "订阅不存在")], false),
            Verdict::Retry("1".into(), "订阅不存在".into())
        );
        assert_eq!(verdict(b"", true, 1), taken(0, None));
    }
}
