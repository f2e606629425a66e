//! Every helper the areas share: the HTTP client and the server, in-process and as a
//! child process, and polling (from `sightline-testkit`, which the benches' tests use
//! too); the events the tests ingest; a downstream receiver for subscriptions.

mod events;
mod receiver;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use sightline_server::ServerConfig;
pub use sightline_testkit::{call, enc, get, post, send, wait_until, Reply, Running};

pub use events::{ev, sample, GATE, OTHER_GATE, RANGE};
pub use receiver::Receiver;

/// The server in this process on 127.0.0.1, port chosen by the system, over `data`;
/// the vocabulary refreshes every 50 ms (so a test waits little for search), then
/// `tune` changes what it needs.
pub fn start(data: &Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    sightline_testkit::start(data, |config| {
        config.vocabulary_refresh = Duration::from_millis(50);
        tune(config);
    })
}

/// The real binary serving `data` on an ephemeral port (`--no-auth`: open while the
/// store never had keys); its address.
pub fn spawn_server(data: &Path) -> (Child, SocketAddr) {
    sightline_testkit::spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_sightline"))
            .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--data"])
            .arg(data),
    )
}
