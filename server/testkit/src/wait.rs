//! Polling until something holds, with a deadline.

use std::time::{Duration, Instant};

/// How long to pause between two looks.
const PAUSE: Duration = Duration::from_millis(10);

/// Asks `holds` until it answers true or `timeout` has passed, pausing 10 ms between
/// two questions; whether it held. Asked at least once.
pub fn wait_until(timeout: Duration, mut holds: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if holds() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(PAUSE);
    }
}
