//! The GA/T 1400 (视图库) gateway of a cluster ingest node: `POST
//! /VIID/System/Register`, `/UnRegister`, `/Keepalive`, `GET /VIID/System/Time`, and
//! the uploads `POST /VIID/MotorVehicles`, `/Faces`, `/Persons`, `/NonMotorVehicles`
//! and `/Images`, answered as `serve` answers them (the same parsing, digest check,
//! status objects: `crate::gat1400`), with the cluster's engines behind them:
//!
//! * **Credentials and devices** are rows of PostgreSQL (`gat1400_credentials`, the
//!   catalog's `devices`: `sightline cluster gat1400 add|list|remove`), read by every ingest node
//!   every `index.renew_ms` (each read bounded by `index.lease_ms`); requests read
//!   only the last set read, so a hung PostgreSQL never holds one. A set older than
//!   5 minutes (as the API keys, `keys::MAX_AGE`) is not trusted: digests are refused.
//! * **Registrations** live in PostgreSQL too (`gat1400_registrations`): a camera
//!   registers on one ingest node and uploads to another behind a load balancer,
//!   most cameras with only `User-Identify` after registering, which a digest on each
//!   request could not cover. A registration is written before it is answered; a
//!   node that does not know a registration asks the table (bounded) before refusing;
//!   keepalives and uploads renew it at most once a minute per node, in the
//!   background (a renewal that cannot be written is logged, the registration lasts
//!   an hour). A renewal only renews (`UPDATE`): a registration is made by Register
//!   or a digest, and only while its credential exists (a foreign key, `ON DELETE
//!   CASCADE`), so a login removed stays removed whatever a node remembers; a node
//!   trusts a registration only while its credential is in a set read within the
//!   keys' `MAX_AGE`, and asks PostgreSQL only about codes that have one. As on `serve`, an
//!   upload without a digest is trusted only from the address that registered: a
//!   load balancer in front must keep client addresses (TCP pass-through).
//! * **Digest nonces** are signed (`Nonces::signed`) with a key derived from
//!   `partition_token`, so a nonce one ingest node issued verifies on every other;
//!   without a `partition_token` each node signs with a key of its own and a client
//!   must answer a challenge on the node that sent it (sticky sessions). An answer's
//!   (nonce, nc) is recorded on first use in `gat1400_nonces`, so it is accepted once
//!   by the whole cluster, restarts included; its `uri` must be the request's path.
//! * **Pictures** (base64 `Data` of `SubImageList`, within `ingest.max_picture_bytes`)
//!   and the objects as uploaded are put on object storage, create-only, under
//!   content-addressed keys within their event's day (`sightline_cluster::gat1400::BlobId`;
//!   the janitor drops days past `index.gat1400_retention_days`, else past the
//!   cluster's event retention), *before* the events naming them are published: an
//!   acknowledged object's pictures are on S3. An object whose time the validation
//!   refuses, or whose day that retention has passed, is refused before anything of
//!   it is put (it would be acknowledged and then lose its pictures).
//!   Events list them as `serve`'s do (`images`, `gat1400_object`), by ids that query
//!   nodes serve at `GET /v1/images/{id}` and `GET /v1/objects/{id}`.
//!
//! * **Platforms relaying cameras**: a platform's `relays` (`devices.relays`, read with
//!   the credentials) let it name devices of the communities it relays into, as on
//!   `serve` (`objects::Uploader`); an unknown device it names is catalogued on its
//!   first object, as on `serve` (`Relay::device_for`: under the community its code's
//!   prefix maps to), written to `devices` before the events are published; one
//!   registered meanwhile is kept as PostgreSQL has it and the upload judged again
//!   against it. A relays row that does not parse is skipped (named in `/health`).
//! * **`GET /VIID/APEs` and `GET /VIID/Tollgates`** answer with `serve`'s functions
//!   (`gat1400::catalog`) over the tables as last read; `IsOnline` is a registration
//!   renewed within its life, as far as this node knows (any node's, as read).
//!
//! * **GA/T 1400.4 object queries** (`queries`): `GET
//!   /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles?<conditions>` and `GET
//!   /VIID/<resource>/{id}`, answered by `serve`'s code over the cluster's partitions
//!   (`Federation::objects`), each audited in this node's own log (`ingest.audit_dir`).
//!
//! * **`/VIID/Subscribes`** (`subscribes`): a platform's subscriptions, written to
//!   the cluster's `subscriptions` table, delivered by the query nodes.
//!
//! * **`/VIID/Dispositions`** (`dispositions`): a platform's dispositions, each a
//!   row of the cluster's `watchlists` and an alerts subscription.
//!
//! Bounds: 16 uploads (and listings) at once
//! (429 beyond, before the body is read), 8 of them one caller's (keyed as `serve`
//! keys them: `handlers::caller_key`), `serve`'s body timeout and minimum rate and
//! its header-read timeout on the listener, `ingest.max_viid_body_bytes` (gzip inflated
//! within it), `ingest.max_viid_inflight_bytes` of upload bodies held at once (429
//! beyond), 64 KiB for registration, keepalive and time bodies.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use sightline_cluster::gat1400::{Blob, BlobId};
use sightline_cluster::log::Publisher;
use sightline_cluster::meta::{bounded, Meta};
use sightline_cluster::objects::Objects;
use sightline_cluster::ClusterConfig;
use sightline_storage::{Community, Device, Event, Gat1400Credential, Validator};

use crate::error::{ApiError, RecordError};
use crate::gat1400::digest::{answered_nonce, Credentials, DigestError, UserHashes};
use crate::gat1400::handlers::{
    caller_key, device_error, gunzip, identified, list_pictures, name_uploaded, parse_upload,
    pictures_to_store, refused, refused_status, registering, stored_notes, stored_status,
    system_time, unauthorized, unreadable_body, upload_statuses, uploaded_texts, Exchange, Reply,
    SYSTEM_BODY_BYTES, VIID_JSON,
};
use crate::gat1400::objects::{Catalog, Devices, Object, Upload, Uploader};
use crate::gat1400::relay::Relay;
use crate::gat1400::{
    one_status, Gateway, BUSY, INVALID_JSON_CONTENT, INVALID_JSON_FORMAT, INVALID_OPERATION, OK,
};
use crate::http::limits::{ByteBudget, PerCaller, Reserved};

use super::alerting::Alerting;

mod dispositions;
mod queries;
mod subscribes;

/// Uploads at once (as `serve`'s `max_concurrent_viid`): beyond, 429 before the body
/// is read, so buffered bodies are bounded by slots × `max_viid_body_bytes`.
const UPLOAD_SLOTS: usize = 16;
/// Pictures or objects put on object storage at once for one upload.
const PUTS_AT_ONCE: usize = 16;
/// A registration is renewed in PostgreSQL at most this often by one node.
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// Renewals waiting for the writer connection; beyond, one is dropped (logged): the
/// registration it renews lasts an hour.
const RENEWALS_QUEUED: usize = 1024;
/// How long a digest nonce's use is remembered in `gat1400_nonces`: past its life
/// (`NONCE_TTL`, 5 min, and the nodes' clock skew) it cannot verify again.
const NONCE_USE_KEPT_MS: i64 = 600_000;

/// An ingest node's gateway.
pub(super) struct GatNode {
    config: ClusterConfig,
    /// Where a platform's `ReceiveAddr` may point (`[gat1400]`, judged at subscribe
    /// time as on `serve`).
    receive: crate::http::egress::ReceivePolicy,
    gateway: Gateway,
    directory: Directory,
    objects: Objects,
    /// The ingest node's publisher (`POST /v1/events`'s).
    publisher: Publisher,
    /// The ingest node's watchlists (`POST /v1/events`'s).
    alerting: Arc<Alerting>,
    slots: Arc<tokio::sync::Semaphore>,
    /// Of the slots, what one caller holds at once (as `serve`'s `viid_callers`).
    callers: Arc<PerCaller>,
    /// Upload bodies held at once (`ingest.max_viid_inflight_bytes`).
    bytes: ByteBudget,
    /// The connection registrations are written (and missed ones read) on.
    writer: tokio::sync::Mutex<Option<Meta>>,
    /// Renewals waiting for the writer (at most [`RENEWALS_QUEUED`]; a request never
    /// waits on one).
    renewals: tokio::sync::mpsc::Sender<Renewal>,
    /// P, the cluster's partitions.
    partitions: u16,
    /// Where the partitions are answered (made on the first `/VIID/Subscribes`,
    /// which asks them for their heads, or object query).
    partition_directory: tokio::sync::OnceCell<Arc<super::remote::Directory>>,
    /// Object queries running (`queries`), at most `gat1400::OBJECT_QUERIES`.
    object_queries: Arc<std::sync::atomic::AtomicUsize>,
    /// This node's audit log (`ingest.audit_dir`): every object query.
    audit: Arc<crate::audit::AuditLog>,
}

/// A registration to renew in the background: who, from where, proven how.
struct Renewal {
    code: String,
    from: Option<IpAddr>,
    /// Proven by a digest just now (which registers its sender again, as on `serve`,
    /// while its credential exists), else by a registration (only renewed: never
    /// made again, so a login removed while a node remembers it stays removed).
    digest: bool,
}

/// The devices as read, those catalogued here since, and the communities as read.
type Known = (
    Arc<HashMap<String, Device>>,
    HashMap<String, Device>,
    Arc<Vec<Community>>,
);

/// The tables as this node last read them.
#[derive(Default)]
struct Directory {
    set: RwLock<Option<Loaded>>,
    /// Registrations this node wrote or found since the last read: code → address,
    /// when renewed (in PostgreSQL, or found there).
    recent: RwLock<HashMap<String, (Option<IpAddr>, Instant)>>,
    /// Devices this node catalogued since the last read, as PostgreSQL keeps them:
    /// code → record, when written (a small map beside the read one, which is never
    /// copied to add one).
    added: RwLock<HashMap<String, (Device, Instant)>>,
}

