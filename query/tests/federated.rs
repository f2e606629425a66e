//! Federated queries against one store: the same random events go into one store and
//! into P stores split by community (P from 1 to 4, any split, empty partitions
//! included), and every query family's merged answer must equal the one store's, event
//! ids mapped (the one store gets the events partition by partition, so its arrival
//! order is the cluster ids' order and ties in (ts, device) fall alike).
//!
//! The events are those of `oracle.rs` (a coarse grid around local midnights, a handful
//! of subjects) over four communities, with a gate shared by neighbouring communities
//! (one device reporting to two communities, which may be in different partitions).
//! Every partition is reached through a client that sends the request and the answer
//! through bincode or JSON, as a remote partition would.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sightline_index::{StoreIndex, Vocabulary};
use sightline_query::federated::{
    cluster_id, partition_of, split_cluster_id, Answer, Call, Failure, Federation, LocalPartition,
    Partition, Request,
};
use sightline_query::*;
use sightline_storage::{
    Appended, AttrValue, Attrs, Direction, EventInput, Kind, ManualClock, StorageError, Store,
    StoreConfig,
};

/// 2021-09-01T00:00:00+08:00: a local midnight.
const DAY0: i64 = 1_630_425_600_000;
const MIN: i64 = 60_000;
const COMMUNITIES: u8 = 4;

fn community(c: u8) -> String {
    format!("320508000{c}")
}
/// Slots 0 and 1 are the community's own devices; slot 2 is the gate it shares with
/// the next community (device 0 of that one).
fn device(c: u8, d: u8) -> String {
    let (c, d) = if d == 2 {
        ((c + 1) % COMMUNITIES, 0)
    } else {
        (c, d)
    };
    format!("320508{c:02}011210000{d:03}")
}
fn subject_of(kind: Kind, n: u8) -> String {
    match kind {
        Kind::Vehicle => format!("苏E0000{n}"),
        _ => format!("F{n}"),
    }
}

/// (ts, community, device slot, kind, subject, direction) before storing.
type Raw = (i64, u8, u8, Kind, u8, Direction);

/// One read, or (an echo) the same read through the shared gate reported to both its
/// communities: equal (ts, device, subject) in two communities, maybe two partitions.
fn reads(dense: bool) -> impl Strategy<Value = Vec<Raw>> {
    (raw_event(dense), prop::bool::weighted(0.25)).prop_map(|(r, echo)| {
        let (ts, c, _, k, s, dir) = r;
        match echo {
            true => vec![
                (ts, c, 2, k, s, dir),
                (ts, (c + 1) % COMMUNITIES, 0, k, s, dir),
            ],
            false => vec![r],
        }
    })
}

/// A read on the grid; `dense`: on two hours only, so subjects meet often.
fn raw_event(dense: bool) -> impl Strategy<Value = Raw> {
    let hours = match dense {
        true => vec![11i64, 23],
        false => vec![-1i64, 0, 11, 12, 23, 24, 47, 48],
    };
    (
        (prop::sample::select(hours), 0i64..4, 0i64..2),
        0u8..COMMUNITIES,
        prop_oneof![3 => 0u8..2, 1 => Just(2u8)],
        prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        0u8..4,
        prop_oneof![
            Just(Direction::In),
            Just(Direction::Out),
            Just(Direction::Unknown)
        ],
    )
        .prop_map(|((h, m, half), c, d, k, s, dir)| {
            (
                DAY0 + h * HOUR_MS + m * MIN + half * 30_000,
                c,
                d,
                k,
                s,
                dir,
            )
        })
}

/// Batches (sealed after when flagged), index attached first, partitions, and each
/// community's partition.
type Scenario = (Vec<Vec<Raw>>, Vec<bool>, bool, u16, Vec<u16>);

fn scenario() -> impl Strategy<Value = Scenario> {
    any::<bool>().prop_flat_map(scenario_of)
}

fn scenario_of(dense: bool) -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(
            prop::collection::vec(reads(dense), 0..32).prop_map(|b| b.concat()),
            1..4,
        ),
        prop::collection::vec(any::<bool>(), 3),
        any::<bool>(),
        (1u16..5).prop_flat_map(|p| (Just(p), prop::collection::vec(0..p, COMMUNITIES as usize))),
    )
        .prop_map(|(b, s, i, (p, assign))| (b, s, i, p, assign))
}

/// `[from, to)` mostly on the hours events fall on.
fn range() -> impl Strategy<Value = (i64, i64)> {
    let hour = prop_oneof![
        3 => prop::sample::select(vec![-1i64, 0, 11, 12, 23, 24, 47, 48]),
        1 => -4i64..50,
    ];
    let len = prop_oneof![
        3 => prop::sample::select(vec![1i64, 12, 24, 25, 48]),
        1 => 1i64..56,
    ];
    (hour, len).prop_map(|(a, len)| (DAY0 + a * HOUR_MS, DAY0 + (a + len) * HOUR_MS))
}

/// A caller's communities, or none (unscoped).
fn scope() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop::option::of(prop::collection::btree_set(0u8..COMMUNITIES, 0..4))
        .prop_map(|s| s.map(|s| s.into_iter().collect()))
}

struct Node {
    _dir: tempfile::TempDir,
    store: Store,
    index: Arc<StoreIndex>,
    vocab: Vocabulary,
}

fn node(index_first: bool) -> (tempfile::TempDir, Store, Option<Arc<StoreIndex>>) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(DAY0 + 10 * DAY_MS));
    let store = Store::open_with_clock(dir.path(), StoreConfig::default(), clock).unwrap();
    let index = index_first.then(|| StoreIndex::attach(&store).unwrap());
    (dir, store, index)
}

fn finish((dir, store, index): (tempfile::TempDir, Store, Option<Arc<StoreIndex>>)) -> Node {
    let index = index.unwrap_or_else(|| StoreIndex::attach(&store).unwrap());
    let vocab = Vocabulary::in_memory().unwrap();
    vocab.catch_up(&store).unwrap();
    Node {
        _dir: dir,
        store,
        index,
        vocab,
    }
}

