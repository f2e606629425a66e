//! Upstreams: this server as a lower platform (下级) of another 视图库. It registers
//! there with HTTP Digest (`POST /VIID/System/Register`, answering the 401 challenge),
//! keeps alive (`POST /VIID/System/Keepalive`), registers again whenever the upstream
//! forgets it (a 401 to a keepalive or an upload, or a keepalive that fails), and
//! uploads its events as `POST /VIID/MotorVehicles`, `/VIID/Faces`, `/VIID/Persons`
//! and `/VIID/NonMotorVehicles` list objects.
//!
//! An upstream is a [`Subscription`] with an [`Upstream`] part: the uploads go through
//! the one delivery worker (`deliver.rs`: durable cursor, at least once, in order,
//! backoff, status, the upstream's `ResponseStatusListObject` read object by object:
//! 0 or "already exists" taken, 5–8 refused for good and passed, anything else sent
//! again). This file holds what only an upstream has: the registration ([`Session`],
//! its task, the `UnRegister` when deleted or at shutdown), learning the upper's id,
//! and the upload bodies.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::deliver::{self, Delivery, DeliveryError, Pictures, CLASSES};
use super::Subscription;
use crate::gat1400::digest_client::Challenge;
use crate::http::client::Outbound;

/// How long shutdown waits for the upstreams to take our `UnRegister`s.
pub(crate) const UNREGISTER_AT_SHUTDOWN: Duration = Duration::from_secs(3);

/// The default time between keepalives (GA/T 1400 platforms use 30 s to 60 s).
pub const DEFAULT_KEEPALIVE_S: u64 = 30;
/// Registration attempts back off from 1 s up to the keepalive interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What an upstream keeps beside its filter (in the catalog, with the subscription).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Upstream {
    /// The upstream's own 20-digit 视图库 id. While registered there, a request here
    /// whose `User-Identify` is exactly this id is that upper platform's (its
    /// subscriptions, catalogue reads). When not given it is learned at registration:
    /// the `Id` of the Register answer when it is another 20-digit code than ours,
    /// else `VIIDServerID` of the upstream's `GET /VIID/System/Time`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Our id there: the `RegisterObject`'s `DeviceID` and every request's
    /// `User-Identify` (by default this server's `--viid-server-id`).
    pub device_id: String,
    /// The digest user name (by default `device_id`).
    pub username: String,
    /// The digest password: kept to answer challenges, never shown.
    pub password: String,
    /// Pictures as base64 `Data` (else by `StoragePath` at this server).
    pub image_data: bool,
    pub keepalive_s: u64,
}

/// An upstream's registration, as its status shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SessionState {
    pub registered: bool,
    /// Successful registrations since the worker started (the first, and each time
    /// the upstream forgot us).
    pub registrations: u64,
    pub last_registered_ms: Option<i64>,
    pub last_keepalive_ms: Option<i64>,
    /// Why the last registration or keepalive failed (cleared by the next success).
    pub register_error: Option<String>,
}

/// Why a registration or keepalive failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("{0}")]
    Exchange(#[from] DeliveryError),
    #[error("{path}: answered 401 without a digest challenge this client answers")]
    NoChallenge { path: String },
    #[error("{path}: refused the digest (401 again): check device_id, username and password")]
    Refused { path: String },
    #[error("{path}: answered {status}")]
    Status {
        path: String,
        status: hyper::StatusCode,
    },
    #[error("{path}: StatusCode {code} ({text:?})")]
    NotOk {
        path: String,
        code: String,
        text: String,
    },
}

/// One upstream's registration: where, as whom, the last challenge (its nonce reused
/// with a growing `nc` until refused), and the state shown.
pub(crate) struct Session {
    addr: String,
    /// The base URL's path, without a trailing `/` (usually empty).
    base: String,
    up: Upstream,
    challenge: tokio::sync::Mutex<Option<Challenge>>,
    state: Mutex<SessionState>,
    /// The communities the upstream reads (`None`: every one): the scope of what its
    /// upper platform subscribes to here.
    scope: Option<Vec<String>>,
    /// The upstream's 视图库 id learned at registration (when `server_id` is not set).
    learned: Mutex<Option<String>>,
    /// The upstream's addresses as last resolved at a registration (its host when a
    /// name; an IP address is compared as it is): where its upper platform's requests
    /// may come from ([`Session::is_at`]), never resolved on a request's path.
    resolved: Mutex<Vec<std::net::IpAddr>>,
}

