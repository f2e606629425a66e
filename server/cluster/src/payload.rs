//! An event as a log message: its normalised fields as an [`EventInput`] in bincode 2
//! (`config::standard()`, the encoding of the binary ingest batches), so the indexer
//! validates exactly what the ingest node validated. The message id (`Nats-Msg-Id`,
//! JetStream's dedup within the stream's duplicate window) is `s:` + the event's
//! `source_id` when it has one, else `h:` + FNV-1a 64 of this encoding in hex.

use sightline_storage::{Event, EventInput};

use crate::partition::fnv1a64;

/// The message body of a validated event.
pub fn encode(event: &Event) -> Vec<u8> {
    let input = EventInput {
        ts_ms: event.ts_ms(),
        community: event.community().to_string(),
        device: event.device().as_str().to_string(),
        kind: event.kind().as_str().to_string(),
        subject: event.subject().to_string(),
        direction: event.direction().as_str().to_string(),
        attrs: event.attrs(),
    };
    bincode::encode_to_vec(&input, bincode::config::standard()).expect("events always encode")
}

/// A message body back to the event as received (to be validated again).
pub fn decode(body: &[u8]) -> Result<EventInput, String> {
    let (input, used): (EventInput, usize) = bincode::decode_from_slice(
        body,
        bincode::config::standard().with_limit::<{ 1 << 20 }>(),
    )
    .map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} bytes after the event", body.len() - used));
    }
    Ok(input)
}

/// The message id of an event whose body is `body`.
pub fn message_id(event: &Event, body: &[u8]) -> String {
    match event.source_id() {
        Some(id) => format!("s:{id}"),
        None => format!("h:{:016x}", fnv1a64(body)),
    }
}
