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
//!
//! An upstream (`/v1/upstreams`, `upstream.rs`) is a subscription whose target is
//! another 视图库 this server registers with: the same worker delivers to it, as
//! uploads, beside a task that keeps the registration alive.

pub(crate) mod deliver;
pub(crate) mod handlers;
pub mod remote;
pub(crate) mod remote_handlers;
pub(crate) mod upstream;
pub(crate) mod upstream_handlers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::App;

const TREE: &str = "subscriptions";
pub(crate) const CURSORS: &str = "subscription_cursors";

/// A subscription as created (and kept in the catalog).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Subscription {
    pub id: String,
    /// `http://host:port/path` of the receiver.
    pub url: String,
    pub kinds: Option<Vec<String>>,
    pub communities: Option<Vec<String>>,
    pub devices: Option<Vec<String>>,
    /// Device code prefixes (areas, from a GA/T 1400 `ResourceURI`): with `devices`, an
    /// event passes when either takes its device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_prefixes: Option<Vec<String>>,
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
    /// With `alerts`: only this watchlist's (a GA/T 1400 disposition's notifications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<String>,
    /// Made by a platform through `/VIID/Subscribes`: its own id, title and window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viid: Option<crate::gat1400::subscribes::ViidSubscribe>,
    /// Made through `/v1/upstreams`: the events go to an upstream 视图库 this server
    /// registers with, as its uploads (`url` is the upstream's base URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<upstream::Upstream>,
}

impl Subscription {
    /// Whether a platform named its receiver (`/VIID/Subscribes`, or a disposition's
    /// `ReceiveAddr`): then [`crate::http::egress`] bounds where it may point.
    pub(crate) fn platform_named(&self) -> bool {
        self.upstream.is_none()
            && (self.viid.is_some()
                || self
                    .id
                    .starts_with(crate::gat1400::dispositions::SUBSCRIPTION_PREFIX))
    }

    /// Whether an event passes every filter but the devices, and the subscription
    /// names tollgates: its object as uploaded decides (`gat1400::subscribes::at_tollgate`).
    pub(crate) fn maybe_at_tollgate(&self, e: &sightline_query::Sighting) -> bool {
        self.viid.as_ref().is_some_and(|v| !v.tollgates.is_empty()) && self.passes_but_device(e)
    }

    /// Whether an event passes the kinds, devices and subjects filters (communities
    /// are applied to the feed read itself).
    pub fn matches(&self, e: &sightline_query::Sighting) -> bool {
        let device = match (&self.devices, &self.device_prefixes) {
            (None, None) => true,
            (exact, prefixes) => {
                exact
                    .as_ref()
                    .is_some_and(|l| l.iter().any(|d| d.as_str() == &*e.device))
                    || prefixes
                        .as_ref()
                        .is_some_and(|l| l.iter().any(|p| e.device.starts_with(p.as_str())))
            }
        };
        device && self.passes_but_device(e)
    }

    /// The kinds, subjects and time-window filters.
    fn passes_but_device(&self, e: &sightline_query::Sighting) -> bool {
        let any = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| x == value))
        };
        let window = self.viid.as_ref().is_none_or(|v| {
            v.begin_ms.is_none_or(|b| e.ts_ms >= b) && v.end_ms.is_none_or(|end| e.ts_ms <= end)
        });
        any(&self.kinds, e.kind.as_str()) && any(&self.subjects, &e.subject) && window
    }
}

/// How delivery is going.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Every event with an id up to this was delivered (or did not match).
    pub cursor: u64,
    pub delivered: u64,
    pub failures_in_a_row: u64,
    /// Failed attempts since the worker started.
    pub failures_total: u64,
    pub last_error: Option<String>,
    pub last_success_ms: Option<i64>,
    /// Objects a GA/T 1400 receiver or upstream refused for good (`StatusCode` 5 to 8:
    /// the object itself is wrong there) and that were passed, since start: the
    /// cursor moves past them, as past taken ones.
    pub refused: u64,
    /// Why the last such object was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_refusal: Option<String>,
    /// The receiver does not know the subscription ("订阅不存在", or `StatusCode` 4):
    /// delivery stopped instead of resending forever, until the subscription is placed
    /// again (or the server restarts).
    pub stopped: bool,
}

/// A running subscription: its workers (delivery; for an upstream, its registration
/// too), the status it keeps, and an upstream's registration.
struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    status: Arc<Mutex<Status>>,
    session: Option<Arc<upstream::Session>>,
}

/// An upper platform registered with (`Registry::upper`): our id there (the
/// `User-Identify` of what is sent to it) and the communities its upstream reads
/// (`None`: every one), which its subscriptions here are confined to.
#[derive(Clone, Debug)]
pub(crate) struct Upper {
    pub device_id: String,
    pub scope: Option<Vec<String>>,
    /// The subscription id of the upstream it is an upper platform by.
    pub upstream: String,
}

