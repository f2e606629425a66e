//! Trajectory: where a subject was, in time order, with the stays it implies.

use std::fmt;
use std::str::FromStr;

use std::cmp::Reverse;
use std::sync::Arc;

use compact_str::CompactString;

use sightline_storage::{Direction, Kind, Row, Store, SubjectRun};

use crate::context::{Names, QueryContext, Sighting};
use crate::error::{QueryError, Result};

/// Most events per page.
pub const MAX_PAGE: usize = 10_000;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrajectoryQuery {
    pub kind: Kind,
    pub subject: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only these community codes; all when `None`.
    pub communities: Option<Vec<String>>,
    /// Continue after this event (from a previous page's `next_cursor`).
    pub cursor: Option<Cursor>,
    /// Events per page, 1..=[`MAX_PAGE`].
    pub limit: usize,
}

/// Position in the (ts, device, seq) order: the last event of a page.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub ts_ms: i64,
    pub device: String,
    pub seq: u64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.ts_ms, self.device, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = QueryError;
    fn from_str(s: &str) -> Result<Cursor> {
        let bad = || {
            QueryError::invalid(
                "cursor",
                format!("{s:?} is not a cursor from a previous page"),
            )
        };
        let mut parts = s.splitn(3, '.');
        let ts_ms = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let device = parts
            .next()
            .filter(|d| !d.is_empty())
            .ok_or_else(bad)?
            .to_string();
        let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        Ok(Cursor { ts_ms, device, seq })
    }
}

/// How a stay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StayEnd {
    /// An `out` at the same community.
    Out,
    /// A sighting at another community.
    Elsewhere,
    /// Nothing closed it within the range.
    Open,
}

/// A dwell interval at one community derived from gate directions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stay {
    pub community: Arc<str>,
    pub in_ms: i64,
    /// When it ended; `None` when open.
    pub out_ms: Option<i64>,
    pub ended_by: StayEnd,
}

#[derive(Clone, Debug)]
pub struct Trajectory {
    pub events: Vec<Sighting>,
    /// Stays over the whole range, the first [`MAX_STAYS`] in time order; on the first
    /// page only (empty when `cursor` is set).
    pub stays: Vec<Stay>,
    /// There were more than [`MAX_STAYS`] stays in the range (narrow it to see them).
    pub stays_truncated: bool,
    pub next_cursor: Option<Cursor>,
    /// Where each event's attributes are (same order as `events`); see
    /// [`Trajectory::attrs`].
    pub attrs_at: Vec<sightline_storage::AttrsAt>,
}

/// Most stays one answer holds: like a page of events, an answer's size is bounded
/// whatever the subject's history.
pub const MAX_STAYS: usize = MAX_PAGE;

impl Trajectory {
    /// The page's events' attributes, decoded now (same order as `events`).
    pub fn attrs(&self) -> Result<Vec<sightline_storage::Attrs>> {
        self.attrs_at
            .iter()
            .map(|a| a.decode().map_err(QueryError::from))
            .collect()
    }
}

/// A page of the subject's trajectory. The events are put in trajectory order a group
/// of runs that overlap in time at a time (see [`Merged`]): memory holds the page, the
/// stays and at most one group (bounded), not the subject's history, however long it is.
pub fn trajectory(ctx: &QueryContext<'_>, q: &TrajectoryQuery) -> Result<Trajectory> {
    trajectory_handed(ctx, q, |_| None, |_, _| {})
}

