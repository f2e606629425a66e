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
//! * `GET /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles?<conditions>` and `GET
//!   /VIID/<resource>/{id}`: the objects a registered caller's record covers, by GA/T
//!   1400.4 query conditions (`conditions`, `query`), audited.
//! * Paths are read as `paths` says: escaped unreserved characters decoded, a trailing
//!   slash dropped, case kept.
//!
//! Lenient in what is accepted (numbers as strings or integers, missing optional
//! fields), exact in what is sent (integer `StatusCode`, `YYYYMMDDhhmmss` times).

pub(crate) mod catalog;
pub(crate) mod conditions;
pub(crate) mod digest;
pub(crate) mod digest_client;
pub(crate) mod dispositions;
pub(crate) mod handlers;
pub(crate) mod image_list;
mod nonces;
pub(crate) mod objects;
pub(crate) mod paths;
pub(crate) mod pictures;
pub(crate) mod query;
pub(crate) mod relay;
pub(crate) mod subscribes;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use serde_json::{json, Value};
use sightline_storage::Gat1400Credential;

/// The digest realm every credential is made for.
pub const REALM: &str = "Sightline";
/// How long a registration lasts without a keepalive.
pub(crate) const REGISTRATION_TTL: Duration = Duration::from_secs(3600);

/// Status codes of `ResponseStatusObject` (GA/T 1400.4): 0 OK, 1 OtherError,
/// 2 DeviceBusy, 3 DeviceError, 4 InvalidOperation, 5 InvalidXMLFormat,
/// 6 InvalidXMLContent, 7 InvalidJSONFormat, 8 InvalidJSONContent, 9 Reboot.
pub const OK: i64 = 0;
/// Another error (wvp-GB28181-pro answers an unknown `SubscribeID` with it:
/// "不存在订阅ID", "订阅不存在").
pub const OTHER_ERROR: i64 = 1;
/// The device (here: the gateway) is busy; try again.
pub const BUSY: i64 = 2;
/// The device (here: the gateway's store) failed.
pub const DEVICE_ERROR: i64 = 3;
/// The request is not allowed: not authenticated, not registered, a method the
/// resource does not take.
pub const INVALID_OPERATION: i64 = 4;
pub const INVALID_JSON_FORMAT: i64 = 7;
pub const INVALID_JSON_CONTENT: i64 = 8;

