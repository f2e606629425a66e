//! The server in this process, on its own runtime thread.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sightline_server::tls::ServerTls;
use sightline_server::{ServeError, Server, ServerConfig};
use sightline_storage::StorageError;

/// How long `start` waits for a store whose `LOCK` is still taken. A store a test has
/// just stopped can stay locked for a moment after: a child process that another test
/// of the same binary is spawning inherits the lock's file descriptor at its fork and
/// holds it until it execs.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// A server on 127.0.0.1 with an ephemeral port; stops (and waits for its in-flight
/// requests) when stopped or dropped.
pub struct Running {
    pub addr: SocketAddr,
    /// The listener's TLS when the configuration gave it (`tls.reload()` does what
    /// SIGHUP does).
    pub tls: Option<std::sync::Arc<ServerTls>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Serves `data` with the default configuration as `tune` changes it (waiting up to
/// 5 s for the store's lock, see `LOCK_WAIT`). With `no_auth` (loopback): a store that
/// never had keys is open to the test; one that has keys checks them as ever.
pub fn start(data: &Path, tune: impl FnOnce(&mut ServerConfig)) -> Running {
    let mut config = ServerConfig::new(data, "127.0.0.1:0".parse().unwrap());
    config.no_auth = true;
    tune(&mut config);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let deadline = Instant::now() + LOCK_WAIT;
            let server = loop {
                match Server::bind(config.clone()).await {
                    Err(e) if lock_taken(&e) && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(10)).await
                    }
                    bound => break bound.unwrap(),
                }
            };
            addr_tx.send((server.local_addr(), server.tls())).unwrap();
            server
                .run(async {
                    let _ = rx.await;
                })
                .await;
        });
    });
    let (addr, tls) = addr_rx.recv().expect("server started");
    Running {
        addr,
        tls,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Running {
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether opening the store failed only because its `LOCK` is taken.
fn lock_taken(e: &ServeError) -> bool {
    matches!(
        e,
        ServeError::Storage(StorageError::Io { source, .. }) if source.kind() == ErrorKind::WouldBlock
    )
}