impl Session {
    /// The registration of an upstream subscription (`None` for any other).
    pub(crate) fn of(s: &Subscription) -> Option<Session> {
        let up = s.upstream.clone()?;
        let (addr, path) = super::target(&s.url).ok()?;
        let allowed = |c: &&String| s.scope.as_ref().is_none_or(|sc| sc.contains(c));
        let scope = match (&s.communities, &s.scope) {
            (None, None) => None,
            (Some(cs), _) => Some(cs.iter().filter(allowed).cloned().collect()),
            (None, Some(sc)) => Some(sc.clone()),
        };
        Some(Session {
            addr,
            base: path.trim_end_matches('/').to_string(),
            up,
            challenge: Default::default(),
            state: Default::default(),
            scope,
            learned: Default::default(),
            resolved: Default::default(),
        })
    }

    /// Whether `id` is this upstream's 视图库 id exactly and we are registered there.
    pub(crate) fn is_live_upper(&self, id: &str) -> bool {
        self.server_id().as_deref() == Some(id) && self.registered()
    }

    /// The upstream's `host:port` (its origin without the scheme).
    fn host_port(&self) -> &str {
        self.addr.split_once("://").map_or(&*self.addr, |(_, r)| r)
    }

    /// Whether `peer` is the upstream's address (its host as this server reaches it:
    /// an IP address as written, a name as resolved at the last registration).
    pub(crate) fn is_at(&self, peer: std::net::IpAddr) -> bool {
        let canonical = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        self.addresses()
            .into_iter()
            .any(|ip| canonical(ip) == canonical(peer))
    }

    /// The upper platform this upstream is, as `Registry::upper` gives it.
    /// What its upper platform is here, this session being upstream `sub`'s.
    pub(crate) fn upper(&self, sub: String) -> super::Upper {
        super::Upper {
            device_id: self.up.device_id.clone(),
            scope: self.scope(),
            upstream: sub,
        }
    }

    /// Learns the upstream's 视图库 id (when not configured): the Register answer's
    /// `Id` when it is a 20-digit code other than ours, else the `VIIDServerID` of its
    /// `GET /VIID/System/Time`.
    async fn learn_server_id(&self, outbound: &Outbound, register_answer: &[u8]) {
        if self.up.server_id.is_some() {
            return;
        }
        let code = |v: Option<&str>| {
            v.map(str::trim)
                .filter(|c| c.len() == 20 && c.bytes().all(|b| b.is_ascii_digit()))
                .filter(|c| *c != self.up.device_id)
                .map(str::to_string)
        };
        let answered: Option<Value> = serde_json::from_slice(register_answer).ok();
        let mut id = code(
            answered
                .as_ref()
                .and_then(|v| v.pointer("/ResponseStatusObject/Id"))
                .and_then(Value::as_str),
        );
        if id.is_none() {
            let path = format!("{}/VIID/System/Time", self.base);
            let req = deliver::viid_request(hyper::Method::GET, &path, &self.up.device_id);
            if let Ok((status, _, answer)) =
                deliver::exchange(&self.addr, req, Vec::new(), outbound).await
            {
                let v: Option<Value> = serde_json::from_slice(&answer).ok();
                if status.is_success() {
                    id = code(
                        v.as_ref()
                            .and_then(|v| v.pointer("/SystemTimeObject/VIIDServerID"))
                            .and_then(Value::as_str),
                    );
                }
            }
        }
        if id.is_some() {
            *self.learned.lock().expect("session") = id;
        }
    }

    pub(crate) fn device_id(&self) -> &str {
        &self.up.device_id
    }

    /// The upstream's 视图库 id (configured, else learned at registration), when known.
    pub(crate) fn server_id(&self) -> Option<String> {
        match &self.up.server_id {
            Some(s) => Some(s.clone()),
            None => self.learned.lock().expect("session").clone(),
        }
    }

