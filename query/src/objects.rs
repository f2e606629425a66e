//! Objects by conditions: the events of one kind in a time range, optionally only at
//! some devices, of some subjects, with some attribute values, in time order, a page
//! of them after skipping some, and how many match in all. What a 视图库 answers to
//! `GET /VIID/MotorVehicles?…` (GA/T 1400.4), and a plain select for any caller.
//!
//! Cost: one scan of the shards in range and scope (rows that fail the cheap row
//! conditions are never decoded further; attribute conditions decode only rows that
//! passed those); memory: the page and the records skipped before it, at most
//! [`MAX_OBJECT_DEPTH`], in a bounded heap.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};

use sightline_storage::{visit_attrs, AttrRef, AttrsAt, Kind, Row};

use crate::context::{sightings, QueryContext, Sighting};
use crate::error::{QueryError, Result};

/// The attribute an object's tollgate (its `TollgateID`, when another device took it)
/// is kept as.
pub const TOLLGATE_ATTR: &str = "tollgate_id";

/// Most records a page may reach into (records skipped before it plus the page):
/// what the bounded heap holds at most.
pub const MAX_OBJECT_DEPTH: usize = 100_000;

/// Which objects, and which page of them.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ObjectQuery {
    pub kind: Option<Kind>,
    /// `from_ms <= ts < to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only at these device codes (any when `None`).
    pub devices: Option<Vec<String>>,
    /// Only at these tollgates (卡口): an event's tollgate is its `tollgate_id`
    /// attribute (the tollgate another camera's object names), else its device (any
    /// when `None`).
    #[serde(default)]
    pub tollgates: Option<Vec<String>>,
    /// Only these subjects (plates, face ids; normalised as stored; any when `None`).
    pub subjects: Option<Vec<String>>,
    /// Each attribute must be present with one of the values (compared as text).
    pub attrs: Vec<(String, Vec<String>)>,
    /// Matching records before the page, in the order asked.
    pub skip: usize,
    /// Records in the page.
    pub limit: usize,
    /// Newest first (else oldest first); ties by event id the same way.
    pub newest_first: bool,
}

/// A page of objects and how many match in all.
#[derive(Debug)]
pub struct ObjectPage {
    pub total: u64,
    pub events: Vec<Sighting>,
    /// Where each event's attributes are (same order as `events`).
    pub attrs_at: Vec<AttrsAt>,
}

