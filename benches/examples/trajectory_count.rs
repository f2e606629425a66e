//! Runs one trajectory of the bench city's ~5,000-sighting vehicle `N` times (default
//! 20), for instruction counts that do not depend on the machine's load:
//!
//! valgrind --tool=callgrind --toggle-collect='*trajectory*' \
//!   target/release/examples/trajectory_count
//!
//! The city is the query bench's 2 M-event one (`target/bench-data/city-2000000`,
//! built by `cargo bench -p sightline-benches --bench query` or here on first use).

use std::path::PathBuf;

use sightline_benches::City;
use sightline_query::{trajectory, QueryContext, TrajectoryQuery};
use sightline_storage::Kind;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    let city = City::open_or_build(&root, 2_000_000).expect("city");
    let (subject, _) = city.subject_near(Kind::Vehicle, 5000);
    let (from_ms, to_ms) = city.range();
    let ctx = QueryContext::new(&city.store, &city.index);
    let q = TrajectoryQuery {
        kind: Kind::Vehicle,
        subject,
        from_ms,
        to_ms,
        communities: None,
        cursor: None,
        limit: 10_000,
    };
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("N: a count"));
    if std::env::var_os("RUNS").is_some() {
        let id = city
            .store
            .dictionaries()
            .subject_id(Kind::Vehicle, &q.subject)
            .unwrap();
        let keys = city
            .index
            .view()
            .subject_shards(id, from_ms, to_ms, None)
            .expect("the index reads");
        let runs = city
            .store
            .subject_runs(keys.clone(), id, from_ms, to_ms)
            .unwrap();
        let one_device = runs.iter().filter(|r| r.device().is_some()).count();
        println!(
            "{} shards, {} runs ({one_device} of one device)",
            keys.len(),
            runs.len(),
        );
    }
    let mut sightings = 0;
    for _ in 0..n {
        sightings += std::hint::black_box(trajectory(&ctx, &q).expect("trajectory"))
            .events
            .len();
    }
    println!("{n} trajectories of {} sightings", sightings / n.max(1));
}