    /// The addresses its upper platform's requests may come from: the host as written
    /// when an IP address, else as resolved at the last registration.
    pub(crate) fn addresses(&self) -> Vec<std::net::IpAddr> {
        let host_port = self.host_port();
        let host = host_port
            .rsplit_once(':')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => self.resolved.lock().expect("session").clone(),
        }
    }

    /// The communities the upstream reads (`None`: every one).
    pub(crate) fn scope(&self) -> Option<Vec<String>> {
        self.scope.clone()
    }

    pub(crate) fn state(&self) -> SessionState {
        self.state.lock().expect("session").clone()
    }

    fn registered(&self) -> bool {
        self.state.lock().expect("session").registered
    }

    /// The upstream no longer knows us: the next request registers again.
    pub(crate) fn forget(&self) {
        self.state.lock().expect("session").registered = false;
    }

    fn failed(&self, e: &SessionError) {
        let mut st = self.state.lock().expect("session");
        st.registered = false;
        st.register_error = Some(e.to_string());
    }

    /// `POST /VIID/System/{what}` with `{"{what}Object":{"DeviceID":…}}` by
    /// [`digest_request`] (our login answering its challenge): the answer, when its
    /// `StatusCode` is 0.
    async fn system_post(
        &self,
        outbound: &Outbound,
        what: &str,
    ) -> Result<hyper::body::Bytes, SessionError> {
        let path = format!("{}/VIID/System/{what}", self.base);
        let body = json!({ format!("{what}Object"): {"DeviceID": self.up.device_id} }).to_string();
        let login = Login {
            device_id: &self.up.device_id,
            username: &self.up.username,
            password: &self.up.password,
        };
        let mut challenge = self.challenge.lock().await;
        digest_request(
            outbound,
            &self.addr,
            hyper::Method::POST,
            &path,
            body.into_bytes(),
            &login,
            &mut challenge,
        )
        .await
        .and_then(|(status, answer)| ok_status(&path, status, &answer).map(|()| answer))
    }

    /// `POST /VIID/System/Register` with `{"RegisterObject":{"DeviceID":…}}`, by
    /// [`digest_request`]. Ok when the upstream answered `StatusCode` 0.
    pub(crate) async fn register(&self, outbound: &Outbound) -> Result<(), SessionError> {
        let done = self.system_post(outbound, "Register").await;
        if let Ok(answer) = &done {
            self.learn_server_id(outbound, answer).await;
        }
        let done = done.map(|_| ());
        if done.is_ok() {
            // Where its upper platform's requests may come from (`is_at`).
            if let Ok(found) = tokio::net::lookup_host(self.host_port()).await {
                *self.resolved.lock().expect("session") = found.map(|a| a.ip()).collect();
            }
        }
        match &done {
            Ok(()) => {
                let mut st = self.state.lock().expect("session");
                st.registered = true;
                st.registrations += 1;
                st.last_registered_ms = Some(crate::now_ms());
                st.register_error = None;
            }
            Err(e) => self.failed(e),
        }
        done
    }

    /// `POST /VIID/System/UnRegister` with `{"UnRegisterObject":{"DeviceID":…}}` (the
    /// upstream deleted here), answering a challenge as the registration does. Ok when
    /// the upstream answered `StatusCode` 0.
    pub(crate) async fn unregister(&self, outbound: &Outbound) -> Result<(), SessionError> {
        let done = self.system_post(outbound, "UnRegister").await.map(|_| ());
        self.forget();
        done
    }

    /// `POST /VIID/System/Keepalive` with `{"KeepaliveObject":{"DeviceID":…}}`.
    async fn keepalive(&self, outbound: &Outbound) -> Result<(), SessionError> {
        let path = format!("{}/VIID/System/Keepalive", self.base);
        let body = json!({"KeepaliveObject": {"DeviceID": self.up.device_id}}).to_string();
        let req = deliver::viid_request(hyper::Method::POST, &path, &self.up.device_id);
        let (status, _, answer) =
            deliver::exchange(&self.addr, req, body.into_bytes(), outbound).await?;
        let done = ok_status(&path, status, &answer);
        match &done {
            Ok(()) => {
                let mut st = self.state.lock().expect("session");
                st.last_keepalive_ms = Some(crate::now_ms());
                st.register_error = None;
            }
            Err(e) => self.failed(e),
        }
        done
    }
}

/// Who this server is at another 视图库: `User-Identify`, and the digest's user name and
/// password.
pub(crate) struct Login<'a> {
    pub device_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
}

