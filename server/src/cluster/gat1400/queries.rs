//! GA/T 1400.4 object queries on an ingest node: `GET
//! /VIID/MotorVehicles|Faces|Persons|NonMotorVehicles?<conditions>` (a page and
//! `TotalNum`) and `GET /VIID/<resource>/{id}` (one object), answered by `serve`'s
//! code (`crate::gat1400::query`: the same conditions, paging, bodies, status objects
//! and audit entries) over the cluster's partitions instead of one store:
//!
//! * **Admission** as `serve`'s (`handlers::query_objects`): within the gateway's
//!   slots and the caller's share of them, proven before the body by a digest or a
//!   registered `User-Identify`, and then as a query's caller ([`querying`]: a digest
//!   on the query itself, else a `User-Identify` registered from this very address
//!   and still online — never from any address, never through a proxy; neither is
//!   answered 401 with a challenge); the caller must be a device of kind `platform`
//!   (else 403).
//! * **Scope**: the communities the caller's record covers — its own and those its
//!   relays map to — over the tables as this node last read them (`Directory`).
//! * **Selection**: [`Federation::objects`] over the cluster's partitions, each a
//!   `RemotePartition` through the node's partition directory (the one
//!   `/VIID/Subscribes` uses: PostgreSQL's leases and query members; no other node
//!   in between), only the partitions placed to hold the scope's communities, ties
//!   in time by cluster id; at most `OBJECT_QUERIES` at once (429 with a status
//!   object beyond), each within `query.timeout_ms` (503 with a status object past
//!   it, and when a partition has nobody to answer it: never a partial page).
//! * **Objects**: each event's object as uploaded, read from object storage (at most
//!   [`GETS_AT_ONCE`] at once, within the query's deadline; an S3 error is 503), its
//!   pictures by `StoragePath` at `query.public_url` (else the query listener's
//!   address) + `/v1/images/{id}`, which any query node serves with an API key — as
//!   `serve`'s point at its own `/v1/images/{id}`.
//! * **Audit**: every query, answered or refused after admission, is an entry
//!   (`gat1400:<code>`, params `proof=digest|registration&peer=<address>` and the
//!   query string) of this ingest node's own hash-chained audit log
//!   (`ingest.audit_dir`); an entry that cannot be written answers 503 and nothing.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::Request;
use serde_json::Value;
use sightline_cluster::gat1400::{sha256_hex, Blob, BlobId};
use sightline_cluster::objects::Objects;
use sightline_query::federated::{Call, Federation, Partition};
use sightline_query::ObjectQuery;

use super::{authorized_early, caller_share, early, read_body, Admitted, GatNode};
use crate::audit::AuditLog;
use crate::error::ApiError;
use crate::gat1400::handlers::{
    device_error, identified, not_a_platform, refused, through_proxy, unauthorized, Exchange,
    Reply, SYSTEM_BODY_BYTES, THROUGH_A_PROXY,
};
use crate::gat1400::query::{object_query_slot, resource_of, Objects as Source, Proof, Querier};
use crate::gat1400::BUSY;
use crate::http::out::EventOut;
use crate::subscriptions::deliver::{object_of, Host, Pictures, Stored};

/// Objects as uploaded read from object storage at once for one page.
pub(super) const GETS_AT_ONCE: usize = 16;

/// Whether an ingest node's `method path` is an object query.
pub(super) fn takes(method: &str, path: &str) -> bool {
    matches!(method, "GET" | "HEAD") && allowed(path).is_some()
}

/// The methods an object query's path takes (a list's path takes uploads too).
pub(super) fn allowed(path: &str) -> Option<&'static str> {
    match resource_of(path)? {
        (_, None) => Some("GET, HEAD, POST"),
        (_, Some(id)) if !id.contains('/') => Some("GET, HEAD"),
        _ => None,
    }
}

/// Answers an object query (its path one [`takes`]).
pub(super) async fn handle(node: &GatNode, req: Request<Incoming>, mut x: Exchange) -> Reply {
    let (admitted, caller) = match admit(node, req, &mut x).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal,
    };
    let source = ClusterObjects {
        federation: node.federation().await,
        scope: node.directory.covered(&caller.code),
        timeout: Duration::from_millis(node.config.query.timeout_ms),
        running: node.object_queries.clone(),
        objects: node.objects.clone(),
        rt: tokio::runtime::Handle::current(),
        base: public_base(node),
        server_id: node.config.ingest.viid_server_id.clone(),
        face_subject: node.config.ingest.gat1400_face_subject.clone(),
        audit: node.audit.clone(),
    };
    let x = Arc::new(x);
    let asked = x.clone();
    // The federation asks partitions from threads of its own and waits on them; the
    // audit log writes a file: off the connections' threads.
    let done = tokio::task::spawn_blocking(move || {
        let _admitted = admitted;
        match resource_of(&asked.path) {
            Some((_, None)) => crate::gat1400::query::list(&source, &asked, &caller),
            _ => crate::gat1400::query::one(&source, &asked, &caller),
        }
    })
    .await;
    done.unwrap_or_else(|e| {
        device_error(
            &x,
            &ApiError::internal(format!("the GA/T 1400 query task failed: {e}")),
        )
    })
}

