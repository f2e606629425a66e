//! `GET /v1/images/{id}` and `GET /v1/objects/{id}`: a picture's bytes, or a GA/T 1400
//! object as uploaded (pictures by reference), under the scope of the event they
//! belong to (their shard's community), audited like every investigative read. One
//! outside the key's communities is answered like one that does not exist.

use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use sightline_storage::pictures::{Fetched, PictureId};

use crate::error::ApiError;
use crate::gat1400::pictures::content_type;
use crate::http::runner::{run, AuditLine};
use crate::http::{Answer, Body, Call};

/// `GET /v1/images/{id}`: a picture (only pictures whose type their first bytes name
/// are stored: an object's JSON at that id is not one).
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    let bytes = stored(c, ApiError::NoSuchImage, |b| content_type(b).is_some()).await?;
    let kind = content_type(&bytes).unwrap_or("application/octet-stream");
    Ok((
        StatusCode::OK,
        immutable(Body::Binary(kind, Bytes::from(bytes))),
    ))
}

/// `GET /v1/objects/{id}`: an object as uploaded (JSON, an object: a picture at that id
/// is not one).
pub(crate) async fn object(c: Call) -> Result<Answer, ApiError> {
    let bytes = stored(c, ApiError::NoSuchObject, is_object).await?;
    Ok((
        StatusCode::OK,
        immutable(Body::Binary("application/json", Bytes::from(bytes))),
    ))
}

/// Whether stored bytes are an object as uploaded: JSON text of an object (what
/// `serde_json::to_vec` of one writes), never a picture (JPEG, PNG and BMP start
/// otherwise).
fn is_object(bytes: &[u8]) -> bool {
    bytes.first() == Some(&b'{')
}

/// A stored blob the caller's scope covers and that is of the kind asked for (`kind`:
/// pictures and objects share a shard's pack, so an id of one is refused as the other),
/// audited, or `missing`. Served on the
/// connection's task when it is all in memory (most reads: pictures are read soon after
/// they are written), else from the blocking pool: a busy pool (uploads decoding and
/// fsyncing) adds its queueing to a read only when a disk read is due anyway.
async fn stored(
    c: Call,
    missing: fn(String) -> ApiError,
    kind: fn(&[u8]) -> bool,
) -> Result<Vec<u8>, ApiError> {
    let id = c.arg();
    let line = AuditLine::new(&c.caller, &c.path, c.query.clone());
    let named: String = id.chars().take(100).collect();
    let gone = move || missing(named.clone());
    let found = async {
        let pid: PictureId = id.parse().map_err(|_| gone())?;
        if (c.caller.communities.as_ref()).is_some_and(|s| !s.contains(&pid.community)) {
            return Err(gone());
        }
        match c.app.store.pictures().get_cached(&pid)? {
            Fetched::Found(bytes) => Ok(bytes),
            Fetched::Missing => Err(gone()),
            Fetched::NotInMemory => {
                let gone = gone.clone();
                run(c.app.clone(), move |app| {
                    app.store.pictures().get(&pid)?.ok_or_else(gone)
                })
                .await
            }
        }
    }
    .await
    .and_then(|bytes| match kind(&bytes) {
        true => Ok(bytes),
        false => Err(gone()),
    });
    match &found {
        Ok(_) => line.record(&c.app, Some(1), 200)?,
        Err(e) => line.record(&c.app, None, e.status().as_u16())?,
    }
    found
}

/// A body that never changes under its id (a cluster query node's pictures too).
pub(crate) fn immutable(body: Body) -> Body {
    let headers = vec![(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    )];
    Body::Headed(headers, Box::new(body))
}
