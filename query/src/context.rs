//! What every query reads: the store, its index, and name resolution.

use std::collections::HashMap;
use std::sync::Arc;

use compact_str::CompactString;

use sightline_index::StoreIndex;
use sightline_storage::{Dictionaries, Direction, Kind, Row, Store};

use crate::error::{QueryError, Result};

/// The store and its index, with the bounds queries enforce.
#[derive(Clone, Copy)]
pub struct QueryContext<'a> {
    pub store: &'a Store,
    pub index: &'a StoreIndex,
    /// The communities (dictionary ids, sorted) this query may see; all when `None`.
    /// A scoped query answers exactly as the same query would over a store holding
    /// only those communities' events: it never sees, counts or infers others.
    pub scope: Option<&'a [u32]>,
    /// Longest time range a query may cover, in days. Default 400.
    pub max_range_days: i64,
    /// When set, a query still running at this instant stops (between shards, passes
    /// or subjects) with [`QueryError::DeadlineExceeded`], freeing its thread.
    pub deadline: Option<std::time::Instant>,
    /// Most of a subject's events a trajectory decodes and sorts at once: the events
    /// of runs that overlap in time (in practice, of one day), when there are at most
    /// this many; more are merged a chunk of each run at a time (slower, in bounded
    /// memory). Sorting holds ~150 bytes an event. Default [`TRAJECTORY_SORT_MAX`].
    pub trajectory_sort_max: usize,
}

/// Default [`QueryContext::trajectory_sort_max`]: ~600 KiB while a group is sorted; a
/// heavy vehicle's day holds a few hundred events.
pub const TRAJECTORY_SORT_MAX: usize = 4_096;

/// One event as queries return it, with names resolved. Community and device codes
/// (10 and 20 digits) are held inline, so a page copies them without a shared count
/// to touch per event; the subject, which can be long, is shared (`Arc`): a page of
/// thousands of sightings holds each distinct subject once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    /// The event's id (store sequence number).
    pub seq: u64,
    pub ts_ms: i64,
    pub community: CompactString,
    pub device: CompactString,
    pub kind: Kind,
    pub subject: Arc<str>,
    pub direction: Direction,
}