/// Admits an object query as `serve`'s `query_objects` does: a slot, proven before
/// the body (a digest, or a registered `User-Identify`), the caller's share, the
/// body; then its caller as a query's ([`querying`], `serve`'s `querying_platform`),
/// and a platform. Else the refusal to answer.
async fn admit(
    node: &GatNode,
    req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<(Admitted, Querier), Reply> {
    let Ok(slot) = node.slots.clone().try_acquire_owned() else {
        return Err(early(x, ApiError::Busy("the GA/T 1400 gateway"), BUSY));
    };
    match authorized_early(node, x).await {
        Ok(id) => x.pre_authorized = id,
        Err(why) => return Err(refused(&node.gateway, x, &why)),
    }
    let share = caller_share(node, x)?;
    let proxied = through_proxy(req.headers());
    let held = read_body(req, x, SYSTEM_BODY_BYTES, Some(&node.bytes)).await?;
    let querier = querying(node, x, proxied).await?;
    if node
        .directory
        .device(&querier.code)
        .is_none_or(|d| d.device_kind != "platform")
    {
        return Err(not_a_platform(x));
    }
    let admitted = Admitted {
        _slot: slot,
        _share: share,
        _held: held,
    };
    Ok((admitted, querier))
}

/// The caller of an object query, renewed, and how it was proven (`serve`'s
/// `querying_platform`): proven before the body by a digest in its headers, else by a
/// digest on the query, else by its registration — a `User-Identify` registered from
/// this very address and still online (`GatNode::is_registered`; never from any
/// address), and not through a proxy (`proxied`: a request carrying `Forwarded`,
/// `X-Forwarded-For` or `X-Real-IP` is answered on a digest only). Else the 401 to
/// answer.
async fn querying(node: &GatNode, x: &Exchange, proxied: bool) -> Result<Querier, Reply> {
    if let Some(id) = &x.pre_authorized {
        node.proven(id, x.peer).await;
        return Ok(Querier {
            code: id.clone(),
            proof: Proof::Digest,
        });
    }
    let identity = identified(x);
    let mut refusal = None;
    if x.authorization
        .as_deref()
        .is_some_and(|h| !h.trim().is_empty())
    {
        match node.check(x, identity.as_deref(), &x.raw).await {
            Ok(code) => {
                node.proven(&code, x.peer).await;
                return Ok(Querier {
                    code,
                    proof: Proof::Digest,
                });
            }
            // A digest that does not verify leaves the caller judged as without one.
            Err(why) => refusal = Some(why),
        }
    }
    match identity {
        Some(code) if !proxied && node.is_registered(&code, x.peer).await => {
            node.renew(&code, x.peer, false);
            Ok(Querier {
                code,
                proof: Proof::Registration,
            })
        }
        _ => Err(match refusal {
            Some(why) => refused(&node.gateway, x, &why),
            None if proxied => unauthorized(&node.gateway, x, THROUGH_A_PROXY),
            None => unauthorized(
                &node.gateway,
                x,
                "not registered: POST /VIID/System/Register first",
            ),
        }),
    }
}

/// Where receivers fetch the pictures an answer names: `query.public_url`, else the
/// query listener's address (as a query node's deliveries name them).
fn public_base(node: &GatNode) -> String {
    let tls = node
        .config
        .tls
        .as_ref()
        .is_some_and(|t| t.serves(sightline_cluster::tls::PublicListener::Query));
    let scheme = if tls { "https" } else { "http" };
    node.config
        .query
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}", node.config.query.listen))
}

/// The cluster as `serve`'s object query code sees it.
struct ClusterObjects {
    federation: Federation<'static>,
    /// The caller's communities (codes).
    scope: Vec<String>,
    /// Each selection's time limit (`query.timeout_ms`).
    timeout: Duration,
    /// Object queries running on this node, at most `OBJECT_QUERIES`.
    running: Arc<AtomicUsize>,
    objects: Objects,
    rt: tokio::runtime::Handle,
    base: String,
    server_id: String,
    face_subject: String,
    audit: Arc<AuditLog>,
}

impl Source for ClusterObjects {
    fn face_subject(&self) -> &str {
        &self.face_subject
    }

