//! `GET /v1/images/{id}`: a picture's bytes, under the scope of the event it belongs
//! to (its shard's community), audited like every investigative read. A picture
//! outside the key's communities is answered like one that does not exist.

use hyper::body::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use sightline_storage::pictures::PictureId;

use crate::error::ApiError;
use crate::gat1400::pictures::content_type;
use crate::http::runner::{run, AuditLine};
use crate::http::{Answer, Body, Call};

/// `GET /v1/images/{id}`.
pub(crate) async fn get(c: Call) -> Result<Answer, ApiError> {
    let id = c.arg();
    let line = AuditLine::new(&c.caller, &c.path, c.query.clone());
    let scope = c.caller.communities.clone();
    let found = run(c.app.clone(), move |app| {
        let missing = || ApiError::NoSuchImage(id.chars().take(100).collect());
        let pid: PictureId = id.parse().map_err(|_| missing())?;
        if scope.is_some_and(|s| !s.contains(&pid.community)) {
            return Err(missing());
        }
        app.store.pictures().get(&pid)?.ok_or_else(missing)
    })
    .await;
    match &found {
        Ok(_) => line.record(&c.app, Some(1), 200)?,
        Err(e) => line.record(&c.app, None, e.status().as_u16())?,
    }
    let bytes = found?;
    let kind = content_type(&bytes).unwrap_or("application/octet-stream");
    // A picture never changes under its id.
    let headers = vec![(
        CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    )];
    Ok((
        StatusCode::OK,
        Body::Headed(headers, Box::new(Body::Binary(kind, Bytes::from(bytes)))),
    ))
}
