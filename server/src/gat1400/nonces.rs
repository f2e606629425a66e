//! Issued digest nonces: bounded, expiring in O(1) amortised (a queue in issue order
//! beside the map), and each answered with a growing `nc` only, so a captured
//! `Authorization` header replayed — on this connection or another — is refused.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a nonce may be answered.
pub const NONCE_TTL: Duration = Duration::from_secs(300);
/// Most nonces outstanding; past it the oldest is forgotten (its client is asked
/// again). Bounds what unauthenticated requests can make the server hold.
pub const MAX_NONCES: usize = 100_000;

/// What became of an answered nonce.
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    /// Fresh, and this `nc` is past every one seen with it.
    Fresh,
    /// Never issued, expired or forgotten.
    Stale,
    /// An `nc` already seen (or not past it): a replay.
    Replayed,
}

#[derive(Default)]
pub struct Nonces {
    /// Nonce → when issued, and the greatest `nc` answered with it.
    issued: HashMap<String, (Instant, Option<u64>)>,
    order: VecDeque<(Instant, String)>,
}

impl Nonces {
    fn expire(&mut self, now: Instant) {
        while let Some((t, _)) = self.order.front() {
            if now.duration_since(*t) < NONCE_TTL && self.order.len() <= MAX_NONCES {
                break;
            }
            let (_, n) = self.order.pop_front().expect("a front");
            self.issued.remove(&n);
        }
    }

    /// A new nonce, remembered.
    pub fn issue(&mut self) -> String {
        let now = Instant::now();
        self.expire(now);
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.issued.insert(nonce.clone(), (now, None));
        self.order.push_back((now, nonce.clone()));
        nonce
    }

    /// Records an answer to `nonce` with counter `nc` (hex; empty without `qop`, when a
    /// nonce may be answered once).
    pub fn answer(&mut self, nonce: &str, nc: &str) -> Use {
        let now = Instant::now();
        self.expire(now);
        let Some((issued, last)) = self.issued.get_mut(nonce) else {
            return Use::Stale;
        };
        if now.duration_since(*issued) >= NONCE_TTL {
            return Use::Stale;
        }
        let count = match nc {
            "" => 1,
            nc => match u64::from_str_radix(nc.trim(), 16) {
                Ok(n) => n,
                Err(_) => return Use::Replayed,
            },
        };
        if last.is_some_and(|l| count <= l) {
            return Use::Replayed;
        }
        *last = Some(count);
        Use::Fresh
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.issued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_answered_with_growing_counters_only() {
        let mut n = Nonces::default();
        let a = n.issue();
        assert_eq!(n.answer(&a, "00000001"), Use::Fresh);
        assert_eq!(
            n.answer(&a, "00000001"),
            Use::Replayed,
            "the same header again"
        );
        assert_eq!(n.answer(&a, "00000002"), Use::Fresh);
        assert_eq!(n.answer(&a, "1"), Use::Replayed);
        assert_eq!(n.answer("never issued", "00000001"), Use::Stale);
        let b = n.issue();
        assert_eq!(n.answer(&b, ""), Use::Fresh, "without qop: once");
        assert_eq!(n.answer(&b, ""), Use::Replayed);
    }

    #[test]
    fn outstanding_nonces_are_bounded() {
        let mut n = Nonces::default();
        let first = n.issue();
        for _ in 0..MAX_NONCES + 10 {
            n.issue();
        }
        assert!(n.len() <= MAX_NONCES + 1, "{}", n.len());
        assert_eq!(
            n.answer(&first, "00000001"),
            Use::Stale,
            "the oldest was forgotten"
        );
    }
}
