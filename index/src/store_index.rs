//! The global index: subject → shards, device → communities, subject statistics.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use roaring::RoaringBitmap;
use sightline_storage::{AppendObserver, Row, ShardKey, SpanLayout, Store};

/// How often and when a subject was seen, over the whole store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubjectStats {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Default for SubjectStats {
    fn default() -> Self {
        SubjectStats {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

struct State {
    layout: SpanLayout,
    /// Shard number → key, in first-seen order; numbers are what the bitmaps hold.
    shard_keys: Vec<ShardKey>,
    shard_numbers: HashMap<ShardKey, u32>,
    /// By subject id: the shards holding at least one of its events.
    subject_shards: Vec<RoaringBitmap>,
    /// By subject id.
    subject_stats: Vec<SubjectStats>,
    /// By device id: the communities it reported events for.
    device_communities: Vec<RoaringBitmap>,
    /// Insert caches: rows arrive shard by shard, so most inserts repeat the last one.
    /// The last shard looked up; by subject, 1 + the shard number inserted last; by
    /// device, 1 + the community inserted last (0: none yet).
    last_shard: Option<(ShardKey, u32)>,
    subject_last: Vec<u32>,
    device_last: Vec<u32>,
}

fn slot<T: Default>(v: &mut Vec<T>, id: u32) -> &mut T {
    let i = id as usize;
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

impl State {
    fn add(&mut self, r: &Row) {
        let key = ShardKey {
            community: r.community,
            span: self.layout.span_of(r.ts_ms),
        };
        let number = match self.last_shard {
            Some((k, n)) if k == key => n,
            _ => {
                let n = match self.shard_numbers.get(&key) {
                    Some(&n) => n,
                    None => {
                        let n =
                            u32::try_from(self.shard_keys.len()).expect("fewer than 2^32 shards");
                        self.shard_keys.push(key);
                        self.shard_numbers.insert(key, n);
                        n
                    }
                };
                self.last_shard = Some((key, n));
                n
            }
        };
        let last = slot(&mut self.subject_last, r.subject);
        if *last != number + 1 {
            *last = number + 1;
            slot(&mut self.subject_shards, r.subject).insert(number);
        }
        let s = slot(&mut self.subject_stats, r.subject);
        s.count += 1;
        s.first_ms = s.first_ms.min(r.ts_ms);
        s.last_ms = s.last_ms.max(r.ts_ms);
        let last = slot(&mut self.device_last, r.device);
        if *last != r.community + 1 {
            *last = r.community + 1;
            slot(&mut self.device_communities, r.device).insert(r.community);
        }
    }
}

/// Exact, always-current global index of one store.
pub struct StoreIndex {
    state: RwLock<State>,
}

struct Observer(Arc<StoreIndex>);

impl AppendObserver for Observer {
    fn appended(&self, rows: &[Row]) {
        let mut st = self.0.write();
        for r in rows {
            st.add(r);
        }
    }
}

/// A read view of the index; hold it briefly, appends wait for it.
pub struct IndexView<'a> {
    st: RwLockReadGuard<'a, State>,
}

impl StoreIndex {
    /// Builds the index from everything `store` holds and keeps it current from then on.
    pub fn attach(store: &Store) -> Arc<StoreIndex> {
        let index = Arc::new(StoreIndex {
            state: RwLock::new(State {
                layout: store.layout(),
                shard_keys: Vec::new(),
                shard_numbers: HashMap::new(),
                subject_shards: Vec::new(),
                subject_stats: Vec::new(),
                device_communities: Vec::new(),
                last_shard: None,
                subject_last: Vec::new(),
                device_last: Vec::new(),
            }),
        });
        let reg = store.observe(Arc::new(Observer(index.clone())));
        // Rows up to `applied_through` come only from this scan, later ones only from
        // the observer: each row is counted once.
        // Rows are added in chunks, so memory stays small whatever the store's size
        // (the scan holds no store lock while it calls back).
        const CHUNK: usize = 1 << 16;
        let mut rows = Vec::with_capacity(CHUNK);
        let flush = |rows: &mut Vec<Row>| {
            let mut st = index.write();
            for r in rows.drain(..) {
                st.add(&r);
            }
        };
        store.scan_range(i64::MIN, i64::MAX, None, |r| {
            if r.seq <= reg.applied_through {
                rows.push(r);
                if rows.len() == CHUNK {
                    flush(&mut rows);
                }
            }
        });
        flush(&mut rows);
        index
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .expect("index lock poisoned by a panicked thread")
    }

    pub fn view(&self) -> IndexView<'_> {
        IndexView {
            st: self
                .state
                .read()
                .expect("index lock poisoned by a panicked thread"),
        }
    }
}

impl IndexView<'_> {
    /// The shards that hold events of `subject`, optionally only those of
    /// `communities` and whose span meets `[from_ms, to_ms)`, in key order.
    pub fn subject_shards(
        &self,
        subject: u32,
        from_ms: i64,
        to_ms: i64,
        communities: Option<&[u32]>,
    ) -> Vec<ShardKey> {
        let Some(bits) = self.st.subject_shards.get(subject as usize) else {
            return Vec::new();
        };
        if from_ms >= to_ms {
            return Vec::new();
        }
        let (lo, hi) = (
            self.st.layout.span_of(from_ms),
            self.st.layout.span_of(to_ms - 1),
        );
        let mut keys: Vec<ShardKey> = bits
            .iter()
            .map(|n| self.st.shard_keys[n as usize])
            .filter(|k| k.span >= lo && k.span <= hi)
            .filter(|k| communities.is_none_or(|cs| cs.contains(&k.community)))
            .collect();
        keys.sort_unstable();
        keys
    }

    /// Statistics of `subject` over the whole store.
    pub fn subject_stats(&self, subject: u32) -> Option<SubjectStats> {
        self.st
            .subject_stats
            .get(subject as usize)
            .filter(|s| s.count > 0)
            .copied()
    }

    /// The communities `device` reported events for.
    pub fn device_communities(&self, device: u32) -> Vec<u32> {
        self.st
            .device_communities
            .get(device as usize)
            .map(|b| b.iter().collect())
            .unwrap_or_default()
    }
}