/// [`trajectory`], the page's events handed over as they are merged, in chunks of
/// `chunk` events, when `start` (told, before any event is merged, the most events the
/// page can hold) names a size: `hand` gets each whole chunk, in order, with where its
/// events' attributes are, and the answer's `events` and `attrs_at` hold only those
/// after the last whole chunk. The stays and the cursor are the whole page's. For a
/// caller that writes a page's first events while the rest are merged. An error stops
/// the merge: chunks handed before it are the page's first events all the same.
pub fn trajectory_handed(
    ctx: &QueryContext<'_>,
    q: &TrajectoryQuery,
    start: impl FnOnce(usize) -> Option<usize>,
    mut hand: impl FnMut(Vec<Sighting>, Vec<sightline_storage::AttrsAt>),
) -> Result<Trajectory> {
    if q.limit == 0 || q.limit > MAX_PAGE {
        return Err(QueryError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}, got {}", q.limit),
        ));
    }
    let mut out = Trajectory {
        events: Vec::new(),
        stays: Vec::new(),
        stays_truncated: false,
        next_cursor: None,
        attrs_at: Vec::new(),
    };
    let Some(mut merged) = merged(ctx, q)? else {
        return Ok(out);
    };
    merged.skip_to_cursor(ctx)?;
    // Stays (first page only) need the whole range; the page, its first events.
    let mut stays = q
        .cursor
        .is_none()
        .then(|| Stays::with_capacity(merged.remaining()));
    let page = q.limit.min(merged.remaining());
    let chunk = start(page).filter(|&c| c > 0 && c < page);
    let held = chunk.unwrap_or(page);
    out.events.reserve(held);
    out.attrs_at.reserve(held);
    // Events of the page handed over in chunks, and the last of them (the cursor's
    // place when no event follows the last chunk in `out`).
    let (mut handed, mut last_handed) = (0usize, None::<Cursor>);
    let mut seen = 0usize;
    loop {
        let taken = handed + out.events.len();
        if taken == q.limit && stays.as_ref().is_none_or(|s| s.truncated) {
            break;
        }
        let Some(next) = merged.next()? else {
            break;
        };
        if let Some(s) = stays.as_mut() {
            s.push(&next.row, merged.community_of(&next));
        }
        if taken < q.limit {
            out.events.push(merged.sighting(&next));
            out.attrs_at.push(merged.attrs(&next));
            if chunk == Some(out.events.len()) {
                last_handed = out.events.last().map(cursor_of);
                handed += out.events.len();
                let events = std::mem::replace(&mut out.events, Vec::with_capacity(held));
                let attrs = std::mem::replace(&mut out.attrs_at, Vec::with_capacity(held));
                hand(events, attrs);
            }
        }
        seen += 1;
        if seen.is_multiple_of(1 << 16) {
            ctx.check_deadline()?;
        }
    }
    // Events past the page: passed for the stays, or next in line.
    let more = seen > handed + out.events.len() || merged.peek()?.is_some();
    if let Some(s) = stays {
        out.stays_truncated = s.truncated;
        out.stays = s.finish(&merged);
    }
    out.next_cursor = more.then(|| {
        out.events
            .last()
            .map(cursor_of)
            .or(last_handed)
            .expect("a page before the end is not empty")
    });
    Ok(out)
}

/// Where a page ending at `last` goes on from.
fn cursor_of(last: &Sighting) -> Cursor {
    Cursor {
        ts_ms: last.ts_ms,
        device: last.device.to_string(),
        seq: last.seq,
    }
}

/// The whole trajectory after `q.cursor` (`q.limit` is ignored): first `start` is told
/// how many events follow (it may decline, returning false), then `page` is handed
/// them in pages of `page_size` with where their attributes are, in trajectory order,
/// while it returns true. The count is what the runs hold past the cursor; the events
/// are merged as they are handed over, never held whole, so a caller that streams
/// holds one page (and a group of time-overlapping runs, at most
/// `QueryContext::trajectory_sort_max` events, when it is sorted whole; device names are
/// resolved as their devices are first met). Returns the number of
/// events handed over.
pub fn trajectory_pages(
    ctx: &QueryContext<'_>,
    q: &TrajectoryQuery,
    page_size: usize,
    start: impl FnOnce(usize) -> bool,
    mut page: impl FnMut(&[Sighting], &[sightline_storage::AttrsAt]) -> bool,
) -> Result<usize> {
    let mut merged = match merged(ctx, q)? {
        Some(mut m) => {
            m.skip_to_cursor(ctx)?;
            Some(m)
        }
        None => None,
    };
    let count = merged.as_ref().map_or(0, Merged::remaining);
    if !start(count) {
        return Ok(0);
    }
    let Some(merged) = merged.as_mut() else {
        return Ok(0);
    };
    let page_size = page_size.max(1);
    let mut sent = 0;
    while sent < count {
        let want = page_size.min(count - sent);
        let mut events = Vec::with_capacity(want);
        let mut attrs = Vec::with_capacity(want);
        while events.len() < want {
            let Some(next) = merged.next()? else {
                break;
            };
            events.push(merged.sighting(&next));
            attrs.push(merged.attrs(&next));
        }
        if events.is_empty() {
            break;
        }
        sent += events.len();
        if !page(&events, &attrs) {
            break;
        }
    }
    Ok(sent)
}

