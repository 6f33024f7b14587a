//! Root-gated lab tests: a lab comes up and goes away without a trace (also after its builder "crashed"),
//! and containers on different hosts reach each other exactly when the vRouter has the routes and the
//! hosts let the traffic through — on Docker 20.10 and 28.x.
//!
//! The agents are not used here (they are tested end to end elsewhere): routes are put into the
//! emulator's table through its admin API and the host rules are added by hand, inside the lab's
//! namespaces only, to check the data plane the lab provides.

use crossdock_lab::demo;
use crossdock_lab::dockerd::BUSYBOX_IMAGE;
use crossdock_lab::lab::{self, wait_for, Lab, LabOptions};
use crossdock_lab::netns::Netns;
use crossdock_lab::testing::{crossdock_bin, root_or_skip, unique_lab_name};
use crossdock_lab::{procs, DockerVersion};
use crossdock_vpcsim::admin::PutRoute;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

fn options(name: &str, docker: DockerVersion) -> LabOptions {
    LabOptions {
        name: name.to_string(),
        hosts: 2,
        docker,
        agents: false,
        crossdock_bin: crossdock_bin().expect("the crossdock binary"),
        ..LabOptions::default()
    }
}

/// Nothing of lab `name` is left: no namespace, no process naming its directory, no mount, no directory.
fn assert_gone(name: &str) {
    let dir = lab::lab_dir(name);
    let namespaces: Vec<String> = Netns::list_with_prefix(&format!("cdl-{name}-"));
    assert!(namespaces.is_empty(), "namespaces left: {namespaces:?}");
    let pids = procs::pids_with_cmdline_containing(&format!("{}/", dir.display()));
    assert!(pids.is_empty(), "processes left: {pids:?}");
    assert!(
        procs::mounts_under(&dir).is_empty(),
        "mounts left under {}",
        dir.display()
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn up_then_down_leaves_nothing_behind_even_after_a_crash() {
    if !root_or_skip() {
        return;
    }
    let name = unique_lab_name();
    let started = Instant::now();
    let mut opts = options(&name, DockerVersion::V20);
    opts.agents = true; // whatever state the agent is in, its process must be cleaned up too
    opts.agent_wait = Duration::from_secs(2);
    opts.static_hosts = 1;
    let lab = Lab::up(opts).unwrap();
    eprintln!("up: {:?}", started.elapsed());

    // The layout of docs/CONTRACTS.md.
    let vr = Netns::open(&format!("cdl-{name}-vr")).unwrap();
    let lo = vr
        .exec_stdout(&["ip", "-4", "-o", "addr", "show", "lo"])
        .unwrap();
    assert!(
        lo.contains("100.100.100.200/32") && lo.contains("100.100.100.201/32"),
        "{lo}"
    );
    assert_eq!(vr.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let bridge = vr
        .exec_stdout(&["ip", "-o", "link", "show", "master", "vsw"])
        .unwrap();
    assert!(
        bridge.contains("p-h1") && bridge.contains("p-h2") && bridge.contains("p-h3"),
        "{bridge}"
    );
    assert_eq!(lab.hosts().len(), 3);
    let h1 = lab.host(1);
    assert_eq!(h1.private_ip, "192.168.1.11");
    assert_eq!(h1.subnet, "10.0.0.0/24");
    assert!(h1.instance_id.starts_with("i-") && h1.eni_id.starts_with("eni-"));
    assert!(lab.host(3).docker_host.is_none(), "h3 is a static host");
    let route = String::from_utf8(
        lab.exec(1, &["ip", "route", "show", "default"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(route.contains("via 192.168.1.253 dev eth0"), "{route}");
    let docker0 = String::from_utf8(
        lab.exec(2, &["ip", "-4", "-o", "addr", "show", "docker0"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(docker0.contains("10.1.0.1/24"), "{docker0}");
    // Hosts start like a fresh instance (no forwarding), so dockerd turns forwarding on itself and sets
    // the FORWARD policy to DROP, as it does on a real host.
    let forward = String::from_utf8(
        lab.exec(1, &["iptables", "-w", "-S", "FORWARD"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(forward.lines().any(|l| l == "-P FORWARD DROP"), "{forward}");
    // The metadata service answers a host with its own identity, through the vRouter.
    let id = lab
        .exec(
            2,
            &[
                "curl",
                "-s",
                "-m",
                "5",
                "http://100.100.100.200/latest/meta-data/instance-id",
            ],
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        lab.host(2).instance_id
    );
    // `exec` gives the host's dockerd, and the status JSON has the contract fields.
    let ps = lab
        .exec(
            1,
            &[
                "sh",
                "-c",
                "docker info --format '{{.Name}} {{.ServerVersion}}'",
            ],
        )
        .unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("20.10"),
        "{ps:?}"
    );
    let status = serde_json::to_value(lab.status()).unwrap();
    assert_eq!(status["name"], name.as_str());
    assert_eq!(
        status["hosts"][1]["docker_host"],
        lab.host(2).docker_host.clone().unwrap()
    );
    assert!(status["admin_access_key_id"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
    assert_eq!(status["emulator"], "running");

    // A container, so the clean-up has a shim, a container process, overlay and netns mounts to remove.
    let c = lab
        .run_container(1, "c1", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    assert!(c.ip.starts_with("10.0.0."));

    // The emulator restarts from its state file: same VPC, same instances.
    let mut lab = lab;
    let vpc = lab.state().vpc_id.clone();
    lab.emulator_stop().unwrap();
    assert_eq!(lab.status().emulator, "stopped");
    lab.emulator_start().unwrap();
    let status = lab.status();
    assert_eq!(status.emulator, "running");
    assert_eq!(status.vpc_id, vpc);
    let instances = lab
        .admin_sync(|c| async move { c.instances().await })
        .unwrap();
    assert!(instances
        .iter()
        .any(|i| i.instance_id == lab.host(2).instance_id));

    // "Crash": the builder goes away without taking the lab down; `down` by name still removes it all.
    let state = lab.keep();
    assert!(Lab::load(&name).is_ok());
    let t = Instant::now();
    lab::down(&name).unwrap();
    eprintln!("down: {:?}", t.elapsed());
    assert!(!procs::alive(c.pid));
    assert_gone(&name);
    assert!(!state.dir.exists());
    // Idempotent.
    lab::down(&name).unwrap();
    assert!(Lab::load(&name).is_err());
}

#[test]
fn a_second_up_with_the_same_name_is_refused_and_drop_removes_the_lab() {
    if !root_or_skip() {
        return;
    }
    let name = unique_lab_name();
    let mut opts = options(&name, DockerVersion::V20);
    opts.hosts = 1;
    {
        let _lab = Lab::up(opts.clone()).unwrap();
        let err = Lab::up(opts).unwrap_err().to_string();
        assert!(
            err.contains("already exists") && err.contains("lab down"),
            "{err}"
        );
        assert!(
            Path::new(&lab::lab_dir(&name)).exists(),
            "a refused up must not touch the existing lab"
        );
    }
    assert_gone(&name);
}

/// Lets cluster traffic through a host by hand: keeps the container source address towards the cluster
/// (no MASQUERADE), accepts forwarded cluster traffic to the local subnet, and on Docker 28 exempts it from
/// the raw-table drop. What the agent does, done here only to test the lab's data plane.
fn allow_by_hand(lab: &Lab, index: usize) {
    let subnet = lab.host(index).subnet.clone();
    let rules: Vec<Vec<&str>> = vec![
        vec![
            "iptables",
            "-w",
            "-t",
            "nat",
            "-I",
            "POSTROUTING",
            "-s",
            &subnet,
            "-d",
            "10.0.0.0/8",
            "-j",
            "RETURN",
        ],
        vec![
            "iptables",
            "-w",
            "-I",
            "DOCKER-USER",
            "-s",
            "10.0.0.0/8",
            "-d",
            &subnet,
            "-j",
            "ACCEPT",
        ],
        vec![
            "iptables",
            "-w",
            "-t",
            "raw",
            "-I",
            "PREROUTING",
            "-s",
            "10.0.0.0/8",
            "-d",
            &subnet,
            "-j",
            "ACCEPT",
        ],
    ];
    for rule in rules {
        lab.exec(index, &rule).unwrap();
    }
}

fn data_plane_follows_the_route_table(docker: DockerVersion) {
    let name = unique_lab_name();
    let mut opts = options(&name, docker);
    opts.source_dest_check = false; // the agent would turn it off through the ECS API
    let started = Instant::now();
    let lab = Lab::up(opts).unwrap();
    eprintln!("docker {docker}: up in {:?}", started.elapsed());
    let c1 = lab
        .run_container(1, "c1", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    let c2 = lab
        .run_container(2, "c2", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    assert!(
        c1.ip.starts_with("10.0.0.") && c2.ip.starts_with("10.1.0."),
        "{c1:?} {c2:?}"
    );
    demo::start_receiver(&lab, 2, "c2").unwrap();
    for i in [1, 2] {
        allow_by_hand(&lab, i);
    }

    // No routes in the table: the vRouter has nowhere to send 10.1.0.0/24.
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "ping worked without routes"
    );

    // Routes in the table: the vRouter forwards, and the receiver sees the sender's container IP.
    let mut ids = Vec::new();
    for i in [1, 2] {
        let req = PutRoute {
            destination_cidr_block: Some(lab.host(i).subnet.parse().unwrap()),
            next_hop_id: lab.host(i).instance_id.clone(),
            ..PutRoute::default()
        };
        let entry = lab
            .admin_sync(move |c| async move { c.put_route(&req).await })
            .unwrap();
        ids.push(entry.route_entry_id);
    }
    wait_applied(&lab, 2);
    assert!(
        demo::ping(&lab, 1, "c1", &c2.ip).unwrap(),
        "ping failed with the routes in place"
    );
    let seen = demo::tcp_exchange(&lab, 1, "c1", 2, "c2", &c2.ip).unwrap();
    assert_eq!(
        seen.as_deref(),
        Some(c1.ip.as_str()),
        "the receiver must see the sender's container IP"
    );
    let status = lab.status();
    assert_eq!(status.routes.len(), 2);
    assert!(status.routes.iter().all(|r| r.status == "Available"));
    // The demo's own steps pass on this data plane (its containers, its receivers, its table).
    let mut out = Vec::new();
    let report = demo::run_on(&lab, Duration::from_secs(10), &mut out)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", String::from_utf8_lossy(&out)));
    assert!(report.passed());
    let printed = String::from_utf8_lossy(&out);
    assert!(
        printed.contains("the receiver saw the sender's container IP"),
        "{printed}"
    );
    assert!(printed.contains("Available"), "{printed}");

    // Routes removed: traffic stops again.
    for id in ids {
        lab.admin_sync(move |c| async move { c.delete_route(&id).await })
            .unwrap();
    }
    wait_applied(&lab, 0);
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "ping worked after the routes were removed"
    );
    assert_eq!(
        demo::tcp_exchange(&lab, 1, "c1", 2, "c2", &c2.ip).unwrap(),
        None
    );
    drop(lab);
    assert_gone(&name);
    eprintln!("docker {docker}: whole test {:?}", started.elapsed());
}

/// Waits until the vRouter's kernel routes match the table (`want` custom routes, i.e. routes via an
/// instance, in the kernel table of the lab's one route table).
fn wait_applied(lab: &Lab, want: usize) {
    let vr = Netns::open(&lab.state().vr_netns).unwrap();
    let ok = wait_for(Duration::from_secs(15), || {
        let routes = vr
            .exec_stdout(&["ip", "-4", "route", "show", "table", "all", "proto", "250"])
            .ok()?;
        (routes.lines().filter(|l| l.contains(" via ")).count() == want).then_some(())
    });
    assert!(
        ok.is_some(),
        "the vRouter did not converge to {want} routes"
    );
}

#[test]
fn containers_talk_across_hosts_exactly_when_routed_docker_20() {
    if !root_or_skip() {
        return;
    }
    data_plane_follows_the_route_table(DockerVersion::V20);
}

#[test]
fn containers_talk_across_hosts_exactly_when_routed_docker_28() {
    if !root_or_skip() {
        return;
    }
    data_plane_follows_the_route_table(DockerVersion::V28);
}

#[test]
fn the_source_destination_check_drops_container_traffic_until_turned_off() {
    if !root_or_skip() {
        return;
    }
    let name = unique_lab_name();
    let lab = Lab::up(options(&name, DockerVersion::V20)).unwrap(); // check on, as Alibaba creates instances
    let c2 = lab
        .run_container(2, "c2", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    lab.run_container(1, "c1", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    for i in [1, 2] {
        allow_by_hand(&lab, i);
        let req = PutRoute {
            destination_cidr_block: Some(lab.host(i).subnet.parse().unwrap()),
            next_hop_id: lab.host(i).instance_id.clone(),
            ..PutRoute::default()
        };
        lab.admin_sync(move |c| async move { c.put_route(&req).await })
            .unwrap();
    }
    wait_applied(&lab, 2);
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "the ENI check must drop a container source"
    );
    // Host to host traffic is untouched by the check.
    lab.exec(
        1,
        &["busybox", "ping", "-c", "1", "-W", "2", "192.168.1.12"],
    )
    .unwrap();
}

/// The end-to-end statement: with the agents running, containers on different hosts talk by
/// their own IPs (the agents register the routes, turn the ENI check off and open the hosts); with the
/// agents stopped and the routes removed, they do not.
fn agents_make_containers_talk(docker: DockerVersion) {
    let name = unique_lab_name();
    let mut opts = options(&name, docker);
    opts.agents = true;
    opts.emulator_settings = Some(crossdock_vpcsim::admin::Settings {
        pending_ms: 500,
        ..Default::default()
    });
    let started = Instant::now();
    let mut lab = Lab::up(opts).unwrap();
    let c1 = lab
        .run_container(1, "c1", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    let c2 = lab
        .run_container(2, "c2", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    demo::start_receiver(&lab, 2, "c2").unwrap();
    for h in ["h1", "h2"] {
        lab.wait_agent_ready(h, Duration::from_secs(60)).unwrap();
    }
    let mut log = Vec::new();
    let (routed, status) = demo::wait_routes(&lab, Duration::from_secs(60), &mut log);
    assert!(routed, "routes not Available: {}", demo::table(&status));
    assert!(
        demo::ping(&lab, 1, "c1", &c2.ip).unwrap(),
        "ping failed with the agents running"
    );
    let seen = demo::tcp_exchange(&lab, 1, "c1", 2, "c2", &c2.ip).unwrap();
    assert_eq!(seen.as_deref(), Some(c1.ip.as_str()));
    eprintln!(
        "docker {docker}: agents converged in {:?}",
        started.elapsed()
    );

    for h in ["h1", "h2"] {
        lab.agent_stop(h).unwrap();
    }
    let routes = lab.status().routes;
    for r in routes {
        let id = r.route_entry_id;
        lab.admin_sync(move |c| async move { c.delete_route(&id).await })
            .unwrap();
    }
    wait_applied(&lab, 0);
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "ping worked with the agents stopped and no routes"
    );
}

#[test]
fn agents_make_containers_talk_docker_20() {
    if !root_or_skip() {
        return;
    }
    agents_make_containers_talk(DockerVersion::V20);
}

#[test]
fn agents_make_containers_talk_docker_28() {
    if !root_or_skip() {
        return;
    }
    agents_make_containers_talk(DockerVersion::V28);
}

/// Puts an Available route to host `to`'s subnet into `table` behind the API's back; its entry id.
fn put_route_in(lab: &Lab, table: &str, to: usize) -> String {
    let req = PutRoute {
        route_table_id: Some(table.to_string()),
        destination_cidr_block: Some(lab.host(to).subnet.parse().unwrap()),
        next_hop_id: lab.host(to).instance_id.clone(),
        ..PutRoute::default()
    };
    lab.admin_sync(move |c| async move { c.put_route(&req).await })
        .unwrap()
        .route_entry_id
}

/// Waits until the emulator applied its latest state to the vRouter without error.
fn wait_dataplane(lab: &Lab) {
    let ok = wait_for(Duration::from_secs(15), || {
        let d = lab
            .admin_sync(|c| async move { c.dataplane().await })
            .ok()?;
        (d.applied_generation >= d.wanted_generation && d.last_error.is_none()).then_some(())
    });
    assert!(
        ok.is_some(),
        "the vRouter did not apply the emulator's state"
    );
}

/// A lab with two vSwitches (zones): hosts spread over them on their own bridges and gateways, each
/// vSwitch's traffic routed by its own table (system / custom), a missing entry in one table drops
/// exactly what that table routes, and binding a new table takes over a vSwitch's traffic.
#[test]
fn zones_route_each_vswitch_by_its_own_table() {
    if !root_or_skip() {
        return;
    }
    let name = unique_lab_name();
    let mut opts = options(&name, DockerVersion::V20);
    opts.hosts = 3;
    opts.vswitches = 2;
    opts.source_dest_check = false;
    let started = Instant::now();
    let mut lab = Lab::up(opts).unwrap();
    eprintln!("zones: up in {:?}", started.elapsed());

    // Layout: h1, h3 on vsw1 (bridge vsw), h2 on vsw2 (bridge vsw2), each via its own gateway.
    let vr = Netns::open(&lab.state().vr_netns).unwrap();
    let ports = |bridge: &str| {
        vr.exec_stdout(&["ip", "-o", "link", "show", "master", bridge])
            .unwrap()
    };
    let (vsw, vsw2) = (ports("vsw"), ports("vsw2"));
    assert!(vsw.contains("p-h1") && vsw.contains("p-h3") && !vsw.contains("p-h2"));
    assert!(vsw2.contains("p-h2") && !vsw2.contains("p-h1"), "{vsw2}");
    assert_eq!(lab.host(2).private_ip, "192.168.2.12");
    assert_eq!(lab.host(3).private_ip, "192.168.1.13");
    let route = String::from_utf8(
        lab.exec(2, &["ip", "route", "show", "default"])
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(route.contains("via 192.168.2.253"), "{route}");
    // The metadata service tells h2 its own vSwitch and zone.
    let vsw2_id = lab.vswitch("vsw2").unwrap().vswitch_id;
    let md = |item: &str| {
        let url = format!("http://100.100.100.200/latest/meta-data/{item}");
        String::from_utf8(
            lab.exec(2, &["curl", "-s", "-m", "5", &url])
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    assert_eq!(md("vswitch-id"), vsw2_id);
    assert_eq!(md("zone-id"), "cn-hangzhou-i");
    assert_eq!(md("vswitch-cidr-block"), "192.168.2.0/24");
    // The status names each host's vSwitch and table: vsw1 on the system table, vsw2 on a custom one.
    let status = lab.status();
    let system = lab.state().route_table_id.clone();
    let custom = status.vswitches[1].route_table_id.clone();
    assert_eq!(status.vswitches[0].route_table_id, system);
    assert_eq!(status.vswitches[1].route_table_type, "Custom");
    let hosts: Vec<(&str, &str)> = status
        .hosts
        .iter()
        .map(|h| (h.vswitch.as_str(), h.route_table_id.as_str()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("vsw1", system.as_str()),
            ("vsw2", &custom),
            ("vsw1", &system)
        ]
    );
    // Hosts reach each other across the vSwitches (the system routes of every table).
    lab.exec(
        1,
        &["busybox", "ping", "-c", "1", "-W", "2", "192.168.2.12"],
    )
    .unwrap();

    // Containers: routes for both subnets in both tables, traffic both ways, source kept.
    let c1 = lab
        .run_container(1, "c1", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    let c2 = lab
        .run_container(2, "c2", &[BUSYBOX_IMAGE, "sleep", "3600"])
        .unwrap();
    for i in [1, 2] {
        allow_by_hand(&lab, i);
    }
    demo::start_receiver(&lab, 1, "c1").unwrap();
    demo::start_receiver(&lab, 2, "c2").unwrap();
    let mut in_custom = BTreeMap::new();
    for to in [1, 2] {
        put_route_in(&lab, &system, to);
        in_custom.insert(to, put_route_in(&lab, &custom, to));
    }
    wait_dataplane(&lab);
    assert!(demo::ping(&lab, 1, "c1", &c2.ip).unwrap(), "c1 -> c2");
    assert!(demo::ping(&lab, 2, "c2", &c1.ip).unwrap(), "c2 -> c1");
    let seen = demo::tcp_exchange(&lab, 2, "c2", 1, "c1", &c1.ip).unwrap();
    assert_eq!(seen.as_deref(), Some(c2.ip.as_str()));

    // h1's route gone from the custom table: what vsw2 sends to c1 is dropped (and so are c2's
    // answers to c1), although the system table still has the route.
    let id = in_custom[&1].clone();
    lab.admin_sync(move |c| async move { c.delete_route(&id).await })
        .unwrap();
    wait_dataplane(&lab);
    assert!(!demo::ping_once(&lab, 2, "c2", &c1.ip).unwrap(), "c2 -> c1");
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "c1 -> c2 (reply)"
    );
    put_route_in(&lab, &custom, 1);
    wait_dataplane(&lab);
    assert!(demo::ping(&lab, 2, "c2", &c1.ip).unwrap(), "restored");

    // A new, empty custom table bound to vsw1 takes over its traffic: nothing routes to c2 until the
    // table has the route; unbinding gives vsw1 back to the system table.
    let t3 = lab.table_create(&[]).unwrap().route_table_id;
    lab.table_bind(&t3, "vsw1").unwrap();
    assert_eq!(lab.table_of_vswitch("vsw1").unwrap(), t3);
    wait_dataplane(&lab);
    assert!(
        !demo::ping_once(&lab, 1, "c1", &c2.ip).unwrap(),
        "t3 is empty"
    );
    put_route_in(&lab, &t3, 2);
    put_route_in(&lab, &t3, 1);
    wait_dataplane(&lab);
    assert!(
        demo::ping(&lab, 1, "c1", &c2.ip).unwrap(),
        "t3 has the routes"
    );
    let rules = vr.exec_stdout(&["ip", "rule", "show"]).unwrap();
    assert_eq!(rules.matches("iif vsw lookup").count(), 1, "{rules}");
    let e = lab.table_bind(&custom, "vsw1").unwrap_err();
    assert!(e.chain().any(|c| c.is::<lab::InputError>()), "{e:#}");
    lab.table_unbind(&t3, "vsw1").unwrap();
    assert_eq!(lab.table_of_vswitch("vsw1").unwrap(), system);

    // A host added to vsw2 gets an address and gateway there.
    let h4 = lab
        .host_add(&lab::HostAdd {
            no_docker: true,
            vswitch: Some("vsw2".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        (h4.vswitch.as_str(), h4.private_ip.as_str()),
        ("vsw2", "192.168.2.11")
    );
    assert!(ports("vsw2").contains("p-h4"));
    drop(lab);
    assert_gone(&name);
}
