//! The load generator's engine: streams of prepared HTTP/1.1 requests, each sent over
//! its own keep-alive connections, paced to a rate or as fast as the server answers,
//! bounded in time and in items; a live progress line; a report with throughput,
//! latency percentiles (HdrHistogram) and errors by kind, per operation.
//!
//! It talks only to the addresses it is given (one for the run, or a stream's own:
//! a cluster's ingest and query nodes listen apart). Requests are prepared before the clock
//! starts, so the generator's own work while running is writing bytes and reading
//! answers (its CPU share is in the report); a stream may instead make small requests
//! as it runs from what earlier answers said (`Stream::source`, `Stream::on_answer`:
//! picture reads of the ids trajectory answers list).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use sightline_server::wire;
use sightline_storage::EventInput;

use crate::Traffic;

/// One prepared request: the head (request line and headers, ending in a blank line),
/// the body, how many items (events, or 1 for a query) it carries, and how many bytes
/// of pictures it uploads or reads (0 for most).
#[derive(Clone, Debug)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
    pub items: u64,
    pub picture_bytes: u64,
}

impl Request {
    pub fn get(target: &str) -> Request {
        Request {
            head: format!("GET {target} HTTP/1.1\r\nHost: sightline\r\n\r\n"),
            body: Vec::new(),
            items: 1,
            picture_bytes: 0,
        }
    }

    pub fn post(target: &str, content_type: &str, body: Vec<u8>, items: u64) -> Request {
        Request {
            head: format!(
                "POST {target} HTTP/1.1\r\nHost: sightline\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            body,
            items,
            picture_bytes: 0,
        }
    }
}

/// One operation's load: its requests (taken in turn, wrapping around unless `once`),
/// over `connections` connections, at about `rate` items per second in total (as fast
/// as answered when `None`).
#[derive(Default)]
pub struct Stream {
    pub name: String,
    /// Where this stream's requests go; `None`: the address [`run`] is given.
    pub addr: Option<SocketAddr>,
    /// What an item is, for the report: "events" or "queries".
    pub unit: &'static str,
    pub requests: Vec<Request>,
    pub connections: usize,
    pub rate: Option<f64>,
    /// Send every request once, then stop.
    pub once: bool,
    /// Called with a request's index each time it is answered 200: the generator's
    /// record of what the server acknowledged (the crash test checks it against the
    /// store).
    pub on_ack: Option<Arc<dyn Fn(usize) + Send + Sync>>,
    /// Called with a request's index and the answer's body each time it is answered
    /// 200 (bodies are read into memory only for streams that set it): what a stream
    /// learns from its answers.
    pub on_answer: Option<Arc<AnswerHook>>,
    /// Requests made while running, instead of `requests`: called with a number one
    /// higher at each call (over the stream's connections); `None` when there is
    /// nothing to ask yet (the worker waits [`SOURCE_PAUSE`] and asks again, sending
    /// nothing; pacing starts afresh).
    pub source: Option<Arc<RequestSource>>,
}

/// Makes a stream's requests while it runs (see [`Stream::source`]).
pub type RequestSource = dyn Fn(u64) -> Option<Request> + Send + Sync;

/// Reads what a request's answer said (see [`Stream::on_answer`]).
pub type AnswerHook = dyn Fn(usize, &[u8]) + Send + Sync;

/// How long a worker whose [`Stream::source`] has nothing to ask waits before asking it
/// again.
pub const SOURCE_PAUSE: Duration = Duration::from_millis(5);

impl Stream {
    /// `POST /v1/events` requests, as an "ingest" stream of "events".
    pub fn ingest(
        requests: Vec<Request>,
        connections: usize,
        rate: Option<f64>,
        once: bool,
    ) -> Stream {
        Stream {
            name: "ingest".into(),
            unit: "events",
            requests,
            connections,
            rate,
            once,
            ..Stream::default()
        }
    }
}

/// Bounds of a run: it stops at whichever comes first.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub duration: Duration,
    /// Stop once this many items were acknowledged across streams of `unit` "events".
    pub max_events: Option<u64>,
}