/// Appends `raws` (`n` numbers them: their source ids), returns their seqs.
fn append(store: &Store, raws: &[(usize, Raw)]) -> Vec<u64> {
    let valid: Vec<_> = raws
        .iter()
        .map(|&(n, (ts, c, d, kind, s, direction))| {
            let mut attrs = Attrs::new();
            attrs.insert("source_id".into(), AttrValue::Str(format!("ev{n}")));
            attrs.insert("n".into(), AttrValue::Int(n as i64));
            store
                .validate(EventInput {
                    ts_ms: ts,
                    community: community(c),
                    device: device(c, d),
                    kind: kind.as_str().into(),
                    subject: subject_of(kind, s),
                    direction: direction.as_str().into(),
                    attrs,
                })
                .unwrap()
        })
        .collect();
    store
        .append(&valid)
        .unwrap()
        .results
        .iter()
        .map(|r| match r {
            Appended::Stored { seq } => *seq,
            r => panic!("not stored: {r:?}"),
        })
        .collect()
}

fn seal_all(store: &Store) {
    for s in store.shards() {
        store.seal_shard(s.key).unwrap();
    }
}

struct Cluster {
    one: Node,
    parts: Vec<Node>,
    assign: Vec<u16>,
    /// The one store's seq → the cluster id of the same event.
    to_cluster: HashMap<u64, u64>,
    /// Every event's cluster id and community.
    ids: Vec<(u64, u8)>,
}

/// The partitions holding events of the subject `(kind, s)` within `[from, to)`: what
/// an exact subject → partitions directory names (the tightest routing that is right).
fn holders(sc: &Scenario, kind: Kind, s: u8, from: i64, to: i64) -> Vec<u16> {
    let mut ps: Vec<u16> =
        sc.0.iter()
            .flatten()
            .filter(|r| r.3 == kind && r.4 == s && r.0 >= from && r.0 < to)
            .map(|r| sc.4[r.1 as usize])
            .collect();
    ps.sort_unstable();
    ps.dedup();
    ps
}

fn load((batches, seals, index_first, p, assign): &Scenario) -> Cluster {
    let one = node(*index_first);
    let mut parts: Vec<_> = (0..*p).map(|_| node(*index_first)).collect();
    let numbered: Vec<Vec<(usize, Raw)>> = {
        let mut n = 0;
        batches
            .iter()
            .map(|b| {
                b.iter()
                    .map(|r| {
                        n += 1;
                        (n, *r)
                    })
                    .collect()
            })
            .collect()
    };
    let mut to_cluster = HashMap::new();
    let mut ids = Vec::new();
    for (pi, part) in parts.iter_mut().enumerate() {
        for (i, batch) in numbered.iter().enumerate() {
            let here: Vec<(usize, Raw)> = batch
                .iter()
                .filter(|(_, r)| assign[r.1 as usize] as usize == pi)
                .cloned()
                .collect();
            let a = append(&one.1, &here);
            let b = append(&part.1, &here);
            for ((x, y), (_, r)) in a.into_iter().zip(b).zip(&here) {
                let id = cluster_id(pi as u16, y);
                to_cluster.insert(x, id);
                ids.push((id, r.1));
            }
            if seals.get(i).copied().unwrap_or(false) {
                seal_all(&part.1);
                seal_all(&one.1);
            }
        }
    }
    Cluster {
        one: finish(one),
        parts: parts.into_iter().map(finish).collect(),
        assign: assign.clone(),
        to_cluster,
        ids,
    }
}

/// A partition reached through an encoding, as over the network: the request and the
/// answer are encoded and decoded (bincode 2 or JSON).
struct Wire<'a> {
    inner: LocalPartition<'a>,
    json: bool,
}

impl Partition for Wire<'_> {
    fn answer(&self, request: &Request) -> Result<Answer> {
        let request: Request = self.roundtrip(request);
        match self.inner.answer(&request) {
            Ok(answer) => Ok(self.roundtrip(&answer)),
            Err(e) => Err(self.roundtrip(&Failure::from(&e)).into_error()),
        }
    }
}

impl Wire<'_> {
    fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: &T) -> T {
        if self.json {
            serde_json::from_slice(&serde_json::to_vec(value).unwrap()).unwrap()
        } else {
            let config = bincode::config::standard();
            let bytes = bincode::serde::encode_to_vec(value, config).unwrap();
            bincode::serde::decode_from_slice(&bytes, config).unwrap().0
        }
    }
}

