//! The alerts watchlists raise: one PostgreSQL table the ingest nodes write (before
//! they answer the ingest that raised them) and the query nodes page through.
//!
//! ```sql
//! alerts (id bigserial PRIMARY KEY,     -- the cursor of GET /v1/alerts
//!         watchlist text, community text,
//!         msg_id text,                  -- the event's Nats-Msg-Id
//!         body text,                    -- the alert as `serve` answers it, but its id
//!         raised_at timestamptz,
//!         UNIQUE (watchlist, msg_id))   -- an event re-sent raises its alerts once
//! alert_events (msg_id text PRIMARY KEY, -- an alerted event's Nats-Msg-Id
//!               event_id bigint,         -- and the cluster id its indexer gave it
//!               recorded_at timestamptz)
//! ```
//!
//! **Event ids.** An ingest node writes an alert once the log acknowledged its event,
//! before the event has a cluster id (`partition << 48 | local seq`: the partition's
//! indexer gives it when it appends the message). The ingest node marks such a
//! message ([`crate::log::ALERT_HEADER`]); the indexer, having appended it, records
//! (message id → event id) in `alert_events` ([`Meta::add_alert_events`]), and
//! readers join the two by message id ([`Meta::alerts_after`]). A join rather than an
//! update of `alerts`, because either write may come first: the indexer may append
//! the message before the ingest node has written its alert. Every owner of a
//! partition numbers its events alike (the same committed state, then the same log),
//! so the id an indexer records before its commit is the one a successor replaying
//! the log would give (`ON CONFLICT DO NOTHING`: the first recorded stays, the same).
//!
//! **Ids in commit order.** Readers page by id (`after`), so an alert must never
//! become visible below an id a reader has already passed. Several ingest nodes insert
//! at once, and a sequence hands out ids in the order they are asked for, not the
//! order their transactions commit; so every insert takes one transaction-scoped
//! advisory lock first ([`ALERTS_LOCK`]) and ids are drawn under it: a later id is
//! committed later. Alerts are rare (only matches are written), so serialising their
//! writes costs ingest nothing measurable.

use crate::error::{ClusterError, Result};
use crate::meta::Meta;

/// The advisory lock alert inserts take (any constant no other statement uses).
pub const ALERTS_LOCK: i64 = 0x5349_4748_544c_414c; // "SIGHTLAL"

/// An alert to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    pub watchlist: String,
    pub community: String,
    /// The raising event's `Nats-Msg-Id` (`payload::message_id`).
    pub msg_id: String,
    /// The alert's JSON without its id.
    pub body: String,
}

/// An alert row read with its event's id: (id, body, its event's cluster id once
/// recorded).
fn alert_row(r: &tokio_postgres::Row) -> (u64, String, Option<u64>) {
    let event: Option<i64> = r.get(2);
    (r.get::<_, i64>(0) as u64, r.get(1), event.map(|e| e as u64))
}

