//! The golden checkpoints: fixed contents whose encodings are checked in at
//! `index/tests/data/golden-v{1,2,3}.idx`, so a layout change is deliberate. Write a
//! new version's with `SIGHTLINE_BLESS=1 cargo test -p sightline-index golden`
//! after bumping `VERSION` (and `storage/FORMAT.md`); older ones stay, read.

use super::*;

fn golden(version: u32) -> Vec<u8> {
    let shards = [
        ShardEntry {
            key: ShardKey {
                community: 0,
                span: 18_871,
            },
            dropped: true,
            events: 0,
        },
        ShardEntry {
            key: ShardKey {
                community: 0,
                span: 18_872,
            },
            dropped: false,
            events: 3,
        },
        ShardEntry {
            key: ShardKey {
                community: 1,
                span: 18_872,
            },
            dropped: false,
            events: 1,
        },
    ];
    let t = 1_630_512_000_000;
    encode_version(
        &Flat {
            through: 9,
            layout: SpanLayout {
                span_ms: 86_400_000,
                tz_offset_ms: 8 * 3_600_000,
            },
            shards: &shards,
            stats: &[(3, t, t + 50), (0, i64::MAX, i64::MIN), (1, t + 7, t + 7)],
            subject_offsets: &[0, 2, 2, 3],
            subject_shards: &[1, 2, 1],
            device_offsets: &[0, 1, 2],
            device_communities: &[0, 1],
        },
        version,
    )
}

fn decoded(bytes: Vec<u8>) -> Result<Checkpoint, StorageError> {
    Checkpoint::decode(Path::new("golden.idx"), FileBytes::Owned(bytes))
}

/// Decoded and every part read: what a reader meets sooner or later.
fn read_whole(bytes: Vec<u8>) -> Result<Checkpoint, StorageError> {
    let cp = decoded(bytes)?;
    cp.check_all()?;
    for s in 0..cp.subjects {
        cp.stats(s)?;
        cp.subject_shards(s as u32)?;
    }
    Ok(cp)
}

const VERSIONS: [u32; 3] = [1, 2, VERSION];

#[test]
fn golden_checkpoint_bytes_are_stable_and_read_back() {
    for version in VERSIONS {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/data/golden-v{version}.idx"));
        let bytes = golden(version);
        if std::env::var_os("SIGHTLINE_BLESS").is_some() && version == VERSION {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).expect("the golden checkpoint is checked in");
        assert_eq!(
            bytes, on_disk,
            "the version {version} layout changed: bump VERSION"
        );
        let cp = decoded(on_disk).unwrap();
        assert_eq!(cp.through, 9);
        assert_eq!(cp.subjects, 3);
        let list = |s| cp.subject_shards(s).unwrap().iter().collect::<Vec<_>>();
        assert_eq!(list(0), [1, 2]);
        assert!(list(1).is_empty());
        assert_eq!(
            cp.stats(2).unwrap(),
            (1, 1_630_512_000_007, 1_630_512_000_007)
        );
        assert_eq!(cp.device_communities(1).iter().collect::<Vec<_>>(), [1]);
        assert!(cp.shards[0].dropped);
        assert_eq!(
            cp.stats(0).unwrap(),
            (3, 1_630_512_000_000, 1_630_512_000_050)
        );
        assert_eq!(cp.stats(1).unwrap(), (0, i64::MAX, i64::MIN));
        assert!(cp.device_communities(0).contains(0));
        assert!(!cp.device_communities(0).contains(1));
    }
}

#[test]
fn every_damaged_byte_or_truncation_is_refused() {
    for version in VERSIONS {
        let good = golden(version);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            // Padding bytes are outside every checksum and may change freely only
            // if the reader ignores them; it does not: they must be zero.
            assert!(
                read_whole(bad).is_err(),
                "version {version}: flipped byte {i} accepted"
            );
        }
        for n in 0..good.len() {
            assert!(
                decoded(good[..n].to_vec()).is_err(),
                "version {version}: cut at {n} accepted"
            );
        }
    }
}

