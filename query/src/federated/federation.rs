//! A query node's view of the cluster: every query family over the partitions,
//! through partial answers and their merges.

use std::time::Instant;

use sightline_index::IndexError;
use sightline_storage::Attrs;

use super::feed::{FeedAsk, FeedCursor, FeedPage};
use super::id::{split_cluster_id, MAX_PARTITIONS};
use super::objects::FederatedObjects;
use super::stats::PartitionStats;
use super::trajectory::FederatedTrajectory;
use super::wire::{Answer, Ask, Partition, Request};
use super::{check, collision, cooccurrence, feed, objects, patterns, search, trajectory};
use crate::error::{QueryError, Result};
use crate::{
    Candidate, Collision, CollisionHit, Cooccurrence, CountBucket, Counts, FirstSeen,
    FirstSeenQuery, Frequency, FrequencyQuery, Nocturnal, NocturnalQuery, ObjectQuery, Overnight,
    OvernightQuery, Place, SearchQuery, Sighting, SubjectMatch, TrajectoryQuery,
};

/// The payloads of `answers`, each of which must be `$variant`.
macro_rules! take {
    ($answers:expr, $variant:path) => {
        $answers
            .into_iter()
            .map(|(p, a)| match a {
                $variant(x) => Ok(x),
                _ => Err(mismatched(p)),
            })
            .collect::<Result<Vec<_>>>()?
    };
}

/// Which partition holds a community's events (a code → partition number): the
/// cluster's own placement, which decides where events are written. The federation
/// asks fewer partitions with it (one-community questions, co-occurrence at community
/// scope, collision pruning), so it must be the one the data was placed by.
pub type Placement<'a> = Box<dyn Fn(&str) -> u16 + Send + Sync + 'a>;

/// Who asks and until when: the caller's communities (codes; all when `None`) and
/// the query's deadline.
#[derive(Clone, Debug, Default)]
pub struct Call {
    pub scope: Option<Vec<String>>,
    pub deadline: Option<Instant>,
}

/// Partitions `0..n` of a cluster, asked in parallel; partition `i` is `partitions[i]`.
pub struct Federation<'a> {
    partitions: Vec<Box<dyn Partition + 'a>>,
    placement: Option<Placement<'a>>,
    /// The partitions that may hold the subject of the question asked, within its
    /// range (a subject → partitions directory's answer; `None`: any may).
    subject_partitions: Option<Vec<u16>>,
    /// Longest range a query may cover, in days (as `QueryContext::max_range_days`).
    pub max_range_days: i64,
}

