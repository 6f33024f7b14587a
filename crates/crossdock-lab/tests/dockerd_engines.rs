//! Root-gated: one real dockerd of each supported version in a fresh namespace runs a busybox container
//! on its bip subnet, and stopping it leaves no process, mount or namespace behind.

use crossdock_lab::dockerd::{DockerVersion, Dockerd, DockerdSpec};
use crossdock_lab::netns::{veth, Netns};
use crossdock_lab::procs;
use std::time::Instant;

fn engine_round_trip(version: DockerVersion, tag: &str, bip: &str, subnet_prefix: &str) {
    let name = format!("cdt{}{tag}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let dir_text;
    let started = Instant::now();
    {
        let ns = Netns::create(&name).unwrap();
        let peer = Netns::create(&format!("{name}p")).unwrap();
        veth(&ns, "eth0", &peer, "peer0").unwrap();
        ns.addr_add("eth0", "192.168.77.2/24").unwrap();
        ns.default_route("192.168.77.1").unwrap();
        let mut daemon = Dockerd::start(DockerdSpec::new(ns.path(), &dir, bip, version)).unwrap();
        dir_text = daemon.spec().dir.display().to_string();
        let want_major = if version == DockerVersion::V20 {
            "20."
        } else {
            "28."
        };
        assert!(
            daemon.version().starts_with(want_major),
            "{}",
            daemon.version()
        );
        assert!(daemon.docker_host().starts_with("unix:///"));
        daemon.import_busybox().unwrap();
        daemon.import_busybox().unwrap(); // idempotent
        let c = daemon
            .run_container("c1", &["busybox:lab", "sleep", "3600"])
            .unwrap();
        assert!(
            c.ip.starts_with(subnet_prefix),
            "container IP {} outside {bip}",
            c.ip
        );
        assert!(procs::alive(c.pid));
        // The daemon really lives in the namespace: docker0 carries the bip there.
        let addrs = ns
            .exec_stdout(&["ip", "-4", "-o", "addr", "show", "docker0"])
            .unwrap();
        assert!(addrs.contains(bip), "{addrs}");
        assert!(ns.pids().contains(&daemon.pid()));
        // Restart with a new bip keeps the data (the image) and moves docker0.
        daemon.restart(Some("10.99.0.1/24")).unwrap();
        assert!(!procs::alive(c.pid), "the container survived the restart");
        let addrs = ns
            .exec_stdout(&["ip", "-4", "-o", "addr", "show", "docker0"])
            .unwrap();
        assert!(addrs.contains("10.99.0.1/24"), "{addrs}");
        let c2 = daemon
            .run_container("c2", &["busybox:lab", "sleep", "3600"])
            .unwrap();
        assert!(c2.ip.starts_with("10.99.0."), "{}", c2.ip);
        let dockerd_pid = daemon.pid();
        daemon.stop().unwrap();
        assert!(!procs::alive(dockerd_pid));
        assert!(!procs::alive(c2.pid), "container outlived its daemon");
    }
    assert!(!Netns::exists(&name) && !Netns::exists(&format!("{name}p")));
    assert!(procs::mounts_under(std::path::Path::new(&dir_text)).is_empty());
    assert!(procs::pids_with_cmdline_containing(&format!("{dir_text}/")).is_empty());
    eprintln!("docker {version}: round trip in {:?}", started.elapsed());
}

#[test]
fn docker_20_runs_a_container_on_its_bip_and_leaves_nothing() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    engine_round_trip(DockerVersion::V20, "a", "10.77.0.1/24", "10.77.0.");
}

#[test]
fn docker_28_runs_a_container_on_its_bip_and_leaves_nothing() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    engine_round_trip(DockerVersion::V28, "b", "10.78.0.1/24", "10.78.0.");
}

#[test]
fn dropping_a_running_daemon_cleans_up() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let name = format!("cdt{}c", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let (pid, cpid, dir);
    {
        let ns = Netns::create(&name).unwrap();
        let daemon = Dockerd::start(DockerdSpec::new(
            ns.path(),
            tmp.path().join("d"),
            "10.79.0.1/24",
            DockerVersion::V20,
        ))
        .unwrap();
        daemon.import_busybox().unwrap();
        cpid = daemon
            .run_container("c0", &["busybox:lab", "sleep", "3600"])
            .unwrap()
            .pid;
        pid = daemon.pid();
        dir = daemon.spec().dir.clone();
    }
    assert!(!procs::alive(pid) && !procs::alive(cpid));
    assert!(procs::mounts_under(&dir).is_empty());
    assert!(!Netns::exists(&name));
}
