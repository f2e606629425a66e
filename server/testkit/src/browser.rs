//! The investigator console's browser tests: Node.js, Debian's Chromium and
//! `server/console/e2e/` (`playwright-core`) found, and `console.mjs` run with a
//! setup. `sightline serve`'s test (`server/tests/console.rs`) and a cluster query
//! node's (`server/tests/cluster/console.rs`) drive the same script.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Runs the browser script with `setup`; fails with its output and where the
/// screenshots of a failed step are.
pub fn drive(node: &Path, e2e: &Path, setup: &Value, out: &Path) {
    let run = Command::new(node)
        .arg(e2e.join("console.mjs"))
        .arg(setup.to_string())
        .current_dir(e2e)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        run.status.success(),
        "the browser test failed ({:?}); screenshots of the failed step are in {}\n{stdout}\n{stderr}",
        run.status,
        out.display()
    );
}

/// Node, Chromium and the e2e directory with `playwright-core` installed; a missing
/// one fails the test with what to install.
pub fn tools() -> (PathBuf, PathBuf, PathBuf) {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("../console/e2e");
    let chromium = std::env::var_os("SIGHTLINE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let node = std::env::var_os("SIGHTLINE_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"));
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!(
            "Chromium at {} (Debian: `apt-get install -y chromium`, or set SIGHTLINE_CHROMIUM)",
            chromium.display()
        ));
    }
    // playwright-core 1.65 needs Node.js 20 or later.
    let major = Command::new(&node)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
            v.trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
    if major.is_none_or(|m| m < 20) {
        missing.push(format!(
            "Node.js 20 or later (found {major:?}; `apt-get install -y nodejs npm` from a \
             repository with Node 20, e.g. NodeSource, or set SIGHTLINE_NODE)"
        ));
    }
    if !e2e.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "playwright-core: `cd {} && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci`",
            e2e.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the console's browser test needs: {} (.ci/run installs them)",
        missing.join("; ")
    );
    (node, chromium, e2e)
}
