//! End to end: broken configuration is refused before anything is touched.
//!
//! A table of broken configurations (bad CIDRs among them), each one field away from the valid file the
//! lab wrote for a real host. `crossdock agent --check-config` and `crossdock agent` itself, run inside
//! that host's namespace (with its dockerd, the emulated metadata service and API reachable), must both
//! exit with status 2 and a message naming the field — and leave no trace: the host's `iptables-save`
//! and sysctls unchanged, no API call in the emulator's call log, no health socket.
//!
//! The table is also checked against the configuration parser without root, so it stays meaningful
//! (every case really is invalid, for the field it names) even where the lab cannot run.

mod common;

use common::*;
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::DockerVersion;
use std::path::Path;

/// A running agent that should have refused its file is stopped after this long (and the case fails).
const AGENT_TIMEOUT_SECS: u64 = 20;

enum Edit {
    /// Set a dotted key to a TOML value (written as TOML).
    Set(&'static str, &'static str),
    /// Remove a top-level key.
    Remove(&'static str),
    /// Replace the whole file.
    Raw(&'static str),
}

/// (what is broken, the edit, the field the message must name)
const CASES: &[(&str, Edit, &str)] = &[
    (
        "prefix longer than 32",
        Edit::Set("cluster_cidrs", r#"["10.0.0.0/33"]"#),
        "cluster_cidrs",
    ),
    (
        "host bits set",
        Edit::Set("cluster_cidrs", r#"["10.0.0.1/8"]"#),
        "cluster_cidrs",
    ),
    (
        "not a CIDR",
        Edit::Set("cluster_cidrs", r#"["ten-dot-zero"]"#),
        "cluster_cidrs",
    ),
    (
        "octet out of range",
        Edit::Set("cluster_cidrs", r#"["300.0.0.0/8"]"#),
        "cluster_cidrs",
    ),
    (
        "IPv6 range",
        Edit::Set("cluster_cidrs", r#"["fd00::/8"]"#),
        "cluster_cidrs",
    ),
    (
        "empty cluster range",
        Edit::Set("cluster_cidrs", "[]"),
        "cluster_cidrs",
    ),
    (
        "overlapping ranges",
        Edit::Set("cluster_cidrs", r#"["10.0.0.0/8", "10.1.0.0/16"]"#),
        "cluster_cidrs",
    ),
    (
        "cluster range missing",
        Edit::Remove("cluster_cidrs"),
        "cluster_cidrs",
    ),
    (
        "cluster range a string",
        Edit::Set("cluster_cidrs", r#""10.0.0.0/8""#),
        "cluster_cidrs",
    ),
    (
        "static subnet outside the cluster",
        Edit::Set("docker.static_subnet", r#""172.16.0.0/24""#),
        "docker.static_subnet",
    ),
    (
        "static subnet not a CIDR",
        Edit::Set("docker.static_subnet", r#""10.0.0.0/24/8""#),
        "docker.static_subnet",
    ),
    (
        "Docker over TCP",
        Edit::Set("docker.host", r#""tcp://127.0.0.1:2375""#),
        "docker.host",
    ),
    (
        "zero resync",
        Edit::Set("resync_interval_secs", "0"),
        "resync_interval_secs",
    ),
    (
        "resync as a string",
        Edit::Set("resync_interval_secs", r#""30""#),
        "resync_interval_secs",
    ),
    (
        "relative health socket",
        Edit::Set("health_socket", r#""agent.sock""#),
        "health_socket",
    ),
    (
        "bad interface name",
        Edit::Set("external_interface", r#""eth0/1""#),
        "external_interface",
    ),
    (
        "bad log filter",
        Edit::Set("log_level", r#""info,crossdock=loud""#),
        "log_level",
    ),
    (
        "bad log format",
        Edit::Set("log_format", r#""xml""#),
        "log_format",
    ),
    (
        "zero lock wait",
        Edit::Set("firewall.lock_wait_secs", "0"),
        "firewall.lock_wait_secs",
    ),
    (
        "unknown provider",
        Edit::Set("cloud.provider", r#""aws""#),
        "cloud.provider",
    ),
    (
        "unknown check mode",
        Edit::Set("cloud.source_dest_check", r#""maybe""#),
        "cloud.source_dest_check",
    ),
    (
        "bad private IP",
        Edit::Set("cloud.private_ip", r#""192.168.1""#),
        "cloud.private_ip",
    ),
    (
        "metadata not http",
        Edit::Set("cloud.metadata_url", r#""ftp://100.100.100.200""#),
        "cloud.metadata_url",
    ),
    (
        "endpoint not a URL",
        Edit::Set("cloud.vpc_endpoint", r#""vpc.example""#),
        "cloud.vpc_endpoint",
    ),
    (
        "AccessKey id without secret",
        Edit::Set("cloud.access_key_id", r#""LTAIonlytheid""#),
        "cloud.access_key_secret",
    ),
    (
        "bad route table id",
        Edit::Set("cloud.route_table_ids", r#"["vtb 1"]"#),
        "cloud.route_table_ids",
    ),
    (
        "empty route name",
        Edit::Set("cloud.route_name", r#""""#),
        "cloud.route_name",
    ),
    (
        "zero cloud resync",
        Edit::Set("cloud.resync_interval_secs", "0"),
        "cloud.resync_interval_secs",
    ),
    (
        "misspelt key",
        Edit::Set("clustr_cidrs", r#"["10.0.0.0/8"]"#),
        "clustr_cidrs",
    ),
    (
        "misspelt section key",
        Edit::Set("cloud.region", r#""cn-hangzhou""#),
        "cloud.region",
    ),
    (
        "malformed TOML",
        Edit::Raw("cluster_cidrs = [\"10.0.0.0/8\"\n[docker\n"),
        "line",
    ),
];

/// The valid file with one edit applied.
fn broken(base: &str, edit: &Edit) -> String {
    let mut table: toml::Table = toml::from_str(base).expect("the base file is TOML");
    match edit {
        Edit::Raw(text) => return text.to_string(),
        Edit::Remove(key) => {
            table.remove(*key);
        }
        Edit::Set(path, literal) => {
            let value = toml::from_str::<toml::Table>(&format!("v = {literal}"))
                .expect("a TOML literal")
                .remove("v")
                .unwrap();
            let mut keys: Vec<&str> = path.split('.').collect();
            let last = keys.pop().unwrap();
            let mut t = &mut table;
            for k in keys {
                t = t
                    .entry(k)
                    .or_insert_with(|| toml::Value::Table(Default::default()))
                    .as_table_mut()
                    .expect("a table");
            }
            t.insert(last.to_string(), value);
        }
    }
    toml::to_string(&table).expect("TOML out")
}

/// A valid configuration like the lab's (for the parser check without a lab).
fn sample_base() -> String {
    let mut c = crossdock_config::Config {
        cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
        health_socket: "/run/crossdock-e2e/agent.sock".into(),
        ..Default::default()
    };
    c.cloud.provider = crossdock_config::Provider::Alibaba;
    c.cloud.metadata_url = "http://100.100.100.200".into();
    c.to_toml()
}

#[test]
fn e2e_bad_input_table_is_invalid_for_the_field_it_names() {
    let base = sample_base();
    crossdock_config::parse(&base).expect("the base is valid");
    for (what, edit, field) in CASES {
        let text = broken(&base, edit);
        match crossdock_config::parse(&text) {
            Ok(_) => panic!("{what}: accepted by the parser:\n{text}"),
            Err(e) => assert!(
                e.field.contains(field) && e.to_string().lines().count() == 1,
                "{what}: the error names {:?}, not {field:?}: {e}",
                e.field
            ),
        }
    }
}

#[test]
fn e2e_bad_input_is_refused_with_status_2_before_touching_anything() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_bad_input_is_refused_with_status_2_before_touching_anything");
    let lab = up(options(1, DockerVersion::V20));
    let host = lab.host(1).clone();
    // The lab's file, with its own socket path so a wrongly started agent is seen.
    let stray_socket = host.dir.join("bad-input.sock");
    let base = {
        let mut c = crossdock_config::load(&host.agent_config).expect("the lab's valid file");
        c.health_socket = stray_socket.clone();
        c.to_toml()
    };
    let dir = host.dir.join("bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let valid = dir.join("valid.toml");
    std::fs::write(&valid, &base).unwrap();
    let check = |path: &Path| {
        lab.exec_unchecked(
            1,
            &[
                CROSSDOCK,
                "agent",
                "--check-config",
                "--config",
                path.to_str().unwrap(),
            ],
        )
        .expect("crossdock runs")
    };
    let out = check(&valid);
    assert_eq!(
        out.status.code(),
        Some(0),
        "--check-config refuses the lab's valid file: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kernel = |lab: &crossdock_lab::Lab| {
        (
            iptables_save(lab, 1),
            host_sh(
                lab,
                1,
                &[
                    "sysctl",
                    "-n",
                    "net.ipv4.ip_forward",
                    "net.ipv4.conf.eth0.forwarding",
                    "net.ipv4.conf.all.forwarding",
                ],
            ),
        )
    };
    let before = kernel(&lab);
    let seq = call_seq(&lab);
    let mut failures = Vec::new();
    for (n, (what, edit, field)) in CASES.iter().enumerate() {
        let path = dir.join(format!("case{n}.toml"));
        std::fs::write(&path, broken(&base, edit)).unwrap();
        let timeout = AGENT_TIMEOUT_SECS.to_string();
        for (mode, out) in [
            ("--check-config", check(&path)),
            (
                "agent",
                lab.exec_unchecked(
                    1,
                    &[
                        "timeout",
                        &timeout,
                        CROSSDOCK,
                        "agent",
                        "--config",
                        path.to_str().unwrap(),
                    ],
                )
                .expect("crossdock runs"),
            ),
        ] {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.code() != Some(2) || !stderr.contains(field) {
                failures.push(format!(
                    "{what} ({mode}): status {:?}, stderr: {}",
                    out.status.code(),
                    stderr.trim()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs did not refuse with status 2 naming the field:\n{}",
        failures.len(),
        CASES.len() * 2,
        failures.join("\n")
    );
    assert_eq!(
        kernel(&lab),
        before,
        "a refused configuration changed the host's kernel state"
    );
    let calls = calls_since(&lab, seq).calls;
    assert!(
        calls.is_empty(),
        "a refused configuration called the API:\n{}",
        describe_calls(&calls)
    );
    assert!(
        !stray_socket.exists(),
        "a refused configuration bound its health socket"
    );
}
