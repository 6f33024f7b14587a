//! Root-gated: `crossdock doctor` in the lab (crossdock_lab::Lab: the VPC emulator behind
//! 100.100.100.200/201 in a vRouter namespace, two hosts with Docker 28 and the agent).
//!
//! The agents set everything up (rules, forwarding, the VPC route, the source/destination check),
//! then are stopped so that nothing repairs a breakage behind doctor's back; the kernel and VPC
//! state they left stays. Host h1 starts with its ENI's source/destination check on (its agent only
//! reports it), which must be the one failure; once it is off, each case breaks one thing through
//! the emulator's admin API or the environment (route deleted, route Pending, conflicting route,
//! metadata down, expired STS credentials) and on the host (forwarding off, Docker 28's raw drop
//! uncovered), and asserts that doctor names exactly that check with its fix.

mod common;

use common::{doctor_json, make_nat_exemption_final, not_ok, only};
use crossdock_config::SourceDestCheck;
use crossdock_doctor::model::Status;
use crossdock_lab::dockerd::DockerVersion;
use crossdock_lab::lab::{AgentConfigHook, Lab, LabOptions};
use crossdock_lab::netns::Netns;
use crossdock_vpcsim::admin::{CreateAccessKey, Faults, PutRoute, SetRouteStatus};
use crossdock_vpcsim::model::RouteStatus;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Polls `f` until it returns `Some`, for at most `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `expected` plus fleet mode's checks, skipped in this per-host lab (they follow `fleet.mode`).
fn per_host(expected: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    // Per-host mode without `[names]`: the fleet and names checks are skipped.
    let fleet = crossdock_doctor::fleet_checks::defs();
    let names = crossdock_doctor::names_checks::defs();
    expected
        .iter()
        .copied()
        .chain(fleet.iter().chain(names.iter()).map(|d| (d.id, "skip")))
        .collect()
}

fn doctor(lab: &Lab, env: &[(&str, &str)], extra: &[&str]) -> Value {
    let bin = crossdock_lab::testing::crossdock_bin().unwrap();
    let bin = bin.display().to_string();
    let mut argv = vec![bin.as_str(), "doctor", "--json"];
    argv.extend_from_slice(extra);
    let mut cmd = lab.command(1, &argv);
    cmd.envs(env.iter().copied());
    doctor_json(cmd)
}

/// h1's own route entry, once it is Available.
fn h1_route(lab: &Lab) -> Option<String> {
    let h1 = lab.host(1).instance_id.clone();
    lab.status()
        .routes
        .into_iter()
        .find(|r| r.next_hop_id == h1 && r.status == "Available")
        .map(|r| r.route_entry_id)
}

fn h1_source_dest_check(lab: &Lab) -> bool {
    let id = lab.host(1).instance_id.clone();
    lab.admin_sync(move |a| async move { a.instances().await })
        .unwrap()
        .into_iter()
        .find(|i| i.instance_id == id)
        .unwrap()
        .source_dest_check
}

#[test]
fn doctor_names_each_breakage_in_the_lab() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::up(LabOptions {
        name: crossdock_lab::testing::unique_lab_name(),
        hosts: 2,
        docker: DockerVersion::V28,
        agents: true,
        crossdock_bin: crossdock_lab::testing::crossdock_bin().unwrap(),
        source_dest_check: true,
        agent_config: Some(AgentConfigHook::new(|index, cfg| {
            if index == 1 {
                cfg.cloud.source_dest_check = SourceDestCheck::Report;
            }
        })),
        ..LabOptions::default()
    })
    .unwrap();
    lab.wait_agent_ready("h2", Duration::from_secs(60)).unwrap();
    let route_id = wait_for(Duration::from_secs(60), "h1's route", || h1_route(&lab));
    lab.run_container(1, "c1", &["busybox:lab", "sleep", "3600"])
        .unwrap();
    let h2_ip = lab.host(2).bip.clone().unwrap();
    let h2_gateway = h2_ip.split('/').next().unwrap().to_string();
    // Wait until h1's agent has seen the container (Docker 28's raw drop is covered), then stop the
    // agents: from here on, nothing repairs anything behind doctor's back.
    wait_for(Duration::from_secs(30), "h1's firewall condition", || {
        let (_, detail) = lab.agent_health("h1");
        (!detail.contains("firewall: pending")).then_some(())
    });
    lab.agent_stop("h1").unwrap();
    lab.agent_stop("h2").unwrap();
    let h1 = Netns::open(&lab.host(1).netns).unwrap();
    make_nat_exemption_final(&h1);
    // The lab's namespaces inherit forwarding from the root namespace, so Docker left FORWARD's
    // policy ACCEPT; a real host's Docker turns forwarding on itself and sets DROP.
    h1.exec(&["iptables", "-P", "FORWARD", "DROP"]).unwrap();

    // The ENI's source/destination check is on: that is the one failure.
    assert!(h1_source_dest_check(&lab));
    let first = doctor(&lab, &[], &[]);
    not_ok(
        &first,
        &per_host(&[
            ("agent.status", "warn"),
            ("cloud.permission.DeleteRouteEntry", "skip"),
            ("cloud.source-dest-check", "fail"),
        ]),
    );
    let sdc = &common::statuses(&first)["cloud.source-dest-check"].1;
    assert!(sdc["fix"]
        .as_str()
        .unwrap()
        .contains("cloud.source_dest_check = \"report\""));

    // Let h1's agent switch it off, as configured by default, then stop it again.
    let config = lab.host(1).agent_config.clone();
    let mut cfg = crossdock_config::load(&config).unwrap();
    cfg.cloud.source_dest_check = SourceDestCheck::Disable;
    std::fs::write(&config, cfg.to_toml()).unwrap();
    lab.agent_start("h1").unwrap();
    wait_for(Duration::from_secs(60), "the check switched off", || {
        (!h1_source_dest_check(&lab)).then_some(())
    });
    lab.agent_stop("h1").unwrap();
    make_nat_exemption_final(&h1);

    let base = doctor(&lab, &[], &[]);
    not_ok(
        &base,
        &per_host(&[
            ("agent.status", "warn"),
            ("cloud.permission.DeleteRouteEntry", "skip"),
        ]),
    );
    // The probe to h2's bridge: through the VPC route and back, with the container source kept.
    let probe = doctor(&lab, &[], &["--probe", &h2_gateway])["probe"].clone();
    assert_eq!(probe["ok"], true, "{probe:#}");
    assert_eq!(probe["masqueraded"], false, "{probe:#}");

    // The route deleted from the table.
    let id = route_id.clone();
    lab.admin_sync(move |a| async move { a.delete_route(&id).await })
        .unwrap();
    let now = doctor(&lab, &[], &[]);
    only(
        &base,
        &now,
        "cloud.route",
        Status::Fail,
        "aliyun vpc CreateRouteEntry",
    );
    // Put back as the agent made it (marker and all), Available.
    let instance = lab.host(1).instance_id.clone();
    let subnet = lab.host(1).subnet.clone();
    let restored = lab
        .admin_sync(move |a| async move {
            a.put_route(&PutRoute {
                destination_cidr_block: Some(subnet.parse().unwrap()),
                next_hop_id: instance.clone(),
                route_entry_name: "crossdock".into(),
                description: format!("crossdock:{instance}"),
                ..PutRoute::default()
            })
            .await
        })
        .unwrap()
        .route_entry_id;

    // The route Pending.
    let id = restored.clone();
    lab.admin_sync(move |a| async move {
        a.set_route_status(
            &id,
            &SetRouteStatus {
                status: RouteStatus::Pending,
                status_for_ms: None,
            },
        )
        .await
    })
    .unwrap();
    let now = doctor(&lab, &[], &[]);
    let c = only(&base, &now, "cloud.route", Status::Fail, "wait for the VPC");
    assert!(c["evidence"].as_str().unwrap().contains("Pending"), "{c:#}");
    let id = restored.clone();
    lab.admin_sync(move |a| async move {
        a.set_route_status(
            &id,
            &SetRouteStatus {
                status: RouteStatus::Available,
                status_for_ms: None,
            },
        )
        .await
    })
    .unwrap();

    // A conflicting route: part of h1's subnet pointed at h2.
    let h2 = lab.host(2).instance_id.clone();
    let h1_subnet: ipnet::Ipv4Net = lab.host(1).subnet.parse().unwrap();
    let part = h1_subnet.subnets(25).unwrap().nth(1).unwrap().to_string();
    let steal = part.clone();
    let conflict = lab
        .admin_sync(move |a| async move {
            a.put_route(&PutRoute {
                destination_cidr_block: Some(steal.parse().unwrap()),
                next_hop_id: h2,
                ..PutRoute::default()
            })
            .await
        })
        .unwrap()
        .route_entry_id;
    let now = doctor(&lab, &[], &[]);
    let c = only(
        &base,
        &now,
        "cloud.route-conflicts",
        Status::Fail,
        "DeleteRouteEntry",
    );
    assert!(c["evidence"].as_str().unwrap().contains(&part), "{c:#}");
    lab.admin_sync(move |a| async move { a.delete_route(&conflict).await })
        .unwrap();

    // The metadata service down.
    lab.admin_sync(|a| async move {
        a.set_faults(&Faults {
            metadata_down: true,
            ..Faults::default()
        })
        .await
    })
    .unwrap();
    let now = doctor(&lab, &[], &[]);
    only(&base, &now, "cloud.metadata", Status::Fail, "metadata");
    lab.admin_sync(|a| async move { a.reset_faults().await })
        .unwrap();

    // Expired STS credentials in the environment.
    let key = lab
        .admin_sync(|a| async move {
            a.create_access_key(&CreateAccessKey {
                security_token: Some("CAIS-expired".into()),
                expires_in_secs: Some(-120),
                ..CreateAccessKey::default()
            })
            .await
        })
        .unwrap();
    let token = key.security_token.clone().unwrap();
    let now = doctor(
        &lab,
        &[
            ("ALIBABA_CLOUD_ACCESS_KEY_ID", key.access_key_id.as_str()),
            (
                "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                key.access_key_secret.as_str(),
            ),
            ("ALIBABA_CLOUD_SECURITY_TOKEN", token.as_str()),
        ],
        &[],
    );
    let c = only(&base, &now, "cloud.credentials", Status::Fail, "STS token");
    assert!(c["evidence"].as_str().unwrap().contains("Expired"), "{c:#}");

    // Forwarding off on the host.
    h1.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        .unwrap();
    let now = doctor(&lab, &[], &[]);
    only(
        &base,
        &now,
        "forwarding.ip-forward",
        Status::Fail,
        "sysctl -w net.ipv4.ip_forward=1",
    );
    h1.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .unwrap();

    // Docker 28's raw drop for the container uncovered.
    h1.exec(&[
        "iptables",
        "-t",
        "raw",
        "-D",
        "PREROUTING",
        "-m",
        "comment",
        "--comment",
        "crossdock:jump",
        "-j",
        "CROSSDOCK-PREROUTING",
    ])
    .unwrap();
    let now = doctor(&lab, &[], &[]);
    only(
        &base,
        &now,
        "firewall.raw-exemption",
        Status::Fail,
        "iptables -t raw -I PREROUTING 1",
    );
    eprintln!("lab doctor cases took {:?}", started.elapsed());
}

/// Fleet mode in the lab: two hosts from one configuration, each Docker's subnet written by
/// `crossdock init`, the agents keeping both members' routes. Doctor on h1 passes every fleet check
/// against the real metadata service (the VPC CIDR is the host range), the real dockerd and the
/// emulator; untagging h1's instance then fails exactly `fleet.tag`, with the tagging command.
#[test]
fn doctor_checks_a_fleet_member_in_the_lab() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let started = Instant::now();
    let mut lab = Lab::up(LabOptions {
        name: crossdock_lab::testing::unique_lab_name(),
        hosts: 2,
        docker: DockerVersion::V28,
        agents: true,
        fleet: true,
        crossdock_bin: crossdock_lab::testing::crossdock_bin().unwrap(),
        ..LabOptions::default()
    })
    .unwrap();
    lab.wait_agent_ready("h1", Duration::from_secs(60)).unwrap();
    lab.wait_agent_ready("h2", Duration::from_secs(60)).unwrap();
    let ids = [
        lab.host(1).instance_id.clone(),
        lab.host(2).instance_id.clone(),
    ];
    wait_for(Duration::from_secs(60), "both members' routes", || {
        let routes = lab.status().routes;
        ids.iter()
            .all(|id| {
                routes
                    .iter()
                    .any(|r| &r.next_hop_id == id && r.status == "Available")
            })
            .then_some(())
    });
    // From here on nothing repairs anything behind doctor's back.
    lab.agent_stop("h1").unwrap();
    lab.agent_stop("h2").unwrap();

    let base = doctor(&lab, &[], &[]);
    let s = common::statuses(&base);
    for def in crossdock_doctor::fleet_checks::defs() {
        let (status, check) = &s[def.id];
        assert_eq!(status, "ok", "{}: {check:#}", def.id);
    }
    assert_eq!(s["cloud.route-quota"].0, "ok");
    let members = s["fleet.members"].1["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        members.contains("2 member(s)") && members.contains("2 in place, 0 missing"),
        "{members}"
    );
    let mapping = s["fleet.mapping"].1["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        mapping.contains(&format!("{} -> ", lab.host(1).private_ip))
            && mapping.contains("the VPC CIDR"),
        "{mapping}"
    );

    let id = ids[0].clone();
    lab.admin_sync(move |a| async move { a.set_instance_tags(&id, &[]).await })
        .unwrap();
    let now = doctor(&lab, &[], &[]);
    let c = only(&base, &now, "fleet.tag", Status::Fail, "TagResources");
    assert!(
        c["evidence"].as_str().unwrap().contains("has no tags"),
        "{c:#}"
    );
    eprintln!("lab fleet doctor case took {:?}", started.elapsed());
}