struct Loaded {
    credentials: HashMap<String, Gat1400Credential>,
    /// The credentials' user-name hashes (RFC 7616 `userhash`), computed as read.
    userhashes: UserHashes,
    devices: Arc<HashMap<String, Device>>,
    /// Device code → the communities it relays into by code prefix (`devices.relays`).
    relays: HashMap<String, BTreeMap<String, String>>,
    /// Devices whose `relays` do not parse (skipped, named in `/health`).
    relays_unreadable: Vec<String>,
    /// The cluster's event retention (`cluster_meta` `retention_days`), which the
    /// pictures follow unless `index.gat1400_retention_days` is set.
    retention_days: Option<u32>,
    communities: Arc<Vec<Community>>,
    /// code → address, when last renewed.
    registrations: HashMap<String, (Option<IpAddr>, Instant)>,
    /// The upper platforms our upstreams are registered with now (their holders'
    /// registrations under live leases: `upstream_sessions`).
    uppers: Vec<sightline_cluster::upstreams::LiveUpper>,
    at: Instant,
}

impl Credentials for Directory {
    fn credential(&self, code: &str) -> Result<Option<Gat1400Credential>, DigestError> {
        self.fresh(|l| l.credentials.get(code).cloned())
    }

    fn code_of_userhash(&self, userhash: &str) -> Result<Option<String>, DigestError> {
        self.fresh(|l| l.userhashes.code(userhash))
    }
}

impl Directory {
    /// `f` of the credentials as read, when they were read within `MAX_AGE`.
    fn fresh<T>(&self, f: impl FnOnce(&Loaded) -> T) -> Result<T, DigestError> {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        match &*set {
            None => Err(DigestError::Unavailable(
                "this node has not read the GA/T 1400 credentials yet; retry shortly".into(),
            )),
            Some(l) if l.at.elapsed() > super::keys::MAX_AGE => {
                Err(DigestError::Unavailable(format!(
                    "this node last read the GA/T 1400 credentials {} s ago (PostgreSQL \
                     unreachable?)",
                    l.at.elapsed().as_secs()
                )))
            }
            Some(l) => Ok(f(l)),
        }
    }
}

impl Directory {
    /// Who uploads as `code`: the communities whose devices it may name, its own
    /// device's and, for a platform, those it relays into (as `serve`'s
    /// `store_objects` makes it).
    fn uploader(&self, code: &str) -> Uploader {
        // An upper platform (no record nor login here: a caller with a login is judged
        // by its record alone): the communities its upstream reads, as `serve`'s
        // `keep_uploaded` takes its notifications.
        if let Some(communities) = self.upper_communities(code) {
            return Uploader {
                code: code.to_string(),
                communities,
            };
        }
        let own = self.device(code);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let mut communities: Vec<String> = own.iter().map(|d| d.community.clone()).collect();
        if let (Some(l), Some(d)) = (set.as_ref(), own) {
            if d.device_kind == "platform" {
                let relays = l.relays.get(code).into_iter().flat_map(|r| r.values());
                communities.extend(relays.cloned());
            }
        }
        Uploader {
            code: code.to_string(),
            communities,
        }
    }

