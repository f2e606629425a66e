//! Writing a segment: sort, encode columns block by block, postings, source ids, attrs.

use super::format::*;
use crate::bitpack::{bits_needed, pack, packed_len};
use crate::memtable::StoredRow;
use crate::row::fnv1a;

/// Encodes `rows` (all of one shard) as a segment file's bytes. Sorts `rows` by
/// (device, ts, seq) in place; ordinals in the file are positions in that order.
pub fn build_segment(
    community: u32,
    span: i32,
    span_start_ms: i64,
    rows: &mut [StoredRow],
) -> Vec<u8> {
    assert!(!rows.is_empty(), "a segment holds at least one event");
    assert!(
        rows.len() <= u32::MAX as usize,
        "too many rows for one segment"
    );
    rows.sort_unstable_by_key(|r| (r.device, r.ts_ms, r.seq));
    let ts_off = |ts: i64| -> u32 {
        let off = ts - span_start_ms;
        assert!(
            (0..=u32::MAX as i64).contains(&off),
            "event at {ts} outside its span starting {span_start_ms}"
        );
        off as u32
    };

    // Local subject ranks: the sorted distinct subjects of this segment.
    let mut subjects: Vec<u32> = rows.iter().map(|r| r.subject).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let rank_of = |s: u32| subjects.binary_search(&s).expect("subject collected above") as u32;
    let ranks: Vec<u32> = rows.iter().map(|r| rank_of(r.subject)).collect();

    // Blocks: runs of one device cut into BLOCK_ROWS.
    let mut directory = Vec::new();
    let mut data = Vec::new();
    let mut start = 0usize;
    while start < rows.len() {
        let device = rows[start].device;
        let mut end = start + 1;
        while end < rows.len() && end - start < BLOCK_ROWS && rows[end].device == device {
            end += 1;
        }
        encode_block(
            &rows[start..end],
            &ranks[start..end],
            start as u32,
            &ts_off,
            &mut directory,
            &mut data,
        );
        start = end;
    }

    // Postings: rank -> ordinals, by counting sort (each list comes out sorted).
    let mut offsets = vec![0u64; subjects.len() + 1];
    for &r in &ranks {
        offsets[r as usize + 1] += 1;
    }
    for i in 1..offsets.len() {
        offsets[i] += offsets[i - 1];
    }
    let mut fill = offsets.clone();
    let mut ordinals = vec![0u64; rows.len()];
    for (ord, &r) in ranks.iter().enumerate() {
        ordinals[fill[r as usize] as usize] = ord as u64;
        fill[r as usize] += 1;
    }

    // Source ids, sorted by hash.
    let mut sources: Vec<(u64, u32)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.source_id
                .as_ref()
                .map(|s| (fnv1a(s.as_bytes()), i as u32))
        })
        .collect();
    sources.sort_unstable();
    let mut source_bytes = Vec::with_capacity(sources.len() * SOURCE_ENTRY);
    for (h, o) in &sources {
        source_bytes.extend_from_slice(&h.to_le_bytes());
        source_bytes.extend_from_slice(&o.to_le_bytes());
    }

    // Attrs: offsets into one blob.
    let mut attr_data = Vec::new();
    let mut attr_offsets = Vec::with_capacity(rows.len() + 1);
    attr_offsets.push(0u64);
    for r in rows.iter() {
        attr_data.extend_from_slice(&r.attrs);
        attr_offsets.push(attr_data.len() as u64);
    }

    let sections: [Vec<u8>; SECTION_COUNT] = [
        directory,
        data,
        packed_section(&subjects.iter().map(|&s| s as u64).collect::<Vec<_>>()),
        packed_section(&offsets),
        packed_section(&ordinals),
        source_bytes,
        packed_section(&attr_offsets),
        attr_data,
    ];

    let mut file = vec![0u8; HEADER_LEN];
    let mut table = Vec::with_capacity(SECTION_COUNT);
    for (i, s) in sections.iter().enumerate() {
        while !file.len().is_multiple_of(8) {
            file.push(0);
        }
        // The data section is covered block by block; its table checksum is unused.
        let crc = if i == Section::Data as usize {
            0
        } else {
            crc32fast::hash(s)
        };
        table.push((file.len() as u64, s.len() as u64, crc));
        file.extend_from_slice(s);
    }

    let h = &mut file[..HEADER_LEN];
    h[0..8].copy_from_slice(&MAGIC);
    put_u32(h, 8, VERSION);
    put_u32(h, 12, HEADER_LEN as u32);
    put_u32(h, 16, community);
    put_u32(h, 20, span as u32);
    put_u64(h, 24, span_start_ms as u64);
    put_u32(h, 32, rows.len() as u32);
    put_u32(h, 36, (sections[0].len() / BLOCK_ENTRY) as u32);
    put_u32(h, 40, subjects.len() as u32);
    put_u32(h, 44, sources.len() as u32);
    put_u64(h, 48, rows.iter().map(|r| r.seq).min().expect("non-empty"));
    put_u64(h, 56, rows.iter().map(|r| r.seq).max().expect("non-empty"));
    put_u64(
        h,
        64,
        rows.iter().map(|r| r.ts_ms).min().expect("non-empty") as u64,
    );
    put_u64(
        h,
        72,
        rows.iter().map(|r| r.ts_ms).max().expect("non-empty") as u64,
    );
    for (i, (off, len, crc)) in table.iter().enumerate() {
        let at = HEADER_FIELDS + i * SECTION_ENTRY;
        put_u64(h, at, *off);
        put_u64(h, at + 8, *len);
        put_u32(h, at + 16, *crc);
    }
    let crc = crc32fast::hash(&h[..HEADER_CRC_AT]);
    put_u32(h, HEADER_CRC_AT, crc);
    file
}

