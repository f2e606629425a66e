//! Watchlist alerts on an ingest node: every event the log acknowledged (through
//! `POST /v1/events` or a GA/T 1400 upload) is matched against the cluster's
//! watchlists with `serve`'s matcher (`crate::watchlists::Matcher`: exact subjects,
//! wildcards, OCR-fuzzy plates, expiry and scope), and the alerts it raises are
//! written to PostgreSQL's `alerts` table (`sightline_cluster::alerts`) before the
//! ingest is answered, as `serve` writes them before it answers.
//!
//! **Why PostgreSQL, after the log.** Query nodes page alerts by id with `serve`'s
//! cursor and filter them by community and watchlist: a table does that with one
//! indexed statement and keeps them as long as wanted, where a JetStream subject would
//! need every query node to consume and keep its own ordered copy. The alerts are
//! written once the events' PubAcks came, so an alert never names an event the log
//! does not hold. If the write fails (PostgreSQL away past `index.lease_ms`), the
//! ingest is answered 503 `storage_unavailable` although its events are in the log:
//! the sender sends again, JetStream deduplicates the events (same `Nats-Msg-Id`,
//! within `duplicate_window_s`: the PubAck names the first message), and the alerts
//! are written then; an alert already written is not written twice (`UNIQUE
//! (watchlist, msg_id)`, also for a re-send after the window). So no acknowledged
//! event loses its alert, and none raises one twice. What it costs: while PostgreSQL
//! is away, ingest of events that match a watchlist stops (503); other events go on.
//!
//! **The watchlists** are read every `index.renew_ms` on a task of their own (each
//! call bounded by `index.lease_ms`), so a list made or deleted on a query node
//! alerts (or stops) within a renewal. A node that has not read them yet, or whose
//! last read is older than `super::keys::MAX_AGE`, refuses ingest 503 rather than
//! acknowledge events that might have raised alerts it cannot see.
//!
//! **Event ids.** The cluster id (`partition << 48 | local seq`) is given later, by
//! the partition's indexer: the events are matched before they are published, and
//! each that raised an alert is marked (`sightline_cluster::log::ALERT_HEADER`) so
//! that its indexer records the id it gives it (`sightline_cluster::alerts`); a
//! reader sees an alert's `event_id` (and its event's `id`) `null` until then,
//! usually a fraction of a second (a log sequence in its place would name another
//! event to `GET /v1/events/{id}`). The event itself (subject, time, device,
//! attributes, pictures) is in the alert as on `serve`.
//!
//! **Late events of frozen days** (`sightline_cluster::directory`). The frozen days
//! are read with the watchlists. An event of a frozen day is noted in `late_days`
//! (its partition and day; once per pair while this node remembers it) before it is
//! published, so a query asks that partition for that day although the day's
//! directory does not name it. A node whose reading is older than
//! `directory.frozen_view_ms` refuses ingest (503) rather than acknowledge an event
//! it might not note; one whose reading grew that old while publishing reads the days
//! again before answering (a day frozen meanwhile is noted then).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use sightline_cluster::alerts::NewAlert;
use sightline_cluster::log::{Published, Publisher};
use sightline_cluster::{payload, ClusterConfig};
use sightline_storage::Event;

use super::catalog::{on_meta, Catalog};
use super::keys::MAX_AGE;
use crate::error::ApiError;
use crate::watchlists::{alert_json, Matcher};

