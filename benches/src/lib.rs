//! Benchmark support for Sightline: the synthetic traffic model shared by the criterion
//! benches, the storage demo and the space report, and synthetic cities kept on disk
//! for the query benches.

pub mod city;
pub mod load;
pub mod score;

/// The traffic model lives in the server crate (`sightline demo` loads it); re-exported
/// here for the benches.
pub use sightline_server::traffic;

pub use city::City;
pub use traffic::{community_code, device_code, plate, Traffic, TrafficConfig, SEPT_2021};