/// The subject's events in the query's range and places, ready to merge; `None` when
/// the store never saw the subject.
fn merged<'s>(ctx: &QueryContext<'s>, q: &TrajectoryQuery) -> Result<Option<Merged<'s>>> {
    ctx.check_range(q.from_ms, q.to_ms)?;
    let Some(subject) = ctx.subject_id(q.kind, &q.subject)? else {
        return Ok(None);
    };
    let communities = q.communities.as_ref().map(|c| ctx.community_ids(c));
    let runs = ctx.subject_runs(subject, q.from_ms, q.to_ms, communities.as_deref())?;
    Ok(Some(Merged::new(
        ctx.store,
        runs,
        subject,
        q.cursor.as_ref(),
        ctx.trajectory_sort_max,
    )))
}

/// Events a run of one device decodes at a time ([`SubjectRun::drain`]) when its group
/// is merged by heap; a run of several devices (at most
/// [`sightline_storage::SUBJECT_RUN_WHOLE_MAX`]) is decoded whole.
const CHUNK: usize = 512;

/// Slots of [`Merged::device_cache`]: more than the devices a subject is seen at in
/// most answers (a power of two).
const DEVICE_CACHE: usize = 256;

/// One event the merge hands over: its row, its run, its position there and its
/// device's name.
#[derive(Clone, Copy)]
struct Next {
    row: Row,
    run: u32,
    position: u32,
    /// Index of its device's name in [`Merged::device_names`].
    device: u32,
}

/// One device's decoded events in a run's buffer, `at..end`, not yet handed over.
struct Stretch {
    run: u32,
    at: u32,
    end: u32,
}

/// An event's place in trajectory order, (ts, device code, seq), with the stretch it
/// heads in the heap.
#[derive(Clone, Copy)]
struct Head {
    ts_ms: i64,
    seq: u64,
    /// Index of the device's name in [`Merged::device_names`].
    device: u32,
    /// Index of the stretch in [`Merged::stretches`] (heap only).
    stretch: u32,
}

/// Whether `a` comes before `b` in trajectory order. Devices are told apart by code
/// only at equal times (rare), so the names are looked at only then.
#[inline]
fn before(a: &Head, b: &Head, names: &[CompactString]) -> bool {
    if a.ts_ms != b.ts_ms {
        return a.ts_ms < b.ts_ms;
    }
    if a.device != b.device {
        match names[a.device as usize].cmp(&names[b.device as usize]) {
            std::cmp::Ordering::Less => return true,
            std::cmp::Ordering::Greater => return false,
            std::cmp::Ordering::Equal => {}
        }
    }
    a.seq < b.seq
}

/// Restores the min-heap `heap` after its top was replaced.
fn sift_down(heap: &mut [Head], names: &[CompactString]) {
    let n = heap.len();
    let top = heap[0];
    let mut hole = 0;
    loop {
        let mut child = 2 * hole + 1;
        if child >= n {
            break;
        }
        if child + 1 < n && before(&heap[child + 1], &heap[child], names) {
            child += 1;
        }
        if !before(&heap[child], &top, names) {
            break;
        }
        heap[hole] = heap[child];
        hole = child;
    }
    heap[hole] = top;
}

/// Puts `head` at `hole` or above it in the min-heap `heap`, moving later parents down.
fn climb(heap: &mut [Head], names: &[CompactString], mut hole: usize, head: Head) {
    while hole > 0 {
        let parent = (hole - 1) / 2;
        if !before(&head, &heap[parent], names) {
            break;
        }
        heap[hole] = heap[parent];
        hole = parent;
    }
    heap[hole] = head;
}

