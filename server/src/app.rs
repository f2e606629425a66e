//! The shared state of a running server, and store-wide sums.

use std::sync::Arc;

use sightline_index::{StoreIndex, Vocabulary};
use sightline_storage::Store;

use crate::{audit, auth, feed, gat1400, metrics, subscriptions, watchlists, ServerConfig};

/// Store-wide sums over its shards, as `/health`, `/v1/admin/stats` and `/metrics`
/// report them.
pub(crate) struct Totals {
    pub events: u64,
    pub memory_events: u64,
    pub shards: usize,
    pub segments: usize,
    pub sealed_bytes: u64,
}

impl Totals {
    pub fn of(store: &Store) -> Totals {
        let shards = store.shards();
        let memory_events = shards.iter().map(|s| s.memory_events as u64).sum();
        Totals {
            events: shards.iter().map(|s| s.sealed_events).sum::<u64>() + memory_events,
            memory_events,
            shards: shards.len(),
            segments: shards.iter().map(|s| s.segments).sum(),
            sealed_bytes: shards.iter().map(|s| s.sealed_bytes).sum(),
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The shared state of a running server.
pub(crate) struct App {
    pub store: Store,
    pub index: Arc<StoreIndex>,
    pub vocab: Arc<Vocabulary>,
    pub config: ServerConfig,
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: metrics::Metrics,
    pub keys: auth::Keys,
    pub audit: audit::AuditLog,
    pub query_slots: Arc<tokio::sync::Semaphore>,
    pub gateway: gat1400::Gateway,
    /// GA/T 1400 requests with bodies being read or handled at once.
    pub viid_slots: Arc<tokio::sync::Semaphore>,
    /// What one GA/T 1400 caller holds of `viid_slots`.
    pub viid_callers: Arc<crate::http::limits::PerCaller>,
    /// Bytes of `/VIID` bodies held at once.
    pub viid_bytes: crate::http::limits::ByteBudget,
    /// What one API key holds of `ingest_slots`.
    pub ingest_callers: Arc<crate::http::limits::PerCaller>,
    /// Woken by every group commit, for feed readers waiting on new events.
    pub feed_signal: Arc<feed::Signal>,
    pub subscriptions: subscriptions::Registry,
    /// Subscriptions this server placed at other 视图库s.
    pub remotes: subscriptions::remote::Remotes,
    pub watch: watchlists::Watch,
    /// How outbound connections verify `https://` receivers.
    pub outbound: crate::http::client::Outbound,
}
