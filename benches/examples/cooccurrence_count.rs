//! Runs the query bench's co-occurrence questions (the p99 vehicle of the bench city,
//! 60 s window, by device and by community) `N` times each (default 20), for
//! instruction counts that do not depend on the machine's load:
//!
//! valgrind --tool=callgrind --toggle-collect='sightline_query::cooccurrence::cooccurrence*' \
//!   target/release/examples/cooccurrence_count
//!
//! The city is the query bench's 2 M-event one (`target/bench-data/city-2000000`,
//! built by `cargo bench -p sightline-benches --bench query` or here on first use).

use std::path::PathBuf;

use sightline_benches::City;
use sightline_query::{cooccurrence, QueryContext, Scope};
use sightline_storage::Kind;

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    let city = City::open_or_build(&root, 2_000_000).expect("city");
    let (from_ms, to_ms) = city.range();
    let ctx = QueryContext::new(&city.store, &city.index);
    let (target, sightings) = city.subject_at_percentile(Kind::Vehicle, 99.0);
    let n: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("N: a count"));
    for scope in [Scope::Device, Scope::Community] {
        let q = sightline_benches::vehicle_cooccurrence(target.as_str(), from_ms, to_ms, scope);
        let mut found = 0;
        for _ in 0..n {
            found = std::hint::black_box(cooccurrence(&ctx, &q).expect("co-occurrence")).len();
        }
        println!("{n} co-occurrences of {target} ({sightings} sightings) by {scope:?}: {found} candidates");
    }
}
