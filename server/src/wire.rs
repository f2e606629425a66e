//! The binary ingest encoding for high-rate producers: `POST /v1/events` with
//! `Content-Type: application/x-sightline-bincode` and a body of
//! `Vec<WireEvent>` encoded with bincode 2 (`config::standard()`, serde).

use serde::{Deserialize, Serialize};
use sightline_storage::{AttrValue, Attrs, EventInput};

pub const CONTENT_TYPE: &str = "application/x-sightline-bincode";

/// One event on the wire; the fields mean what they mean in JSON (`ts_ms` is epoch
/// milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireEvent {
    pub ts_ms: i64,
    pub community: String,
    pub device: String,
    pub kind: String,
    pub subject: String,
    pub direction: String,
    pub attrs: Vec<(String, WireAttr)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum WireAttr {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&EventInput> for WireEvent {
    fn from(e: &EventInput) -> WireEvent {
        WireEvent {
            ts_ms: e.ts_ms,
            community: e.community.clone(),
            device: e.device.clone(),
            kind: e.kind.clone(),
            subject: e.subject.clone(),
            direction: e.direction.clone(),
            attrs: e
                .attrs
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        AttrValue::Str(s) => WireAttr::Str(s.clone()),
                        AttrValue::Int(i) => WireAttr::Int(*i),
                        AttrValue::Float(f) => WireAttr::Float(*f),
                        AttrValue::Bool(b) => WireAttr::Bool(*b),
                    };
                    (k.clone(), v)
                })
                .collect(),
        }
    }
}

impl From<WireEvent> for EventInput {
    fn from(w: WireEvent) -> EventInput {
        let attrs: Attrs = w
            .attrs
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    WireAttr::Str(s) => AttrValue::Str(s),
                    WireAttr::Int(i) => AttrValue::Int(i),
                    WireAttr::Float(f) => AttrValue::Float(f),
                    WireAttr::Bool(b) => AttrValue::Bool(b),
                };
                (k, v)
            })
            .collect();
        EventInput {
            ts_ms: w.ts_ms,
            community: w.community,
            device: w.device,
            kind: w.kind,
            subject: w.subject,
            direction: if w.direction.is_empty() {
                "unknown".into()
            } else {
                w.direction
            },
            attrs,
        }
    }
}

/// Encodes a batch.
pub fn encode(events: &[WireEvent]) -> Vec<u8> {
    bincode::serde::encode_to_vec(events, bincode::config::standard())
        .expect("wire events always encode")
}

/// Decodes a batch; the whole body must be one well-formed batch.
pub fn decode(body: &[u8]) -> Result<Vec<WireEvent>, String> {
    let (events, used): (Vec<WireEvent>, usize) = bincode::serde::decode_from_slice(
        body,
        bincode::config::standard().with_limit::<{ 256 << 20 }>(),
    )
    .map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} bytes after the batch", body.len() - used));
    }
    Ok(events)
}
