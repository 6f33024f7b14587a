//! The real data plane in network namespaces this test creates (root only): kernel routes with their
//! own protocol number, foreign routes left alone, and the source/destination check dropping real
//! packets at a host's bridge port.

mod common;

use crossdock_vpcsim::dataplane::{Dataplane, Desired, KernelDataplane, PortPolicy, ROUTE_PROTO};
use std::collections::BTreeMap;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn must(args: &[&str]) -> String {
    let (ok, out) = sh(args);
    assert!(ok, "{args:?} failed: {out}");
    out
}

/// Namespaces `<prefix>-vr`, `<prefix>-h1`, `<prefix>-h2`, removed on drop (also on failure).
struct Netns {
    prefix: String,
}

impl Netns {
    fn vr(&self) -> String {
        format!("{}-vr", self.prefix)
    }
    fn host(&self, i: u8) -> String {
        format!("{}-h{i}", self.prefix)
    }

    fn create(tag: &str) -> Netns {
        let n = Netns {
            prefix: format!("cdvs{}{tag}", std::process::id() % 100000),
        };
        let vr = n.vr();
        must(&["ip", "netns", "add", &vr]);
        must(&["ip", "-n", &vr, "link", "set", "lo", "up"]);
        must(&["ip", "-n", &vr, "link", "add", "vsw", "type", "bridge"]);
        must(&["ip", "-n", &vr, "link", "set", "vsw", "up"]);
        must(&[
            "ip",
            "-n",
            &vr,
            "addr",
            "add",
            "192.168.1.253/24",
            "dev",
            "vsw",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            &vr,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        for i in 1..=2u8 {
            let h = n.host(i);
            let port = format!("p-h{i}");
            must(&["ip", "netns", "add", &h]);
            must(&[
                "ip", "link", "add", &port, "netns", &vr, "type", "veth", "peer", "name", "eth0",
                "netns", &h,
            ]);
            must(&["ip", "-n", &vr, "link", "set", &port, "master", "vsw", "up"]);
            must(&["ip", "-n", &h, "link", "set", "lo", "up"]);
            must(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
            must(&[
                "ip",
                "-n",
                &h,
                "addr",
                "add",
                &format!("192.168.1.1{i}/24"),
                "dev",
                "eth0",
            ]);
            must(&[
                "ip",
                "-n",
                &h,
                "route",
                "add",
                "default",
                "via",
                "192.168.1.253",
            ]);
            // a "container" address behind the host
            must(&[
                "ip",
                "-n",
                &h,
                "addr",
                "add",
                &format!("10.{i}.0.1/24"),
                "dev",
                "lo",
            ]);
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [self.vr(), self.host(1), self.host(2)] {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn ping(ns: &str, from: &str, to: &str) -> bool {
    let ping: Vec<&str> = if sh(&["busybox", "true"]).0 {
        vec!["busybox", "ping"]
    } else {
        vec!["ping"]
    };
    let mut args = vec!["ip", "netns", "exec", ns];
    args.extend(ping);
    args.extend(["-c", "1", "-W", "1", "-I", from, to]);
    sh(&args).0
}

fn policy(port: &str, ip: &str, check: bool) -> PortPolicy {
    PortPolicy {
        port: port.into(),
        ip: ip.parse().unwrap(),
        source_dest_check: check,
    }
}

#[test]
fn kernel_routes_and_source_dest_check_in_a_namespace() {
    if !is_root() {
        println!("skipped: needs root");
        return;
    }
    let n = Netns::create("a");
    let vr = n.vr();
    must(&[
        "ip",
        "-n",
        &vr,
        "route",
        "add",
        "10.50.0.0/24",
        "via",
        "192.168.1.12",
    ]);
    let dp = KernelDataplane::new(Some(vr.clone()));
    let routes: BTreeMap<_, _> = [
        ("10.1.0.0/24", "192.168.1.11"),
        ("10.2.0.0/24", "192.168.1.12"),
    ]
    .iter()
    .map(|(d, v)| (d.parse().unwrap(), v.parse().unwrap()))
    .collect();
    let mut desired = Desired {
        routes: routes.clone(),
        ports: vec![
            policy("p-h1", "192.168.1.11", true),
            policy("p-h2", "192.168.1.12", true),
        ],
    };
    dp.apply(&desired).unwrap();
    dp.apply(&desired).unwrap(); // idempotent
    let have = dp.current_routes().unwrap();
    assert_eq!(have.len(), 2);
    assert_eq!(
        have[&"10.1.0.0/24".parse().unwrap()],
        Some("192.168.1.11".parse().unwrap())
    );
    let shown = must(&[
        "ip",
        "-n",
        &vr,
        "route",
        "show",
        "proto",
        &ROUTE_PROTO.to_string(),
    ]);
    assert!(shown.contains("10.2.0.0/24 via 192.168.1.12"), "{shown}");
    // host-to-host on their own addresses passes the check
    assert!(ping(&n.host(2), "192.168.1.12", "192.168.1.11"));
    // container-to-container through the vRouter: dropped by the check (source not the host's IP)
    assert!(!ping(&n.host(2), "10.2.0.1", "10.1.0.1"));
    let rules = must(&[
        "ip",
        "netns",
        "exec",
        &vr,
        "nft",
        "list",
        "table",
        "bridge",
        "crossdock_vpcsim",
    ]);
    assert!(
        rules.contains("iifname \"p-h2\"") && rules.contains("drop"),
        "{rules}"
    );
    // check off on both ports: the routed packet goes through and comes back
    desired.ports = vec![
        policy("p-h1", "192.168.1.11", false),
        policy("p-h2", "192.168.1.12", false),
    ];
    dp.apply(&desired).unwrap();
    assert!(ping(&n.host(2), "10.2.0.1", "10.1.0.1"));
    // check on at the destination only: the packet entering h1 is not for h1's IP, so it is dropped
    desired.ports = vec![
        policy("p-h1", "192.168.1.11", true),
        policy("p-h2", "192.168.1.12", false),
    ];
    dp.apply(&desired).unwrap();
    assert!(!ping(&n.host(2), "10.2.0.1", "10.1.0.1"));
    // a route changed by hand is put back; routes no longer wanted are removed; foreign ones stay
    must(&[
        "ip",
        "-n",
        &vr,
        "route",
        "replace",
        "10.1.0.0/24",
        "via",
        "192.168.1.12",
        "proto",
        &ROUTE_PROTO.to_string(),
    ]);
    dp.apply(&desired).unwrap();
    assert_eq!(
        dp.current_routes().unwrap()[&"10.1.0.0/24".parse().unwrap()],
        Some("192.168.1.11".parse().unwrap())
    );
    desired.routes.clear();
    desired.ports.clear();
    dp.apply(&desired).unwrap();
    assert!(dp.current_routes().unwrap().is_empty());
    let all = must(&["ip", "-n", &vr, "route", "show"]);
    assert!(
        all.contains("10.50.0.0/24 via 192.168.1.12"),
        "foreign route removed: {all}"
    );
    assert!(!all.contains("10.1.0.0/24"));
}

#[tokio::test]
async fn the_api_drives_the_kernel() {
    if !is_root() {
        println!("skipped: needs root");
        return;
    }
    let n = Netns::create("b");
    let vr = n.vr();
    let dir = tempfile::tempdir().unwrap();
    let opts = crossdock_vpcsim::ServerOptions {
        state_file: Some(dir.path().join("state.json")),
        api_listen: vec!["127.0.0.1:0".parse().unwrap()],
        admin_socket: Some(dir.path().join("admin.sock")),
        settings: common::settings(100),
        dataplane: std::sync::Arc::new(KernelDataplane::new(Some(vr.clone()))),
        ..Default::default()
    };
    let server = crossdock_vpcsim::start(opts).await.unwrap();
    let admin = crossdock_vpcsim::AdminClient::new(dir.path().join("admin.sock"));
    let mut insts = vec![];
    for i in 1..=2u8 {
        insts.push(
            admin
                .create_instance(&crossdock_vpcsim::admin::CreateInstance {
                    hostname: format!("h{i}"),
                    private_ip: Some(format!("192.168.1.1{i}").parse().unwrap()),
                    port: Some(format!("p-h{i}")),
                    ..Default::default()
                })
                .await
                .unwrap(),
        );
    }
    let info = admin.info().await.unwrap();
    let lab = common::Lab {
        api: server.api_addrs[0],
        metadata: server.api_addrs[0],
        server: None,
        admin: admin.clone(),
        dataplane: Default::default(),
        admin_key: common::Cred {
            id: info.admin_access_key_id,
            secret: info.admin_access_key_secret,
            token: None,
        },
        dir: tempfile::tempdir().unwrap(),
        http: reqwest::Client::new(),
    };
    lab.available_route("10.1.0.0/24", &insts[0]).await;
    lab.available_route("10.2.0.0/24", &insts[1]).await;
    let kernel = KernelDataplane::new(Some(vr.clone()));
    common::eventually(10, "both routes in the vRouter's kernel", || {
        let kernel = kernel.clone();
        async move {
            kernel
                .current_routes()
                .map(|r| r.len() == 2)
                .unwrap_or(false)
        }
    })
    .await;
    // the check is on by default: routed container traffic is dropped
    assert!(!ping(&n.host(2), "10.2.0.1", "10.1.0.1"));
    for i in &insts {
        let r = lab
            .admin_call(
                "ModifyNetworkInterfaceAttribute",
                &[
                    ("NetworkInterfaceId", &i.eni_id),
                    ("SourceDestCheck", "false"),
                ],
            )
            .await;
        assert_eq!(r.code(), "Success");
    }
    let h2 = n.host(2);
    common::eventually(
        10,
        "container traffic to pass once the check is off",
        || {
            let h2 = h2.clone();
            async move { ping(&h2, "10.2.0.1", "10.1.0.1") }
        },
    )
    .await;
    server.shutdown().await;
}
