//! What a query node asks a partition and what the partition answers: plain data
//! (serde), so the same request travels in process or over the network.

use serde::{Deserialize, Serialize};
use sightline_storage::{Attrs, Kind};

use super::cooccurrence::{CandidatePartial, Pass};
use super::feed::{FeedAsk, FeedPartial};
use super::id::EventKey;
use super::objects::{ObjectKeys, ObjectsPartial};
use super::patterns::{NightPartial, NocturnalPartial};
use super::search::MatchPartial;
use super::stats::PartitionStats;
use super::trajectory::{PagePartial, StayEvent};
use crate::error::{QueryError, Result};
use crate::{
    Collision, Cooccurrence, CountBucket, Counts, FirstSeen, FirstSeenQuery, Frequency,
    FrequencyQuery, NocturnalQuery, ObjectQuery, OvernightQuery, SearchQuery, Sighting,
    TrajectoryQuery,
};

/// One partition's part of a query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The partition asked (a node may serve several).
    pub partition: u16,
    /// The caller's communities (codes); all when `None`.
    pub scope: Option<Vec<String>>,
    /// Longest range a query may cover, in days.
    pub max_range_days: i64,
    /// Milliseconds left before the query's deadline, when it has one.
    pub budget_ms: Option<u64>,
    pub ask: Ask,
}

/// The question, by family and round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Ask {
    /// A page of the trajectory after the query's cursor (a cluster cursor), and the
    /// partition's stay runs when `runs` (first page only).
    TrajectoryPage {
        query: TrajectoryQuery,
        runs: bool,
    },
    /// Stays, round 2: the subject's events with keys inside these inclusive ranges.
    StayEvents {
        query: TrajectoryQuery,
        within: Vec<(EventKey, EventKey)>,
    },
    /// Co-occurrence, round 1: the target's passes here.
    CooccurrencePasses(Cooccurrence),
    /// Round 2: candidates' hits on the cluster's passes (numbered).
    CooccurrenceHits {
        query: Cooccurrence,
        passes: Vec<(u32, Pass)>,
    },
    /// Round 3: each candidate's events here at the target's locations, for lift.
    CooccurrenceCounts {
        query: Cooccurrence,
        passes: Vec<Pass>,
        candidates: Vec<(Kind, String)>,
    },
    /// Subjects meeting conditions here; `elsewhere` has the bits of the conditions
    /// that may be met in other partitions (subjects that cannot reach
    /// `min_conditions` with them are left out).
    Collision {
        query: Collision,
        elsewhere: u32,
    },
    Counts(Counts),
    Frequency(FrequencyQuery),
    FirstSeen(FirstSeenQuery),
    /// Nocturnal, round 1: subjects seen here at night.
    Nocturnal(NocturnalQuery),
    /// Round 2: these subjects' day sightings here.
    NocturnalDays {
        query: NocturnalQuery,
        subjects: Vec<String>,
    },
    Overnight(OvernightQuery),
    Search(SearchQuery),
    /// One event by its sequence number in this partition.
    Event {
        seq: u64,
    },
    /// A page of the change feed after a local position.
    Feed(FeedAsk),
    /// The partition's statistics.
    Stats,
    /// Objects by conditions, a deep page's first round: the keys of the partition's
    /// first `skip + limit` records, and its count.
    ObjectKeys(ObjectQuery),
    /// Objects by conditions: the partition's page of them (its own `skip` and
    /// `limit`), and its count.
    Objects(ObjectQuery),
}

/// A partition's partial answer; the variant answers the [`Ask`] of the same name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Answer {
    TrajectoryPage(PagePartial),
    StayEvents(Vec<StayEvent>),
    CooccurrencePasses(Vec<Pass>),
    CooccurrenceHits(Vec<CandidatePartial>),
    CooccurrenceCounts(Vec<u64>),
    /// (subject, bits of the conditions met here).
    Collision(Vec<(String, u32)>),
    Counts(Vec<CountBucket>),
    Frequency(Vec<Frequency>),
    FirstSeen(Vec<FirstSeen>),
    Nocturnal(Vec<NocturnalPartial>),
    NocturnalDays(Vec<u32>),
    Overnight(Vec<NightPartial>),
    Search(Vec<MatchPartial>),
    /// The event with its cluster id, and its attributes.
    Event(Option<(Sighting, Attrs)>),
    Feed(FeedPartial),
    Stats(PartitionStats),
    ObjectKeys(ObjectKeys),
    Objects(ObjectsPartial),
}

/// One partition as a query node reaches it: in process ([`super::LocalPartition`]) or,
/// later, over the network. An error is the partition's: the federation reports it
/// with the partition's number, never drops it.
pub trait Partition: Send + Sync {
    fn answer(&self, request: &Request) -> Result<Answer>;
}

/// A partition's error as it travels back to the query node: what the caller did
/// wrong and the deadline keep their meaning; anything else travels as its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    Invalid {
        field: String,
        reason: String,
    },
    DeadlineExceeded,
    InvalidPattern {
        pattern: String,
        reason: String,
    },
    TooBroad {
        pattern: String,
        matches: usize,
        max: usize,
    },
    /// The partition failed (storage, index, …); its message.
    Failed {
        message: String,
    },
}

/// The parameters queries name in their refusals (a refusal names its field by a
/// `&'static str`); another name arrives as `parameter`.
const FIELDS: &[&str] = &[
    "answer",
    "conditions",
    "cursor",
    "day_start_hour",
    "dedup_gap",
    "evening_hour",
    "limit",
    "lookback",
    "min_conditions",
    "min_count",
    "partition",
    "skip",
    "subject",
    "to",
    "window",
];

impl From<&QueryError> for Failure {
    fn from(e: &QueryError) -> Failure {
        use sightline_index::IndexError;
        match e {
            QueryError::Invalid { field, reason } => Failure::Invalid {
                field: field.to_string(),
                reason: reason.clone(),
            },
            QueryError::DeadlineExceeded => Failure::DeadlineExceeded,
            QueryError::Index(IndexError::InvalidPattern { pattern, reason }) => {
                Failure::InvalidPattern {
                    pattern: pattern.clone(),
                    reason: reason.clone(),
                }
            }
            QueryError::Index(IndexError::TooBroad {
                pattern,
                matches,
                max,
            }) => Failure::TooBroad {
                pattern: pattern.clone(),
                matches: *matches,
                max: *max,
            },
            e => Failure::Failed {
                message: e.to_string(),
            },
        }
    }
}

impl Failure {
    /// The error a remote [`Partition`] returns for it.
    pub fn into_error(self) -> QueryError {
        use sightline_index::IndexError;
        match self {
            Failure::Invalid { field, reason } => QueryError::Invalid {
                field: FIELDS
                    .iter()
                    .find(|f| **f == field)
                    .copied()
                    .unwrap_or("parameter"),
                reason,
            },
            Failure::DeadlineExceeded => QueryError::DeadlineExceeded,
            Failure::InvalidPattern { pattern, reason } => {
                IndexError::InvalidPattern { pattern, reason }.into()
            }
            Failure::TooBroad {
                pattern,
                matches,
                max,
            } => IndexError::TooBroad {
                pattern,
                matches,
                max,
            }
            .into(),
            Failure::Failed { message } => QueryError::Remote { message },
        }
    }
}
