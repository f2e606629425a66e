//! Remote subscriptions: this server subscribing at another 视图库 (an upper platform
//! subscribing to a lower one, 级联). `POST /v1/remote-subscriptions` places a
//! `SubscribeObject` there (`POST /VIID/Subscribes`, digest-authenticated as the
//! upstream registration is), with this server's `/VIID/SubscribeNotifications` as
//! `ReceiveAddr`; what comes back is stored as that platform's uploads.
//!
//! A worker places it (`POST /VIID/Subscribes`) until the other side answers
//! `StatusCode` 0, or that it already has it (1 s doubling to 60 s while it cannot),
//! then asserts it again every [`REASSERT`] as a change (`PUT /VIID/Subscribes`, the
//! same `SubscribeID`; placed by `POST` again when the other side no longer knows it).
//! `DELETE` cancels it there — `PUT /VIID/Subscribes/<SubscribeID>` with the
//! standard's cancel fields (`SubscribeCancelOrg`, `SubscribeCancelPerson`,
//! `CancelTime`, `CancelReason`), else `DELETE /VIID/Subscribes?IDList=…` — and
//! forgets it once the other side took the cancel; until then the worker tries it
//! again (1 s doubling to 60 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::upstream::{digest_request, ok_status, Login, SessionError};
use crate::error::ApiError;
use crate::gat1400::digest_client::Challenge;
use crate::http::client::Outbound;
use crate::App;

const TREE: &str = "remote_subscriptions";
/// How often a placed subscription is placed again.
pub const REASSERT: Duration = Duration::from_secs(300);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// A subscription this server holds at another 视图库 (in the catalog).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RemoteSubscription {
    pub id: String,
    /// The other 视图库's base URL.
    pub url: String,
    /// Our id there (`User-Identify`), the digest user name and password.
    pub device_id: String,
    pub username: String,
    pub password: String,
    /// The `SubscribeObject` placed there (its `SubscribeID` is ours).
    pub object: Value,
    pub owner: String,
    pub created_ms: i64,
    /// Deleted here, its cancel at the other side not yet taken: the worker cancels it
    /// until taken, then forgets it.
    #[serde(default)]
    pub cancelling: bool,
}

/// How placing it is going.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteStatus {
    pub placed: bool,
    /// Times the other side took it (`StatusCode` 0) since the worker started.
    pub placements: u64,
    pub last_placed_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The other side's addresses as last resolved before placing it: where its
    /// notifications may come from (`Remotes::sender_is_remote`).
    #[serde(skip)]
    pub resolved: Vec<std::net::IpAddr>,
}

type Running = (tokio::task::JoinHandle<()>, Arc<Mutex<RemoteStatus>>);

/// Running remote subscriptions.
#[derive(Default)]
pub struct Remotes {
    running: Mutex<HashMap<String, Running>>,
}

fn decode(bytes: &[u8]) -> Result<RemoteSubscription, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("a stored remote subscription is unreadable: {e}")))
}

/// Whether `peer` is the platform at `url`: its host when that is an IP address,
/// else one of `resolved` (its name as resolved before the last placing); IPv4-mapped
/// addresses as the IPv4 they carry. `serve`'s and a cluster ingest node's check of a
/// `/VIID/SubscribeNotifications` sender.
pub(crate) fn sender_among(
    url: &str,
    resolved: &[std::net::IpAddr],
    peer: Option<std::net::IpAddr>,
) -> bool {
    let Some(peer) = peer else { return false };
    let canonical = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    let Ok((origin, _)) = crate::http::client::Origin::parse(url) else {
        return false;
    };
    let host = origin.host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => canonical(ip) == canonical(peer),
        Err(_) => resolved.iter().any(|ip| canonical(*ip) == canonical(peer)),
    }
}

impl Remotes {
    /// Starts the worker of every stored remote subscription.
    pub(crate) fn start_all(app: &Arc<App>) -> Result<(), ApiError> {
        for (_, bytes) in app.store.catalog().kv_list(TREE)? {
            Self::start(app, decode(&bytes)?);
        }
        Ok(())
    }

