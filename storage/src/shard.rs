//! Shards: the unit of storage, sealing and retention.

use serde::{Deserialize, Serialize};

/// A shard is one community over one span (by default one Asia/Shanghai day).
/// `community` is the community's dictionary id; `span` counts spans since the epoch
/// in local time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardKey {
    pub community: u32,
    pub span: i32,
}

/// How timestamps map to spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanLayout {
    pub span_ms: i64,
    pub tz_offset_ms: i64,
}

impl SpanLayout {
    /// The span that contains `ts_ms`.
    pub fn span_of(&self, ts_ms: i64) -> i32 {
        let s = ts_ms
            .saturating_add(self.tz_offset_ms)
            .div_euclid(self.span_ms);
        s.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
    /// First UTC millisecond of `span`.
    pub fn start_ms(&self, span: i32) -> i64 {
        span as i64 * self.span_ms - self.tz_offset_ms
    }
    /// First UTC millisecond after `span`.
    pub fn end_ms(&self, span: i32) -> i64 {
        self.start_ms(span) + self.span_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_midnight_cuts_days() {
        let l = SpanLayout {
            span_ms: 86_400_000,
            tz_offset_ms: 8 * 3_600_000,
        };
        // 2021-08-31T16:00:00Z is 2021-09-01T00:00:00+08:00.
        let midnight = 1_630_425_600_000;
        assert_eq!(l.span_of(midnight) - l.span_of(midnight - 1), 1);
        assert_eq!(l.start_ms(l.span_of(midnight)), midnight);
        assert_eq!(l.end_ms(l.span_of(midnight - 1)), midnight);
    }
}
