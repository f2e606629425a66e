//! The read path. Every scan first takes a consistent snapshot of the shards it needs
//! (segment handles, frozen rows, matching in-memory rows) under a short read lock,
//! then reads sealed columns straight from the memory maps with no lock held. A sealed
//! segment is mapped by the first read that needs it ([`SealedSegment::open`]); a
//! file that cannot be opened is an error naming it, returned by that read.

use std::sync::Arc;

use crate::error::{Result, StorageError};
use crate::event::Event;
use crate::memtable::{MemRows, StoredRow};
use crate::row::Row;
use crate::segment::Segment;
use crate::shard::ShardKey;

use super::{read, SealedSegment, Shard, Store};

/// A stored event with its id, strings resolved and attributes decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub seq: u64,
    pub event: Event,
}

/// A summary of one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardInfo {
    pub key: ShardKey,
    pub segments: usize,
    pub sealed_events: u64,
    pub sealed_bytes: u64,
    pub memory_events: usize,
}

/// Where one event's attributes are: decode them with [`AttrsAt::decode`].
#[derive(Clone, Debug)]
pub enum AttrsAt {
    /// In a sealed segment, at this ordinal.
    Segment(Arc<Segment>, u32),
    /// In the memory part, encoded (shared with it, not copied).
    Memory(Arc<[u8]>),
}

impl AttrsAt {
    /// The encoded attributes, for [`crate::visit_attrs`] (rebuilt from a segment's
    /// columns, or borrowed); damage is an error naming the segment file.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'_, [u8]>> {
        match self {
            AttrsAt::Segment(seg, ordinal) => seg.attr_bytes(*ordinal),
            AttrsAt::Memory(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
        }
    }