impl Meta {
    /// Records `alerts` in their order, in one statement (so all or none); an alert of
    /// a (watchlist, message id) already recorded is skipped. How many were new.
    pub async fn add_alerts(&self, alerts: &[NewAlert]) -> Result<u64> {
        let col = |f: fn(&NewAlert) -> &String| -> Vec<&str> {
            alerts.iter().map(|a| f(a).as_str()).collect()
        };
        let (w, c, m, b) = (
            col(|a| &a.watchlist),
            col(|a| &a.community),
            col(|a| &a.msg_id),
            col(|a| &a.body),
        );
        // The lock is a materialised CTE (it is volatile), joined to every row, so it
        // is held before the first id is drawn, until the statement's commit.
        self.client
            .execute(
                "WITH lock AS (SELECT pg_advisory_xact_lock($5)),
                 new AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                         WITH ORDINALITY AS n(watchlist, community, msg_id, body, ord))
                 INSERT INTO alerts (watchlist, community, msg_id, body)
                 SELECT new.watchlist, new.community, new.msg_id, new.body
                 FROM new, lock ORDER BY new.ord
                 ON CONFLICT (watchlist, msg_id) DO NOTHING",
                &[&w, &c, &m, &b, &ALERTS_LOCK],
            )
            .await
            .map_err(ClusterError::pg("record alerts"))
    }

    /// Records the cluster ids of alerted events: (message id, event id) each; one
    /// already recorded stays (every owner gives a message the same id).
    pub async fn add_alert_events(&self, events: &[(String, u64)]) -> Result<u64> {
        let msg_ids: Vec<&str> = events.iter().map(|(m, _)| m.as_str()).collect();
        let ids: Vec<i64> = events
            .iter()
            .map(|(_, id)| i64::try_from(*id).unwrap_or(i64::MAX))
            .collect();
        self.client
            .execute(
                "INSERT INTO alert_events (msg_id, event_id)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (msg_id) DO NOTHING",
                &[&msg_ids, &ids],
            )
            .await
            .map_err(ClusterError::pg("record alerted events' ids"))
    }

    /// The highest alert id (0: none yet); ids are committed in order, so an alert
    /// past a reader's cursor exists exactly when this is past it.
    pub async fn last_alert_id(&self) -> Result<u64> {
        let row = self
            .client
            .query_one("SELECT coalesce(max(id), 0) FROM alerts", &[])
            .await
            .map_err(ClusterError::pg("read the last alert id"))?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Alerts after id `after`, at most `limit`, in order, of `communities` only when
    /// given: (id, body, its event's cluster id once its indexer has recorded it)
    /// each.
    pub async fn alerts_after(
        &self,
        after: u64,
        limit: usize,
        communities: Option<&[String]>,
    ) -> Result<Vec<(u64, String, Option<u64>)>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT a.id, a.body, e.event_id FROM alerts a
                 LEFT JOIN alert_events e ON e.msg_id = a.msg_id
                 WHERE a.id > $1 AND ($2::text[] IS NULL OR a.community = ANY($2))
                 ORDER BY a.id LIMIT $3",
                &[&after, &communities, &limit],
            )
            .await
            .map_err(ClusterError::pg("read alerts"))?;
        Ok(rows.iter().map(alert_row).collect())
    }

    /// The newest alerts, at most `limit`, of `communities` only when given, newest
    /// first: (id, body, its event's cluster id once recorded) each.
    pub async fn latest_alerts(
        &self,
        limit: usize,
        communities: Option<&[String]>,
    ) -> Result<Vec<(u64, String, Option<u64>)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT a.id, a.body, e.event_id FROM alerts a
                 LEFT JOIN alert_events e ON e.msg_id = a.msg_id
                 WHERE ($1::text[] IS NULL OR a.community = ANY($1))
                 ORDER BY a.id DESC LIMIT $2",
                &[&communities, &limit],
            )
            .await
            .map_err(ClusterError::pg("read the latest alerts"))?;
        Ok(rows.iter().map(alert_row).collect())
    }

    /// As [`Meta::alerts_after`], with the last alert id there is (`after` when
    /// none): read in one statement, so when no alert of `communities` is listed
    /// every alert up to it is known to be out of them (ids are committed in order,
    /// under the alerts' lock), and a reader can move past it.
    pub async fn alerts_page(
        &self,
        after: u64,
        limit: usize,
        communities: Option<&[String]>,
    ) -> Result<(Vec<(u64, String, Option<u64>)>, u64)> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "WITH head AS (SELECT coalesce(max(id), $1) AS h FROM alerts WHERE id > $1),
                      page AS (SELECT a.id, a.body, e.event_id FROM alerts a
                               LEFT JOIN alert_events e ON e.msg_id = a.msg_id
                               WHERE a.id > $1 AND ($2::text[] IS NULL OR a.community = ANY($2))
                               ORDER BY a.id LIMIT $3)
                 SELECT head.h, page.id, page.body, page.event_id
                 FROM head LEFT JOIN page ON true ORDER BY page.id",
                &[&after, &communities, &limit],
            )
            .await
            .map_err(ClusterError::pg("read alerts"))?;
        let head = rows.first().map_or(after, |r| r.get::<_, i64>(0));
        let page = rows
            .iter()
            .filter_map(|r| {
                let id: Option<i64> = r.get(1);
                let event: Option<i64> = r.get(3);
                Some((id? as u64, r.get(2), event.map(|e| e as u64)))
            })
            .collect();
        Ok((page, u64::try_from(head).unwrap_or(0)))
    }
}