    /// Device `code` as this node catalogued it since the last read, else as read.
    ///
    /// Lock order: `set` before `added` wherever both are held (`listing`); here each
    /// is let go before the other is taken (a reader waiting behind a queued writer
    /// of one while holding the other would deadlock with `listing`).
    fn device(&self, code: &str) -> Option<Device> {
        let catalogued = {
            let added = self.added.read().unwrap_or_else(|p| p.into_inner());
            added.get(code).map(|(d, _)| d.clone())
        };
        if catalogued.is_some() {
            return catalogued;
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref()?.devices.get(code).cloned()
    }

    /// The devices and communities as read, and those this node catalogued since.
    fn catalog(&self) -> Known {
        // Let go before `set` is taken (the lock order: `device`).
        let added = {
            let added = self.added.read().unwrap_or_else(|p| p.into_inner());
            added
                .iter()
                .map(|(c, (d, _))| (c.clone(), d.clone()))
                .collect()
        };
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let (devices, communities) = set
            .as_ref()
            .map(|l| (l.devices.clone(), l.communities.clone()))
            .unwrap_or_default();
        (devices, added, communities)
    }

    /// The relaying of `code`, if it is a platform (as `serve`'s `Relay::of`).
    fn relay(&self, code: &str) -> Option<Relay> {
        let d = self.device(code).filter(|d| d.device_kind == "platform")?;
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let l = set.as_ref()?;
        Some(Relay {
            platform: d.code.clone(),
            community: d.community.clone(),
            prefixes: l.relays.get(code).cloned().unwrap_or_default(),
        })
    }

    /// Devices this node catalogued, as PostgreSQL keeps them, known here until the
    /// next read has them.
    fn add(&self, stored: &[Device]) {
        let now = Instant::now();
        let mut added = self.added.write().unwrap_or_else(|p| p.into_inner());
        for d in stored {
            added.insert(d.code.clone(), (d.clone(), now));
        }
    }

    /// The devices `caller`'s record covers, by code, with their community's name
    /// (`serve`'s `catalog::{covered, listed}` over the tables as read).
    fn listing(&self, caller: &str) -> Vec<(Device, String)> {
        // An upper platform: the devices of the communities its upstream reads (as
        // `serve`'s `upper_visible`); read before `set` is taken.
        let upper = self.upper_communities(caller);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let Some(l) = set.as_ref() else {
            return Vec::new();
        };
        let none = BTreeMap::new();
        let relays = l.relays.get(caller).unwrap_or(&none);
        let added = self.added.read().unwrap_or_else(|p| p.into_inner());
        let own = added.get(caller).map(|(d, _)| d).or(l.devices.get(caller));
        let covered = match upper {
            Some(communities) => communities.into_iter().collect(),
            None => crate::gat1400::catalog::covered(own, relays),
        };
        // Only the covered communities' devices copied (a city's catalog is large);
        // those catalogued here since the read as they were stored.
        let read = l.devices.values().filter(|d| !added.contains_key(&d.code));
        let mut devices: Vec<Device> = (read.chain(added.values().map(|(d, _)| d)))
            .filter(|d| covered.contains(&d.community))
            .cloned()
            .collect();
        devices.sort_by(|a, b| a.code.cmp(&b.code));
        crate::gat1400::catalog::listed(&covered, &l.communities, devices)
    }

    /// The communities (codes) `caller`'s record covers, as `serve`'s object queries
    /// scope it: its own and, for a platform, those its relays map to.
    fn covered(&self, caller: &str) -> Vec<String> {
        let own = self.device(caller);
        let relays = {
            let set = self.set.read().unwrap_or_else(|p| p.into_inner());
            set.as_ref()
                .and_then(|l| l.relays.get(caller).cloned())
                .unwrap_or_default()
        };
        crate::gat1400::catalog::covered(own.as_ref(), &relays)
            .into_iter()
            .collect()
    }

    /// Whether `code` is registered (from wherever, within the registration's life),
    /// as far as this node knows: what it wrote or found, else the table as read.
    fn is_online(&self, code: &str) -> bool {
        let live =
            |(_, at): &(Option<IpAddr>, Instant)| at.elapsed() < crate::gat1400::REGISTRATION_TTL;
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = recent.get(code) {
            return live(entry);
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref()
            .and_then(|l| l.registrations.get(code))
            .is_some_and(live)
    }

    /// Whether `code` has a credential in a set read within the keys' `MAX_AGE`: a
    /// login removed (or a set too old to say) has no registration to trust.
    fn has_credential(&self, code: &str) -> bool {
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref().is_some_and(|l| {
            l.at.elapsed() <= super::keys::MAX_AGE && l.credentials.contains_key(code)
        })
    }

    /// Whether `code` registered from `from` within the registration's life, as far
    /// as this node knows (and only while its credential is in a fresh set).
    fn knows(&self, code: &str, from: Option<IpAddr>) -> Option<Instant> {
        if !self.has_credential(code) {
            return None;
        }
        let fresh = |(ip, at): &(Option<IpAddr>, Instant)| {
            (*ip == from && at.elapsed() < crate::gat1400::REGISTRATION_TTL).then_some(*at)
        };
        // What this node wrote or found since the last read is the newest it knows.
        let recent = self.recent.read().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = recent.get(code) {
            return fresh(entry);
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref()?.registrations.get(code).and_then(fresh)
    }

    fn note(&self, code: &str, from: Option<IpAddr>, at: Instant) {
        let mut recent = self.recent.write().unwrap_or_else(|p| p.into_inner());
        recent.insert(code.to_string(), (from, at));
    }

    /// The upper platform `id` is, when an upstream of ours is registered there (as
    /// last read, within the keys' `MAX_AGE`) and `peer` is its address: it may
    /// subscribe and send notifications by `User-Identify` alone, as on `serve`
    /// (`Registry::admits_upper`).
    fn upper(
        &self,
        id: &str,
        peer: Option<IpAddr>,
    ) -> Option<sightline_cluster::upstreams::LiveUpper> {
        let canonical = |ip: IpAddr| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let peer = canonical(peer?);
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let l = set
            .as_ref()
            .filter(|l| l.at.elapsed() <= super::keys::MAX_AGE)?;
        let u = only_upper(&l.uppers, id)?;
        u.addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
            .any(|a| canonical(a) == peer)
            .then(|| u.clone())
    }

    /// The upper platform `id` is (as [`Directory::upper`], its address checked at
    /// admission), when it has no device record nor login of its own here (a caller
    /// with one is judged by its record alone).
    fn upper_named(&self, id: &str) -> Option<sightline_cluster::upstreams::LiveUpper> {
        if self.device(id).is_some() || self.has_credential(id) {
            return None;
        }
        let set = self.set.read().unwrap_or_else(|p| p.into_inner());
        let l = set.as_ref()?;
        only_upper(&l.uppers, id).cloned()
    }

    /// The communities an upper platform `code` (no record here) reads: its
    /// upstream's, or every registered one.
    fn upper_communities(&self, code: &str) -> Option<Vec<String>> {
        let u = self.upper_named(code)?;
        Some(match u.scope {
            Some(scope) => scope,
            None => self.catalog().2.iter().map(|c| c.code.clone()).collect(),
        })
    }

    fn forget(&self, code: &str) {
        self.recent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code);
        if let Some(l) = self.set.write().unwrap_or_else(|p| p.into_inner()).as_mut() {
            l.registrations.remove(code);
        }
    }
}

/// The digest nonces' key: derived from `partition_token` (every node of the cluster
/// holds it), else one of this process's own.
fn nonce_key(config: &ClusterConfig) -> [u8; 32] {
    match &config.partition_token {
        Some(t) => crate::audit::witness::hmac_sha256(t.as_bytes(), b"sightline gat1400 nonces v1"),
        None => {
            tracing::warn!(
                "no partition_token: GA/T 1400 digest nonces verify only on the ingest node \
                 that issued them (a load balancer must keep each camera on one node)"
            );
            rand::random()
        }
    }
}

fn address(ip: Option<IpAddr>) -> Option<String> {
    ip.map(|ip| ip.to_string())
}

impl GatNode {
    /// The node's audit log (object queries).
    pub(super) fn audit(&self) -> Arc<crate::audit::AuditLog> {
        self.audit.clone()
    }

    /// The gateway of an ingest node, its tables read once now (a node starts with
    /// them when PostgreSQL answers) and then every `index.renew_ms` on a task of its
    /// own (returned).
    pub(super) async fn start(
        config: &ClusterConfig,
        publisher: Publisher,
        alerting: Arc<Alerting>,
        partitions: u32,
    ) -> Result<(Arc<GatNode>, tokio::task::JoinHandle<()>), String> {
        let (renewals, mut queued) = tokio::sync::mpsc::channel(RENEWALS_QUEUED);
        let partitions = u16::try_from(partitions)
            .map_err(|_| format!("{partitions} partitions: at most 65535"))?;
        let audit = super::query::open_audit(config.ingest_audit_dir(), &config.query).await?;
        let node = Arc::new(GatNode {
            partitions,
            partition_directory: tokio::sync::OnceCell::new(),
            object_queries: Arc::default(),
            audit,
            renewals,
            gateway: Gateway::signed(nonce_key(config)),
            directory: Directory::default(),
            objects: Objects::new(&config.s3).map_err(|e| e.to_string())?,
            publisher,
            alerting,
            slots: Arc::new(tokio::sync::Semaphore::new(UPLOAD_SLOTS)),
            callers: PerCaller::new(crate::DEFAULT_VIID_PER_CALLER),
            bytes: ByteBudget::new(config.ingest.max_viid_inflight_bytes),
            writer: tokio::sync::Mutex::new(None),
            receive: super::receive_policy(config)?,
            config: config.clone(),
        });
        let mut meta = None;
        let mut failing = match node.load(&mut meta).await {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the GA/T 1400 tables; digests are refused until they are read");
                true
            }
        };
        let n = node.clone();
        let renewing = async move {
            while let Some(r) = queued.recv().await {
                n.renew_now(r).await;
            }
        };
        let n = node.clone();
        let reading = async move {
            loop {
                tokio::time::sleep(n.config.renew()).await;
                n.sweep_nonces().await;
                match n.load(&mut meta).await {
                    Ok(()) if failing => {
                        tracing::info!("GA/T 1400 tables read again");
                        failing = false;
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        tracing::warn!(error = %e, "cannot read the GA/T 1400 tables; the last set read stays in force for its max age");
                        failing = true;
                    }
                    Err(_) => {}
                }
            }
        };
        let task = tokio::spawn(async move {
            tokio::join!(reading, renewing);
        });
        Ok((node, task))
    }

    /// The devices whose relays the last read skipped (they do not parse), for
    /// `/health`.
    pub(super) fn relays_unreadable(&self) -> Vec<String> {
        let set = self.directory.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref()
            .map(|l| l.relays_unreadable.clone())
            .unwrap_or_default()
    }

    /// The first day (`YYYYMMDD`) whose pictures the janitor keeps at `now_ms`
    /// (`janitor::gat1400_first_kept_day` of `index.gat1400_retention_days`, else of
    /// the cluster's event retention as last read; `None`: every day is kept).
    fn first_kept_day(&self, now_ms: i64) -> Option<String> {
        let set = self.directory.set.read().unwrap_or_else(|p| p.into_inner());
        let events = set.as_ref().and_then(|l| l.retention_days);
        let configured = self.config.index.gat1400_retention_days;
        let keep_days = sightline_cluster::janitor::gat1400_keep_days(configured, events);
        sightline_cluster::janitor::gat1400_first_kept_day(now_ms, keep_days)
    }

    /// How long ago the gateway's tables were last read (`None`: never).
    pub(super) fn age(&self) -> Option<Duration> {
        let set = self.directory.set.read().unwrap_or_else(|p| p.into_inner());
        set.as_ref().map(|l| l.at.elapsed())
    }

    /// Reads the three tables (connecting first when `meta` is not open), each call
    /// bounded by `index.lease_ms`.
    async fn load(&self, meta: &mut Option<Meta>) -> Result<(), String> {
        let lease = self.config.lease();
        if !meta.as_ref().is_some_and(Meta::is_open) {
            *meta = Some(
                Meta::connect_within(&self.config.postgres, lease)
                    .await
                    .map_err(|e| e.to_string())?,
            );
        }
        let m = meta.as_ref().expect("connected above");
        let asked = Instant::now();
        let ttl_ms = crate::gat1400::REGISTRATION_TTL.as_millis() as i64;
        let read = async {
            Ok::<_, sightline_cluster::ClusterError>((
                m.gat1400_credentials().await?,
                (
                    m.devices(None).await?,
                    m.all_relays().await?,
                    m.communities().await?,
                    m.retention_days().await?,
                ),
                m.gat1400_registrations(ttl_ms).await?,
                m.live_uppers().await?,
            ))
        };
        let (
            credentials,
            (devices, (relays, relays_unreadable), communities, retention_days),
            registrations,
            uppers,
        ) = m
            .given_up(bounded(lease, "read the GA/T 1400 tables", read).await)
            .map_err(|e| e.to_string())?;
        let since = |age_ms: i64| {
            asked
                .checked_sub(Duration::from_millis(age_ms.max(0) as u64))
                .unwrap_or(asked)
        };
        let loaded = Loaded {
            userhashes: UserHashes::of(&credentials),
            credentials: credentials
                .into_iter()
                .map(|c| (c.code.clone(), c))
                .collect(),
            devices: Arc::new(devices.into_iter().map(|d| (d.code.clone(), d)).collect()),
            relays,
            relays_unreadable,
            retention_days,
            communities: Arc::new(communities),
            registrations: registrations
                .into_iter()
                .map(|r| {
                    let ip = r.address.as_deref().and_then(|a| a.parse().ok());
                    (r.code, (ip, since(r.age_ms)))
                })
                .collect(),
            uppers,
            at: asked,
        };
        *self
            .directory
            .set
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(loaded);
        // What this node wrote before the read is in it now.
        self.directory
            .recent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, at)| *at > asked);
        self.directory
            .added
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (_, at)| *at > asked);
        Ok(())
    }

    /// `call` on the writer connection (made again when broken), bounded by
    /// `index.lease_ms`.
    async fn write<T>(
        &self,
        what: &'static str,
        call: impl for<'m> FnOnce(
            &'m Meta,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = sightline_cluster::Result<T>> + Send + 'm>,
        >,
    ) -> Result<T, ApiError> {
        let lease = self.config.lease();
        // The wait for the connection is bounded too: a hung call ahead holds it.
        let Ok(mut writer) = tokio::time::timeout(lease, self.writer.lock()).await else {
            return Err(ApiError::StorageUnavailable(format!(
                "PostgreSQL: the GA/T 1400 writer is busy ({what})"
            )));
        };
        if !writer.as_ref().is_some_and(Meta::is_open) {
            *writer = Some(
                Meta::connect_within(&self.config.postgres, lease)
                    .await
                    .map_err(|e| ApiError::StorageUnavailable(format!("PostgreSQL: {e}")))?,
            );
        }
        let m = writer.as_ref().expect("connected above");
        m.given_up(bounded(lease, what, call(m)).await)
            .map_err(|e| ApiError::StorageUnavailable(format!("PostgreSQL: {e}")))
    }

    /// Registers `code` from `from` in the table, then here (refused when its login
    /// was removed meanwhile).
    async fn register(&self, code: &str, from: Option<IpAddr>) -> Result<(), ApiError> {
        let (c, a) = (code.to_string(), address(from));
        let made = self
            .write("register a GA/T 1400 caller", move |m| {
                Box::pin(async move { m.gat1400_register(&c, a.as_deref()).await })
            })
            .await?;
        if !made {
            return Err(ApiError::Unauthorized(format!(
                "{code} has no GA/T 1400 login (removed)"
            )));
        }
        self.directory.note(code, from, Instant::now());
        Ok(())
    }

    /// Renews a registration proved now (a digest, a keepalive, an upload) at most
    /// once a [`RENEW_EVERY`], in the background (the request does not wait on
    /// PostgreSQL); a renewal that cannot be queued or written is logged (the
    /// registration it renews lasts an hour).
    fn renew(&self, code: &str, from: Option<IpAddr>, digest: bool) {
        if self
            .directory
            .knows(code, from)
            .is_some_and(|at| at.elapsed() < RENEW_EVERY)
        {
            return;
        }
        // Noted now, so the requests until the renewal is written do not queue it again.
        if digest || self.directory.knows(code, from).is_some() {
            self.directory.note(code, from, Instant::now());
        }
        let renewal = Renewal {
            code: code.to_string(),
            from,
            digest,
        };
        if self.renewals.try_send(renewal).is_err() {
            tracing::warn!(
                code,
                "a GA/T 1400 registration was not renewed (queue full)"
            );
        }
    }

    /// A digest proved `code` from `from` just now: that registers it again, as on
    /// `serve` (a device reconnecting answers the challenge on whatever request
    /// failed) — written before the answer when this node knows no registration
    /// from there (another node may be asked next), else renewed in the background.
    async fn proven(&self, code: &str, from: Option<IpAddr>) {
        if self.directory.knows(code, from).is_some() {
            return self.renew(code, from, true);
        }
        if let Err(e) = self.register(code, from).await {
            tracing::warn!(code, error = %e, "a GA/T 1400 caller proven by digest was not registered");
        }
    }

    /// Writes a queued renewal; a registration that is gone (its login removed, or
    /// unregistered on another node) is forgotten here too.
    async fn renew_now(&self, r: Renewal) {
        let (c, a, digest) = (r.code.clone(), address(r.from), r.digest);
        let done = self
            .write("renew a GA/T 1400 registration", move |m| {
                Box::pin(async move {
                    match digest {
                        true => m.gat1400_register(&c, a.as_deref()).await,
                        false => m.gat1400_renew(&c, a.as_deref()).await,
                    }
                })
            })
            .await;
        match done {
            Ok(true) => {}
            Ok(false) => self.directory.forget(&r.code),
            Err(e) => {
                tracing::warn!(code = r.code, error = %e, "a GA/T 1400 registration was not renewed")
            }
        }
    }

    /// Writes the devices a relaying platform's upload catalogued (its cameras the
    /// catalog did not know: `serve`'s `Relay::catalogue`) to the catalog, each unless
    /// registered meanwhile, and knows them here at once as PostgreSQL keeps them;
    /// whether each is stored as it was built (`false`: one was registered meanwhile,
    /// perhaps in another community, and the upload must be judged again).
    async fn catalogue(&self, records: Vec<Device>) -> Result<bool, ApiError> {
        if records.is_empty() {
            return Ok(true);
        }
        let written = records.clone();
        let stored = self
            .write("catalogue relayed devices", move |m| {
                Box::pin(async move { m.add_devices(&written).await })
            })
            .await?;
        self.directory.add(&stored);
        let kept: HashMap<&str, &Device> = stored.iter().map(|d| (d.code.as_str(), d)).collect();
        let as_built = records
            .iter()
            .all(|r| kept.get(r.code.as_str()) == Some(&r));
        Ok(as_built)
    }

    /// Forgets nonce uses past every nonce's life (any node may; each bounded).
    async fn sweep_nonces(&self) {
        let swept = self
            .write("sweep GA/T 1400 nonces", |m| {
                Box::pin(async move { m.gat1400_sweep_nonces(NONCE_USE_KEPT_MS).await })
            })
            .await;
        if let Err(e) = swept {
            tracing::debug!(error = %e, "GA/T 1400 nonces not swept");
        }
    }

    /// Whether `code` is registered from `from`: as this node knows, else as the
    /// table says now (a camera registered on another node a moment ago).
    async fn is_registered(&self, code: &str, from: Option<IpAddr>) -> bool {
        if self.directory.knows(code, from).is_some() {
            return true;
        }
        // Only a code with a login is worth asking PostgreSQL about: random
        // `User-Identify` codes never reach the writer connection.
        if !self.directory.has_credential(code) {
            return false;
        }
        let c = code.to_string();
        let found = self
            .write("read a GA/T 1400 registration", move |m| {
                Box::pin(async move { m.gat1400_registration(&c).await })
            })
            .await;
        let Ok(Some(r)) = found else { return false };
        let ip = r.address.as_deref().and_then(|a| a.parse().ok());
        let ttl = crate::gat1400::REGISTRATION_TTL.as_millis() as i64;
        if ip != from || r.age_ms >= ttl {
            return false;
        }
        let at = Instant::now()
            .checked_sub(Duration::from_millis(r.age_ms.max(0) as u64))
            .unwrap_or_else(Instant::now);
        self.directory.note(code, ip, at);
        true
    }

    /// The caller of an exchange, renewed; or the 401 to answer (as `serve`'s
    /// `registered`).
    async fn registered(&self, x: &Exchange) -> Result<String, Reply> {
        if let Some(id) = &x.pre_authorized {
            self.proven(id, x.peer).await;
            return Ok(id.clone());
        }
        let identity = identified(x);
        if x.authorization
            .as_deref()
            .is_some_and(|h| !h.trim().is_empty())
        {
            return match self.check(x, identity.as_deref(), &x.raw).await {
                Ok(id) => {
                    self.proven(&id, x.peer).await;
                    Ok(id)
                }
                // A digest that does not verify leaves the caller judged as without
                // one (as `serve`'s: firmware re-sends its last digest).
                Err(why) => match identity {
                    Some(id) if self.is_registered(&id, x.peer).await => {
                        self.renew(&id, x.peer, false);
                        Ok(id)
                    }
                    _ => Err(refused(&self.gateway, x, &why)),
                },
            };
        }
        match identity {
            Some(id) if self.is_registered(&id, x.peer).await => {
                self.renew(&id, x.peer, false);
                Ok(id)
            }
            _ => Err(unauthorized(
                &self.gateway,
                x,
                "not registered: POST /VIID/System/Register first",
            )),
        }
    }

    /// The caller a digest proves: checked as `serve` checks it (the response, the
    /// `uri` against the path, the nonce's signature, life and counter on this node),
    /// then its (nonce, nc) recorded as used in `gat1400_nonces`, so the same answer
    /// replayed to any ingest node — or to this one after a restart or past its
    /// in-memory bound — is refused.
    async fn check(
        &self,
        x: &Exchange,
        identity: Option<&str>,
        body: &[u8],
    ) -> Result<String, DigestError> {
        let id = self.gateway.check_digest(
            &self.directory,
            &x.method,
            &x.target(),
            x.authorization.as_deref(),
            identity,
            body,
        )?;
        let (nonce, nc) = x
            .authorization
            .as_deref()
            .and_then(answered_nonce)
            .ok_or(DigestError::Missing)?;
        let first = self
            .write("record a GA/T 1400 nonce", move |m| {
                Box::pin(async move { m.gat1400_nonce_first_use(&nonce, nc as i64).await })
            })
            .await;
        match first {
            Ok(true) => Ok(id),
            Ok(false) => Err(DigestError::Replayed),
            Err(e) => Err(DigestError::Unavailable(e.to_string())),
        }
    }
}