    /// The attributes handed to `f` key by key, in the order of their encoding
    /// ([`crate::visit_attrs`]'s), without building the encoding when they are in a
    /// segment's columns; `scratch` is reused across events. Damage is an error naming
    /// the segment file (or "(memory)"); `f` may have seen the pairs before the damage
    /// (a memory part's or a version 1 file's encoding is walked as it is read), so a
    /// caller discards what it wrote for the event.
    pub fn visit(
        &self,
        scratch: &mut crate::RowScratch,
        mut f: impl FnMut(&str, crate::AttrRef<'_>),
    ) -> Result<()> {
        self.visit_out(scratch, |k, v| f(k, v.to_ref()))
    }

    /// [`AttrsAt::visit`] with digit strings known to be ASCII digits (GA/T 1400 ids
    /// in a format 4 segment) handed over as their bytes ([`crate::AttrOut::Digits`]):
    /// for writers of JSON, which copy them without checking or escaping them.
    pub fn visit_out(
        &self,
        scratch: &mut crate::RowScratch,
        mut f: impl FnMut(&str, crate::AttrOut<'_>),
    ) -> Result<()> {
        match self {
            AttrsAt::Segment(seg, ordinal) => seg.visit_attrs_out(*ordinal, scratch, f),
            AttrsAt::Memory(bytes) => {
                crate::attr_codec::visit_attrs(bytes, |k, v| f(k, crate::AttrOut::Value(v)))
                    .map_err(|reason| StorageError::Corrupt {
                        path: "(memory)".into(),
                        offset: 0,
                        reason,
                    })
            }
        }
    }

    /// Asks the CPU to start loading the segment's fields (reads nothing): the first
    /// of three steps. A caller about to read many events' attributes calls this some
    /// events ahead of [`AttrsAt::prefetch_place`], that some events ahead of
    /// [`AttrsAt::prefetch`], and that some events ahead of the read: each step reads
    /// what the one before asked for, so the events' cache misses overlap (a hint: no
    /// result depends on it).
    #[inline]
    pub fn prefetch_segment(&self) {
        if let AttrsAt::Segment(seg, _) = self {
            crate::prefetch::value(&**seg);
        }
    }

    /// Asks for where these attributes' chunk is named (reads the segment's fields).
    #[inline]
    pub fn prefetch_place(&self) {
        if let AttrsAt::Segment(seg, ordinal) = self {
            seg.prefetch_attr_place(*ordinal);
        }
    }

    /// Asks for these attributes' chunk (reads where it is; see
    /// [`AttrsAt::prefetch_segment`]).
    #[inline]
    pub fn prefetch(&self) {
        if let AttrsAt::Segment(seg, ordinal) = self {
            seg.prefetch_attrs(*ordinal);
        }
    }

    pub fn decode(&self) -> Result<crate::Attrs> {
        match self {
            AttrsAt::Segment(seg, ordinal) => seg.attrs(*ordinal),
            AttrsAt::Memory(bytes) => {
                crate::attr_codec::decode_attrs(bytes).map_err(|reason| StorageError::Corrupt {
                    path: "(memory)".into(),
                    offset: 0,
                    reason,
                })
            }
        }
    }
}

/// Most events a run of several devices' events holds ([`Store::subject_runs`]): a
/// segment's (or a shard's memory part's) events of a subject are one run when there
/// are at most this many, read in one walk and told apart by device as they are
/// decoded; more are one run per device, read a chunk at a time. (A trajectory that
/// sorts a group of runs whole decodes its runs whole: up to its `trajectory_sort_max`
/// events.)
pub const SUBJECT_RUN_WHOLE_MAX: usize = 512;

/// How many segments apart [`Store::subject_runs`]'s steps of asking for what a
/// subject's search reads are: the handle 4 × this ahead, the segment 3 ×, its
/// samples 2 ×, the stretch it searches 1 ×.
const PREFETCH_SEGMENTS: usize = 2;

/// Events of one subject in one segment or one shard's memory part: one device's in
/// (ts, seq) order, or (at most [`SUBJECT_RUN_WHOLE_MAX`]) several devices' in
/// (device, ts, seq) order; read one at a time or a chunk at a time. A time-ordered
/// answer merges these instead of collecting and sorting every row: see
/// [`Store::subject_runs`].
pub struct SubjectRun {
    community: u32,
    /// The one device whose events these are; `None` when several.
    device: Option<u32>,
    /// A time at or before every event of the run …
    lower_ms: i64,
    /// … and one at or after every event.
    upper_ms: i64,
    at: usize,
    end: usize,
    source: RunSource,
}

enum RunSource {
    /// Posting indices `at..end` of the segment, with the block of the last row read.
    Segment(Arc<Segment>, usize),
    /// Positions `at..end` of the subject's in-memory rows of the query (copied: the
    /// memory part is small and changes), sorted by (device, ts, seq).
    Memory(Arc<Vec<(Row, Arc<[u8]>)>>),
}

impl SubjectRun {
    /// The one device whose events these are; `None` when the run holds several
    /// devices' events (at most [`SUBJECT_RUN_WHOLE_MAX`], in (device, ts, seq) order:
    /// each row says its device).
    pub fn device(&self) -> Option<u32> {
        self.device
    }

    /// The one community (shard) whose events these are.
    pub fn community(&self) -> u32 {
        self.community
    }

    /// Events not yet passed.
    pub fn remaining(&self) -> usize {
        self.end - self.at
    }

    /// The current event, `None` once every event is passed.
    pub fn row(&mut self) -> Option<Row> {
        if self.at >= self.end {
            return None;
        }
        Some(match &mut self.source {
            RunSource::Segment(seg, block) => seg.posting_row(self.at, block).1,
            RunSource::Memory(rows) => rows[self.at].0,
        })
    }

    /// Where the current event's attributes are (`None` once every event is passed).
    pub fn attrs(&self) -> Option<AttrsAt> {
        if self.at >= self.end {
            return None;
        }
        Some(match &self.source {
            RunSource::Segment(seg, _) => {
                AttrsAt::Segment(seg.clone(), seg.posting_ordinal(self.at))
            }
            RunSource::Memory(rows) => AttrsAt::Memory(rows[self.at].1.clone()),
        })
    }

    /// Asks for what reading the run's next event first reads of its segment's
    /// block directory ([`Segment::prefetch_posting_entry`]); nothing for a memory
    /// run. The first of two steps: a reader about to drain several runs calls this
    /// for each, then [`SubjectRun::prefetch_row`] for each, so that the runs' misses
    /// overlap (a hint: no result depends on it).
    #[inline]
    pub fn prefetch_entry(&self) {
        if let (RunSource::Segment(seg, _), true) = (&self.source, self.at < self.end) {
            seg.prefetch_posting_entry(self.at);
        }
    }

    /// Asks for the run's next event's lines in its block (the second step; see
    /// [`SubjectRun::prefetch_entry`]).
    #[inline]
    pub fn prefetch_row(&self) {
        if let (RunSource::Segment(seg, _), true) = (&self.source, self.at < self.end) {
            seg.prefetch_posting_row(self.at);
        }
    }

    /// Moves to the next event.
    pub fn advance(&mut self) {
        self.at = (self.at + 1).min(self.end);
    }

    /// The next `max` events (fewer at the run's end), in order, appended to `out` as
    /// (row, position), the subject's being `subject` (the run's own), and passed. A
    /// sealed run is decoded in one walk over its blocks ([`Segment::posting_rows`]),
    /// far cheaper than [`SubjectRun::row`] event by event. A run of several devices
    /// is in (device, ts, seq) order: a time-ordered reader takes it whole. [`SubjectRun::attrs_of`]
    /// turns a position into where that event's attributes are. A damaged posting
    /// list (ordinals out of order or past the segment's events) is
    /// [`StorageError::Corrupt`] naming the segment file.
    pub fn drain(&mut self, subject: u32, max: usize, out: &mut Vec<(Row, u32)>) -> Result<()> {
        let end = self.end.min(self.at.saturating_add(max));
        match &self.source {
            RunSource::Segment(seg, _) => seg.posting_rows(self.at..end, subject, out)?,
            RunSource::Memory(rows) => out.extend((self.at..end).map(|i| (rows[i].0, i as u32))),
        }
        self.at = end;
        Ok(())
    }

    /// A time at or before the run's events, known without decoding them (its
    /// segment's earliest event; the earliest of its memory rows), for a merge that
    /// decodes runs only when it reaches them.
    pub fn ts_lower_bound(&self) -> i64 {
        self.lower_ms
    }

    /// A time at or after the run's events, known without decoding them (its
    /// segment's latest event; the latest of its memory rows): runs whose bounds do
    /// not overlap hold no events to interleave.
    pub fn ts_upper_bound(&self) -> i64 {
        self.upper_ms
    }

    /// Where the attributes are of the event [`SubjectRun::drain`] gave at `position`.
    pub fn attrs_of(&self, position: u32) -> AttrsAt {
        match &self.source {
            RunSource::Segment(seg, _) => AttrsAt::Segment(seg.clone(), position),
            RunSource::Memory(rows) => AttrsAt::Memory(rows[position as usize].1.clone()),
        }
    }
}

/// Looks shards up by key in a map, for keys that (mostly) ascend: each look-up
/// steps on from the last one's place in the map (most keys of a subject's shards
/// follow one another there) instead of searching the map again; a key below the last
/// one, or a few entries ahead, is searched for.
struct ShardWalk<'m, V> {
    map: &'m std::collections::BTreeMap<ShardKey, V>,
    /// Where the walk is: every entry before it is below `last`.
    at: std::iter::Peekable<std::collections::btree_map::Range<'m, ShardKey, V>>,
    /// The key looked up last; `None` before the first.
    last: Option<ShardKey>,
}

impl<'m, V> ShardWalk<'m, V> {
    /// Entries stepped over before a look-up searches the map instead.
    const MAX_STEPS: usize = 4;