impl Cluster {
    fn federation(&self, placed: bool) -> Federation<'_> {
        let partitions: Vec<Box<dyn Partition + '_>> = self
            .parts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Box::new(Wire {
                    inner: LocalPartition {
                        id: i as u16,
                        store: &n.store,
                        index: &n.index,
                        vocabulary: Some(&n.vocab),
                    },
                    json: i % 2 == 1,
                }) as Box<dyn Partition>
            })
            .collect();
        let assign = self.assign.clone();
        let placement = placed.then(|| -> federated::Placement<'_> {
            Box::new(move |code: &str| {
                (0..COMMUNITIES)
                    .find(|&c| community(c) == code)
                    .map_or(0, |c| assign[c as usize])
            })
        });
        Federation::new(partitions).with_placement(placement)
    }

    /// The one store's context in the caller's scope, and the federation's call.
    fn scoped<'a>(
        &'a self,
        scope: &Option<Vec<u8>>,
        ids: &'a mut Vec<u32>,
    ) -> (QueryContext<'a>, Call) {
        let ctx = QueryContext::new(&self.one.store, &self.one.index);
        match scope {
            None => (ctx, Call::default()),
            Some(cs) => {
                let d = self.one.store.dictionaries();
                ids.extend(cs.iter().filter_map(|&c| d.community_id(&community(c))));
                ids.sort_unstable();
                drop(d);
                let call = Call {
                    scope: Some(cs.iter().map(|&c| community(c)).collect()),
                    deadline: None,
                };
                (ctx.scoped(ids), call)
            }
        }
    }

    fn map(&self, s: &Sighting) -> Sighting {
        Sighting {
            seq: self.to_cluster[&s.seq],
            ..s.clone()
        }
    }

    fn map_cursor(&self, c: &Option<Cursor>) -> Option<Cursor> {
        c.as_ref().map(|c| Cursor {
            seq: self.to_cluster[&c.seq],
            ..c.clone()
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn trajectory_pages_and_stays_match_one_store(
        sc in scenario(),
        (from, to) in prop_oneof![1 => range(), 2 => Just((DAY0 - 2 * HOUR_MS, DAY0 + 50 * HOUR_MS))],
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        pick in prop_oneof![1 => Just(None), 3 => any::<prop::sample::Index>().prop_map(Some)],
        only in prop_oneof![3 => Just(None), 1 => prop::option::of(prop::collection::vec(0u8..COMMUNITIES, 1..3))],
        scope in prop_oneof![3 => Just(None), 1 => scope()],
        limit in 1usize..7,
        routed in any::<bool>(),
    ) {
        // Mostly the subject of a stored event, so there is a trajectory to page.
        let all: Vec<&Raw> = sc.0.iter().flatten().collect();
        let (kind, s) = match pick {
            Some(i) if !all.is_empty() => (all[i.index(all.len())].3, all[i.index(all.len())].4),
            _ => (kind, s),
        };
        let cl = load(&sc);
        // Asking only the partitions a directory names changes nothing.
        let fed = cl.federation(true).with_subject_partitions(routed.then(|| holders(&sc, kind, s, from, to)));
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let communities = only.map(|cs| cs.iter().map(|&c| community(c)).collect::<Vec<_>>());
        let query = |cursor| TrajectoryQuery {
            kind, subject: subject_of(kind, s), from_ms: from, to_ms: to,
            communities: communities.clone(), cursor, limit,
        };
        let (mut c1, mut c2) = (None, None);
        let mut pages = 0;
        loop {
            let want = trajectory(&ctx, &query(c1.clone())).unwrap();
            let got = fed.trajectory(&call, &query(c2.clone())).unwrap();
            let events: Vec<Sighting> = want.events.iter().map(|e| cl.map(e)).collect();
            prop_assert_eq!(&got.events, &events, "page {}", pages);
            prop_assert_eq!(&got.attrs, &want.attrs().unwrap());
            prop_assert_eq!(&got.stays, &want.stays);
            prop_assert_eq!(got.stays_truncated, want.stays_truncated);
            prop_assert_eq!(&got.next_cursor, &cl.map_cursor(&want.next_cursor));
            pages += 1;
            match (want.next_cursor, got.next_cursor) {
                (Some(a), Some(b)) => {
                    c1 = Some(a);
                    // The cursor survives its text form.
                    c2 = Some(b.to_string().parse::<Cursor>().unwrap());
                }
                _ => break,
            }
        }
    }

    /// The streamed trajectory (NDJSON answers): the same events and count as one
    /// store's stream, in pages.
    #[test]
    fn trajectory_streams_match_one_store(
        sc in scenario(),
        pick in any::<prop::sample::Index>(),
        page_size in 1usize..5,
        skip in 0usize..4,
        stop_after in prop::option::of(1usize..4),
        routed in any::<bool>(),
    ) {
        let all: Vec<&Raw> = sc.0.iter().flatten().collect();
        let (kind, s) = match all.is_empty() {
            true => (Kind::Face, 1),
            false => (all[pick.index(all.len())].3, all[pick.index(all.len())].4),
        };
        let cl = load(&sc);
        let (from, to) = (DAY0 - 2 * HOUR_MS, DAY0 + 50 * HOUR_MS);
        let fed = cl.federation(true).with_subject_partitions(routed.then(|| holders(&sc, kind, s, from, to)));
        let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
        let q = TrajectoryQuery {
            kind, subject: subject_of(kind, s), from_ms: DAY0 - 2 * HOUR_MS, to_ms: DAY0 + 50 * HOUR_MS,
            communities: None, cursor: None, limit: 1,
        };
        // Start after the `skip`th event, through a cursor from a page.
        let skip = skip.min(trajectory(&ctx, &TrajectoryQuery { limit: 10_000, ..q.clone() }).unwrap().events.len());
        let (q1, q2) = match skip {
            0 => (q.clone(), q.clone()),
            n => {
                let a = trajectory(&ctx, &TrajectoryQuery { limit: n, ..q.clone() }).unwrap().next_cursor;
                let b = fed.trajectory(&Call::default(), &TrajectoryQuery { limit: n, ..q.clone() }).unwrap().next_cursor;
                (TrajectoryQuery { cursor: a, ..q.clone() }, TrajectoryQuery { cursor: b, ..q.clone() })
            }
        };
        let (mut want, mut got) = (Vec::new(), Vec::new());
        let (mut want_count, mut got_count) = (None, None);
        let mut pages = 0;
        let n1 = trajectory_pages(&ctx, &q1, page_size, |n| { want_count = Some(n); true }, |events, attrs| {
            assert!(events.len() <= page_size);
            want.extend(events.iter().map(|e| cl.map(e)).zip(attrs.iter().map(|a| a.decode().unwrap())));
            pages += 1;
            stop_after.is_none_or(|s| pages < s)
        }).unwrap();
        pages = 0;
        let n2 = fed.trajectory_pages(&Call::default(), &q2, page_size, |n| { got_count = Some(n); true }, |events, attrs| {
            assert!(events.len() <= page_size && events.len() == attrs.len());
            got.extend(events.iter().cloned().zip(attrs.iter().cloned()));
            pages += 1;
            stop_after.is_none_or(|s| pages < s)
        }).unwrap();
        prop_assert_eq!(want_count, got_count);
        prop_assert_eq!(n1, n2);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn cooccurrence_matches_one_store(
        sc in scenario(),
        (from, to) in range(),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        only in prop::option::of(prop::collection::vec(0u8..COMMUNITIES, 1..3)),
        window_s in prop_oneof![Just(0i64), Just(30), Just(60), Just(90)],
        min_count in 1u32..3,
        device_scope in any::<bool>(),
        candidate_kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        dedup_s in prop::option::of(prop_oneof![Just(0i64), Just(30), Just(120)]),
        limit in 1usize..10,
        scope in scope(),
        placed in any::<bool>(),
        routed in any::<bool>(),
    ) {
        let cl = load(&sc);
        let fed = cl.federation(placed).with_subject_partitions(routed.then(|| holders(&sc, kind, s, from, to)));
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let q = Cooccurrence {
            kind, subject: subject_of(kind, s), from_ms: from, to_ms: to,
            communities: only.map(|cs| cs.iter().map(|&c| community(c)).collect()),
            window_ms: window_s * 1000, min_count,
            scope: if device_scope { Scope::Device } else { Scope::Community },
            candidate_kind, dedup_gap_ms: dedup_s.map(|g| g * 1000), limit,
        };
        let want = cooccurrence(&ctx, &q).unwrap();
        let got = fed.cooccurrence(&call, &q).unwrap();
        let plain = |cs: &[Candidate]| cs.iter()
            .map(|c| (c.kind, c.subject.clone(), c.hits, c.devices, c.days, c.first_ms, c.last_ms))
            .collect::<Vec<_>>();
        prop_assert_eq!(plain(&got), plain(&want));
        // Lift sums the same terms in another order: equal up to rounding.
        for (g, w) in got.iter().zip(&want) {
            prop_assert!((g.lift - w.lift).abs() <= 1e-9 * w.lift.max(1.0), "lift {} want {}", g.lift, w.lift);
        }
    }

    #[test]
    fn collision_counts_and_patterns_match_one_store(
        sc in scenario(),
        (from, to) in range(),
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        s in 0u8..4,
        conds in prop::collection::vec((any::<bool>(), prop::collection::vec((0u8..COMMUNITIES, 0u8..3), 1..3), range()), 1..5),
        k in 1usize..4,
        limit in 1usize..6,
        scope in scope(),
        placed in any::<bool>(),
        (min_count, min_days) in (prop::option::of(1u32..6), prop::option::of(1u32..3)),
        lookback in 0u32..3,
        (day_start, day_end, min_night, max_day) in (0u32..12, 12u32..25, 0u32..4, 0u32..4),
        (morning, evening) in (0u32..12, 12u32..25),
        by in prop_oneof![Just(CountKey::Community), Just(CountKey::Device), Just(CountKey::Kind)],
        hourly in any::<bool>(),
        only in prop::option::of(prop::collection::vec(0u8..COMMUNITIES, 1..3)),
    ) {
        let cl = load(&sc);
        let fed = cl.federation(placed);
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let communities = only.map(|cs| cs.iter().map(|&c| community(c)).collect::<Vec<_>>());

        let conditions: Vec<Condition> = conds.iter().map(|(by_device, places, (from, to))| Condition {
            place: if *by_device {
                Place::Devices(places.iter().map(|&(c, d)| device(c, d)).collect())
            } else {
                Place::Communities(places.iter().map(|&(c, _)| community(c)).collect())
            },
            from_ms: *from, to_ms: *to,
        }).collect();
        let q = Collision { kind, conditions, min_conditions: k.min(conds.len()), limit };
        prop_assert_eq!(fed.collision(&call, &q).unwrap(), collision(&ctx, &q).unwrap());

        let q = Counts {
            from_ms: from, to_ms: to, communities: communities.clone(), kind: Some(kind).filter(|_| hourly),
            by, per: if hourly { Granularity::Hour } else { Granularity::Day },
        };
        prop_assert_eq!(fed.counts(&call, &q).unwrap(), counts(&ctx, &q).unwrap());

        for c in 0..COMMUNITIES {
            if min_count.is_some() || min_days.is_some() {
                let q = FrequencyQuery {
                    community: community(c), kind, from_ms: from, to_ms: to, min_count, min_days, limit,
                };
                prop_assert_eq!(fed.frequency(&call, &q).unwrap(), frequency(&ctx, &q).unwrap());
            }
            let q = FirstSeenQuery {
                community: community(c), kind, from_ms: from, to_ms: to, lookback_days: lookback, limit,
            };
            prop_assert_eq!(fed.first_seen(&call, &q).unwrap(), first_seen(&ctx, &q).unwrap());
        }

        let mut q = NocturnalQuery::new(kind, from, to);
        (q.day_start_hour, q.day_end_hour, q.min_night, q.max_day) = (day_start, day_end, min_night, max_day);
        q.communities = communities;
        q.limit = limit;
        prop_assert_eq!(fed.nocturnal(&call, &q).unwrap(), nocturnal(&ctx, &q).unwrap());

        let mut q = OvernightQuery::new(kind, &subject_of(kind, s), from, to);
        (q.morning_hour, q.evening_hour) = (morning, evening);
        prop_assert_eq!(fed.overnight(&call, &q).unwrap(), overnight(&ctx, &q).unwrap());
    }

    /// One subject's travels only (no other events), on a grid where its reads in
    /// different communities and partitions follow and interleave closely: stays
    /// stitched from runs, and from events where runs interleave.
    #[test]
    fn stays_of_one_traveller_match_one_store(
        reads in prop::collection::vec(
            (0i64..3, 0i64..4, 0u8..COMMUNITIES, 0u8..3, prop_oneof![
                Just(Direction::In), Just(Direction::Out), Just(Direction::Unknown)
            ]),
            1..40,
        ),
        (p, assign) in (1u16..5).prop_flat_map(|p| (Just(p), prop::collection::vec(0..p, COMMUNITIES as usize))),
        index_first in any::<bool>(),
        limit in 1usize..20,
    ) {
        let raws: Vec<Raw> = reads
            .into_iter()
            .map(|(h, m, c, d, dir)| (DAY0 + h * HOUR_MS + m * 10 * MIN, c, d, Kind::Face, 1, dir))
            .collect();
        let cl = load(&(vec![raws], vec![false], index_first, p, assign));
        let fed = cl.federation(true);
        let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
        let q = TrajectoryQuery {
            kind: Kind::Face, subject: subject_of(Kind::Face, 1), from_ms: DAY0, to_ms: DAY0 + DAY_MS,
            communities: None, cursor: None, limit,
        };
        let want = trajectory(&ctx, &q).unwrap();
        let got = fed.trajectory(&Call::default(), &q).unwrap();
        prop_assert_eq!(got.stays, want.stays);
        let events: Vec<Sighting> = want.events.iter().map(|e| cl.map(e)).collect();
        prop_assert_eq!(got.events, events);
    }

    /// Nocturnal over a few subjects seen by night in some partitions and by day in
    /// others: night sums from round 1, day counts completed by round 2.
    #[test]
    fn nocturnal_across_partitions_matches_one_store(
        reads in prop::collection::vec(
            (prop::sample::select(vec![2i64, 10, 22, 26, 34, 46]), 0u8..COMMUNITIES, 0u8..3, 0u8..3),
            1..40,
        ),
        (p, assign) in (1u16..5).prop_flat_map(|p| (Just(p), prop::collection::vec(0..p, COMMUNITIES as usize))),
        (min_night, max_day) in (0u32..4, 0u32..5),
        limit in 1usize..4,
        scope in prop_oneof![2 => Just(None), 1 => scope()],
    ) {
        let raws: Vec<Raw> = reads
            .into_iter()
            .map(|(h, c, d, s)| (DAY0 + h * HOUR_MS, c, d, Kind::Face, s, Direction::In))
            .collect();
        let cl = load(&(vec![raws], vec![true], false, p, assign));
        let fed = cl.federation(true);
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let mut q = NocturnalQuery::new(Kind::Face, DAY0, DAY0 + 2 * DAY_MS);
        (q.min_night, q.max_day, q.limit) = (min_night, max_day, limit);
        prop_assert_eq!(fed.nocturnal(&call, &q).unwrap(), nocturnal(&ctx, &q).unwrap());
    }

    /// Collision with each condition at one place (a community, or a device: the shared
    /// gates reach two communities) and at least two conditions to meet, so subjects
    /// meet them in different partitions.
    #[test]
    fn collision_across_partitions_matches_one_store(
        sc in scenario_of(true),
        conds in prop::collection::vec((any::<bool>(), 0u8..COMMUNITIES, 0u8..3, prop::sample::select(vec![11i64, 23])), 2..6),
        k in 2usize..5,
        kind in prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)],
        limit in 1usize..20,
        scope in scope(),
        placed in any::<bool>(),
    ) {
        let cl = load(&sc);
        let fed = cl.federation(placed);
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let conditions: Vec<Condition> = conds.iter().map(|&(by_device, c, d, hour)| Condition {
            place: match by_device {
                true => Place::Devices(vec![device(c, d)]),
                false => Place::Communities(vec![community(c)]),
            },
            from_ms: DAY0 + hour * HOUR_MS,
            to_ms: DAY0 + (hour + 1) * HOUR_MS,
        }).collect();
        let q = Collision { kind, conditions, min_conditions: k.min(conds.len()), limit };
        prop_assert_eq!(fed.collision(&call, &q).unwrap(), collision(&ctx, &q).unwrap());
    }

    #[test]
    fn search_and_events_by_id_match_one_store(
        sc in scenario(),
        scope in scope(),
        pattern in prop::sample::select(vec!["苏E", "苏E00001", "F", "F2", "苏E0000?", "*1", "苏EO0003", "F9", "f-1", "苏e·00002", "f?"]),
        mode in prop_oneof![
            Just(SearchMode::Exact), Just(SearchMode::Prefix), Just(SearchMode::Wildcard),
            Just(SearchMode::Fuzzy { distance: 1 }), Just(SearchMode::Fuzzy { distance: 2 })
        ],
        kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        limit in 1usize..6,
    ) {
        let cl = load(&sc);
        let fed = cl.federation(true);
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let q = SearchQuery { pattern: pattern.into(), mode, kind, limit };
        let want = search(&ctx, &cl.one.vocab, &q);
        let got = fed.search(&call, &q);
        match (got, want) {
            (Ok(g), Ok(w)) => prop_assert_eq!(g, w),
            (Err(g), Err(w)) => prop_assert_eq!(g.to_string(), w.to_string()),
            (g, w) => prop_assert!(false, "federated {:?}, one store {:?}", g, w),
        }

        // Every event by its id, in and out of the scope; and ids no event has.
        let back: HashMap<u64, u64> = cl.to_cluster.iter().map(|(a, b)| (*b, *a)).collect();
        for &(id, _) in &cl.ids {
            let want = event_by_id(&ctx, back[&id]).unwrap().map(|(s, at)| (cl.map(&s), at.decode().unwrap()));
            prop_assert_eq!(fed.event(&call, id).unwrap(), want);
        }
        let p = cl.parts.len() as u16;
        for id in [cluster_id(0, 0), cluster_id(p - 1, 1 << 40), cluster_id(p, 1)] {
            prop_assert_eq!(fed.event(&call, id).unwrap(), None);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Objects by conditions (GA/T 1400.4's list query), every page of them at a
    /// random page size and a random first record, both orders: the merged page, its
    /// attributes and `TotalNum` are the one store's, event ids mapped; a refusal is
    /// the one store's.
    #[test]
    fn object_pages_match_one_store(
        sc in scenario(),
        scope in scope(),
        (from, to) in range(),
        kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        devices in prop::option::of(prop::collection::vec((0u8..COMMUNITIES, 0u8..3), 1..3)),
        subjects in prop::option::of(prop::collection::vec(0u8..4, 1..3)),
        odd_only in any::<bool>(),
        limit in 1usize..7,
        first in 0usize..5,
        newest_first in any::<bool>(),
        placed in any::<bool>(),
    ) {
        let cl = load(&sc);
        let fed = cl.federation(placed);
        let mut ids = Vec::new();
        let (ctx, call) = cl.scoped(&scope, &mut ids);
        let n: Vec<String> = (1..200).filter(|n| n % 2 == 1).map(|n: i64| n.to_string()).collect();
        let mut q = ObjectQuery {
            kind,
            from_ms: from,
            to_ms: to,
            devices: devices.map(|ds| ds.into_iter().map(|(c, d)| device(c, d)).collect()),
            tollgates: None,
            subjects: subjects.map(|ss| {
                ss.into_iter().map(|s| subject_of(kind.unwrap_or(Kind::Vehicle), s)).collect()
            }),
            attrs: if odd_only { vec![("n".into(), n)] } else { Vec::new() },
            skip: first,
            limit,
            newest_first,
        };
        loop {
            let want = objects(&ctx, &q);
            let got = fed.objects(&call, &q);
            let (want, got) = match (want, got) {
                (Ok(w), Ok(g)) => (w, g),
                (Err(w), Err(g)) => {
                    prop_assert_eq!(g.to_string(), w.to_string());
                    break;
                }
                (w, g) => {
                    prop_assert!(false, "federated {:?}, one store {:?}", g.map(|g| g.total), w.map(|w| w.total));
                    unreachable!()
                }
            };
            prop_assert_eq!(got.total, want.total);
            let mapped: Vec<(Sighting, Attrs)> = want
                .events
                .iter()
                .zip(&want.attrs_at)
                .map(|(s, at)| (cl.map(s), at.decode().unwrap()))
                .collect();
            prop_assert_eq!(&got.events, &mapped);
            if want.events.len() < limit {
                break;
            }
            q.skip += limit;
        }
    }
}

/// A partition that fails every `every`-th call (counting from the first), as a
/// partition whose replicas and owner are all away for a moment.
struct Flaky<'a> {
    inner: Wire<'a>,
    every: usize,
    calls: std::sync::atomic::AtomicUsize,
}

impl Partition for Flaky<'_> {
    fn answer(&self, request: &Request) -> Result<Answer> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.every > 0 && n.is_multiple_of(self.every) {
            return Err(QueryError::Remote {
                message: "away".into(),
            });
        }
        self.inner.answer(request)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The change feed read to its end in pages, through partitions that now and then
    /// fail, returns every event of the one store (in the scope, of the kind) exactly
    /// once, each partition's in its own order; then nothing more.
    #[test]
    fn the_feed_read_to_its_end_returns_every_event_once(
        sc in scenario(),
        scope in scope(),
        kind in prop::option::of(prop_oneof![Just(Kind::Vehicle), Just(Kind::Face)]),
        limit in 1usize..40,
        every in prop::sample::select(vec![0usize, 2, 3]),
        placed in any::<bool>(),
    ) {
        let cl = load(&sc);
        let partitions: Vec<Box<dyn Partition + '_>> = cl
            .parts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                Box::new(Flaky {
                    inner: Wire {
                        inner: LocalPartition {
                            id: i as u16,
                            store: &n.store,
                            index: &n.index,
                            vocabulary: Some(&n.vocab),
                        },
                        json: i % 2 == 1,
                    },
                    // The first partition always answers, so a page never fails whole.
                    every: if i == 0 { 0 } else { every },
                    calls: Default::default(),
                }) as Box<dyn Partition>
            })
            .collect();
        let assign = cl.assign.clone();
        let placement = placed.then(|| -> federated::Placement<'_> {
            Box::new(move |code: &str| {
                (0..COMMUNITIES)
                    .find(|&c| community(c) == code)
                    .map_or(0, |c| assign[c as usize])
            })
        });
        let fed = Federation::new(partitions).with_placement(placement);
        let mut ids = Vec::new();
        let (_, call) = cl.scoped(&scope, &mut ids);
        // The one store's feed: every event in the scope, of the kind.
        let one = &cl.one.store;
        let rows = one
            .scan_seq_range(0, one.applied_through(), usize::MAX, scope.as_ref().map(|_| &ids[..]))
            .unwrap();
        let rows: Vec<_> = rows.into_iter().map(|(r, _)| r).filter(|r| kind.is_none_or(|k| k == r.kind)).collect();
        let mut want: Vec<Sighting> = sightings(one, &rows).iter().map(|s| cl.map(s)).collect();
        want.sort_by_key(|s| s.seq);

        let ask = federated::FeedAsk { after: 0, limit, kind, communities: None };
        let mut cursor = federated::FeedCursor::start(cl.parts.len() as u16);
        let mut got: Vec<Sighting> = Vec::new();
        let mut empty_whole = 0;
        for _ in 0..10_000 {
            let page = fed.feed(&call, &cursor, &ask).unwrap();
            prop_assert!(page.events.len() <= limit);
            for (p, pos) in cursor.0.iter().enumerate() {
                prop_assert!(page.next.0[p] >= *pos, "a position went back");
            }
            // The cursor as text and back, as a client keeps it.
            let text = page.next.to_string();
            let next = federated::FeedCursor::parse(&text, cl.parts.len() as u16).unwrap();
            prop_assert_eq!(&next, &page.next);
            let whole = page.unavailable.is_empty();
            let none = page.events.is_empty();
            // A page the filters emptied, with more past it, is not the end.
            let more = page.more;
            got.extend(page.events.into_iter().map(|(s, _)| s));
            // At its end when every partition answered, with nothing, nothing more
            // past it, and the cursor did not move (a page may be empty while it moves
            // past events of another kind, as `serve`'s does), twice in a row.
            let moved = next != cursor;
            cursor = next;
            match none && whole && !more && !moved {
                true => empty_whole += 1,
                false => empty_whole = 0,
            }
            if empty_whole == 2 {
                break;
            }
        }
        // Each partition's events in its own order.
        let mut last: HashMap<u16, u64> = HashMap::new();
        for s in &got {
            let (p, seq) = split_cluster_id(s.seq);
            prop_assert!(last.insert(p, seq).is_none_or(|before| before < seq), "out of order");
        }
        got.sort_by_key(|s| s.seq);
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------- edges

fn small_cluster() -> Cluster {
    let batch: Vec<Raw> = (0..COMMUNITIES)
        .flat_map(|c| {
            (0..4u8).map(move |s| {
                (
                    DAY0 + 23 * HOUR_MS + s as i64 * MIN,
                    c,
                    s % 3,
                    if s % 2 == 0 {
                        Kind::Vehicle
                    } else {
                        Kind::Face
                    },
                    s,
                    Direction::In,
                )
            })
        })
        .collect();
    load(&(vec![batch], vec![true], false, 2, vec![0, 1, 1, 0]))
}

/// Pages over events that tie on (ts, device) in communities of different partitions
/// (a shared gate reporting one passage to both): the cursor of a page that ends
/// inside a tie must lead the next page to the tie's events in later partitions, and
/// to none in earlier ones.
#[test]
fn ties_across_partitions_are_paged_without_skipping_or_repeating() {
    let mut batch: Vec<Raw> = Vec::new();
    for (i, dir) in [
        Direction::In,
        Direction::Unknown,
        Direction::Out,
        Direction::In,
    ]
    .into_iter()
    .enumerate()
    {
        let ts = DAY0 + 23 * HOUR_MS + i as i64 * 30_000;
        for c in 0..COMMUNITIES {
            // Slot 2 of `c` is slot 0 of `c + 1`: one device, two communities.
            batch.push((ts, c, 2, Kind::Face, 1, dir));
            batch.push((ts, (c + 1) % COMMUNITIES, 0, Kind::Face, 1, dir));
        }
    }
    for assign in [
        vec![0, 1, 2, 3],
        vec![3, 2, 1, 0],
        vec![1, 0, 1, 0],
        vec![0, 0, 1, 1],
    ] {
        let p = *assign.iter().max().unwrap() + 1;
        let cl = load(&(vec![batch.clone()], vec![false], true, p, assign));
        let fed = cl.federation(true);
        let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
        for limit in 1..=5 {
            let query = |cursor| TrajectoryQuery {
                kind: Kind::Face,
                subject: subject_of(Kind::Face, 1),
                from_ms: DAY0,
                to_ms: DAY0 + DAY_MS,
                communities: None,
                cursor,
                limit,
            };
            let (mut c1, mut c2) = (None, None);
            loop {
                let want = trajectory(&ctx, &query(c1.clone())).unwrap();
                let got = fed
                    .trajectory(&Call::default(), &query(c2.clone()))
                    .unwrap();
                let events: Vec<Sighting> = want.events.iter().map(|e| cl.map(e)).collect();
                assert_eq!(got.events, events);
                assert_eq!(got.stays, want.stays);
                assert_eq!(got.next_cursor, cl.map_cursor(&want.next_cursor));
                match (want.next_cursor, got.next_cursor) {
                    (Some(a), Some(b)) => (c1, c2) = (Some(a), Some(b)),
                    _ => break,
                }
            }
        }
    }
}

/// More stays than an answer holds: the merged stays stop at the same one, flagged,
/// whether they are cut inside one partition's runs (one partition alone holds more
/// than the limit) or stitched from runs of both.
#[test]
fn stays_stop_at_the_limit_across_partitions_as_in_one_store() {
    let n = MAX_STAYS as i64 + 40;
    let at = |i: i64| DAY0 + i * 4_000;
    // In and out at community 0 (partition 0), then in at 0 and 1 by turns (each
    // closes the other's stay), on devices of their own.
    let mut raws: Vec<Raw> = Vec::new();
    for i in 0..n {
        raws.push((at(2 * i), 0, 0, Kind::Face, 1, Direction::In));
        raws.push((at(2 * i + 1), 0, 0, Kind::Face, 1, Direction::Out));
    }
    for i in 0..n {
        raws.push((
            at(2 * n + i),
            (i % 2) as u8,
            1,
            Kind::Face,
            1,
            Direction::In,
        ));
    }
    for (from, to) in [(DAY0, at(2 * n)), (at(2 * n), at(3 * n)), (DAY0, at(3 * n))] {
        let cl = load(&(vec![raws.clone()], vec![false], true, 2, vec![0, 1, 0, 1]));
        let fed = cl.federation(true);
        let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
        let q = TrajectoryQuery {
            kind: Kind::Face,
            subject: subject_of(Kind::Face, 1),
            from_ms: from,
            to_ms: to,
            communities: None,
            cursor: None,
            limit: 3,
        };
        let want = trajectory(&ctx, &q).unwrap();
        let got = fed.trajectory(&Call::default(), &q).unwrap();
        assert!(
            want.stays_truncated,
            "the test needs more stays than an answer holds"
        );
        assert_eq!(got.stays_truncated, want.stays_truncated);
        assert_eq!(got.stays.len(), MAX_STAYS);
        assert!(got.stays == want.stays, "stays differ");
    }
}

/// A partition whose store fails.
struct Broken;

impl Partition for Broken {
    fn answer(&self, _: &Request) -> Result<Answer> {
        Err(QueryError::Storage(StorageError::Corrupt {
            path: "segments/7.seg".into(),
            offset: 4096,
            reason: "checksum mismatch".into(),
        }))
    }
}

#[test]
fn a_failing_partition_fails_the_query_naming_the_partition() {
    let cl = small_cluster();
    let n = &cl.parts[0];
    let fed = Federation::new(vec![
        Box::new(LocalPartition {
            id: 0,
            store: &n.store,
            index: &n.index,
            vocabulary: Some(&n.vocab),
        }),
        Box::new(Broken),
    ]);
    let call = Call::default();
    let q = Counts {
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        communities: None,
        kind: None,
        by: CountKey::Community,
        per: Granularity::Day,
    };
    match fed.counts(&call, &q) {
        Err(QueryError::Partition {
            partition: 1,
            source,
        }) => {
            assert!(matches!(*source, QueryError::Storage(_)), "{source}");
        }
        other => panic!("a broken partition must fail the query: {other:?}"),
    }
    let err = fed.event(&call, cluster_id(1, 3)).unwrap_err();
    assert!(err.to_string().contains("partition 1"), "{err}");

    // Over the network the failure travels as its message, still naming the partition.
    let wired = Federation::new(vec![
        Box::new(Wire {
            inner: LocalPartition {
                id: 0,
                store: &n.store,
                index: &n.index,
                vocabulary: None,
            },
            json: true,
        }),
        Box::new(Broken),
    ]);
    let q = SearchQuery {
        pattern: "F1".into(),
        mode: SearchMode::Exact,
        kind: None,
        limit: 10,
    };
    match wired.search(&call, &q) {
        Err(QueryError::Partition {
            partition: 0,
            source,
        }) => {
            assert!(matches!(*source, QueryError::Remote { .. }), "{source}");
            assert!(source.to_string().contains("vocabulary"), "{source}");
        }
        other => panic!("a partition without vocabulary must fail the search: {other:?}"),
    }
}

/// A partition that stores one more object of community 0 after each of its first
/// `grow` answers of a deep page's first round (`Ask::ObjectKeys`), earlier than
/// every other (so ahead of any page), into its store and the one store alike.
struct Growing<'a> {
    inner: Wire<'a>,
    one: &'a Store,
    grow: std::sync::atomic::AtomicUsize,
    stored: std::sync::atomic::AtomicUsize,
}