/// A GA/T 1400 request authenticated by digest: answered with `challenge`'s nonce (the
/// next `nc`) when there is one; a 401 brings a new challenge, answered once. A 401 to
/// that fresh answer is a refusal — unless it says `stale=true` (RFC 7616 §3.3: only
/// the nonce was refused, the password was right), when its new nonce is answered
/// once more. So at most three requests. The answer's status and body.
pub(crate) async fn digest_request(
    outbound: &Outbound,
    addr: &str,
    method: hyper::Method,
    path: &str,
    body: Vec<u8>,
    login: &Login<'_>,
    challenge: &mut Option<Challenge>,
) -> Result<(hyper::StatusCode, hyper::body::Bytes), SessionError> {
    let mut answered_fresh = false;
    let mut answered_stale = false;
    loop {
        let authorization = challenge
            .as_mut()
            .map(|c| c.answer(login.username, login.password, method.as_str(), path, &body));
        let mut req = deliver::viid_request(method.clone(), path, login.device_id);
        if let Some(a) = &authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let (status, headers, answer) =
            deliver::exchange(addr, req, body.clone(), outbound).await?;
        if status != hyper::StatusCode::UNAUTHORIZED {
            return Ok((status, answer));
        }
        let offered = headers
            .get_all(hyper::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let picked = Challenge::pick(offered);
        if answered_fresh {
            match picked {
                Some(stale) if stale.stale() && !answered_stale => {
                    *challenge = Some(stale);
                    answered_stale = true;
                    continue;
                }
                _ => {
                    return Err(SessionError::Refused {
                        path: path.to_string(),
                    })
                }
            }
        }
        *challenge = Some(picked.ok_or_else(|| SessionError::NoChallenge {
            path: path.to_string(),
        })?);
        answered_fresh = true;
    }
}

/// Ok for a 2xx whose `ResponseStatusObject` (if any) says `StatusCode` 0.
pub(crate) fn ok_status(
    path: &str,
    status: hyper::StatusCode,
    answer: &[u8],
) -> Result<(), SessionError> {
    if !status.is_success() {
        return Err(SessionError::Status {
            path: path.to_string(),
            status,
        });
    }
    match deliver::refusal(answer) {
        Some((code, text)) => Err(SessionError::NotOk {
            path: path.to_string(),
            code,
            text,
        }),
        None => Ok(()),
    }
}

/// The registration task of an upstream: registers (backing off from 1 s to the
/// keepalive interval while it cannot), then keeps alive every interval; a failed
/// keepalive (a 401: the upstream forgot us; or no answer: it may come back without
/// us) registers again.
pub(crate) async fn registration(outbound: Outbound, session: Arc<Session>) {
    registration_fenced(outbound, session, |_| async { true }).await
}

/// [`registration`], with `fence` asked before every registration after the first
/// and told every outcome (the state as it is then): false ends the task (a cluster
/// query node whose lease on the upstream moved on must not register again).
pub(crate) async fn registration_fenced<F, Fut>(outbound: Outbound, session: Arc<Session>, fence: F)
where
    F: Fn(SessionState) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let interval = Duration::from_secs(session.up.keepalive_s.max(1));
    let mut retry = FIRST_RETRY;
    let mut first = true;
    loop {
        if !session.registered() {
            if !first && !fence(session.state()).await {
                return;
            }
            first = false;
            let done = session.register(&outbound).await;
            if !fence(session.state()).await {
                return;
            }
            match done {
                Ok(()) => retry = FIRST_RETRY,
                Err(e) => {
                    tracing::warn!(upstream = %session.addr, error = %e, "upstream registration failed");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(interval);
                    continue;
                }
            }
        }
        tokio::time::sleep(interval).await;
        if session.registered() {
            if let Err(e) = session.keepalive(&outbound).await {
                tracing::warn!(upstream = %session.addr, error = %e, "upstream keepalive failed");
            }
            if !fence(session.state()).await {
                return;
            }
        }
    }
}

