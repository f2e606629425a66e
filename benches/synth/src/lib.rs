//! Sightline's synthetic city: a small, deterministic model of a month of gate traffic
//! in Gusu residential communities — resident vehicles commuting, residents passing
//! face cameras and access doors, visitors with Zipf popularity, couriers touring many
//! communities, and sensor noise (missed reads, duplicate reads, OCR plate misreads).
//!
//! `sightline demo`, `sightline gen`, the load generator, the benches and the storage
//! demo use it so their figures come from realistic distributions. With `planted` it
//! also plants known answers — companion vehicles trailing leaders, people about only
//! at night, vehicles present at a set of places and times — plus plates of other
//! provinces and a taxi fleet; [`Traffic::truth`] lists the answers, so the queries'
//! precision and recall can be scored.
//!
//! Start reading at [`Traffic`] (`traffic.rs`), then `day.rs` (one community's day and
//! its sensors) and the populations (`everyday.rs`, `planted.rs`). The crate depends on
//! the storage crate's event types only, never on the server.

mod codes;
mod config;
mod dataset;
mod day;
mod everyday;
mod gat1400;
mod load;
pub mod ocr;
mod planted;
mod traffic;
mod truth;

pub use codes::{
    community_code, device_code, face_id, plate, plate_in, resident_plate, TYPE_ACCESS_DOOR,
    TYPE_FACE_CAMERA, TYPE_VEHICLE_GATE,
};
pub use config::{local_midnight, TrafficConfig, DAY, SEPT_2021};
pub use dataset::{to_ndjson, write_dataset};
pub use gat1400::to_gat1400;
pub use load::{load, Loaded, Pace};
pub use traffic::Traffic;
pub use truth::{CollisionSet, Companion, Pair, Truth};