impl Partition for Growing<'_> {
    fn answer(&self, request: &Request) -> Result<Answer> {
        use std::sync::atomic::Ordering;
        let answer = self.inner.answer(request);
        let first_round = matches!(request.ask, federated::Ask::ObjectKeys(_));
        if first_round && self.grow.load(Ordering::SeqCst) > 0 {
            self.grow.fetch_sub(1, Ordering::SeqCst);
            let n = 1000 + self.stored.fetch_add(1, Ordering::SeqCst);
            let early = DAY0 + 22 * HOUR_MS - n as i64 * MIN;
            let raw = (n, (early, 0, 0, Kind::Vehicle, 1, Direction::In));
            append(self.inner.inner.store, &[raw]);
            append(self.one, &[raw]);
        }
        answer
    }
}

/// A deep page read while objects are stored ahead of it: the partition's second
/// answer disagrees with its first, so the page is read again, and the answer is one
/// store's after the arrival; a partition that never settles fails the query (never
/// a page stitched from two states).
#[test]
fn a_deep_page_read_while_objects_arrive_is_read_again_whole() {
    let cl = small_cluster();
    let q = ObjectQuery {
        kind: None,
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        skip: 2,
        limit: 3,
        ..ObjectQuery::default()
    };
    for (grow, settles) in [(1usize, true), (federated::OBJECT_PAGE_ROUNDS, false)] {
        let partitions: Vec<Box<dyn Partition + '_>> = cl
            .parts
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let inner = Wire {
                    inner: LocalPartition {
                        id: i as u16,
                        store: &n.store,
                        index: &n.index,
                        vocabulary: None,
                    },
                    json: false,
                };
                Box::new(Growing {
                    inner,
                    one: &cl.one.store,
                    grow: (if i == 0 { grow } else { 0 }).into(),
                    stored: (grow * 10).into(),
                }) as Box<dyn Partition>
            })
            .collect();
        let fed = Federation::new(partitions);
        let got = fed.objects(&Call::default(), &q);
        let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
        let want = objects(&ctx, &q).unwrap();
        match (got, settles) {
            (Ok(got), true) => {
                assert_eq!(got.total, want.total);
                let ids = |attrs: Vec<&Attrs>| -> Vec<String> {
                    attrs
                        .iter()
                        .map(|a| format!("{:?}", a.get("source_id")))
                        .collect()
                };
                let want_attrs: Vec<Attrs> =
                    want.attrs_at.iter().map(|a| a.decode().unwrap()).collect();
                assert_eq!(
                    ids(got.events.iter().map(|(_, a)| a).collect()),
                    ids(want_attrs.iter().collect())
                );
            }
            (Err(e), false) => assert!(e.to_string().contains("ask again"), "{e}"),
            (other, _) => panic!("grow {grow}: {:?}", other.map(|o| o.total)),
        }
    }
}