/// The watchlists as last read, and the connection alerts are written on.
pub(super) struct Alerting {
    lists: RwLock<Option<(Arc<Matcher>, Instant)>>,
    /// The lists whose rows did not read at the last reading (id: why): left out of
    /// the matcher, named in the node's `/health` and its log.
    unreadable: RwLock<Vec<String>>,
    catalog: Catalog,
    /// The frozen days as last read, and when they were asked for.
    frozen: RwLock<Option<(Arc<HashSet<i32>>, Instant)>>,
    /// How old that reading may be when an event is acknowledged
    /// (`directory.frozen_view_ms`).
    frozen_max_age: Duration,
    /// (partition, day) pairs this node noted late (forgotten past [`NOTED_KEPT`]).
    noted: Mutex<HashSet<(u32, i32)>>,
    /// (partition, day) of every event of a batch answered with an error after it may
    /// have reached the log (a publish failing half-way, a note after it failing): noted
    /// against the frozen days read after the failure, at the next renewal (and again
    /// until that works), so an event stored but not acknowledged is not missed by a
    /// query the directory routes.
    pending: Mutex<HashSet<(u32, i32)>>,
}

/// Late (partition, day) pairs an ingest node remembers having noted (then it
/// forgets them all and notes again: an upsert).
const NOTED_KEPT: usize = 100_000;