    /// Stores and starts one.
    pub(crate) fn create(app: &Arc<App>, r: RemoteSubscription) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(&r).expect("serializes");
        app.store.catalog().kv_put(TREE, &r.id, &bytes)?;
        Self::start(app, r);
        Ok(())
    }

    fn start(app: &Arc<App>, r: RemoteSubscription) {
        let status = Arc::new(Mutex::new(RemoteStatus::default()));
        let task = tokio::spawn(place_and_keep(app.clone(), r.clone(), status.clone()));
        let replaced = app
            .remotes
            .running
            .lock()
            .expect("remotes")
            .insert(r.id, (task, status));
        if let Some((task, _)) = replaced {
            task.abort();
        }
    }

    /// Every stored one with its status.
    pub(crate) fn list(app: &App) -> Result<Vec<(RemoteSubscription, RemoteStatus)>, ApiError> {
        let stored = app.store.catalog().kv_list(TREE)?;
        let running = app.remotes.running.lock().expect("remotes");
        let mut out = Vec::new();
        for (_, bytes) in stored {
            let r = decode(&bytes)?;
            let status = running
                .get(&r.id)
                .map(|(_, st)| st.lock().expect("status").clone())
                .unwrap_or_default();
            out.push((r, status));
        }
        Ok(out)
    }

    /// Keeps it as being cancelled: its worker cancels it at the other side until
    /// taken, then forgets it.
    pub(crate) fn cancel_later(app: &Arc<App>, mut r: RemoteSubscription) -> Result<(), ApiError> {
        r.cancelling = true;
        Self::create(app, r)
    }

    /// Stops its worker and forgets it (the caller cancels it at the other side).
    pub(crate) fn forget(app: &App, id: &str) -> Result<(), ApiError> {
        if let Some((task, _)) = app.remotes.running.lock().expect("remotes").remove(id) {
            task.abort();
        }
        app.store.catalog().kv_delete(TREE, id)?;
        Ok(())
    }

    /// The remote subscription whose `SubscribeID` is `subscribe_id` (notifications
    /// for any other are not taken).
    pub(crate) fn placed(
        app: &App,
        subscribe_id: &str,
    ) -> Result<Option<RemoteSubscription>, ApiError> {
        if subscribe_id.is_empty() {
            return Ok(None);
        }
        for (_, bytes) in app.store.catalog().kv_list(TREE)? {
            let r = decode(&bytes)?;
            if crate::gat1400::text(&r.object, "SubscribeID").as_deref() == Some(subscribe_id) {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// Whether a notification for remote subscription `r` from `peer` comes from the
    /// platform it was placed at: `peer` is its URL's host (an IP address as written,
    /// a name as resolved before the last placing). Any address with
    /// `--viid-registration-any-address` (a platform sending from several nodes).
    pub(crate) fn sender_is_remote(
        app: &App,
        r: &RemoteSubscription,
        peer: Option<std::net::IpAddr>,
    ) -> bool {
        if app.config.viid_registration_any_address {
            return true;
        }
        let resolved = app
            .remotes
            .running
            .lock()
            .expect("remotes")
            .get(&r.id)
            .map(|(_, st)| st.lock().expect("status").resolved.clone())
            .unwrap_or_default();
        sender_among(&r.url, &resolved, peer)
    }

    /// Stops every worker (at shutdown).
    pub fn stop_all(&self) {
        for (_, (task, _)) in self.running.lock().expect("remotes").drain() {
            task.abort();
        }
    }
}

fn login(r: &RemoteSubscription) -> Login<'_> {
    Login {
        device_id: &r.device_id,
        username: &r.username,
        password: &r.password,
    }
}

/// The origin and base path of the other 视图库.
fn base(r: &RemoteSubscription) -> Result<(String, String), SessionError> {
    let (addr, path) = super::target(&r.url).map_err(|e| SessionError::NotOk {
        path: r.url.clone(),
        code: "url".into(),
        text: e.to_string(),
    })?;
    Ok((addr, path.trim_end_matches('/').to_string()))
}

/// Whether a refusal says the other side already has it (a `POST` of a `SubscribeID`
/// it knows), or does not know it (a `PUT` or cancel of one it forgot).
fn says(e: &SessionError, words: &[&str]) -> bool {
    match e {
        SessionError::NotOk { text, .. } => {
            let lower = text.to_ascii_lowercase();
            words.iter().any(|w| lower.contains(w))
        }
        _ => false,
    }
}
const EXISTS: [&str; 4] = ["已存在", "重复", "already exist", "duplicate"];
// ("unknown" alone would take "unknown error" for a forgotten subscription.)
const UNKNOWN: [&str; 5] = [
    "不存在",
    "no subscription",
    "not exist",
    "not found",
    "unknown subscri",
];

/// `POST /VIID/Subscribes` (a new placement) or `PUT` (a change of one placed) with
/// the one `SubscribeObject`. A `POST` answered "already exists" is placed.
async fn place(
    outbound: &Outbound,
    r: &RemoteSubscription,
    method: hyper::Method,
    challenge: &mut Option<Challenge>,
) -> Result<(), SessionError> {
    let (addr, base) = base(r)?;
    let path = format!("{base}/VIID/Subscribes");
    let body = json!({"SubscribeListObject": {"SubscribeObject": [r.object]}}).to_string();
    let post = method == hyper::Method::POST;
    let (status, answer) = digest_request(
        outbound,
        &addr,
        method,
        &path,
        body.into_bytes(),
        &login(r),
        challenge,
    )
    .await?;
    match ok_status(&path, status, &answer) {
        Err(e) if post && !says(&e, &UNKNOWN) && says(&e, &EXISTS) => Ok(()),
        done => done,
    }
}

/// Cancels it at the other side: `PUT /VIID/Subscribes/<SubscribeID>` with the
/// cancel fields, else (refused, or not answered 2xx) `DELETE
/// /VIID/Subscribes?IDList=<SubscribeID>`. One the other side does not know is
/// cancelled.
pub(crate) async fn cancel(
    outbound: &Outbound,
    r: &RemoteSubscription,
) -> Result<(), SessionError> {
    let (addr, base) = base(r)?;
    let id = crate::gat1400::text(&r.object, "SubscribeID").unwrap_or_default();
    let mut object = r.object.clone();
    let org = crate::gat1400::text(&r.object, "ApplicantOrg").unwrap_or_default();
    object["OperateType"] = 1.into();
    object["SubscribeStatus"] = 1.into();
    object["SubscribeCancelOrg"] = org.into();
    object["SubscribeCancelPerson"] = "Sightline".into();
    object["CancelTime"] = crate::gat1400::local_time(crate::now_ms()).into();
    object["CancelReason"] = "cancelled by the subscriber".into();
    let path = format!("{base}/VIID/Subscribes/{id}");
    let body = json!({ "SubscribeObject": object }).to_string();
    let mut challenge = None;
    let put = digest_request(
        outbound,
        &addr,
        hyper::Method::PUT,
        &path,
        body.into_bytes(),
        &login(r),
        &mut challenge,
    )
    .await
    .and_then(|(status, answer)| ok_status(&path, status, &answer));
    match put {
        Ok(()) => return Ok(()),
        Err(e) if says(&e, &UNKNOWN) => return Ok(()),
        Err(SessionError::Exchange(e)) => return Err(SessionError::Exchange(e)),
        Err(_) => {}
    }
    let path = format!("{base}/VIID/Subscribes?IDList={id}");
    let (status, answer) = digest_request(
        outbound,
        &addr,
        hyper::Method::DELETE,
        &path,
        Vec::new(),
        &login(r),
        &mut challenge,
    )
    .await?;
    match ok_status(&path, status, &answer) {
        Err(e) if says(&e, &UNKNOWN) => Ok(()),
        done => done,
    }
}

/// The worker: places the subscription until taken, then asserts it again every
/// [`REASSERT`]; for one being cancelled, cancels it until taken, then forgets it.
async fn place_and_keep(app: Arc<App>, r: RemoteSubscription, status: Arc<Mutex<RemoteStatus>>) {
    let (outbound, id) = (app.outbound.clone(), r.id.clone());
    let forget = || async move {
        let _ = app.store.catalog().kv_delete(TREE, &id);
        app.remotes.running.lock().expect("remotes").remove(&id);
    };
    // One process: a delete aborts this worker before it cancels, so nothing fences it.
    keep_placed(&outbound, &r, &status, forget, || async { true }).await
}

/// [`place_and_keep`]'s loop, wherever it runs (`serve`, or a cluster query node
/// holding the remote subscription's lease): `forget` once a cancel is taken;
/// `fence` asked before every placement (false ends the loop: a cluster node whose
/// lease moved on — the subscription deleted or taken over — must not place it again).
pub(crate) async fn keep_placed<F, Fut, G, GFut>(
    outbound: &Outbound,
    r: &RemoteSubscription,
    status: &Mutex<RemoteStatus>,
    forget: F,
    fence: G,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
    G: Fn() -> GFut,
    GFut: std::future::Future<Output = bool>,
{
    let mut challenge = None;
    let mut retry = Duration::from_secs(1);
    let mut method = hyper::Method::POST;
    if r.cancelling {
        loop {
            match cancel(outbound, r).await {
                Ok(()) => return forget().await,
                Err(e) => {
                    let mut st = status.lock().expect("status");
                    st.placed = false;
                    st.last_error = Some(format!("cancelling: {e}"));
                }
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
    loop {
        if !fence().await {
            return;
        }
        // Where its notifications may come from (a name resolved now, as placed).
        if let Ok((origin, _)) = crate::http::client::Origin::parse(&r.url) {
            if let Ok(addrs) = tokio::net::lookup_host(origin.authority()).await {
                status.lock().expect("status").resolved = addrs.map(|a| a.ip()).collect();
            }
        }
        let placed = place(outbound, r, method.clone(), &mut challenge).await;
        if matches!(&placed, Err(e) if method == hyper::Method::PUT && says(e, &UNKNOWN)) {
            // The other side forgot it: placed anew at once.
            method = hyper::Method::POST;
            continue;
        }
        let wait = match placed {
            Ok(()) => {
                let mut st = status.lock().expect("status");
                st.placed = true;
                st.placements += 1;
                st.last_placed_ms = Some(crate::now_ms());
                st.last_error = None;
                retry = Duration::from_secs(1);
                method = hyper::Method::PUT;
                REASSERT
            }
            Err(e) => {
                let mut st = status.lock().expect("status");
                st.placed = false;
                st.last_error = Some(e.to_string());
                // A PUT refused in any way (a 404, a 405, a page of HTML from a
                // restarted platform that forgot it) is followed by a POST, which takes
                // "already exists" as placed: it is never left unplaced for good.
                method = hyper::Method::POST;
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}