/// The head of a request as an exchange (no body yet); `tls` when the ingest
/// listener speaks TLS (the `RequestURL`s then say `https`).
fn exchange_of(req: &Request<Incoming>, now_ms: i64, tls: bool) -> Exchange {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    Exchange {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        // RFC 9112 §3.2.2: an absolute-form target's authority is the host.
        origin: crate::gat1400::handlers::origin(
            req.uri()
                .authority()
                .map(|a| a.as_str())
                .or(header("host").as_deref()),
            tls,
        ),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(crate::http::call::header_text),
        user_identify: header("user-identify"),
        body: Bytes::new(),
        raw: Bytes::new(),
        now_ms,
        pre_authorized: None,
        peer: req.extensions().get::<crate::serve::Peer>().map(|p| p.0),
    }
}

fn response(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(reply.status)
        .header("content-type", VIID_JSON);
    for (name, value) in reply.headers() {
        r = r.header(name, value);
    }
    r.body(Full::new(Bytes::from(reply.body.to_string())))
        .expect("a valid response")
}

/// One status for a request refused before its work (busy, a body too large).
fn early(x: &Exchange, e: ApiError, code: i64) -> Reply {
    let s = one_status("", &x.url(), code, &e.to_string(), x.now_ms);
    Reply::with(e.status(), s)
}

/// Whether the node's gateway answers `path` (a `/VIID` one; else the ingest node's
/// own 404).
pub(super) fn answers(path: &str) -> bool {
    path.starts_with("/VIID/") || path == "/VIID"
}

/// Whether this node's ingest listener speaks TLS.
fn speaks_tls(node: &GatNode) -> bool {
    node.config
        .tls
        .as_ref()
        .is_some_and(|t| t.serves(sightline_cluster::tls::PublicListener::Ingest))
}

/// A `/VIID` request refused before the gateway sees it (a bad `Host`, a method no
/// resource takes): `e`'s status, in GA/T 1400's shape.
pub(super) fn refused_before(
    node: &GatNode,
    req: &Request<Incoming>,
    e: ApiError,
) -> Response<Full<Bytes>> {
    let x = exchange_of(req, crate::now_ms(), speaks_tls(node));
    let s = one_status("", &x.url(), INVALID_OPERATION, &e.to_string(), x.now_ms);
    response(Reply::with(e.status(), s))
}

