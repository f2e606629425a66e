//! How plate cameras misread: OCR confuses a digit with a character that looks like it.
//! The traffic model misreads plates at random; `sightline demo` and the load generator
//! misread real plates on purpose, to search for them.

use rand::Rng;

/// Characters plate OCR confuses, as (digit, look-alike). No character stands in two
/// pairs, so the order matters only to a caller that takes the first few.
pub const CONFUSIONS: [(char, char); 6] = [
    ('0', 'D'),
    ('8', 'B'),
    ('5', 'S'),
    ('2', 'Z'),
    ('1', '7'),
    ('6', 'G'),
];

/// A plate's province character and city letter, never misread.
const PREFIX_CHARS: usize = 2;

/// The look-alike of `c`, whichever side of its pair in [`CONFUSIONS`] it stands on.
fn look_alike(c: char) -> Option<char> {
    CONFUSIONS.iter().find_map(|&(digit, alike)| {
        if c == digit {
            Some(alike)
        } else if c == alike {
            Some(digit)
        } else {
            None
        }
    })
}

/// `plate` as the model's cameras misread it: each confusable character after the
/// prefix in turn is misread with probability ½, and the first that is ends it (so the
/// plate may come back as it was).
pub(crate) fn misread_at_random(plate: &str, rng: &mut impl Rng) -> String {
    let mut chars: Vec<char> = plate.chars().collect();
    for c in chars.iter_mut().skip(PREFIX_CHARS) {
        if let Some(alike) = look_alike(*c) {
            if rng.random_bool(0.5) {
                *c = alike;
                break;
            }
        }
    }
    chars.into_iter().collect()
}

/// `plate` with every digit after the prefix that has a look-alike in `confusions`
/// read as that look-alike (as it was if it has none).
pub fn read_digits_as(plate: &str, confusions: &[(char, char)]) -> String {
    plate
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let alike = confusions.iter().find(|&&(digit, _)| digit == c);
            match alike {
                Some(&(_, alike)) if i >= PREFIX_CHARS => alike,
                _ => c,
            }
        })
        .collect()
}

/// `plate` with its last character misread: an 8 as B, anything else as 8.
pub fn misread_last(plate: &str) -> String {
    let mut chars: Vec<char> = plate.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == '8' { 'B' } else { '8' };
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_random_misread_swaps_at_most_one_confusable_character_after_the_prefix() {
        let plate = "8B苏E0D1X6";
        let mut changed = 0;
        for seed in 0..200 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let read = misread_at_random(plate, &mut rng);
            let diffs: Vec<(char, char)> = plate
                .chars()
                .zip(read.chars())
                .enumerate()
                .filter(|&(_, (a, b))| a != b)
                .map(|(i, pair)| {
                    assert!(i >= PREFIX_CHARS, "{read}: prefix misread");
                    pair
                })
                .collect();
            assert!(diffs.len() <= 1, "{read}");
            for (a, b) in diffs {
                assert_eq!(look_alike(a), Some(b), "{read}");
                changed += 1;
            }
        }
        assert!(changed > 150, "misreads are common: {changed}");
    }

    #[test]
    fn digits_are_read_as_their_look_alikes_after_the_prefix_only() {
        assert_eq!(read_digits_as("苏E80526", &CONFUSIONS[..4]), "苏EBDSZ6");
        assert_eq!(read_digits_as("80806G", &CONFUSIONS), "80BDGG");
        assert_eq!(read_digits_as("苏EABC", &CONFUSIONS), "苏EABC");
    }

    #[test]
    fn the_last_character_is_misread_as_8_or_an_8_as_b() {
        assert_eq!(misread_last("苏E12348"), "苏E1234B");
        assert_eq!(misread_last("苏E1234B"), "苏E12348");
        assert_eq!(misread_last("苏EABCDE"), "苏EABCD8");
        assert_eq!(misread_last(""), "");
    }
}