/// Lower-case hex of MD5.
pub fn md5_hex(text: &str) -> String {
    let d = Md5::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of MD5 of bytes.
pub fn md5_bytes_hex(bytes: &[u8]) -> String {
    let d = Md5::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of SHA-256.
pub fn sha256_hex(text: &str) -> String {
    crate::auth::sha256_hex(text.as_bytes())
}

/// The credential for `code`, digest user `username` with `password` (only its HA1
/// is kept).
pub fn credential(code: &str, username: &str, password: &str) -> Gat1400Credential {
    Gat1400Credential {
        code: code.to_string(),
        realm: REALM.to_string(),
        ha1: md5_hex(&format!("{username}:{REALM}:{password}")),
        ha1_sha256: sha256_hex(&format!("{username}:{REALM}:{password}")),
        username: username.to_string(),
    }
}

/// The relays of `platform` (code prefix → community) as `catalog` keeps them (empty:
/// none): what `sightline cluster catalog import` copies from a stopped store.
pub fn relays_in(
    catalog: &dyn sightline_storage::Catalog,
    platform: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    relay::prefixes_in(catalog, platform).map_err(|e| e.to_string())
}

/// A registered code: the address a proof bound it to, when it was last renewed from
/// anywhere (what sending takes, from anywhere with `--viid-registration-any-address`),
/// and when from that address itself (what a query takes: a binding its own address
/// stopped renewing lapses, whatever keeps the code alive elsewhere).
#[derive(Clone, Copy)]
struct Registration {
    from: Option<std::net::IpAddr>,
    renewed: Instant,
    renewed_there: Instant,
}

/// Issued nonces and registered callers.
#[derive(Default)]
pub struct Gateway {
    nonces: Mutex<nonces::Nonces>,
    /// Registered codes.
    registered: Mutex<HashMap<String, Registration>>,
    /// `--viid-registration-any-address`: a registration's `User-Identify` trusted
    /// from any address (a digest is trusted from anywhere regardless).
    any_address: bool,
    /// Object queries running (`GET /VIID/Faces?…`), at most [`OBJECT_QUERIES`].
    pub(crate) object_queries: std::sync::atomic::AtomicUsize,
    /// The user-name hashes of `serve`'s credentials (`digest::Catalogued`), read when
    /// first asked and again after a credential is put.
    userhashes: Mutex<Option<digest::UserHashes>>,
}

/// Object queries (`GET /VIID/MotorVehicles?…`, `/{id}`) a server answers at once:
/// each may read every row of its range's shards, so beyond this a query is answered
/// busy (2, HTTP 429) rather than taking the upload slots' CPU.
pub const OBJECT_QUERIES: usize = 2;

impl Gateway {
    /// A gateway whose digest nonces are signed with `key`: any gateway holding the
    /// key verifies them (the cluster's ingest nodes, `nonces.rs`).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub(crate) fn signed(key: [u8; 32]) -> Gateway {
        Gateway {
            nonces: Mutex::new(nonces::Nonces::signed(key)),
            registered: Mutex::default(),
            any_address: false,
            object_queries: Default::default(),
            userhashes: Mutex::default(),
        }
    }

    /// This gateway trusting a registration's `User-Identify` from any address when
    /// `yes` (`--viid-registration-any-address`).
    pub(crate) fn any_address(mut self, yes: bool) -> Gateway {
        self.any_address = yes;
        self
    }

    /// Whether `id` registered from `from` (a request without a digest is trusted on its
    /// `User-Identify` only from the address that registered it, or from any with
    /// `--viid-registration-any-address`) and has kept alive within the registration's
    /// life.
    pub(crate) fn is_registered(&self, id: &str, from: Option<std::net::IpAddr>) -> bool {
        self.registered
            .lock()
            .expect("registered")
            .get(id)
            .is_some_and(|r| {
                r.renewed.elapsed() < REGISTRATION_TTL && (self.any_address || r.from == from)
            })
    }

    /// Whether `id` registered from `from` itself and has kept alive from there within
    /// the registration's life, whatever `--viid-registration-any-address` says: what
    /// an object query without a digest needs (it reads a community's residents; the
    /// flag lets a code send from anywhere, never read).
    pub(crate) fn is_registered_from(&self, id: &str, from: Option<std::net::IpAddr>) -> bool {
        self.registered
            .lock()
            .expect("registered")
            .get(id)
            .is_some_and(|r| r.renewed_there.elapsed() < REGISTRATION_TTL && r.from == from)
    }

    /// Whether `id` is registered (from wherever: for listings).
    pub(crate) fn is_online(&self, id: &str) -> bool {
        self.registered
            .lock()
            .expect("registered")
            .get(id)
            .is_some_and(|r| r.renewed.elapsed() < REGISTRATION_TTL)
    }

    /// Renews `id`'s registration's life (from `from`), keeping the address it
    /// registered from: a request proven by the registration itself (its
    /// `User-Identify`) never moves it — with `--viid-registration-any-address` one
    /// from elsewhere would otherwise bind the code to the sender's address, where
    /// queries take it — and renews what a query takes only from that address. A
    /// registration past its life is not brought back.
    fn renew(&self, id: &str, from: Option<std::net::IpAddr>) {
        let mut registered = self.registered.lock().expect("registered");
        if let Some(r) = registered.get_mut(id) {
            if r.renewed.elapsed() < REGISTRATION_TTL {
                r.renewed = Instant::now();
                if r.from == from {
                    r.renewed_there = r.renewed;
                }
            }
        }
    }

    /// Registers `id` from `from` (again: a proof on a request — a digest, a client
    /// certificate — binds it to the request's address).
    fn register(&self, id: &str, from: Option<std::net::IpAddr>) {
        let now = Instant::now();
        self.registered.lock().expect("registered").insert(
            id.to_string(),
            Registration {
                from,
                renewed: now,
                renewed_there: now,
            },
        );
    }

    fn unregister(&self, id: &str) {
        self.registered.lock().expect("registered").remove(id);
    }
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
/// epoch milliseconds; also `YYYY-MM-DD hh:mm:ss[.SSS]` (or with a `T`), as some
/// clients write it (and object queries take it).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.contains('-') {
        let t = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())?;
        return Some(t.and_utc().timestamp_millis() - 8 * 3_600_000);
    }
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