/// Answers a `/VIID` request (its path made canonical by the caller, as `serve`'s).
pub(super) async fn handle(node: &GatNode, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let x = exchange_of(&req, crate::now_ms(), speaks_tls(node));
    let reply = match (x.method.as_str(), x.path.as_str()) {
        ("POST", "/VIID/System/Register") => system(node, req, x, register).await,
        ("POST", "/VIID/System/UnRegister") => system(node, req, x, unregister).await,
        ("POST", "/VIID/System/Keepalive") => system(node, req, x, keepalive).await,
        // HEAD wherever GET (hyper sends the head only).
        ("GET" | "HEAD", "/VIID/System/Time") => {
            let id = &node.config.ingest.viid_server_id;
            Reply::ok(system_time(id, x.now_ms))
        }
        ("POST", path) if Upload::of_path(path).is_some() || path == "/VIID/Images" => {
            upload(node, req, x).await
        }
        (method, path) if subscribes::takes(method, path) => subscribes::handle(node, req, x).await,
        ("POST", "/VIID/SubscribeNotifications") => notifications(node, req, x).await,
        (method, path) if dispositions::takes(method, path) => {
            dispositions::handle(node, req, x).await
        }
        (method, path) if queries::takes(method, path) => queries::handle(node, req, x).await,
        ("GET" | "HEAD", "/VIID/APEs") => listing(node, req, x, Listing::Apes).await,
        ("GET" | "HEAD", "/VIID/Tollgates") => listing(node, req, x, Listing::Tollgates).await,
        (method, path) => match allowed(path) {
            // RFC 9110 §9.3.7 and §15.5.6, as `serve` answers them.
            Some(allow) => {
                // OPTIONS is answered everywhere: every Allow names it.
                let allow = format!("{allow}, OPTIONS");
                let allow = allow.as_str();
                let mut r = match method {
                    "OPTIONS" => {
                        response(Reply::with(StatusCode::NO_CONTENT, serde_json::Value::Null))
                    }
                    _ => {
                        let why = format!("{path} takes {allow}, not {method}");
                        let s = one_status("", &x.url(), INVALID_OPERATION, &why, x.now_ms);
                        response(Reply::with(StatusCode::METHOD_NOT_ALLOWED, s))
                    }
                };
                if let Ok(v) = hyper::header::HeaderValue::from_str(allow) {
                    r.headers_mut().insert(hyper::header::ALLOW, v);
                }
                if method == "OPTIONS" {
                    *r.body_mut() = Full::new(Bytes::new());
                    r.headers_mut().remove(hyper::header::CONTENT_TYPE);
                }
                return r;
            }
            None => {
                let s = one_status(
                    "",
                    &x.url(),
                    INVALID_JSON_CONTENT,
                    "no such VIID resource on a cluster ingest node",
                    x.now_ms,
                );
                Reply::with(StatusCode::NOT_FOUND, s)
            }
        },
    };
    let mut r = response(reply);
    if r.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        // RFC 9110 §15.5.16: the codings taken.
        r.headers_mut().insert(
            hyper::header::ACCEPT_ENCODING,
            hyper::header::HeaderValue::from_static("gzip"),
        );
    }
    r
}

/// The methods a `/VIID` path of an ingest node takes, when it is one.
fn allowed(path: &str) -> Option<&'static str> {
    match path {
        "/VIID/System/Register" | "/VIID/System/UnRegister" | "/VIID/System/Keepalive" => {
            Some("POST")
        }
        "/VIID/System/Time" | "/VIID/APEs" | "/VIID/Tollgates" => Some("GET, HEAD"),
        "/VIID/Images" | "/VIID/SubscribeNotifications" => Some("POST"),
        p => queries::allowed(p)
            .or_else(|| subscribes::allowed(p))
            .or_else(|| dispositions::allowed(p)),
    }
}

/// Reads a body of at most `max` bytes (gzip inflated within it) into `x`, within
/// `serve`'s body timeout and minimum rate (408 past them).
/// With a `budget`, what the body announces (else `max`) is reserved before a byte is
/// read, and `max` more before a gzip body is inflated: held until the returned
/// reservation drops (as `serve`'s `max_viid_inflight_bytes`).
async fn read_body(
    req: Request<Incoming>,
    x: &mut Exchange,
    max: usize,
    budget: Option<&ByteBudget>,
) -> Result<Reserved, Reply> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let coding = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok());
    // `x-gzip` is gzip; another coding is 415 (as `serve`'s).
    let gzipped = match crate::gat1400::handlers::coding(coding) {
        Ok(g) => g,
        Err(named) => {
            let why = format!("Content-Encoding {named:?} is not supported: send gzip or none");
            let s = one_status(
                "",
                &x.url(),
                crate::gat1400::INVALID_JSON_FORMAT,
                &why,
                x.now_ms,
            );
            return Err(Reply::with(StatusCode::UNSUPPORTED_MEDIA_TYPE, s));
        }
    };
    // A Content-Length past `max`: 413 before `100 Continue`, as on `serve`.
    let (head, body) = req.into_parts();
    let body = crate::http::body::refuse_declared((&head.headers, &head.extensions), body, max)
        .map_err(|e| {
            let code = crate::gat1400::handlers::body_failure_code(&e);
            early(x, e, code)
        })?;
    let read = crate::http::body::read_paced(
        body,
        max,
        budget,
        crate::DEFAULT_BODY_TIMEOUT,
        crate::DEFAULT_MIN_BODY_RATE,
    )
    .await;
    let (body, mut held) = match read {
        Ok(read) => read,
        Err(e @ ApiError::BodyBudget(_)) => return Err(early(x, e, BUSY)),
        Err(e) => {
            return Err({
                let code = crate::gat1400::handlers::body_failure_code(&e);
                early(x, e, code)
            })
        }
    };
    x.raw = body.clone();
    // GBK text as UTF-8 may take up to the limit again: reserved before.
    // Judged without a byte order mark, as it is decoded (and as `serve` judges it).
    if !gzipped
        && crate::gat1400::handlers::is_gb_body(
            content_type.as_deref(),
            without_bom(body.clone()).as_ref(),
        )
    {
        if let Some(b) = budget {
            if !b.grow(&mut held, max) {
                return Err(early(x, ApiError::BodyBudget(b.total()), BUSY));
            }
        }
    }
    if !gzipped {
        x.body = crate::gat1400::handlers::to_utf8_blocking(
            content_type.as_deref(),
            without_bom(body),
            max,
        )
        .await
        .map_err(|e| {
            let code = crate::gat1400::handlers::body_failure_code(&e);
            early(x, e, code)
        })?;
        return Ok(held);
    }
    // Inflating may take up to the limit: reserved before, not after; CPU work, off
    // the connections' threads.
    if let Some(b) = budget {
        if !b.grow(&mut held, max) {
            return Err(early(x, ApiError::BodyBudget(b.total()), BUSY));
        }
    }
    let inflated = tokio::task::spawn_blocking(move || gunzip(&body, max))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("inflating failed: {e}"))));
    let inflated = without_bom(inflated.map_err(|e| {
        let code = crate::gat1400::handlers::body_failure_code(&e);
        early(x, e, code)
    })?);
    // GBK text as UTF-8 may take up to the limit again, judged on the inflated bytes
    // (as `serve` judges it): reserved before it is decoded.
    if crate::gat1400::handlers::is_gb_body(content_type.as_deref(), &inflated) {
        if let Some(b) = budget {
            if !b.grow(&mut held, max) {
                return Err(early(x, ApiError::BodyBudget(b.total()), BUSY));
            }
        }
    }
    x.body = crate::gat1400::handlers::to_utf8_blocking(content_type.as_deref(), inflated, max)
        .await
        .map_err(|e| {
            let code = crate::gat1400::handlers::body_failure_code(&e);
            early(x, e, code)
        })?;
    Ok(held)
}

/// A body without a leading UTF-8 byte order mark (RFC 8259 §8.1).
fn without_bom(body: Bytes) -> Bytes {
    match body.starts_with(b"\xEF\xBB\xBF") {
        true => body.slice(3..),
        false => body,
    }
}

type SystemFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send + 'a>>;

/// A registration, keepalive or time request: its small body read, then `f`.
async fn system(
    node: &GatNode,
    req: Request<Incoming>,
    mut x: Exchange,
    f: for<'a> fn(&'a GatNode, &'a Exchange) -> SystemFuture<'a>,
) -> Reply {
    if let Err(refusal) = read_body(req, &mut x, SYSTEM_BODY_BYTES, None).await {
        return refusal;
    }
    // A keepalive may name its caller only in its `KeepaliveObject` (as `serve`'s).
    if x.path == "/VIID/System/Keepalive" && identified(&x).is_none() {
        x.user_identify = registering(&x);
    }
    f(node, &x).await
}

/// `POST /VIID/System/Register` (as `serve`'s): the registration binds the code the
/// `RegisterObject` names (else `User-Identify`, else the digest's user name); it is
/// in the table before it is answered.
fn register<'a>(node: &'a GatNode, x: &'a Exchange) -> SystemFuture<'a> {
    Box::pin(async move {
        let identity = registering(x).or_else(|| identified(x));
        match node.check(x, identity.as_deref(), &x.raw).await {
            Err(why) => refused(&node.gateway, x, &why),
            // Proven, but its body is not JSON: not registered (as `serve`).
            Ok(id) if unreadable_body(x).is_some() => {
                let why = unreadable_body(x).unwrap_or_default();
                Reply::ok(one_status(
                    &id,
                    &x.url(),
                    INVALID_JSON_FORMAT,
                    &why,
                    x.now_ms,
                ))
            }
            Ok(id) => match node.register(&id, x.peer).await {
                Ok(()) => Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms)),
                Err(e) => device_error(x, &e),
            },
        }
    })
}

/// `POST /VIID/System/UnRegister` (as `serve`'s): with a valid digest, or from a
/// registered identity without one.
fn unregister<'a>(node: &'a GatNode, x: &'a Exchange) -> SystemFuture<'a> {
    Box::pin(async move {
        let identity = registering(x).or_else(|| identified(x));
        let id = match (node.check(x, identity.as_deref(), &x.raw).await, identity) {
            (Ok(id), _) => id,
            (Err(_), Some(id)) if node.is_registered(&id, x.peer).await => id,
            (Err(why), _) => return refused(&node.gateway, x, &why),
        };
        let c = id.clone();
        let done = node
            .write("unregister a GA/T 1400 caller", move |m| {
                Box::pin(async move { m.gat1400_unregister(&c).await })
            })
            .await;
        node.directory.forget(&id);
        match done {
            Ok(()) => Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms)),
            Err(e) => device_error(x, &e),
        }
    })
}