    fn new(map: &'m std::collections::BTreeMap<ShardKey, V>) -> Self {
        ShardWalk {
            map,
            at: map.range(..).peekable(),
            last: None,
        }
    }

    /// The entry of `key`, as [`std::collections::BTreeMap::get`] gives it.
    fn get(&mut self, key: ShardKey) -> Option<&'m V> {
        if self.last.is_none_or(|last| last >= key) {
            self.at = self.map.range(key..).peekable();
        }
        self.last = Some(key);
        let mut steps = 0;
        loop {
            // Every entry before `at` is below `key`.
            let &(k, v) = self.at.peek()?;
            match k.cmp(&key) {
                std::cmp::Ordering::Equal => {
                    self.at.next();
                    return Some(v);
                }
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Less if steps < Self::MAX_STEPS => {
                    self.at.next();
                    steps += 1;
                }
                std::cmp::Ordering::Less => {
                    self.at = self.map.range(key..).peekable();
                    steps = 0;
                }
            }
        }
    }
}

/// The parts of one shard a scan reads.
struct ShardSnapshot {
    key: ShardKey,
    segments: Vec<Arc<SealedSegment>>,
    frozen: Option<Arc<MemRows>>,
    /// Matching in-memory rows, copied as plain rows (no allocation per row) …
    mem: Vec<Row>,
    /// … and their encoded attributes, only when the reader asked for them.
    mem_attrs: Vec<Arc<[u8]>>,
}

impl ShardSnapshot {
    fn take(
        key: ShardKey,
        shard: &Shard,
        keep: impl Fn(&StoredRow) -> bool,
        with_attrs: bool,
    ) -> ShardSnapshot {
        let mut mem = Vec::new();
        let mut mem_attrs = Vec::new();
        for r in shard.mem.rows().filter(|r| keep(r)) {
            mem.push(r.row(key.community));
            if with_attrs {
                mem_attrs.push(r.attrs.clone());
            }
        }
        ShardSnapshot {
            key,
            segments: shard.segments.clone(),
            frozen: shard.frozen.clone(),
            mem,
            mem_attrs,
        }
    }

    /// Rows in memory (frozen and active) that pass `keep`, with their encoded
    /// attributes (empty unless the snapshot was taken with them).
    fn mem_rows<'a>(
        &'a self,
        keep: impl Fn(&StoredRow) -> bool + 'a,
    ) -> impl Iterator<Item = (Row, Option<&'a Arc<[u8]>>)> + 'a {
        let community = self.key.community;
        let frozen = self
            .frozen
            .iter()
            .flat_map(|f| f.rows())
            .filter(move |r| keep(r))
            .map(move |r| (r.row(community), Some(&r.attrs)));
        let mem = self
            .mem
            .iter()
            .enumerate()
            .map(|(i, r)| (*r, self.mem_attrs.get(i)));
        frozen.chain(mem)
    }
}

impl Store {
    /// Snapshots the shards of `communities` (all when `None`) whose spans meet
    /// `[from_ms, to_ms)`, copying only in-memory rows that pass `keep`.
    fn snapshot(
        &self,
        communities: Option<&[u32]>,
        from_ms: i64,
        to_ms: i64,
        keep: impl Fn(&StoredRow) -> bool,
        with_attrs: bool,
    ) -> Vec<ShardSnapshot> {
        if from_ms >= to_ms {
            return Vec::new();
        }
        let spans = self.inner.layout.span_of(from_ms)..=self.inner.layout.span_of(to_ms - 1);
        let shards = read(&self.inner.shards);
        let mut out = Vec::new();
        let mut take_community = |c: u32| {
            let lo = ShardKey {
                community: c,
                span: *spans.start(),
            };
            let hi = ShardKey {
                community: c,
                span: *spans.end(),
            };
            for (key, shard) in shards.range(lo..=hi) {
                out.push(ShardSnapshot::take(*key, shard, &keep, with_attrs));
            }
        };
        match communities {
            Some(cs) => cs.iter().copied().for_each(&mut take_community),
            None => {
                let mut all: Vec<u32> = shards.keys().map(|k| k.community).collect();
                all.dedup();
                all.into_iter().for_each(take_community);
            }
        }
        out
    }

