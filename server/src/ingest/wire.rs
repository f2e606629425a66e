//! The binary ingest encoding for high-rate producers: `POST /v1/events` with
//! `Content-Type: application/x-sightline-bincode` and a body of `Vec<EventInput>`
//! encoded with bincode 2 (`config::standard()`; the native and the serde encodings of
//! these types are the same bytes). The fields mean what they mean in JSON; `ts_ms` is
//! epoch milliseconds.

use sightline_storage::{EventInput, EventRef};

pub const CONTENT_TYPE: &str = "application/x-sightline-bincode";

/// Whether a `Content-Type` names the binary batch: its media type (before any `;`
/// parameters, without surrounding space) compared without regard to case (RFC 9110
/// §8.3.1), so `Application/X-Sightline-Bincode; v=1` is one and
/// `application/x-sightline-bincodex` is not.
pub fn is_binary(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|v| {
        let media = v.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case(CONTENT_TYPE)
    })
}

/// Encodes a batch.
pub fn encode(events: &[EventInput]) -> Vec<u8> {
    bincode::encode_to_vec(events, bincode::config::standard()).expect("events always encode")
}

/// Why a body is not a batch.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} bytes after the batch")]
    Trailing(usize),
}

/// Decodes a batch, borrowing its strings from `body`; the whole body must be one
/// well-formed batch.
pub fn decode(body: &[u8]) -> Result<Vec<EventRef<'_>>, WireError> {
    let (events, used): (Vec<EventRef<'_>>, usize) = bincode::borrow_decode_from_slice(
        body,
        bincode::config::standard().with_limit::<{ 256 << 20 }>(),
    )?;
    if used != body.len() {
        return Err(WireError::Trailing(body.len() - used));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_storage::AttrValue;

    fn batch() -> Vec<EventInput> {
        (0..3)
            .map(|i| EventInput {
                ts_ms: 1_630_454_400_000 + i,
                community: "3205080001".into(),
                device: "32050801011210000001".into(),
                kind: "vehicle".into(),
                subject: format!("苏E1234{i}"),
                direction: "in".into(),
                attrs: [
                    ("plate_color".to_string(), AttrValue::Str("blue".into())),
                    ("confidence".to_string(), AttrValue::Float(0.5 + i as f64)),
                    ("lane".to_string(), AttrValue::Int(-i)),
                    ("ok".to_string(), AttrValue::Bool(i % 2 == 0)),
                ]
                .into_iter()
                .collect(),
            })
            .collect()
    }

    #[test]
    fn the_native_and_serde_encodings_are_the_same_bytes() {
        // Producers may encode with either; the server decodes natively.
        let events = batch();
        let native = encode(&events);
        let serde = bincode::serde::encode_to_vec(&events, bincode::config::standard()).unwrap();
        assert_eq!(native, serde);
        let back = decode(&serde).unwrap();
        assert_eq!(back.len(), events.len());
        for (b, e) in back.iter().zip(&events) {
            assert_eq!(
                (
                    b.ts_ms,
                    b.community,
                    b.device,
                    b.kind,
                    b.subject,
                    b.direction
                ),
                (
                    e.ts_ms,
                    &*e.community,
                    &*e.device,
                    &*e.kind,
                    &*e.subject,
                    &*e.direction
                )
            );
            let attrs: Vec<(&str, sightline_storage::AttrRef<'_>)> = e
                .attrs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect();
            assert_eq!(b.attrs, attrs);
        }
    }

    #[test]
    fn damaged_batches_are_refused_with_a_reason() {
        let bytes = encode(&batch());
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer)
            .unwrap_err()
            .to_string()
            .contains("after the batch"));
    }
}
