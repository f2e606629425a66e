//! Work shared with another core ([`in_parts`]): a large answer written in parts by this
//! thread and a thread of rayon's pool (one a core), each part by whichever gets to it
//! first.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// A part's outcome: written, failed, or skipped after another part failed (`None`).
type Part<T> = Option<std::thread::Result<Result<T, String>>>;

struct State<T> {
    /// The next part not yet claimed.
    next: AtomicUsize,
    parts: usize,
    write: Box<dyn Fn(usize) -> Result<T, String> + Send + Sync>,
    /// A part failed: the rest are skipped.
    failed: AtomicBool,
    /// Each part's outcome, and how many are in.
    done: Mutex<(Vec<Part<T>>, usize)>,
    all_in: Condvar,
}

impl<T> State<T> {
    /// Claims and writes parts until none is left (skipping them once one has failed).
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.parts {
                return;
            }
            let out = match self.failed.load(Ordering::Relaxed) {
                true => None,
                false => {
                    let out =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.write)(i)));
                    if !matches!(out, Ok(Ok(_))) {
                        self.failed.store(true, Ordering::Relaxed);
                    }
                    Some(out)
                }
            };
            let mut done = lock(&self.done);
            done.0[i] = out;
            done.1 += 1;
            if done.1 == self.parts {
                self.all_in.notify_all();
            }
        }
    }
}

/// Pool threads offered work by [`in_parts`] and not yet done with it (started or
/// not): counted by [`core_free`] beside the queries running.
static OFFERED: AtomicUsize = AtomicUsize::new(0);

/// `write(0)`, …, `write(parts - 1)`, in order, or the first part's error. This thread
/// writes parts until none is left; a thread of rayon's pool, offered the same work,
/// writes parts too once it starts, so a free core shares the work and a pool slow to
/// start costs nothing but the offer. The wait at the end is at most for a part the
/// pool's thread is writing. After a part fails the rest are skipped. A panic in a
/// part, on either thread, is `Err` naming the part, never a panic of the caller (nor
/// of the pool, which would abort the process). Offer work only when a core is likely
/// free ([`core_free`]). (Rayon's few threads, not tokio's blocking pool: after a
/// burst of concurrent queries that pool holds dozens of idle threads, and a page
/// offered to one was measured 1.17× slower than one written alone.)
pub(crate) fn in_parts<T: Send + 'static>(
    parts: usize,
    write: impl Fn(usize) -> Result<T, String> + Send + Sync + 'static,
) -> Result<Vec<T>, String> {
    let state = Arc::new(State {
        next: AtomicUsize::new(0),
        parts,
        write: Box::new(write),
        failed: AtomicBool::new(false),
        done: Mutex::new(((0..parts).map(|_| None).collect(), 0)),
        all_in: Condvar::new(),
    });
    if parts > 1 {
        // Held weakly: an offer the pool gets to only after the answer is done holds
        // none of it (the events, the segments they are read from).
        let offered = Arc::downgrade(&state);
        OFFERED.fetch_add(1, Ordering::Relaxed);
        rayon::spawn(move || {
            if let Some(state) = offered.upgrade() {
                state.work();
            }
            OFFERED.fetch_sub(1, Ordering::Relaxed);
        });
    }
    state.work();
    let mut done = lock(&state.done);
    while done.1 < parts {
        done = state.all_in.wait(done).unwrap_or_else(|p| p.into_inner());
    }
    let mut out = Vec::with_capacity(parts);
    for (i, part) in std::mem::take(&mut done.0).into_iter().enumerate() {
        match part {
            Some(Ok(Ok(written))) => out.push(written),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(panic)) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                return Err(format!("part {i} of the answer failed: {what}"));
            }
            // Skipped parts come after the one that failed (parts are claimed in order).
            None => return Err(format!("part {i} of the answer was not written")),
        }
    }
    Ok(out)
}

/// Whether a core is likely free for [`in_parts`] to offer work to, with `running`
/// queries on the blocking pool (this one included): they and the pool threads
/// already offered work are fewer than the machine's cores. When every core is busy
/// already, a thread more only adds switches (measured: ~10% fewer pages a second with
/// four clients on two cores when every page was offered).
pub(crate) fn core_free(running: usize) -> bool {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    running + OFFERED.load(Ordering::Relaxed) < cores
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
        let parts = in_parts(1, move |i| Ok((i, std::thread::current().id()))).unwrap();
        assert_eq!(parts, [(0, here)]);
    }

    /// Every part is written once and comes back in order; the pool's thread writes
    /// some (part 0 waits, up to 10 s, for another thread to claim a part).
    #[test]
    fn parts_in_order_written_by_both_threads() {
        for parts in [2, 3, 17, 64] {
            let runs = Arc::new(AtomicUsize::new(0));
            let r = runs.clone();
            let caller = std::thread::current().id();
            let out = in_parts(parts, move |i| {
                r.fetch_add(1, Ordering::SeqCst);
                if i == 0 {
                    let t = std::time::Instant::now();
                    while r.load(Ordering::SeqCst) < 2 && t.elapsed().as_secs() < 10 {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
                Ok((i * 3, std::thread::current().id()))
            })
            .unwrap();
            let values: Vec<usize> = out.iter().map(|(v, _)| *v).collect();
            assert_eq!(values, (0..parts).map(|i| i * 3).collect::<Vec<_>>());
            assert_eq!(runs.load(Ordering::SeqCst), parts);
            assert!(
                out.iter().any(|(_, t)| *t != caller),
                "the pool wrote no part"
            );
        }
        assert_eq!(in_parts(0, |_| Ok(())).unwrap(), []);
    }

    /// The first failing part's error comes back, a panic as an error naming its part
    /// (never a panic of the caller), and the parts after a failure are skipped.
    #[test]
    fn errors_and_panics_come_back_and_stop_the_rest() {
        for bad in [0, 5, 9] {
            let err = in_parts(10, move |i| {
                std::thread::sleep(std::time::Duration::from_micros(100));
                assert_ne!(i, bad, "a damaged page");
                Ok(i)
            })
            .unwrap_err();
            assert!(
                err.contains("a damaged page") && err.contains(&format!("part {bad}")),
                "{err}"
            );
        }
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let err = in_parts(200, move |i| {
            r.fetch_add(1, Ordering::SeqCst);
            match i {
                0 => Err("attributes of event 7 damaged".to_string()),
                i => {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    Ok(i)
                }
            }
        })
        .unwrap_err();
        assert_eq!(err, "attributes of event 7 damaged");
        // Part 0 fails first: at most the part the other thread had begun is written.
        assert!(
            runs.load(Ordering::SeqCst) <= 3,
            "{} parts written",
            runs.load(Ordering::SeqCst)
        );
    }
}