impl<'a> Federation<'a> {
    /// Communities placed by [`super::partition_of`].
    pub fn new(partitions: Vec<Box<dyn Partition + 'a>>) -> Federation<'a> {
        assert!(
            !partitions.is_empty() && partitions.len() <= MAX_PARTITIONS,
            "a cluster has 1 to {MAX_PARTITIONS} partitions"
        );
        let n = partitions.len() as u16;
        Federation {
            partitions,
            placement: Some(Box::new(move |code| super::partition_of(code, n))),
            subject_partitions: None,
            max_range_days: 400,
        }
    }

    /// The same, with communities placed by `placement` (`None`: not known, every
    /// partition may hold any community).
    pub fn with_placement(self, placement: Option<Placement<'a>>) -> Federation<'a> {
        Federation { placement, ..self }
    }

    /// The same, asking only `partitions` (`None`: every one) of a question that
    /// starts from one subject (trajectory, its stream and stays; co-occurrence's
    /// first round, the target's passes): those that may hold its events within the
    /// question's range, as a directory names them. A partition left out must hold
    /// none there; its answer would be empty. The other families, and co-occurrence's
    /// later rounds (every subject near the passes), still ask every partition.
    pub fn with_subject_partitions(self, partitions: Option<Vec<u16>>) -> Federation<'a> {
        let subject_partitions = partitions.map(|mut ps| {
            ps.retain(|&p| usize::from(p) < self.partitions.len());
            ps.sort_unstable();
            ps.dedup();
            ps
        });
        Federation {
            subject_partitions,
            ..self
        }
    }

    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// A one-subject question of the partitions that may hold the subject (every one
    /// without a directory's word). At least one is asked, so a question every
    /// partition would refuse (a bad parameter) is refused alike.
    fn ask_subject(&self, call: &Call, ask: Ask) -> Result<Vec<(u16, Answer)>> {
        match &self.subject_partitions {
            None => self.ask_all(call, ask),
            Some(ps) => {
                let ps: &[u16] = if ps.is_empty() { &[0] } else { ps };
                self.ask(call, ps.iter().map(|&p| (p, ask.clone())).collect())
            }
        }
    }

    /// Asks each `(partition, question)` at once; answers in the same order. The
    /// first failure (in partition order) is the answer, naming its partition.
    fn ask(&self, call: &Call, asks: Vec<(u16, Ask)>) -> Result<Vec<(u16, Answer)>> {
        self.ask_each(call, asks)?
            .into_iter()
            .map(|(p, a)| a.map(|a| (p, a)))
            .collect()
    }

    /// Asks each `(partition, question)` at once; every partition's answer or failure
    /// (naming it), in the same order. Fails as a whole only when the deadline has
    /// passed or a partition does not exist.
    #[allow(clippy::type_complexity)]
    fn ask_each(&self, call: &Call, asks: Vec<(u16, Ask)>) -> Result<Vec<(u16, Result<Answer>)>> {
        let budget_ms = match call.deadline {
            None => None,
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return Err(QueryError::DeadlineExceeded);
                }
                Some(d.duration_since(now).as_millis() as u64)
            }
        };
        if let Some((p, _)) = asks
            .iter()
            .find(|(p, _)| *p as usize >= self.partitions.len())
        {
            return Err(QueryError::Partition {
                partition: *p,
                source: Box::new(QueryError::invalid("partition", "no such partition")),
            });
        }
        let requests: Vec<Request> = asks
            .into_iter()
            .map(|(partition, ask)| Request {
                partition,
                scope: call.scope.clone(),
                max_range_days: self.max_range_days,
                budget_ms,
                ask,
            })
            .collect();
        let answer = |r: &Request| {
            let a = self.partitions[r.partition as usize]
                .answer(r)
                .map_err(|e| surface(r.partition, e));
            (r.partition, a)
        };
        let answers: Vec<(u16, Result<Answer>)> = if requests.len() == 1 {
            vec![answer(&requests[0])]
        } else {
            std::thread::scope(|s| {
                let running: Vec<_> = requests
                    .iter()
                    .map(|r| s.spawn(move || answer(r)))
                    .collect();
                running
                    .into_iter()
                    .map(|t| {
                        t.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        Ok(answers)
    }

    /// The same question of every partition.
    fn ask_all(&self, call: &Call, ask: Ask) -> Result<Vec<(u16, Answer)>> {
        let asks = (0..self.partitions.len() as u16)
            .map(|p| (p, ask.clone()))
            .collect();
        self.ask(call, asks)
    }

    /// The question of the partition placed to hold `community` (of every partition
    /// when placement is not known): a one-community question has its whole answer
    /// there.
    fn ask_holders(&self, call: &Call, community: &str, ask: Ask) -> Result<Vec<(u16, Answer)>> {
        match &self.placement {
            Some(place) => self.ask(call, vec![(place(community), ask)]),
            None => self.ask_all(call, ask),
        }
    }

    /// A page of the subject's trajectory (stays on the first page).
    pub fn trajectory(&self, call: &Call, q: &TrajectoryQuery) -> Result<FederatedTrajectory> {
        check::trajectory(q, self.max_range_days)?;
        let first = q.cursor.is_none();
        let answers = self.ask_subject(
            call,
            Ask::TrajectoryPage {
                query: q.clone(),
                runs: first,
            },
        )?;
        let asked: Vec<u16> = answers.iter().map(|(p, _)| *p).collect();
        let mut pages = take!(answers, Answer::TrajectoryPage);
        let (events, attrs, next_cursor) = trajectory::merge_page(&mut pages, q.limit);
        let mut out = FederatedTrajectory {
            events,
            attrs,
            stays: Vec::new(),
            stays_truncated: false,
            next_cursor,
        };
        if first {
            let per_partition = pages
                .into_iter()
                .zip(asked)
                .map(|(page, p)| page.runs.map(|r| (p, r)).ok_or_else(|| mismatched(p)))
                .collect::<Result<Vec<_>>>()?;
            let mut runs: Vec<_> = per_partition.iter().flat_map(|(_, r)| r).cloned().collect();
            let within = trajectory::interleaved(&mut runs);
            let events = if within.is_empty() {
                Vec::new()
            } else {
                // Only partitions with runs that interleave hold events there.
                let asks = per_partition
                    .iter()
                    .filter(|(_, runs)| trajectory::touches(runs, &within))
                    .map(|(p, _)| {
                        let ask = Ask::StayEvents {
                            query: q.clone(),
                            within: within.clone(),
                        };
                        (*p, ask)
                    })
                    .collect();
                let answers = self.ask(call, asks)?;
                let mut events: Vec<_> = take!(answers, Answer::StayEvents)
                    .into_iter()
                    .flatten()
                    .collect();
                events.sort_by(|a, b| a.key.cmp(&b.key));
                events
            };
            (out.stays, out.stays_truncated) = trajectory::stays(&runs, &within, &events);
        }
        Ok(out)
    }

    /// The whole trajectory after `q.cursor`, as [`crate::trajectory_pages`] hands it
    /// over (`q.limit` is ignored): `start` is told how many events follow (it may
    /// decline), then `page` gets them a page of `page_size` at a time while it
    /// returns true; each page is one round of the partitions, so a stream holds one
    /// page. Events stored meanwhile after the position reached may be handed over,
    /// up to the count. Returns the number of events handed over.
    pub fn trajectory_pages(
        &self,
        call: &Call,
        q: &TrajectoryQuery,
        page_size: usize,
        start: impl FnOnce(usize) -> bool,
        mut page: impl FnMut(&[Sighting], &[Attrs]) -> bool,
    ) -> Result<usize> {
        let mut q = TrajectoryQuery {
            limit: page_size.clamp(1, crate::trajectory::MAX_PAGE),
            ..q.clone()
        };
        check::trajectory(&q, self.max_range_days)?;
        let ask = |q: &TrajectoryQuery| Ask::TrajectoryPage {
            query: q.clone(),
            runs: false,
        };
        let mut pages = take!(self.ask_subject(call, ask(&q))?, Answer::TrajectoryPage);
        let count: usize = pages.iter().map(|p| p.remaining).sum();
        if !start(count) {
            return Ok(0);
        }
        let mut sent = 0;
        loop {
            let (mut events, mut attrs, cursor) = trajectory::merge_page(&mut pages, q.limit);
            events.truncate(count - sent);
            attrs.truncate(count - sent);
            if events.is_empty() {
                break;
            }
            sent += events.len();
            if !page(&events, &attrs) || sent == count {
                break;
            }
            let Some(cursor) = cursor else {
                break;
            };
            q.cursor = Some(cursor);
            pages = take!(self.ask_subject(call, ask(&q))?, Answer::TrajectoryPage);
        }
        Ok(sent)
    }

    /// Co-occurrence (同行/伴随): passes, hits, then lift counts.
    pub fn cooccurrence(&self, call: &Call, q: &Cooccurrence) -> Result<Vec<Candidate>> {
        check::cooccurrence(q, self.max_range_days)?;
        // The target's passes: only where the target may be.
        let answers = self.ask_subject(call, Ask::CooccurrencePasses(q.clone()))?;
        let passes = cooccurrence::merge_passes(take!(answers, Answer::CooccurrencePasses));
        if passes.is_empty() {
            return Ok(Vec::new());
        }
        let numbered: Vec<(u32, super::Pass)> = passes
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, p)| (i as u32, p))
            .collect();
        let answers = self.ask_all(
            call,
            Ask::CooccurrenceHits {
                query: q.clone(),
                passes: numbered,
            },
        )?;
        let mut found = cooccurrence::merge_hits(take!(answers, Answer::CooccurrenceHits), q);
        if found.is_empty() {
            return Ok(found);
        }
        let answers = self.ask_all(
            call,
            Ask::CooccurrenceCounts {
                query: q.clone(),
                passes: passes.clone(),
                candidates: found.iter().map(|c| (c.kind, c.subject.clone())).collect(),
            },
        )?;
        let mut n = vec![0u64; found.len()];
        for (p, answer) in answers {
            match answer {
                Answer::CooccurrenceCounts(part) if part.len() == n.len() => {
                    n.iter_mut().zip(part).for_each(|(n, m)| *n += m)
                }
                _ => return Err(mismatched(p)),
            }
        }
        cooccurrence::set_lift(&mut found, &n, q, &passes);
        Ok(found)
    }

    /// Collision (碰撞): conditions met per subject, united over partitions.
    pub fn collision(&self, call: &Call, q: &Collision) -> Result<Vec<CollisionHit>> {
        check::collision(q, self.max_range_days)?;
        let asks = (0..self.partitions.len() as u16)
            .map(|p| {
                let elsewhere = q
                    .conditions
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| match (&c.place, &self.placement) {
                        (Place::Communities(codes), Some(place)) => {
                            codes.iter().any(|c| place(c) != p)
                        }
                        _ => true,
                    })
                    .fold(0u32, |bits, (i, _)| bits | 1 << i);
                (
                    p,
                    Ask::Collision {
                        query: q.clone(),
                        elsewhere,
                    },
                )
            })
            .collect();
        let answers = self.ask(call, asks)?;
        Ok(collision::merge(take!(answers, Answer::Collision), q))
    }

    pub fn counts(&self, call: &Call, q: &Counts) -> Result<Vec<CountBucket>> {
        crate::error::check_range(q.from_ms, q.to_ms, self.max_range_days)?;
        let answers = self.ask_all(call, Ask::Counts(q.clone()))?;
        Ok(patterns::merge_counts(take!(answers, Answer::Counts)))
    }

    pub fn frequency(&self, call: &Call, q: &FrequencyQuery) -> Result<Vec<Frequency>> {
        check::frequency(q, self.max_range_days)?;
        let answers = self.ask_holders(call, &q.community, Ask::Frequency(q.clone()))?;
        Ok(patterns::merge_frequency(
            take!(answers, Answer::Frequency),
            q.limit,
        ))
    }

    pub fn first_seen(&self, call: &Call, q: &FirstSeenQuery) -> Result<Vec<FirstSeen>> {
        check::first_seen(q, self.max_range_days)?;
        let answers = self.ask_holders(call, &q.community, Ask::FirstSeen(q.clone()))?;
        Ok(patterns::merge_first_seen(
            take!(answers, Answer::FirstSeen),
            q.limit,
        ))
    }

    pub fn nocturnal(&self, call: &Call, q: &NocturnalQuery) -> Result<Vec<Nocturnal>> {
        check::nocturnal(q, self.max_range_days)?;
        let answers = self.ask_all(call, Ask::Nocturnal(q.clone()))?;
        let parts = answers
            .into_iter()
            .map(|(p, a)| match a {
                Answer::Nocturnal(x) => Ok((p, x)),
                _ => Err(mismatched(p)),
            })
            .collect::<Result<Vec<_>>>()?;
        let candidates = patterns::NocturnalCandidates::merge(parts, self.partitions.len(), q);
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let asks: Vec<(u16, Ask)> = (0..self.partitions.len() as u16)
            .map(|p| (p, candidates.unsent(p)))
            .filter(|(_, subjects)| !subjects.is_empty())
            .map(|(p, subjects)| {
                (
                    p,
                    Ask::NocturnalDays {
                        query: q.clone(),
                        subjects,
                    },
                )
            })
            .collect();
        let mut days = Vec::new();
        for (p, answer) in self.ask(call, asks)? {
            match answer {
                Answer::NocturnalDays(d) if d.len() == candidates.unsent(p).len() => {
                    days.push((p, d))
                }
                _ => return Err(mismatched(p)),
            }
        }
        Ok(candidates.finish(days, q))
    }

    pub fn overnight(&self, call: &Call, q: &OvernightQuery) -> Result<Overnight> {
        check::overnight(q, self.max_range_days)?;
        let answers = self.ask_all(call, Ask::Overnight(q.clone()))?;
        Ok(patterns::merge_overnight(take!(answers, Answer::Overnight)))
    }

    /// Subject search: every partition's vocabulary, statistics added up.
    pub fn search(&self, call: &Call, q: &SearchQuery) -> Result<Vec<SubjectMatch>> {
        check::search(q)?;
        let answers = self.ask_all(call, Ask::Search(q.clone()))?;
        search::merge(take!(answers, Answer::Search), q)
    }

    /// A page of the change feed after `cursor`: at most `ask.limit` events of every
    /// partition (of those placed to hold `ask.communities`, or the scope's, when
    /// either names some),
    /// merged (`feed::merge`); a partition that fails is named in the page and keeps
    /// its position. `ask.after` is ignored: each partition is asked from its own.
    pub fn feed(&self, call: &Call, cursor: &FeedCursor, ask: &FeedAsk) -> Result<FeedPage> {
        if cursor.0.len() != self.partitions.len() {
            return Err(QueryError::invalid(
                "cursor",
                format!(
                    "{} positions for {} partitions",
                    cursor.0.len(),
                    self.partitions.len()
                ),
            ));
        }
        // Only the partitions placed to hold the communities asked for (else those of
        // the caller's scope): the others' positions stay.
        let communities = ask.communities.as_ref().or(call.scope.as_ref());
        let asked: Vec<u16> = match (communities, &self.placement) {
            (Some(codes), Some(place)) => {
                let mut ps: Vec<u16> = codes.iter().map(|c| place(c)).collect();
                ps.sort_unstable();
                ps.dedup();
                ps
            }
            _ => (0..self.partitions.len() as u16).collect(),
        };
        // Each partition's share of the page, twice over (the page keeps at most
        // `limit`; a partition with more gives them on the next pages), so a page
        // of P partitions reads ~2 × `limit` events rather than P × `limit`.
        let share = ask
            .limit
            .div_ceil(asked.len().max(1))
            .saturating_mul(2)
            .min(ask.limit);
        let asks = asked
            .into_iter()
            .map(|p| {
                let one = FeedAsk {
                    after: cursor.0[usize::from(p)],
                    limit: share,
                    ..ask.clone()
                };
                (p, Ask::Feed(one))
            })
            .collect();
        let answers = self
            .ask_each(call, asks)?
            .into_iter()
            .map(|(p, a)| {
                let page = a.and_then(|a| match a {
                    Answer::Feed(page) => Ok(page),
                    _ => Err(mismatched(p)),
                });
                (p, page)
            })
            .collect();
        Ok(feed::merge(cursor, answers, ask.limit))
    }

    /// Objects by conditions (GA/T 1400.4's list query): a page of the records `q`
    /// selects in the caller's scope, in `q`'s order, and how many match in all, as
    /// one store holding every partition's events answers it (`crate::objects`), ties
    /// in time by cluster id. Only the partitions placed to hold the scope's
    /// communities are asked (every one without a scope or a placement); a page past
    /// the top takes two rounds (`objects` module).
    pub fn objects(&self, call: &Call, q: &ObjectQuery) -> Result<FederatedObjects> {
        crate::objects::check(q)?;
        let asked: Vec<u16> = match (&call.scope, &self.placement) {
            (Some(codes), Some(place)) => {
                let mut ps: Vec<u16> = codes.iter().map(|c| place(c)).collect();
                ps.sort_unstable();
                ps.dedup();
                ps
            }
            _ => (0..self.partitions.len() as u16).collect(),
        };
        if asked.is_empty() || q.from_ms >= q.to_ms {
            return Ok(FederatedObjects::default());
        }
        if q.skip == 0 {
            let asks = asked
                .iter()
                .map(|&p| (p, Ask::Objects(q.clone())))
                .collect();
            let parts = take!(self.ask(call, asks)?, Answer::Objects);
            return Ok(objects::merge(parts, q.limit, q.newest_first));
        }
        for _ in 0..objects::ROUNDS {
            let asks = asked
                .iter()
                .map(|&p| (p, Ask::ObjectKeys(q.clone())))
                .collect();
            let answers = self.ask(call, asks)?;
            let partitions: Vec<u16> = answers.iter().map(|(p, _)| *p).collect();
            let keys: Vec<_> = partitions
                .into_iter()
                .zip(take!(answers, Answer::ObjectKeys))
                .collect();
            let total: u64 = keys.iter().map(|(_, k)| k.total).sum();
            let (shares, page) = objects::shares(&keys, q.skip, q.limit, q.newest_first);
            if shares.is_empty() {
                return Ok(FederatedObjects {
                    total,
                    events: Vec::new(),
                });
            }
            let asks = shares
                .iter()
                .map(|&(p, a, n)| {
                    let one = ObjectQuery {
                        skip: a,
                        limit: n,
                        ..q.clone()
                    };
                    (p, Ask::Objects(one))
                })
                .collect();
            let answers = self.ask(call, asks)?;
            // A partition asked twice must have counted alike and given the records
            // the keys named; else it changed between the rounds: read again.
            let settled = answers.iter().all(|(p, a)| match a {
                Answer::Objects(part) => keys
                    .iter()
                    .find(|(k, _)| k == p)
                    .is_some_and(|(_, k)| k.total == part.total),
                _ => true,
            });
            let parts = take!(answers, Answer::Objects);
            let mut merged = objects::merge(parts, q.limit, q.newest_first);
            merged.total = total;
            let got: Vec<_> = merged
                .events
                .iter()
                .map(|(s, _)| (s.ts_ms, s.seq))
                .collect();
            if settled && got == page {
                return Ok(merged);
            }
        }
        Err(objects::unsettled())
    }

    /// Every partition's statistics, by partition.
    pub fn stats(&self, call: &Call) -> Result<Vec<(u16, PartitionStats)>> {
        let answers = self.ask_all(call, Ask::Stats)?;
        let partitions: Vec<u16> = answers.iter().map(|(p, _)| *p).collect();
        Ok(partitions
            .into_iter()
            .zip(take!(answers, Answer::Stats))
            .collect())
    }

    /// The event with cluster id `id`, asked of its partition only; `None` when no
    /// partition holds it or it is outside the caller's scope.
    pub fn event(&self, call: &Call, id: u64) -> Result<Option<(Sighting, Attrs)>> {
        let (partition, seq) = split_cluster_id(id);
        if partition as usize >= self.partitions.len() {
            return Ok(None);
        }
        let answers = self.ask(call, vec![(partition, Ask::Event { seq })])?;
        Ok(take!(answers, Answer::Event).pop().flatten())
    }
}

/// A partition's failure as the federation reports it: the caller's own mistakes and
/// the deadline as they are (every partition would say the same), the rest with the
/// partition's number.
fn surface(partition: u16, e: QueryError) -> QueryError {
    match e {
        e @ (QueryError::Invalid { .. }
        | QueryError::DeadlineExceeded
        | QueryError::Partition { .. }
        | QueryError::Index(IndexError::InvalidPattern { .. } | IndexError::TooBroad { .. })) => e,
        e => QueryError::Partition {
            partition,
            source: Box::new(e),
        },
    }
}

/// A partition that answered another question than the one asked.
pub(crate) fn mismatched(partition: u16) -> QueryError {
    QueryError::Partition {
        partition,
        source: Box::new(QueryError::invalid(
            "answer",
            "the partition answered another question",
        )),
    }
}