/// A checkpoint of `n` subjects, subject `s` in shard `s % 3` (dropped shards
/// none), seen once at `s` days (wide times, so version 3's statistics are too):
/// several chunks of statistics and offsets.
fn many(n: usize, version: u32) -> Vec<u8> {
    let shards: Vec<ShardEntry> = (0..3)
        .map(|c| ShardEntry {
            key: ShardKey {
                community: c,
                span: 18_872,
            },
            dropped: false,
            events: 1,
        })
        .collect();
    let stats: Vec<(u64, i64, i64)> = (0..n).map(|s| (1, day(s), day(s))).collect();
    let offsets: Vec<u64> = (0..=n as u64).collect();
    let lists: Vec<u32> = (0..n as u32).map(|s| s % 3).collect();
    encode_version(
        &Flat {
            through: 1,
            layout: SpanLayout {
                span_ms: 86_400_000,
                tz_offset_ms: 0,
            },
            shards: &shards,
            stats: &stats,
            subject_offsets: &offsets,
            subject_shards: &lists,
            device_offsets: &[0],
            device_communities: &[],
        },
        version,
    )
}

fn day(s: usize) -> i64 {
    -86_400_000 * 365 + s as i64 * 86_400_000
}

#[test]
fn large_sections_are_checked_a_chunk_at_a_time_when_first_read() {
    let n = 40_000;
    for version in [2, VERSION] {
        let good = many(n, version);
        let cp = decoded(good.clone()).unwrap();
        let chunks = cp.chunk_crcs.div_ceil(CHUNK);
        assert!(chunks >= 4, "version {version}: {chunks} chunks");
        // Nothing of the statistics was read to open it.
        let chunk_of = |at: usize| (at - cp.sections[0].0) / CHUNK;
        let middle = n / 2;
        let at = cp.stats_bytes(middle).start;
        assert!(!is_set(&cp.checked, chunk_of(at)), "version {version}");
        assert_eq!(cp.stats(middle).unwrap(), (1, day(middle), day(middle)));
        assert!(is_set(&cp.checked, chunk_of(at)));
        cp.check_all().unwrap();

        // A flipped byte in the middle subject's statistics: the file opens, other
        // subjects read, that one is the error naming the file and the chunk.
        let mut bad = good;
        bad[at] ^= 1;
        let cp = decoded(bad).unwrap();
        assert_eq!(cp.stats(0).unwrap(), (1, day(0), day(0)));
        assert_eq!(cp.subject_shards(middle as u32).unwrap().len(), 1);
        let e = cp.stats(middle).unwrap_err().to_string();
        assert!(
            e.contains("golden.idx") && e.contains("checksum mismatch"),
            "{e}"
        );
        assert!(cp.check_all().is_err());
    }
}

#[test]
fn version_3_packs_at_the_widths_it_needs() {
    let n = 40_000;
    let (v2, v3) = (many(n, 2).len(), many(n, VERSION).len());
    // Version 2: 24 + 8 + 4 bytes a subject. Version 3: count 1 bit, first 42
    // (40,000 days in ms), last 1, offset 16, shard 2: 62 bits.
    assert!(v3 * 4 < v2, "{v3} bytes against {v2}");
    let cp = decoded(many(n, VERSION)).unwrap();
    assert_eq!(
        cp.widths,
        Widths {
            count: 1,
            first: 42,
            last: 1,
            subject_offset: 16,
            subject_shard: 2,
            device_offset: 1,
            device_community: 1,
        }
    );
    // Every subject reads back, in any order, each an O(1) read.
    for s in (0..n).rev().step_by(7) {
        assert_eq!(cp.stats(s).unwrap(), (1, day(s), day(s)));
        let l = cp.subject_shards(s as u32).unwrap();
        assert_eq!(l.iter().collect::<Vec<_>>(), [s as u32 % 3]);
    }
}

/// Exact i64 semantics: the extremes of a time and of a count read back as written.
#[test]
fn extreme_times_and_counts_read_back_exactly() {
    let shards = [ShardEntry {
        key: ShardKey {
            community: 7,
            span: -3,
        },
        dropped: false,
        events: 1,
    }];
    let stats = [
        (u64::MAX, i64::MIN, i64::MAX),
        (0, i64::MAX, i64::MIN),
        (1, i64::MAX, i64::MAX),
        (2, i64::MIN, i64::MIN),
        (5, -1, 0),
    ];
    let bytes = encode(&Flat {
        through: u64::MAX,
        layout: SpanLayout {
            span_ms: 86_400_000,
            tz_offset_ms: -5 * 3_600_000,
        },
        shards: &shards,
        stats: &stats,
        subject_offsets: &[0, 1, 1, 2, 3, 4],
        subject_shards: &[0, 0, 0, 0],
        device_offsets: &[0, 1],
        device_communities: &[u32::MAX],
    });
    let cp = read_whole(bytes).unwrap();
    for (s, want) in stats.iter().enumerate() {
        assert_eq!(cp.stats(s).unwrap(), *want, "subject {s}");
    }
    assert_eq!(cp.widths.first, 64);
    assert!(cp.device_communities(0).contains(u32::MAX));
    assert_eq!(cp.through, u64::MAX);
}