#[test]
fn a_federated_query_past_its_deadline_stops_with_an_error() {
    let cl = small_cluster();
    let fed = cl.federation(true);
    let passed = Call {
        scope: None,
        deadline: Some(Instant::now() - Duration::from_millis(1)),
    };
    let q = NocturnalQuery::new(Kind::Face, DAY0, DAY0 + DAY_MS);
    assert!(matches!(
        fed.nocturnal(&passed, &q),
        Err(QueryError::DeadlineExceeded)
    ));
    let later = Call {
        scope: None,
        deadline: Some(Instant::now() + Duration::from_secs(3600)),
    };
    let mut q = q;
    q.min_night = 1;
    assert!(!fed.nocturnal(&later, &q).unwrap().is_empty());
}

#[test]
fn invalid_parameters_are_refused_as_one_store_refuses_them() {
    let cl = small_cluster();
    let fed = cl.federation(true);
    let ctx = QueryContext::new(&cl.one.store, &cl.one.index);
    let call = Call::default();
    let same = |a: Result<String>, b: Result<String>| {
        assert_eq!(a.unwrap_err().to_string(), b.unwrap_err().to_string());
    };
    let t = TrajectoryQuery {
        kind: Kind::Vehicle,
        subject: "苏E00000".into(),
        from_ms: DAY0,
        to_ms: DAY0,
        communities: None,
        cursor: None,
        limit: 0,
    };
    let dbg = |x: &dyn std::fmt::Debug| format!("{x:?}");
    same(
        fed.trajectory(&call, &t).map(|x| dbg(&x)),
        trajectory(&ctx, &t).map(|x| dbg(&x.events)),
    );
    let t = TrajectoryQuery { limit: 5, ..t };
    same(
        fed.trajectory(&call, &t).map(|x| dbg(&x)),
        trajectory(&ctx, &t).map(|x| dbg(&x.events)),
    );
    // Refused by the partitions (a plate of separators only): the same refusal.
    let t = TrajectoryQuery {
        subject: " ·-".into(),
        to_ms: DAY0 + DAY_MS,
        ..t
    };
    same(
        fed.trajectory(&call, &t).map(|x| dbg(&x)),
        trajectory(&ctx, &t).map(|x| dbg(&x.events)),
    );
    let c = Cooccurrence {
        kind: Kind::Vehicle,
        subject: "苏E00000".into(),
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        communities: None,
        window_ms: 7_200_000,
        min_count: 1,
        scope: Scope::Device,
        candidate_kind: None,
        dedup_gap_ms: None,
        limit: 10,
    };
    same(
        fed.cooccurrence(&call, &c).map(|x| dbg(&x)),
        cooccurrence(&ctx, &c).map(|x| dbg(&x)),
    );
    let q = Collision {
        kind: Kind::Face,
        conditions: vec![],
        min_conditions: 1,
        limit: 1,
    };
    same(
        fed.collision(&call, &q).map(|x| dbg(&x)),
        collision(&ctx, &q).map(|x| dbg(&x)),
    );
    let q = FrequencyQuery {
        community: community(0),
        kind: Kind::Face,
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        min_count: None,
        min_days: None,
        limit: 10,
    };
    same(
        fed.frequency(&call, &q).map(|x| dbg(&x)),
        frequency(&ctx, &q).map(|x| dbg(&x)),
    );
    let q = FirstSeenQuery {
        community: community(0),
        kind: Kind::Face,
        from_ms: DAY0,
        to_ms: DAY0 + DAY_MS,
        lookback_days: 401,
        limit: 10,
    };
    same(
        fed.first_seen(&call, &q).map(|x| dbg(&x)),
        first_seen(&ctx, &q).map(|x| dbg(&x)),
    );
    let mut q = NocturnalQuery::new(Kind::Face, DAY0, DAY0 + DAY_MS);
    q.day_end_hour = 25;
    same(
        fed.nocturnal(&call, &q).map(|x| dbg(&x)),
        nocturnal(&ctx, &q).map(|x| dbg(&x)),
    );
    let mut q = OvernightQuery::new(Kind::Face, "F1", DAY0, DAY0 + DAY_MS);
    q.morning_hour = 20;
    same(
        fed.overnight(&call, &q).map(|x| dbg(&x)),
        overnight(&ctx, &q).map(|x| dbg(&x)),
    );
    for pattern in ["a", "苏E(1)", "*"] {
        let q = SearchQuery {
            pattern: pattern.into(),
            mode: SearchMode::Wildcard,
            kind: None,
            limit: 10,
        };
        same(
            fed.search(&call, &q).map(|x| dbg(&x)),
            search(&ctx, &cl.one.vocab, &q).map(|x| dbg(&x)),
        );
    }
}

#[test]
fn cluster_ids_and_placement_are_stable() {
    assert_eq!(cluster_id(3, 42), (3 << 48) | 42);
    assert_eq!(
        split_cluster_id(cluster_id(65_535, (1 << 48) - 1)),
        (65_535, (1 << 48) - 1)
    );
    // Placement decides where data lives: it must never change.
    assert_eq!(
        partition_of("3205080001", 64),
        partition_of("3205080001", 64)
    );
    let spread: std::collections::BTreeSet<u16> = (0..200)
        .map(|i| partition_of(&format!("32050800{i:02}"), 8))
        .collect();
    assert_eq!(spread.len(), 8, "codes spread over every partition");
}
