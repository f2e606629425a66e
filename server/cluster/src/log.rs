//! NATS JetStream: the log every event goes through.
//!
//! One stream (`ClusterConfig::stream`) holds subjects `ev.>`, file storage,
//! `replicas` copies (3: a quorum of the NATS cluster stores a message before its
//! PubAck), dedup by `Nats-Msg-Id` within `duplicate_window_s`. The ingest role's
//! [`Publisher`] answers an HTTP request only after every event's PubAck; the index
//! role reads a partition with a pull consumer from its checkpoint (`indexer`).

use std::time::Duration;

use async_nats::jetstream::context::Publish;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use sightline_storage::Event;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, Result};
use crate::partition::{partition_of, subject};
use crate::payload;

/// How long one publish waits for its PubAck before it is tried again (a stream
/// leader being elected takes a few seconds).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one event's publish before the request fails (re-sends are deduplicated
/// by message id, so a retry never stores twice).
const PUBLISH_TRIES: u32 = 6;
/// Publishes of one request awaiting their PubAck at once (a 100,000-event batch does
/// not put 100,000 requests in flight).
const MAX_IN_FLIGHT: usize = 1024;

/// The header an ingest node sets on the message of an event that raised a watchlist
/// alert (its value is `1`), so the partition's indexer, which gives the event its
/// cluster id, records that id for the alert (`Meta::add_alert_events`). Only such
/// messages cost it a write to PostgreSQL.
pub const ALERT_HEADER: &str = "Sightline-Alert";

/// Connects to the NATS cluster (the client reconnects by itself afterwards).
pub async fn connect(config: &ClusterConfig) -> Result<Context> {
    Ok(connect_client(config).await?.1)
}

/// A connection to NATS (its JetStream context is made from it).
pub type NatsClient = async_nats::Client;

/// Whether `client` is connected to NATS now, and its state as it names it.
pub fn nats_state(client: &NatsClient) -> (bool, String) {
    let state = client.connection_state();
    (
        state == async_nats::connection::State::Connected,
        state.to_string(),
    )
}

/// [`connect`], with the NATS client beside its JetStream context (whose
/// `connection_state` says whether the node is connected to NATS now).
pub async fn connect_client(config: &ClusterConfig) -> Result<(NatsClient, Context)> {
    let mut options = async_nats::ConnectOptions::new().retry_on_initial_connect();
    // With `[tls]`: the cluster's CA the only roots, the node's certificate presented
    // (used for `tls://` URLs and servers that require TLS).
    if let Some(tls) = crate::tls::client_config() {
        options = options.tls_client_config((*tls).clone());
    }
    let client = options
        .connect(config.nats.as_slice())
        .await
        .map_err(|e| ClusterError::log("connect")(e.to_string()))?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(PUBLISH_TIMEOUT);
    Ok((client, js))
}

/// How long [`ensure_stream`] keeps trying (a JetStream cluster just started elects
/// its meta leader first).
const STREAM_WAIT: Duration = Duration::from_secs(60);

/// The stream, created if absent (tried again for up to a minute).
pub async fn ensure_stream(js: &Context, config: &ClusterConfig) -> Result<Stream> {
    let deadline = tokio::time::Instant::now() + STREAM_WAIT;
    loop {
        let made = js
            .get_or_create_stream(StreamConfig {
                name: config.stream.clone(),
                subjects: vec!["ev.>".into()],
                storage: StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: Duration::from_secs(config.duplicate_window_s),
                max_age: Duration::from_secs(config.stream_max_age_s),
                ..Default::default()
            })
            .await;
        match made {
            Ok(mut s) => {
                // A stream made earlier with another age limit takes this one.
                let want = Duration::from_secs(config.stream_max_age_s);
                // A stream just made (by this node or another starting beside it) may
                // have no leader yet to answer: "stream not found" for a moment.
                let info = match s.info().await {
                    Ok(info) => info,
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::warn!(error = %e, "stream info not answered yet; trying again");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                        continue;
                    }
                    Err(e) => return Err(ClusterError::log("stream info")(e.to_string())),
                };
                if info.config.max_age != want {
                    // Not fatal: the stream works with the limit it has, and the next
                    // node to start sets it again (every node reads the same file).
                    let mut updated = info.config.clone();
                    updated.max_age = want;
                    match js.update_stream(updated).await {
                        Ok(_) => tracing::info!(
                            max_age_s = config.stream_max_age_s,
                            "stream age limit set"
                        ),
                        Err(e) => tracing::warn!(
                            error = %e,
                            "the stream's age limit was not updated; it keeps its own"
                        ),
                    }
                }
                return Ok(s);
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "stream not ready; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(ClusterError::log("create stream")(e.to_string())),
        }
    }
}

