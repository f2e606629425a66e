//! A partition in this process: a store, its index and its vocabulary.

use std::time::{Duration, Instant};

use sightline_index::{StoreIndex, Vocabulary};
use sightline_storage::Store;

use super::wire::{Answer, Ask, Partition, Request};
use super::{collision, cooccurrence, patterns, search, trajectory};
use crate::error::{QueryError, Result};
use crate::QueryContext;

/// Partition `id` of a cluster, held in this process.
pub struct LocalPartition<'a> {
    pub id: u16,
    pub store: &'a Store,
    pub index: &'a StoreIndex,
    /// For subject search; a search asked of a partition without one is an error.
    pub vocabulary: Option<&'a Vocabulary>,
}

impl Partition for LocalPartition<'_> {
    fn answer(&self, request: &Request) -> Result<Answer> {
        if request.partition != self.id {
            // Misrouted: the query node's mistake, not the caller's.
            return Err(QueryError::Partition {
                partition: self.id,
                source: Box::new(QueryError::invalid(
                    "partition",
                    format!("asked for partition {}", request.partition),
                )),
            });
        }
        // The scope's codes as this store's ids; codes it never saw hold nothing here.
        let scope: Option<Vec<u32>> = request.scope.as_ref().map(|codes| {
            let d = self.store.dictionaries();
            let mut ids: Vec<u32> = codes.iter().filter_map(|c| d.community_id(c)).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let mut ctx = QueryContext::new(self.store, self.index);
        ctx.max_range_days = request.max_range_days;
        if let Some(ids) = &scope {
            ctx = ctx.scoped(ids);
        }
        if let Some(ms) = request.budget_ms {
            ctx = ctx.with_deadline(Instant::now() + Duration::from_millis(ms));
        }
        let ctx = &ctx;
        let p = self.id;
        Ok(match &request.ask {
            Ask::TrajectoryPage { query, runs } => {
                Answer::TrajectoryPage(trajectory::page(ctx, p, query, *runs)?)
            }
            Ask::StayEvents { query, within } => {
                Answer::StayEvents(trajectory::stay_events(ctx, p, query, within)?)
            }
            Ask::CooccurrencePasses(q) => Answer::CooccurrencePasses(cooccurrence::passes(ctx, q)?),
            Ask::CooccurrenceHits { query, passes } => {
                Answer::CooccurrenceHits(cooccurrence::hits(ctx, query, passes)?)
            }
            Ask::CooccurrenceCounts {
                query,
                passes,
                candidates,
            } => Answer::CooccurrenceCounts(cooccurrence::counts(ctx, query, passes, candidates)?),
            Ask::Collision { query, elsewhere } => {
                Answer::Collision(collision::met(ctx, query, *elsewhere)?)
            }
            Ask::Counts(q) => Answer::Counts(crate::counts(ctx, q)?),
            Ask::Frequency(q) => Answer::Frequency(crate::frequency(ctx, q)?),
            Ask::FirstSeen(q) => Answer::FirstSeen(crate::first_seen(ctx, q)?),
            Ask::Nocturnal(q) => Answer::Nocturnal(patterns::nocturnal(ctx, q)?),
            Ask::NocturnalDays { query, subjects } => {
                Answer::NocturnalDays(patterns::nocturnal_days(ctx, query, subjects)?)
            }
            Ask::Overnight(q) => Answer::Overnight(patterns::overnight(ctx, p, q)?),
            Ask::Search(q) => {
                let vocabulary =
                    self.vocabulary
                        .ok_or_else(|| sightline_index::IndexError::Vocabulary {
                            path: "vocabulary".into(),
                            reason: format!("partition {p} was given none"),
                        })?;
                Answer::Search(search::matches(ctx, vocabulary, q)?)
            }
            Ask::Event { seq } => Answer::Event(
                crate::event_by_id(ctx, *seq)?
                    .map(|(mut s, at)| {
                        s.seq = super::cluster_id(p, s.seq);
                        at.decode().map(|attrs| (s, attrs))
                    })
                    .transpose()?,
            ),
            Ask::Feed(ask) => {
                // The scope's codes, resolved after the page reads how far events are
                // readable (`feed::page`), not the ids resolved above.
                Answer::Feed(super::feed::page(
                    self.store,
                    p,
                    request.scope.as_deref(),
                    ask,
                )?)
            }
            Ask::Stats => Answer::Stats(super::stats::PartitionStats::of(self.store)),
            Ask::ObjectKeys(q) => Answer::ObjectKeys(super::objects::keys(ctx, p, q)?),
            Ask::Objects(q) => Answer::Objects(super::objects::page(ctx, p, q)?),
        })
    }
}
