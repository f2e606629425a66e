//! `check`: verifies a store offline — every segment's checksums and every event's
//! attributes read back, every WAL and
//! dictionary-log record's checksum, the dictionary snapshot against the log, every
//! picture's checksum, and that the manifest's
//! segments exist — without
//! changing anything (no torn tail truncated, no orphan removed).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::catalog::{Catalog, SledCatalog};
use crate::error::{Result, StorageError};
use crate::log_file::read_records;
use crate::segment::Segment;

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub segments: usize,
    pub segment_events: u64,
    pub wal_files: usize,
    pub wal_records: u64,
    pub dict_records: u64,
    /// Torn tails (crash mid-write): recovery drops them; not damage.
    pub torn_tails: Vec<PathBuf>,
    /// Files on disk the manifest does not list (left by a crash; recovery removes them).
    pub orphans: Vec<PathBuf>,
    /// Pictures read and checked in the picture packs.
    pub pictures: usize,
    /// Damage, each naming its file (and offset where known).
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the store in `dir`. Fails only if the store cannot be examined at all (for
/// example, another process has it open); damage is listed in the report.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let lock_path = dir.join("LOCK");
    if !lock_path.exists() {
        return Err(StorageError::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a Sightline store (no LOCK file)",
            ),
        ));
    }
    let _lock = super::lock_store(dir, false)?;
    let mut report = CheckReport::default();

    // Segments the manifest lists.
    let catalog = SledCatalog::open(&dir.join("catalog"))?;
    let mut listed = HashSet::new();
    for (key, state) in catalog.manifest()?.shards {
        for entry in &state.segments {
            let path = dir.join(&entry.file);
            listed.insert(path.clone());
            match Segment::open(&path) {
                Ok(seg) => {
                    report.segments += 1;
                    report.segment_events += seg.meta().events as u64;
                    // Every byte's checksum (opening verifies only the small parts),
                    // then every event's attributes read back from their columns.
                    if let Err(e) = seg.verify().and_then(|()| seg.verify_attrs()) {
                        report.problems.push(e.to_string());
                    }
                    // The shard, events and facts the manifest lists for it.
                    if let Err(e) = super::sealed::check_entry(&seg, key, entry) {
                        report.problems.push(e.to_string());
                    }
                }
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
    let segments_dir = dir.join("segments");
    if segments_dir.exists() {
        for span in fs::read_dir(&segments_dir).map_err(|e| StorageError::io(&segments_dir, e))? {
            let span = span.map_err(|e| StorageError::io(&segments_dir, e))?.path();
            if !span.is_dir() {
                continue;
            }
            for f in fs::read_dir(&span).map_err(|e| StorageError::io(&span, e))? {
                let f = f.map_err(|e| StorageError::io(&span, e))?.path();
                if !listed.contains(&f) {
                    report.orphans.push(f);
                }
            }
        }
    }

    // Logs: every record's checksum; a torn tail only at the end of the newest file.
    let mut logs: Vec<(PathBuf, bool)> = Vec::new();
    let wal = wal_files(dir)?;
    report.wal_files = wal.len();
    let n = wal.len();
    logs.extend(wal.into_iter().enumerate().map(|(i, p)| (p, i + 1 == n)));
    let dict = dir.join("dict.log");
    if dict.exists() {
        logs.push((dict.clone(), true));
    }
    let mut dict_bytes = None;
    for (path, newest) in logs {
        let bytes = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        let mut records = 0u64;
        match read_records(&bytes, &path, newest, |_, _| {
            records += 1;
            Ok(())
        }) {
            Ok(outcome) => {
                if outcome.torn.is_some() {
                    report.torn_tails.push(path.clone());
                }
            }
            Err(e) => report.problems.push(e.to_string()),
        }
        if path == dict {
            report.dict_records += records;
            dict_bytes = Some(bytes);
        } else {
            report.wal_records += records;
        }
    }

    // What opening would refuse in the dictionary log beyond checksums: a bad last
    // record below a length a snapshot proves durable (damage, not a torn tail), or
    // fewer entries than the catalog recorded before WAL files were removed.
    if let Some(bytes) = dict_bytes {
        let recorded = crate::dict::recorded_counts(&catalog)?;
        let refused = crate::dict::check_log(&dict, &bytes, recorded);
        if !refused.is_empty() {
            report.torn_tails.retain(|p| p != &dict);
        }
        report.problems.extend(refused);
    }

    // The dictionary snapshot: whole, and the same entries as the log it covers.
    if let Some(problem) = crate::dict::check_snapshot(&dict) {
        report.problems.push(problem);
    }

    // Picture packs: every picture's checksum.
    let io = crate::io::os();
    let (pictures, damaged) = crate::pictures::verify(&dir.join(super::PICTURES_DIR), io.as_ref())?;
    report.pictures = pictures;
    report
        .problems
        .extend(damaged.iter().map(|e| e.to_string()));
    Ok(report)
}

/// Calls `f` with every event the store in `dir` holds, as opening it would find
/// them, without changing anything: the rows of every segment the manifest lists,
/// then the WAL's events past what their shard has sealed (`layout` places them in
/// shards; a torn tail ends a file). For checks of what is derived from the events
/// (`sightline check` verifies the index checkpoint with it). Damage is an error
/// naming the file; call [`check`] first for the full list.
pub fn check_rows(
    dir: &Path,
    layout: crate::SpanLayout,
    f: &mut dyn FnMut(crate::Row),
) -> Result<()> {
    let _lock = super::lock_store(dir, false)?;
    let catalog = SledCatalog::open(&dir.join("catalog"))?;
    let manifest = catalog.manifest()?;
    for state in manifest.shards.values() {
        for entry in &state.segments {
            let seg = Segment::open(&dir.join(&entry.file))?;
            seg.verify_rows()?;
            seg.for_each_in_seq_range(0, u64::MAX, |_, r| f(r));
        }
    }
    let wal = wal_files(dir)?;
    let n = wal.len();
    for (i, path) in wal.into_iter().enumerate() {
        let bytes = fs::read(&path).map_err(|e| StorageError::io(&path, e))?;
        read_records(&bytes, &path, i + 1 == n, |off, payload| {
            let (first_seq, events) = crate::wal::decode_batch(payload)
                .map_err(|r| StorageError::corrupt(&path, off, r))?;
            for (j, e) in events.into_iter().enumerate() {
                let seq = first_seq + j as u64;
                let key = crate::ShardKey {
                    community: e.community,
                    span: layout.span_of(e.ts_ms),
                };
                let sealed = manifest
                    .shards
                    .get(&key)
                    .map_or(0, |s| s.sealed_through_seq);
                if seq <= sealed {
                    continue;
                }
                let (kind, direction) = crate::row::kd_unpack(e.kd);
                f(crate::Row {
                    seq,
                    ts_ms: e.ts_ms,
                    community: e.community,
                    device: e.device,
                    subject: e.subject,
                    kind,
                    direction,
                });
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The WAL files of the store in `dir`, oldest first (none when there is no `wal/`).
fn wal_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let wal_dir = dir.join("wal");
    if !wal_dir.exists() {
        return Ok(Vec::new());
    }
    let mut wal: Vec<PathBuf> = fs::read_dir(&wal_dir)
        .map_err(|e| StorageError::io(&wal_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    wal.sort();
    Ok(wal)
}
