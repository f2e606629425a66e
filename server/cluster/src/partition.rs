//! Where an event goes: its community's partition, the log subject, the cluster id.
//!
//! partition = FNV-1a 64 of the community code's UTF-8 bytes, mod P. FNV-1a because it
//! is five lines, stable across versions and platforms (unlike `std`'s hasher), and
//! spreads short digit strings well enough for P ≤ a few thousand; P is fixed when the
//! cluster is created (kept in PostgreSQL, `meta::Meta::partitions`).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition of `community` among `partitions`.
pub fn partition_of(community: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a cluster has at least one partition");
    (fnv1a64(community.as_bytes()) % u64::from(partitions)) as u32
}

/// The log subject of an event: `ev.<partition>.<community token>`. A community code
/// made only of `[A-Za-z0-9_-]` is its own token; any other is `x` and its UTF-8
/// bytes in hex (a subject token may hold no `.`, `*`, `>` or white space).
pub fn subject(partition: u32, community: &str) -> String {
    let plain = !community.is_empty()
        && community
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("ev.{partition}.{community}")
    } else {
        let hex: String = community.bytes().map(|b| format!("{b:02x}")).collect();
        format!("ev.{partition}.x{hex}")
    }
}

/// The subjects of one partition, for a consumer's filter.
pub fn partition_filter(partition: u32) -> String {
    format!("ev.{partition}.>")
}

/// Bits of a cluster event id that hold the partition's local sequence number.
pub const LOCAL_SEQ_BITS: u32 = 48;

/// A cluster event id: `partition << 48 | local seq` (the sequence number the
/// partition's store gave it; a restored store keeps its segments' numbers, so an id
/// never changes owner to owner). 2^48 events per partition, 2^16 partitions.
pub fn event_id(partition: u32, local_seq: u64) -> u64 {
    assert!(
        local_seq < 1 << LOCAL_SEQ_BITS,
        "local sequence past 48 bits"
    );
    (u64::from(partition) << LOCAL_SEQ_BITS) | local_seq
}

/// The partition and local sequence number of a cluster event id.
pub fn split_event_id(id: u64) -> (u32, u64) {
    (
        (id >> LOCAL_SEQ_BITS) as u32,
        id & ((1 << LOCAL_SEQ_BITS) - 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(
            partition_of("3205080001", 64),
            partition_of("3205080001", 64)
        );
        for i in 0..1000 {
            assert!(partition_of(&format!("32050800{i:02}"), 4) < 4);
        }
    }

    #[test]
    fn subjects_are_valid_tokens() {
        assert_eq!(subject(3, "3205080001"), "ev.3.3205080001");
        assert_eq!(subject(3, "a.b"), "ev.3.x612e62");
        assert_eq!(subject(0, "苏"), "ev.0.xe88b8f");
    }

    #[test]
    fn event_ids_round_trip() {
        let id = event_id(63, 123_456);
        assert_eq!(split_event_id(id), (63, 123_456));
        assert_eq!(event_id(0, 7), 7);
    }
}
