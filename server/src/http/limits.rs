//! Limits that keep one caller from taking what every caller shares: a cap on what
//! one caller holds of a pool of slots ([`PerCaller`]), and a budget of request-body
//! bytes held in memory at once ([`ByteBudget`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most `each` slots held by any one caller (an API key, a GA/T 1400 identity):
/// a caller that dribbles bodies in, reconnecting as each is cut off, holds its share
/// of the pool and no more, so the others' requests still find slots.
pub(crate) struct PerCaller {
    each: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One slot of a [`PerCaller`], given back when dropped.
pub(crate) struct CallerSlot {
    of: Arc<PerCaller>,
    who: String,
}

impl PerCaller {
    pub(crate) fn new(each: usize) -> Arc<PerCaller> {
        Arc::new(PerCaller {
            each: each.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `who`, or `None` when it already holds its share.
    pub(crate) fn take(self: &Arc<Self>, who: &str) -> Option<CallerSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(who.to_string()).or_insert(0);
        if *n >= self.each {
            return None;
        }
        *n += 1;
        Some(CallerSlot {
            of: self.clone(),
            who: who.to_string(),
        })
    }

    #[cfg(test)]
    fn held_by(&self, who: &str) -> usize {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(who).copied().unwrap_or(0)
    }
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut held = self.of.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.who) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.who);
            }
        }
    }
}

/// Request-body bytes that may be held in memory at once: a body reserves what it
/// announces (`Content-Length`) before a byte is read, and more as it grows past that
/// (a chunked or gzip body), and holds it until its request is done.
pub(crate) struct ByteBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

/// Bytes of a [`ByteBudget`], given back when dropped.
#[derive(Default)]
pub(crate) struct Reserved(Option<OwnedSemaphorePermit>);

/// The unit the semaphore counts, so a budget of any size fits its `u32` requests.
const UNIT: usize = 1 << 10;

impl ByteBudget {
    pub(crate) fn new(total: usize) -> ByteBudget {
        let units = total.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS);
        ByteBudget {
            bytes: Arc::new(Semaphore::new(units)),
            total,
        }
    }

    /// The budget, in bytes.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// `more` bytes added to `held`; false (and `held` unchanged) when the budget has
    /// not that much left.
    pub(crate) fn grow(&self, held: &mut Reserved, more: usize) -> bool {
        let units = u32::try_from(more.div_ceil(UNIT)).unwrap_or(u32::MAX);
        if units == 0 {
            return true;
        }
        match self.bytes.clone().try_acquire_many_owned(units) {
            Ok(p) => {
                match &mut held.0 {
                    Some(h) => h.merge(p),
                    None => held.0 = Some(p),
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes reserved now, in all.
    #[cfg(test)]
    fn in_use(&self) -> usize {
        (self.total.div_ceil(UNIT) - self.bytes.available_permits()) * UNIT
    }
}

impl Reserved {
    /// Bytes held (rounded up to the budget's unit).
    pub(crate) fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |p| p.num_permits() * UNIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_holds_its_share_and_no_more() {
        let p = PerCaller::new(2);
        let a1 = p.take("a").unwrap();
        let _a2 = p.take("a").unwrap();
        assert!(p.take("a").is_none());
        assert!(p.take("b").is_some(), "another caller is not affected");
        drop(a1);
        assert_eq!(p.held_by("a"), 1);
        assert!(p.take("a").is_some());
    }

    #[test]
    fn bodies_reserve_within_the_budget_and_give_back() {
        let b = ByteBudget::new(10 << 20);
        let mut one = Reserved::default();
        assert!(b.grow(&mut one, 6 << 20));
        let mut two = Reserved::default();
        assert!(!b.grow(&mut two, 6 << 20), "over the budget");
        assert_eq!(two.bytes(), 0);
        assert!(b.grow(&mut two, 3 << 20));
        assert!(b.grow(&mut one, 1 << 20), "a body grows");
        assert!(!b.grow(&mut one, 1));
        assert_eq!(b.in_use(), 10 << 20);
        drop(one);
        assert_eq!(b.in_use(), 3 << 20);
        assert!(b.grow(&mut Reserved::default(), 7 << 20));
    }
}