/// A checkpoint's contents read out whole (what the index would write again).
struct Owned {
    stats: Vec<(u64, i64, i64)>,
    subject_offsets: Vec<u64>,
    subject_shards: Vec<u32>,
    device_offsets: Vec<u64>,
    device_communities: Vec<u32>,
}

impl Owned {
    fn of(cp: &Checkpoint) -> Owned {
        cp.check_all().unwrap();
        let mut o = Owned {
            stats: (0..cp.subjects).map(|s| cp.stats(s).unwrap()).collect(),
            subject_offsets: vec![0],
            subject_shards: Vec::new(),
            device_offsets: vec![0],
            device_communities: Vec::new(),
        };
        for s in 0..cp.subjects {
            o.subject_shards
                .extend(cp.subject_shards(s as u32).unwrap().iter());
            o.subject_offsets.push(o.subject_shards.len() as u64);
        }
        for d in 0..cp.devices {
            o.device_communities
                .extend(cp.device_communities(d as u32).iter());
            o.device_offsets.push(o.device_communities.len() as u64);
        }
        o
    }

    fn flat<'a>(&'a self, cp: &'a Checkpoint) -> Flat<'a> {
        Flat {
            through: cp.through,
            layout: cp.layout,
            shards: &cp.shards,
            stats: &self.stats,
            subject_offsets: &self.subject_offsets,
            subject_shards: &self.subject_shards,
            device_offsets: &self.device_offsets,
            device_communities: &self.device_communities,
        }
    }
}

/// What a store whose checkpoint is version 1 or 2 does at its next checkpoint:
/// the contents read back and written as version 3 are the version 3 golden file.
#[test]
fn older_versions_read_back_and_written_again_are_version_3() {
    for version in [1, 2] {
        let cp = decoded(golden(version)).unwrap();
        let o = Owned::of(&cp);
        assert_eq!(
            encode(&o.flat(&cp)),
            golden(VERSION),
            "from version {version}"
        );
    }
}

