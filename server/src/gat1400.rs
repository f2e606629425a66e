//! The GA/T 1400 (视图库) gateway: community devices and upstream platforms register
//! with HTTP Digest (RFC 2617, MD5, `qop=auth`) and push motor-vehicle and face
//! records, which become events.
//!
//! * `POST /VIID/System/Register`, `/VIID/System/UnRegister`: digest handshake (the
//!   first request is answered 401 with a nonce; the retry carries the response).
//! * `POST /VIID/System/Keepalive`, `GET /VIID/System/Time`.
//! * `POST /VIID/MotorVehicles`, `POST /VIID/Faces`: from a registered caller
//!   (`User-Identify: <20-digit id>`); answered 200 with one `ResponseStatusObject` per
//!   uploaded object, as devices expect, whatever happened to each.
//!
//! Lenient in what is accepted (numbers as strings or integers, missing optional
//! fields), exact in what is sent (integer `StatusCode`, `YYYYMMDDhhmmss` times).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sightline_storage::{AttrValue, Attrs, EventInput, Gat1400Credential, Store};

/// The digest realm every credential is made for.
pub const REALM: &str = "Sightline";
/// How long a nonce may be answered, and how long a registration lasts without a
/// keepalive.
const NONCE_TTL: Duration = Duration::from_secs(300);
const REGISTRATION_TTL: Duration = Duration::from_secs(3600);

/// Status codes of `ResponseStatusObject` (GA/T 1400.4).
pub const OK: i64 = 0;
pub const INVALID_JSON_FORMAT: i64 = 7;
pub const INVALID_JSON_CONTENT: i64 = 8;
pub const DEVICE_ERROR: i64 = 4;

/// Lower-case hex of MD5.
pub fn md5_hex(text: &str) -> String {
    let d = Md5::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The credential for `code` with `password` (only its HA1 is kept).
pub fn credential(code: &str, password: &str) -> Gat1400Credential {
    Gat1400Credential {
        code: code.to_string(),
        realm: REALM.to_string(),
        ha1: md5_hex(&format!("{code}:{REALM}:{password}")),
    }
}

/// Issued nonces and registered callers.
#[derive(Default)]
pub struct Gateway {
    nonces: Mutex<HashMap<String, Instant>>,
    registered: Mutex<HashMap<String, Instant>>,
}

/// The fields of an `Authorization: Digest …` header.
fn digest_fields(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.trim().strip_prefix("Digest")?.trim();
    let mut out = HashMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], q[end + 1..].trim_start().trim_start_matches(','))
            }
            None => match after.find(',') {
                Some(i) => (&after[..i], &after[i + 1..]),
                None => (after, ""),
            },
        };
        out.insert(key, value.trim().to_string());
        s = next.trim();
    }
    Some(out)
}

/// What a VIID request gets back: status, body, and a `WWW-Authenticate` challenge.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub challenge: Option<String>,
}

/// `YYYYMMDDhhmmss` in Beijing time.
pub fn local_time(ts_ms: i64) -> String {
    crate::params::rfc3339(ts_ms)
        .chars()
        .filter(char::is_ascii_digit)
        .take(14)
        .collect()
}

/// A GA/T 1400 time (`YYYYMMDDhhmmss`, optionally with milliseconds, Beijing time) in
/// epoch milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !(s.len() == 14 || s.len() == 17) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(&s[..14], "%Y%m%d%H%M%S").ok()?;
    let ms: i64 = if s.len() == 17 {
        s[14..].parse().ok()?
    } else {
        0
    };
    Some(t.and_utc().timestamp_millis() - 8 * 3_600_000 + ms)
}

fn status_object(id: &str, url: &str, code: i64, text: &str, now_ms: i64) -> Value {
    json!({"Id": id, "RequestURL": url, "StatusCode": code, "StatusString": text,
           "LocalTime": local_time(now_ms)})
}

/// `{"ResponseStatusObject": …}`: the answer to a request about one thing.
pub fn one_status(id: &str, url: &str, code: i64, text: &str, now_ms: i64) -> Value {
    json!({"ResponseStatusObject": status_object(id, url, code, text, now_ms)})
}

impl Gateway {
    fn challenge(&self) -> String {
        let nonce = format!("{:032x}", rand::random::<u128>());
        let mut nonces = self.nonces.lock().expect("nonces");
        nonces.retain(|_, t| t.elapsed() < NONCE_TTL);
        nonces.insert(nonce.clone(), Instant::now());
        format!(
            "Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{nonce}\", opaque=\"{}\", algorithm=MD5",
            md5_hex(REALM)
        )
    }

