//! Root-gated checks that the benchmark's building blocks do what the measurements assume, in a real lab
//! (two hosts, real dockerds, no agents): the RR tools work across namespaces, the flannel-like VXLAN
//! overlay carries container traffic with the sender's address kept and leaves nothing behind, and the
//! "host through the vRouter" routes really send host traffic through the vRouter.

use crossdock_bench::proc::{run_checked, LineChild, Ns};
use crossdock_bench::rr::{ProbeResult, RrResult};
use crossdock_bench::vxlan::{self, VtepHost};
use crossdock_lab::testing::{crossdock_bin, root_or_skip, unique_lab_name};
use crossdock_lab::{Lab, LabOptions};
use std::time::Duration;

const BENCH: &str = env!("CARGO_BIN_EXE_crossdock-bench");

fn probe(
    from: &Ns,
    to_ip: &str,
    expect: Option<&str>,
    timeout_ms: u64,
) -> anyhow::Result<ProbeResult> {
    let to = format!("{to_ip}:7100");
    let timeout = timeout_ms.to_string();
    let mut argv = vec![BENCH, "probe", "--to", &to, "--timeout-ms", &timeout];
    if let Some(e) = expect {
        argv.extend(["--expect-source", e]);
    }
    let out = run_checked(from.command(&argv), "probe")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    Ok(serde_json::from_str(last)?)
}

/// `Ip: ForwDatagrams` of a namespace (packets it forwarded).
fn forwarded(ns: &Ns) -> u64 {
    let out = ns.run(&["cat", "/proc/net/snmp"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

fn lines_with(ns: &Ns, needle: &str) -> usize {
    let out = ns.run(&["iptables-save"]).unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn vxlan_overlay_rr_tools_and_router_routes_work_in_a_lab() {
    if !root_or_skip() {
        return;
    }
    let bin = match crossdock_bin() {
        Ok(b) => b,
        Err(e) => panic!("{e:#}"),
    };
    let lab = Lab::up(LabOptions {
        name: unique_lab_name(),
        hosts: 2,
        agents: false,
        crossdock_bin: bin,
        source_dest_check: false,
        ..LabOptions::default()
    })
    .expect("lab up");
    let image = crossdock_lab::dockerd::BUSYBOX_IMAGE;
    let c1 = lab
        .run_container(1, "v1", &[image, "sleep", "100000"])
        .unwrap();
    let c2 = lab
        .run_container(2, "v2", &[image, "sleep", "100000"])
        .unwrap();
    let (n1, n2) = (Ns::Pid(c1.pid), Ns::Pid(c2.pid));
    let server = LineChild::spawn(
        n2.command(&[BENCH, "rr-server", "--port", "7100", "--tell-peer"]),
        "rr-server",
    )
    .unwrap();
    server.next_line(Duration::from_secs(10)).unwrap();

    // No route between the container subnets yet: nothing passes.
    assert!(probe(&n1, &c2.ip, None, 500).is_err());

    // The overlay: the receiver sees the sender's container IP.
    let hosts: Vec<VtepHost> = (1..=2)
        .map(|i| VtepHost {
            index: i,
            host_ip: lab.host(i).private_ip.clone(),
            subnet: lab.host(i).subnet.clone(),
        })
        .collect();
    let host_ns: Vec<Ns> = (1..=2)
        .map(|i| Ns::Path(lab.host(i).netns_path()))
        .collect();
    for (h, ns) in hosts.iter().zip(&host_ns) {
        vxlan::apply(ns, &vxlan::setup_commands(h, &hosts, "10.0.0.0/8")).unwrap();
    }
    let r = probe(&n1, &c2.ip, Some(&c1.ip), 10_000).expect("the overlay carries traffic");
    assert_eq!(r.sources_seen, vec![c1.ip.clone()]);

    // The RR client across it.
    let rr_server = LineChild::spawn(
        n2.command(&[BENCH, "rr-server", "--port", "7101", "--max-conns", "1"]),
        "rr-server",
    )
    .unwrap();
    rr_server.next_line(Duration::from_secs(10)).unwrap();
    let out = run_checked(
        n1.command(&[
            BENCH,
            "rr-client",
            "--to",
            &format!("{}:7101", c2.ip),
            "--seconds",
            "1",
        ]),
        "rr-client",
    )
    .unwrap();
    let rr: RrResult = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rr.transactions > 100, "{rr:?}");

    // Teardown removes the device and every rule it added.
    for (h, ns) in hosts.iter().zip(&host_ns) {
        assert_eq!(lines_with(ns, vxlan::COMMENT), 3);
        let errors = vxlan::apply_all(ns, &vxlan::teardown_commands(h, "10.0.0.0/8"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(lines_with(ns, vxlan::COMMENT), 0);
        assert!(ns.run(&["ip", "link", "show", vxlan::DEV]).is_err());
    }
    assert!(
        probe(&n1, &c2.ip, None, 500).is_err(),
        "nothing passes once the overlay is gone"
    );

    // Host traffic through the vRouter: the /32 route sends h1's packets to h2 via the gateway.
    let h2_ip = lab.host(2).private_ip.clone();
    let dst = format!("{h2_ip}/32");
    host_ns[0]
        .run(&[
            "ip",
            "route",
            "replace",
            &dst,
            "via",
            crossdock_lab::lab::GATEWAY,
        ])
        .unwrap();
    let route = host_ns[0].run(&["ip", "route", "get", &h2_ip]).unwrap();
    assert!(
        String::from_utf8_lossy(&route.stdout)
            .contains(&format!("via {}", crossdock_lab::lab::GATEWAY)),
        "{}",
        String::from_utf8_lossy(&route.stdout)
    );
    let _host_server = LineChild::spawn(
        host_ns[1].command(&[BENCH, "rr-server", "--port", "7100", "--tell-peer"]),
        "rr-server",
    )
    .and_then(|s| s.next_line(Duration::from_secs(10)).map(|_| s))
    .unwrap();
    let vr = Ns::Path(std::path::Path::new("/run/netns").join(&lab.state().vr_netns));
    let before = forwarded(&vr);
    let r = probe(&host_ns[0], &h2_ip, Some(&lab.host(1).private_ip), 10_000).unwrap();
    assert_eq!(r.sources_seen, vec![lab.host(1).private_ip.clone()]);
    assert!(
        forwarded(&vr) > before,
        "the vRouter forwarded the host traffic"
    );
}
