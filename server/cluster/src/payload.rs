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

#[cfg(test)]
mod tests {
    use super::*;
    use sightline_storage::{AttrValue, Validator};

    fn input(source_id: Option<&str>) -> EventInput {
        EventInput {
            ts_ms: 1_764_547_200_000,
            community: "3205080001".into(),
            device: "32050801011210000003".into(),
            kind: "vehicle".into(),
            subject: "苏E·12345".into(),
            direction: "in".into(),
            attrs: source_id
                .map(|s| ("source_id".to_string(), AttrValue::Str(s.into())))
                .into_iter()
                .chain([("lane".to_string(), AttrValue::Int(2))])
                .collect(),
        }
    }

    #[test]
    fn a_message_decodes_to_the_same_validated_event() {
        let v = Validator::default();
        let now = 1_764_600_000_000;
        let event = v.validate(input(Some("a-1")), now).unwrap();
        let body = encode(&event);
        let again = v.validate(decode(&body).unwrap(), now).unwrap();
        assert_eq!(again, event);
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        assert!(decode(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn message_ids_are_the_source_id_or_a_hash_of_the_event() {
        let v = Validator::default();
        let now = 1_764_600_000_000;
        let with = v.validate(input(Some("a-1")), now).unwrap();
        assert_eq!(message_id(&with, &encode(&with)), "s:a-1");
        let without = v.validate(input(None), now).unwrap();
        let id = message_id(&without, &encode(&without));
        assert!(id.starts_with("h:") && id.len() == 18, "{id}");
        // The same event normalised the same way: the same id (a re-send dedups).
        let mut other = input(None);
        other.subject = "苏E12345".into();
        let same = v.validate(other, now).unwrap();
        assert_eq!(message_id(&same, &encode(&same)), id);
    }
}