/// A run with its decoded events (when its group is merged by heap).
struct RunState {
    source: SubjectRun,
    /// Its decoded events, (row, position in the run); stretches point into it.
    buf: Vec<(Row, u32)>,
    /// Its stretches not yet finished.
    live: u32,
    /// Index of its community in [`Merged::communities`].
    community: u32,
}

/// Runs past the group being read whose block directory entries a group's read asks
/// for ahead ([`Merged::sort_group`]).
const PREFETCH_RUNS: usize = 8;

/// The subject's events in trajectory order: (ts, device code, seq). Its runs
/// ([`SubjectRun`]: a segment's or memory part's events of the subject, of one device
/// or a few) are taken in *groups* that overlap in time: a group is the earliest
/// pending run and every run whose time bounds chain-overlap with it (in practice the
/// runs of one day), so the groups' events follow one another in time and a group is
/// decoded only when the merge reaches it. A group of at most `sort_max` events is
/// decoded whole (each run in one walk over its blocks) and sorted by a plain integer
/// key (time in the group, then position; events at the same millisecond are put in
/// device and seq order after). A larger group is merged by a heap of *stretches* (one device's
/// decoded events in (ts, seq) order), each run decoded [`CHUNK`] events at a time
/// and only when the merge reaches its time: memory holds at most a chunk of each run
/// in play. Devices are compared by code, and only between events at the same
/// millisecond; a device's name is resolved when the merge first meets it.
struct Merged<'s> {
    store: &'s Store,
    subject: u32,
    runs: Vec<RunState>,
    /// Runs of no group yet, by a time at or before their events, the earliest last.
    pending: Vec<(i64, u32)>,
    /// Most events of a group decoded and sorted at once.
    sort_max: usize,
    /// The sorted group: its events in decoding order (`decoded`) and their sort keys
    /// in trajectory order (`keys`, each ending with its event's place in `decoded`);
    /// `sorted_at` is the next key to hand over.
    decoded: Vec<Next>,
    keys: Vec<u64>,
    sorted_at: usize,
    /// Scratch of the sorted group: decoded rows.
    scratch: Vec<(Row, u32)>,
    /// The heap-merged group's runs not yet decoded, the earliest last.
    group: Vec<(i64, u32)>,
    stretches: Vec<Stretch>,
    /// Indices of finished stretches, for the next ones.
    free: Vec<u32>,
    /// The stretches' next events, earliest first (a min-heap by [`before`]; keys are
    /// unique: seq is).
    heap: Vec<Head>,
    /// Buffers of finished runs, for the next runs decoded.
    spare: Vec<Vec<(Row, u32)>>,
    /// Device ids met so far, sorted, with the index of their names.
    device_ids: Vec<(u32, u32)>,
    /// In front of `device_ids`: slot `id % DEVICE_CACHE` holds `id << 32 | index` of
    /// the device met last of those that map there (`u64::MAX`: none), so a device
    /// met again (a run of a few events each time) is found without a search.
    device_cache: Box<[u64; DEVICE_CACHE]>,
    /// Device codes, by index.
    device_names: Vec<CompactString>,
    /// The subject's kind and name.
    subject_name: (Kind, Arc<str>),
    /// The runs' communities' ids and names, sorted by id.
    communities: Vec<(u32, Arc<str>, CompactString)>,
    /// The cursor's position: (ts, device code, seq).
    cursor: Option<(i64, CompactString, u64)>,
    /// Events not yet handed over.
    remaining: usize,
}