    /// Calls `f` for every event with `from_ms <= ts < to_ms` in the given communities
    /// (dictionary ids; all when `None`). Order: shard by shard; within a shard each
    /// sealed segment in (device, ts) order, then unsealed events in commit order.
    /// A segment whose rows fail verification (on their first read) is
    /// [`StorageError::Corrupt`] naming it, after the rows before it were given.
    pub fn scan_range(
        &self,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
        f: impl FnMut(Row),
    ) -> Result<()> {
        self.scan_range_unless(from_ms, to_ms, communities, || false, f)
            .map(drop)
    }

    /// [`Store::scan_range`] that asks `stop` before each shard and ends early when it
    /// says so (a query past its deadline). Returns false if it stopped early.
    pub fn scan_range_unless(
        &self,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
        stop: impl Fn() -> bool,
        mut f: impl FnMut(Row),
    ) -> Result<bool> {
        let in_range = |r: &StoredRow| r.ts_ms >= from_ms && r.ts_ms < to_ms;
        for snap in self.snapshot(communities, from_ms, to_ms, in_range, false) {
            if stop() {
                return Ok(false);
            }
            for seg in &snap.segments {
                let seg = seg.open()?;
                seg.verify_rows()?;
                seg.for_each_in_range(from_ms, to_ms, |_, r| f(r));
            }
            for (r, _) in snap.mem_rows(in_range) {
                f(r);
            }
        }
        Ok(true)
    }

    /// [`Store::scan_range_unless`] handing each event that passes `keep` with where its
    /// attributes are (nothing is decoded here: a caller decodes those it filters on).
    /// Rows `keep` refuses cost what a plain scan's do. Returns false if `stop` ended it
    /// early.
    pub fn scan_range_with_attrs_unless(
        &self,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
        stop: impl Fn() -> bool,
        keep: impl Fn(&Row) -> bool,
        mut f: impl FnMut(Row, AttrsAt),
    ) -> Result<bool> {
        let in_range = |r: &StoredRow| r.ts_ms >= from_ms && r.ts_ms < to_ms;
        for snap in self.snapshot(communities, from_ms, to_ms, in_range, true) {
            if stop() {
                return Ok(false);
            }
            for seg in &snap.segments {
                let seg = seg.open()?;
                seg.verify_rows()?;
                seg.for_each_in_range(from_ms, to_ms, |ordinal, r| {
                    if keep(&r) {
                        f(r, AttrsAt::Segment(seg.clone(), ordinal));
                    }
                });
            }
            for (r, attrs) in snap.mem_rows(in_range) {
                if keep(&r) {
                    let attrs = attrs.cloned().unwrap_or_else(|| Arc::from(&[][..]));
                    f(r, AttrsAt::Memory(attrs));
                }
            }
        }
        Ok(true)
    }

    /// Events of subject id `subject` with `from_ms <= ts < to_ms` in the shards
    /// `keys` (missing shards are skipped). Sealed segments are read through their
    /// subject postings, so the cost follows the subject's own events. Order: shard by
    /// shard as given; within a shard unspecified.
    pub fn scan_subject(
        &self,
        keys: impl IntoIterator<Item = ShardKey>,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        mut f: impl FnMut(Row),
    ) -> Result<()> {
        let mut rows = Vec::new();
        for mut run in self.subject_runs(keys, subject, from_ms, to_ms)? {
            while run.remaining() > 0 {
                rows.clear();
                run.drain(subject, SUBJECT_RUN_WHOLE_MAX, &mut rows)?;
                rows.iter().for_each(|&(r, _)| f(r));
            }
        }
        Ok(())
    }