/// The stream's configuration and state as JetStream holds them now.
pub async fn stream_info(
    js: &Context,
    config: &ClusterConfig,
) -> Result<async_nats::jetstream::stream::Info> {
    let mut stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| ClusterError::log("get stream")(e.to_string()))?;
    stream
        .info()
        .await
        .cloned()
        .map_err(|e| ClusterError::log("stream info")(e.to_string()))
}

/// The name of the NATS server leading the stream now (`None` while none does).
pub async fn stream_leader(js: &Context, config: &ClusterConfig) -> Result<Option<String>> {
    let info = stream_info(js, config).await?;
    Ok(info.cluster.and_then(|c| c.leader))
}

/// What the log said of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The event's stream sequence number (its log id).
    pub seq: u64,
    /// The message id was seen within the dedup window: stored before, not again.
    pub duplicate: bool,
}

/// The ingest role's side of the log.
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    partitions: u32,
    /// The client under `js`, when given ([`Publisher::refusing_when_disconnected`]).
    client: Option<NatsClient>,
}

impl Publisher {
    pub fn new(js: Context, partitions: u32) -> Publisher {
        Publisher {
            js,
            partitions,
            client: None,
        }
    }

    /// A publisher that fails a publish at once while `client` (the one under its
    /// context) is disconnected from NATS, rather than after every retry of every
    /// event (six 5 s PubAck waits: ~40 s, past most cameras' and HTTP clients'
    /// timeouts). The client reconnects by itself; the caller answers 503 and is
    /// asked to come back.
    pub fn refusing_when_disconnected(mut self, client: NatsClient) -> Publisher {
        self.client = Some(client);
        self
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Publishes every event (concurrently) and returns once each has its PubAck, in
    /// the order given. Any event still refused after the retries fails the call;
    /// those acknowledged are in the log and dedup a re-send of the batch.
    pub async fn publish(&self, events: &[Event]) -> Result<Vec<Published>> {
        self.publish_marked(events, &[]).await
    }

    /// As [`Publisher::publish`], the events whose index is in `alerted` (ascending)
    /// marked with [`ALERT_HEADER`].
    pub async fn publish_marked(
        &self,
        events: &[Event],
        alerted: &[usize],
    ) -> Result<Vec<Published>> {
        if let Some(client) = &self.client {
            let state = client.connection_state();
            if state == async_nats::connection::State::Disconnected {
                return Err(ClusterError::log("publish")(format!(
                    "not connected to NATS ({state}): try again shortly"
                )));
            }
        }
        let mut out = Vec::with_capacity(events.len());
        let mut marked = alerted.iter().peekable();
        for (c, chunk) in events.chunks(MAX_IN_FLIGHT).enumerate() {
            let sends = chunk.iter().enumerate().map(|(i, e)| {
                let at = c * MAX_IN_FLIGHT + i;
                let mark = marked.next_if(|&&m| m == at).is_some();
                self.publish_one(e, mark)
            });
            out.extend(futures::future::try_join_all(sends.collect::<Vec<_>>()).await?);
        }
        Ok(out)
    }

    async fn publish_one(&self, event: &Event, alerted: bool) -> Result<Published> {
        let body = payload::encode(event);
        let id = payload::message_id(event, &body);
        let subject = subject(
            partition_of(event.community(), self.partitions),
            event.community(),
        );
        let body = Bytes::from(body);
        let mut last = String::new();
        for attempt in 0..PUBLISH_TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
            }
            let mut publish = Publish::build().payload(body.clone()).message_id(&id);
            if alerted {
                publish = publish.header(ALERT_HEADER, "1");
            }
            let sent = self.js.send_publish(subject.clone(), publish).await;
            let ack = match sent {
                Ok(fut) => fut.await,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match ack {
                Ok(ack) => {
                    return Ok(Published {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                }
                Err(e) => last = e.to_string(),
            }
            tracing::warn!(subject, attempt, error = %last, "publish not acknowledged; trying again");
        }
        Err(ClusterError::log("publish")(format!(
            "{subject}: no PubAck after {PUBLISH_TRIES} tries: {last}"
        )))
    }
}
