//! Remote subscriptions: this server subscribing at another 视图库 (an upper platform
//! subscribing to a lower one, 级联). `POST /v1/remote-subscriptions` places a
//! `SubscribeObject` there (`POST /VIID/Subscribes`, digest-authenticated as the
//! upstream registration is), with this server's `/VIID/SubscribeNotifications` as
//! `ReceiveAddr`; what comes back is stored as that platform's uploads.
//!
//! A worker places it until the other side answers `StatusCode` 0 (1 s doubling to
//! 60 s while it cannot), then places it again every [`REASSERT`] — the same
//! `SubscribeID`, which a 视图库 treats as a change, not a new subscription — so one
//! that forgot it gets it back. `DELETE` cancels it there (`DELETE
//! /VIID/Subscribes?IDList=…`) and forgets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::upstream::{digest_request, ok_status, Login, SessionError};
use crate::error::ApiError;
use crate::gat1400::digest_client::Challenge;
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
}

/// How placing it is going.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteStatus {
    pub placed: bool,
    /// Times the other side took it (`StatusCode` 0) since the worker started.
    pub placements: u64,
    pub last_placed_ms: Option<i64>,
    pub last_error: Option<String>,
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

    /// Stops its worker and forgets it (the caller cancels it at the other side).
    pub(crate) fn forget(app: &App, id: &str) -> Result<(), ApiError> {
        if let Some((task, _)) = app.remotes.running.lock().expect("remotes").remove(id) {
            task.abort();
        }
        app.store.catalog().kv_delete(TREE, id)?;
        Ok(())
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

/// `POST /VIID/Subscribes` with the one `SubscribeObject`.
async fn place(
    app: &App,
    r: &RemoteSubscription,
    challenge: &mut Option<Challenge>,
) -> Result<(), SessionError> {
    let (addr, base) = base(r)?;
    let path = format!("{base}/VIID/Subscribes");
    let body = json!({"SubscribeListObject": {"SubscribeObject": [r.object]}}).to_string();
    let (status, answer) = digest_request(
        app,
        &addr,
        hyper::Method::POST,
        &path,
        body.into_bytes(),
        &login(r),
        challenge,
    )
    .await?;
    ok_status(&path, status, &answer)
}

/// Cancels it at the other side: `DELETE /VIID/Subscribes?IDList=<SubscribeID>`.
pub(crate) async fn cancel(app: &App, r: &RemoteSubscription) -> Result<(), SessionError> {
    let (addr, base) = base(r)?;
    let id = r.object["SubscribeID"].as_str().unwrap_or("");
    let path = format!("{base}/VIID/Subscribes?IDList={id}");
    let (status, answer) = digest_request(
        app,
        &addr,
        hyper::Method::DELETE,
        &path,
        Vec::new(),
        &login(r),
        &mut None,
    )
    .await?;
    ok_status(&path, status, &answer)
}

/// The worker: places the subscription until taken, then again every [`REASSERT`].
async fn place_and_keep(app: Arc<App>, r: RemoteSubscription, status: Arc<Mutex<RemoteStatus>>) {
    let mut challenge = None;
    let mut retry = Duration::from_secs(1);
    loop {
        let wait = match place(&app, &r, &mut challenge).await {
            Ok(()) => {
                let mut st = status.lock().expect("status");
                st.placed = true;
                st.placements += 1;
                st.last_placed_ms = Some(crate::now_ms());
                st.last_error = None;
                retry = Duration::from_secs(1);
                REASSERT
            }
            Err(e) => {
                let mut st = status.lock().expect("status");
                st.placed = false;
                st.last_error = Some(e.to_string());
                let wait = retry;
                retry = (retry * 2).min(MAX_RETRY);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}
