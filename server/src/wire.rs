//! The binary ingest encoding for high-rate producers: `POST /v1/events` with
//! `Content-Type: application/x-sightline-bincode` and a body of `Vec<EventInput>`
//! encoded with bincode 2 (`config::standard()`, serde). The fields mean what they
//! mean in JSON; `ts_ms` is epoch milliseconds.

use sightline_storage::EventInput;

pub const CONTENT_TYPE: &str = "application/x-sightline-bincode";

/// Encodes a batch.
pub fn encode(events: &[EventInput]) -> Vec<u8> {
    bincode::serde::encode_to_vec(events, bincode::config::standard())
        .expect("events always encode")
}

/// Decodes a batch; the whole body must be one well-formed batch.
pub fn decode(body: &[u8]) -> Result<Vec<EventInput>, String> {
    let (events, used): (Vec<EventInput>, usize) = bincode::serde::decode_from_slice(
        body,
        bincode::config::standard().with_limit::<{ 256 << 20 }>(),
    )
    .map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} bytes after the batch", body.len() - used));
    }
    Ok(events)
}
