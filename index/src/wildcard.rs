//! Wildcard patterns (`?` one character, `*` any run) as a lazy automaton over the
//! vocabulary's term dictionary.
//!
//! A regex DFA for a pattern like `*苏0E?0E*3??E0E?*4*` is built whole before the first
//! term is read, and its size grows with every `*` and UTF-8 `?`: up to 50 ms for one
//! 32-character pattern (found by the `pattern` fuzzer). Here the state is the set of
//! pattern positions reached (bit-parallel, one `u64`) plus the character being decoded,
//! computed only for the dictionary bytes actually walked: no construction cost, and
//! each byte costs a few word operations.

use std::sync::Arc;

use tantivy::query::{AutomatonWeight, EnableScoring, Query, Weight};
use tantivy::schema::Field;
use tantivy_fst::Automaton;

/// One pattern element that consumes a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Char(char),
    Any,
}

/// A compiled wildcard pattern (at most 63 non-`*` characters).
#[derive(Clone, Debug)]
pub struct Wildcard {
    toks: Vec<Tok>,
    /// Bit `i`: a `*` stands after the first `i` tokens (any characters may be skipped
    /// there).
    stars: u64,
    /// Bit `i + 1` for each token `i` that is `?`.
    any: u64,
}

/// Positions reached, and the UTF-8 character being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    reached: u64,
    code: u32,
    pending: u8,
}

impl Wildcard {
    /// `None` if the pattern has more than 63 characters besides `*`.
    pub fn new(pattern: &str) -> Option<Wildcard> {
        let mut toks = Vec::new();
        let mut stars = 0u64;
        for c in pattern.chars() {
            match c {
                '*' => stars |= 1 << toks.len(),
                '?' => toks.push(Tok::Any),
                c => toks.push(Tok::Char(c)),
            }
            if toks.len() > 63 {
                return None;
            }
        }
        let any = toks
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == Tok::Any)
            .fold(0, |m, (i, _)| m | 1 << (i + 1));
        Some(Wildcard { toks, stars, any })
    }

    fn accept_bit(&self) -> u64 {
        1 << self.toks.len()
    }

    /// The positions reached after one more character.
    fn step(&self, reached: u64, c: char) -> u64 {
        let mut matched = self.any;
        for (i, t) in self.toks.iter().enumerate() {
            if *t == Tok::Char(c) {
                matched |= 1 << (i + 1);
            }
        }
        ((reached << 1) & matched) | (reached & self.stars)
    }

    /// Whether the whole of `s` matches (what the automaton decides byte by byte).
    pub fn matches(&self, s: &str) -> bool {
        let end = s.chars().fold(1u64, |r, c| self.step(r, c));
        end & self.accept_bit() != 0
    }
}

impl Automaton for Wildcard {
    type State = State;

    fn start(&self) -> State {
        State {
            reached: 1,
            code: 0,
            pending: 0,
        }
    }

    fn is_match(&self, s: &State) -> bool {
        s.pending == 0 && s.reached & self.accept_bit() != 0
    }

    fn can_match(&self, s: &State) -> bool {
        s.reached != 0
    }

    fn will_always_match(&self, s: &State) -> bool {
        // At the end with a trailing `*`: every continuation matches.
        s.pending == 0 && s.reached & self.accept_bit() & self.stars != 0
    }

    fn accept(&self, s: &State, byte: u8) -> State {
        let dead = State {
            reached: 0,
            code: 0,
            pending: 0,
        };
        let (code, pending) = if s.pending == 0 {
            match byte {
                0x00..=0x7f => (byte as u32, 0),
                0xc2..=0xdf => (byte as u32 & 0x1f, 1),
                0xe0..=0xef => (byte as u32 & 0x0f, 2),
                0xf0..=0xf4 => (byte as u32 & 0x07, 3),
                _ => return dead,
            }
        } else if byte & 0xc0 == 0x80 {
            (s.code << 6 | (byte as u32 & 0x3f), s.pending - 1)
        } else {
            return dead;
        };
        if pending > 0 {
            return State {
                reached: s.reached,
                code,
                pending,
            };
        }
        match char::from_u32(code) {
            Some(c) => State {
                reached: self.step(s.reached, c),
                code: 0,
                pending: 0,
            },
            None => dead,
        }
    }
}

/// The subjects of `field` matching a [`Wildcard`].
#[derive(Clone, Debug)]
pub struct WildcardQuery {
    field: Field,
    pattern: Arc<Wildcard>,
}

impl WildcardQuery {
    pub fn new(field: Field, pattern: Wildcard) -> WildcardQuery {
        WildcardQuery {
            field,
            pattern: Arc::new(pattern),
        }
    }
}

impl Query for WildcardQuery {
    fn weight(&self, _: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(AutomatonWeight::<Wildcard>::new(
            self.field,
            self.pattern.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious recursive matcher, as the model.
    fn model(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len()).any(|k| model(rest, &s[k..])),
            Some(('?', rest)) => !s.is_empty() && model(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && model(rest, &s[1..]),
        }
    }

    /// Runs the automaton over the bytes, as the term dictionary walk does.
    fn by_bytes(w: &Wildcard, s: &str) -> bool {
        let mut st = w.start();
        for &b in s.as_bytes() {
            if !w.can_match(&st) {
                return false;
            }
            if w.will_always_match(&st) {
                return true;
            }
            st = w.accept(&st, b);
        }
        w.is_match(&st)
    }

    fn text(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(alphabet), 0..max)
            .prop_map(|v| v.into_iter().collect())
    }

    const LETTERS: &[char] = &['苏', 'E', '1', '2', 'é', '𝄞'];
    const PATTERN: &[char] = &['苏', 'E', '1', '2', 'é', '𝄞', '?', '*'];

    proptest! {
        #[test]
        fn matches_like_the_obvious_matcher(p in text(PATTERN, 12), s in text(LETTERS, 14)) {
            let w = Wildcard::new(&p).unwrap();
            let pc: Vec<char> = p.chars().collect();
            let sc: Vec<char> = s.chars().collect();
            let want = model(&pc, &sc);
            prop_assert_eq!(w.matches(&s), want);
            prop_assert_eq!(by_bytes(&w, &s), want);
        }
    }

    #[test]
    fn examples() {
        let m = |p: &str, t: &str| Wildcard::new(p).unwrap().matches(t);
        assert!(m("苏E1?3*", "苏E12345"));
        assert!(m("*345", "苏E12345"));
        assert!(m("*", ""));
        assert!(!m("苏E1?3", "苏E12345"));
        assert!(!m("?", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
    }

    #[test]
    fn invalid_utf8_never_matches_and_long_patterns_are_refused() {
        let w = Wildcard::new("*").unwrap();
        let mut st = w.start();
        st = w.accept(&st, 0xff);
        assert!(!w.can_match(&st));
        assert!(Wildcard::new(&"a".repeat(63)).is_some());
        assert!(Wildcard::new(&"a".repeat(64)).is_none());
        assert!(Wildcard::new(&format!("*{}*", "?".repeat(63))).is_some());
    }
}
