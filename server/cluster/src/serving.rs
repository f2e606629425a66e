//! What an indexer (or a query node, from its read replicas: `replica`) answers
//! query nodes: each partition it holds is a live local
//! [`Store`] (restored from the catalog, fed from the log) with an in-memory
//! [`StoreIndex`] kept current by the store's append observer and a subject
//! [`Vocabulary`] beside the store (caught up before each search), asked a federated
//! [`Request`] through [`LocalPartition`]. A partition is offered ([`Held::offer`])
//! once its task has read the log to its end after taking the lease (so an answer
//! never misses what the previous owner had committed and acknowledged), and
//! withdrawn when the task ends (given back, fenced, or failed). A request for a
//! partition not offered here is answered [`PartitionReply::NotHeld`]: the query node
//! re-reads the leases and asks the owner there.
//!
//! The wire: `POST /v1/partition`, body a [`Request`] in bincode 2 (standard
//! configuration, serde), answer a [`PartitionReply`] in the same encoding; both
//! bounded ([`MAX_REQUEST_BYTES`], [`MAX_REPLY_BYTES`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sightline_index::{StoreIndex, Vocabulary, CHECKPOINT_FILE};
use sightline_query::federated::{Answer, Ask, Failure, LocalPartition, Partition, Request};
use sightline_storage::Store;

/// The content type of both directions.
pub const CONTENT_TYPE: &str = "application/x-sightline-partition";
/// Largest request body (a co-occurrence round with thousands of passes fits).
pub const MAX_REQUEST_BYTES: usize = 64 << 20;
/// Largest answer a query node accepts (a trajectory page of 10,000 events with
/// attributes, a search's every match).
pub const MAX_REPLY_BYTES: usize = 256 << 20;

/// A partition's answer as it travels back.
#[derive(Debug, Serialize, Deserialize)]
pub enum PartitionReply {
    Answer(Answer),
    /// The query failed there (the caller's mistake, the deadline, or the store's).
    Failed(Failure),
    /// This indexer does not hold (or no longer holds, or not yet serves) it.
    NotHeld {
        partition: u16,
        owner: String,
    },
}

/// One partition an indexer serves.
struct Served {
    epoch: i64,
    store: Store,
    index: Arc<StoreIndex>,
    /// `None` when it could not be opened (searches then fail, naming why).
    vocabulary: Option<Vocabulary>,
    /// False while suspended ([`Held::suspend`]): kept current, not answering.
    live: AtomicBool,
}

/// The partitions this indexer serves, by number.
pub struct Held {
    owner: String,
    partitions: RwLock<HashMap<u32, Arc<Served>>>,
}

impl Held {
    pub fn new(owner: &str) -> Arc<Held> {
        Arc::new(Held {
            owner: owner.to_string(),
            partitions: RwLock::new(HashMap::new()),
        })
    }