/// The uploads of one page's matching events (serialized as in the API): one per run
/// of consecutive events of one class, as `{"<Class>ListObject":{"<Class>Object":[…]}}`
/// to that class's path, each moving the cursor past its run (the last run: to
/// `next_after`, past the events that did not match too). The objects are the ones
/// notifications carry ([`deliver::object_of`]).
pub(crate) fn uploads(
    host: &dyn deliver::Host,
    s: &Subscription,
    up: &Upstream,
    events: &[Value],
    next_after: u64,
    now_ms: i64,
) -> Vec<Delivery> {
    let base = host.public_base();
    let pictures = match up.image_data {
        true => Pictures::Data,
        false => Pictures::Reference,
    };
    let (_, path) = super::target(&s.url).unwrap_or_default();
    let prefix = path.trim_end_matches('/');
    // Runs of one class: (class, objects, the last event id).
    let mut runs: Vec<(usize, Vec<Value>, u64)> = Vec::new();
    for e in events {
        let Some((slot, _, o)) = deliver::object_of(host, e, now_ms, pictures, &base) else {
            continue;
        };
        let id = e["id"].as_u64().unwrap_or(0);
        match runs.last_mut() {
            Some((last, objects, through)) if *last == slot => {
                objects.push(o);
                *through = id;
            }
            _ => runs.push((slot, vec![o], id)),
        }
    }
    let count = runs.len();
    runs.into_iter()
        .enumerate()
        .map(|(i, (slot, objects, through))| {
            let class = &CLASSES[slot];
            let n = objects.len() as u64;
            let body = json!({ class.upload_list: { class.item: objects } });
            Delivery {
                path: format!("{prefix}{}", class.upload_path),
                payload: serde_json::to_vec(&body).expect("serializes"),
                n,
                next: if i + 1 == count { next_after } else { through },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream on 127.0.0.1 answering its connections in turn with `answers`
    /// (status line and headers), one request each; the `Authorization` of each
    /// request it read.
    async fn upstream(
        answers: Vec<String>,
    ) -> (String, tokio::task::JoinHandle<Vec<Option<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap() == 0 {
                        break;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                s.read_exact(&mut body).await.unwrap();
                seen.push(head.lines().find_map(|l| {
                    l.strip_prefix("Authorization: ")
                        .or_else(|| l.strip_prefix("authorization: "))
                        .map(str::to_string)
                }));
                let reply = format!("{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                s.write_all(reply.as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
            seen
        });
        (addr, task)
    }

    fn challenge(nonce: &str, stale: bool) -> String {
        let stale = if stale { ", stale=true" } else { "" };
        format!(
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"up\", qop=\"auth\", \
             nonce=\"{nonce}\", algorithm=MD5{stale}"
        )
    }

    async fn request(addr: &str) -> Result<hyper::StatusCode, SessionError> {
        let outbound = Outbound::new(None).unwrap();
        let login = Login {
            device_id: "32050800005030000001",
            username: "u",
            password: "p",
        };
        let mut held = None;
        digest_request(
            &outbound,
            addr,
            hyper::Method::POST,
            "/VIID/System/Register",
            b"{}".to_vec(),
            &login,
            &mut held,
        )
        .await
        .map(|(status, _)| status)
    }

    /// RFC 7616 §3.3: a `stale=true` 401 to a fresh answer refused only the nonce: the
    /// new one is answered once more, not taken as a wrong password.
    #[tokio::test]
    async fn a_stale_answer_to_a_fresh_one_is_answered_again_with_the_new_nonce() {
        let (addr, seen) = upstream(vec![
            challenge("n1", false),
            challenge("n2", true),
            "HTTP/1.1 200 OK".to_string(),
        ])
        .await;
        assert_eq!(request(&addr).await.unwrap(), hyper::StatusCode::OK);
        let seen = seen.await.unwrap();
        assert!(seen[0].is_none(), "{seen:?}");
        assert!(
            seen[1].as_deref().unwrap().contains("nonce=\"n1\""),
            "{seen:?}"
        );
        assert!(
            seen[2].as_deref().unwrap().contains("nonce=\"n2\""),
            "{seen:?}"
        );
    }

    /// Once only: stale again, or a 401 without `stale`, is a refusal.
    #[tokio::test]
    async fn stale_is_answered_once_and_a_plain_401_is_a_refusal() {
        let (addr, seen) = upstream(vec![
            challenge("n1", false),
            challenge("n2", true),
            challenge("n3", true),
        ])
        .await;
        assert!(matches!(
            request(&addr).await,
            Err(SessionError::Refused { .. })
        ));
        assert_eq!(seen.await.unwrap().len(), 3);
        let (addr, seen) = upstream(vec![challenge("n1", false), challenge("n2", false)]).await;
        assert!(matches!(
            request(&addr).await,
            Err(SessionError::Refused { .. })
        ));
        assert_eq!(seen.await.unwrap().len(), 2);
    }
}
