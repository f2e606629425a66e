//! `GET /metrics`: Prometheus text exposition of request counts and latencies by
//! endpoint, ingested events by result, refused requests by reason, WAL group-commit
//! (fsync) latency, and store size.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sightline_storage::stats::{Histogram, HistogramSnapshot, BUCKETS_S};

use crate::routes::routes;
use crate::App;

pub struct Metrics {
    /// Per route path (the route table's labels), then `other`.
    latency: Vec<Histogram>,
    /// (endpoint label index, status) → requests.
    requests: Mutex<BTreeMap<(usize, u16), u64>>,
    /// error code → requests refused with it.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    /// Maintenance passes (seal, compact, retention), and how long the last one took.
    pub maintenance: Histogram,
    pub maintenance_last_ms: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            latency: (0..=routes().labels.len())
                .map(|_| Histogram::default())
                .collect(),
            requests: Default::default(),
            refused: Default::default(),
            stored: Default::default(),
            duplicates: Default::default(),
            rejected: Default::default(),
            maintenance: Default::default(),
            maintenance_last_ms: Default::default(),
        }
    }
}

/// The metric label of a route's label index (`other` past the routes).
fn label(i: usize) -> &'static str {
    routes().labels.get(i).copied().unwrap_or("other")
}

impl Metrics {
    pub fn record(
        &self,
        endpoint: usize,
        status: u16,
        error: Option<&'static str>,
        took: Duration,
    ) {
        self.latency[endpoint].observe(took);
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((endpoint, status))
            .or_default() += 1;
        if let Some(code) = error {
            *self
                .refused
                .lock()
                .expect("metrics lock")
                .entry(code)
                .or_default() += 1;
        }
    }

    pub fn render(&self, app: &App) -> String {
        let mut out = String::new();
        self.render_requests(&mut out);
        self.render_ingest(&mut out, app);
        render_store(&mut out, app);
        render_deliveries(&mut out, app);
        out
    }

    /// Requests by endpoint and status, their latencies, refusals by code.
    fn render_requests(&self, o: &mut String) {
        header(
            o,
            "sightline_requests_total",
            "counter",
            "HTTP requests by endpoint and status.",
        );
        for ((e, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                o,
                "sightline_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                label(*e)
            );
        }
        header(
            o,
            "sightline_request_duration_seconds",
            "histogram",
            "Time to answer a request, by endpoint.",
        );
        for (i, h) in self.latency.iter().enumerate() {
            let s = h.snapshot();
            if s.count > 0 {
                histogram(
                    o,
                    "sightline_request_duration_seconds",
                    &format!("endpoint=\"{}\"", label(i)),
                    &s,
                );
            }
        }
        header(
            o,
            "sightline_refused_requests_total",
            "counter",
            "Requests answered with an error, by error code.",
        );
        for (code, n) in self.refused.lock().expect("metrics lock").iter() {
            let _ = writeln!(o, "sightline_refused_requests_total{{code=\"{code}\"}} {n}");
        }
    }

