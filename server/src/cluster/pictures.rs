//! `GET /v1/images/{id}` and `GET /v1/objects/{id}` on a query node: a picture of a
//! GA/T 1400 upload, or the object as uploaded (pictures by reference), read from
//! object storage where the ingest nodes put them (`sightline_cluster::gat1400`),
//! with `serve`'s semantics (`crate::images`): the id names its community, and one
//! outside the key's communities is answered as one that does not exist (404
//! `no_such_image` / `no_such_object`); the bytes as stored, their `Content-Type`
//! from their first bytes (`application/json` for an object), cached as immutable.
//! The bytes are checked against the SHA-256 their key names before they are served.
//! Audited by the query node's handler as every request is.

use std::sync::OnceLock;

use sightline_cluster::gat1400::{sha256_hex, Blob, BlobId};
use sightline_cluster::objects::Objects;
use sightline_cluster::ClusterConfig;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::gat1400::pictures::content_type;
use crate::http::Body;
use crate::images::immutable;

/// Whether a query node's `GET path` is one of these.
pub(super) fn answers(path: &str) -> bool {
    path.starts_with("/v1/images/") || path.starts_with("/v1/objects/")
}

/// The bucket, as this process's configuration names it (one client a process).
pub(super) fn objects(config: &ClusterConfig) -> Result<&'static Objects, ApiError> {
    static OBJECTS: OnceLock<Objects> = OnceLock::new();
    if let Some(o) = OBJECTS.get() {
        return Ok(o);
    }
    let made = Objects::new(&config.s3)
        .map_err(|e| ApiError::StorageUnavailable(format!("object storage: {e}")))?;
    Ok(OBJECTS.get_or_init(|| made))
}

/// The answer to `GET path` (a picture or an object) for `caller`, and its row count
/// for the audit entry.
pub(super) async fn get(
    config: &ClusterConfig,
    caller: &Caller,
    path: &str,
) -> Result<(Body, Option<usize>), ApiError> {
    let (what, id, missing): (Blob, &str, fn(String) -> ApiError) =
        match path.strip_prefix("/v1/images/") {
            Some(id) => (Blob::Picture, id, ApiError::NoSuchImage),
            None => (
                Blob::Object,
                path.strip_prefix("/v1/objects/").unwrap_or(""),
                ApiError::NoSuchObject,
            ),
        };
    let gone = || missing(id.chars().take(100).collect());
    let blob = BlobId::parse(id).ok_or_else(gone)?;
    if (caller.communities.as_ref()).is_some_and(|s| !s.contains(&blob.community)) {
        return Err(gone());
    }
    let key = blob.key(what);
    let bytes = objects(config)?
        .get_if_exists(&key)
        .await
        .map_err(|e| ApiError::StorageUnavailable(format!("object storage: {e}")))?
        .ok_or_else(gone)?;
    // Hashing up to a 16 MiB picture is CPU work: off the connections' threads.
    let (bytes, sha256) = tokio::task::spawn_blocking(move || {
        let sha256 = sha256_hex(&bytes);
        (bytes, sha256)
    })
    .await
    .map_err(|e| ApiError::internal(format!("hashing a picture failed: {e}")))?;
    if sha256 != blob.sha256 {
        return Err(ApiError::internal(format!(
            "object {key} does not hold the bytes its key names"
        )));
    }
    let kind = match what {
        Blob::Picture => content_type(&bytes).unwrap_or("application/octet-stream"),
        Blob::Object => "application/json",
    };
    let body = immutable(Body::Binary(kind, bytes));
    Ok((body, Some(1)))
}
