//! A synthetic city of a given size, loaded into a sealed store once and kept on disk
//! for the query benchmarks, with the subjects those benchmarks ask about.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sightline_index::StoreIndex;
use sightline_storage::{Kind, ManualClock, Store, StoreConfig};

use crate::traffic::{load, Pace, DAY};
use crate::{Traffic, TrafficConfig};

/// Events one household generates in a 30-day month under the traffic model
/// (measured: 8,521,218 events from 10 × 4,525 households).
const EVENTS_PER_HOUSEHOLD_MONTH: f64 = 188.3;

/// The traffic model scaled so 10 communities over 30 days give about `events`.
pub fn config_for(events: u64) -> TrafficConfig {
    let base = TrafficConfig::default();
    let households = (events as f64
        / (EVENTS_PER_HOUSEHOLD_MONTH * base.communities as f64 * base.days as f64 / 30.0))
        .round()
        .max(1.0) as u32;
    TrafficConfig {
        households_per_community: households,
        // Same ratio of city-wide visitors to residents as the default model.
        visitor_vehicles: households * 50,
        ..base
    }
}

/// A loaded, fully sealed store and its index.
pub struct City {
    pub dir: PathBuf,
    pub cfg: TrafficConfig,
    pub store: Store,
    pub index: Arc<StoreIndex>,
    pub events: u64,
}

impl City {
    /// Opens the city of about `events` events kept under `root`, building it first if
    /// it is missing or was built from a different model. Progress goes to stderr.
    pub fn open_or_build(root: &Path, events: u64) -> Result<City, Box<dyn std::error::Error>> {
        let cfg = config_for(events);
        let dir = root.join(format!("city-{events}"));
        let marker = dir.join("BUILT");
        let want = format!("{cfg:?}");
        let clock = Arc::new(ManualClock::new(cfg.start_ms));
        let fresh = std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str());
        if fresh && dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let store = Store::open_with_clock(&dir, StoreConfig::default(), clock.clone())?;
        if fresh {
            let t = Instant::now();
            let traffic = Traffic::new(cfg.clone());
            load(&store, &traffic, 20_000, Pace::SealingDaily(&clock))?;
            clock.set(cfg.start_ms + (cfg.days as i64 + 1) * DAY);
            store.maintain()?;
            std::fs::write(&marker, &want)?;
            eprintln!(
                "built {} in {:.0} s",
                dir.display(),
                t.elapsed().as_secs_f64()
            );
        }
        clock.set(cfg.start_ms + (cfg.days as i64 + 1) * DAY);
        let index = StoreIndex::attach(&store)?;
        let events = store
            .shards()
            .iter()
            .map(|s| s.sealed_events + s.memory_events as u64)
            .sum();
        Ok(City {
            dir,
            cfg,
            store,
            index,
            events,
        })
    }

    /// Time range of the whole month.
    pub fn range(&self) -> (i64, i64) {
        (
            self.cfg.start_ms,
            self.cfg.start_ms + self.cfg.days as i64 * DAY,
        )
    }

    /// Sighting counts of every subject of `kind`, ascending: `(count, subject)`.
    pub fn counts(&self, kind: Kind) -> Vec<(u64, String)> {
        let view = self.index.view();
        let dicts = self.store.dictionaries();
        let mut out: Vec<(u64, String)> = (0..dicts.len_subjects() as u32)
            .filter_map(|id| {
                let (k, s) = dicts.subject(id)?;
                let stats = view.subject_stats(id).expect("the index reads")?;
                (k == kind).then(|| (stats.count, s.to_string()))
            })
            .collect();
        out.sort();
        out
    }

    /// The subject of `kind` whose sighting count is nearest `n` (ties: the first by
    /// name), with its count.
    pub fn subject_near(&self, kind: Kind, n: u64) -> (String, u64) {
        let counts = self.counts(kind);
        let (c, s) = counts
            .iter()
            .min_by_key(|(c, s)| (c.abs_diff(n), s.clone()))
            .expect("the city has subjects of every kind");
        (s.clone(), *c)
    }

    /// The subject of `kind` at the `p`-th percentile of sighting counts.
    pub fn subject_at_percentile(&self, kind: Kind, p: f64) -> (String, u64) {
        let counts = self.counts(kind);
        let i = ((counts.len() as f64 * p / 100.0) as usize).min(counts.len() - 1);
        let (c, s) = &counts[i];
        (s.clone(), *c)
    }
}