fn encode_block(
    rows: &[StoredRow],
    ranks: &[u32],
    first_ordinal: u32,
    ts_off: &impl Fn(i64) -> u32,
    directory: &mut Vec<u8>,
    data: &mut Vec<u8>,
) {
    debug_assert!(rows
        .windows(2)
        .all(|w| (w[0].device, w[0].ts_ms) <= (w[1].device, w[1].ts_ms)));
    let ts_min = ts_off(rows[0].ts_ms);
    let ts_max = ts_off(rows[rows.len() - 1].ts_ms);
    let subj_min = *ranks.iter().min().expect("non-empty block");
    let subj_max = *ranks.iter().max().expect("non-empty block");
    let seq_min = rows.iter().map(|r| r.seq).min().expect("non-empty block");
    let seq_max = rows.iter().map(|r| r.seq).max().expect("non-empty block");
    let kd_max = rows.iter().map(|r| r.kd).max().expect("non-empty block");
    let ts_bits = bits_needed((ts_max - ts_min) as u64);
    let subj_bits = bits_needed((subj_max - subj_min) as u64);
    let seq_bits = bits_needed(seq_max - seq_min);
    let kd_bits = bits_needed(kd_max as u64);

    let data_off = data.len() as u64;
    pack(
        rows.iter().map(|r| (ts_off(r.ts_ms) - ts_min) as u64),
        ts_bits,
        data,
    );
    pack(
        ranks.iter().map(|&r| (r - subj_min) as u64),
        subj_bits,
        data,
    );
    pack(rows.iter().map(|r| r.seq - seq_min), seq_bits, data);
    pack(rows.iter().map(|r| r.kd as u64), kd_bits, data);
    let block_data = &data[data_off as usize..];
    debug_assert_eq!(
        block_data.len(),
        block_data_len(rows.len(), [ts_bits, subj_bits, seq_bits, kd_bits])
    );

    let mut e = [0u8; BLOCK_ENTRY];
    put_u32(&mut e, block::DEVICE, rows[0].device);
    put_u32(&mut e, block::FIRST_ORDINAL, first_ordinal);
    put_u16(&mut e, block::COUNT, rows.len() as u16);
    e[block::TS_BITS] = ts_bits;
    e[block::SUBJ_BITS] = subj_bits;
    e[block::SEQ_BITS] = seq_bits;
    e[block::KD_BITS] = kd_bits;
    put_u32(&mut e, block::TS_MIN, ts_min);
    put_u32(&mut e, block::TS_MAX, ts_max);
    put_u32(&mut e, block::SUBJ_MIN, subj_min);
    put_u32(&mut e, block::DATA_LEN, block_data.len() as u32);
    put_u64(&mut e, block::SEQ_MIN, seq_min);
    put_u64(&mut e, block::DATA_OFF, data_off);
    put_u32(&mut e, block::CRC, crc32fast::hash(block_data));
    directory.extend_from_slice(&e);
}

/// Bytes of a block's data: four packed columns back to back.
pub fn block_data_len(count: usize, bits: [u8; 4]) -> usize {
    bits.iter().map(|&b| packed_len(count, b)).sum()
}

/// A packed array with its small header: bits and base, then each value minus base.
fn packed_section(values: &[u64]) -> Vec<u8> {
    let base = values.iter().copied().min().unwrap_or(0);
    let bits = bits_needed(values.iter().map(|v| v - base).max().unwrap_or(0));
    let mut out = vec![0u8; PACKED_HEADER];
    out[0] = bits;
    put_u64(&mut out, 8, base);
    pack(values.iter().map(|v| v - base), bits, &mut out);
    out
}
