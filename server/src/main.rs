//! `sightline`: the server binary. Until the HTTP issue lands it only says so.

fn main() {
    eprintln!(
        "sightline: the HTTP server is not built yet; see README.md (run the storage example)"
    );
    std::process::exit(2);
}