/// A checkpoint written again as versions 2 and 3 from the same contents reads the
/// same (every subject's statistics and list) and version 3 is never the larger;
/// with the figures: bytes of each, open time, and the cost of reading every
/// subject's list and statistics (what a trajectory or a search does first), median
/// of the rounds. The golden contents by default; the checkpoint at `$SIGHTLINE_CKPT`
/// (any version) when set, 9 rounds; `$SIGHTLINE_CKPT_ONLY=2|3` reads only that
/// version (for callgrind, toggled on `read_every_subject`). See BENCHMARKS.md
/// ("Index checkpoint version 3").
///
/// SIGHTLINE_CKPT=STORE/index/subjects.idx cargo test --release -p sightline-index \
///   --lib measure_checkpoint -- --nocapture
#[test]
fn measure_checkpoint() {
    use std::time::Instant;
    let given = std::env::var("SIGHTLINE_CKPT").ok();
    let rounds = if given.is_some() { 9 } else { 1 };
    let path = given
        .clone()
        .unwrap_or_else(|| "the golden contents".into());
    let bytes = match &given {
        Some(p) => std::fs::read(p).unwrap(),
        None => golden(VERSION),
    };
    let cp = decoded(bytes).unwrap();
    let owned = Owned::of(&cp);
    let flat = owned.flat(&cp);
    let sv = &owned.subject_shards;
    let only: Option<u32> = std::env::var("SIGHTLINE_CKPT_ONLY")
        .ok()
        .map(|v| v.parse().unwrap());
    println!(
        "{path}: {} subjects, {} shard numbers, {} shards, {} devices",
        cp.subjects,
        sv.len(),
        cp.shards.len(),
        cp.devices
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (mut per_read, mut checks) = (Vec::new(), Vec::new());
    for version in [2, VERSION] {
        if only.is_some_and(|o| o != version) {
            continue;
        }
        let bytes = encode_version(&flat, version);
        let sizes: Vec<usize> = {
            let c = decoded(bytes.clone()).unwrap();
            c.sections.iter().map(|s| s.1).collect()
        };
        checks.push((
            version,
            bytes.len(),
            read_every_subject(&decoded(bytes.clone()).unwrap()),
        ));
        let (mut open_us, mut read_ns) = (Vec::new(), Vec::new());
        let mut sum = 0u64;
        for _ in 0..rounds {
            let b = bytes.clone();
            let t = Instant::now();
            let c = decoded(b).unwrap();
            open_us.push(t.elapsed().as_secs_f64() * 1e6);
            // First reads (chunks and lists checked), then again (checked already).
            let t = Instant::now();
            sum = sum.wrapping_add(read_every_subject(&c));
            let first = t.elapsed().as_secs_f64();
            let t = Instant::now();
            sum = sum.wrapping_add(read_every_subject(&c));
            let again = t.elapsed().as_secs_f64();
            read_ns.push((
                first * 1e9 / c.subjects as f64,
                again * 1e9 / c.subjects as f64,
            ));
        }
        let first = median(read_ns.iter().map(|r| r.0).collect());
        let again = median(read_ns.iter().map(|r| r.1).collect());
        per_read.push((version, first, again));
        println!(
            "version {version}: {} bytes (sections {sizes:?}), open {:.1} µs, a subject's list and statistics: first read {first:.1} ns, later {again:.1} ns (checksum {sum})",
            bytes.len(),
            median(open_us),
        );
    }
    if let [(_, f2, a2), (_, f3, a3)] = per_read[..] {
        println!(
            "version 3 / version 2: first read {:.2}×, later {:.2}×",
            f3 / f2,
            a3 / a2
        );
    }
    if let [(_, len2, read2), (_, len3, read3)] = checks[..] {
        assert_eq!(read2, read3, "versions 2 and 3 read differently");
        assert!(len3 <= len2, "version 3 is larger: {len3} > {len2}");
    }
}

/// Every subject's statistics and shard list, as a trajectory reads them.
#[inline(never)]
fn read_every_subject(cp: &Checkpoint) -> u64 {
    let mut sum = 0u64;
    for s in 0..cp.subjects {
        let (count, _, last) = cp.stats(s).unwrap();
        sum = sum.wrapping_add(count).wrapping_add(last as u64);
        for n in cp.subject_shards(s as u32).unwrap().iter() {
            sum = sum.wrapping_add(n as u64);
        }
    }
    std::hint::black_box(sum)
}

/// Version 3 with its header changed and its checksum made good again: widths out
/// of range, sections too short or long for the widths and counts are `Corrupt`
/// naming the file, and no header change makes a read panic.
#[test]
fn malformed_widths_and_sections_are_corrupt_never_a_panic() {
    let good = golden(VERSION);
    let header = header_len(VERSION);
    let resealed = |mut b: Vec<u8>| {
        let crc = crc32fast::hash(&b[..header - 8]);
        b[header - 8..header - 4].copy_from_slice(&crc.to_le_bytes());
        b
    };
    for i in 64..72 {
        for w in [0u8, 33, 64, 65, 200, 255] {
            if good[i] == w {
                continue;
            }
            let mut b = good.clone();
            b[i] = w;
            match read_whole(resealed(b)) {
                Ok(_) => panic!("width byte {i} = {w} accepted"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains("golden.idx"), "{e}");
                }
            }
        }
    }
    // Every byte of the header, every bit: an error or a good read, never a panic.
    for i in 16..header - 8 {
        for bit in 0..8 {
            let mut b = good.clone();
            b[i] ^= 1 << bit;
            let _ = read_whole(resealed(b));
        }
    }
    // A section table claiming a shorter statistics section (the rest moved up).
    let mut b = good.clone();
    let at = fields_len(VERSION) + SECTION_ENTRY + 8;
    let n = u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    b[at..at + 8].copy_from_slice(&(n - 8).to_le_bytes());
    let e = decoded(resealed(b))
        .err()
        .expect("a short section")
        .to_string();
    assert!(e.contains("golden.idx"), "{e}");
}

/// A valid checkpoint of every version, one of several chunks too, is unchanged by
/// [`resealed`]. A byte changed in the header's fields or in any data section is
/// refused as it is; resealed, it gets past every checksum (header, table, chunks) to
/// the structure's own checks, which refuse some of these changes and read others as
/// a valid checkpoint, and the reader never panics.
#[test]
fn resealing_keeps_a_valid_checkpoint_and_lets_a_change_past_the_checksums() {
    let (mut refused, mut read) = (0, 0);
    for bytes in VERSIONS
        .iter()
        .map(|&v| golden(v))
        .chain([many(40_000, VERSION)])
    {
        let header = header_len(u32_at(&bytes, 8));
        let read_bytes = |b: &[u8]| {
            read_whole(b.to_vec())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let (r, v) =
            sightline_storage::fuzzing::reseal_changes(&bytes, header, resealed, read_bytes);
        (refused, read) = (refused + r, read + v);
    }
    assert!(refused > 0 && read > 0, "{refused} refused, {read} read");
}
