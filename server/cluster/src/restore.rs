//! A partition's store rebuilt from what is committed: the dictionary-log chunks
//! (concatenated in order, checked to leave no gap) and the segments the catalog
//! lists, downloaded into a fresh directory through `sightline_storage::Restore`.

use std::path::Path;

use sightline_storage::{Restore, SegmentEntry, ShardKey, Store, StoreConfig};

use crate::error::{ClusterError, Result};
use crate::meta::{Committed, Meta};
use crate::objects::Objects;

/// What a restore read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub segments: usize,
    pub events: u64,
    pub dict_bytes: u64,
}

/// Restores `partition` into `dir` (which must not hold a store) and opens it. The
/// catalog is read in two statements: for the lease holder, whose partition nobody
/// else commits to. A reader beside a live owner uses [`Meta::committed`] (one
/// snapshot) and [`restore_committed`].
pub async fn restore_partition(
    meta: &Meta,
    objects: &Objects,
    partition: u32,
    dir: &Path,
    config: StoreConfig,
) -> Result<(Store, Restored)> {
    let committed = Committed {
        checkpoint_seq: 0,
        dict_chunks: meta.dict_chunks(partition).await?,
        segments: meta.segments(partition).await?,
    };
    restore_committed(objects, partition, &committed, dir, config).await
}

/// Restores the committed state `committed` of `partition` into `dir` (which must not
/// hold a store) and opens it.
pub async fn restore_committed(
    objects: &Objects,
    partition: u32,
    committed: &Committed,
    dir: &Path,
    config: StoreConfig,
) -> Result<(Store, Restored)> {
    let chunks = &committed.dict_chunks;
    let mut dict = Vec::new();
    for c in chunks {
        if c.start != dict.len() as u64 {
            return Err(ClusterError::Catalog {
                partition,
                reason: format!(
                    "dictionary chunk {} starts at {}, the chunks before end at {}",
                    c.object_key,
                    c.start,
                    dict.len()
                ),
            });
        }
        let bytes = objects.get(&c.object_key).await?;
        if bytes.len() as u64 != c.len {
            return Err(ClusterError::Catalog {
                partition,
                reason: format!(
                    "{} has {} bytes, listed as {}",
                    c.object_key,
                    bytes.len(),
                    c.len
                ),
            });
        }
        dict.extend_from_slice(&bytes);
    }
    let segments = &committed.segments;
    let dir_owned = dir.to_path_buf();
    let cfg = config.clone();
    let mut restore = tokio::task::spawn_blocking(move || Restore::new(&dir_owned, &cfg, &dict))
        .await
        .expect("restore task panicked")?;
    let mut report = Restored {
        dict_bytes: chunks.iter().map(|c| c.len).sum(),
        ..Default::default()
    };
    for s in segments {
        let bytes = objects.get(&s.object_key).await?;
        let key = ShardKey {
            community: s.community,
            span: s.span,
        };
        let entry = SegmentEntry {
            id: s.segment_id,
            file: s.file.clone(),
            events: s.events,
        };
        restore = tokio::task::spawn_blocking(move || {
            restore.add_segment(key, entry, &bytes).map(|()| restore)
        })
        .await
        .expect("restore task panicked")?;
        report.segments += 1;
        report.events += u64::from(s.events);
    }
    let dir_owned = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || {
        restore.finish()?;
        Store::open(&dir_owned, config)
    })
    .await
    .expect("restore task panicked")?;
    Ok((store, report))
}