/// Latencies of one operation, in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub op: String,
    pub unit: &'static str,
    pub requests: u64,
    /// Items in requests answered 200.
    pub items: u64,
    pub items_per_second: f64,
    pub requests_per_second: f64,
    /// Pictures in requests answered 200 (uploaded, or read); absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pictures: Option<PictureThroughput>,
    pub latency_ms: Latency,
    /// Requests not answered 200, by kind ("status 429", "io: …").
    pub errors: BTreeMap<String, u64>,
}

/// Bytes of pictures an operation moved, and that in MB (10^6 bytes) per second.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PictureThroughput {
    pub bytes: u64,
    pub mb_per_second: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub seconds: f64,
    pub operations: Vec<OpReport>,
    /// CPU seconds the load generator used while running, and that as a share of
    /// the machine (all cores) over the run.
    pub generator_cpu_seconds: f64,
    pub generator_cpu_share: f64,
    /// The server's CPU seconds over the run, when its pid was given.
    pub server_cpu_seconds: Option<f64>,
}

impl Report {
    /// The report as text: one line per operation.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for o in &self.operations {
            let errors = match o.errors.is_empty() {
                true => "no errors".to_string(),
                false => o
                    .errors
                    .iter()
                    .map(|(k, n)| format!("{n} × {k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            let pictures = match &o.pictures {
                None => String::new(),
                Some(p) => format!(", {:.1} MB/s of pictures", p.mb_per_second),
            };
            out += &format!(
                "{}: {:.0} {}/s{pictures} ({} requests, {:.0}/s); latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; {errors}\n",
                o.op,
                o.items_per_second,
                o.unit,
                o.requests,
                o.requests_per_second,
                o.latency_ms.p50,
                o.latency_ms.p90,
                o.latency_ms.p99,
                o.latency_ms.p999,
                o.latency_ms.max,
            );
        }
        out += &format!(
            "over {:.1} s; load generator CPU {:.1} s ({:.0}% of the machine)",
            self.seconds,
            self.generator_cpu_seconds,
            self.generator_cpu_share * 100.0
        );
        if let Some(s) = self.server_cpu_seconds {
            out += &format!("; server CPU {s:.1} s");
        }
        out
    }
}

/// A keep-alive connection that reads whole answers.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends a request and reads the whole answer; the status. The answer's body is
    /// kept in `body` when given (chunks joined), else read and dropped.
    fn call(
        &mut self,
        r: &Request,
        line: &mut String,
        mut body: Option<&mut Vec<u8>>,
    ) -> std::io::Result<u16> {
        self.writer.write_all(r.head.as_bytes())?;
        self.writer.write_all(&r.body)?;
        line.clear();
        self.reader.read_line(line)?;
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(line)? == 0 {
                return Err(std::io::Error::other("connection closed in the head"));
            }
            if line == "\r\n" {
                break;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v
                    .trim()
                    .parse()
                    .map_err(|_| std::io::Error::other("bad content-length"))?;
            } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
                chunked = true;
            }
        }
        if let Some(b) = body.as_deref_mut() {
            b.clear();
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut skip = vec![0u8; size + 2];
                self.reader.read_exact(&mut skip)?;
                if let Some(b) = body.as_deref_mut() {
                    b.extend_from_slice(&skip[..size]);
                }
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut answer = (&mut self.reader).take(len as u64);
            match body {
                Some(b) => std::io::copy(&mut answer, b)?,
                None => std::io::copy(&mut answer, &mut std::io::sink())?,
            };
        }
        Ok(status)
    }
}

/// Live counters of one stream, read by the progress line.
#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    items: AtomicU64,
    errors: AtomicU64,
    picture_bytes: AtomicU64,
}

