//! Asking the CPU to start loading memory a reader is about to need. A heavy subject's
//! page reads one event's attributes from each of hundreds of places (a chunk in each
//! of ~200 segments); read in turn, each waits for its own cache misses. Asked for a
//! few events ahead, the misses overlap the work on the events before them.
//!
//! A prefetch is a hint: it reads nothing a caller sees, cannot fault on any address,
//! and no result depends on it.

/// Bytes of an attribute chunk asked for ahead of its read (a chunk of 128 events'
/// attributes is ~1 KiB on the `sightline demo` month).
pub(crate) const CHUNK_BYTES: usize = 2048;

const LINE: usize = 64;

/// Asks for the cache line holding `bytes[at]`, if `at` is inside `bytes`.
#[inline(always)]
pub(crate) fn line(bytes: &[u8], at: usize) {
    if let Some(b) = bytes.get(at) {
        hint_ptr(b);
    }
}

/// Asks for the lines of `bytes[start..end]` (at most [`CHUNK_BYTES`] of it), clamped
/// to `bytes`.
#[inline]
pub(crate) fn lines(bytes: &[u8], start: usize, end: usize) {
    if let Some(from) = bytes.get(start..end.min(bytes.len())) {
        span(from.as_ptr(), from.len());
    }
}

/// Asks for the lines of the value at `r` (at most [`CHUNK_BYTES`] of it).
#[inline]
pub(crate) fn value<T>(r: &T) {
    span(r as *const T as *const u8, std::mem::size_of::<T>());
}

/// Asks for the lines of `values` (at most [`CHUNK_BYTES`] of them).
#[inline]
pub(crate) fn slice<T>(values: &[T]) {
    span(values.as_ptr() as *const u8, std::mem::size_of_val(values));
}

/// Asks for the lines of the `len` bytes from `start` (at most [`CHUNK_BYTES`]):
/// addresses only, never read through, so no reference to the bytes is made.
#[inline]
fn span(start: *const u8, len: usize) {
    // From the start of its line, so a span across a line's end asks for both.
    let skew = start as usize % LINE;
    let first = start.wrapping_sub(skew);
    let mut at = 0;
    while at < len.min(CHUNK_BYTES) + skew {
        hint_ptr(first.wrapping_add(at));
        at += LINE;
    }
}

#[inline(always)]
fn hint_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and does not fault, whatever
    // the address (callers pass addresses in or just past live values).
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any range, inside, past or across the end, is asked for without a panic.
    #[test]
    fn ranges_past_the_end_are_clamped() {
        let bytes = vec![7u8; 300];
        for (start, end) in [
            (0, 300),
            (5, 9),
            (250, 10_000),
            (300, 400),
            (usize::MAX - 1, usize::MAX),
            (9, 3),
        ] {
            lines(&bytes, start, end);
        }
        value(&bytes);
        slice(&bytes);
        slice::<u64>(&[]);
        line(&bytes, 299);
        line(&bytes, 300);
        line(&[], 0);
    }
}
