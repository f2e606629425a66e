//! The city's names: community and GB/T 28181 device codes, plates and face ids, each a
//! pure function of a number, so any part of the model can name the same thing.

/// Device type codes used by the model (digits 11–13 of a GB/T 28181 code).
pub const TYPE_VEHICLE_GATE: &str = "121";
pub const TYPE_FACE_CAMERA: &str = "132";
pub const TYPE_ACCESS_DOOR: &str = "140";

/// Province and city prefixes of plates from elsewhere.
pub(crate) const OTHER_PREFIXES: [&str; 6] = ["沪A", "浙E", "皖A", "苏A", "浙A", "苏B"];

/// Plate characters after the province and city letters: no I or O.
const PLATE_CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

pub fn community_code(c: u32) -> String {
    format!("320508{:04}", c + 1)
}

/// Device `n` of a type in community `c`: admin region 320508, the community as the
/// grassroots unit, industry 01, network 0.
pub fn device_code(c: u32, type_code: &str, n: u32) -> String {
    format!("320508{:02}01{type_code}0{:06}", c % 100, c * 100 + n)
}

/// The face feature id of resident `person` of community `c`.
pub fn face_id(c: u32, person: u32) -> String {
    format!(
        "F{:015x}",
        ((c as u64) << 40 | person as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4
    )
}

/// The plate of resident vehicle `v` of community `c`.
pub fn resident_plate(c: u32, v: u32) -> String {
    plate((c as u64) << 32 | v as u64)
}

/// A Suzhou plate (苏E…) for vehicle `id`, deterministic; one in ten is a new-energy plate.
pub fn plate(id: u64) -> String {
    plate_in("苏E", id)
}

/// A plate with another province and city prefix (`沪A`, `浙E` …).
pub fn plate_in(prefix: &str, id: u64) -> String {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 7;
    let mut s = String::from(prefix);
    if id.is_multiple_of(10) {
        // New-energy plate: D or F then five digits.
        s.push(if x.is_multiple_of(2) { 'D' } else { 'F' });
        for _ in 0..5 {
            x /= 2;
            s.push((b'0' + (x % 10) as u8) as char);
            x /= 10;
        }
        return s;
    }
    for _ in 0..5 {
        s.push(PLATE_CHARS[(x % PLATE_CHARS.len() as u64) as usize] as char);
        x /= PLATE_CHARS.len() as u64;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_look_like_suzhou_plates() {
        for id in 0..100 {
            let p = plate(id);
            assert!(p.starts_with("苏E"));
            assert_eq!(p.chars().count(), if id % 10 == 0 { 8 } else { 7 }, "{p}");
            assert!(!p.contains('I') && !p.contains('O'));
        }
    }
}