    /// The caller's device id if its digest response is right for a nonce we issued.
    fn check_digest(
        &self,
        store: &Store,
        method: &str,
        authorization: Option<&str>,
    ) -> Result<String, String> {
        let f = authorization
            .and_then(digest_fields)
            .ok_or("no digest credentials")?;
        let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
        let user = get("username");
        let fresh = self
            .nonces
            .lock()
            .expect("nonces")
            .get(get("nonce"))
            .is_some_and(|t| t.elapsed() < NONCE_TTL);
        if !fresh {
            return Err("unknown or expired nonce".into());
        }
        let cred = store
            .catalog()
            .gat1400_credential(user)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{user:?} has no GA/T 1400 credential"))?;
        let ha2 = md5_hex(&format!("{method}:{}", get("uri")));
        let expected = match get("qop") {
            "" => md5_hex(&format!("{}:{}:{ha2}", cred.ha1, get("nonce"))),
            qop => md5_hex(&format!(
                "{}:{}:{}:{}:{qop}:{ha2}",
                cred.ha1,
                get("nonce"),
                get("nc"),
                get("cnonce")
            )),
        };
        if expected != get("response").to_ascii_lowercase() {
            return Err("the digest response does not match".into());
        }
        Ok(user.to_string())
    }

    fn is_registered(&self, id: &str) -> bool {
        self.registered
            .lock()
            .expect("registered")
            .get(id)
            .is_some_and(|t| t.elapsed() < REGISTRATION_TTL)
    }

    /// Answers one `/VIID/…` request. `user_identify` is the `User-Identify` header.
    #[allow(clippy::too_many_arguments)]
    pub fn answer(
        &self,
        store: &Store,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        user_identify: Option<&str>,
        body: &[u8],
        face_subject_field: &str,
        now_ms: i64,
    ) -> (Answer, Vec<(usize, EventInput)>, Vec<Value>) {
        let answer = |status, body| Answer {
            status,
            body,
            challenge: None,
        };
        let unauthorized = |why: &str| Answer {
            status: StatusCode::UNAUTHORIZED,
            body: one_status("", path, DEVICE_ERROR, why, now_ms),
            challenge: Some(self.challenge()),
        };
        match (method, path) {
            ("POST", "/VIID/System/Register" | "/VIID/System/UnRegister") => {
                match self.check_digest(store, method, authorization) {
                    Err(why) => (unauthorized(&why), Vec::new(), Vec::new()),
                    Ok(id) => {
                        let mut reg = self.registered.lock().expect("registered");
                        match path.ends_with("UnRegister") {
                            true => reg.remove(&id),
                            false => reg.insert(id.clone(), Instant::now()),
                        };
                        let body = one_status(&id, path, OK, "正常", now_ms);
                        (answer(StatusCode::OK, body), Vec::new(), Vec::new())
                    }
                }
            }
            ("GET", "/VIID/System/Time") => {
                let body = json!({"SystemTimeObject": {"VIIDServerID": "sightline",
                    "TimeMode": "1", "LocalTime": local_time(now_ms), "TimeZone": "Asia/Shanghai"}});
                (answer(StatusCode::OK, body), Vec::new(), Vec::new())
            }
            ("POST", "/VIID/System/Keepalive" | "/VIID/MotorVehicles" | "/VIID/Faces") => {
                let id = user_identify.unwrap_or("").trim().to_string();
                if !self.is_registered(&id) {
                    return (
                        unauthorized("not registered: POST /VIID/System/Register first"),
                        Vec::new(),
                        Vec::new(),
                    );
                }
                self.registered
                    .lock()
                    .expect("registered")
                    .insert(id.clone(), Instant::now());
                if path == "/VIID/System/Keepalive" {
                    let body = one_status(&id, path, OK, "正常", now_ms);
                    return (answer(StatusCode::OK, body), Vec::new(), Vec::new());
                }
                let (events, statuses) = objects(store, path, body, face_subject_field, now_ms);
                (answer(StatusCode::OK, Value::Null), events, statuses)
            }
            _ => (
                answer(
                    StatusCode::NOT_FOUND,
                    one_status(
                        "",
                        path,
                        INVALID_JSON_CONTENT,
                        "no such VIID resource",
                        now_ms,
                    ),
                ),
                Vec::new(),
                Vec::new(),
            ),
        }
    }
}

/// The `ResponseStatusListObject` answering an upload.
pub fn status_list(statuses: Vec<Value>) -> Value {
    json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}})
}