/// `POST /VIID/System/Keepalive`.
fn keepalive<'a>(node: &'a GatNode, x: &'a Exchange) -> SystemFuture<'a> {
    Box::pin(async move {
        // A body that is not JSON: status 7, to a caller proven by its headers or its
        // registration, and nothing registered or renewed for it (as `serve`).
        if let Some(why) = unreadable_body(x) {
            let identity = identified(x);
            let known = match (&x.pre_authorized, &identity) {
                (Some(id), _) => Some(id.clone()),
                (None, Some(id)) if node.is_registered(id, x.peer).await => Some(id.clone()),
                // Proven by a digest here too without registering it (as a Register's).
                _ => node.check(x, identity.as_deref(), &x.raw).await.ok(),
            };
            let id = match known {
                Some(id) => id,
                None => match node.registered(x).await {
                    Ok(id) => id,
                    Err(refused) => return refused,
                },
            };
            return Reply::ok(one_status(
                &id,
                &x.url(),
                INVALID_JSON_FORMAT,
                &why,
                x.now_ms,
            ));
        }
        match node.registered(x).await {
            Ok(id) => Reply::ok(one_status(&id, &x.url(), OK, "正常", x.now_ms)),
            Err(refused) => refused,
        }
    })
}

/// Before the body: the caller a digest in the headers proves (every digest is judged
/// from the headers alone: `qop=auth-int` is refused), or `None` for a registered
/// `User-Identify`; otherwise why not (as `serve`'s `authorized_early`).
async fn authorized_early(node: &GatNode, x: &Exchange) -> Result<Option<String>, DigestError> {
    let identity = identified(x);
    let why = match x.authorization.as_deref().filter(|h| !h.trim().is_empty()) {
        Some(_) => match node.check(x, identity.as_deref(), b"").await {
            Ok(id) => return Ok(Some(id)),
            // Judged as without the digest (as `serve`'s).
            Err(why) => why,
        },
        None => DigestError::NotRegistered,
    };
    match identity {
        Some(id) if node.is_registered(&id, x.peer).await => Ok(None),
        _ => Err(why),
    }
}

/// What a request a registered caller makes holds while it is served: its slot, its
/// caller's share of the slots, its body's bytes.
struct Admitted {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _share: crate::http::limits::CallerSlot,
    _held: Reserved,
}

/// Admits a request of a registered caller as `serve`'s `Gate::Registered` does:
/// within the slots, proven (or a registered `User-Identify`) before the body is read,
/// within the caller's share, its body (at most `max` bytes) read into `x`; then its
/// caller, renewed. Else the refusal to answer.
async fn admit(
    node: &GatNode,
    req: Request<Incoming>,
    x: &mut Exchange,
    max: usize,
) -> Result<(Admitted, String), Reply> {
    admit_as(node, req, x, max, false).await
}

/// [`admit`], and also an upper platform our upstream is registered with, by its
/// exact 视图库 id in `User-Identify` from its address (as `serve`'s
/// `Gate::Platform`): the routes an upper uses (subscriptions, notifications).
async fn admit_platform(
    node: &GatNode,
    req: Request<Incoming>,
    x: &mut Exchange,
    max: usize,
) -> Result<(Admitted, String), Reply> {
    admit_as(node, req, x, max, true).await
}

/// Whether `caller` may subscribe or dispose, as on `serve`: an upper platform our
/// upstream is registered with, or a catalogued device of kind platform; else the 403
/// (status 4) to answer.
fn managing(node: &GatNode, x: &Exchange, caller: &str) -> Result<(), Reply> {
    if node.directory.upper(caller, x.peer).is_some() {
        return Ok(());
    }
    match node.directory.device(caller) {
        Some(d) if d.device_kind == "platform" => Ok(()),
        _ => Err(crate::gat1400::handlers::only_platforms(
            x,
            crate::gat1400::handlers::NOT_A_MANAGER,
        )),
    }
}

/// The one live upstream whose upper platform is `id`: none when two upstreams name
/// the same upper (their scopes differ; admitting the caller under either could give
/// one upstream's owner the other's communities), as when none does.
fn only_upper<'a>(
    uppers: &'a [sightline_cluster::upstreams::LiveUpper],
    id: &str,
) -> Option<&'a sightline_cluster::upstreams::LiveUpper> {
    let mut named = uppers.iter().filter(|u| u.server_id == id);
    let first = named.next()?;
    if named.next().is_some() {
        tracing::warn!(
            upper = id,
            "two upstreams name this upper platform: it is not let in"
        );
        return None;
    }
    Some(first)
}

/// This caller's share of the gateway's slots, however many connections it opens,
/// keyed as `serve` keys it (what is proven, else the address); 429 past it.
fn caller_share(node: &GatNode, x: &Exchange) -> Result<crate::http::limits::CallerSlot, Reply> {
    let who = caller_key(
        x.pre_authorized.as_deref(),
        x.user_identify.as_deref(),
        x.peer,
    );
    node.callers.take(&who).ok_or_else(|| {
        early(
            x,
            ApiError::Busy("this caller's share of the GA/T 1400 gateway"),
            BUSY,
        )
    })
}

async fn admit_as(
    node: &GatNode,
    req: Request<Incoming>,
    x: &mut Exchange,
    max: usize,
    platform: bool,
) -> Result<(Admitted, String), Reply> {
    let Ok(slot) = node.slots.clone().try_acquire_owned() else {
        return Err(early(x, ApiError::Busy("the GA/T 1400 gateway"), BUSY));
    };
    // An upper (no digest, not registered here: nothing else opens to it).
    let upper = identified(x)
        .filter(|_| platform)
        .filter(|id| node.directory.upper(id, x.peer).is_some());
    match authorized_early(node, x).await {
        Ok(id) => x.pre_authorized = id,
        Err(_) if upper.is_some() => x.pre_authorized = None,
        Err(why) => return Err(refused(&node.gateway, x, &why)),
    }
    let share = caller_share(node, x)?;
    let held = read_body(req, x, max, Some(&node.bytes)).await?;
    let caller = match (node.registered(x).await, upper) {
        (Ok(caller), _) => caller,
        (Err(_), Some(id)) => id,
        (Err(refused), None) => return Err(refused),
    };
    let admitted = Admitted {
        _slot: slot,
        _share: share,
        _held: held,
    };
    Ok((admitted, caller))
}

/// Which catalog listing a registered caller asks for.
#[derive(Clone, Copy)]
enum Listing {
    Apes,
    Tollgates,
}

/// `GET /VIID/APEs`, `GET /VIID/Tollgates`: admitted as an upload is (a body, if any,
/// within the system bodies' bound), or an upper platform (`admit_platform`: the
/// devices of its upstream's communities, as on `serve`), answered with `serve`'s
/// functions over the tables as this node last read them.
async fn listing(node: &GatNode, req: Request<Incoming>, mut x: Exchange, what: Listing) -> Reply {
    let (_admitted, caller) = match admit_platform(node, req, &mut x, SYSTEM_BODY_BYTES).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let listed = node.directory.listing(&caller);
    Reply::ok(match what {
        Listing::Apes => {
            crate::gat1400::catalog::apes_json(listed, |code| node.directory.is_online(code))
        }
        Listing::Tollgates => crate::gat1400::catalog::tollgates_json(listed),
    })
}

/// An upload: within the slots, from a proven caller (before the body is read), then
/// pictures and objects on S3, then the events on the log, then the statuses.
async fn upload(node: &GatNode, req: Request<Incoming>, mut x: Exchange) -> Reply {
    let max = node.config.ingest.max_viid_body_bytes;
    let (_admitted, uploader) = match admit(node, req, &mut x, max).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let x = Arc::new(x);
    // The devices a platform catalogued are written before any event naming them is
    // published; one registered meanwhile (by an admin, or by another node under
    // another community) is kept as PostgreSQL has it, and the upload is judged
    // again against it (its objects refused if the uploader does not cover its
    // community, as `serve` would), at most once more: the second judgement
    // catalogues nothing new.
    let mut judged = 0;
    let (images, objects) = loop {
        judged += 1;
        let (parsed, records) = match judge(node, &x, &uploader).await {
            Ok(Ok(p)) => p,
            Ok(Err(refusal)) => return refusal,
            Err(e) => return device_error(&x, &e),
        };
        match node.catalogue(records).await {
            Ok(true) => break parsed,
            Ok(false) if judged < 2 => continue,
            Ok(false) => {
                let e = ApiError::StorageUnavailable(
                    "the catalog changed while this upload was judged; send it again".into(),
                );
                return device_error(&x, &e);
            }
            Err(e) => return device_error(&x, &e),
        }
    };
    let ids: Vec<String> = objects.iter().map(|o| o.id.clone()).collect();
    match keep(node, objects, x.now_ms).await {
        Ok(texts) => upload_statuses(&x, images, &ids, &texts),
        Err(e) => device_error(&x, &e),
    }
}

