//! What every query reads: the store, its index, and name resolution.

use std::collections::HashMap;

use sightline_index::StoreIndex;
use sightline_storage::{Dictionaries, Direction, Kind, Row, Store};

use crate::error::{QueryError, Result};

/// The store and its index, with the bounds queries enforce.
#[derive(Clone, Copy)]
pub struct QueryContext<'a> {
    pub store: &'a Store,
    pub index: &'a StoreIndex,
    /// Longest time range a query may cover, in days. Default 400.
    pub max_range_days: i64,
}

/// One event as queries return it, with names resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The event's id (store sequence number).
    pub seq: u64,
    pub ts_ms: i64,
    pub community: String,
    pub device: String,
    pub kind: Kind,
    pub subject: String,
    pub direction: Direction,
}

impl<'a> QueryContext<'a> {
    pub fn new(store: &'a Store, index: &'a StoreIndex) -> QueryContext<'a> {
        QueryContext {
            store,
            index,
            max_range_days: 400,
        }
    }

    pub(crate) fn check_range(&self, from_ms: i64, to_ms: i64) -> Result<()> {
        crate::error::check_range(from_ms, to_ms, self.max_range_days)
    }

    /// The subject id of `(kind, raw)` after normalisation, if the store has seen it.
    pub(crate) fn subject_id(&self, kind: Kind, raw: &str) -> Result<Option<u32>> {
        let s = sightline_storage::normalize_subject(kind, raw);
        if s.is_empty() {
            return Err(QueryError::invalid("subject", "must not be empty"));
        }
        Ok(self.store.dictionaries().subject_id(kind, &s))
    }

    /// Community ids of `codes`; unknown codes are dropped (they hold no events).
    pub(crate) fn community_ids(&self, codes: &[String]) -> Vec<u32> {
        let d = self.store.dictionaries();
        let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Local (UTC + the store's offset) day number and millisecond of day of `ts_ms`.
    pub(crate) fn local(&self, ts_ms: i64) -> (i64, i64) {
        let t = ts_ms + self.store.layout().tz_offset_ms;
        (t.div_euclid(crate::DAY_MS), t.rem_euclid(crate::DAY_MS))
    }

    /// Rows of `subject` in `[from_ms, to_ms)`, optionally only in `communities`,
    /// through the index: only shards holding the subject are read.
    pub(crate) fn subject_rows(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Vec<Row> {
        let keys = self
            .index
            .view()
            .subject_shards(subject, from_ms, to_ms, communities);
        let mut rows = Vec::new();
        self.store
            .scan_subject(keys, subject, from_ms, to_ms, |r| rows.push(r));
        rows
    }

    /// Rows of `device` in `[from_ms, to_ms)` in every community it reports to.
    pub(crate) fn device_rows(&self, device: u32, from_ms: i64, to_ms: i64, out: &mut Vec<Row>) {
        for community in self.index.view().device_communities(device) {
            out.extend(
                self.store
                    .scan_device_window(community, device, from_ms, to_ms),
            );
        }
    }
}

/// Resolves ids to names for results; built once per query under one dictionary lock.
pub(crate) struct Names<'d> {
    pub dicts: &'d Dictionaries,
}

impl Names<'_> {
    pub fn community(&self, id: u32) -> String {
        self.dicts.community(id).unwrap_or("?").to_string()
    }
    pub fn device(&self, id: u32) -> &str {
        self.dicts.device(id).unwrap_or("?")
    }
    pub fn subject(&self, id: u32) -> (Kind, &str) {
        self.dicts.subject(id).unwrap_or((Kind::Vehicle, "?"))
    }
    pub fn sighting(&self, r: &Row) -> Sighting {
        let (kind, subject) = self.subject(r.subject);
        Sighting {
            seq: r.seq,
            ts_ms: r.ts_ms,
            community: self.community(r.community),
            device: self.device(r.device).to_string(),
            kind,
            subject: subject.to_string(),
            direction: r.direction,
        }
    }
}

/// Sorts rows by (ts, device code, seq): the order every query result uses.
pub(crate) fn sort_rows(rows: &mut [Row], names: &Names<'_>) {
    let mut codes: HashMap<u32, &str> = HashMap::new();
    for r in rows.iter() {
        codes
            .entry(r.device)
            .or_insert_with(|| names.device(r.device));
    }
    rows.sort_unstable_by(|a, b| {
        (a.ts_ms, codes[&a.device], a.seq).cmp(&(b.ts_ms, codes[&b.device], b.seq))
    });
}
