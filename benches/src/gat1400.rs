//! The load generator's GA/T 1400 workload: the catalog and digest registration a
//! pushing platform needs; the vehicle objects of `sightline gen`'s files uploaded in
//! batches (`POST /VIID/MotorVehicles`), optionally each with one JPEG picture; and
//! picture reads while the uploads run (`GET /v1/images/{id}` of the ids that
//! trajectory answers list for the plates just uploaded).
//!
//! Pictures are made before the clock starts: bytes that look like a JPEG (its magic,
//! `FF D8 FF E0`) followed by the object's number and pseudo-random bytes seeded by it,
//! so every object's picture is distinct (the store keeps identical bytes once per
//! shard, which would hide the cost being measured) and every run sends the same bytes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};

use crate::load::{setup_call, Request, Stream};
use crate::Traffic;

/// The platform the GA/T 1400 load registers as, and its password.
pub const PLATFORM: &str = "32050800005030000001";
const PASSWORD: &str = "load-generator";

/// Most bytes of upload bodies prepared up front: pictures are held in memory, base64
/// encoded, until sent (a month of the city with 200 KB pictures would be ~68 GB). Ask
/// for fewer objects (`--objects`) or smaller pictures beyond it.
pub const MAX_PREPARED_BYTES: u64 = 8 << 30;

/// Smallest picture [`picture`] makes: the JPEG magic and the object's number, which
/// keeps every object's picture distinct.
pub const MIN_PICTURE_BYTES: usize = 12;

/// How many of the newest acknowledged plates the learning trajectory queries cycle
/// through, and the most picture ids kept to read (the first ones learned).
const RECENT_PLATES: usize = 1_000;
const MAX_PICTURE_IDS: usize = 1 << 20;

/// Registers the city's communities and devices, and the platform that pushes for them
/// (with its digest password), in the catalog. Every call is a `PUT`: running it again
/// changes nothing.
pub fn register_catalog(addr: SocketAddr, traffic: &Traffic) -> Result<(), String> {
    use crate::traffic::{community_code, device_code, TYPE_FACE_CAMERA, TYPE_VEHICLE_GATE};
    let put = |path: String, body: Value| -> Result<(), String> {
        match setup_call(addr, "PUT", &path, "", &body.to_string()) {
            // 201: created; 200: replaced (a catalog registered by an earlier run).
            Ok((200 | 201, _, _)) => Ok(()),
            Ok((s, _, b)) => Err(format!("PUT {path}: {s} {b}")),
            Err(e) => Err(format!("PUT {path}: {e}")),
        }
    };
    let cfg = traffic.config();
    // The platform relays every community's cameras (an uploader may name only
    // devices of communities it is in or relays): by the code's community prefix
    // while those are unique (below 100 communities), else device by device.
    let mut relays = serde_json::Map::new();
    for c in 0..cfg.communities {
        let code = community_code(c);
        put(format!("/v1/communities/{code}"), json!({"name": code}))?;
        for (t, n, dir) in [
            (TYPE_VEHICLE_GATE, 1, "in"),
            (TYPE_VEHICLE_GATE, 3, "in"),
            (TYPE_VEHICLE_GATE, 2, "out"),
            (TYPE_VEHICLE_GATE, 4, "out"),
            (TYPE_FACE_CAMERA, 1, "in"),
            (TYPE_FACE_CAMERA, 2, "in"),
            (TYPE_FACE_CAMERA, 3, "in"),
        ] {
            let device = device_code(c, t, n);
            if cfg.communities > 100 {
                relays.insert(device.clone(), json!(code));
            }
            put(
                format!("/v1/devices/{device}"),
                json!({"community": code, "kind": "camera", "direction": dir}),
            )?;
        }
        if cfg.communities <= 100 {
            relays.insert(
                device_code(c, TYPE_VEHICLE_GATE, 1)[..8].to_string(),
                json!(code),
            );
        }
    }
    put(
        format!("/v1/devices/{PLATFORM}"),
        json!({"community": community_code(0), "kind": "platform",
               "gat1400": {"password": PASSWORD}, "relays": relays}),
    )
}

