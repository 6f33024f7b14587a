//! Helpers for root-gated integration tests that build labs.
//!
//! Lab tests need the `crossdock` binary (it runs the emulator and the agents inside the namespaces).
//! The root package's tests get it from `env!("CARGO_BIN_EXE_crossdock")`; other crates' tests find it
//! here: `CROSSDOCK_BIN`, else the `crossdock` next to the test binary's `deps/` directory (what
//! `cargo build` / `scripts/test` produce).

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The `crossdock` binary for lab tests.
pub fn crossdock_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CROSSDOCK_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("CROSSDOCK_BIN={} does not exist", p.display());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test>-<hash>  ->  target/<profile>/crossdock
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("crossdock"));
    match candidate {
        Some(p) if p.is_file() => Ok(p),
        _ => bail!(
            "the crossdock binary was not found next to {} (build it first: cargo build --bin crossdock, or run scripts/test; or set CROSSDOCK_BIN)",
            exe.display()
        ),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A short lab name unique to this test process: `t<pid>-<n>` (netns and paths stay short).
pub fn unique_lab_name() -> String {
    format!(
        "t{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Whether root-gated tests can run; reports the skip ([`skip`]) otherwise.
pub fn root_or_skip() -> bool {
    if crate::is_root() {
        true
    } else {
        skip("needs root");
        false
    }
}

/// The one marker every skipped test prints; `scripts/test` fails the run when it finds it.
pub const SKIP_MARKER: &str = "CROSSDOCK-TEST-SKIPPED";

/// Reports that the calling test is skipped, and why: one line `CROSSDOCK-TEST-SKIPPED <test>:
/// <reason>` written straight to the process's stderr, past the test harness's output capture (which
/// would swallow an `eprintln!` of a passing test), so `scripts/test` sees every skip whatever the
/// reason. The test then returns early; it must not be counted as run in CI.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "{SKIP_MARKER} {test}: {reason}");
}
