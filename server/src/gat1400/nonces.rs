//! Issued digest nonces: bounded, expiring in O(1) amortised (a queue in issue order
//! beside the map), and each `nc` answered once, so a captured `Authorization` header
//! replayed — on this connection or another — is refused. Counters may arrive out of
//! order (pooled clients — Apache HttpClient, OkHttp — share a nonce across parallel
//! connections and send nc=3 before nc=2): a sliding window of the last
//! [`NC_WINDOW`] counters, a bitmap as IPsec's anti-replay window (RFC 4303 §3.4.3),
//! takes any counter not yet seen within it and refuses one seen or older than it.
//!
//! With a key (`Nonces::signed`, the cluster's ingest nodes) a nonce is
//! `{issued ms, hex}-{random}-{HMAC-SHA256 of both under the key, 32 hex}`: any node
//! holding the key verifies one another node issued (a camera registers on one ingest
//! node and answers on another), and none is remembered when issued. Once answered it
//! is remembered as a local one is, so a replay to the same node is refused; a replay
//! to another node (or after a restart) is refused by the cluster's record of first
//! uses (`gat1400_nonces`, `server/src/cluster/gat1400.rs`), not here.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a nonce may be answered.
pub const NONCE_TTL: Duration = Duration::from_secs(300);
/// Most nonces outstanding; past it the oldest is forgotten (its client is asked
/// again). Bounds what unauthenticated requests can make the server hold.
pub const MAX_NONCES: usize = 100_000;

/// How many `nc` values below the greatest seen with a nonce may still arrive (once
/// each): one bit each.
pub const NC_WINDOW: u64 = 64;

/// The counters seen with one nonce: the greatest, and a bitmap of it and the
/// [`NC_WINDOW`] − 1 below it (bit `i`: `top − i` seen).
#[derive(Clone, Copy, Default)]
struct Window {
    top: u64,
    seen: u64,
}

impl Window {
    /// Records `count`; false when it was seen before or is older than the window.
    fn take(&mut self, count: u64) -> bool {
        if self.seen == 0 || count > self.top {
            let shift = count - self.top;
            self.seen = match (self.seen, shift) {
                (0, _) => 1,
                (_, s) if s >= NC_WINDOW => 1,
                (seen, s) => (seen << s) | 1,
            };
            self.top = count;
            return true;
        }
        let behind = self.top - count;
        if behind >= NC_WINDOW || self.seen & (1 << behind) != 0 {
            return false;
        }
        self.seen |= 1 << behind;
        true
    }
}

/// What became of an answered nonce.
#[derive(Debug, PartialEq, Eq)]
pub enum Use {
    /// Fresh, and this `nc` not seen with it before (within the window).
    Fresh,
    /// Never issued, expired or forgotten.
    Stale,
    /// An `nc` already seen, or older than the window: a replay.
    Replayed,
    /// An `nc` that is not 1 to 8 hex digits ([`counter`]): nothing recorded.
    Malformed,
}

#[derive(Default)]
pub struct Nonces {
    /// Nonce → when issued, and the counters answered with it.
    issued: HashMap<String, (Instant, Window)>,
    order: VecDeque<(Instant, String)>,
    /// Signs nonces, so any holder of the key verifies them (`None`: local nonces).
    key: Option<[u8; 32]>,
}

/// Whether `a` and `b` are the same bytes, compared whole rather than up to the first
/// difference, so how long it takes tells nothing of where a guess goes wrong (a
/// signature, a digest response). Only the lengths are told apart early.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The count an `nc` says: 1 to 8 hex digits (RFC 7616 §3.4: `8LHEX`; clients also send
/// `1`), or 1 when empty (no `qop`: a nonce answered once). `None` for anything else,
/// which is a malformed header, not a replay.
pub fn counter(nc: &str) -> Option<u64> {
    let nc = nc.trim();
    match nc {
        "" => Some(1),
        nc if nc.len() <= 8 && nc.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(nc, 16).ok()
        }
        _ => None,
    }
}

/// Signed nonces dated this far ahead of the verifying node's clock are still taken
/// (the issuing node's clock may run ahead a little).
const CLOCK_SKEW_MS: i64 = 30_000;

