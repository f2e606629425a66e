//! A server in a child process (the binary, or a test binary run again as a server).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

/// Runs `command` with its stdout piped and its stderr discarded, and reads its stdout
/// up to the line saying `listening on http://ADDR` (or `https://ADDR`), after whatever
/// else is on that line (libtest may have written `test NAME ... ` first); the child
/// and ADDR.
pub fn spawn_listening(command: &mut Command) -> (Child, SocketAddr) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some((_, addr)) = line.trim().split_once("listening on http") {
            let addr = addr.trim_start_matches('s').trim_start_matches("://");
            return (child, addr.parse().unwrap());
        }
        line.clear();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    panic!("the server did not start: {command:?}");
}