    /// The events of `subject` in `keys` with `from_ms <= ts < to_ms` as runs, shard by
    /// shard as given: a segment's (or memory part's) events of the subject are one
    /// run in (device, ts, seq) order when they are at most [`SUBJECT_RUN_WHOLE_MAX`]
    /// (and, for a segment, it lies inside the range: one search finds them), else
    /// one run per device in (ts, seq) order ([`SubjectRun::device`] says which).
    /// Sealed events are found by binary search and read when the caller gets to
    /// them; only the subject's in-memory events are copied, under a short read lock.
    /// Each segment's rows are verified first (once: [`Segment::verify_rows`]).
    pub fn subject_runs(
        &self,
        keys: impl IntoIterator<Item = ShardKey>,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<SubjectRun>> {
        if from_ms >= to_ms {
            return Ok(Vec::new());
        }
        let keep = |r: &&StoredRow| r.ts_ms >= from_ms && r.ts_ms < to_ms;
        // By shard: where its segments are in `segments` and its in-memory events in
        // `memory` (one list of each for all the shards, not one per shard).
        let mut memory: Vec<(Row, Arc<[u8]>)> = Vec::new();
        let mut segments: Vec<Arc<SealedSegment>> = Vec::new();
        let mut shards_read: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
        {
            let shards = read(&self.inner.shards);
            let mut walk = ShardWalk::new(&shards);
            for (k, s) in keys.into_iter().filter_map(|k| walk.get(k).map(|s| (k, s))) {
                let start = memory.len();
                let frozen = s.frozen.iter().flat_map(|f| f.of_subject(subject));
                memory.extend(
                    frozen
                        .chain(s.mem.of_subject(subject))
                        .filter(keep)
                        .map(|r| (r.row(k.community), r.attrs.clone())),
                );
                let first = segments.len();
                segments.extend(s.segments.iter().cloned());
                shards_read.push((first..segments.len(), start..memory.len()));
            }
        }
        for (_, part) in &shards_read {
            memory[part.clone()].sort_unstable_by_key(|(r, _)| (r.device, r.ts_ms, r.seq));
        }
        let memory = Arc::new(memory);
        // Most shards hold one segment with the subject at a gate's two devices.
        let mut runs = Vec::with_capacity(2 * shards_read.len());
        let mut found = Vec::new();
        for (in_shard, part) in shards_read {
            for j in in_shard {
                // The segments ahead asked for in steps, each reading what the step
                // before asked for (a hint: see `Segment::prefetch_samples`).
                let ahead = |k: usize| segments.get(j + k * PREFETCH_SEGMENTS);
                let open = |k: usize| ahead(k).and_then(|s| s.if_open());
                if let Some(s) = ahead(4) {
                    crate::prefetch::value(&**s);
                }
                if let Some(seg) = open(3) {
                    crate::prefetch::value(seg);
                }
                if let Some(seg) = open(2) {
                    seg.prefetch_samples();
                }
                if let Some(seg) = open(1) {
                    seg.prefetch_subject(subject);
                }
                let seg = segments[j].open()?;
                seg.verify_rows()?;
                found.clear();
                seg.subject_runs_into(subject, from_ms, to_ms, SUBJECT_RUN_WHOLE_MAX, &mut found);
                for (_, postings) in &found {
                    seg.prefetch_postings(postings.clone());
                }
                let m = seg.meta();
                let (community, lower_ms, upper_ms) = (m.community, m.min_ts_ms, m.max_ts_ms);
                let run = |device, postings: std::ops::Range<usize>, seg| SubjectRun {
                    community,
                    device,
                    lower_ms,
                    upper_ms,
                    at: postings.start,
                    end: postings.end,
                    source: RunSource::Segment(seg, 0),
                };
                // The last run takes the handle (most segments give one run): no count
                // to touch for it.
                let last = found.pop();
                for (device, postings) in found.drain(..) {
                    runs.push(run(device, postings, seg.clone()));
                }
                if let Some((device, postings)) = last {
                    runs.push(run(device, postings, seg));
                }
            }
            let rows = &memory[part.clone()];
            let run_of = |at: usize, rows: &[(Row, Arc<[u8]>)]| {
                let (first, last) = (&rows[0].0, &rows[rows.len() - 1].0);
                SubjectRun {
                    community: first.community,
                    // Sorted by device: one device when the first and last share it.
                    device: (first.device == last.device).then_some(first.device),
                    lower_ms: rows.iter().map(|r| r.0.ts_ms).min().unwrap_or(i64::MAX),
                    upper_ms: rows.iter().map(|r| r.0.ts_ms).max().unwrap_or(i64::MIN),
                    at,
                    end: at + rows.len(),
                    source: RunSource::Memory(memory.clone()),
                }
            };
            match rows.len() {
                0 => {}
                n if n <= SUBJECT_RUN_WHOLE_MAX => runs.push(run_of(part.start, rows)),
                _ => {
                    let mut at = part.start;
                    for rows in rows.chunk_by(|a, b| a.0.device == b.0.device) {
                        runs.push(run_of(at, rows));
                        at += rows.len();
                    }
                }
            }
        }
        Ok(runs)
    }

    /// How many events of `subject` the shards `keys` hold with `from_ms <= ts < to_ms`,
    /// only those at one of `devices` if given. Sealed segments that lie inside the
    /// range are counted from their postings alone, without decoding rows.
    pub fn count_subject(
        &self,
        keys: impl IntoIterator<Item = ShardKey>,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        devices: Option<&[u32]>,
    ) -> Result<u64> {
        if from_ms >= to_ms {
            return Ok(0);
        }
        let at = |d: u32| devices.is_none_or(|ds| ds.contains(&d));
        let keep = |r: &StoredRow| {
            r.subject == subject && r.ts_ms >= from_ms && r.ts_ms < to_ms && at(r.device)
        };
        // Counting calls no user code and takes microseconds per shard, so it runs
        // under the read lock instead of copying a snapshot.
        let shards = read(&self.inner.shards);
        let mut n = 0u64;
        for key in keys {
            let Some(shard) = shards.get(&key) else {
                continue;
            };
            for seg in &shard.segments {
                let seg = seg.open()?;
                seg.verify_rows()?;
                let m = seg.meta();
                if m.min_ts_ms >= from_ms && m.max_ts_ms < to_ms {
                    n += seg.count_of_subject(subject, devices);
                } else {
                    seg.for_each_of_subject(subject, |_, r| {
                        n += u64::from(r.ts_ms >= from_ms && r.ts_ms < to_ms && at(r.device));
                    });
                }
            }
            let frozen = shard.frozen.iter().flat_map(|f| f.of_subject(subject));
            n += frozen.filter(|r| keep(r)).count() as u64;
            n += shard.mem.of_subject(subject).filter(|r| keep(r)).count() as u64;
        }
        Ok(n)
    }

    /// Every event of one shard, in the order of [`Store::scan_range`].
    pub fn scan_shard(&self, key: ShardKey, f: impl FnMut(Row)) -> Result<()> {
        let layout = self.inner.layout;
        self.scan_range(
            layout.start_ms(key.span),
            layout.end_ms(key.span),
            Some(&[key.community]),
            f,
        )
    }

    /// Events of one device of one community with `from_ms <= ts < to_ms`, ordered by
    /// (ts, seq). Sealed data is found by binary search on the (device, ts) sort order.
    pub fn scan_device_window(
        &self,
        community: u32,
        device: u32,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Row>> {
        let keep = |r: &StoredRow| r.device == device && r.ts_ms >= from_ms && r.ts_ms < to_ms;
        let mut out = Vec::new();
        for snap in self.snapshot(Some(&[community]), from_ms, to_ms, keep, false) {
            for seg in &snap.segments {
                let seg = seg.open()?;
                seg.verify_rows()?;
                seg.for_each_in_device_window(device, from_ms, to_ms, |_, r| out.push(r));
            }
            out.extend(snap.mem_rows(keep).map(|(r, _)| r));
        }
        out.sort_unstable_by_key(|r| (r.ts_ms, r.seq));
        Ok(out)
    }

    /// Full events (strings resolved, attributes decoded) with `from_ms <= ts < to_ms`,
    /// ordered by seq. For exports and tests; queries should scan [`Row`]s.
    pub fn read_events(
        &self,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Result<Vec<StoredEvent>> {
        let in_range = |r: &StoredRow| r.ts_ms >= from_ms && r.ts_ms < to_ms;
        let mut found: Vec<(Row, Vec<u8>)> = Vec::new();
        let mut err = None;
        for snap in self.snapshot(communities, from_ms, to_ms, in_range, true) {
            for seg in &snap.segments {
                let seg = seg.open()?;
                seg.verify_rows()?;
                seg.for_each_in_range(from_ms, to_ms, |ordinal, r| match seg.attrs(ordinal) {
                    Ok(a) => found.push((r, crate::attr_codec::encode_attrs(&a).into_vec())),
                    Err(e) => {
                        err.get_or_insert(e);
                    }
                });
            }
            for (r, attrs) in snap.mem_rows(in_range) {
                found.push((r, attrs.map_or_else(Vec::new, |a| a.to_vec())));
            }
        }
        if let Some(e) = err {
            return Err(e);
        }
        found.sort_unstable_by_key(|(r, _)| r.seq);
        let dicts = self.dictionaries();
        found
            .into_iter()
            .map(|(r, attrs)| {
                let missing = |what: &str| StorageError::Corrupt {
                    path: self.dir().join("dict.log"),
                    offset: 0,
                    reason: format!("{what} id of event {} is not in the dictionary", r.seq),
                };
                let device = dicts.device(r.device).ok_or_else(|| missing("device"))?;
                let (kind, subject) = dicts.subject(r.subject).ok_or_else(|| missing("subject"))?;
                Ok(StoredEvent {
                    seq: r.seq,
                    event: Event {
                        ts_ms: r.ts_ms,
                        community: dicts
                            .community(r.community)
                            .ok_or_else(|| missing("community"))?
                            .to_string(),
                        device: crate::DeviceCode::parse(device)
                            .map_err(|e| missing(&format!("device ({e})")))?,
                        kind,
                        subject: subject.to_string(),
                        direction: r.direction,
                        attrs: crate::attr_codec::visit_attrs(&attrs, |_, _| {})
                            .map(|()| Arc::from(attrs))
                            .map_err(|reason| StorageError::Corrupt {
                                path: self.dir().to_path_buf(),
                                offset: 0,
                                reason,
                            })?,
                    },
                })
            })
            .collect()
    }

    /// The highest sequence number whose event is readable: every stored event up to
    /// it can be read (events are applied in sequence order, a whole group at a time).
    pub fn applied_through(&self) -> u64 {
        self.inner
            .applied_through
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// What an index resuming from a checkpoint taken through `after` needs: calls `f`
    /// with every readable row with `after < seq <= through`, and returns, by shard,
    /// how many readable rows have `seq <= after` (shards with none are left out), so
    /// the checkpoint can be checked against the store. A segment whose sequence range
    /// ends at or before `after` is counted from its header and never read: the cost
    /// follows the shards and what was sealed or appended after the checkpoint, not
    /// the store's size.
    pub fn rows_after(
        &self,
        after: u64,
        through: u64,
        mut f: impl FnMut(Row),
    ) -> Result<std::collections::BTreeMap<ShardKey, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        // By shard: its segments, its memory rows up to `after` (counted) and after.
        struct Part {
            key: ShardKey,
            segments: Vec<Arc<SealedSegment>>,
            older: u64,
            newer: Vec<Row>,
        }
        let mut snapshot: Vec<Part> = Vec::new();
        {
            let shards = read(&self.inner.shards);
            for (key, shard) in shards.iter() {
                let mut older = 0u64;
                let mut newer = Vec::new();
                let frozen = shard.frozen.iter().flat_map(|f| f.rows());
                for r in frozen.chain(shard.mem.rows()) {
                    if r.seq <= after {
                        older += 1;
                    } else if r.seq <= through {
                        newer.push(r.row(key.community));
                    }
                }
                snapshot.push(Part {
                    key: *key,
                    segments: shard.segments.clone(),
                    older,
                    newer,
                });
            }
        }
        for Part {
            key,
            segments,
            mut older,
            newer,
        } in snapshot
        {
            for seg in &segments {
                // Counted from the manifest's facts, unopened, when all its rows are
                // at or before `after`.
                let events = u64::from(seg.events());
                if seg.facts().max_seq <= after {
                    older += events;
                    continue;
                }
                let seg = seg.open()?;
                seg.verify_rows()?;
                let mut later = 0u64;
                seg.for_each_in_seq_range(after, u64::MAX, |_, r| {
                    later += 1;
                    if r.seq <= through {
                        f(r);
                    }
                });
                older += events - later;
            }
            newer.into_iter().for_each(&mut f);
            if older > 0 {
                counts.insert(key, older);
            }
        }
        Ok(counts)
    }

    /// Events in sequence (commit) order with `after < seq <= through`, at most `limit`,
    /// of the given communities (all when `None`), with where their attributes are: a
    /// change feed. Cost follows `limit`, not the store: it keeps only the `limit`
    /// lowest sequence numbers seen (a bounded max-heap), and reads the segments that
    /// may hold such events in the order of their lowest sequence number, stopping at
    /// the first that cannot beat the page's highest once it is full; within a
    /// segment, blocks past it are skipped on their directory entry and rows past it
    /// are not decoded. The shards are snapshotted under the read lock (the segment
    /// handles and the memory parts' rows) and the segments read without it.
    pub fn scan_seq_range(
        &self,
        after: u64,
        through: u64,
        limit: usize,
        communities: Option<&[u32]>,
    ) -> Result<Vec<(Row, AttrsAt)>> {
        if after >= through || limit == 0 {
            return Ok(Vec::new());
        }
        let mut page = SeqPage::new(limit, through);
        let mut looked = 0u64;
        let mut candidates: Vec<Arc<SealedSegment>> = Vec::new();
        {
            let shards = read(&self.inner.shards);
            for (key, shard) in shards.iter() {
                if communities.is_some_and(|c| !c.contains(&key.community)) {
                    continue;
                }
                for seg in &shard.segments {
                    let facts = seg.facts();
                    if facts.max_seq > after && facts.min_seq <= through {
                        candidates.push(seg.clone());
                    }
                }
                let frozen = shard.frozen.iter().flat_map(|f| f.rows());
                for r in frozen.chain(shard.mem.rows()) {
                    looked += 1;
                    if r.seq > after && r.seq <= page.bound() {
                        page.offer(r.row(key.community), || AttrsAt::Memory(r.attrs.clone()));
                    }
                }
            }
        }
        candidates.sort_unstable_by_key(|seg| seg.facts().min_seq);
        for seg in candidates {
            if seg.facts().min_seq > page.bound() {
                break;
            }
            let seg = seg.open()?;
            seg.verify_rows()?;
            looked += seg.for_each_in_seq_range_below(after, page.bound(), |ordinal, r| {
                page.offer(r, || AttrsAt::Segment(seg.clone(), ordinal));
                page.bound()
            });
        }
        self.inner
            .seq_scan_rows
            .fetch_add(looked, std::sync::atomic::Ordering::Relaxed);
        Ok(page.into_sorted())
    }

    /// Rows whose sequence number [`Store::scan_seq_range`] looked at since open, in
    /// segments and memory parts: what the change feed's pages cost.
    pub fn seq_scan_rows(&self) -> u64 {
        self.inner
            .seq_scan_rows
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The event with sequence number (id) `seq`, with where its attributes are, if
    /// the store holds it. Sequence ranges of segments overlap across communities, so
    /// this looks at every shard's segments whose range covers `seq` (directory entries
    /// only, for blocks that cannot hold it) and at the memory parts.
    pub fn event_by_seq(&self, seq: u64) -> Result<Option<(Row, AttrsAt)>> {
        let shards = read(&self.inner.shards);
        for (key, shard) in shards.iter() {
            for seg in &shard.segments {
                let facts = seg.facts();
                if seq < facts.min_seq || seq > facts.max_seq {
                    continue;
                }
                let seg = seg.open()?;
                seg.verify_rows()?;
                if let Some((ordinal, row)) = seg.find_seq(seq) {
                    return Ok(Some((row, AttrsAt::Segment(seg.clone(), ordinal))));
                }
            }
            let frozen = shard.frozen.iter().flat_map(|f| f.rows());
            if let Some(r) = frozen.chain(shard.mem.rows()).find(|r| r.seq == seq) {
                return Ok(Some((
                    r.row(key.community),
                    AttrsAt::Memory(r.attrs.clone()),
                )));
            }
        }
        Ok(None)
    }

    /// Sealed segments of a shard, for inspection and accounting: each opened (mapped,
    /// its small parts verified) if it was not yet. A file that cannot be opened is an
    /// error naming it.
    pub fn segments(&self, key: ShardKey) -> Result<Vec<Arc<Segment>>> {
        let listed = read(&self.inner.shards)
            .get(&key)
            .map(|s| s.segments.clone())
            .unwrap_or_default();
        listed.iter().map(|s| s.open()).collect()
    }

    /// How many sealed segments are mapped (opened by a first use since the store was
    /// opened), and how many the shards hold.
    pub fn segments_mapped(&self) -> (usize, usize) {
        let shards = read(&self.inner.shards);
        let all = shards.values().flat_map(|s| s.segments.iter());
        let open = all.clone().filter(|s| s.is_open()).count();
        (open, all.count())
    }

    /// Every shard with its size.
    pub fn shards(&self) -> Vec<ShardInfo> {
        read(&self.inner.shards)
            .iter()
            .filter(|(_, s)| !s.segments.is_empty() || !s.mem.is_empty() || s.frozen.is_some())
            .map(|(key, s)| ShardInfo {
                key: *key,
                segments: s.segments.len(),
                sealed_events: s.segments.iter().map(|g| u64::from(g.events())).sum(),
                sealed_bytes: s.segments.iter().map(|g| g.facts().file_bytes).sum(),
                memory_events: s.mem.len() + s.frozen.as_ref().map_or(0, |f| f.len()),
            })
            .collect()
    }

    /// Sequence numbers a shard spans in memory, for the WAL checkpoint.
    pub(crate) fn min_unsealed_seq(&self) -> Option<u64> {
        read(&self.inner.shards)
            .values()
            .flat_map(|s| s.frozen.iter().flat_map(|f| f.first()).chain(s.mem.first()))
            .map(|r| r.seq)
            .min()
    }
}

/// The events of a change-feed page being gathered: the `limit` lowest sequence
/// numbers offered so far, in a max-heap so the highest is the one to replace.
struct SeqPage {
    limit: usize,
    through: u64,
    heap: std::collections::BinaryHeap<BySeq>,
}

/// A row and where its attributes are, ordered by sequence number alone (unique).
struct BySeq(Row, AttrsAt);

impl PartialEq for BySeq {
    fn eq(&self, other: &Self) -> bool {
        self.0.seq == other.0.seq
    }
}
impl Eq for BySeq {}
impl PartialOrd for BySeq {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BySeq {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.seq.cmp(&other.0.seq)
    }
}

impl SeqPage {
    fn new(limit: usize, through: u64) -> SeqPage {
        debug_assert!(limit > 0);
        SeqPage {
            limit,
            through,
            // Bounded by the page, not by what is offered.
            heap: std::collections::BinaryHeap::with_capacity(limit.min(4096)),
        }
    }

    /// The highest sequence number that can still enter: `through` until the page is
    /// full, then just below its highest.
    fn bound(&self) -> u64 {
        match self.heap.peek() {
            Some(worst) if self.heap.len() >= self.limit => worst.0.seq.saturating_sub(1),
            _ => self.through,
        }
    }

    /// Keeps `row` if its sequence number is within [`SeqPage::bound`], evicting the
    /// highest when full.
    fn offer(&mut self, row: Row, attrs: impl FnOnce() -> AttrsAt) {
        if row.seq > self.bound() {
            return;
        }
        if self.heap.len() >= self.limit {
            self.heap.pop();
        }
        self.heap.push(BySeq(row, attrs()));
        debug_assert!(self.heap.len() <= self.limit);
    }

    fn into_sorted(self) -> Vec<(Row, AttrsAt)> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|BySeq(r, a)| (r, a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key((community, span): (u32, i32)) -> ShardKey {
        ShardKey { community, span }
    }

    proptest! {
        /// The walk finds what the map's own look-up finds, for keys in any order
        /// (ascending runs, repeats, keys going back, gaps).
        #[test]
        fn shard_walk_finds_what_get_finds(
            present in proptest::collection::btree_set((0u32..4, -3i32..40), 0..80),
            asked in proptest::collection::vec((0u32..5, -4i32..42), 0..120),
            sorted in any::<bool>(),
        ) {
            let map: BTreeMap<ShardKey, usize> =
                present.iter().enumerate().map(|(i, &k)| (key(k), i)).collect();
            let mut asked: Vec<ShardKey> = asked.into_iter().map(key).collect();
            if sorted {
                asked.sort_unstable();
            }
            let mut walk = ShardWalk::new(&map);
            for k in asked {
                prop_assert_eq!(walk.get(k), map.get(&k), "key {:?}", k);
            }
        }
    }
}
