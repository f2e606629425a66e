//! Normalisation of subjects, so that one vehicle or person is one dictionary entry.

use crate::Kind;

/// Normalises a subject of `kind`: plates are upper-cased, full-width forms folded to
/// half-width, and spaces and separators (`·`, `•`, `・`, `-`, `.`) dropped, so that
/// `"苏E·12345"`, `"苏e 12345"` and `"苏Ｅ１２３４５"` are one subject. Other kinds are
/// trimmed of surrounding white space only: feature and card ids are opaque.
pub fn normalize_subject(kind: Kind, raw: &str) -> String {
    match kind {
        Kind::Vehicle | Kind::Nonmotor => normalize_plate(raw),
        _ => raw.trim().to_string(),
    }
}

/// [`normalize_subject`] of a string the caller gives up: returned as it is when it is
/// already normal (no allocation), normalised otherwise.
pub fn normalize_subject_owned(kind: Kind, raw: String) -> String {
    let normal = match kind {
        Kind::Vehicle | Kind::Nonmotor => raw.chars().all(|c| {
            fold_full_width(c) == c
                && !c.is_whitespace()
                && !matches!(c, '·' | '•' | '・' | '･' | '-' | '.')
                && c.to_ascii_uppercase() == c
        }),
        _ => raw.trim().len() == raw.len(),
    };
    match normal {
        true => raw,
        false => normalize_subject(kind, &raw),
    }
}

/// See [`normalize_subject`].
pub fn normalize_plate(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = fold_full_width(c);
        if c.is_whitespace() || matches!(c, '·' | '•' | '・' | '･' | '-' | '.') {
            continue;
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn fold_full_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plate_spellings_collapse_to_one_subject() {
        for raw in [
            "苏E·12345",
            "苏e12345",
            " 苏E 12345 ",
            "苏Ｅ１２３４５",
            "苏E-12345",
            "苏ｅ・12345",
        ] {
            assert_eq!(normalize_plate(raw), "苏E12345", "{raw:?}");
        }
        assert_eq!(normalize_plate("苏ED12345"), "苏ED12345");
    }

    #[test]
    fn face_and_card_ids_are_only_trimmed() {
        assert_eq!(
            normalize_subject(Kind::Face, " F3a9c01d2e4 "),
            "F3a9c01d2e4"
        );
        assert_eq!(normalize_subject(Kind::Access, "C00012345"), "C00012345");
    }

    proptest::proptest! {
        #[test]
        fn the_owned_form_normalises_exactly_like_the_borrowed_one(
            raw in "[ 苏EeＥ１1·・.\\-a-zA-Z0-9\u{3000}\t]{0,12}",
            kind in proptest::sample::select(vec![Kind::Vehicle, Kind::Face, Kind::Nonmotor, Kind::Access]),
        ) {
            proptest::prop_assert_eq!(
                normalize_subject_owned(kind, raw.clone()),
                normalize_subject(kind, &raw)
            );
        }
    }
}
