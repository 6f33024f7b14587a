//! The command line's answers to common mistakes, through the real binary and without root: each one
//! names the thing and the fix, and bad input exits with status 2.
//!
//! - `crossdock status` with no agent points at the unit, `crossdock-agent`;
//! - `crossdock agent --check-config` prints the effective configuration only for a file it accepts
//!   (a refusal prints the error alone, so it cannot pass for success when skimmed or piped);
//! - `crossdock lab status` for a lab that does not exist is bad input.
//!
//! (`crossdock lab list` with no lab, and `crossdock doctor` with `provider = "none"`, are pinned by
//! unit tests in crossdock-lab and crossdock-doctor: the suite runs labs in parallel, and doctor
//! reads the host it runs on.)

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_crossdock");

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .env_remove("CROSSDOCK_CONFIG")
        .env_remove("CROSSDOCK_SOCKET")
        .output()
        .expect("the crossdock binary runs");
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn status_without_an_agent_points_at_the_agent_unit() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let (code, stdout, stderr) = run(&["status", "--socket", socket.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("`systemctl status crossdock-agent`"),
        "{stderr}"
    );
}

#[test]
fn check_config_prints_the_configuration_only_when_it_accepts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    let path = file.to_str().unwrap();
    // Static-subnet mode: Docker is not consulted, so the verdict does not depend on this machine's.
    let base = "cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nstatic_subnet = \"10.9.0.0/24\"\n";

    // 192.0.2.0/24 is TEST-NET-1: no machine holds it.
    std::fs::write(
        &file,
        format!("{base}[metrics]\nlisten = \"192.0.2.77:9464\"\nscrapers = [\"192.0.2.0/24\"]\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["agent", "--check-config", "-c", path]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stdout, "", "the refused file's configuration was printed");
    assert!(
        stderr.contains("metrics.listen: 192.0.2.77 is not an address of this host"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    // Refused by the parser: the same, only the error.
    std::fs::write(
        &file,
        format!("{base}[metrics]\nlisten = \"0.0.0.0:9464\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["agent", "--check-config", "-c", path]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "{stderr}");
    assert!(stderr.contains("metrics.listen"), "{stderr}");

    // Accepted: the effective configuration on stdout, the verdict on stderr.
    std::fs::write(
        &file,
        format!("{base}[metrics]\nlisten = \"127.0.0.1:9464\"\n"),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["agent", "--check-config", "-c", path]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("[metrics]\nlisten = \"127.0.0.1:9464\"\nscrapers = []"),
        "{stdout}"
    );
    assert!(stderr.contains("valid"), "{stderr}");
}

#[test]
fn lab_status_of_a_lab_that_does_not_exist_is_bad_input() {
    let (code, stdout, stderr) = run(&["lab", "status", "--name", "no-such-lab-cli"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("lab no-such-lab-cli does not exist"),
        "{stderr}"
    );
}
