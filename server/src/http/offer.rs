//! Work shared with another core ([`in_parts`]): a large answer written in parts by this
//! thread and a thread of rayon's pool (one a core), each part by whichever gets to it
//! first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

type Part<T> = Option<std::thread::Result<T>>;

struct State<T> {
    /// The next part not yet claimed.
    next: AtomicUsize,
    parts: usize,
    write: Box<dyn Fn(usize) -> T + Send + Sync>,
    /// Each part's result, and how many are in.
    done: Mutex<(Vec<Part<T>>, usize)>,
    all_in: Condvar,
}

impl<T> State<T> {
    /// Claims and writes parts until none is left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.parts {
                return;
            }
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.write)(i)));
            let mut done = lock(&self.done);
            done.0[i] = Some(out);
            done.1 += 1;
            if done.1 == self.parts {
                self.all_in.notify_all();
            }
        }
    }
}

/// `write(0)`, …, `write(parts - 1)`, in order. This thread writes parts until none
/// is left; a thread of rayon's pool, offered the same work, writes parts too once it
/// starts, so a free core shares the work and a pool slow to start costs nothing but
/// the offer. The wait at the end is at most for a part the pool's thread is writing.
/// A panic in a part, on either thread, is `Err` naming it, never a panic of the
/// caller (nor of the pool, which would abort the process). Offer work only when a
/// core is likely free ([`core_free`]). (Rayon's few threads, not tokio's blocking
/// pool: after a burst of concurrent queries that pool holds dozens of idle threads,
/// and a page offered to one was measured 1.17× slower than one written alone.)
pub(crate) fn in_parts<T: Send + 'static>(
    parts: usize,
    write: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Result<Vec<T>, String> {
    let state = Arc::new(State {
        next: AtomicUsize::new(0),
        parts,
        write: Box::new(write),
        done: Mutex::new(((0..parts).map(|_| None).collect(), 0)),
        all_in: Condvar::new(),
    });
    if parts > 1 {
        let state = state.clone();
        rayon::spawn(move || state.work());
    }
    state.work();
    let mut done = lock(&state.done);
    while done.1 < parts {
        done = state.all_in.wait(done).unwrap_or_else(|p| p.into_inner());
    }
    std::mem::take(&mut done.0)
        .into_iter()
        .map(|part| match part {
            Some(Ok(out)) => Ok(out),
            Some(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                Err(format!("a part of the answer failed: {what}"))
            }
            None => Err("a part of the answer was never written".into()),
        })
        .collect()
}

/// Whether a core is likely free for [`in_parts`] to offer work to, with `running`
/// queries on the blocking pool (this one included): fewer than the machine's cores.
/// When every core is busy with queries already, a thread more only adds switches
/// (measured: ~10% fewer pages a second with four clients on two cores).
pub(crate) fn core_free(running: usize) -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    running < *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A lock that a panic elsewhere has not made unusable (the parts' results are each
/// set whole).
fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One part is written by this thread, offered to no other.
    #[test]
    fn one_part_is_written_here() {
        let here = std::thread::current().id();
        let parts = in_parts(1, move |i| (i, std::thread::current().id())).unwrap();
        assert_eq!(parts, [(0, here)]);
    }

    /// Every part is written once, by either thread, and comes back in order; a panic
    /// in any part comes back as an error naming it, never as a panic of the caller.
    #[test]
    fn parts_in_order_and_panics_as_errors_from_either_thread() {
        for parts in [0, 1, 2, 3, 17, 64] {
            let runs = Arc::new(AtomicUsize::new(0));
            let r = runs.clone();
            let out = in_parts(parts, move |i| {
                r.fetch_add(1, Ordering::SeqCst);
                // Slow enough for the pool's thread to join in.
                std::thread::sleep(std::time::Duration::from_micros(100));
                i * 3
            })
            .unwrap();
            assert_eq!(out, (0..parts).map(|i| i * 3).collect::<Vec<_>>());
            assert_eq!(runs.load(Ordering::SeqCst), parts);
        }
        for bad in [0, 5, 9] {
            let err = in_parts(10, move |i| {
                std::thread::sleep(std::time::Duration::from_micros(100));
                assert_ne!(i, bad, "a damaged page");
                i
            })
            .unwrap_err();
            assert!(err.contains("a damaged page"), "{err}");
        }
    }
}
