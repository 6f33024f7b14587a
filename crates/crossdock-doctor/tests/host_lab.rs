//! Root-gated: `crossdock doctor` on a real host side, broken one thing at a time.
//!
//! A network namespace is the host (eth0 towards a second namespace that plays the vRouter and a
//! peer host with container address 10.2.0.5), a real dockerd of each supported version runs in it
//! with one container, and crossdock's rules are applied by the agent's firewall driver
//! (`crossdock_hostnet::Iptables`) through the real iptables, as the agent applies them. The `crossdock` binary runs `doctor --json` inside the
//! namespace. From a baseline where every host check passes, each case breaks one thing (forwarding
//! off, NAT exemption removed, crossdock's chain flushed, FORWARD opened wide, Docker 28's raw drop
//! uncovered), and asserts that doctor names exactly that check, with its fix, and changes nothing
//! else but the checks that depend on it. The probe sends real pings to the peer.

mod common;

use common::{only, statuses};
use crossdock_doctor::model::Status;
use crossdock_hostnet::{DesiredInput, Firewall, Iptables};
use crossdock_lab::dockerd::{DockerVersion, Dockerd, DockerdSpec};
use crossdock_lab::netns::{veth, Netns};
use serde_json::Value;
use std::path::PathBuf;

struct Host {
    // Field order is drop order: the daemon stops before its namespace goes.
    _daemon: Dockerd,
    ns: Netns,
    peer: Netns,
    _dir: tempfile::TempDir,
    bin: PathBuf,
    config: PathBuf,
}

fn setup(version: DockerVersion, tag: &str) -> Host {
    let bin = crossdock_lab::testing::crossdock_bin().unwrap();
    let id = std::process::id();
    let ns = Netns::create(&format!("cdd-{id}-{tag}")).unwrap();
    let peer = Netns::create(&format!("cdd-{id}-{tag}p")).unwrap();
    veth(&ns, "eth0", &peer, "vsw").unwrap();
    ns.addr_add("eth0", "192.168.1.11/24").unwrap();
    ns.default_route("192.168.1.253").unwrap();
    peer.addr_add("vsw", "192.168.1.253/24").unwrap();
    // The peer host's container, and the VPC route back to this host's containers.
    peer.addr_add("lo", "10.2.0.5/32").unwrap();
    peer.route_replace("10.1.0.0/24", "192.168.1.11").unwrap();
    // A fresh host: forwarding off until Docker turns it on (and sets FORWARD's policy to DROP).
    ns.sysctl("net.ipv4.ip_forward", "0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Dockerd::start(DockerdSpec::new(
        ns.path(),
        dir.path().join("docker"),
        "10.1.0.1/24",
        version,
    ))
    .unwrap();
    daemon.import_busybox().unwrap();
    daemon
        .run_container("c1", &["busybox:lab", "sleep", "3600"])
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\nhealth_socket = \"{}\"\n[docker]\nhost = \"{}\"\n",
            dir.path().join("agent.sock").display(),
            daemon.docker_host()
        ),
    )
    .unwrap();
    let host = Host {
        _daemon: daemon,
        ns,
        peer,
        _dir: dir,
        bin,
        config,
    };
    host.apply_rules();
    host
}

impl Host {
    fn iptables(&self) -> Iptables {
        Iptables::with_program(
            vec![
                "nsenter".into(),
                self.ns.nsenter_arg(),
                "--".into(),
                "iptables".into(),
            ],
            5,
        )
    }

    /// crossdock's rules, applied by crossdock-hostnet's iptables driver through the real iptables (with
    /// the NAT exemption made final: see `common::make_nat_exemption_final`).
    fn apply_rules(&self) {
        let desired = DesiredInput {
            cluster_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            local_subnet: "10.1.0.0/24".parse().unwrap(),
            bridge: Some("docker0".into()),
            scrape: None,
            names: None,
        };
        let fw = self.iptables();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fw.apply(&desired))
            .unwrap();
        common::make_nat_exemption_final(&self.ns);
    }

    fn sh(&self, script: &str) {
        self.ns.exec(&["sh", "-ec", script]).unwrap();
    }

    fn doctor(&self, extra: &[&str]) -> Value {
        let bin = self.bin.display().to_string();
        let config = self.config.display().to_string();
        let mut argv = vec![bin.as_str(), "doctor", "--json", "-c", config.as_str()];
        argv.extend_from_slice(extra);
        common::doctor_json(self.ns.command(&argv))
    }
}