/// What a running subscription shows: its delivery and, for an upstream, its
/// registration.
pub(crate) type Shown = (Status, Option<upstream::SessionState>);

/// Running subscriptions: their workers and statuses.
#[derive(Default)]
pub struct Registry {
    running: Mutex<HashMap<String, Running>>,
}

/// The receiver's origin (`http://host:port` or `https://host:port`, for
/// `http::client::connect`) and path, from an `http://` or `https://` URL; a refusal
/// names `url`.
pub fn target(url: &str) -> Result<(String, String), ApiError> {
    let (origin, path) =
        crate::http::client::Origin::parse(url).map_err(|why| ApiError::param("url", why))?;
    Ok((origin.to_string(), path))
}

/// A subscription as stored, or why it cannot be read.
fn decode(bytes: &[u8]) -> Result<Subscription, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal(format!("a stored subscription is unreadable: {e}")))
}

impl Registry {
    /// Starts the workers of every stored subscription.
    pub(crate) fn start_all(app: &Arc<App>) -> Result<(), ApiError> {
        for (_, bytes) in app.store.catalog().kv_list(TREE)? {
            let s = decode(&bytes)?;
            // Subscriptions and dispositions are a platform's: one a camera made
            // before that was checked is not started (kept, for an admin to see in
            // `GET /v1/subscriptions` and delete), so it pushes nothing.
            if let Some(d) = app.store.catalog().device(&s.owner)? {
                if d.device_kind != "platform" {
                    tracing::warn!(
                        subscription = %s.id,
                        owner = %s.owner,
                        kind = %d.device_kind,
                        "a subscription made by a device that is no platform is not started; delete it"
                    );
                    continue;
                }
            }
            Self::start(app, s)?;
        }
        Ok(())
    }

    /// Stores a new subscription and starts its worker (its cursor: now, or `from`).
    pub(crate) fn create(
        app: &Arc<App>,
        s: Subscription,
        from: Option<u64>,
    ) -> Result<(), ApiError> {
        let c = app.store.catalog();
        let cursor = from.unwrap_or_else(|| match s.alerts {
            true => app.watch.last(),
            false => app.store.applied_through(),
        });
        c.kv_put(CURSORS, &s.id, &cursor.to_le_bytes())?;
        c.kv_put(TREE, &s.id, &serde_json::to_vec(&s).expect("serializes"))?;
        Self::start(app, s)
    }