/// A field given as a string (trimmed, not empty) or a number, as text: devices send
/// either. Named as [`field`] finds it (`DeviceId`, `deviceID` for `DeviceID`).
pub(crate) fn text(o: &Value, k: &str) -> Option<String> {
    match field(o, k)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        // A whole number past 2^53 that is not an integer JSON reader's (a 20-digit code
        // past u64, `32050801011190000007`) has lost its digits: said so, not passed on
        // as `3.205080101119e19`.
        Value::Number(n)
            if !(n.is_u64() || n.is_i64())
                && n.as_f64()
                    .is_some_and(|f| f.fract() == 0.0 && f.abs() >= 9.0e15) =>
        {
            Some(format!(
                "{n} (a number too long to keep its digits: send {k} as a string)"
            ))
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Member `k` of `o`, else the one whose name differs only in case (Java beans
/// serialized without annotations send `subscribeListObject`, `subscribeObject`).
pub(crate) fn field<'a>(o: &'a Value, k: &str) -> Option<&'a Value> {
    let m = o.as_object()?;
    m.get(k).or_else(|| {
        m.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, v)| v)
    })
}

/// An object with each member named as GA/T 1400 names it when it came as a Java
/// bean without annotations names it (`subscribeID` → `SubscribeID`), unless both
/// forms are given. Nested objects are left as they are.
pub(crate) fn capitalized(o: &Value) -> Value {
    let Some(m) = o.as_object() else {
        return o.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in m {
        let mut chars = k.chars();
        let upper = match chars.next() {
            Some(c) if c.is_ascii_lowercase() => {
                let u = format!("{}{}", c.to_ascii_uppercase(), chars.as_str());
                (!m.contains_key(&u)).then_some(u)
            }
            _ => None,
        };
        out.insert(upper.unwrap_or_else(|| k.clone()), v.clone());
    }
    Value::Object(out)
}

pub(crate) fn status_object(id: &str, url: &str, code: i64, text: &str, now_ms: i64) -> Value {
    json!({"Id": id, "RequestURL": url, "StatusCode": code, "StatusString": text,
           "LocalTime": local_time(now_ms)})
}

/// `{"ResponseStatusObject": …}`: the answer to a request about one thing.
pub fn one_status(id: &str, url: &str, code: i64, text: &str, now_ms: i64) -> Value {
    json!({"ResponseStatusObject": status_object(id, url, code, text, now_ms)})
}

/// The `ResponseStatusListObject` answering an upload.
pub fn status_list(statuses: Vec<Value>) -> Value {
    json!({"ResponseStatusListObject": {"ResponseStatusObject": statuses}})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes are sent as strings or numbers; a number too long for an integer (20
    /// digits past u64) is told as such, naming the field, never passed on in exponent
    /// form; other numbers, fractions too, are their text.
    #[test]
    fn numbers_are_text_unless_their_digits_are_lost() {
        let o: Value = serde_json::from_str(
            r#"{"DeviceID": 32050801011190000007, "Short": 12345678901234567, "Speed": 12.5,
                "Lane": 2, "Code": " 3205 ", "Empty": " "}"#,
        )
        .unwrap();
        let lost = text(&o, "DeviceID").unwrap();
        assert!(
            lost.contains("send DeviceID as a string") && !lost.starts_with("32050801011190000007"),
            "{lost}"
        );
        assert_eq!(text(&o, "Short").as_deref(), Some("12345678901234567"));
        assert_eq!(text(&o, "Speed").as_deref(), Some("12.5"));
        assert_eq!(text(&o, "Lane").as_deref(), Some("2"));
        assert_eq!(text(&o, "Code").as_deref(), Some("3205"));
        assert_eq!(text(&o, "Empty"), None);
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
        assert_eq!(
            parse_time("2021-09-01 08:00:00"),
            Some(sept + 8 * 3_600_000)
        );
        assert_eq!(
            parse_time("2021-09-01T08:00:00.123"),
            Some(sept + 8 * 3_600_000 + 123)
        );
        for bad in [
            "2021090108000",
            "20211301080000",
            "2021-09-01T08",
            "2021-09-01 08:00:00+08:00",
            "2021-13-01 08:00:00",
            "",
        ] {
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