/// One candidate in the bounded heap, ordered by its position in the answer.
struct Held {
    key: (i64, u64),
    row: Row,
    attrs: AttrsAt,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// The page's depth (records skipped and the page), or why `q` is refused: what one
/// store refuses, checked alike before a federation asks its partitions.
pub(crate) fn check(q: &ObjectQuery) -> Result<usize> {
    if q.limit == 0 {
        return Err(QueryError::invalid("limit", "must be at least 1"));
    }
    let depth = q.skip.saturating_add(q.limit);
    if depth > MAX_OBJECT_DEPTH {
        return Err(QueryError::invalid(
            "skip",
            format!("a page may reach at most {MAX_OBJECT_DEPTH} records deep, asked {depth}"),
        ));
    }
    if q.subjects.is_some() && q.kind.is_none() {
        return Err(QueryError::invalid("subject", "needs a kind"));
    }
    Ok(depth)
}

/// The objects `q` selects, within the context's scope.
pub fn objects(ctx: &QueryContext<'_>, q: &ObjectQuery) -> Result<ObjectPage> {
    let depth = check(q)?;
    let empty = ObjectPage {
        total: 0,
        events: Vec::new(),
        attrs_at: Vec::new(),
    };
    if q.from_ms >= q.to_ms {
        return Ok(empty);
    }
    // Names to ids: a name the store never saw matches nothing.
    let (devices, subjects) = {
        let d = ctx.store.dictionaries();
        let devices: Option<HashSet<u32>> = q
            .devices
            .as_ref()
            .map(|codes| codes.iter().filter_map(|c| d.device_id(c)).collect());
        let subjects: Option<HashSet<u32>> = match (&q.subjects, q.kind) {
            (None, _) => None,
            (Some(names), Some(kind)) => Some(
                names
                    .iter()
                    .map(|s| sightline_storage::normalize_subject(kind, s))
                    .filter_map(|s| d.subject_id(kind, &s))
                    .collect(),
            ),
            (Some(_), None) => {
                return Err(QueryError::invalid("subject", "needs a kind"));
            }
        };
        (devices, subjects)
    };
    if devices.as_ref().is_some_and(HashSet::is_empty)
        || subjects.as_ref().is_some_and(HashSet::is_empty)
    {
        return Ok(empty);
    }
    let communities = ctx.restrict(None);
    if communities.as_ref().is_some_and(Vec::is_empty) {
        return Ok(empty);
    }
    // A tollgate by code: an event's is its `tollgate_id`, else its device.
    let tollgate_devices: Option<HashSet<u32>> = q.tollgates.as_ref().map(|codes| {
        let d = ctx.store.dictionaries();
        codes.iter().filter_map(|c| d.device_id(c)).collect()
    });
    let keep = |r: &Row| {
        q.kind.is_none_or(|k| r.kind == k)
            && devices.as_ref().is_none_or(|s| s.contains(&r.device))
            && subjects.as_ref().is_none_or(|s| s.contains(&r.subject))
    };
    let key = |r: &Row| match q.newest_first {
        false => (r.ts_ms, r.seq),
        true => (i64::MAX.saturating_sub(r.ts_ms), u64::MAX - r.seq),
    };
    let mut heap: BinaryHeap<Held> = BinaryHeap::with_capacity(depth.min(4096) + 1);
    let mut total = 0u64;
    let mut failed = None;
    let finished = ctx.store.scan_range_with_attrs_unless(
        q.from_ms,
        q.to_ms,
        communities.as_deref(),
        || ctx.check_deadline().is_err(),
        keep,
        |row, attrs| {
            if failed.is_some() {
                return;
            }
            if let (Some(codes), Some(devices)) = (&q.tollgates, &tollgate_devices) {
                let at = match attr_text(&attrs, TOLLGATE_ATTR) {
                    Ok(Some(t)) => codes.contains(&t),
                    Ok(None) => devices.contains(&row.device),
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                if !at {
                    return;
                }
            }
            if !q.attrs.is_empty() {
                match attrs_match(&attrs, &q.attrs) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                }
            }
            total += 1;
            let k = key(&row);
            if heap.len() == depth {
                match heap.peek() {
                    Some(worst) if worst.key > k => {
                        heap.pop();
                    }
                    _ => return,
                }
            }
            heap.push(Held { key: k, row, attrs });
        },
    )?;
    if let Some(e) = failed {
        return Err(e);
    }
    if !finished {
        return Err(QueryError::DeadlineExceeded);
    }
    let held = heap.into_sorted_vec();
    debug_assert!(held.windows(2).all(|w| w[0].key <= w[1].key));
    let (rows, attrs_at): (Vec<Row>, Vec<AttrsAt>) = held
        .into_iter()
        .skip(q.skip)
        .map(|h| (h.row, h.attrs))
        .unzip();
    Ok(ObjectPage {
        total,
        events: sightings(ctx.store, &rows),
        attrs_at,
    })
}

/// Visits the attributes of the event at `at`; an encoding that does not decode is a
/// storage error.
fn visit_at(at: &AttrsAt, f: impl FnMut(&str, AttrRef<'_>)) -> Result<()> {
    let bytes = at.bytes()?;
    visit_attrs(&bytes, f).map_err(|reason| {
        QueryError::Storage(sightline_storage::StorageError::Corrupt {
            path: std::path::PathBuf::new(),
            offset: 0,
            reason,
        })
    })
}

/// Attribute `key` of the event at `at`, as text, if it has one.
fn attr_text(at: &AttrsAt, key: &str) -> Result<Option<String>> {
    let mut found = None;
    visit_at(at, |k, v| {
        if k == key {
            found = Some(match v {
                AttrRef::Str(s) => s.to_string(),
                AttrRef::Int(n) => n.to_string(),
                AttrRef::Float(f) => f.to_string(),
                AttrRef::Bool(b) => b.to_string(),
            });
        }
    })?;
    Ok(found)
}

/// Whether the encoded attributes hold, for every condition, its key with one of its
/// values (compared as text).
fn attrs_match(at: &AttrsAt, conditions: &[(String, Vec<String>)]) -> Result<bool> {
    let mut met = vec![false; conditions.len()];
    visit_at(at, |k, v| {
        for (i, (key, values)) in conditions.iter().enumerate() {
            if key != k {
                continue;
            }
            met[i] = match v {
                AttrRef::Str(s) => values.iter().any(|x| x == s),
                AttrRef::Int(n) => values.iter().any(|x| x.parse() == Ok(n)),
                AttrRef::Float(f) => values.iter().any(|x| x.parse() == Ok(f)),
                AttrRef::Bool(b) => values.iter().any(|x| x.parse() == Ok(b)),
            };
        }
    })?;
    Ok(met.into_iter().all(|m| m))
}
