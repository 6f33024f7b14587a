//! `crossdock init` in the lab, against the emulator's metadata service and a real dockerd: the one
//! configuration of deploy/cloud-init/user-data.yaml gives each host the subnet the documented mapping
//! derives from its private IP; a second run writes nothing; other keys of an existing daemon.json
//! survive and the old file is kept as a backup; `--dry-run` changes nothing; a running Docker with
//! another subnet gets a "restart needed" while it has no container, and a refusal (exit 2, file
//! untouched) once it has one. Every daemon.json here is a scratch file: the lab's dockerds keep theirs.
//!
//! Root only (namespaces, dockerd): prints "skipped: needs root" otherwise. `crossdock init` runs inside
//! the lab hosts' namespaces (`ip netns exec`), never in the root namespace.

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::{DockerVersion, LabOptions};
use std::path::Path;
use std::process::Output;

/// The lab's VPC (docs/CONTRACTS.md, lab layout), as its metadata service reports it.
const LAB_VPC: &str = "192.168.0.0/16";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The agent.toml of the fleet user data, pointed at host `index`'s dockerd socket.
fn fleet_config(docker_host: &str) -> crossdock_config::Config {
    let user_data = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cloud-init/user-data.yaml"),
    )
    .unwrap();
    let text =
        crossdock_init::userdata::write_files_content(&user_data, "/etc/crossdock/agent.toml")
            .expect("the user data writes agent.toml");
    let mut cfg = crossdock_config::parse(&text).expect("the user data's agent.toml is valid");
    cfg.docker.host = docker_host.to_string();
    cfg
}

fn init(
    lab: &crossdock_lab::Lab,
    index: usize,
    config: &Path,
    daemon_json: &Path,
    extra: &[&str],
) -> Output {
    let (c, d) = (
        config.display().to_string(),
        daemon_json.display().to_string(),
    );
    let mut argv = vec![CROSSDOCK, "init", "--config", &c, "--daemon-json", &d];
    argv.extend_from_slice(extra);
    lab.exec_unchecked(index, &argv)
        .expect("run crossdock init in a lab host")
}

fn expected_bip(cfg: &crossdock_config::Config, private_ip: &str) -> String {
    let subnet = cfg
        .derived_subnet(private_ip.parse().unwrap(), Some(LAB_VPC.parse().unwrap()))
        .unwrap();
    crossdock_init::daemon_json::bip_for(subnet)
}

fn bip_of(path: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["bip"].as_str().unwrap_or_default().to_string()
}

#[test]
fn init_derives_each_hosts_subnet_and_never_moves_containers() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("init_derives_each_hosts_subnet_and_never_moves_containers");
    let lab = up(LabOptions {
        static_hosts: 1,
        ..options(1, DockerVersion::V20)
    });
    let dir = tempfile::tempdir().unwrap();

    // h2: no Docker at all (a fresh host at boot). A daemon.json with keys of its own.
    let h2 = lab.host(2).clone();
    let cfg2 = fleet_config(&format!("unix://{}/no-docker.sock", dir.path().display()));
    let config2 = dir.path().join("h2.toml");
    std::fs::write(&config2, cfg2.to_toml()).unwrap();
    let json2 = dir.path().join("h2").join("daemon.json");
    std::fs::create_dir(json2.parent().unwrap()).unwrap();
    let users = "{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {\"max-size\": \"10m\"}\n}\n";
    std::fs::write(&json2, users).unwrap();

    let dry = init(&lab, 2, &config2, &json2, &["--dry-run"]);
    assert!(dry.status.success(), "dry run: {}", stderr(&dry));
    assert_eq!(
        std::fs::read_to_string(&json2).unwrap(),
        users,
        "--dry-run changed the file"
    );
    let want2 = expected_bip(&cfg2, &h2.private_ip);
    let printed: serde_json::Value =
        serde_json::from_slice(&dry.stdout).expect("--dry-run prints JSON");
    assert_eq!(printed["bip"], want2.as_str());

    let out = init(&lab, 2, &config2, &json2, &[]);
    assert!(out.status.success(), "init in h2: {}", stderr(&out));
    assert_eq!(bip_of(&json2), want2);
    let written = std::fs::read_to_string(&json2).unwrap();
    assert_eq!(
        written,
        String::from_utf8_lossy(&dry.stdout),
        "the dry run printed another file"
    );
    assert!(
        written.starts_with(
            "{\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {\"max-size\": \"10m\"},"
        ),
        "{written}"
    );
    let backup = dir.path().join("h2").join("daemon.json.crossdock-bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), users);
    assert!(
        stderr(&out).contains("Docker is not running"),
        "{}",
        stderr(&out)
    );

    // Idempotent: the second run writes nothing.
    let mtime = std::fs::metadata(&json2).unwrap().modified().unwrap();
    let again = init(&lab, 2, &config2, &json2, &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("unchanged"), "{}", stderr(&again));
    assert_eq!(
        std::fs::metadata(&json2).unwrap().modified().unwrap(),
        mtime
    );
    assert_eq!(
        std::fs::read_to_string(&backup).unwrap(),
        users,
        "the backup was overwritten"
    );

    // h1: Docker runs with the lab's own subnet, which is not the derived one.
    let h1 = lab.host(1).clone();
    let cfg1 = fleet_config(h1.docker_host.as_deref().expect("h1 has a dockerd"));
    let config1 = dir.path().join("h1.toml");
    std::fs::write(&config1, cfg1.to_toml()).unwrap();
    let json1 = dir.path().join("h1.json");
    let want1 = expected_bip(&cfg1, &h1.private_ip);
    assert_ne!(want1, want2, "two hosts, one subnet");

    let out = init(&lab, 1, &config1, &json1, &[]);
    assert!(
        out.status.success(),
        "init in h1 (no containers): {}",
        stderr(&out)
    );
    assert_eq!(bip_of(&json1), want1);
    assert!(
        stderr(&out).contains(&format!("running with {}", h1.subnet))
            && stderr(&out).contains("restart"),
        "{}",
        stderr(&out)
    );

    // With a container, applying the subnet would move it: refused, nothing written.
    std::fs::remove_file(&json1).unwrap();
    container(&lab, 1, "c1");
    let out = init(&lab, 1, &config1, &json1, &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "init with a container: {}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(&h1.subnet) && err.contains("1 container") && err.contains("fix:"),
        "{err}"
    );
    assert!(!json1.exists(), "a refused init wrote {}", json1.display());
}