impl Nonces {
    /// Nonces signed with `key`, verified by whoever holds it.
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    pub fn signed(key: [u8; 32]) -> Nonces {
        Nonces {
            key: Some(key),
            ..Nonces::default()
        }
    }

    fn signature(key: &[u8; 32], dated: &str) -> String {
        crate::audit::witness::hmac_sha256(key, dated.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// How old a signed nonce is, if it is one of the key's and not from the future.
    fn signed_age(&self, nonce: &str, now_ms: i64) -> Option<Duration> {
        let key = self.key.as_ref()?;
        let (dated, signature) = nonce.rsplit_once('-')?;
        let (issued, _) = dated.split_once('-')?;
        let issued = i64::from_str_radix(issued, 16).ok()?;
        let expected = Nonces::signature(key, dated);
        if !same_bytes(expected.as_bytes(), signature.as_bytes()) || issued > now_ms + CLOCK_SKEW_MS
        {
            return None;
        }
        Some(Duration::from_millis(now_ms.saturating_sub(issued) as u64))
    }

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
        if let Some(key) = &self.key {
            let dated = format!("{:x}-{:016x}", crate::now_ms(), rand::random::<u64>());
            let signature = Nonces::signature(key, &dated);
            return format!("{dated}-{signature}");
        }
        let now = Instant::now();
        self.expire(now);
        let nonce = format!("{:032x}", rand::random::<u128>());
        self.issued.insert(nonce.clone(), (now, Window::default()));
        self.order.push_back((now, nonce.clone()));
        nonce
    }

    /// Records an answer to `nonce` with counter `nc` (hex; empty without `qop`, when a
    /// nonce may be answered once).
    pub fn answer(&mut self, nonce: &str, nc: &str) -> Use {
        let now = Instant::now();
        self.expire(now);
        if !self.issued.contains_key(nonce) {
            // A signed nonce answered here for the first time: remembered from now.
            let Some(age) = self.signed_age(nonce, crate::now_ms()) else {
                return Use::Stale;
            };
            if age >= NONCE_TTL {
                return Use::Stale;
            }
            let issued = now.checked_sub(age).unwrap_or(now);
            self.issued
                .insert(nonce.to_string(), (issued, Window::default()));
            self.order.push_back((now, nonce.to_string()));
        }
        let Some((issued, window)) = self.issued.get_mut(nonce) else {
            return Use::Stale;
        };
        if now.duration_since(*issued) >= NONCE_TTL {
            return Use::Stale;
        }
        let Some(count) = counter(nc) else {
            return Use::Malformed;
        };
        match window.take(count) {
            true => Use::Fresh,
            false => Use::Replayed,
        }
    }

    /// Whether `nonce` is one this gateway issued (or signed) and not yet expired,
    /// without recording a use.
    pub fn is_live(&self, nonce: &str) -> bool {
        let now = Instant::now();
        match self.issued.get(nonce) {
            Some((issued, _)) => now.duration_since(*issued) < NONCE_TTL,
            None => self
                .signed_age(nonce, crate::now_ms())
                .is_some_and(|age| age < NONCE_TTL),
        }
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
    fn a_nonce_is_answered_once_per_counter() {
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

    /// Pooled clients answer one nonce on parallel connections: nc=3 may come before
    /// nc=2. Each counter is taken once, within the last [`NC_WINDOW`].
    #[test]
    fn counters_out_of_order_are_taken_once_within_the_window() {
        let mut n = Nonces::default();
        let a = n.issue();
        let nc = |i: u64| format!("{i:08x}");
        assert_eq!(n.answer(&a, &nc(1)), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(3)), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(2)), Use::Fresh, "late, not seen");
        assert_eq!(n.answer(&a, &nc(2)), Use::Replayed);
        assert_eq!(n.answer(&a, &nc(3)), Use::Replayed);
        // A jump: the counters it skipped stay open while within the window …
        assert_eq!(n.answer(&a, &nc(3 + NC_WINDOW - 1)), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(4)), Use::Fresh, "the oldest in the window");
        assert_eq!(n.answer(&a, &nc(3)), Use::Replayed, "seen, and at the edge");
        // … and close once they fall behind it.
        assert_eq!(n.answer(&a, &nc(10 + NC_WINDOW)), Use::Fresh);
        assert_eq!(
            n.answer(&a, &nc(10)),
            Use::Replayed,
            "older than the window"
        );
        assert_eq!(n.answer(&a, &nc(11)), Use::Fresh, "the window's last");
        assert_eq!(n.answer(&a, &nc(11)), Use::Replayed);
        // A jump past the window forgets all before it.
        assert_eq!(n.answer(&a, &nc(1_000)), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(999)), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(1_000 - NC_WINDOW)), Use::Replayed);
        assert_eq!(n.answer(&a, &nc(u32::MAX.into())), Use::Fresh);
        assert_eq!(n.answer(&a, &nc(u32::MAX.into())), Use::Replayed);
    }

    /// An `nc` that is not 1 to 8 hex digits is malformed, not a replay: nothing is
    /// recorded, and the counter stays open for a well-formed answer.
    #[test]
    fn a_malformed_nc_is_told_apart_from_a_replay() {
        let mut n = Nonces::default();
        let a = n.issue();
        for bad in [
            "xyz",
            "0000000g",
            "000000001",
            "ffffffffffffffff",
            "-1",
            "+1",
            "1 2",
        ] {
            assert_eq!(counter(bad), None, "{bad}");
            assert_eq!(n.answer(&a, bad), Use::Malformed, "{bad}");
        }
        assert_eq!(counter(""), Some(1));
        assert_eq!(counter("1"), Some(1));
        assert_eq!(counter("0000000A"), Some(10));
        assert_eq!(counter("ffffffff"), Some(u32::MAX.into()));
        assert_eq!(n.answer(&a, "00000001"), Use::Fresh);
    }

    #[test]
    fn same_bytes_compares_whole_values() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"abc", b"abd"));
        assert!(!same_bytes(b"abc", b"xbc"));
        assert!(!same_bytes(b"abc", b"abcd"));
        assert!(!same_bytes(b"abcd", b"abc"));
    }

    #[test]
    fn signed_nonces_verify_on_any_holder_of_the_key_and_nowhere_else() {
        let key = [7u8; 32];
        let mut one = Nonces::signed(key);
        let mut other = Nonces::signed(key);
        let a = one.issue();
        assert_eq!(one.len(), 0, "a signed nonce is not remembered when issued");
        assert_eq!(
            other.answer(&a, "00000001"),
            Use::Fresh,
            "issued by another node"
        );
        assert_eq!(other.answer(&a, "00000001"), Use::Replayed);
        assert_eq!(other.answer(&a, "00000002"), Use::Fresh);
        assert_eq!(
            one.answer(&a, "00000001"),
            Use::Fresh,
            "each node counts its own"
        );
        // Another key, a changed signature, a changed date, a local node: stale.
        assert_eq!(Nonces::signed([8; 32]).answer(&a, "1"), Use::Stale);
        let mut forged = a.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(other.answer(&forged, "1"), Use::Stale);
        let (dated, signature) = a.rsplit_once('-').unwrap();
        let (issued, random) = dated.split_once('-').unwrap();
        let later = i64::from_str_radix(issued, 16).unwrap() + 1;
        assert_eq!(
            other.answer(&format!("{later:x}-{random}-{signature}"), "1"),
            Use::Stale
        );
        assert_eq!(Nonces::default().answer(&a, "1"), Use::Stale);
        // Too old, or from too far ahead.
        let old = format!("{:x}-{:016x}", crate::now_ms() - 301_000, 1);
        let old = format!("{old}-{}", Nonces::signature(&key, &old));
        assert_eq!(other.answer(&old, "1"), Use::Stale);
        let ahead = format!("{:x}-{:016x}", crate::now_ms() + 60_000, 1);
        let ahead = format!("{ahead}-{}", Nonces::signature(&key, &ahead));
        assert_eq!(other.answer(&ahead, "1"), Use::Stale);
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
