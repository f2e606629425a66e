//! A city appended to a store day by day, as its gates would have fed it: what
//! `sightline demo`, the query benches' cities, the storage demo, the space report and
//! the scoring test load.

use sightline_storage::{ManualClock, StorageError, Store};

use crate::config::DAY;
use crate::traffic::Traffic;

/// How [`load`] moves the store's clock through the days.
#[derive(Clone, Copy, Debug)]
pub enum Pace<'a> {
    /// The store keeps its own clock.
    Free,
    /// Each day is appended with `clock` (the store's) at the day's end, so none of
    /// its events is in the future.
    DayEnds(&'a ManualClock),
    /// As `DayEnds`, and after each day the clock moves past the seal grace and the
    /// day's shards are sealed, as a live store seals them; the next day's events that
    /// spill past midnight stay in memory until their turn.
    SealingDaily(&'a ManualClock),
}

/// What [`load`] appended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// Events stored (an event already stored, by source id, is not again).
    pub stored: usize,
    /// Events the store refused to validate, left out.
    pub rejected: usize,
}

impl Loaded {
    /// Validates and appends `events` to `store`, `batch_events` to an append, leaving
    /// out (and counting) the events the store refuses.
    pub fn append(
        &mut self,
        store: &Store,
        events: &[sightline_storage::EventInput],
        batch_events: usize,
    ) -> Result<(), StorageError> {
        for chunk in events.chunks(batch_events.max(1)) {
            let batch: Vec<_> = chunk
                .iter()
                .filter_map(|e| store.validate(e.clone()).ok())
                .collect();
            self.rejected += chunk.len() - batch.len();
            self.stored += store.append(&batch)?.stored();
        }
        Ok(())
    }
}

/// Validates and appends `traffic`'s events to `store` day by day, `batch_events` to
/// an append (each durable before it returns), leaving out the events the store
/// refuses; `pace` says what happens to the store's clock between days.
pub fn load(
    store: &Store,
    traffic: &Traffic,
    batch_events: usize,
    pace: Pace,
) -> Result<Loaded, StorageError> {
    let cfg = traffic.config();
    let mut loaded = Loaded::default();
    for d in 0..cfg.days {
        let day_end = cfg.start_ms + (d as i64 + 1) * DAY;
        if let Pace::DayEnds(clock) | Pace::SealingDaily(clock) = pace {
            clock.set(day_end);
        }
        loaded.append(store, &traffic.day_events(d), batch_events)?;
        if let Pace::SealingDaily(clock) = pace {
            clock.set(day_end + store.config().seal_grace_ms + 1);
            store.seal_due()?;
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sightline_storage::StoreConfig;

    use super::*;
    use crate::TrafficConfig;

    /// A small city and an empty store on a manual clock at its first midnight.
    fn small_city() -> (Traffic, tempfile::TempDir, Arc<ManualClock>, Store) {
        let traffic = Traffic::new(TrafficConfig {
            communities: 2,
            days: 3,
            households_per_community: 20,
            source_ids: true,
            ..Default::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(traffic.config().start_ms));
        let store =
            Store::open_with_clock(dir.path(), StoreConfig::default(), clock.clone()).unwrap();
        (traffic, dir, clock, store)
    }

    #[test]
    fn every_event_is_stored_and_past_days_are_sealed_when_sealing_daily() {
        let (traffic, _dir, clock, store) = small_city();
        let loaded = load(&store, &traffic, 100, Pace::SealingDaily(&clock)).unwrap();
        let total: usize = traffic.days().map(|d| d.len()).sum();
        assert_eq!(
            loaded,
            Loaded {
                stored: total,
                rejected: 0
            }
        );
        let shards = store.shards();
        let held: u64 = shards
            .iter()
            .map(|s| s.sealed_events + s.memory_events as u64)
            .sum();
        assert_eq!(held, total as u64);
        let layout = store.config().layout();
        let sealed_days: std::collections::BTreeSet<i64> = shards
            .iter()
            .filter(|s| s.sealed_events > 0)
            .map(|s| (layout.start_ms(s.key.span) - traffic.config().start_ms) / DAY)
            .collect();
        assert_eq!(sealed_days, [0, 1, 2].into(), "{shards:?}");
    }

    #[test]
    fn events_in_the_future_of_a_free_clock_are_rejected_and_counted() {
        let (traffic, _dir, _clock, store) = small_city();
        let loaded = load(&store, &traffic, 100, Pace::Free).unwrap();
        let total: usize = traffic.days().map(|d| d.len()).sum();
        assert!(loaded.rejected > 0 && loaded.stored > 0, "{loaded:?}");
        assert_eq!(loaded.stored + loaded.rejected, total);
    }
}
