//! The generator: a city's events day by day, each day a pure function of the config.

use sightline_storage::EventInput;

use crate::config::TrafficConfig;
use crate::day::CommunityDay;
use crate::truth::{truth, Truth};

/// The generator. `day_events(d)` is a pure function of the config and `d`.
pub struct Traffic {
    cfg: TrafficConfig,
}

impl Traffic {
    pub fn new(cfg: TrafficConfig) -> Traffic {
        Traffic { cfg }
    }

    pub fn config(&self) -> &TrafficConfig {
        &self.cfg
    }

    /// The answers planted in this city (empty unless `planted`; pairs need `drivers`).
    pub fn truth(&self) -> Truth {
        truth(&self.cfg)
    }

    /// All events of day `d` (0-based), ordered by time.
    pub fn day_events(&self, d: u32) -> Vec<EventInput> {
        self.day_events_of(d, 0..self.cfg.communities)
    }

    /// The events of day `d` in communities `communities` (numbers, 0-based), ordered
    /// by time: a day of a large city made a part at a time, each the same events
    /// [`Traffic::day_events`] holds for those communities.
    pub fn day_events_of(&self, d: u32, communities: std::ops::Range<u32>) -> Vec<EventInput> {
        let mut out = Vec::new();
        for c in communities {
            CommunityDay::new(&self.cfg, c, d, &mut out).generate();
        }
        out.sort_by_key(|e| e.ts_ms);
        out
    }

    /// Every day's events, one day at a time.
    pub fn days(&self) -> impl Iterator<Item = Vec<EventInput>> + '_ {
        (0..self.cfg.days).map(|d| self.day_events(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DAY, SEPT_2021};
    use sightline_storage::Validator;

    #[test]
    fn generation_is_deterministic_and_valid() {
        let t = Traffic::new(TrafficConfig {
            communities: 3,
            days: 2,
            source_ids: true,
            drivers: true,
            planted: true,
            ..Default::default()
        });
        let a = t.day_events(1);
        assert_eq!(a, t.day_events(1));
        // Made a part at a time: the same events.
        let mut parts = t.day_events_of(1, 0..1);
        parts.extend(t.day_events_of(1, 1..3));
        parts.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
        let mut whole = a.clone();
        whole.sort_by(|x, y| format!("{x:?}").cmp(&format!("{y:?}")));
        assert_eq!(parts, whole);
        assert!(a.len() > 1000);
        let v = Validator::default();
        for e in &a {
            v.validate(e.clone(), SEPT_2021 + 10 * DAY)
                .unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
        assert!(a.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
        let kinds: std::collections::HashSet<&str> = a.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds.len(), 3);
    }
}
