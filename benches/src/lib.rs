//! Benchmark support for Sightline: the load generator (its GA/T 1400 workload, with
//! pictures, in [`gat1400`]), the queries scored against the
//! planted answers, and synthetic cities kept on disk for the query benches. The
//! traffic model they share with the criterion benches, the storage demo and the space
//! report is `sightline-synth`, re-exported as [`traffic`].

pub mod city;
pub mod gat1400;
pub mod load;
pub mod score;

/// The traffic model is the `sightline-synth` crate (`sightline demo` and `sightline gen`
/// use it too); re-exported here for the benches.
pub use sightline_synth as traffic;

pub use city::City;
pub use traffic::{community_code, device_code, plate, Traffic, TrafficConfig, SEPT_2021};

/// The co-occurrence the benchmarks time: a vehicle's companions within ±60 s at
/// `scope` over `[from_ms, to_ms)`, at least one pass together, the top 100.
pub fn vehicle_cooccurrence(
    subject: &str,
    from_ms: i64,
    to_ms: i64,
    scope: sightline_query::Scope,
) -> sightline_query::Cooccurrence {
    sightline_query::Cooccurrence {
        kind: sightline_storage::Kind::Vehicle,
        subject: subject.to_string(),
        from_ms,
        to_ms,
        communities: None,
        window_ms: 60_000,
        min_count: 1,
        scope,
        candidate_kind: None,
        dedup_gap_ms: None,
        limit: 100,
    }
}