    fn select(
        &self,
        x: &Exchange,
        _caller: &str,
        q: &ObjectQuery,
    ) -> Result<(u64, Vec<Value>), ApiError> {
        let _slot = object_query_slot(&self.running)?;
        let deadline = Instant::now() + self.timeout;
        let call = Call {
            scope: Some(self.scope.clone()),
            deadline: Some(deadline),
        };
        let found = self.federation.objects(&call, q).map_err(|e| {
            // The detail (which partition, which node's address) stays in the log: a
            // platform outside is told only that the cluster did not answer.
            let e = ApiError::from(e);
            match e {
                ApiError::QueryTimeout(_) => e,
                e if e.status() == hyper::StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::warn!(error = %e, "an object query's partitions did not answer");
                    ApiError::StorageUnavailable(
                        "the cluster's partitions did not all answer; ask again".into(),
                    )
                }
                e => e,
            }
        })?;
        let events = found
            .events
            .iter()
            .map(|(s, a)| serde_json::to_value(EventOut::decoded(s, a)))
            .collect::<Result<Vec<Value>, _>>()
            .map_err(|e| ApiError::internal(format!("an event does not serialize: {e}")))?;
        let ids: Vec<String> = events
            .iter()
            .filter_map(|e| e["object"].as_str()?.strip_prefix("/v1/objects/"))
            .map(str::to_string)
            .collect();
        let kept = self.rt.block_on(kept_objects(
            &self.objects,
            &self.scope,
            ids,
            deadline,
            self.timeout,
        ))?;
        let host = Kept {
            base: self.base.clone(),
            server_id: self.server_id.clone(),
            kept,
        };
        let out = events
            .iter()
            .filter_map(|e| object_of(&host, e, x.now_ms, Pictures::Reference, &self.base))
            .map(|(_, _, o)| o)
            .collect();
        Ok((found.total, out))
    }

    fn audit(&self) -> &AuditLog {
        &self.audit
    }
}

/// The objects as uploaded with these ids (`BlobId`s) in `scope`, read from object
/// storage [`GETS_AT_ONCE`] at a time by `deadline`: id → bytes, for those that are
/// there and hold the bytes their key names (another is built from its event, as on
/// `serve`). An object storage error or the deadline fails the whole.
async fn kept_objects(
    objects: &Objects,
    scope: &[String],
    ids: Vec<String>,
    deadline: Instant,
    timeout: Duration,
) -> Result<HashMap<String, Vec<u8>>, ApiError> {
    let mut wanted: Vec<(String, BlobId)> = ids
        .into_iter()
        .filter_map(|id| BlobId::parse(&id).map(|b| (id, b)))
        .filter(|(_, b)| scope.contains(&b.community))
        .collect();
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    let read = async {
        let mut kept = HashMap::new();
        let mut wanted = wanted.into_iter().peekable();
        while wanted.peek().is_some() {
            let mut gets = tokio::task::JoinSet::new();
            for (id, blob) in wanted.by_ref().take(GETS_AT_ONCE) {
                let objects = objects.clone();
                gets.spawn(async move {
                    let got = objects.get_if_exists(&blob.key(Blob::Object)).await;
                    (id, blob, got)
                });
            }
            while let Some(done) = gets.join_next().await {
                let (id, blob, got) =
                    done.map_err(|e| ApiError::internal(format!("reading an object failed: {e}")))?;
                let got = got.map_err(|e| {
                    // The bucket, key and endpoint stay in the log.
                    tracing::warn!(error = %e, "an object query's stored object did not read");
                    ApiError::StorageUnavailable(
                        "the cluster's object storage did not answer; ask again".into(),
                    )
                })?;
                if let Some(bytes) = got.filter(|b| sha256_hex(b) == blob.sha256) {
                    kept.insert(id, bytes.to_vec());
                }
            }
        }
        Ok(kept)
    };
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, read)
        .await
        .unwrap_or(Err(ApiError::QueryTimeout(Some(timeout))))
}

/// The objects of a page as read ([`kept_objects`]), for `serve`'s `object_of`.
struct Kept {
    base: String,
    server_id: String,
    kept: HashMap<String, Vec<u8>>,
}

impl Host for Kept {
    fn public_base(&self) -> String {
        self.base.clone()
    }
    fn viid_server_id(&self) -> &str {
        &self.server_id
    }
    fn stored(&self, what: Stored, id: &str) -> Option<Vec<u8>> {
        match what {
            Stored::Object => self.kept.get(id).cloned(),
            // Pictures go by reference: never read here.
            Stored::Picture => None,
        }
    }
}

impl GatNode {
    /// The cluster's partitions, through this node's partition directory (read
    /// from PostgreSQL by a task of its own once first asked for).
    pub(super) async fn federation(&self) -> Federation<'static> {
        let directory = self
            .partition_directory
            .get_or_init(|| crate::cluster::remote::Directory::start(&self.config, None))
            .await
            .clone();
        Federation::new(
            (0..self.partitions)
                .map(|id| {
                    Box::new(crate::cluster::remote::RemotePartition {
                        id,
                        directory: directory.clone(),
                    }) as Box<dyn Partition>
                })
                .collect(),
        )
    }
}
