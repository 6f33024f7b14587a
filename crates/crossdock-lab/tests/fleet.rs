//! Root-gated fleet-mode lab tests: hosts come up from one identical agent configuration (the one
//! deploy/cloud-init/user-data.yaml writes) with subnets derived by `crossdock init`, and adding,
//! stopping, starting and releasing hosts changes what ECS `DescribeInstances` answers, asked with a
//! signed request as an agent asks it.
//!
//! The agents are off: the fleet's route logic is tested end to end elsewhere; here the lab's part is
//! checked (instances, tags, configurations, init, dockerd, the host lifecycle).

use crossdock_lab::lab::{self, Lab, LabOptions};
use crossdock_lab::netns::Netns;
use crossdock_lab::testing::{crossdock_bin, root_or_skip, unique_lab_name};
use crossdock_lab::{procs, LabState};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const USER_DATA: &str = include_str!("../../../deploy/cloud-init/user-data.yaml");

/// ECS `DescribeInstances` through the emulator's API socket, signed (signature v1, all in the query)
/// with the lab's admin AccessKey.
fn describe_instances(state: &LabState, params: &[(&str, &str)]) -> Value {
    let mut p: Vec<(String, String)> = [
        ("AccessKeyId", state.admin_access_key_id.as_str()),
        ("Action", "DescribeInstances"),
        ("Format", "JSON"),
        ("RegionId", state.region_id.as_str()),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("Version", "2014-05-26"),
    ]
    .iter()
    .chain(params)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let now = chrono_now();
    p.push(("Timestamp".into(), now.0));
    p.push(("SignatureNonce".into(), now.1));
    let sig = crossdock_acs3::v1_signature("GET", &p, &state.admin_access_key_secret);
    p.push(("Signature".into(), sig));
    let path = format!("/?{}", crossdock_acs3::canonical_query(&p));
    let r = crossdock_lab::http::get(&state.api_socket, &path, std::time::Duration::from_secs(10))
        .expect("the emulator answers");
    let v: Value = serde_json::from_slice(&r.body).expect("JSON");
    assert_eq!(r.status, 200, "{v}");
    v
}

/// (`YYYY-MM-DDTHH:MM:SSZ` now, a fresh nonce).
fn chrono_now() -> (String, String) {
    let ms = crossdock_vpcsim::model::now_ms();
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    (
        crossdock_vpcsim::model::iso(ms),
        format!("fleet-{}-{ms}-{n}", std::process::id()),
    )
}

