//! Benchmark support for Sightline: the synthetic traffic model shared by the criterion
//! benches, the storage demo and the space report.

pub mod traffic;

pub use traffic::{community_code, device_code, Traffic, TrafficConfig, SEPT_2021};