impl<'s> Merged<'s> {
    fn new(
        store: &'s Store,
        runs: Vec<SubjectRun>,
        subject: u32,
        cursor: Option<&Cursor>,
        sort_max: usize,
    ) -> Merged<'s> {
        let mut ids: Vec<u32> = runs.iter().map(SubjectRun::community).collect();
        ids.sort_unstable();
        ids.dedup();
        let (communities, subject_name) = {
            let dicts = store.dictionaries();
            let names = Names { dicts: &dicts };
            let communities: Vec<(u32, Arc<str>, CompactString)> = ids
                .iter()
                .map(|&c| {
                    let name = names.community_str(c);
                    (c, Arc::from(name), CompactString::from(name))
                })
                .collect();
            let (kind, name) = names.subject(subject);
            (communities, (kind, Arc::from(name)))
        };
        let mut pending = Vec::with_capacity(runs.len());
        let mut states = Vec::with_capacity(runs.len());
        let mut remaining = 0;
        for (i, run) in runs.into_iter().enumerate() {
            pending.push((run.ts_lower_bound(), i as u32));
            remaining += run.remaining();
            let community = ids.partition_point(|&c| c < run.community()) as u32;
            states.push(RunState {
                source: run,
                buf: Vec::new(),
                live: 0,
                community,
            });
        }
        pending.sort_unstable_by_key(|&(ts, _)| Reverse(ts));
        Merged {
            store,
            subject,
            runs: states,
            pending,
            sort_max,
            decoded: Vec::new(),
            keys: Vec::new(),
            sorted_at: 0,
            scratch: Vec::new(),
            group: Vec::new(),
            stretches: Vec::new(),
            free: Vec::new(),
            heap: Vec::new(),
            spare: Vec::new(),
            device_ids: Vec::new(),
            device_cache: Box::new([u64::MAX; DEVICE_CACHE]),
            device_names: Vec::new(),
            subject_name,
            communities,
            cursor: cursor.map(|c| (c.ts_ms, CompactString::from(c.device.as_str()), c.seq)),
            remaining,
        }
    }

    /// Events not yet taken.
    fn remaining(&self) -> usize {
        self.remaining
    }

    /// The index of device `id`'s name, resolved on first meeting it.
    #[inline]
    fn device_index(&mut self, id: u32) -> u32 {
        let slot = &mut self.device_cache[id as usize % DEVICE_CACHE];
        // (An entry equal to `u64::MAX` is read as empty even if it were one: a
        // search then.)
        if *slot != u64::MAX && (*slot >> 32) as u32 == id {
            return *slot as u32;
        }
        let index = self.device_index_searched(id);
        self.device_cache[id as usize % DEVICE_CACHE] = u64::from(id) << 32 | u64::from(index);
        index
    }

    /// [`Merged::device_index`] past its cache: searched for, or resolved now.
    #[inline(never)]
    fn device_index_searched(&mut self, id: u32) -> u32 {
        match self.device_ids.binary_search_by_key(&id, |d| d.0) {
            Ok(at) => self.device_ids[at].1,
            Err(at) => {
                let name = {
                    let dicts = self.store.dictionaries();
                    CompactString::from(Names { dicts: &dicts }.device(id))
                };
                let index = self.device_names.len() as u32;
                self.device_names.push(name);
                self.device_ids.insert(at, (id, index));
                index
            }
        }
    }

    /// Makes the next event ready (in the sorted group or at the heap's top) unless every
    /// event was handed over: takes the next group when the current one is done.
    fn fill(&mut self) -> Result<()> {
        loop {
            if self.sorted_at < self.keys.len() {
                return Ok(());
            }
            self.activate()?;
            if !self.heap.is_empty() {
                return Ok(());
            }
            let Some((_, first)) = self.pending.pop() else {
                return Ok(());
            };
            // The group: runs whose bounds chain-overlap the earliest pending one's.
            let lower = self.runs[first as usize].source.ts_lower_bound();
            let mut upper = self.runs[first as usize].source.ts_upper_bound();
            let mut events = self.runs[first as usize].source.remaining();
            self.group.clear();
            self.group.push((0, first));
            while let Some(&(lower, run)) = self.pending.last() {
                if lower > upper {
                    break;
                }
                self.pending.pop();
                let source = &self.runs[run as usize].source;
                upper = upper.max(source.ts_upper_bound());
                events += source.remaining();
                self.group.push((lower, run));
            }
            // Sorted when its keys fit (position: 24 bits, time from `lower`: 40 bits,
            // 34 years; a group is a day's runs).
            if events <= self.sort_max.min(1 << 24) && upper.saturating_sub(lower) < 1 << 40 {
                self.sort_group(lower, events)?;
            } else {
                // Merged by heap, each run decoded when the merge reaches it.
                self.group[0].0 = lower;
                self.group.sort_unstable_by_key(|&(ts, _)| Reverse(ts));
            }
        }
    }

    /// Decodes the group's runs whole and sorts their events' keys; `lower` is
    /// at or before every event of the group, within 2^40 ms of each, and the group
    /// holds fewer than 2^24 events, `events` of them.
    fn sort_group(&mut self, lower: i64, events: usize) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut group = std::mem::take(&mut self.group);
        self.sorted_at = 0;
        self.decoded.clear();
        self.keys.clear();
        self.decoded.reserve(events);
        self.keys.reserve(events);
        // The runs' first rows asked for in two steps, each for every run before the
        // next (a heavy subject's group is a day's few rows in each of several
        // segments: read in turn, each would wait for its own misses); the first step
        // also for the runs the next groups start with, so that their second step
        // finds what it reads already asked for.
        let next = self
            .pending
            .iter()
            .rev()
            .take(PREFETCH_RUNS)
            .map(|&(_, r)| r);
        for run in group.iter().map(|&(_, r)| r).chain(next) {
            self.runs[run as usize].source.prefetch_entry();
        }
        for &(_, run) in &group {
            self.runs[run as usize].source.prefetch_row();
        }
        // The last device met and its name's index (rows come by device in a run).
        let mut last_device: Option<(u32, u32)> = None;
        for &(_, run) in &group {
            scratch.clear();
            let source = &mut self.runs[run as usize].source;
            while source.remaining() > 0 {
                source.drain(self.subject, source.remaining(), &mut scratch)?;
            }
            for &(row, position) in &scratch {
                let device = match last_device {
                    Some((id, index)) if id == row.device => index,
                    _ => {
                        let index = self.device_index(row.device);
                        last_device = Some((row.device, index));
                        index
                    }
                };
                // The integer key: time from `lower`, then where the event is in
                // `decoded`.
                // Every row lies within its run's bounds: a segment's rows are checked
                // against their block's `ts_max` and its blocks against the header's
                // times on first read (storage/src/segment/read.rs), a memory run's
                // bounds are its rows'. The clamp only keeps the key's bits.
                let ts = row.ts_ms.saturating_sub(lower).clamp(0, (1 << 40) - 1) as u64;
                self.keys.push(ts << 24 | self.decoded.len() as u64);
                self.decoded.push(Next {
                    row,
                    run,
                    position,
                    device,
                });
            }
        }
        group.clear();
        self.group = group;
        self.scratch = scratch;
        self.keys.sort_unstable();
        // Events at the same millisecond: by device code, then seq.
        let names = &self.device_names;
        let decoded = &self.decoded;
        let place = |k: u64| {
            let n = &decoded[(k & 0xff_ffff) as usize];
            (names[n.device as usize].as_str(), n.row.seq)
        };
        let mut i = 0;
        while i < self.keys.len() {
            let ts = self.keys[i] >> 24;
            let mut j = i + 1;
            while j < self.keys.len() && self.keys[j] >> 24 == ts {
                j += 1;
            }
            if j - i > 1 {
                self.keys[i..j].sort_unstable_by(|&a, &b| place(a).cmp(&place(b)));
            }
            i = j;
        }
        Ok(())
    }

    /// Decodes the next events of `run` (all of them when it holds several devices,
    /// else a chunk) and puts its stretches' first events in the heap.
    fn decode(&mut self, run: u32) -> Result<()> {
        let state = &mut self.runs[run as usize];
        let mut buf = std::mem::take(&mut state.buf);
        if buf.capacity() == 0 {
            buf = self.spare.pop().unwrap_or_default();
        }
        buf.clear();
        let max = match state.source.device() {
            Some(_) => CHUNK,
            None => state.source.remaining(),
        };
        state.source.drain(self.subject, max, &mut buf)?;
        let mut live = 0;
        let mut start = 0;
        while start < buf.len() {
            let device = buf[start].0.device;
            let end = buf[start..]
                .iter()
                .position(|(r, _)| r.device != device)
                .map_or(buf.len(), |n| start + n);
            let head = Head {
                ts_ms: buf[start].0.ts_ms,
                seq: buf[start].0.seq,
                device: self.device_index(device),
                stretch: self.free.pop().unwrap_or(self.stretches.len() as u32),
            };
            let stretch = Stretch {
                run,
                at: start as u32,
                end: end as u32,
            };
            match self.stretches.get_mut(head.stretch as usize) {
                Some(s) => *s = stretch,
                None => self.stretches.push(stretch),
            }
            self.heap.push(head);
            let last = self.heap.len() - 1;
            climb(&mut self.heap, &self.device_names, last, head);
            live += 1;
            start = end;
        }
        let state = &mut self.runs[run as usize];
        state.live = live;
        match live {
            0 => self.spare.push(buf),
            _ => state.buf = buf,
        }
        Ok(())
    }

    /// Decodes the heap-merged group's runs that may hold an event before every
    /// decoded stretch's next one.
    fn activate(&mut self) -> Result<()> {
        while let Some(&(bound, run)) = self.group.last() {
            // Every event of the run is at `bound` ms or later.
            if self.heap.first().is_some_and(|h| h.ts_ms < bound) {
                break;
            }
            self.group.pop();
            self.decode(run)?;
        }
        Ok(())
    }

    /// The next event's place, without taking it.
    fn peek(&mut self) -> Result<Option<Head>> {
        self.fill()?;
        if let Some(n) = self.sorted_next() {
            return Ok(Some(Head {
                ts_ms: n.row.ts_ms,
                seq: n.row.seq,
                device: n.device,
                stretch: 0,
            }));
        }
        Ok(self.heap.first().copied())
    }

    /// The sorted group's next event, if it has one left.
    #[inline]
    fn sorted_next(&self) -> Option<Next> {
        let k = self.keys.get(self.sorted_at)?;
        self.decoded.get((k & 0xff_ffff) as usize).copied()
    }

    /// Takes the next event: from the sorted group here (nearly every event), else
    /// [`Merged::next_filled`].
    #[inline]
    fn next(&mut self) -> Result<Option<Next>> {
        if let Some(n) = self.sorted_next() {
            self.sorted_at += 1;
            self.remaining -= 1;
            return Ok(Some(n));
        }
        self.next_filled()
    }

    /// Takes the next event once the sorted group (if any) is handed over: the next
    /// group's first, or the heap's top.
    #[inline(never)]
    fn next_filled(&mut self) -> Result<Option<Next>> {
        self.fill()?;
        if let Some(n) = self.sorted_next() {
            self.sorted_at += 1;
            self.remaining -= 1;
            return Ok(Some(n));
        }
        let Some(&top) = self.heap.first() else {
            return Ok(None);
        };
        let stretch = &mut self.stretches[top.stretch as usize];
        let run = stretch.run;
        let buf = &self.runs[run as usize].buf;
        let (row, position) = buf[stretch.at as usize];
        stretch.at += 1;
        if stretch.at < stretch.end {
            // The stretch's next event replaces its taken one in place (one sift).
            let (r, _) = &buf[stretch.at as usize];
            self.heap[0] = Head {
                ts_ms: r.ts_ms,
                seq: r.seq,
                ..top
            };
            sift_down(&mut self.heap, &self.device_names);
        } else {
            self.free.push(top.stretch);
            let last = self.heap.pop().expect("the top is in the heap");
            if !self.heap.is_empty() {
                self.heap[0] = last;
                sift_down(&mut self.heap, &self.device_names);
            }
            let state = &mut self.runs[run as usize];
            state.live -= 1;
            if state.live == 0 {
                match state.source.remaining() {
                    0 => self.spare.push(std::mem::take(&mut state.buf)),
                    // A run of one device: its next chunk.
                    _ => self.decode(run)?,
                }
            }
        }
        self.remaining -= 1;
        Ok(Some(Next {
            row,
            run,
            position,
            device: top.device,
        }))
    }

    /// The event as a sighting, its names shared with its run's (built in place in
    /// the page: inlined, it is not returned through memory and copied).
    #[inline(always)]
    fn sighting(&self, next: &Next) -> Sighting {
        let community = self.runs[next.run as usize].community;
        Sighting {
            seq: next.row.seq,
            ts_ms: next.row.ts_ms,
            community: self.communities[community as usize].2.clone(),
            device: self.device_names[next.device as usize].clone(),
            kind: self.subject_name.0,
            subject: self.subject_name.1.clone(),
            direction: next.row.direction,
        }
    }

    /// Where the event's attributes are.
    #[inline]
    fn attrs(&self, next: &Next) -> sightline_storage::AttrsAt {
        self.runs[next.run as usize].source.attrs_of(next.position)
    }

    /// The index of the event's community in [`Merged::communities`].
    #[inline]
    fn community_of(&self, next: &Next) -> u32 {
        self.runs[next.run as usize].community
    }

    /// The name of the community at `index` in [`Merged::communities`].
    fn community(&self, index: u32) -> Arc<str> {
        match self.communities.get(index as usize) {
            Some(c) => c.1.clone(),
            None => Arc::from("?"),
        }
    }

    /// Passes the events at or before the cursor (all of them are read: runs are
    /// ordered by time within a device, not across devices).
    fn skip_to_cursor(&mut self, ctx: &QueryContext<'_>) -> Result<()> {
        let Some((ts_ms, device, seq)) = self.cursor.take() else {
            return Ok(());
        };
        let mut n = 0usize;
        while let Some(h) = self.peek()? {
            let at = (
                h.ts_ms,
                self.device_names[h.device as usize].as_str(),
                h.seq,
            );
            if at > (ts_ms, device.as_str(), seq) {
                break;
            }
            self.next()?;
            n += 1;
            if n.is_multiple_of(1 << 16) {
                ctx.check_deadline()?;
            }
        }
        Ok(())
    }
}

