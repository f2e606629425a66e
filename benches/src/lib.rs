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