/// The fleet as an agent sees it: (instance id, status) of the instances with the lab's tag.
fn members(state: &LabState) -> Vec<(String, String)> {
    let tag = state.fleet_tag.as_deref().expect("a fleet lab");
    let (key, value) = tag.split_once('=').unwrap();
    let r = describe_instances(
        state,
        &[
            ("VpcId", &state.vpc_id),
            ("Tag.1.Key", key),
            ("Tag.1.Value", value),
            ("MaxResults", "100"),
        ],
    );
    r["Instances"]["Instance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["InstanceId"].as_str().unwrap().to_string(),
                i["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn docker0(lab: &Lab, index: usize) -> String {
    let out = lab
        .exec(index, &["ip", "-4", "-o", "addr", "show", "docker0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bip_of(dir: &Path) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("daemon.json")).unwrap()).unwrap();
    v["bip"].as_str().unwrap_or_default().to_string()
}

/// Nothing of lab `name` is left.
fn assert_gone(name: &str) {
    let dir = lab::lab_dir(name);
    assert!(Netns::list_with_prefix(&format!("cdl-{name}-")).is_empty());
    assert!(procs::pids_with_cmdline_containing(&format!("{}/", dir.display())).is_empty());
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn three_hosts_come_up_from_the_user_data_configuration_with_derived_subnets() {
    if !root_or_skip() {
        return;
    }
    let started = Instant::now();
    let agent_toml =
        crossdock_init::userdata::write_files_content(USER_DATA, "/etc/crossdock/agent.toml")
            .expect("deploy/cloud-init/user-data.yaml writes /etc/crossdock/agent.toml");
    let lab = Lab::up(LabOptions {
        name: unique_lab_name(),
        hosts: 3,
        agents: false,
        fleet: true,
        agent_config_text: Some(agent_toml.clone()),
        crossdock_bin: crossdock_bin().expect("the crossdock binary"),
        ..LabOptions::default()
    })
    .unwrap();
    eprintln!("fleet up: {:?}", started.elapsed());

    // Every host got its own subnet from `crossdock init`, the one the shared configuration maps its
    // private IP to, and its dockerd runs with it.
    let shared = lab.fleet_config().unwrap();
    let vpc: ipnet::Ipv4Net = "192.168.0.0/16".parse().unwrap();
    let mut subnets = vec![];
    for h in lab.hosts() {
        let want = shared
            .derived_subnet(h.private_ip.parse().unwrap(), Some(vpc))
            .unwrap();
        assert_eq!(h.subnet, want.to_string(), "{}", h.name);
        let bip = bip_of(&h.dir);
        assert_eq!(lab::subnet_of_bip(&bip).unwrap(), want.to_string());
        assert!(
            docker0(&lab, h.index).contains(&bip),
            "{}: docker0 without {bip}",
            h.name
        );
        subnets.push(h.subnet.clone());
    }
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 3, "distinct subnets");

    // One configuration: each host's is the user data's, with only the lab's overrides.
    let mut given = crossdock_config::parse(&agent_toml).unwrap();
    lab::apply_lab_endpoints(&mut given);
    for h in lab.hosts() {
        let mut c = crossdock_config::load(&h.agent_config).unwrap();
        assert_eq!(c.health_socket, h.agent_socket);
        c.health_socket = given.health_socket.clone();
        c.docker.host = given.docker.host.clone();
        assert_eq!(c, given, "{} runs the user data's configuration", h.name);
    }

    // The fleet is what DescribeInstances lists under the configuration's tag.
    let tag = shared.fleet.tag.as_ref().map(ToString::to_string);
    assert_eq!(
        lab.state().fleet_tag,
        Some(tag.unwrap_or_else(|| lab::default_fleet_tag(lab.name())))
    );
    let mut listed = members(lab.state());
    listed.sort();
    let mut want: Vec<(String, String)> = lab
        .hosts()
        .iter()
        .map(|h| (h.instance_id.clone(), "Running".to_string()))
        .collect();
    want.sort();
    assert_eq!(listed, want);
    let status = lab.status();
    assert!(status.hosts.iter().all(|h| h.instance_status == "Running"
        && h.tags.contains(lab.state().fleet_tag.as_ref().unwrap())));
    let name = lab.name().to_string();
    drop(lab);
    assert_gone(&name);
    eprintln!("whole test: {:?}", started.elapsed());
}

fn crossdock(args: &[&str]) -> Output {
    Command::new(crossdock_bin().expect("the crossdock binary"))
        .args(args)
        .output()
        .expect("crossdock runs")
}

fn ok(args: &[&str]) -> String {
    let out = crossdock(args);
    assert!(
        out.status.success(),
        "crossdock {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_json(name: &str) -> Value {
    serde_json::from_str(&ok(&["lab", "status", "--name", name, "--json"])).unwrap()
}

fn host_json<'a>(status: &'a Value, host: &str) -> &'a Value {
    status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .unwrap_or_else(|| panic!("no {host} in {status}"))
}

/// The host lifecycle through the command line, seen through DescribeInstances.
fn lifecycle(n: &str) {
    let state = || Lab::load(n).unwrap().state().clone();
    let h1 = state().hosts[0].clone();
    // add: a member without Docker (the first free IP) joins the fleet
    let added = ok(&["lab", "host", "add", "--name", n, "--no-docker"]);
    assert!(added.contains("host h2 added: IP 192.168.1.12"), "{added}");
    let h2 = state().hosts[1].clone();
    assert_eq!(
        h2.subnet, "10.1.12.0/24",
        "the mapping's subnet for 192.168.1.12"
    );
    assert_eq!(members(&state()).len(), 2);
    // stop: listed as Stopped, its dockerd down
    ok(&["lab", "host", "stop", "--name", n, "h1"]);
    assert!(members(&state()).contains(&(h1.instance_id.clone(), "Stopped".into())));
    let s = status_json(n);
    assert_eq!(host_json(&s, "h1")["instance_status"], "Stopped");
    assert_eq!(host_json(&s, "h1")["dockerd"], "stopped");
    // start: Running again, with the same subnet
    ok(&["lab", "host", "start", "--name", n, "h1"]);
    assert!(members(&state()).contains(&(h1.instance_id.clone(), "Running".into())));
    let lab = Lab::load(n).unwrap();
    assert!(docker0(&lab, 1).contains(h1.bip.as_deref().unwrap()));
    // release: absent from every answer, namespace and record gone
    ok(&["lab", "host", "release", "--name", n, "h2"]);
    let by_id = describe_instances(
        &state(),
        &[("InstanceIds", &format!("[\"{}\"]", h2.instance_id))],
    );
    assert_eq!(by_id["TotalCount"], 0, "{by_id}");
    assert!(!Netns::exists(&h2.netns));
    assert!(state().hosts.iter().all(|h| h.name != "h2"));
    // a new host on the released host's IP: a new instance, the same subnet, a dockerd using it
    let again = ok(&["lab", "host", "add", "--name", n, "--ip", "192.168.1.12"]);
    assert!(again.contains("host h3 added: IP 192.168.1.12"), "{again}");
    let h3 = state().hosts[1].clone();
    assert_ne!(h3.instance_id, h2.instance_id);
    assert_eq!(
        (h3.subnet.as_str(), h3.bip.as_deref()),
        ("10.1.12.0/24", Some("10.1.12.1/24"))
    );
    let lab = Lab::load(n).unwrap();
    assert!(docker0(&lab, 3).contains("10.1.12.1/24"));
    let ids: Vec<String> = members(&state()).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, [h1.instance_id.clone(), h3.instance_id.clone()]);
    // bad input is exit code 2
    let taken = crossdock(&["lab", "host", "add", "--name", n, "--ip", "192.168.1.11"]);
    assert_eq!(
        taken.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let unknown = crossdock(&["lab", "host", "stop", "--name", n, "h9"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn hosts_added_stopped_started_and_released_change_the_instance_list() {
    if !root_or_skip() {
        return;
    }
    let started = Instant::now();
    let name = unique_lab_name();
    let n = name.as_str();
    ok(&[
        "lab",
        "up",
        "--name",
        n,
        "--fleet",
        "--hosts",
        "1",
        "--no-agents",
    ]);
    let result = std::panic::catch_unwind(|| lifecycle(n));
    ok(&["lab", "down", "--name", n]);
    assert_gone(n);
    eprintln!("whole test: {:?}", started.elapsed());
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