/// A string field given as a string or a number.
fn field(o: &Value, k: &str) -> Option<String> {
    match o.get(k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The uploaded objects as events (with their index in the upload), and a status for
/// every object: 0 for the well-formed (replaced by the store's verdict later), 7 for
/// a body that is not JSON, 8 for an object that cannot become an event.
fn objects(
    store: &Store,
    path: &str,
    body: &[u8],
    face_subject_field: &str,
    now_ms: i64,
) -> (Vec<(usize, EventInput)>, Vec<Value>) {
    let vehicles = path == "/VIID/MotorVehicles";
    let (list, item, id_field) = match vehicles {
        true => (
            "MotorVehicleListObject",
            "MotorVehicleObject",
            "MotorVehicleID",
        ),
        false => ("FaceListObject", "FaceObject", "FaceID"),
    };
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            let s = status_object(
                "",
                path,
                INVALID_JSON_FORMAT,
                &format!("not JSON: {e}"),
                now_ms,
            );
            return (Vec::new(), vec![s]);
        }
    };
    let Some(items) = v
        .get(list)
        .and_then(|l| l.get(item))
        .and_then(Value::as_array)
    else {
        let s = status_object(
            "",
            path,
            INVALID_JSON_CONTENT,
            &format!("expected {{\"{list}\":{{\"{item}\":[…]}}}}"),
            now_ms,
        );
        return (Vec::new(), vec![s]);
    };
    let mut devices: HashMap<String, Option<sightline_storage::Device>> = HashMap::new();
    let mut events = Vec::new();
    let mut statuses = Vec::new();
    for (i, o) in items.iter().enumerate() {
        let id = field(o, id_field).unwrap_or_default();
        let r = (|| -> Result<EventInput, String> {
            if id.is_empty() {
                return Err(format!("{id_field} is missing"));
            }
            let device = field(o, "DeviceID")
                .or_else(|| field(o, "TollgateID"))
                .ok_or("DeviceID is missing")?;
            let known = devices
                .entry(device.clone())
                .or_insert_with(|| store.catalog().device(&device).ok().flatten());
            let d = known
                .as_ref()
                .ok_or_else(|| format!("DeviceID {device} is not registered in the catalog"))?;
            let time_fields: &[&str] = match vehicles {
                true => &["PassTime"],
                false => &["ShotTime", "FaceAppearTime"],
            };
            let time = time_fields
                .iter()
                .find_map(|k| field(o, k))
                .ok_or_else(|| format!("{} is missing", time_fields.join(" or ")))?;
            let ts_ms = parse_time(&time)
                .ok_or_else(|| format!("{time:?} is not a time like 20210901080000"))?;
            let mut attrs = Attrs::new();
            attrs.insert("source_id".into(), AttrValue::Str(id.clone()));
            let mut put = |key: &str, from: &str| {
                if let Some(v) = field(o, from) {
                    attrs.insert(key.into(), AttrValue::Str(v));
                }
            };
            let subject = match vehicles {
                true => {
                    put("plate_color", "PlateColor");
                    put("vehicle_color", "VehicleColor");
                    put("vehicle_class", "VehicleClass");
                    put("vehicle_brand", "VehicleBrand");
                    put("image_url", "StorageUrl1");
                    field(o, "PlateNo").ok_or("PlateNo is missing")?
                }
                false => field(o, face_subject_field).unwrap_or_else(|| id.clone()),
            };
            if let Some(r) = field(o, "PlateReliability").and_then(|r| r.parse::<i64>().ok()) {
                attrs.insert("plate_reliability".into(), AttrValue::Int(r));
            }
            let scene = o
                .pointer("/SubImageList/SubImageInfoObject/0/StoragePath")
                .and_then(Value::as_str);
            if let Some(p) = scene {
                attrs.insert("scene_image_url".into(), AttrValue::Str(p.to_string()));
            }
            Ok(EventInput {
                ts_ms,
                community: d.community.clone(),
                device,
                kind: if vehicles { "vehicle" } else { "face" }.into(),
                subject,
                direction: d.direction.as_str().into(),
                attrs,
            })
        })();
        match r {
            Ok(e) => {
                events.push((i, e));
                statuses.push(status_object(&id, path, OK, "正常", now_ms));
            }
            Err(why) => statuses.push(status_object(&id, path, INVALID_JSON_CONTENT, &why, now_ms)),
        }
    }
    (events, statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_headers_parse_with_and_without_quotes() {
        let f = digest_fields(
            "Digest username=\"32050801011210000001\", realm=\"Sightline\", nonce=\"abc\", \
             uri=\"/VIID/System/Register\", qop=auth, nc=00000001, cnonce=\"x,y\", response=\"9f\"",
        )
        .unwrap();
        assert_eq!(f["username"], "32050801011210000001");
        assert_eq!(f["qop"], "auth");
        assert_eq!(f["nc"], "00000001");
        assert_eq!(f["cnonce"], "x,y");
        assert_eq!(f["response"], "9f");
        assert!(digest_fields("Basic abc").is_none());
    }

    #[test]
    fn times_parse_in_beijing_time_with_or_without_milliseconds() {
        let sept = 1_630_425_600_000; // 2021-09-01T00:00:00+08:00
        assert_eq!(parse_time("20210901000000"), Some(sept));
        assert_eq!(
            parse_time("20210901080000123"),
            Some(sept + 8 * 3_600_000 + 123)
        );
        assert_eq!(local_time(sept + 8 * 3_600_000 + 123), "20210901080000");
        for bad in ["2021090108000", "20211301080000", "2021-09-01T08", ""] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        // RFC 2617's own example.
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex("GET:/dir/index.html");
        let r = md5_hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }
}