/// `POST /VIID/SubscribeNotifications` (as `serve`'s): what a platform we
/// subscribed to sends (admitted as a registered caller, or an upper platform, as on
/// `serve`), each `SubscribeNotificationObject` taken only when its `SubscribeID` is
/// a remote subscription of the cluster not being cancelled (`remote_subscriptions`,
/// asked on the writer connection); its objects stored as that platform's uploads
/// (its communities, relayed devices, pictures and objects on S3) through the upload
/// path; one status per notification: 0 when every object was stored, else the first
/// refusal.
async fn notifications(node: &GatNode, req: Request<Incoming>, mut x: Exchange) -> Reply {
    let max = node.config.ingest.max_viid_body_bytes;
    let (_admitted, uploader) = match admit_platform(node, req, &mut x, max).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let list = crate::gat1400::handlers::items_of_list(
        &x,
        "SubscribeNotificationListObject",
        "SubscribeNotificationObject",
    );
    let notifications = match list {
        Ok(items) => items,
        Err(refused) => return refused,
    };
    let status = |id: &str, code: i64, text: &str| {
        crate::gat1400::status_object(id, &x.url(), code, text, x.now_ms)
    };
    // Which of the named subscriptions are ours and live: one statement for the whole
    // list, however many notifications it holds.
    let mut named: Vec<String> = notifications
        .iter()
        .filter_map(|n| crate::gat1400::text(n, "SubscribeID"))
        .filter(|s| !s.is_empty())
        .collect();
    named.sort_unstable();
    named.dedup();
    let live: Result<std::collections::HashMap<String, (String, Vec<String>)>, _> =
        match named.is_empty() {
            true => Ok(Default::default()),
            false => {
                node.write("read remote subscriptions", move |m| {
                    Box::pin(async move { m.remote_subscription_senders(&named).await })
                })
                .await
            }
        };
    let mut statuses = Vec::with_capacity(notifications.len());
    for n in &notifications {
        let id = crate::gat1400::text(n, "NotificationID").unwrap_or_default();
        let subscribe_id = crate::gat1400::text(n, "SubscribeID").unwrap_or_default();
        match live.as_ref().map(|l| l.get(&subscribe_id)) {
            Ok(Some((url, resolved))) => {
                // From the platform it was placed at, as on `serve` (any address with
                // `gat1400.registration_any_address`).
                let resolved: Vec<IpAddr> =
                    resolved.iter().filter_map(|a| a.parse().ok()).collect();
                if !node.config.gat1400.registration_any_address
                    && !crate::subscriptions::remote::sender_among(url, &resolved, x.peer)
                {
                    let from = x.peer.map_or_else(String::new, |p| format!(" from {p}"));
                    let why = format!(
                        "SubscribeID {subscribe_id:?} was placed at {url}: its notifications come from there, not{from}"
                    );
                    statuses.push(status(&id, crate::gat1400::INVALID_OPERATION, &why));
                    continue;
                }
            }
            Ok(None) => {
                let why =
                    format!("订阅不存在: no subscription {subscribe_id:?} placed by this cluster");
                statuses.push(status(&id, crate::gat1400::OTHER_ERROR, &why));
                continue;
            }
            Err(e) => {
                statuses.push(status(&id, crate::gat1400::DEVICE_ERROR, &e.to_string()));
                continue;
            }
        }
        let mut first_refusal: Option<(i64, String)> = None;
        let mut failed = None;
        for upload in Upload::ALL {
            let (list, item, _) = upload.names();
            // As `serve` reads them: `MotorVehicleObjectList.MotorVehicleObject`,
            // `….MotorVehicleList`, or a bare array.
            let key = list.replace("ListObject", "ObjectList");
            let alt = item.replace("Object", "List");
            let Some(items) = crate::gat1400::field(n, &key).and_then(|l| match l {
                serde_json::Value::Array(_) => Some(l),
                _ => crate::gat1400::field(l, item).or_else(|| crate::gat1400::field(l, &alt)),
            }) else {
                continue;
            };
            let body = Bytes::from(serde_json::json!({ list: { item: items } }).to_string());
            let one = Exchange {
                method: "POST".into(),
                path: upload.path().into(),
                query: None,
                origin: x.origin.clone(),
                authorization: None,
                user_identify: x.user_identify.clone(),
                body: body.clone(),
                raw: body,
                now_ms: x.now_ms,
                pre_authorized: None,
                peer: x.peer,
            };
            match store_uploaded(node, Arc::new(one), &uploader).await {
                Ok(fates) => {
                    if first_refusal.is_none() {
                        first_refusal = fates.into_iter().find(|(code, _)| *code != OK);
                    }
                }
                Err(why) => {
                    failed = Some(why);
                    break;
                }
            }
        }
        statuses.push(match (failed, first_refusal) {
            (Some((code, text)), _) | (None, Some((code, text))) => status(&id, code, &text),
            (None, None) => status(&id, OK, "正常"),
        });
    }
    Reply::ok(crate::gat1400::status_list(statuses))
}

/// Stores one upload (`x`, as `uploader` sent it) as [`upload`] does; each object's
/// status code and text, or the one refusal of the whole list.
async fn store_uploaded(
    node: &GatNode,
    x: Arc<Exchange>,
    uploader: &str,
) -> Result<Vec<(i64, String)>, (i64, String)> {
    let device = |e: &ApiError| (crate::gat1400::DEVICE_ERROR, e.to_string());
    let mut judged = 0;
    let (_, objects) = loop {
        judged += 1;
        let (parsed, records) = match judge(node, &x, uploader).await {
            Ok(Ok(p)) => p,
            Ok(Err(refusal)) => {
                // The list's one status (as `items_of_list` refuses it).
                let s = &refusal.body["ResponseStatusListObject"]["ResponseStatusObject"][0];
                let code = s["StatusCode"].as_i64().unwrap_or(INVALID_JSON_CONTENT);
                let text = s["StatusString"].as_str().unwrap_or("refused").to_string();
                return Err((code, text));
            }
            Err(e) => return Err(device(&e)),
        };
        match node.catalogue(records).await {
            Ok(true) => break parsed,
            Ok(false) if judged < 2 => continue,
            Ok(false) => {
                return Err(device(&ApiError::StorageUnavailable(
                    "the catalog changed while this upload was judged; send it again".into(),
                )))
            }
            Err(e) => return Err(device(&e)),
        }
    };
    keep(node, objects, x.now_ms).await.map_err(|e| device(&e))
}

/// An upload parsed against the tables as this node knows them (with the devices it
/// catalogued since its last read), and the records of the unknown devices a
/// relaying platform named (to write); or the refusal to answer.
type Judged = Result<(Parsed, Vec<Device>), Reply>;
type Parsed = (Option<Vec<crate::gat1400::image_list::Image>>, Vec<Object>);

async fn judge(node: &GatNode, x: &Arc<Exchange>, uploader: &str) -> Result<Judged, ApiError> {
    let by = node.directory.uploader(uploader);
    let relay = node.directory.relay(uploader);
    let (devices, added, communities) = node.directory.catalog();
    let limits = (
        node.config.ingest.gat1400_face_subject.clone(),
        node.config.ingest.max_picture_bytes,
    );
    let parsing = x.clone();
    // Parsing and decoding pictures is CPU work (a 64 MiB body of base64).
    let parsed = tokio::task::spawn_blocking(move || {
        // The uploader names devices of its own community, or of those it relays into
        // (a platform's unknown ones made into records, as `serve` catalogues them).
        let catalog = Catalog::Listed {
            devices: &devices,
            added: &added,
            relay: relay.as_ref(),
            communities: &communities,
        };
        let mut devices = Devices::of(catalog).uploaded_by(by);
        let parsed = parse_upload(&mut devices, &parsing, (&limits.0, limits.1));
        (parsed, devices.new_records())
    })
    .await
    .map_err(|e| ApiError::internal(format!("the upload's task failed: {e}")))?;
    Ok(match parsed {
        (Ok(p), records) => Ok((p, records)),
        (Err(refusal), _) => Err(refusal),
    })
}

/// The decoded bytes of every picture [`pictures_to_store`] lists, in its order,
/// taken out of their objects.
fn take_pictures(objects: &mut [Object]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for o in objects.iter_mut().filter(|o| o.event.is_ok()) {
        out.extend(o.pictures.iter_mut().filter_map(|p| p.bytes.take()));
    }
    out
}

/// An object key and the bytes to put there.
type Put = (String, Bytes);

/// The id of `bytes` stored in `community` as `what` with an event of `ts_ms`, and
/// where they go.
fn put_of(what: Blob, community: &str, ts_ms: i64, bytes: Bytes) -> (String, Put) {
    let id = BlobId::of(community, ts_ms, &bytes);
    (id.to_string(), (id.key(what), bytes))
}

/// Each key of `blobs` once (the first), in order: an upload may name the same
/// bytes twice (`/VIID/Images` gives every object the image's picture), and two
/// create-only puts of one key at once could fail the losing one.
fn distinct(blobs: Vec<Put>) -> Vec<Put> {
    let mut seen = std::collections::HashSet::new();
    blobs
        .into_iter()
        .filter(|(key, _)| seen.insert(key.clone()))
        .collect()
}

/// Puts `blobs` on object storage, create-only, [`PUTS_AT_ONCE`] at a time, each key
/// once.
async fn put_all(objects: &Objects, blobs: Vec<Put>) -> Result<(), ApiError> {
    let mut blobs = distinct(blobs).into_iter().peekable();
    while blobs.peek().is_some() {
        let mut puts = tokio::task::JoinSet::new();
        for (key, bytes) in blobs.by_ref().take(PUTS_AT_ONCE) {
            let objects = objects.clone();
            puts.spawn(async move { objects.put_create(&key, bytes).await });
        }
        while let Some(done) = puts.join_next().await {
            done.map_err(|e| ApiError::internal(format!("a picture's upload failed: {e}")))?
                .map_err(|e| ApiError::StorageUnavailable(format!("object storage: {e}")))?;
        }
    }
    Ok(())
}

/// What an upload's objects put on object storage, hashed: their notes, the pictures'
/// puts (the decoded bytes moved out, listed in their objects first), the objects'
/// puts as uploaded (naming their pictures), and each object's id.
type Staged = (Vec<Option<String>>, Vec<Put>, Vec<Put>, Vec<Option<String>>);

fn stage(objects: &mut [Object]) -> Staged {
    let notes = stored_notes(objects);
    let blobs: Vec<BlobId> = pictures_to_store(objects)
        .into_iter()
        .map(|(e, bytes)| BlobId::of(&e.community, e.ts_ms, bytes))
        .collect();
    list_pictures(objects, blobs.iter().map(BlobId::to_string));
    // The decoded bytes moved out (listed already), not copied.
    let pictures: Vec<Put> = take_pictures(objects)
        .into_iter()
        .zip(&blobs)
        .map(|(bytes, id)| (id.key(Blob::Picture), Bytes::from(bytes)))
        .collect();
    let mut uploaded = Vec::new();
    let ids: Vec<Option<String>> = uploaded_texts(objects)
        .into_iter()
        .map(|t| {
            t.map(|(e, text)| {
                let (id, put) = put_of(Blob::Object, &e.community, e.ts_ms, Bytes::from(text));
                uploaded.push(put);
                id
            })
        })
        .collect();
    (notes, pictures, uploaded, ids)
}

