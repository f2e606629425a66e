//! A city written to files for other tools (`sightline gen`): NDJSON ingest bodies,
//! GA/T 1400 upload bodies and the planted answers.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use sightline_storage::{AttrValue, EventInput};

use crate::config::TrafficConfig;
use crate::gat1400::to_gat1400;
use crate::traffic::Traffic;

/// One event as an NDJSON line of `POST /v1/events` (`ts` in epoch ms).
pub fn to_ndjson(e: &EventInput) -> String {
    let attrs: serde_json::Map<String, serde_json::Value> = e
        .attrs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttrValue::Str(s) => s.clone().into(),
                AttrValue::Int(i) => (*i).into(),
                AttrValue::Float(f) => (*f).into(),
                AttrValue::Bool(b) => (*b).into(),
            };
            (k.clone(), v)
        })
        .collect();
    serde_json::json!({"ts": e.ts_ms, "community": e.community, "device": e.device,
        "kind": e.kind, "subject": e.subject, "direction": e.direction, "attrs": attrs})
    .to_string()
}

/// Which files a day is written as.
struct Formats {
    ndjson: bool,
    gat1400: bool,
}

/// Generates the city of `cfg` day by day on every core and writes it under `out`:
/// `events/day-NNN.ndjson` (with `ndjson`), `gat1400/day-NNN-motorvehicles.json` and
/// `gat1400/day-NNN-faces.json` (with `gat1400`), and `truth.json` (the planted answers).
/// Returns the number of events and the seconds it took.
pub fn write_dataset(
    cfg: &TrafficConfig,
    out: &Path,
    formats: &[String],
) -> io::Result<(u64, f64)> {
    let started = std::time::Instant::now();
    let formats = Formats {
        ndjson: formats.iter().any(|f| f == "ndjson"),
        gat1400: formats.iter().any(|f| f == "gat1400"),
    };
    for (dir, on) in [("events", formats.ndjson), ("gat1400", formats.gat1400)] {
        if on {
            std::fs::create_dir_all(out.join(dir)).map_err(with_path(out.join(dir)))?;
        }
    }
    std::fs::create_dir_all(out).map_err(with_path(out.to_path_buf()))?;
    let traffic = Traffic::new(cfg.clone());
    let truth = serde_json::to_string_pretty(&traffic.truth()).expect("truth serializes");
    std::fs::write(out.join("truth.json"), truth).map_err(with_path(out.join("truth.json")))?;
    let total = on_every_core(&traffic, |d, events| write_day(out, d, events, &formats))?;
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Generates every day of `traffic`, a day at a time on each core, and hands it to
/// `write`; the number of events.
fn on_every_core(
    traffic: &Traffic,
    write: impl Fn(u32, &[EventInput]) -> io::Result<()> + Sync,
) -> io::Result<u64> {
    let (next, total) = (AtomicU32::new(0), AtomicU64::new(0));
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> io::Result<()> {
                    loop {
                        let d = next.fetch_add(1, Ordering::Relaxed);
                        if d >= traffic.config().days {
                            return Ok(());
                        }
                        let events = traffic.day_events(d);
                        total.fetch_add(events.len() as u64, Ordering::Relaxed);
                        write(d, &events)?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("generator thread"))
    })?;
    Ok(total.into_inner())
}

/// Day `d`'s files under `out`.
fn write_day(out: &Path, d: u32, events: &[EventInput], formats: &Formats) -> io::Result<()> {
    if formats.ndjson {
        let path = out.join(format!("events/day-{d:03}.ndjson"));
        let mut text = String::with_capacity(events.len() * 220);
        for e in events {
            text.push_str(&to_ndjson(e));
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(with_path(path.clone()))?;
    }
    if formats.gat1400 {
        let (v, f) = to_gat1400(events);
        for (name, body) in [("motorvehicles", v), ("faces", f)] {
            let path = out.join(format!("gat1400/day-{d:03}-{name}.json"));
            std::fs::write(&path, body.to_string()).map_err(with_path(path.clone()))?;
        }
    }
    Ok(())
}

/// An I/O error naming the file it is about.
fn with_path(p: PathBuf) -> impl FnOnce(io::Error) -> io::Error {
    move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()))
}