    /// Rewrites a stored subscription (not running: at start, before `start_all`).
    pub(crate) fn store(app: &App, s: &Subscription) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(s).expect("serializes");
        Ok(app.store.catalog().kv_put(TREE, &s.id, &bytes)?)
    }

    /// One subscription as stored.
    pub(crate) fn get(app: &App, id: &str) -> Result<Option<Subscription>, ApiError> {
        app.store
            .catalog()
            .kv_get(TREE, id)?
            .map(|b| decode(&b))
            .transpose()
    }

    /// A subscription's durable cursor, if it has one.
    pub(crate) fn cursor(app: &App, id: &str) -> Result<Option<u64>, ApiError> {
        Ok(match app.store.catalog().kv_get(CURSORS, id)? {
            Some(b) if b.len() == 8 => Some(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
            _ => None,
        })
    }

    fn start(app: &Arc<App>, s: Subscription) -> Result<(), ApiError> {
        let cursor = match app.store.catalog().kv_get(CURSORS, &s.id)? {
            Some(b) if b.len() == 8 => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            _ => 0,
        };
        let status = Arc::new(Mutex::new(Status {
            cursor,
            ..Default::default()
        }));
        let session = upstream::Session::of(&s).map(Arc::new);
        let mut tasks = Vec::new();
        if let Some(session) = &session {
            tasks.push(tokio::spawn(upstream::registration(
                app.outbound.clone(),
                session.clone(),
            )));
        }
        let target = deliver::Target::of(app, &s, session.clone());
        tasks.push(match s.alerts {
            true => tokio::spawn(deliver::alerts(app.clone(), s.clone(), status.clone())),
            false => tokio::spawn(deliver::events(
                app.clone(),
                s.clone(),
                status.clone(),
                target,
            )),
        });
        let running = Running {
            tasks,
            status,
            session,
        };
        let replaced = app
            .subscriptions
            .running
            .lock()
            .expect("subscriptions")
            .insert(s.id.clone(), running);
        for task in replaced.iter().flat_map(|r| &r.tasks) {
            task.abort();
        }
        Ok(())
    }

    /// Stops and forgets a subscription; false if there is none.
    pub(crate) fn delete(app: &App, id: &str) -> Result<bool, ApiError> {
        let running = app
            .subscriptions
            .running
            .lock()
            .expect("subscriptions")
            .remove(id);
        for task in running.iter().flat_map(|r| &r.tasks) {
            task.abort();
        }
        let c = app.store.catalog();
        let existed = c.kv_get(TREE, id)?.is_some();
        c.kv_delete(TREE, id)?;
        c.kv_delete(CURSORS, id)?;
        Ok(existed || running.is_some())
    }

    /// Every subscription (upstreams among them) with its status.
    pub(crate) fn list(app: &App) -> Result<Vec<(Subscription, Status)>, ApiError> {
        Ok(Self::list_shown(app)?
            .into_iter()
            .map(|(s, (status, _))| (s, status))
            .collect())
    }

    /// Every subscription with its status and, for an upstream, its registration.
    pub(crate) fn list_shown(app: &App) -> Result<Vec<(Subscription, Shown)>, ApiError> {
        let stored = app.store.catalog().kv_list(TREE)?;
        let mut out = Vec::new();
        for (_, bytes) in stored {
            let s = decode(&bytes)?;
            let shown = app.subscriptions.shown(&s.id).unwrap_or_default();
            out.push((s, shown));
        }
        Ok(out)
    }

    /// A running subscription's status and registration.
    pub(crate) fn shown(&self, id: &str) -> Option<Shown> {
        let running = self.running.lock().expect("subscriptions");
        let r = running.get(id)?;
        let status = r.status.lock().expect("status").clone();
        Some((status, r.session.as_ref().map(|s| s.state())))
    }

    /// Every running subscription's id, status and registration (for `/metrics`).
    pub(crate) fn all_shown(&self) -> Vec<(String, Shown)> {
        let running = self.running.lock().expect("subscriptions");
        let mut out: Vec<(String, Shown)> = running
            .iter()
            .map(|(id, r)| {
                let status = r.status.lock().expect("status").clone();
                (id.clone(), (status, r.session.as_ref().map(|s| s.state())))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every running upstream's registration (to unregister at shutdown).
    pub(crate) fn sessions(&self) -> Vec<Arc<upstream::Session>> {
        let running = self.running.lock().expect("subscriptions");
        running.values().filter_map(|r| r.session.clone()).collect()
    }

    /// A running upstream's registration.
    pub(crate) fn session(&self, id: &str) -> Option<Arc<upstream::Session>> {
        let running = self.running.lock().expect("subscriptions");
        running.get(id)?.session.clone()
    }

    /// The upper platform `id` is while this server is registered there: an upstream
    /// whose 视图库 id (`server_id`, configured or learned at registration) is `id`
    /// exactly and whose registration is live. Such an upper may subscribe here and
    /// read the catalogue by `User-Identify` alone, as GA/T 1400 platforms do.
    pub(crate) fn upper(&self, id: &str) -> Option<Upper> {
        self.upper_session(id).map(|(sub, s)| s.upper(sub))
    }

    /// Whether a request naming itself `id` (`User-Identify`, no digest) from `peer`
    /// is let in as that upper platform: only from the address this server
    /// registered with (the upstream's host, resolved): its 视图库 id is public (`GET
    /// /VIID/System/Time` answers it to anyone), its address is where we reach it.
    pub(crate) fn admits_upper(&self, id: &str, peer: Option<std::net::IpAddr>) -> bool {
        let Some(peer) = peer else { return false };
        self.upper_session(id).is_some_and(|(_, s)| s.is_at(peer))
    }

    /// The one live upstream whose 视图库 id is `id`. Two (ids learned at registration
    /// can collide; configured ones are refused at `POST /v1/upstreams`, 409) make `id`
    /// no upper platform at all: either's scope would be a guess.
    fn upper_session(&self, id: &str) -> Option<(String, Arc<upstream::Session>)> {
        let running = self.running.lock().expect("subscriptions");
        let mut live = running
            .iter()
            .filter_map(|(sub, r)| Some((sub, r.session.as_ref()?)))
            .filter(|(_, s)| s.is_live_upper(id));
        let (sub, one) = live.next()?;
        match live.next() {
            None => Some((sub.clone(), one.clone())),
            Some(_) => {
                tracing::warn!(server_id = %id, "two live upstreams have this 视图库 id: neither lets it in as an upper platform");
                None
            }
        }
    }

    /// The 视图库 id of every running upstream (configured or learned), by its
    /// subscription id.
    pub(crate) fn upstream_ids(&self) -> Vec<(String, String)> {
        let running = self.running.lock().expect("subscriptions");
        running
            .iter()
            .filter_map(|(sub, r)| Some((sub.clone(), r.session.as_ref()?.server_id()?)))
            .collect()
    }

    /// Stops every worker (at shutdown).
    pub fn stop_all(&self) {
        for (_, r) in self.running.lock().expect("subscriptions").drain() {
            for task in r.tasks {
                task.abort();
            }
        }
    }
}