impl Alerting {
    /// Reads the watchlists now, then every `index.renew_ms` on a task of its own
    /// (returned, to abort at shutdown).
    pub(super) async fn start(
        config: &ClusterConfig,
    ) -> (Arc<Alerting>, tokio::task::JoinHandle<()>) {
        let alerting = Arc::new(Alerting {
            lists: RwLock::new(None),
            unreadable: RwLock::new(Vec::new()),
            catalog: Catalog::new(config),
            frozen: RwLock::new(None),
            frozen_max_age: Duration::from_millis(config.directory.frozen_view_ms),
            noted: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashSet::new()),
        });
        let mut failing = match alerting.load().await {
            Ok(n) => {
                tracing::info!(watchlists = n, "watchlists read");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the watchlists; refusing ingest (503) until they are read");
                true
            }
        };
        let (a, renew) = (alerting.clone(), config.renew());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(renew).await;
                if let Err(e) = a.settle_pending().await {
                    tracing::warn!(error = %e, "late days of a failed batch not noted yet; tried again at the next renewal");
                }
                match a.load().await {
                    Ok(n) if failing => {
                        tracing::info!(watchlists = n, "watchlists read again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, max_age_s = MAX_AGE.as_secs(), "cannot read the watchlists; the last set read stays in force for its max age");
                        }
                        failing = true;
                    }
                }
            }
        });
        (alerting, task)
    }

    /// Notes the pending pairs against the frozen days as read now (those days were
    /// frozen before the failed batch's answer, or the builder's wait covers them).
    async fn settle_pending(&self) -> Result<(), ApiError> {
        // Taken whole (pairs added meanwhile wait for the next settle, against a
        // reading after their own failure); put back if this one fails.
        let pairs = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if pairs.is_empty() {
            return Ok(());
        }
        let noted = async {
            let frozen = self.load_frozen().await?;
            let late: Vec<(u32, i32)> = pairs
                .iter()
                .copied()
                .filter(|(_, day)| frozen.contains(day))
                .collect();
            on_meta!(self.catalog, "note late days", |m| m.note_late_days(&late))
        }
        .await;
        if noted.is_err() {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.extend(pairs);
        }
        noted
    }

    /// Reads the watchlists once; how many there are.
    async fn load(&self) -> Result<usize, ApiError> {
        let asked = Instant::now();
        let (lists, unreadable) = self.catalog.readable_watchlists().await?;
        {
            let mut known = self.unreadable.write().unwrap_or_else(|p| p.into_inner());
            if *known != unreadable {
                for bad in unreadable.iter().filter(|b| !known.contains(b)) {
                    tracing::error!(watchlist = %bad, "a watchlist that does not read: it raises no alert until it is stored again");
                }
                *known = unreadable;
            }
        }
        let n = lists.len();
        let matcher = Arc::new(Matcher::build(lists));
        *self.lists.write().unwrap_or_else(|p| p.into_inner()) = Some((matcher, asked));
        self.load_frozen().await?;
        Ok(n)
    }

    /// Reads the frozen days once.
    async fn load_frozen(&self) -> Result<Arc<HashSet<i32>>, ApiError> {
        let asked = Instant::now();
        // This node's bound said first: a builder waits the largest one said.
        let bound = self.frozen_max_age.as_millis() as u64;
        on_meta!(self.catalog, "say the view bound", |m| m
            .note_view_bound(bound))?;
        let days = on_meta!(self.catalog, "read the frozen days", |m| m.frozen_days())?;
        let days = Arc::new(days.into_iter().collect::<HashSet<i32>>());
        *self.frozen.write().unwrap_or_else(|p| p.into_inner()) = Some((days.clone(), asked));
        Ok(days)
    }

    /// The frozen days and when they were asked for, unless never read or read
    /// longer ago than `directory.frozen_view_ms`.
    fn frozen(&self) -> Result<(Arc<HashSet<i32>>, Instant), ApiError> {
        match &*self.frozen.read().unwrap_or_else(|p| p.into_inner()) {
            Some((days, at)) if at.elapsed() <= self.frozen_max_age => Ok((days.clone(), *at)),
            Some((_, at)) => Err(ApiError::StorageUnavailable(format!(
                "this node last read the cluster's frozen days {} s ago (PostgreSQL \
                 unreachable?); events are refused until they are read again, so that \
                 a late one is not missed by a query",
                at.elapsed().as_secs()
            ))),
            None => Err(ApiError::StorageUnavailable(
                "this node has not read the cluster's frozen days from PostgreSQL yet; retry \
                 shortly"
                    .into(),
            )),
        }
    }

    /// Notes in `late_days` each (partition, day) of `events` whose day is in
    /// `frozen` and which this node has not noted yet.
    async fn note_late(
        &self,
        frozen: &HashSet<i32>,
        partitions: u32,
        events: &[Event],
    ) -> Result<(), ApiError> {
        if frozen.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(u32, i32)> = {
            let noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
            let mut pairs: Vec<(u32, i32)> = events
                .iter()
                .map(|e| (e, sightline_cluster::directory::day_of(e.ts_ms())))
                .filter(|(_, day)| frozen.contains(day))
                .map(|(e, day)| {
                    let p = sightline_cluster::partition::partition_of(e.community(), partitions);
                    (p, day)
                })
                .filter(|pair| !noted.contains(pair))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            pairs
        };
        if pairs.is_empty() {
            return Ok(());
        }
        on_meta!(self.catalog, "note late days", |m| m.note_late_days(&pairs))?;
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        if noted.len() + pairs.len() > NOTED_KEPT {
            noted.clear();
        }
        noted.extend(pairs);
        Ok(())
    }

    /// The matcher in force, unless the watchlists were never read or too long ago.
    fn matcher(&self) -> Result<Arc<Matcher>, ApiError> {
        let lists = self.lists.read().unwrap_or_else(|p| p.into_inner());
        match &*lists {
            Some((m, at)) if at.elapsed() <= MAX_AGE => Ok(m.clone()),
            Some((_, at)) => Err(ApiError::StorageUnavailable(format!(
                "this node last read the cluster's watchlists {} s ago (PostgreSQL \
                 unreachable?); events are refused until they are read again, so that \
                 none misses its alert",
                at.elapsed().as_secs()
            ))),
            None => Err(ApiError::StorageUnavailable(
                "this node has not read the cluster's watchlists from PostgreSQL yet; retry \
                 shortly"
                    .into(),
            )),
        }
    }

    /// The lists left out of matching because their rows do not read (id: why).
    pub(super) fn unreadable(&self) -> Vec<String> {
        self.unreadable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refuses (503) while the watchlists are not known: checked before events are
    /// published, so none is acknowledged that could not be matched.
    pub(super) fn ready(&self) -> Result<(), ApiError> {
        self.matcher().map(|_| ())
    }

    /// Matches `events` against the watchlists (503 while they are not known),
    /// publishes them to the log, each that raised an alert marked for its indexer
    /// (`sightline_cluster::log::ALERT_HEADER`: the indexer records the cluster id it
    /// gives the event), and, once the log acknowledged them all, records their
    /// alerts: the PubAcks (in the order of `events`) and how many alerts were new.
    ///
    /// On a task of its own: a client that goes away once its events are sent (a
    /// timeout, a closed connection) does not cancel the publishing or the alerts'
    /// write half-way, which would leave acknowledged events in the log without the
    /// alerts they raised.
    pub(super) async fn publish(
        self: &Arc<Self>,
        publisher: &Publisher,
        events: Vec<Event>,
    ) -> Result<(Vec<Published>, u64), ApiError> {
        let (alerting, publisher) = (self.clone(), publisher.clone());
        tokio::spawn(async move {
            let done = alerting.publish_now(&publisher, &events).await;
            if done.is_err() {
                // Some may be in the log all the same: their days noted once the
                // frozen days can be read again.
                let partitions = publisher.partitions();
                let mut pending = alerting.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.extend(events.iter().map(|e| {
                    (
                        sightline_cluster::partition::partition_of(e.community(), partitions),
                        sightline_cluster::directory::day_of(e.ts_ms()),
                    )
                }));
            }
            done
        })
        .await
        .map_err(|e| ApiError::internal(format!("publishing failed: {e}")))?
    }

    async fn publish_now(
        &self,
        publisher: &Publisher,
        events: &[Event],
    ) -> Result<(Vec<Published>, u64), ApiError> {
        let matcher = self.matcher()?;
        // Late events of frozen days noted before they are published.
        let (frozen, read_at) = self.frozen()?;
        let partitions = publisher.partitions();
        self.note_late(&frozen, partitions, events).await?;
        let now_ms = crate::now_ms();
        // Matching (wildcard and fuzzy entries, OCR distances) is CPU work: on the
        // blocking pool, as `serve` matches, not on the connections' executor.
        let owned = events.to_vec();
        let (alerted, alerts) =
            tokio::task::spawn_blocking(move || matched(&matcher, &owned, now_ms))
                .await
                .map_err(|e| ApiError::internal(format!("watchlist matching failed: {e}")))?;
        let published = publisher
            .publish_marked(events, &alerted)
            .await
            .map_err(|e| ApiError::LogUnavailable(format!("the log did not acknowledge: {e}")))?;
        // Publishing took long enough that a day may have been frozen unseen: read
        // them again and note what is late now, before answering.
        if read_at.elapsed() > self.frozen_max_age {
            let frozen = self.load_frozen().await?;
            self.note_late(&frozen, partitions, events).await?;
        }
        if alerts.is_empty() {
            return Ok((published, 0));
        }
        let new = on_meta!(self.catalog, "record alerts", |m| m.add_alerts(&alerts))?;
        Ok((published, new))
    }
}

/// The alerts `events` raise at `now_ms`, and the indexes of the events that raised
/// one (ascending).
fn matched(matcher: &Matcher, events: &[Event], now_ms: i64) -> (Vec<usize>, Vec<NewAlert>) {
    let (mut alerted, mut alerts) = (Vec::new(), Vec::new());
    for (i, e) in events.iter().enumerate() {
        let (lists, _) = matcher.matches(e, now_ms);
        if lists.is_empty() {
            continue;
        }
        alerted.push(i);
        let msg_id = payload::message_id(e, &payload::encode(e));
        // Its cluster id is not known yet (the reader fills it in once the indexer
        // has recorded it).
        let mut json = crate::http::out::event_json(0, e);
        json["id"] = Value::Null;
        for w in lists {
            // Its id is the table's, set as it is read.
            let mut alert = alert_json(0, w, 0, e, &json, now_ms);
            alert["event_id"] = Value::Null;
            alerts.push(NewAlert {
                watchlist: w.id.clone(),
                community: e.community().to_string(),
                msg_id: msg_id.clone(),
                body: alert.to_string(),
            });
        }
    }
    (alerted, alerts)
}