fn host_side_cases(version: DockerVersion, tag: &str) {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let h = setup(version, tag);
    let base = h.doctor(&[]);
    // Baseline: every host check passes; the agent is not running (a warning) and there is no cloud.
    for (id, (s, c)) in statuses(&base) {
        let want = if id == "agent.status" {
            "warn"
        } else if id.starts_with("cloud.")
            || id.starts_with("fleet.")
            || id.starts_with("names.")
            || id == "subnet.vpc-overlap"
            || id == "route.tables"
        {
            "skip"
        } else {
            "ok"
        };
        assert_eq!(s, want, "baseline {id}: {c:#}");
    }
    assert_eq!(base["exit_code"], 1);
    let raw = &statuses(&base)["firewall.raw-exemption"].1["evidence"];
    if version == DockerVersion::V28 {
        assert!(raw.as_str().unwrap().contains("1 Docker raw DROP"), "{raw}");
    } else {
        assert!(
            raw.as_str().unwrap().contains("adds no raw-table drop"),
            "{raw}"
        );
    }

    // Forwarding off (the kernel also clears every interface's forwarding flag).
    h.sh("sysctl -qw net.ipv4.ip_forward=0");
    let now = h.doctor(&[]);
    only(
        &base,
        &now,
        "forwarding.ip-forward",
        Status::Fail,
        "sysctl -w net.ipv4.ip_forward=1",
    );
    assert_eq!(now["exit_code"], 2);
    h.sh("sysctl -qw net.ipv4.ip_forward=1");

    // The NAT exemption removed.
    h.sh("iptables -t nat -F CROSSDOCK-POSTROUTING");
    let now = h.doctor(&[]);
    only(
        &base,
        &now,
        "firewall.nat-exemption",
        Status::Fail,
        "iptables -t nat -A CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8",
    );
    // The probe shows the consequence: the peer answers, but saw this host's address.
    let probe = h.doctor(&["--probe", "10.2.0.5"])["probe"].clone();
    assert_eq!(probe["ok"], true, "{probe:#}");
    assert_eq!(probe["masqueraded"], true, "{probe:#}");
    assert!(
        probe["masquerade_evidence"]
            .as_str()
            .unwrap()
            .contains("MASQUERADE"),
        "{probe:#}"
    );
    h.apply_rules();

    // crossdock's filter chain flushed.
    h.sh("iptables -F CROSSDOCK-FORWARD");
    let now = h.doctor(&[]);
    only(
        &base,
        &now,
        "firewall.forward-chain",
        Status::Fail,
        "iptables -t filter -A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0",
    );
    h.apply_rules();

    // FORWARD opened wide, by policy and by rule.
    h.sh("iptables -P FORWARD ACCEPT");
    let now = h.doctor(&[]);
    only(
        &base,
        &now,
        "firewall.forward-policy",
        Status::Warn,
        "iptables -P FORWARD DROP",
    );
    h.sh("iptables -P FORWARD DROP; iptables -I FORWARD -j ACCEPT");
    let now = h.doctor(&[]);
    only(
        &base,
        &now,
        "firewall.forward-policy",
        Status::Warn,
        "iptables -t filter -D FORWARD -j ACCEPT",
    );
    h.sh("iptables -D FORWARD -j ACCEPT");

    // Docker 28's raw-table drop uncovered: crossdock's jump removed.
    h.sh(
        "iptables -t raw -D PREROUTING -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING",
    );
    let now = h.doctor(&[]);
    if version == DockerVersion::V28 {
        only(
            &base,
            &now,
            "firewall.raw-exemption",
            Status::Fail,
            "iptables -t raw -I PREROUTING 1 -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING",
        );
    } else {
        // Docker 20.10 has no raw drop: nothing to cover, nothing changes.
        let b = statuses(&base);
        for (id, (s, c)) in statuses(&now) {
            assert_eq!(s, b[&id].0, "{id}: {c:#}");
        }
    }
    h.apply_rules();

    // Back to the baseline, and the probe to the peer keeps the source address.
    let again = h.doctor(&["--probe", "10.2.0.5"]);
    let probe = &again["probe"];
    assert_eq!(probe["ok"], true, "{probe:#}");
    assert_eq!(probe["masqueraded"], false, "{probe:#}");
    assert_eq!(probe["source"], "10.1.0.1");
    assert_eq!(probe["route"]["dev"], "eth0", "{probe:#}");
    // Without the VPC's route back, the probe leaves and gets no answer, and says where to look.
    h.peer.route_delete("10.1.0.0/24").unwrap();
    let lost = h.doctor(&["--probe", "10.2.0.5", "--probe-count", "1"]);
    let probe = &lost["probe"];
    assert_eq!(probe["ok"], false, "{probe:#}");
    assert!(
        probe["conclusion"]
            .as_str()
            .unwrap()
            .starts_with("left this host with its own source address"),
        "{probe:#}"
    );
    assert_eq!(lost["exit_code"], 2, "a failed probe fails the run");
}

#[test]
fn docker20_host_side_breakages_are_named() {
    host_side_cases(DockerVersion::V20, "h20");
}

#[test]
fn docker28_host_side_breakages_are_named() {
    host_side_cases(DockerVersion::V28, "h28");
}
