//! The investigator queries over a [`Store`] and its [`StoreIndex`]: trajectory,
//! co-occurrence (同行/伴随) and person–vehicle association (人车关联), collision (碰撞),
//! frequency (频繁出入), nocturnal (昼伏夜出), first seen (首次出现), overnight base
//! (落脚点) and counts. Exact semantics are in `query/SEMANTICS.md`.
//!
//! Queries are pure reads: they take strings as the user gave them, resolve them
//! through the store's dictionaries, read rows, and return strings again. They know
//! nothing of HTTP. [`federated`] answers the same queries over the partitions of a
//! cluster, from partial answers each partition computes with these.

mod collision;
mod context;
mod cooccurrence;
mod counts;
mod error;
mod event;
pub mod federated;
mod objects;
mod patterns;
mod search;
mod trajectory;

pub use collision::{collision, Collision, CollisionHit, Condition, Place};
pub use context::{sightings, QueryContext, Sighting, TRAJECTORY_SORT_MAX};
pub use cooccurrence::{cooccurrence, Candidate, Cooccurrence, Scope};
pub use counts::{counts, CountBucket, CountKey, Counts, Granularity};
pub use error::{QueryError, Result};
pub use event::event_by_id;
pub use objects::{objects, ObjectPage, ObjectQuery, MAX_OBJECT_DEPTH, TOLLGATE_ATTR};
pub use patterns::{
    first_seen, frequency, nocturnal, overnight, FirstSeen, FirstSeenQuery, Frequency,
    FrequencyQuery, Night, Nocturnal, NocturnalQuery, Overnight, OvernightQuery,
};
pub use search::{search, SearchQuery, SubjectMatch, MAX_SEARCH_LIMIT};
pub use sightline_index::SearchMode;
pub use trajectory::{
    trajectory, trajectory_handed, trajectory_pages, Cursor, Stay, StayEnd, Trajectory,
    TrajectoryQuery, MAX_STAYS,
};

/// Milliseconds in a day and an hour.
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;