struct Worker {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Runs the streams against `addr` (a stream with its own [`Stream::addr`] against
/// that) within `limits`; `progress` is called about once
/// a second with a one-line summary (send it to a progress bar or stderr).
pub fn run(
    addr: SocketAddr,
    streams: Vec<Stream>,
    limits: Limits,
    server_pid: Option<u32>,
    mut progress: impl FnMut(&str),
) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<Counters>> = streams.iter().map(|_| Arc::default()).collect();
    let cpu0 = cpu_seconds(None);
    let server0 = server_pid.and_then(|p| cpu_seconds(Some(p)));
    let start = Instant::now();
    let mut handles = Vec::new();
    let meta: Vec<(String, &'static str)> =
        streams.iter().map(|s| (s.name.clone(), s.unit)).collect();
    for (si, s) in streams.into_iter().enumerate() {
        let requests = Arc::new(s.requests);
        let addr = s.addr.unwrap_or(addr);
        let connections = s.connections.max(1);
        // Time between one connection's requests, from the items per request.
        let per_item = s.rate.map(|r| connections as f64 / r.max(1e-9));
        let next_index = Arc::new(AtomicU64::new(0));
        // Paced connections start spread over one request's period, as independent
        // clients do, not all at the same instant (in step, four connections' 27 MB
        // picture uploads arrived together every period, a burst no fleet of cameras
        // makes).
        let period = per_item.map(|p| p * requests.first().map_or(1, |r| r.items) as f64);
        for ci in 0..connections {
            let offset = period.map_or(Duration::ZERO, |p| {
                Duration::from_secs_f64(p * ci as f64 / connections as f64)
            });
            let (requests, stop, counters, next_index) = (
                requests.clone(),
                stop.clone(),
                counters[si].clone(),
                next_index.clone(),
            );
            let once = s.once;
            let (on_ack, on_answer, source) =
                (s.on_ack.clone(), s.on_answer.clone(), s.source.clone());
            handles.push((
                si,
                std::thread::spawn(move || {
                    let mut w = Worker {
                        histogram: Histogram::new(3).expect("histogram"),
                        errors: BTreeMap::new(),
                    };
                    let mut conn: Option<Conn> = None;
                    let mut line = String::new();
                    let mut body = Vec::new();
                    let mut next = Instant::now() + offset;
                    let mut made;
                    while !stop.load(Ordering::Relaxed)
                        && (!requests.is_empty() || source.is_some())
                    {
                        let n = next_index.fetch_add(1, Ordering::Relaxed);
                        let (i, r) = match &source {
                            Some(source) => match source(n) {
                                Some(r) => {
                                    made = r;
                                    (n as usize, &made)
                                }
                                None => {
                                    // No catching up later for the time with nothing
                                    // to ask.
                                    std::thread::sleep(SOURCE_PAUSE);
                                    next = Instant::now();
                                    continue;
                                }
                            },
                            None => {
                                let i = n as usize;
                                if once && i >= requests.len() {
                                    break;
                                }
                                (i % requests.len(), &requests[i % requests.len()])
                            }
                        };
                        if let Some(per_item) = per_item {
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            next += Duration::from_secs_f64(per_item * r.items as f64);
                        }
                        let t = Instant::now();
                        let keep = on_answer.is_some().then_some(&mut body);
                        let answer = match conn.as_mut() {
                            Some(c) => c.call(r, &mut line, keep),
                            None => Conn::open(addr).and_then(|c| {
                                let c = conn.insert(c);
                                c.call(r, &mut line, keep)
                            }),
                        };
                        w.histogram
                            .record(t.elapsed().as_micros().max(1) as u64)
                            .expect("latency in range");
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let error = match answer {
                            Ok(200) => {
                                counters.items.fetch_add(r.items, Ordering::Relaxed);
                                counters
                                    .picture_bytes
                                    .fetch_add(r.picture_bytes, Ordering::Relaxed);
                                if let Some(f) = &on_ack {
                                    f(i);
                                }
                                if let Some(f) = &on_answer {
                                    f(i, &body);
                                }
                                None
                            }
                            Ok(status) => Some(format!("status {status}")),
                            Err(e) => {
                                conn = None; // reconnect next time
                                Some(format!("io: {}", e.kind()))
                            }
                        };
                        if let Some(kind) = error {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            *w.errors.entry(kind).or_default() += 1;
                        }
                    }
                    w
                }),
            ));
        }
    }
    let deadline = start + limits.duration;
    let mut last_tick = Instant::now();
    let mut last_items = vec![0u64; meta.len()];
    let mut line = String::new();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let events: u64 = meta
            .iter()
            .zip(&counters)
            .filter(|((_, unit), _)| *unit == "events")
            .map(|(_, c)| c.items.load(Ordering::Relaxed))
            .sum();
        let done = handles.iter().all(|(_, h)| h.is_finished());
        if Instant::now() >= deadline || limits.max_events.is_some_and(|m| events >= m) || done {
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            let dt = last_tick.elapsed().as_secs_f64();
            last_tick = Instant::now();
            let l = &mut line;
            l.clear();
            l.push_str(&format!("{:>5.0} s", start.elapsed().as_secs_f64()));
            for (i, ((name, unit), c)) in meta.iter().zip(&counters).enumerate() {
                let items = c.items.load(Ordering::Relaxed);
                l.push_str(&format!(
                    " | {name}: {items} {unit} ({:.0}/s), {} errors",
                    (items - last_items[i]) as f64 / dt,
                    c.errors.load(Ordering::Relaxed)
                ));
                last_items[i] = items;
            }
            progress(l);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();
    let mut merged: Vec<Worker> = meta
        .iter()
        .map(|_| Worker {
            histogram: Histogram::new(3).expect("histogram"),
            errors: BTreeMap::new(),
        })
        .collect();
    for (si, h) in handles {
        let w = h.join().expect("load worker");
        merged[si].histogram.add(&w.histogram).expect("merge");
        for (k, n) in w.errors {
            *merged[si].errors.entry(k).or_default() += n;
        }
    }
    let generator_cpu_seconds = cpu_seconds(None).zip(cpu0).map_or(0.0, |(b, a)| b - a);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Report {
        seconds,
        operations: meta
            .iter()
            .zip(&counters)
            .zip(merged)
            .map(|(((name, unit), c), w)| {
                let h = &w.histogram;
                OpReport {
                    op: name.clone(),
                    unit,
                    requests: h.len(),
                    items: c.items.load(Ordering::Relaxed),
                    items_per_second: c.items.load(Ordering::Relaxed) as f64 / seconds,
                    requests_per_second: h.len() as f64 / seconds,
                    pictures: match c.picture_bytes.load(Ordering::Relaxed) {
                        0 => None,
                        bytes => Some(PictureThroughput {
                            bytes,
                            mb_per_second: bytes as f64 / 1e6 / seconds,
                        }),
                    },
                    latency_ms: Latency {
                        p50: ms(h, 0.5),
                        p90: ms(h, 0.9),
                        p99: ms(h, 0.99),
                        p999: ms(h, 0.999),
                        max: h.max() as f64 / 1000.0,
                    },
                    errors: w.errors,
                }
            })
            .collect(),
        generator_cpu_seconds,
        generator_cpu_share: generator_cpu_seconds / (seconds * cores),
        server_cpu_seconds: server_pid
            .and_then(|p| cpu_seconds(Some(p)))
            .zip(server0)
            .map(|(b, a)| b - a),
    }
}

// ------------------------------------------------------------ the synthetic workload

/// Batches of every day's events, NDJSON or binary.
pub fn ingest_stream(
    traffic: &Traffic,
    batch: usize,
    binary: bool,
    connections: usize,
    rate: Option<f64>,
    once: bool,
) -> Stream {
    let events: Vec<EventInput> = traffic.days().flatten().collect();
    Stream::ingest(
        ingest_requests(&events, batch, binary),
        connections,
        rate,
        once,
    )
}

/// `POST /v1/events` requests of `batch` events each, NDJSON or binary.
pub fn ingest_requests(events: &[EventInput], batch: usize, binary: bool) -> Vec<Request> {
    events
        .chunks(batch.max(1))
        .map(|c| {
            let (body, content_type) = match binary {
                true => (wire::encode(c), wire::CONTENT_TYPE),
                false => {
                    let lines: Vec<String> = c.iter().map(crate::traffic::to_ndjson).collect();
                    (lines.join("\n").into_bytes(), "application/x-ndjson")
                }
            };
            Request::post("/v1/events", content_type, body, c.len() as u64)
        })
        .collect()
}

/// Batches of the lines of every `*.ndjson` file in `dir` (name order): sent as they
/// are (one event a line), or, with `binary`, parsed and sent as binary batches.
pub fn ndjson_files_stream(
    dir: &std::path::Path,
    batch: usize,
    binary: bool,
    connections: usize,
    rate: Option<f64>,
    once: bool,
) -> std::io::Result<Stream> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "ndjson"));
    files.sort();
    if files.is_empty() {
        return Err(std::io::Error::other(format!(
            "no .ndjson files in {}",
            dir.display()
        )));
    }
    let mut requests = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut failed = None;
    let mut flush = |lines: &mut Vec<String>| {
        if lines.is_empty() {
            return;
        }
        let n = lines.len() as u64;
        let request = match binary {
            false => Request::post(
                "/v1/events",
                "application/x-ndjson",
                lines.join("\n").into_bytes(),
                n,
            ),
            true => match lines
                .iter()
                .map(|l| event_of_line(l))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(events) => {
                    Request::post("/v1/events", wire::CONTENT_TYPE, wire::encode(&events), n)
                }
                Err(e) => {
                    failed.get_or_insert(e);
                    return;
                }
            },
        };
        requests.push(request);
        lines.clear();
    };
    for f in files {
        let text = std::fs::read_to_string(&f)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", f.display())))?;
        for l in text.lines().filter(|l| !l.trim().is_empty()) {
            lines.push(l.to_string());
            if lines.len() == batch.max(1) {
                flush(&mut lines);
            }
        }
    }
    flush(&mut lines);
    if let Some(e) = failed {
        return Err(std::io::Error::other(e));
    }
    Ok(Stream::ingest(requests, connections, rate, once))
}