/// Whether an event of `ts_ms` may be kept at `now_ms`: within the validation's time
/// bounds, and of a day the pictures' retention keeps (from `first_kept`, `YYYYMMDD`).
fn judge_time(
    ts_ms: i64,
    now_ms: i64,
    first_kept: Option<&str>,
) -> Result<(), sightline_storage::ValidationError> {
    Validator::default().check_ts(ts_ms, now_ms)?;
    let day = sightline_cluster::gat1400::local_day(ts_ms);
    match first_kept {
        Some(first) if day.as_str() < first => Err(sightline_storage::ValidationError::new(
            "ts",
            format!(
                "{ts_ms} is of day {day}, before the first day whose pictures are kept \
                 ({first}): older than the retention"
            ),
        )),
        _ => Ok(()),
    }
}

/// Stores the objects' pictures, then the objects as uploaded (naming their pictures),
/// then publishes their events; each object's status code and text, in order. Nothing
/// is published unless every picture and object is on object storage.
async fn keep(
    node: &GatNode,
    mut objects: Vec<Object>,
    now_ms: i64,
) -> Result<Vec<(i64, String)>, ApiError> {
    // Refused before anything is put: an object whose time the validation refuses
    // (a `PassTime` in year 9999 would leave pictures under a day no sweep reaches),
    // or whose day the pictures' retention has passed (its pictures would be deleted
    // at the next sweep after it was acknowledged: refused, as `serve`'s store
    // refuses an event older than its retention). The others go on.
    let first_kept = node.first_kept_day(now_ms);
    for (i, o) in objects.iter_mut().enumerate() {
        if let Err(why) = o
            .event
            .as_ref()
            .map(|e| judge_time(e.ts_ms, now_ms, first_kept.as_deref()))
            .unwrap_or(Ok(()))
        {
            o.event = Err(RecordError::new(i, why.field, why.reason));
        }
    }
    // Hashing the pictures and objects (up to a 64 MiB body's) is CPU work: off the
    // connections' threads, as the parsing was.
    let staged = tokio::task::spawn_blocking(move || {
        let staged = stage(&mut objects);
        (objects, staged)
    })
    .await
    .map_err(|e| ApiError::internal(format!("the upload's task failed: {e}")))?;
    let (mut objects, (notes, pictures, uploaded, ids)) = staged;
    put_all(&node.objects, pictures).await?;
    put_all(&node.objects, uploaded).await?;
    name_uploaded(&mut objects, ids);
    // Validated as `POST /v1/events` validates on this node.
    let validator = Validator::default();
    let mut valid: Vec<Event> = Vec::new();
    let fates: Vec<Result<usize, RecordError>> = objects
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let input = o.event?;
            let event = validator
                .validate(input, now_ms)
                .map_err(|v| RecordError::new(i, v.field, v.reason))?;
            valid.push(event);
            Ok(valid.len() - 1)
        })
        .collect();
    if !valid.is_empty() {
        // Published and their alerts raised as `POST /v1/events` does
        // (`super::alerting`).
        node.alerting.publish(&node.publisher, valid).await?;
    }
    Ok(fates
        .iter()
        .enumerate()
        .map(|(i, fate)| match fate {
            Ok(_) => stored_status(&notes[i]),
            Err(e) => refused_status(e),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory(codes: &[&str], read_ago: Duration) -> Directory {
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let now = Instant::now();
        let d = Directory::default();
        let credentials: Vec<_> = codes
            .iter()
            .map(|c| crate::gat1400::credential(c, c, "pw"))
            .collect();
        *d.set.write().unwrap() = Some(Loaded {
            userhashes: UserHashes::of(&credentials),
            credentials: codes
                .iter()
                .map(|c| (c.to_string(), crate::gat1400::credential(c, c, "pw")))
                .collect(),
            registrations: ["a", "b"]
                .iter()
                .map(|c| (c.to_string(), (ip, now)))
                .collect(),
            at: now.checked_sub(read_ago).unwrap(),
            devices: Arc::default(),
            relays: HashMap::new(),
            relays_unreadable: Vec::new(),
            retention_days: None,
            communities: Arc::default(),
            uppers: vec![sightline_cluster::upstreams::LiveUpper {
                id: "up-1".into(),
                server_id: "32050000005030000099".into(),
                device_id: "32050800005030000077".into(),
                scope: None,
                addresses: vec!["10.0.0.9".into()],
            }],
        });
        d
    }

    #[test]
    fn an_upper_is_let_in_by_its_exact_id_from_its_address_only() {
        let d = directory(&["a"], Duration::ZERO);
        let (upper, at) = ("32050000005030000099", "10.0.0.9".parse().ok());
        assert!(d.upper(upper, at).is_some());
        let mapped: Option<IpAddr> = "::ffff:10.0.0.9".parse().ok();
        assert!(d.upper(upper, mapped).is_some(), "an IPv4-mapped peer");
        assert!(
            d.upper(upper, "10.0.0.1".parse().ok()).is_none(),
            "another address"
        );
        assert!(d.upper(upper, None).is_none(), "no address");
        assert!(d.upper("32050000005030000098", at).is_none(), "another id");
        assert_eq!(
            d.upper_named(upper).map(|u| u.device_id).as_deref(),
            Some("32050800005030000077")
        );
        let stale = directory(&["a"], super::super::keys::MAX_AGE + Duration::from_secs(1));
        assert!(stale.upper(upper, at).is_none(), "a set read too long ago");
    }

    #[test]
    fn an_upper_two_upstreams_name_is_not_let_in_under_either() {
        let d = directory(&["a"], Duration::ZERO);
        let (upper, at) = ("32050000005030000099", "10.0.0.9".parse().ok());
        {
            let mut set = d.set.write().unwrap();
            let l = set.as_mut().unwrap();
            // Another owner's upstream naming the same upper, from an address of its
            // choosing, with a narrower scope.
            l.uppers.push(sightline_cluster::upstreams::LiveUpper {
                id: "up-2".into(),
                server_id: upper.into(),
                device_id: "32050800005030000078".into(),
                scope: Some(vec!["a".into()]),
                addresses: vec!["10.0.0.66".into()],
            });
        }
        assert!(d.upper(upper, at).is_none(), "the first upstream's address");
        assert!(d.upper(upper, "10.0.0.66".parse().ok()).is_none());
        assert!(d.upper_named(upper).is_none());
        assert!(d.upper_communities(upper).is_none());
    }

    #[test]
    fn the_same_key_is_put_once_per_upload() {
        let put = |k: &str, b: &'static [u8]| (k.to_string(), Bytes::from_static(b));
        let blobs = vec![
            put("a", b"1"),
            put("b", b"2"),
            put("a", b"1"),
            put("a", b"1"),
        ];
        let keys: Vec<String> = distinct(blobs).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"]);
    }

    /// Item 1 of the conformance audit: credentials never read, or read longer ago than
    /// `MAX_AGE`, are the node's failure — 503 with `Retry-After`, no challenge — not a
    /// 401 a camera would answer forever.
    #[test]
    fn credentials_never_read_or_too_old_are_503_not_a_new_challenge() {
        let gateway = Gateway::signed([3; 32]);
        let nonce = sightline_testkit::gat1400::nonce_in(&gateway.challenge(false).remove(0));
        let x = Exchange {
            method: "POST".into(),
            path: "/VIID/System/Register".into(),
            query: None,
            origin: None,
            authorization: Some(format!(
                "Digest username=\"a\", realm=\"Sightline\", nonce=\"{nonce}\", \
                 uri=\"/VIID/System/Register\", qop=auth, nc=00000001, cnonce=\"c\", response=\"0\""
            )),
            user_identify: None,
            body: Bytes::new(),
            raw: Bytes::new(),
            now_ms: crate::now_ms(),
            pre_authorized: None,
            peer: None,
        };
        let never = Directory::default();
        let old = directory(&["a"], super::super::keys::MAX_AGE + Duration::from_secs(1));
        for d in [&never, &old] {
            let why = gateway
                .check_digest(
                    d,
                    "POST",
                    &x.target(),
                    x.authorization.as_deref(),
                    None,
                    b"",
                )
                .unwrap_err();
            assert!(matches!(why, DigestError::Unavailable(_)), "{why}");
            let r = response(refused(&gateway, &x, &why));
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(r.headers()["retry-after"], "1");
            assert!(r.headers().get("www-authenticate").is_none());
        }
        // A fresh set: the wrong response is the caller's, 401 with both challenges.
        let fresh = directory(&["a"], Duration::ZERO);
        let why = gateway
            .check_digest(
                &fresh,
                "POST",
                &x.target(),
                x.authorization.as_deref(),
                None,
                b"",
            )
            .unwrap_err();
        let r = response(refused(&gateway, &x, &why));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers().get_all("www-authenticate").iter().count(), 2);
    }

    #[test]
    fn a_registration_is_trusted_only_with_its_credential_in_a_fresh_set() {
        let ip = Some("10.0.0.1".parse().unwrap());
        let d = directory(&["a"], Duration::ZERO);
        assert!(d.knows("a", ip).is_some());
        assert!(d.knows("a", None).is_none(), "another address");
        assert!(d.knows("b", ip).is_none(), "its login was removed");
        assert!(!d.has_credential("random"), "never asked of PostgreSQL");
        d.note("b", ip, Instant::now());
        assert!(d.knows("b", ip).is_none(), "noted, still without a login");
        let old = directory(&["a"], super::super::keys::MAX_AGE + Duration::from_secs(1));
        assert!(old.knows("a", ip).is_none(), "a set too old to say");
        assert!(!old.has_credential("a"));
    }
}
