//! The load generator's engine: streams of prepared HTTP/1.1 requests, each sent over
//! its own keep-alive connections, paced to a rate or as fast as the server answers,
//! bounded in time and in items; a live progress line; a report with throughput,
//! latency percentiles (HdrHistogram) and errors by kind, per operation.
//!
//! It talks only to the address it is given. Requests are prepared before the clock
//! starts, so the generator's own work while running is writing bytes and reading
//! answers (its CPU share is in the report).

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
/// the body, and how many items (events, or 1 for a query) it carries.
#[derive(Clone, Debug)]
pub struct Request {
    pub head: String,
    pub body: Vec<u8>,
    pub items: u64,
}

impl Request {
    pub fn get(target: &str) -> Request {
        Request {
            head: format!("GET {target} HTTP/1.1\r\nHost: sightline\r\n\r\n"),
            body: Vec::new(),
            items: 1,
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
        }
    }
}

/// One operation's load: its requests (taken in turn, wrapping around unless `once`),
/// over `connections` connections, at about `rate` items per second in total (as fast
/// as answered when `None`).
pub struct Stream {
    pub name: String,
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
}

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
            on_ack: None,
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
    pub latency_ms: Latency,
    /// Requests not answered 200, by kind ("status 429", "io: …").
    pub errors: BTreeMap<String, u64>,
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
            out += &format!(
                "{}: {:.0} {}/s ({} requests, {:.0}/s); latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}; {errors}\n",
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

    /// Sends a request and reads the whole answer; the status.
    fn call(&mut self, r: &Request, line: &mut String) -> std::io::Result<u16> {
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
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut skip = vec![0u8; size + 2];
                self.reader.read_exact(&mut skip)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            std::io::copy(
                &mut (&mut self.reader).take(len as u64),
                &mut std::io::sink(),
            )?;
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

/// Runs the streams against `addr` within `limits`; `progress` is called about once
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
        let connections = s.connections.max(1);
        // Time between one connection's requests, from the items per request.
        let per_item = s.rate.map(|r| connections as f64 / r.max(1e-9));
        let next_index = Arc::new(AtomicU64::new(0));
        for _ in 0..connections {
            let (requests, stop, counters, next_index) = (
                requests.clone(),
                stop.clone(),
                counters[si].clone(),
                next_index.clone(),
            );
            let once = s.once;
            let on_ack = s.on_ack.clone();
            handles.push((
                si,
                std::thread::spawn(move || {
                    let mut w = Worker {
                        histogram: Histogram::new(3).expect("histogram"),
                        errors: BTreeMap::new(),
                    };
                    let mut conn: Option<Conn> = None;
                    let mut line = String::new();
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) && !requests.is_empty() {
                        let i = next_index.fetch_add(1, Ordering::Relaxed) as usize;
                        if once && i >= requests.len() {
                            break;
                        }
                        let r = &requests[i % requests.len()];
                        if let Some(per_item) = per_item {
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            next += Duration::from_secs_f64(per_item * r.items as f64);
                        }
                        let t = Instant::now();
                        let answer = match conn.as_mut() {
                            Some(c) => c.call(r, &mut line),
                            None => Conn::open(addr).and_then(|c| {
                                let c = conn.insert(c);
                                c.call(r, &mut line)
                            }),
                        };
                        w.histogram
                            .record(t.elapsed().as_micros().max(1) as u64)
                            .expect("latency in range");
                        counters.requests.fetch_add(1, Ordering::Relaxed);
                        let error = match answer {
                            Ok(200) => {
                                counters.items.fetch_add(r.items, Ordering::Relaxed);
                                if let Some(f) = &on_ack {
                                    f(i % requests.len());
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
fn setup_call(
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

/// The platform the GA/T 1400 load registers as, and its password.
pub const GAT1400_PLATFORM: &str = "32050800005030000001";
const GAT1400_PASSWORD: &str = "load-generator";

/// GA/T 1400 uploads of the `*-motorvehicles.json` files in `dir`, `batch` objects
/// each, after registering the city's communities and devices, and a platform that
/// pushes for them, in the catalog, and registering that platform by digest.
pub fn gat1400_stream(
    addr: SocketAddr,
    traffic: &Traffic,
    dir: &std::path::Path,
    batch: usize,
    connections: usize,
) -> Result<Stream, String> {
    use crate::traffic::{community_code, device_code, TYPE_FACE_CAMERA, TYPE_VEHICLE_GATE};
    let put = |path: String, body: serde_json::Value| -> Result<(), String> {
        match setup_call(addr, "PUT", &path, "", &body.to_string()) {
            Ok((200, _, _)) => Ok(()),
            Ok((s, _, b)) => Err(format!("PUT {path}: {s} {b}")),
            Err(e) => Err(format!("PUT {path}: {e}")),
        }
    };
    let cfg = traffic.config();
    for c in 0..cfg.communities {
        let code = community_code(c);
        put(
            format!("/v1/communities/{code}"),
            serde_json::json!({"name": code}),
        )?;
        for (t, n, dir) in [
            (TYPE_VEHICLE_GATE, 1, "in"),
            (TYPE_VEHICLE_GATE, 3, "in"),
            (TYPE_VEHICLE_GATE, 2, "out"),
            (TYPE_VEHICLE_GATE, 4, "out"),
            (TYPE_FACE_CAMERA, 1, "in"),
            (TYPE_FACE_CAMERA, 2, "in"),
            (TYPE_FACE_CAMERA, 3, "in"),
        ] {
            put(
                format!("/v1/devices/{}", device_code(c, t, n)),
                serde_json::json!({"community": code, "kind": "camera", "direction": dir}),
            )?;
        }
    }
    put(
        format!("/v1/devices/{GAT1400_PLATFORM}"),
        serde_json::json!({"community": community_code(0), "kind": "platform",
                           "gat1400": {"password": GAT1400_PASSWORD}}),
    )?;
    // The digest handshake.
    let path = "/VIID/System/Register";
    let reg = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{GAT1400_PLATFORM}\"}}}}");
    let (_, head, _) = setup_call(addr, "POST", path, "", &reg).map_err(|e| e.to_string())?;
    let nonce = head
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("no digest challenge from the server")?;
    let md5 = sightline_server::gat1400::md5_hex;
    let ha1 = md5(&format!("{GAT1400_PLATFORM}:Sightline:{GAT1400_PASSWORD}"));
    let response = md5(&format!(
        "{ha1}:{nonce}:00000001:0a4f113b:auth:{}",
        md5(&format!("POST:{path}"))
    ));
    let auth = format!(
        "Authorization: Digest username=\"{GAT1400_PLATFORM}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\"\r\n"
    );
    match setup_call(addr, "POST", path, &auth, &reg).map_err(|e| e.to_string())? {
        (200, _, _) => {}
        (s, _, b) => return Err(format!("digest registration: {s} {b}")),
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-motorvehicles.json"))
        .collect();
    files.sort();
    let mut requests = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        let objects = v["MotorVehicleListObject"]["MotorVehicleObject"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for chunk in objects.chunks(batch.max(1)) {
            let body = serde_json::json!({"MotorVehicleListObject": {"MotorVehicleObject": chunk}});
            let mut r = Request::post(
                "/VIID/MotorVehicles",
                "application/VIID+JSON",
                body.to_string().into_bytes(),
                chunk.len() as u64,
            );
            r.head = r.head.replacen(
                "\r\n\r\n",
                &format!("\r\nUser-Identify: {GAT1400_PLATFORM}\r\n\r\n"),
                1,
            );
            requests.push(r);
        }
    }
    if requests.is_empty() {
        return Err(format!("no *-motorvehicles.json in {}", dir.display()));
    }
    Ok(Stream {
        name: "gat1400".into(),
        unit: "events",
        requests,
        connections,
        rate: None,
        once: true,
        on_ack: None,
    })
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
        on_ack: None,
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
