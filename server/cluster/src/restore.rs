//! A partition's store rebuilt from what is committed: the dictionary-log chunks
//! (concatenated in order, checked to leave no gap) and the segments the catalog
//! lists, downloaded into a fresh directory through `sightline_storage::Restore`.

use std::path::Path;

use sightline_storage::{Restore, SegmentEntry, ShardKey, Store, StoreConfig};

use crate::error::{ClusterError, Result};
use crate::meta::{Committed, Meta, SegmentRow};
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
    // A commit's segments share its bundle, and rows in segment-id order keep a
    // bundle's together: each bundle is fetched once (the last one kept).
    let mut fetched: Option<(String, bytes::Bytes)> = None;
    for s in segments {
        let object = match &fetched {
            Some((key, bytes)) if *key == s.object_key => bytes.clone(),
            _ => {
                let bytes = objects.get(&s.object_key).await?;
                fetched = Some((s.object_key.clone(), bytes.clone()));
                bytes
            }
        };
        let bytes = segment_bytes(partition, s, object)?;
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

/// The file of segment row `s` out of its object: the row's range of a bundle, or
/// the whole object for a row committed before bundles.
fn segment_bytes(partition: u32, s: &SegmentRow, object: bytes::Bytes) -> Result<bytes::Bytes> {
    let Some((offset, len)) = s.object_range else {
        return Ok(object);
    };
    match offset.checked_add(len) {
        Some(end) if end <= object.len() as u64 => Ok(object.slice(offset as usize..end as usize)),
        _ => Err(ClusterError::Catalog {
            partition,
            reason: format!(
                "segment {} lies at {offset}+{len} in {}, which has {} bytes",
                s.segment_id,
                s.object_key,
                object.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(range: Option<(u64, u64)>) -> SegmentRow {
        SegmentRow {
            segment_id: 7,
            community: 1,
            span: 20_000,
            file: "segments/20000/1-7.seg".into(),
            events: 3,
            max_seq: 9,
            object_key: "p0/e1/bundle/5-7-3.segs".into(),
            object_range: range,
        }
    }

    #[test]
    fn a_segment_is_its_range_of_the_bundle_or_a_whole_older_object() {
        let object = bytes::Bytes::from_static(b"aaabbbbcc");
        assert_eq!(
            &segment_bytes(0, &row(Some((3, 4))), object.clone()).unwrap()[..],
            b"bbbb"
        );
        assert_eq!(
            &segment_bytes(0, &row(Some((7, 2))), object.clone()).unwrap()[..],
            b"cc"
        );
        assert_eq!(
            &segment_bytes(0, &row(None), object.clone()).unwrap()[..],
            b"aaabbbbcc"
        );
        for bad in [(7, 3), (10, 0), (u64::MAX, 2)] {
            let e = segment_bytes(0, &row(Some(bad)), object.clone()).unwrap_err();
            assert!(e.to_string().contains("p0/e1/bundle/5-7-3.segs"), "{e}");
        }
    }
}
