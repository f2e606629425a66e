//! Objects uploaded but never committed (an indexer killed or fenced between its
//! upload and its commit) are removed once older than an age far past any
//! upload-to-commit window, so an upload whose commit is still on its way is never
//! taken. The catalog is read after the listing: a key committed meanwhile is kept.

use crate::error::Result;
use crate::meta::Meta;
use crate::objects::Objects;

/// Removes objects no commit names that are older than `min_age_ms` at `now_ms`.
/// Returns the keys removed.
pub async fn sweep(
    meta: &Meta,
    objects: &Objects,
    now_ms: i64,
    min_age_ms: i64,
) -> Result<Vec<String>> {
    let listed = objects.list(None).await?;
    let committed = meta.committed_keys().await?;
    let mut removed = Vec::new();
    for o in listed {
        if committed.contains(&o.key) || now_ms - o.last_modified_ms < min_age_ms {
            continue;
        }
        objects.delete(&o.key).await?;
        tracing::info!(key = %o.key, "janitor removed an uncommitted object");
        removed.push(o.key);
    }
    Ok(removed)
}