    /// Serves `partition` (lease `epoch`, or a replica's generation) from `store`:
    /// builds its index from every row and keeps it current (blocking: call it off
    /// the async workers). An offer under an epoch lower than the one served now (a
    /// late offer of an older task) is refused: false.
    pub(crate) fn offer(&self, partition: u32, epoch: i64, store: &Store) -> bool {
        let newer = |held: &HashMap<u32, Arc<Served>>| {
            held.get(&partition).is_some_and(|s| s.epoch > epoch)
        };
        if newer(&self.partitions.read().expect("held partitions poisoned")) {
            tracing::info!(partition, epoch, "a newer epoch is served; offer refused");
            return false;
        }
        // A replica restored with the owner's uploaded index has it on disk as a
        // checkpoint (`restore::restore_committed`): only the rows after it are read
        // (a checkpoint that does not agree with the store is reported and the index
        // rebuilt from every row, as on a single node).
        let opened = match store.dir().join(CHECKPOINT_FILE).exists() {
            true => StoreIndex::open(store).map(|(index, report)| {
                tracing::info!(
                    partition,
                    from_checkpoint = report.from_checkpoint,
                    rows_read = report.rows_read,
                    rebuilt_because = report.rebuilt_because.as_deref().unwrap_or(""),
                    "index opened"
                );
                index
            }),
            false => StoreIndex::attach(store),
        };
        let index = match opened {
            Ok(index) => index,
            Err(e) => {
                // A damaged segment: the partition is not served from this copy.
                tracing::error!(partition, error = %e, "cannot index the partition's store");
                return false;
            }
        };
        // Beside the store's directory (`p{P}-e{epoch}-vocabulary`): a cache removed
        // with the store's when the partition is taken again.
        let dir = store.dir();
        let name = dir.file_name().map_or_else(
            || format!("p{partition}-e{epoch}"),
            |n| n.to_string_lossy().into_owned(),
        );
        let vocabulary = match Vocabulary::open(&dir.with_file_name(format!("{name}-vocabulary"))) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(partition, error = %e, "no vocabulary: searches will fail");
                None
            }
        };
        let served = Arc::new(Served {
            epoch,
            store: store.clone(),
            index,
            vocabulary,
            live: AtomicBool::new(true),
        });
        let mut held = self.partitions.write().expect("held partitions poisoned");
        if newer(&held) {
            tracing::info!(partition, epoch, "a newer epoch is served; offer refused");
            return false;
        }
        held.insert(partition, served);
        tracing::info!(partition, epoch, "serving queries");
        true
    }

    /// Stops answering `partition` for now if it is served under `epoch`, its index
    /// still kept current ([`Held::resume`] answers again without building it anew).
    pub(crate) fn suspend(&self, partition: u32, epoch: i64) {
        let held = self.partitions.read().expect("held partitions poisoned");
        if let Some(s) = held.get(&partition).filter(|s| s.epoch == epoch) {
            if s.live.swap(false, Ordering::SeqCst) {
                tracing::info!(partition, epoch, "not answering queries for now");
            }
        }
    }

    /// Answers `partition` again if it is served (suspended) under `epoch`; false when
    /// it is not served under `epoch` at all (offer it then).
    pub(crate) fn resume(&self, partition: u32, epoch: i64) -> bool {
        let held = self.partitions.read().expect("held partitions poisoned");
        match held.get(&partition).filter(|s| s.epoch == epoch) {
            Some(s) => {
                if !s.live.swap(true, Ordering::SeqCst) {
                    tracing::info!(partition, epoch, "answering queries again");
                }
                true
            }
            None => false,
        }
    }

    fn live(&self, partition: u32) -> Option<Arc<Served>> {
        self.partitions
            .read()
            .expect("held partitions poisoned")
            .get(&partition)
            .filter(|s| s.live.load(Ordering::SeqCst))
            .cloned()
    }

    /// Stops serving `partition` if it is still served under `epoch`.
    pub(crate) fn withdraw(&self, partition: u32, epoch: i64) {
        let mut held = self.partitions.write().expect("held partitions poisoned");
        if held.get(&partition).is_some_and(|s| s.epoch == epoch) {
            held.remove(&partition);
            tracing::info!(partition, epoch, "no longer serving queries");
        }
    }

    /// Whether `partition` is served (and not suspended) here now.
    pub fn holds(&self, partition: u32) -> bool {
        self.live(partition).is_some()
    }

    /// The partitions served now, sorted.
    /// The index of `partition` as served under `epoch` (live or suspended).
    pub(crate) fn index_of(&self, partition: u32, epoch: i64) -> Option<Arc<StoreIndex>> {
        let held = self.partitions.read().expect("held partitions poisoned");
        held.get(&partition)
            .filter(|s| s.epoch == epoch)
            .map(|s| s.index.clone())
    }

    pub fn served(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .partitions
            .read()
            .expect("held partitions poisoned")
            .iter()
            .filter(|(_, s)| s.live.load(Ordering::SeqCst))
            .map(|(p, _)| *p)
            .collect();
        v.sort_unstable();
        v
    }

    /// Answers `request` from the partition's store (blocking: queries compute).
    pub fn answer(&self, request: &Request) -> PartitionReply {
        let Some(s) = self.live(u32::from(request.partition)) else {
            return PartitionReply::NotHeld {
                partition: request.partition,
                owner: self.owner.clone(),
            };
        };
        if let (Ask::Search(_), Some(v)) = (&request.ask, &s.vocabulary) {
            if let Err(e) = v.catch_up(&s.store) {
                return PartitionReply::Failed(Failure::Failed {
                    message: format!("vocabulary: {e}"),
                });
            }
        }
        let local = LocalPartition {
            id: request.partition,
            store: &s.store,
            index: &s.index,
            vocabulary: s.vocabulary.as_ref(),
        };
        // A segment fetched on first use waits no longer than the query's budget.
        let deadline = request
            .budget_ms
            .map(|ms| std::time::Instant::now() + std::time::Duration::from_millis(ms));
        match crate::restore::with_fetch_deadline(deadline, || local.answer(request)) {
            Ok(a) => PartitionReply::Answer(a),
            Err(e) => PartitionReply::Failed(Failure::from(&e)),
        }
    }
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode_request(r: &Request) -> Vec<u8> {
    bincode::serde::encode_to_vec(r, config()).expect("requests always encode")
}

