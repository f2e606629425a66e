//! Work shared with another core ([`in_parts_fed`]): a large answer written in parts by
//! this thread and a thread of rayon's pool (one a core), each part by whichever gets to
//! it first, the pool's thread starting on the first parts while this thread still
//! makes the rest. (Rayon's few threads, not tokio's blocking pool: after a burst of
//! concurrent queries that pool holds dozens of idle threads, and a page offered to
//! one was measured 1.17× slower than one written alone.)

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The parts written, in order, or the first part's error.
pub(crate) type Written<T> = Result<Vec<T>, String>;

/// A part's outcome: written, failed, or skipped after another part failed (`None`).
type Part<T> = Option<std::thread::Result<Result<T, String>>>;

/// Pool threads offered work by [`in_parts_fed`] and not yet done with it (started or
/// not): counted by [`core_free`] beside the queries running.
static OFFERED: AtomicUsize = AtomicUsize::new(0);

/// Work fed to [`in_parts_fed`] as it is made: inputs, each written as the part of
/// its place, by this thread or a thread of rayon's pool.
pub(crate) struct Feed<I, T> {
    state: Arc<Fed<I, T>>,
    /// The pool was offered the work (at the first input).
    offered: bool,
}

struct Fed<I, T> {
    /// Inputs fed so far (each taken by the thread that writes its part), and whether
    /// the feed is closed: no input comes after those there.
    inputs: Mutex<(Vec<Option<I>>, bool)>,
    fed: Condvar,
    /// The next part not yet claimed.
    next: AtomicUsize,
    write: Box<dyn Fn(usize, I) -> Result<T, String> + Send + Sync>,
    /// A part failed, or the feed was closed unfinished: the rest are skipped.
    failed: AtomicBool,
    /// Each part's outcome (by place), and how many are in.
    done: Mutex<(Vec<Part<T>>, usize)>,
    all_in: Condvar,
}

impl<I, T> Fed<I, T> {
    /// Claims and writes parts until the feed is closed and none is left, waiting for
    /// the input of a part claimed before it is fed.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let input = {
                let mut inputs = lock(&self.inputs);
                loop {
                    if let Some(slot) = inputs.0.get_mut(i) {
                        break slot.take();
                    }
                    if inputs.1 {
                        return;
                    }
                    inputs = self.fed.wait(inputs).unwrap_or_else(|p| p.into_inner());
                }
            };
            let out = match (input, self.failed.load(Ordering::Relaxed)) {
                (Some(input), false) => {
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        (self.write)(i, input)
                    }));
                    if !matches!(out, Ok(Ok(_))) {
                        self.failed.store(true, Ordering::Relaxed);
                    }
                    Some(out)
                }
                _ => None,
            };
            let mut done = lock(&self.done);
            if done.0.len() <= i {
                done.0.resize_with(i + 1, || None);
            }
            done.0[i] = out;
            done.1 += 1;
            self.all_in.notify_all();
        }
    }

    /// No input comes after those fed; `failed` when the feed stops unfinished.
    fn close(&self, failed: bool) {
        if failed {
            self.failed.store(true, Ordering::Relaxed);
        }
        lock(&self.inputs).1 = true;
        self.fed.notify_all();
    }
}