/// One request on a fresh connection, for setup: status, head, body.
pub(crate) fn setup_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: sightline\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_string(), body.to_string()))
}

/// One NDJSON event line (`ts` in epoch ms, as `sightline gen` writes them) as the
/// input a binary batch carries.
fn event_of_line(line: &str) -> Result<EventInput, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("{e}: {line}"))?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let attrs = v["attrs"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, a)| {
            let a = match a {
                serde_json::Value::String(s) => sightline_storage::AttrValue::Str(s.clone()),
                serde_json::Value::Bool(b) => sightline_storage::AttrValue::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => sightline_storage::AttrValue::Int(i),
                    None => sightline_storage::AttrValue::Float(n.as_f64()?),
                },
                _ => return None,
            };
            Some((k.clone(), a))
        })
        .collect();
    Ok(EventInput {
        ts_ms: v["ts"]
            .as_i64()
            .ok_or_else(|| format!("no epoch-ms ts: {line}"))?,
        community: text("community"),
        device: text("device"),
        kind: text("kind"),
        subject: text("subject"),
        direction: text("direction"),
        attrs,
    })
}

/// Queries about the plates seen on the first day, over the whole range: trajectory
/// (100 events a page), co-occurrence (60 s, same device) and fuzzy search for a
/// plate with one character misread.
pub fn query_stream(
    traffic: &Traffic,
    kind: &str,
    connections: usize,
    rate: Option<f64>,
) -> Stream {
    let cfg = traffic.config();
    let mut plates: Vec<String> = traffic
        .day_events(0)
        .into_iter()
        .filter(|e| e.kind == "vehicle")
        .map(|e| e.subject)
        .collect();
    plates.sort();
    plates.dedup();
    let (from, to) = (
        cfg.start_ms.to_string(),
        (cfg.start_ms + cfg.days as i64 * 86_400_000).to_string(),
    );
    let requests = plates
        .iter()
        .map(|p| {
            let target = match kind {
                "trajectory" => format!(
                    "/v1/trajectory?{}",
                    form(&[
                        ("kind", "vehicle"),
                        ("subject", p),
                        ("from", &from),
                        ("to", &to),
                        ("limit", "100"),
                    ])
                ),
                "cooccurrence" => format!(
                    "/v1/cooccurrence?{}",
                    form(&[
                        ("kind", "vehicle"),
                        ("subject", p),
                        ("from", &from),
                        ("to", &to),
                        ("window", "60s"),
                        ("limit", "20"),
                    ])
                ),
                _ => {
                    let q = crate::traffic::ocr::misread_last(p);
                    format!(
                        "/v1/search?{}",
                        form(&[
                            ("q", &q),
                            ("kind", "vehicle"),
                            ("mode", "fuzzy"),
                            ("limit", "10")
                        ])
                    )
                }
            };
            Request::get(&target)
        })
        .collect();
    Stream {
        name: kind.to_string(),
        unit: "queries",
        requests,
        connections,
        rate,
        once: false,
        ..Stream::default()
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