    /// Ingested records by result, group commits, maintenance passes.
    fn render_ingest(&self, o: &mut String, app: &App) {
        header(
            o,
            "sightline_ingested_events_total",
            "counter",
            "Ingested records by result.",
        );
        for (result, n) in [
            ("stored", &self.stored),
            ("duplicate", &self.duplicates),
            ("rejected", &self.rejected),
        ] {
            let _ = writeln!(
                o,
                "sightline_ingested_events_total{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        header(
            o,
            "sightline_wal_commit_duration_seconds",
            "histogram",
            "Group commits: dictionary log and WAL written and fsynced, one per fsync.",
        );
        histogram(
            o,
            "sightline_wal_commit_duration_seconds",
            "",
            &app.store.commit_latency(),
        );
        header(
            o,
            "sightline_maintenance_duration_seconds",
            "histogram",
            "Maintenance passes: due shards sealed, closed shards compacted, retention applied.",
        );
        histogram(
            o,
            "sightline_maintenance_duration_seconds",
            "",
            &self.maintenance.snapshot(),
        );
        header(
            o,
            "sightline_watchlist_entry_checks_total",
            "counter",
            "Wildcard and fuzzy watchlist entries checked against ingested events, one by one (an event is checked against its own community's lists and the unscoped ones only).",
        );
        let _ = writeln!(
            o,
            "sightline_watchlist_entry_checks_total {}",
            app.watch.entry_checks.load(Ordering::Relaxed)
        );
        header(
            o,
            "sightline_maintenance_last_duration_seconds",
            "gauge",
            "How long the last maintenance pass took.",
        );
        let _ = writeln!(
            o,
            "sightline_maintenance_last_duration_seconds {}",
            self.maintenance_last_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
    }
}

/// The store's size and state.
fn render_store(o: &mut String, app: &App) {
    let t = crate::Totals::of(&app.store);
    for (name, help, v) in [
        ("sightline_events", "Events stored.", t.events),
        (
            "sightline_shards",
            "Shards (community × day) holding events.",
            t.shards as u64,
        ),
        (
            "sightline_memory_events",
            "Events in shards' memory parts, not yet sealed (they hold most of the heap).",
            t.memory_events,
        ),
        (
            "sightline_sealed_bytes",
            "Bytes of sealed segment files.",
            t.sealed_bytes,
        ),
        (
            "sightline_memory_part_bytes",
            "Bytes the unsealed events of every shard take (bounded by --memory-budget-mib).",
            app.store.memory_part_bytes(),
        ),
        (
            "sightline_memory_budget_bytes",
            "The store-wide budget for unsealed events (--memory-budget-mib).",
            app.store.config().memory_budget_bytes,
        ),
        (
            "sightline_memory_budget_seals_total",
            "Memory parts sealed early because the memory budget was exceeded (a counter).",
            app.store.budget_seals(),
        ),
        (
            "sightline_subjects_searchable",
            "Subjects in the search vocabulary.",
            app.vocab.indexed(),
        ),
        (
            "sightline_store_failed",
            "1 after a write or fsync failed: writes are refused until restarted.",
            app.store.failed().is_some() as u64,
        ),
    ] {
        header(o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
}

/// Each subscription's and upstream's delivery (and an upstream's registration), by
/// id: a failing one shows in `failures_in_a_row` and a growing lag.
fn render_deliveries(o: &mut String, app: &App) {
    let shown = app.subscriptions.all_shown();
    let through = app.store.applied_through();
    // A subscription's id holds a platform's `SubscribeID`: any text, escaped as the
    // exposition format asks.
    let label = |id: &str, session: bool| {
        let kind = if session { "upstream" } else { "subscription" };
        let id = id
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        format!("id=\"{id}\",target=\"{kind}\"")
    };
    type Of = fn(&crate::subscriptions::Status, u64) -> u64;
    let series: [(&str, &str, &str, Of); 5] = [
        (
            "sightline_delivered_total",
            "counter",
            "Events a subscription's receiver or an upstream took (StatusCode 0), since start.",
            |s, _| s.delivered,
        ),
        (
            "sightline_delivery_failures_total",
            "counter",
            "Failed delivery attempts (refused, not answered, non-zero StatusCode), since start.",
            |s, _| s.failures_total,
        ),
        (
            "sightline_delivery_refused_total",
            "counter",
            "Objects a GA/T 1400 receiver or upstream refused for good (StatusCode 5 to 8) and that were passed, since start.",
            |s, _| s.refused,
        ),
        (
            "sightline_delivery_failures_in_a_row",
            "gauge",
            "Failed delivery attempts since the last success.",
            |s, _| s.failures_in_a_row,
        ),
        (
            "sightline_delivery_lag_events",
            "gauge",
            "Events stored past the delivery cursor (not yet delivered or skipped).",
            |s, through| through.saturating_sub(s.cursor),
        ),
    ];
    for (name, kind, help, of) in series {
        header(o, name, kind, help);
        for (id, (st, session)) in &shown {
            let _ = writeln!(
                o,
                "{name}{{{}}} {}",
                label(id, session.is_some()),
                of(st, through)
            );
        }
    }
    header(
        o,
        "sightline_upstream_registered",
        "gauge",
        "1 while this server is registered with the upstream, else 0.",
    );
    for (id, (_, session)) in &shown {
        if let Some(s) = session {
            let _ = writeln!(
                o,
                "sightline_upstream_registered{{{}}} {}",
                label(id, true),
                u8::from(s.registered)
            );
        }
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(o: &mut String, name: &str, labels: &str, s: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (b, c) in BUCKETS_S.iter().zip(&s.cumulative) {
        let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
    }
    let _ = writeln!(o, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", s.count);
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let _ = writeln!(o, "{name}_sum{braces} {}", s.sum_seconds);
    let _ = writeln!(o, "{name}_count{braces} {}", s.count);
}
