//! The real data plane in network namespaces this test creates (root only): kernel routes with their
//! own protocol number, foreign routes left alone, and the source/destination check dropping real
//! packets at a host's bridge port.

mod common;

use crossdock_vpcsim::dataplane::kernel::Hop;
use crossdock_vpcsim::dataplane::{
    Dataplane, Desired, KernelDataplane, PortPolicy, TablePlane, ROUTE_PROTO,
};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The workspace's skip marker (`crossdock_lab::testing::skip`; this crate cannot depend on the lab),
/// written past the test harness's capture so `scripts/test` sees it.
fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "CROSSDOCK-TEST-SKIPPED {test}: {reason}");
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

    /// With `zones`, h2 sits on a second vSwitch (bridge `vsw2`, 192.168.2.0/24) at 192.168.2.12;
    /// otherwise both hosts are on `vsw` (192.168.1.0/24) at 192.168.1.1<i>.
    fn create(tag: &str, zones: bool) -> Netns {
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
        if zones {
            must(&["ip", "-n", &vr, "link", "add", "vsw2", "type", "bridge"]);
            must(&["ip", "-n", &vr, "link", "set", "vsw2", "up"]);
            must(&[
                "ip",
                "-n",
                &vr,
                "addr",
                "add",
                "192.168.2.253/24",
                "dev",
                "vsw2",
            ]);
        }
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
            let (bridge, net) = if zones && i == 2 {
                ("vsw2", 2)
            } else {
                ("vsw", 1)
            };
            must(&["ip", "netns", "add", &h]);
            must(&[
                "ip", "link", "add", &port, "netns", &vr, "type", "veth", "peer", "name", "eth0",
                "netns", &h,
            ]);
            must(&[
                "ip", "-n", &vr, "link", "set", &port, "master", bridge, "up",
            ]);
            must(&["ip", "-n", &h, "link", "set", "lo", "up"]);
            must(&["ip", "-n", &h, "link", "set", "eth0", "up"]);
            must(&[
                "ip",
                "-n",
                &h,
                "addr",
                "add",
                &format!("192.168.{net}.1{i}/24"),
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
                &format!("192.168.{net}.253"),
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

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// One route table (kernel table 1000) routing the single vSwitch 192.168.1.0/24.
fn one_table(routes: BTreeMap<Ipv4Net, Ipv4Addr>, ports: Vec<PortPolicy>) -> Desired {
    Desired {
        vswitches: vec![net("192.168.1.0/24")],
        tables: vec![TablePlane {
            route_table_id: "vtb-sys".into(),
            kernel_table: 1000,
            vswitches: vec![net("192.168.1.0/24")],
            routes,
        }],
        ports,
    }
}

/// The custom routes (next hop an address) the emulator has in the kernel, over every table.
fn custom_routes(dp: &KernelDataplane) -> BTreeMap<(u32, Ipv4Net), Ipv4Addr> {
    dp.current()
        .unwrap()
        .routes
        .into_iter()
        .filter_map(|(k, hop)| match hop {
            Hop::Via(ip) => Some((k, ip)),
            _ => None,
        })
        .collect()
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
        skip("needs root");
        return;
    }
    let n = Netns::create("a", false);
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
    let mut desired = one_table(
        routes.clone(),
        vec![
            policy("p-h1", "192.168.1.11", true),
            policy("p-h2", "192.168.1.12", true),
        ],
    );
    dp.apply(&desired).unwrap();
    dp.apply(&desired).unwrap(); // idempotent
    let have = custom_routes(&dp);
    assert_eq!(have.len(), 2);
    assert_eq!(
        have[&(1000, net("10.1.0.0/24"))],
        "192.168.1.11".parse::<Ipv4Addr>().unwrap()
    );
    let shown = must(&[
        "ip",
        "-n",
        &vr,
        "route",
        "show",
        "table",
        "1000",
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
        "table",
        "1000",
    ]);
    dp.apply(&desired).unwrap();
    assert_eq!(
        custom_routes(&dp)[&(1000, net("10.1.0.0/24"))],
        "192.168.1.11".parse::<Ipv4Addr>().unwrap()
    );
    desired.tables.clear();
    desired.ports.clear();
    dp.apply(&desired).unwrap();
    let left = dp.current().unwrap();
    assert!(left.routes.is_empty() && left.rules.is_empty(), "{left:?}");
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
        skip("needs root");
        return;
    }
    let n = Netns::create("b", false);
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
                .current()
                .map(|k| {
                    k.routes
                        .values()
                        .filter(|h| matches!(h, Hop::Via(_)))
                        .count()
                        == 2
                })
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

/// Two vSwitches bound to two route tables: each packet is routed by the table of the bridge it came
/// in on; an entry missing from one table drops exactly the traffic that table routes, even when the
/// main table (or the other table) could route it; a binding change moves the vSwitch's rule.
#[test]
fn each_vswitch_is_routed_by_its_own_table_without_fallback() {
    if !is_root() {
        skip("needs root");
        return;
    }
    let n = Netns::create("z", true);
    let vr = n.vr();
    let (h1, h2) = (n.host(1), n.host(2));
    // a foreign route in the main table that would deliver to h1: it must never be used
    must(&[
        "ip",
        "-n",
        &vr,
        "route",
        "add",
        "10.1.0.0/24",
        "via",
        "192.168.1.11",
    ]);
    let dp = KernelDataplane::new(Some(vr.clone()));
    let hop = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let both = BTreeMap::from([
        (net("10.1.0.0/24"), hop("192.168.1.11")),
        (net("10.2.0.0/24"), hop("192.168.2.12")),
    ]);
    let table =
        |id: &str, kt: u32, src: &[&str], routes: &BTreeMap<Ipv4Net, Ipv4Addr>| TablePlane {
            route_table_id: id.into(),
            kernel_table: kt,
            vswitches: src.iter().map(|s| net(s)).collect(),
            routes: routes.clone(),
        };
    let mut desired = Desired {
        vswitches: vec![net("192.168.1.0/24"), net("192.168.2.0/24")],
        tables: vec![
            table("vtb-sys", 1000, &["192.168.1.0/24"], &both),
            table("vtb-b", 1001, &["192.168.2.0/24"], &both),
        ],
        ports: vec![],
    };
    dp.apply(&desired).unwrap();
    assert!(
        ping(&h1, "10.1.0.1", "10.2.0.1"),
        "h1 -> h2 across vSwitches"
    );
    assert!(
        ping(&h2, "10.2.0.1", "10.1.0.1"),
        "h2 -> h1 across vSwitches"
    );
    let rules = must(&["ip", "-n", &vr, "rule", "show"]);
    assert!(rules.contains("iif vsw lookup 1000"), "{rules}");
    assert!(rules.contains("iif vsw2 lookup 1001"), "{rules}");

    // h1's subnet missing from the custom table: h2's packets to it are dropped (no fallback to the
    // main table's route), and so are the answers to h1's packets; host traffic still flows
    desired.tables[1].routes.remove(&net("10.1.0.0/24"));
    dp.apply(&desired).unwrap();
    assert!(
        !ping(&h2, "10.2.0.1", "10.1.0.1"),
        "request routed by vtb-b"
    );
    assert!(!ping(&h1, "10.1.0.1", "10.2.0.1"), "reply routed by vtb-b");
    assert!(ping(&h1, "192.168.1.11", "192.168.2.12"), "system routes");
    let blackhole = must(&["ip", "-n", &vr, "route", "show", "table", "1001"]);
    assert!(blackhole.contains("blackhole default"), "{blackhole}");

    // the vSwitch moves to the system table: its rule follows, the unused table is emptied
    desired.tables.remove(1);
    desired.tables[0].vswitches.push(net("192.168.2.0/24"));
    dp.apply(&desired).unwrap();
    assert!(
        ping(&h2, "10.2.0.1", "10.1.0.1"),
        "h2 routed by vtb-sys now"
    );
    let rules = must(&["ip", "-n", &vr, "rule", "show"]);
    assert!(rules.contains("iif vsw2 lookup 1000"), "{rules}");
    assert!(!rules.contains("lookup 1001"), "{rules}");
    assert!(dp.current().unwrap().table(1001).is_empty());

    // nothing wanted: every rule and route of the emulator goes, the foreign route stays
    dp.apply(&Desired::default()).unwrap();
    let left = dp.current().unwrap();
    assert!(left.routes.is_empty() && left.rules.is_empty(), "{left:?}");
    let main = must(&["ip", "-n", &vr, "route", "show"]);
    assert!(main.contains("10.1.0.0/24 via 192.168.1.11"), "{main}");
}