/// Registers the platform by digest (`POST /VIID/System/Register`, challenge and
/// answer). The gateway keeps registrations in memory: a restarted server needs this
/// again.
pub fn register_platform(addr: SocketAddr) -> Result<(), String> {
    let path = "/VIID/System/Register";
    let reg = format!("{{\"RegisterObject\":{{\"DeviceID\":\"{PLATFORM}\"}}}}");
    let (_, head, _) = setup_call(addr, "POST", path, "", &reg).map_err(|e| e.to_string())?;
    let nonce = head
        .split("nonce=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or("no digest challenge from the server")?;
    let md5 = sightline_server::gat1400::md5_hex;
    let ha1 = md5(&format!("{PLATFORM}:Sightline:{PASSWORD}"));
    let response = md5(&format!(
        "{ha1}:{nonce}:00000001:0a4f113b:auth:{}",
        md5(&format!("POST:{path}"))
    ));
    let auth = format!(
        "Authorization: Digest username=\"{PLATFORM}\", realm=\"Sightline\", nonce=\"{nonce}\", uri=\"{path}\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"{response}\"\r\n"
    );
    match setup_call(addr, "POST", path, &auth, &reg).map_err(|e| e.to_string())? {
        (200, _, _) => Ok(()),
        (s, _, b) => Err(format!("digest registration: {s} {b}")),
    }
}

/// The vehicle objects of the `*-motorvehicles.json` files in `dir` (name order, as
/// `sightline gen --format gat1400` writes them), one list per file, at most `max` in
/// all.
pub fn vehicle_objects(dir: &Path, max: Option<usize>) -> Result<Vec<Vec<Value>>, String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-motorvehicles.json"))
        .collect();
    files.sort();
    let mut left = max.unwrap_or(usize::MAX);
    let mut objects = Vec::new();
    for f in files {
        if left == 0 {
            break;
        }
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        let mut v: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        if let Value::Array(list) = v["MotorVehicleListObject"]["MotorVehicleObject"].take() {
            let list: Vec<Value> = list.into_iter().take(left).collect();
            left -= list.len();
            objects.push(list);
        }
    }
    if objects.iter().all(Vec::is_empty) {
        return Err(format!("no *-motorvehicles.json in {}", dir.display()));
    }
    Ok(objects)
}

/// The uploads that `files` of objects make, `batch` objects each (a batch never spans
/// two files): each batch's objects, and the number of its first object counted over
/// all files.
pub fn batches(files: &[Vec<Value>], batch: usize) -> Vec<(usize, &[Value])> {
    let mut first = 0;
    let mut out = Vec::new();
    for f in files {
        for chunk in f.chunks(batch.max(1)) {
            out.push((first, chunk));
            first += chunk.len();
        }
    }
    out
}