impl<I: Send + 'static, T: Send + 'static> Feed<I, T> {
    /// Feeds the next part's input: the first offers the work to rayon's pool, whose
    /// thread writes parts as their inputs come while this thread makes the rest.
    pub(crate) fn push(&mut self, input: I) {
        lock(&self.state.inputs).0.push(Some(input));
        self.state.fed.notify_all();
        if !self.offered {
            self.offered = true;
            // Held weakly: an offer the pool gets to only after the answer is done
            // holds none of it (the events, the segments they are read from).
            let offered = Arc::downgrade(&self.state);
            OFFERED.fetch_add(1, Ordering::Relaxed);
            rayon::spawn(move || {
                if let Some(state) = offered.upgrade() {
                    state.work();
                }
                OFFERED.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }

    /// Whether any input was fed.
    pub(crate) fn fed(&self) -> bool {
        self.offered
    }
}

/// Closes the feed whatever happens to `make`, a panic included: a pool thread
/// waiting for an input never waits for one that will not come.
struct Closing<'a, I, T>(&'a Fed<I, T>, bool);

impl<I, T> Drop for Closing<'_, I, T> {
    fn drop(&mut self) {
        self.0.close(!self.1);
    }
}

/// `make` run on this thread, handed a [`Feed`]: each input it feeds is written as the
/// next part by `write(place, input)` while it goes on, by a thread of rayon's pool
/// (offered the work at the first input); once `make` is done, this thread writes
/// what is left, then the parts come back in order — or the first part's error, a
/// panic as an error naming its part, never a panic of the caller nor of the pool,
/// which would abort the process (`None` when `make`
/// fed nothing: nothing more was done). When `make` fails (or panics), the parts not
/// yet begun are skipped and its error comes back at once. Feed only when a core is
/// likely free ([`core_free`]).
pub(crate) fn in_parts_fed<I, T, R, E>(
    make: impl FnOnce(&mut Feed<I, T>) -> Result<R, E>,
    write: impl Fn(usize, I) -> Result<T, String> + Send + Sync + 'static,
) -> Result<(R, Option<Written<T>>), E>
where
    I: Send + 'static,
    T: Send + 'static,
{
    let mut feed = Feed {
        state: Arc::new(Fed {
            inputs: Mutex::new((Vec::new(), false)),
            fed: Condvar::new(),
            next: AtomicUsize::new(0),
            write: Box::new(write),
            failed: AtomicBool::new(false),
            done: Mutex::new((Vec::new(), 0)),
            all_in: Condvar::new(),
        }),
        offered: false,
    };
    let state = feed.state.clone();
    let mut closing = Closing(&state, false);
    let made = make(&mut feed)?;
    closing.1 = true;
    drop(closing);
    if !feed.fed() {
        return Ok((made, None));
    }
    state.work();
    let parts = lock(&state.inputs).0.len();
    let mut done = lock(&state.done);
    while done.1 < parts {
        done = state.all_in.wait(done).unwrap_or_else(|p| p.into_inner());
    }
    let results = std::mem::take(&mut done.0);
    drop(done);
    Ok((made, Some(collect(results))))
}

/// Parts' outcomes in order: their values, or the first part's error (a panic as an
/// error naming its part).
fn collect<T>(parts: Vec<Part<T>>) -> Written<T> {
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.into_iter().enumerate() {
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

/// Whether a core is likely free for [`in_parts_fed`] to offer work to, with `running`
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

    /// A part as the tests write it: its value and the thread that wrote it.
    type Tagged = (usize, std::thread::ThreadId);

    /// Waits (up to 10 s) until `flag` is set.
    fn wait_for(flag: &AtomicBool) {
        let t = std::time::Instant::now();
        while !flag.load(Ordering::SeqCst) && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    /// `make` feeding `parts` inputs (`i * 3` for part `i`), waiting after the first
    /// until the pool's thread has written a part (up to 10 s), and `pause` after
    /// each; the parts written as `(value, thread)`.
    fn fed(parts: usize, pause: std::time::Duration) -> (usize, Option<Written<Tagged>>) {
        let maker = std::thread::current().id();
        let pool_wrote = Arc::new(AtomicBool::new(false));
        let wrote = pool_wrote.clone();
        in_parts_fed(
            |feed| {
                for i in 0..parts {
                    feed.push(i * 3);
                    if i == 0 {
                        wait_for(&pool_wrote);
                    }
                    std::thread::sleep(pause);
                }
                Ok::<_, String>(parts)
            },
            move |_, v| {
                let at = std::thread::current().id();
                if at != maker {
                    wrote.store(true, Ordering::SeqCst);
                }
                Ok((v, at))
            },
        )
        .unwrap()
    }

    /// A `make` that feeds nothing writes nothing, offers nothing, and returns its value.
    #[test]
    fn nothing_fed_is_nothing_written() {
        let (made, parts) = fed(0, std::time::Duration::ZERO);
        assert_eq!(made, 0);
        assert!(parts.is_none());
    }

    /// Every part is written once and comes back in order, whatever its place; the
    /// pool's thread writes parts while `make` still feeds (it waits for the pool's
    /// first part, then pauses after each).
    #[test]
    fn parts_in_order_the_pool_writing_while_fed() {
        let here = std::thread::current().id();
        for parts in [1, 2, 3, 17, 64] {
            let (made, out) = fed(parts, std::time::Duration::from_millis(2));
            let out = out.expect("fed").unwrap();
            assert_eq!(made, parts);
            let values: Vec<usize> = out.iter().map(|(v, _)| *v).collect();
            assert_eq!(values, (0..parts).map(|i| i * 3).collect::<Vec<_>>());
            assert!(
                out.iter().any(|(_, t)| *t != here),
                "the pool wrote no part"
            );
        }
    }

    /// The first failing part's error comes back, a panic as an error naming its part
    /// (never a panic of the caller), and the parts after a failure are skipped.
    #[test]
    fn errors_and_panics_come_back_and_stop_the_rest() {
        for bad in [0, 5, 9] {
            let (_, out) = in_parts_fed(
                |feed| {
                    (0..10).for_each(|i| feed.push(i));
                    Ok::<_, String>(())
                },
                move |i, v| {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    assert_ne!(i, bad, "a damaged page");
                    Ok(v)
                },
            )
            .unwrap();
            let err = out.expect("fed").unwrap_err();
            assert!(
                err.contains("a damaged page") && err.contains(&format!("part {bad}")),
                "{err}"
            );
        }
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let (_, out) = in_parts_fed(
            |feed| {
                (0..200).for_each(|i| feed.push(i));
                Ok::<_, String>(())
            },
            move |i, v| {
                r.fetch_add(1, Ordering::SeqCst);
                match i {
                    0 => Err("attributes of event 7 damaged".to_string()),
                    _ => {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        Ok(v)
                    }
                }
            },
        )
        .unwrap();
        assert_eq!(
            out.expect("fed").unwrap_err(),
            "attributes of event 7 damaged"
        );
        // Part 0 fails first: at most the part the other thread had begun is written.
        let written = runs.load(Ordering::SeqCst);
        assert!(written <= 3, "{written} parts written");
    }

    /// A `make` that fails, or panics, after feeding parts: its error (its panic)
    /// comes back at once, and the pool's thread, waiting for a part that will not be
    /// fed, stops (the feed is closed) instead of waiting for ever.
    #[test]
    fn a_failing_or_panicking_make_closes_the_feed() {
        let writes = Arc::new(AtomicUsize::new(0));
        let w = writes.clone();
        let out = in_parts_fed(
            |feed| {
                feed.push(1);
                std::thread::sleep(std::time::Duration::from_millis(20));
                Err::<(), _>("the merge failed")
            },
            move |_, v: usize| {
                w.fetch_add(1, Ordering::SeqCst);
                Ok(v)
            },
        );
        assert_eq!(out.unwrap_err(), "the merge failed");
        // The pool's thread has written the first part and waits for the second
        // when the merge panics.
        let pool_wrote = Arc::new(AtomicBool::new(false));
        let wrote = pool_wrote.clone();
        let maker = std::thread::current().id();
        let panicked = std::panic::catch_unwind(|| {
            in_parts_fed(
                |feed| {
                    feed.push(1);
                    wait_for(&pool_wrote);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    panic!("a bug in the merge");
                    #[allow(unreachable_code)]
                    Ok::<(), String>(())
                },
                move |_, v: usize| {
                    if std::thread::current().id() != maker {
                        wrote.store(true, Ordering::SeqCst);
                    }
                    Ok(v)
                },
            )
        });
        assert!(pool_wrote.load(Ordering::SeqCst), "the pool wrote no part");
        assert!(panicked.is_err());
        // Both offers end: no pool thread is left waiting for a part (counted in
        // OFFERED until it returns).
        let t = std::time::Instant::now();
        while OFFERED.load(Ordering::SeqCst) > 0 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            OFFERED.load(Ordering::SeqCst),
            0,
            "a pool thread still waits"
        );
        assert!(writes.load(Ordering::SeqCst) <= 1);
    }
}