/// Stays from events in trajectory order (see SEMANTICS.md), the first [`MAX_STAYS`].
/// Communities are told by their index in [`Merged::communities`] (one per id), so a
/// stay's name is one look-up when the answer is built.
#[derive(Default)]
struct Stays {
    /// (community index, in, out, how it ended).
    done: Vec<(u32, i64, Option<i64>, StayEnd)>,
    /// (community index, in_ms) of the open stay.
    open: Option<(u32, i64)>,
    /// A stay past [`MAX_STAYS`] ended: the rest are not kept.
    truncated: bool,
}

impl Stays {
    /// Room for the stays `events` events can make (each begins with an entry), at
    /// most [`MAX_STAYS`]: the list is not copied as it grows.
    fn with_capacity(events: usize) -> Stays {
        Stays {
            done: Vec::with_capacity((events / 2 + 1).min(MAX_STAYS)),
            ..Stays::default()
        }
    }

    /// The next event, `r`, at the community of index `at`.
    fn push(&mut self, r: &Row, at: u32) {
        if self.truncated {
            return;
        }
        if let Some((community, in_ms)) = self.open {
            let ended_by = if at != community {
                Some(StayEnd::Elsewhere)
            } else if r.direction == Direction::Out {
                Some(StayEnd::Out)
            } else {
                None
            };
            if let Some(ended_by) = ended_by {
                self.end(community, in_ms, Some(r.ts_ms), ended_by);
                self.open = None;
            }
        }
        if self.open.is_none() && !self.truncated && r.direction == Direction::In {
            self.open = Some((at, r.ts_ms));
        }
    }

    fn end(&mut self, community: u32, in_ms: i64, out_ms: Option<i64>, ended_by: StayEnd) {
        if self.done.len() == MAX_STAYS {
            self.truncated = true;
            self.open = None;
        } else {
            self.done.push((community, in_ms, out_ms, ended_by));
        }
    }

    fn finish(mut self, merged: &Merged) -> Vec<Stay> {
        if let Some((community, in_ms)) = self.open.take() {
            self.end(community, in_ms, None, StayEnd::Open);
        }
        self.done
            .into_iter()
            .map(|(community, in_ms, out_ms, ended_by)| Stay {
                community: merged.community(community),
                in_ms,
                out_ms,
                ended_by,
            })
            .collect()
    }
}