/// Object `n`'s picture: `bytes` bytes (at least [`MIN_PICTURE_BYTES`]), the JPEG magic
/// `FF D8 FF E0`, `n` (8 bytes, little-endian), then pseudo-random bytes (splitmix64
/// seeded by `n`). Distinct for every `n`; the same on every run.
pub fn picture(n: u64, bytes: usize) -> Vec<u8> {
    let len = bytes.max(MIN_PICTURE_BYTES);
    let mut out = Vec::with_capacity(len + 8);
    out.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    out.extend_from_slice(&n.to_le_bytes());
    for k in 0.. {
        if out.len() >= len {
            break;
        }
        out.extend_from_slice(&splitmix64(n, k).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Gives a vehicle object `picture` as its one `SubImageInfoObject`: a 车辆大图
/// (`Type` 01), `Jpeg`, shot at the object's `PassTime`, 1920 × 1080, base64 `Data`.
pub fn attach_picture(object: &mut Value, picture: &[u8]) {
    let shot = object["PassTime"].clone();
    object["SubImageList"] = json!({"SubImageInfoObject": [{
        "Type": "01",
        "FileFormat": "Jpeg",
        "ShotTime": shot,
        "Width": 1920,
        "Height": 1080,
        "Data": base64::engine::general_purpose::STANDARD.encode(picture),
    }]});
}

/// Bytes of the upload bodies that `objects` objects make with pictures of
/// `picture_bytes` each (base64 grows 4/3), about.
pub fn prepared_bytes(objects: usize, picture_bytes: usize) -> u64 {
    let picture = match picture_bytes {
        0 => 0,
        n => n.max(MIN_PICTURE_BYTES).div_ceil(3) * 4 + 120,
    };
    objects as u64 * (picture as u64 + 400)
}

/// `POST /VIID/MotorVehicles` requests of `batch` objects each (see [`batches`]),
/// from the platform; `picture(i)` is object `i`'s picture, if it has one (attached
/// with [`attach_picture`]; the request counts its bytes). Each body is built and its
/// pictures encoded one batch at a time.
pub fn upload_requests(
    files: &[Vec<Value>],
    batch: usize,
    picture: impl Fn(usize) -> Option<Vec<u8>>,
) -> Vec<Request> {
    batches(files, batch)
        .into_iter()
        .map(|(first, chunk)| {
            let mut picture_bytes = 0;
            let chunk: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(k, o)| {
                    let mut o = o.clone();
                    if let Some(p) = picture(first + k) {
                        attach_picture(&mut o, &p);
                        picture_bytes += p.len() as u64;
                    }
                    o
                })
                .collect();
            let body = json!({"MotorVehicleListObject": {"MotorVehicleObject": chunk}});
            let mut r = Request::post(
                "/VIID/MotorVehicles",
                "application/VIID+JSON",
                body.to_string().into_bytes(),
                chunk.len() as u64,
            );
            r.head = r.head.replacen(
                "\r\n\r\n",
                &format!("\r\nUser-Identify: {PLATFORM}\r\n\r\n"),
                1,
            );
            r.picture_bytes = picture_bytes;
            r
        })
        .collect()
}

/// The uploads as a stream named "gat1400" (of "events": one per object), each
/// request sent once.
pub fn upload_stream(requests: Vec<Request>, connections: usize, rate: Option<f64>) -> Stream {
    Stream {
        name: "gat1400".into(),
        unit: "events",
        requests,
        connections,
        rate,
        once: true,
        ..Stream::default()
    }
}

/// What the picture reads learn while uploads run: the plates of acknowledged
/// uploads (newest last) and the pictures their trajectories list.
#[derive(Default)]
struct Learned {
    plates: Mutex<Vec<String>>,
    pictures: Mutex<Pictures>,
}

#[derive(Default)]
struct Pictures {
    /// Id and size, in the order learned.
    listed: Vec<(String, u64)>,
    known: HashSet<String>,
}

/// Picture reads while uploading: set `on_upload_ack` as the upload stream's
/// `on_ack`, and run `trajectory` and `images` beside it.
pub struct PictureReads {
    /// Records the plates of an acknowledged upload (its request index).
    pub on_upload_ack: Arc<dyn Fn(usize) + Send + Sync>,
    /// `GET /v1/trajectory` (100 events, the city's whole range) of the newest
    /// acknowledged plates, learning the picture ids the answers list.
    pub trajectory: Stream,
    /// `GET /v1/images/{id}` of learned ids, chosen at random (a fixed sequence).
    pub images: Stream,
}

/// Picture reads for uploads of `files` in batches of `batch` (as
/// [`upload_requests`] makes them): trajectories at `trajectory_rate` a second over one
/// connection, pictures over `connections` at `rate` (as fast as answered when `None`).
pub fn picture_reads(
    traffic: &Traffic,
    files: &[Vec<Value>],
    batch: usize,
    trajectory_rate: f64,
    connections: usize,
    rate: Option<f64>,
) -> PictureReads {
    let plates: Vec<Vec<String>> = batches(files, batch)
        .into_iter()
        .map(|(_, c)| {
            c.iter()
                .filter_map(|o| o["PlateNo"].as_str().map(str::to_string))
                .collect()
        })
        .collect();
    let learned = Arc::new(Learned::default());
    let on_upload_ack = {
        let learned = learned.clone();
        Arc::new(move |i: usize| {
            let mut known = learned.plates.lock().expect("plates");
            known.extend(plates[i].iter().cloned());
        })
    };
    let cfg = traffic.config();
    let range = format!(
        "from={}&to={}",
        cfg.start_ms,
        cfg.start_ms + cfg.days as i64 * 86_400_000
    );
    let trajectory = Stream {
        name: "trajectory".into(),
        unit: "queries",
        connections: 1,
        rate: Some(trajectory_rate),
        source: Some({
            let learned = learned.clone();
            Arc::new(move |n: u64| {
                let plates = learned.plates.lock().expect("plates");
                let recent = plates.len().min(RECENT_PLATES);
                let plate =
                    plates.get(plates.len().checked_sub(1 + n as usize % recent.max(1))?)?;
                let subject = form_urlencoded::byte_serialize(plate.as_bytes()).collect::<String>();
                Some(Request::get(&format!(
                    "/v1/trajectory?kind=vehicle&subject={subject}&{range}&limit=100"
                )))
            })
        }),
        on_answer: Some({
            let learned = learned.clone();
            Arc::new(move |_, body: &[u8]| learn_pictures(&learned, body))
        }),
        ..Stream::default()
    };
    let images = Stream {
        name: "images".into(),
        unit: "queries",
        connections,
        rate,
        source: Some(Arc::new(move |n: u64| {
            let pictures = learned.pictures.lock().expect("pictures");
            let len = pictures.listed.len() as u64;
            let (id, bytes) = pictures
                .listed
                .get((splitmix64(0, n) % len.max(1)) as usize)?;
            let mut r = Request::get(&format!("/v1/images/{id}"));
            r.picture_bytes = *bytes;
            Some(r)
        })),
        ..Stream::default()
    };
    PictureReads {
        on_upload_ack,
        trajectory,
        images,
    }
}

/// Records the stored pictures (`images[].id`, `bytes`) of a trajectory answer's events.
fn learn_pictures(learned: &Learned, body: &[u8]) {
    let Ok(answer) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let mut pictures = learned.pictures.lock().expect("pictures");
    let events = answer["events"].as_array().into_iter().flatten();
    for image in events.flat_map(|e| e["images"].as_array().into_iter().flatten()) {
        let (Some(id), Some(bytes)) = (image["id"].as_str(), image["bytes"].as_u64()) else {
            continue; // a reference (StoragePath), not a stored picture
        };
        if pictures.listed.len() < MAX_PICTURE_IDS && pictures.known.insert(id.to_string()) {
            pictures.listed.push((id.to_string(), bytes));
        }
    }
}

/// Output `k` of splitmix64 seeded with `seed`: a fixed pseudo-random sequence.
fn splitmix64(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
