//! What the integration tests of the server (`server/tests/http/`) and of the benches
//! (`benches/tests/`) share: a plain HTTP/1.1 client on fresh connections, the server
//! in-process on its own runtime thread or as a child process, polling until a
//! condition holds, the console's browser test driver, and a GA/T 1400 camera's
//! requests (`gat1400`).
//!
//! Dev-only: no crate depends on it but for its tests. It knows no binary path: a test
//! hands [`spawn_listening`] the command to run (the server's tests name their binary
//! with `env!("CARGO_BIN_EXE_sightline")`, which only they can).

pub mod browser;
mod client;
pub mod cluster;
pub mod gat1400;
pub mod pki;
pub mod platform;
mod process;
mod server;
mod wait;

pub use client::{call, enc, fetch, get, header, post, send, Answer, Reply};
pub use process::spawn_listening;
pub use server::{start, Running};
pub use wait::wait_until;