pub fn decode_request(bytes: &[u8]) -> Result<Request, String> {
    bincode::serde::decode_from_slice(bytes, config().with_limit::<MAX_REQUEST_BYTES>())
        .map(|(r, _)| r)
        .map_err(|e| format!("not a partition request: {e}"))
}

pub fn encode_reply(r: &PartitionReply) -> Vec<u8> {
    bincode::serde::encode_to_vec(r, config()).expect("answers always encode")
}

pub fn decode_reply(bytes: &[u8]) -> Result<PartitionReply, String> {
    bincode::serde::decode_from_slice(bytes, config().with_limit::<MAX_REPLY_BYTES>())
        .map(|(r, _)| r)
        .map_err(|e| format!("not a partition answer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_request(partition: u16) -> Request {
        Request {
            partition,
            scope: Some(vec!["3205080001".into()]),
            max_range_days: 400,
            budget_ms: Some(1_000),
            ask: Ask::Event { seq: 7 },
        }
    }

    #[test]
    fn a_partition_not_served_here_is_refused_naming_this_indexer() {
        let held = Held::new("index-1");
        assert!(held.served().is_empty());
        match held.answer(&event_request(3)) {
            PartitionReply::NotHeld { partition, owner } => {
                assert_eq!((partition, owner.as_str()), (3, "index-1"))
            }
            other => panic!("answered a partition it does not hold: {other:?}"),
        }
    }

    #[test]
    fn requests_and_replies_travel_in_bincode_and_garbage_is_refused() {
        let r = decode_request(&encode_request(&event_request(5))).unwrap();
        assert_eq!((r.partition, r.budget_ms), (5, Some(1_000)));
        assert!(matches!(r.ask, Ask::Event { seq: 7 }));
        let reply = PartitionReply::Failed(Failure::DeadlineExceeded);
        match decode_reply(&encode_reply(&reply)).unwrap() {
            PartitionReply::Failed(Failure::DeadlineExceeded) => {}
            other => panic!("{other:?}"),
        }
        assert!(decode_request(b"\xff\xff\xff\xff\xff").is_err());
        assert!(decode_reply(b"").is_err());
    }

    #[test]
    fn a_served_partition_answers_from_its_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("p2-e1"), Default::default()).unwrap();
        let input = sightline_storage::EventInput {
            ts_ms: 1_764_547_200_000,
            community: "3205080001".into(),
            device: "32050801011210000001".into(),
            kind: "vehicle".into(),
            subject: "苏E12345".into(),
            direction: "in".into(),
            attrs: Default::default(),
        };
        let event = store.validate(input).unwrap();
        store.append(&[event]).unwrap();
        let held = Held::new("index-1");
        held.offer(2, 1, &store);
        assert_eq!(held.served(), vec![2]);
        let mut ask = event_request(2);
        ask.scope = None;
        ask.ask = Ask::Event { seq: 1 };
        match held.answer(&ask) {
            PartitionReply::Answer(Answer::Event(Some((s, _)))) => {
                assert_eq!(&*s.subject, "苏E12345");
                assert_eq!(s.seq, sightline_query::federated::cluster_id(2, 1));
            }
            other => panic!("{other:?}"),
        }
        // Suspended: not answered, not listed; resumed: answered again.
        held.suspend(2, 1);
        assert!(held.served().is_empty() && !held.holds(2));
        assert!(matches!(held.answer(&ask), PartitionReply::NotHeld { .. }));
        assert!(held.resume(2, 1));
        assert!(!held.resume(2, 7));
        assert_eq!(held.served(), vec![2]);
        // A late offer of an older epoch does not replace the newer one.
        let older = Store::open(dir.path().join("p2-e0"), Default::default()).unwrap();
        assert!(!held.offer(2, 0, &older));
        assert!(matches!(held.answer(&ask), PartitionReply::Answer(_)));
        // Withdrawn under another epoch: still served; under its own: gone.
        held.withdraw(2, 0);
        assert_eq!(held.served(), vec![2]);
        held.withdraw(2, 1);
        assert!(matches!(held.answer(&ask), PartitionReply::NotHeld { .. }));
    }
}