impl<'a> QueryContext<'a> {
    pub fn new(store: &'a Store, index: &'a StoreIndex) -> QueryContext<'a> {
        QueryContext {
            store,
            index,
            scope: None,
            max_range_days: 400,
            deadline: None,
            trajectory_sort_max: TRAJECTORY_SORT_MAX,
        }
    }

    /// The same context, limited to `communities` (dictionary ids, sorted ascending).
    pub fn scoped(self, communities: &'a [u32]) -> QueryContext<'a> {
        QueryContext {
            scope: Some(communities),
            ..self
        }
    }

    /// The same context, stopping queries still running at `deadline`.
    pub fn with_deadline(self, deadline: std::time::Instant) -> QueryContext<'a> {
        QueryContext {
            deadline: Some(deadline),
            ..self
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline
            .is_some_and(|d| std::time::Instant::now() >= d)
    }

    /// An error if the query is past its deadline; called between units of work.
    pub(crate) fn check_deadline(&self) -> Result<()> {
        match self.past_deadline() {
            true => Err(QueryError::DeadlineExceeded),
            false => Ok(()),
        }
    }

    /// [`Store::scan_range`] that stops at the deadline.
    pub(crate) fn scan_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
        f: impl FnMut(Row),
    ) -> Result<()> {
        match self.store.scan_range_unless(
            from_ms,
            to_ms,
            communities,
            || self.past_deadline(),
            f,
        )? {
            true => Ok(()),
            false => Err(QueryError::DeadlineExceeded),
        }
    }

    /// `communities` (all when `None`) limited to the scope.
    pub(crate) fn restrict(&self, communities: Option<&[u32]>) -> Option<Vec<u32>> {
        match (self.scope, communities) {
            (None, c) => c.map(<[u32]>::to_vec),
            (Some(s), None) => Some(s.to_vec()),
            (Some(s), Some(c)) => Some(c.iter().copied().filter(|x| s.contains(x)).collect()),
        }
    }

    /// The communities a query names (all when `None`), as ids within the scope.
    pub(crate) fn communities(&self, codes: Option<&[String]>) -> Option<Vec<u32>> {
        match codes {
            Some(c) => Some(self.community_ids(c)),
            None => self.restrict(None),
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
        let mut ids: Vec<u32> = codes
            .iter()
            .filter_map(|c| d.community_id(c))
            .filter(|c| self.scope.is_none_or(|s| s.contains(c)))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Local (UTC + the store's offset) day number and millisecond of day of `ts_ms`.
    pub(crate) fn local(&self, ts_ms: i64) -> (i64, i64) {
        let t = ts_ms + self.store.layout().tz_offset_ms;
        (t.div_euclid(crate::DAY_MS), t.rem_euclid(crate::DAY_MS))
    }

    /// The shards holding `subject` in `[from_ms, to_ms)`, in `communities` (all when
    /// `None`) within the scope: only these are read for the subject's rows.
    fn subject_keys(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Result<Vec<sightline_storage::ShardKey>> {
        let communities = self.restrict(communities);
        Ok(self
            .index
            .view()
            .subject_shards(subject, from_ms, to_ms, communities.as_deref())?)
    }

    /// Rows of `subject` in `[from_ms, to_ms)`, optionally only in `communities`,
    /// through the index: only shards holding the subject are read.
    pub(crate) fn subject_rows(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Result<Vec<Row>> {
        let keys = self.subject_keys(subject, from_ms, to_ms, communities)?;
        let mut rows = Vec::new();
        self.store
            .scan_subject(keys, subject, from_ms, to_ms, |r| rows.push(r))?;
        Ok(rows)
    }

    /// The subject's events in `[from_ms, to_ms)`, optionally only in `communities`,
    /// as runs ([`Store::subject_runs`]: per segment or memory part, or per device),
    /// through the index.
    pub(crate) fn subject_runs(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Result<Vec<sightline_storage::SubjectRun>> {
        let keys = self.subject_keys(subject, from_ms, to_ms, communities)?;
        let runs = self.store.subject_runs(keys, subject, from_ms, to_ms)?;
        // Finding the runs opens and checks each segment on its first read: a unit of
        // work of its own.
        self.check_deadline()?;
        Ok(runs)
    }

    /// Rows of `device` in `[from_ms, to_ms)` in every community it reports to.
    pub(crate) fn device_rows(
        &self,
        device: u32,
        from_ms: i64,
        to_ms: i64,
        out: &mut Vec<Row>,
    ) -> Result<()> {
        let communities = self.index.view().device_communities(device);
        for community in communities
            .into_iter()
            .filter(|c| self.scope.is_none_or(|s| s.contains(c)))
        {
            out.extend(
                self.store
                    .scan_device_window(community, device, from_ms, to_ms)?,
            );
        }
        Ok(())
    }
}

/// Rows as sightings, names resolved (each distinct name allocated once).
pub fn sightings(store: &Store, rows: &[Row]) -> Vec<Sighting> {
    let dicts = store.dictionaries();
    Names { dicts: &dicts }.sightings(rows)
}

/// Resolves ids to names for results; built once per query under one dictionary lock.
pub(crate) struct Names<'d> {
    pub dicts: &'d Dictionaries,
}

impl Names<'_> {
    pub fn community(&self, id: u32) -> String {
        self.community_str(id).to_string()
    }
    pub fn community_str(&self, id: u32) -> &str {
        self.dicts.community(id).unwrap_or("?")
    }
    pub fn device(&self, id: u32) -> &str {
        self.dicts.device(id).unwrap_or("?")
    }
    pub fn subject(&self, id: u32) -> (Kind, &str) {
        self.dicts.subject(id).unwrap_or((Kind::Vehicle, "?"))
    }
    /// `rows` as sightings, each distinct name allocated once.
    pub fn sightings(&self, rows: &[Row]) -> Vec<Sighting> {
        let mut communities: HashMap<u32, CompactString> = HashMap::new();
        let mut devices: HashMap<u32, CompactString> = HashMap::new();
        let mut subjects: HashMap<u32, (Kind, Arc<str>)> = HashMap::new();
        rows.iter()
            .map(|r| {
                let (kind, subject) = subjects
                    .entry(r.subject)
                    .or_insert_with(|| {
                        let (k, s) = self.subject(r.subject);
                        (k, Arc::from(s))
                    })
                    .clone();
                Sighting {
                    seq: r.seq,
                    ts_ms: r.ts_ms,
                    community: communities
                        .entry(r.community)
                        .or_insert_with(|| {
                            CompactString::from(self.dicts.community(r.community).unwrap_or("?"))
                        })
                        .clone(),
                    device: devices
                        .entry(r.device)
                        .or_insert_with(|| CompactString::from(self.device(r.device)))
                        .clone(),
                    kind,
                    subject,
                    direction: r.direction,
                }
            })
            .collect()
    }
}

/// Sorts rows by (ts, device code, seq): the order every query result uses. Device
/// codes are compared once, to rank the few devices involved; rows sort on integers.
pub(crate) fn sort_rows(rows: &mut [Row], names: &Names<'_>) {
    sort_by_event_order(rows, |r| r, names)
}

/// Sorts items holding rows by the rows' (ts, device code, seq).
pub(crate) fn sort_by_event_order<T>(items: &mut [T], row: impl Fn(&T) -> &Row, names: &Names<'_>) {
    let mut devices: Vec<u32> = items.iter().map(|i| row(i).device).collect();
    devices.sort_unstable();
    devices.dedup();
    let mut by_code = devices.clone();
    by_code.sort_by_key(|&d| names.device(d));
    let mut rank = vec![0u32; devices.len()];
    for (r, d) in by_code.iter().enumerate() {
        let i = devices.binary_search(d).expect("collected above");
        rank[i] = r as u32;
    }
    let rank_of = |d: u32| rank[devices.binary_search(&d).expect("collected above")];
    items.sort_unstable_by_key(|i| {
        let r = row(i);
        (r.ts_ms, rank_of(r.device), r.seq)
    });
}
