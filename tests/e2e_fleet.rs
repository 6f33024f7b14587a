//! Fleet mode end to end: every host boots from ONE identical configuration — the agent.toml that
//! deploy/cloud-init/user-data.yaml writes, rendered once and given to every lab host unchanged but
//! for the lab's documented endpoint/socket overrides and this test's shortened timers — and the
//! fleet takes care of itself.
//!
//! In the lab (root only; "skipped: needs root" otherwise), from that one file:
//! - six hosts get distinct container subnets derived from their private IPs by `crossdock init`
//!   (run in each host before its dockerd starts), each the one the documented mapping gives; every
//!   ordered pair of containers pings, and TCP around the ring both ways shows the receiver the
//!   sender's own container IP;
//! - h3 is stopped and h6, then h5, are released (agents stopped first). A recorder samples the
//!   route table all along, so the assertions are about what happened, not about one moment: h6's
//!   route is deleted only after the grace period (shortened here) and soon after it; h3's route and
//!   the other survivors' keep their entry ids; a user's unmarked routes (one pointing at h6) are
//!   never touched, and no API write names any of them;
//! - a new host that receives h5's private IP gets h5's subnet and a working route, replacing h5's
//!   stale route at once — before h6's, released earlier, reaches the end of its grace period.
//!
//! Broken mapping configurations (host range too large for the cluster range at the prefix, cluster
//! range overlapping the host range, fleet tag without derived mode, malformed tag) are refused by
//! `crossdock agent --check-config`, `crossdock init --dry-run` and `crossdock init` with exit status
//! 2 and one line naming the field, and nothing is written: checked without root against a scratch
//! daemon.json, and in a lab host — the agent too, and a VPC CIDR that only the host can see is too
//! big for the cluster range — with the metadata service and API answering.

mod common;

use common::*;
use crossdock_lab::lab::{admin_call, apply_lab_endpoints, AgentConfigHook, HostAdd};
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::{ContainerInfo, DockerVersion, HostState, Lab};
use crossdock_vpcsim::admin::{CallRecord, PutRoute};
use crossdock_vpcsim::model::{EntryType, RouteEntry};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The one user data every host gets.
const USER_DATA: &str = "deploy/cloud-init/user-data.yaml";
/// Where that user data writes the agent's configuration.
const AGENT_TOML: &str = "/etc/crossdock/agent.toml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The agent.toml [`USER_DATA`] writes, read with the YAML library cloud-init itself uses. A missing
/// python3-yaml fails the test: it is a dependency of cloud-init, which scripts/install-deps installs.
fn user_data_agent_toml() -> String {
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo().join(USER_DATA))
        .output()
        .expect("python3 runs (install it with scripts/install-deps)");
    assert!(
        out.status.success(),
        "cannot read {USER_DATA} as YAML (python3-yaml comes with cloud-init: scripts/install-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("YAML as JSON");
    doc["write_files"]
        .as_array()
        .expect("write_files")
        .iter()
        .find(|f| f["path"] == AGENT_TOML)
        .and_then(|f| f["content"].as_str())
        .unwrap_or_else(|| panic!("{USER_DATA} does not write {AGENT_TOML}"))
        .to_string()
}

// ---- broken mapping configurations --------------------------------------------------------------

/// (what is broken, dotted key = TOML literal edits, the field the message must name, a word of it)
type BadCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

const BAD_MAPPINGS: &[BadCase] = &[
    (
        "host range too large for the cluster range at the prefix",
        &[
            ("subnet.mode", r#""derived""#),
            ("subnet.host_ranges", r#"["192.168.0.0/16"]"#),
            ("subnet.prefix_len", "24"),
            ("cluster_cidrs", r#"["10.200.0.0/16"]"#),
        ],
        "subnet.prefix_len",
        "65536",
    ),
    (
        "cluster range overlapping the host range",
        &[
            ("subnet.mode", r#""derived""#),
            ("subnet.host_ranges", r#"["10.1.0.0/16"]"#),
            ("cluster_cidrs", r#"["10.0.0.0/8"]"#),
        ],
        "subnet.host_ranges",
        "overlaps",
    ),
    (
        "fleet tag without derived mode",
        &[
            ("subnet.mode", r#""docker""#),
            ("subnet.host_ranges", "[]"),
            ("fleet.tag", r#""crossdock-cluster=prod""#),
        ],
        "fleet.tag",
        "derived",
    ),
    (
        "malformed tag",
        &[
            ("subnet.mode", r#""derived""#),
            ("fleet.tag", r#""crossdock-cluster""#),
        ],
        "fleet.tag",
        "key=value",
    ),
];

/// `base` with the edits applied (each a dotted key set to a TOML literal).
fn edited(base: &str, edits: &[(&str, &str)]) -> String {
    let mut table: toml::Table = toml::from_str(base).expect("the base file is TOML");
    for (path, literal) in edits {
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
    toml::to_string(&table).expect("TOML out")
}

/// Why a run of a refused configuration is wrong, if it is: status 2, one line naming the field.
fn refusal_problem(out: &Output, field: &str, word: &str) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let ok = out.status.code() == Some(2)
        && lines.len() == 1
        && lines[0].contains(field)
        && lines[0].contains(word);
    (!ok).then(|| {
        format!(
            "status {:?}, stderr ({} lines): {}",
            out.status.code(),
            lines.len(),
            stderr.trim()
        )
    })
}

/// The commands that must refuse a configuration file, as argv after the binary.
fn refusing_commands(config: &Path, daemon_json: &Path) -> Vec<(&'static str, Vec<String>)> {
    let c = config.display().to_string();
    let d = daemon_json.display().to_string();
    vec![
        (
            "agent --check-config",
            vec![
                "agent".into(),
                "--check-config".into(),
                "--config".into(),
                c.clone(),
            ],
        ),
        (
            "init --dry-run",
            vec![
                "init".into(),
                "--config".into(),
                c.clone(),
                "--daemon-json".into(),
                d.clone(),
                "--dry-run".into(),
            ],
        ),
        (
            "init",
            vec![
                "init".into(),
                "--config".into(),
                c,
                "--daemon-json".into(),
                d,
            ],
        ),
    ]
}

/// The files in `dir`, with their contents.
fn dir_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// A Docker configuration that must survive a refused `crossdock init` byte for byte.
const USERS_DAEMON_JSON: &str = "{\n  \"log-level\": \"warn\",\n  \"bip\": \"172.31.9.1/24\"\n}\n";

#[test]
fn e2e_fleet_bad_mappings_are_refused_before_anything_is_written() {
    // No root and no lab needed: every case is refused from the file alone. The base points every
    // endpoint at a closed loopback port, so a command that wrongly went on could reach nothing
    // (and would fail with status 1, not 2).
    let dir = tempfile::tempdir().unwrap();
    let mut base = crossdock_config::parse_unvalidated(&user_data_agent_toml())
        .unwrap_or_else(|e| panic!("the agent.toml of {USER_DATA} does not parse: {e}"));
    base.cloud.metadata_url = "http://127.0.0.1:9".into();
    base.cloud.vpc_endpoint = "http://127.0.0.1:9".into();
    base.cloud.ecs_endpoint = "http://127.0.0.1:9".into();
    base.docker.host = format!("unix://{}/docker.sock", dir.path().display());
    base.health_socket = dir.path().join("agent.sock");
    let base = base.to_toml();
    crossdock_config::parse(&base).expect("the user data's agent.toml is valid");

    let docker_dir = dir.path().join("docker");
    std::fs::create_dir(&docker_dir).unwrap();
    let daemon_json = docker_dir.join("daemon.json");
    std::fs::write(&daemon_json, USERS_DAEMON_JSON).unwrap();
    let before = dir_contents(&docker_dir);

    let mut failures = Vec::new();
    for (n, (what, edits, field, word)) in BAD_MAPPINGS.iter().enumerate() {
        let text = edited(&base, edits);
        match crossdock_config::parse(&text) {
            Ok(_) => failures.push(format!("{what}: accepted by the parser:\n{text}")),
            Err(e) if e.field != *field => failures.push(format!(
                "{what}: the parser blames {}, not {field}: {e}",
                e.field
            )),
            Err(_) => {}
        }
        let path = dir.path().join(format!("case{n}.toml"));
        std::fs::write(&path, &text).unwrap();
        for (cmd, args) in refusing_commands(&path, &daemon_json) {
            let out = Command::new(CROSSDOCK)
                .args(&args)
                .env_remove("CROSSDOCK_CONFIG")
                .output()
                .expect("crossdock runs");
            if let Some(p) = refusal_problem(&out, field, word) {
                failures.push(format!("{what} ({cmd}): {p}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "broken mapping configurations not refused with status 2 and one line naming the field:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        dir_contents(&docker_dir),
        before,
        "a refused configuration changed the Docker directory (daemon.json or a backup)"
    );
    assert!(
        !dir.path().join("agent.sock").exists(),
        "a refused configuration bound the health socket"
    );
}

// ---- the lab ------------------------------------------------------------------------------------

/// The grace period of a released instance's route, shortened from the default 300 s. Long enough
/// that a new host taking a released host's IP (namespace, `crossdock init`, dockerd, agent) is up
/// well inside it: its route must replace the stale one at once, not when the grace period ends.
const GRACE_SECS: u64 = 30;
/// The fleet sweep (membership and table re-read), shortened from 60 s.
const SWEEP_SECS: u64 = 5;
/// After the grace period: the pass that first sees the release (route passes run every
/// [`CLOUD_RESYNC_SECS`], sweeping when [`SWEEP_SECS`] have passed), the deletion, room for a loaded CI.
const GC_MARGIN: Duration = Duration::from_secs(SWEEP_SECS + 55);
/// From a new host's agent started to its route replacing a released host's stale route and being
/// `Available`: one delete and one create, each settling (a first route takes about a second).
const REPLACE_BOUND: Duration = Duration::from_secs(15);
/// A new host in a running lab: namespace, instance, `crossdock init`, dockerd, busybox import.
const HOST_ADD_BOUND: Duration = Duration::from_secs(60);

/// A route a user added by hand (no crossdock marker) from `cidr` to instance `next_hop`.
fn user_route(lab: &Lab, cidr: &str, next_hop: &str) -> RouteEntry {
    let req = PutRoute {
        destination_cidr_block: Some(cidr.parse().unwrap()),
        next_hop_id: next_hop.to_string(),
        route_entry_name: "manual".into(),
        description: "added in the console".into(),
        ..PutRoute::default()
    };
    lab.admin_sync(move |c| async move { c.put_route(&req).await })
        .unwrap_or_else(|e| panic!("a user's route {cidr}: {e:#}"))
}

/// The documented mapping for one host range and one cluster range, computed here independently
/// of the code under test: the IP's offset in the host range selects that block of the cluster range.
fn documented_subnet(
    ip: Ipv4Addr,
    host_range: (Ipv4Addr, u8),
    cluster: (Ipv4Addr, u8),
    prefix: u8,
) -> String {
    let offset = u32::from(ip) - u32::from(host_range.0);
    assert!(
        u64::from(offset) < 1u64 << (32 - host_range.1),
        "{ip} is outside the host range"
    );
    let block = u64::from(offset) << (32 - prefix);
    assert!(
        block < 1u64 << (32 - cluster.1),
        "{ip}'s block is outside the cluster range"
    );
    format!(
        "{}/{prefix}",
        Ipv4Addr::from(u32::from(cluster.0) + block as u32)
    )
}

/// What the table watcher saw of one entry.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    cidr: String,
    next_hop: String,
    name: String,
    description: String,
    status: String,
}

/// The route table's custom entries by id, at one moment.
type Snapshot = (Instant, BTreeMap<String, Seen>);

/// Samples the route table (about five times a second) from its start until dropped, keeping each
/// change: the record of what happened to every entry while the scenario ran in the foreground.
struct TableWatch {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<Snapshot>>>,
}

impl TableWatch {
    fn start(lab: &Lab) -> Self {
        let socket = lab.state().admin_socket.clone();
        let table = lab.state().route_table_id.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut timeline: Vec<Snapshot> = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                if let Ok(state) = admin_call(&socket, |c| async move { c.state().await }) {
                    let now: BTreeMap<String, Seen> = state
                        .entries
                        .into_iter()
                        .filter(|e| e.route_table_id == table && e.entry_type == EntryType::Custom)
                        .map(|e| {
                            let seen = Seen {
                                cidr: e.destination_cidr_block.to_string(),
                                next_hop: e.next_hop_id,
                                name: e.route_entry_name,
                                description: e.description,
                                status: e.status.as_str().to_string(),
                            };
                            (e.route_entry_id, seen)
                        })
                        .collect();
                    if timeline.last().is_none_or(|(_, last)| *last != now) {
                        timeline.push((Instant::now(), now));
                    }
                }
                // The sampling period of a recorder, not a synchronisation.
                std::thread::sleep(Duration::from_millis(200));
            }
            timeline
        });
        TableWatch {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sampling; the timeline of changes.
    fn finish(mut self) -> Vec<Snapshot> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .map(|h| h.join().expect("the table watcher"))
            .unwrap_or_default()
    }
}

impl Drop for TableWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// When the deletion of entry `id` was first seen (gone, or `Deleting`), if it was.
fn deletion_seen(timeline: &[Snapshot], id: &str) -> Option<Instant> {
    let first = timeline.iter().position(|(_, t)| t.contains_key(id))?;
    timeline[first..]
        .iter()
        .find(|(_, t)| t.get(id).is_none_or(|s| s.status == "Deleting"))
        .map(|(at, _)| *at)
}

/// Asserts entry `id` is in every snapshot from `from` on, exactly as `want`.
fn assert_untouched(timeline: &[Snapshot], from: Instant, id: &str, want: &Seen, what: &str) {
    for (at, table) in timeline.iter().filter(|(at, _)| *at >= from) {
        assert_eq!(
            table.get(id),
            Some(want),
            "{what} ({id}) changed {:.1} s into the scenario; the table then: {table:#?}",
            at.duration_since(from).as_secs_f64()
        );
    }
}

fn seen(e: &RouteEntry) -> Seen {
    Seen {
        cidr: e.destination_cidr_block.to_string(),
        next_hop: e.next_hop_id.clone(),
        name: e.route_entry_name.clone(),
        description: e.description.clone(),
        status: e.status.as_str().to_string(),
    }
}

/// Containers `c<i>` on the given hosts, made side by side.
fn containers(lab: &Lab, hosts: &[usize]) -> BTreeMap<usize, ContainerInfo> {
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|&i| s.spawn(move || (i, container(lab, i, &format!("c{i}")))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a container"))
            .collect()
    })
}

/// Every ordered pair of containers pings (side by side, one thread per sender), and TCP around the
/// ring in both directions shows the receiver the sender's own container IP (no NAT on the way).
fn assert_full_reachability(lab: &Lab, cs: &BTreeMap<usize, ContainerInfo>, bound: Duration) {
    std::thread::scope(|s| {
        for (&from, _) in cs.iter() {
            s.spawn(move || {
                for (_, c) in cs.iter().filter(|(to, _)| **to != from) {
                    wait_ping(lab, from, &format!("c{from}"), &c.ip, bound);
                }
            });
        }
    });
    let ring: Vec<usize> = cs.keys().copied().collect();
    for (k, &a) in ring.iter().enumerate() {
        let b = ring[(k + 1) % ring.len()];
        let (ca, cb) = (format!("c{a}"), format!("c{b}"));
        wait_tcp_from(lab, (a, &ca), (b, &cb), &cs[&b].ip, &cs[&a].ip, bound);
        wait_tcp_from(lab, (b, &cb), (a, &ca), &cs[&a].ip, &cs[&b].ip, bound);
    }
}

/// Waits until host `index`'s `/status` shows a `fleet` object satisfying `pred`; returns it. On
/// timeout the last one seen is part of the diagnosis.
fn wait_fleet(
    lab: &Lab,
    index: usize,
    what: &str,
    bound: Duration,
    mut pred: impl FnMut(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let found = crossdock_lab::lab::wait_for(bound, || {
        last = status(lab, index)?["fleet"].clone();
        pred(&last).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!(
            "h{index}'s /status fleet: {what}: not within {bound:?}; last seen: {last}\n\
             h{index}'s last API calls:\n{}\n{}",
            describe_calls(&calls_of(lab, index, 20)),
            diagnosis(lab)
        )
    })
}

/// The last `n` API calls made with host `index`'s credentials.
fn calls_of(lab: &Lab, index: usize, n: usize) -> Vec<CallRecord> {
    let instance = lab.host(index).instance_id.clone();
    let mut calls: Vec<CallRecord> = calls_since(lab, 0)
        .calls
        .into_iter()
        .filter(|c| c.instance_id.as_deref() == Some(instance.as_str()))
        .collect();
    calls.drain(..calls.len().saturating_sub(n));
    calls
}

/// The sum of an unlabelled counter over the agents of `hosts`.
fn counter_sum(lab: &Lab, hosts: &[usize], name: &str) -> f64 {
    hosts
        .iter()
        .filter_map(|&i| metrics(lab, i).and_then(|m| metric_value(&m, name)))
        .sum()
}

/// In host `index` (no agent runs anywhere in the lab yet, the metadata service and the API answer):
/// each broken mapping is refused by `--check-config`, `init --dry-run`, `init` and the agent itself
/// with status 2 and one line naming the field, and nothing is applied — the host's daemon.json and
/// kernel state unchanged, no backup file, no API call, no health socket. One more case can only be
/// known on the host: the VPC CIDR (the default host range, from metadata) holds more addresses than
/// the cluster range has subnets; `crossdock init` refuses it the same way.
fn assert_bad_mappings_refused_in(lab: &Lab, index: usize) {
    let host = lab.host(index).clone();
    let stray_socket = host.dir.join("bad-mapping.sock");
    let base = {
        let mut c = crossdock_config::load(&host.agent_config).expect("the host's valid file");
        c.health_socket = stray_socket.clone();
        c.to_toml()
    };
    let dir = host.dir.join("bad-mapping");
    std::fs::create_dir_all(&dir).unwrap();
    let daemon_json = host.dir.join("daemon.json");
    let docker_files = || {
        dir_contents(&host.dir)
            .into_iter()
            .filter(|(n, _)| n.starts_with("daemon.json"))
            .collect::<Vec<_>>()
    };
    let kernel = || iptables_save(lab, index);
    let (files_before, kernel_before, seq) = (docker_files(), kernel(), call_seq(lab));
    let timeout = "20";

    let mut cases: Vec<(&str, String, &str, &str, bool)> = BAD_MAPPINGS
        .iter()
        .map(|(what, edits, field, word)| (*what, edited(&base, edits), *field, *word, true))
        .collect();
    cases.push((
        "the VPC CIDR (default host range) too large for the cluster range",
        edited(
            &base,
            &[
                ("subnet.host_ranges", "[]"),
                ("cluster_cidrs", r#"["10.200.0.0/16"]"#),
            ],
        ),
        "subnet.prefix_len",
        "65536",
        false,
    ));
    let mut failures = Vec::new();
    for (n, (what, text, field, word, static_check)) in cases.iter().enumerate() {
        let path = dir.join(format!("case{n}.toml"));
        std::fs::write(&path, text).unwrap();
        let mut runs = refusing_commands(&path, &daemon_json);
        if !static_check {
            runs.retain(|(cmd, _)| cmd.starts_with("init"));
        } else {
            let agent: Vec<String> = ["timeout", timeout, CROSSDOCK, "agent", "--config"]
                .iter()
                .map(|s| s.to_string())
                .chain([path.display().to_string()])
                .collect();
            runs.push(("agent", agent));
        }
        for (cmd, mut argv) in runs {
            if argv[0] != "timeout" {
                argv.insert(0, CROSSDOCK.to_string());
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out = lab.exec_unchecked(index, &argv).expect("crossdock runs");
            if let Some(p) = refusal_problem(&out, field, word) {
                failures.push(format!("{what} ({cmd}): {p}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "broken mappings not refused in h{index} with status 2 and one line naming the field:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        docker_files(),
        files_before,
        "a refused configuration changed h{index}'s daemon.json"
    );
    assert_eq!(
        kernel(),
        kernel_before,
        "a refused configuration changed h{index}'s firewall"
    );
    let calls = calls_since(lab, seq).calls;
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

/// One host's identity, kept after the lab forgets a released host.
#[derive(Debug, Clone)]
struct Member {
    ip: Ipv4Addr,
    instance: String,
    subnet: String,
}

fn member(lab: &Lab, index: usize) -> Member {
    let h = lab.host(index);
    Member {
        ip: h.private_ip.parse().expect("an IPv4 address"),
        instance: h.instance_id.clone(),
        subnet: h.subnet.clone(),
    }
}

/// Every host runs the user data's configuration: the lab's shared file is the user data's agent.toml
/// with the lab's documented endpoint overrides and this test's timing, and each host's agent.toml
/// differs from it only in the two per-host sockets.
fn assert_one_configuration(
    lab: &Lab,
    user_toml: &str,
    timing: &dyn Fn(&mut crossdock_config::Config),
) {
    let shared = lab.fleet_config().expect("the lab's shared configuration");
    let mut want = crossdock_config::parse(user_toml).expect("the user data's agent.toml is valid");
    apply_lab_endpoints(&mut want);
    timing(&mut want);
    assert_eq!(
        shared, want,
        "the lab's shared configuration is not the user data's"
    );
    for h in lab.hosts() {
        let mut c = crossdock_config::load(&h.agent_config)
            .unwrap_or_else(|e| panic!("{}: {e}", h.agent_config.display()));
        c.health_socket = shared.health_socket.clone();
        c.docker.host = shared.docker.host.clone();
        assert_eq!(
            c, shared,
            "{}'s configuration differs in more than its sockets",
            h.name
        );
    }
    let tag = shared
        .fleet
        .tag
        .as_ref()
        .expect("the user data sets fleet.tag")
        .to_string();
    for h in lab.status().hosts {
        assert_eq!(h.tags, vec![tag.clone()], "{}'s instance tags", h.name);
    }
}

/// Each host's subnet is the documented mapping of its private IP, written by `crossdock init` into
/// its daemon.json before its dockerd started, and served by that dockerd on docker0.
fn assert_derived_subnets(lab: &Lab, hosts: &[usize]) {
    let shared = lab.fleet_config().expect("the lab's shared configuration");
    let info = lab
        .admin_sync(|c| async move { c.info().await })
        .expect("emulator info");
    assert!(
        shared.subnet.host_ranges.is_empty() && shared.cluster_cidrs.len() == 1,
        "this test computes the mapping for the user data's layout (host range = the VPC CIDR, one \
         cluster range); the user data now has {:?} / {:?}",
        shared.subnet.host_ranges,
        shared.cluster_cidrs
    );
    let cluster = shared.cluster_cidrs[0];
    let mut subnets = BTreeSet::new();
    for &i in hosts {
        let h = lab.host(i);
        let want = documented_subnet(
            h.private_ip.parse().unwrap(),
            (info.vpc_cidr.network(), info.vpc_cidr.prefix_len()),
            (cluster.network(), cluster.prefix_len()),
            shared.subnet.prefix_len,
        );
        assert_eq!(h.subnet, want, "{} ({}): its subnet", h.name, h.private_ip);
        let network: Ipv4Addr = want.split('/').next().unwrap().parse().unwrap();
        let want_bip = format!(
            "{}/{}",
            Ipv4Addr::from(u32::from(network) + 1),
            shared.subnet.prefix_len
        );
        let daemon: serde_json::Value =
            serde_json::from_slice(&std::fs::read(h.dir.join("daemon.json")).unwrap()).unwrap();
        let bip = daemon["bip"].as_str().unwrap_or_default().to_string();
        let init_log = std::fs::read_to_string(h.dir.join("init.log")).unwrap_or_default();
        assert!(
            init_log.contains(&want) && bip == want_bip,
            "{}: crossdock init did not write bip {want_bip} (daemon.json has {bip:?}); its log:\n{init_log}",
            h.name
        );
        let docker0 = host_sh(
            lab,
            i,
            &["ip", "-4", "-o", "addr", "show", "dev", "docker0"],
        );
        assert!(
            docker0.contains(&bip),
            "{}: docker0 does not serve {bip}: {docker0}",
            h.name
        );
        subnets.insert(want);
    }
    assert_eq!(
        subnets.len(),
        hosts.len(),
        "the derived subnets are not distinct: {subnets:?}"
    );
}

/// The test's timing, the only edits to the user data's configuration besides the lab's overrides.
fn test_timing(c: &mut crossdock_config::Config) {
    c.resync_interval_secs = HOST_RESYNC_SECS;
    c.cloud.resync_interval_secs = CLOUD_RESYNC_SECS;
    c.fleet.release_grace_secs = GRACE_SECS;
    c.fleet.sweep_interval_secs = SWEEP_SECS;
}

/// The scale-in: when h3 was stopped and h6, then h5, released; the API call log's position before.
struct ScaleIn {
    seq: u64,
    stopped_at: Instant,
    released_at: BTreeMap<usize, Instant>,
}

/// The fleet comes up from stopped agents: every member's route in the table exactly (the user's
/// routes beside them), every agent ready, h1's `/status` showing six running members and nothing
/// missing. Returns each host's route.
fn bring_up(
    lab: &mut Lab,
    m: &BTreeMap<usize, Member>,
    foreign: &[String],
) -> BTreeMap<usize, RouteEntry> {
    let all: Vec<usize> = m.keys().copied().collect();
    let names: Vec<String> = all.iter().map(|i| format!("h{i}")).collect();
    start_agents(lab, &names.iter().map(String::as_str).collect::<Vec<_>>());
    let (routes, took) = wait_table(lab, &expected_table(lab, &all), foreign, ROUTES_BOUND);
    eprintln!(
        "6 routes Available {:.1} s after the agents started",
        took.as_secs_f64()
    );
    wait_ready(lab, &all, ROUTES_BOUND);
    wait_fleet(
        lab,
        1,
        "6 running members, no route missing",
        ROUTES_BOUND,
        |f| f["members"] == 6 && f["running"] == 6 && f["routes_missing"] == serde_json::json!([]),
    );
    all.iter()
        .map(|&i| {
            let r = routes
                .iter()
                .find(|e| is_crossdock_route_of(e, &m[&i].subnet, &m[&i].instance))
                .cloned()
                .unwrap_or_else(|| panic!("h{i}'s route"));
            (i, r)
        })
        .collect()
}

/// A container on every host, each inside its host's subnet, all reaching each other.
fn containers_connected(lab: &Lab, m: &BTreeMap<usize, Member>) -> BTreeMap<usize, ContainerInfo> {
    let cs = containers(lab, &m.keys().copied().collect::<Vec<_>>());
    for (i, c) in &cs {
        let net = m[i].subnet.trim_end_matches(".0/24");
        assert!(
            c.ip.starts_with(&format!("{net}.")),
            "c{i} {} is not in {}",
            c.ip,
            m[i].subnet
        );
    }
    let started = Instant::now();
    assert_full_reachability(lab, &cs, TRAFFIC_BOUND);
    eprintln!(
        "all {} ordered pairs ping, TCP around the ring both ways keeps source IPs ({:.1} s)",
        cs.len() * (cs.len() - 1),
        started.elapsed().as_secs_f64()
    );
    cs
}

/// h3 stops; h6, then h5, are released, each agent stopped first. Right after, both released
/// hosts' routes are still there: nothing went with the release itself.
fn scale_in(lab: &mut Lab, routes: &BTreeMap<usize, RouteEntry>) -> ScaleIn {
    let seq = call_seq(lab);
    let stopped_at = Instant::now();
    lab.host_stop("h3").expect("stopping h3");
    let mut released_at = BTreeMap::new();
    for i in [6, 5] {
        lab.agent_stop(&format!("h{i}"))
            .expect("stopping the agent");
        released_at.insert(i, Instant::now());
        lab.host_release(&format!("h{i}"))
            .expect("releasing the host");
    }
    let now = custom_routes(lab);
    for i in [5, 6] {
        assert!(
            now.iter()
                .any(|e| e.route_entry_id == routes[&i].route_entry_id),
            "h{i}'s route went with the release, before any grace period: {now:?}"
        );
    }
    ScaleIn {
        seq,
        stopped_at,
        released_at,
    }
}

/// A new host with h5's private IP: h5's subnet, its route replacing h5's stale one at once (while
/// h6's, released earlier, still waits for its grace period, as h1's `/status` shows), and its
/// container reaching the survivors'. Returns the host and its container.
fn reuse_ip(
    lab: &mut Lab,
    m: &BTreeMap<usize, Member>,
    routes: &BTreeMap<usize, RouteEntry>,
    cs: &BTreeMap<usize, ContainerInfo>,
    released5: Instant,
) -> (HostState, ContainerInfo) {
    let added = lab
        .host_add(&HostAdd {
            ip: Some(m[&5].ip),
            no_docker: false,
            ..HostAdd::default()
        })
        .expect("adding a host with h5's IP");
    assert!(
        released5.elapsed() < HOST_ADD_BOUND,
        "host add took {:?}",
        released5.elapsed()
    );
    assert_eq!(
        added.subnet, m[&5].subnet,
        "the new host's subnet is the released h5's"
    );
    let route6 = routes[&6].route_entry_id.clone();
    let fleet = wait_fleet(
        lab,
        1,
        "h6's route waiting for its grace period",
        GC_MARGIN,
        |f| {
            f["stale_routes"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r["entry_id"] == route6.as_str() && r["waiting_for"] == "grace_period")
            })
        },
    );
    eprintln!("h1's fleet status after the releases: {fleet}");
    start_agents(lab, &[added.name.as_str()]);
    let stale5 = routes[&5].route_entry_id.clone();
    let (_, took) = wait_until(
        lab,
        "the new host's route in place of h5's stale one",
        REPLACE_BOUND,
        || {
            let table = custom_routes(lab);
            let new = table.iter().any(|e| {
                is_crossdock_route_of(e, &added.subnet, &added.instance_id)
                    && e.status.as_str() == "Available"
            });
            (new && !table.iter().any(|e| e.route_entry_id == stale5)).then_some(())
        },
    );
    eprintln!(
        "the new host's route replaced h5's {:.1} s after its agent started, {:.1} s after h5's release",
        took.as_secs_f64(),
        released5.elapsed().as_secs_f64()
    );
    let (n, name) = (added.index, format!("c{}", added.index));
    let c = container(lab, n, &name);
    assert_connected(lab, (n, &name, &c), (1, "c1", &cs[&1]), TRAFFIC_BOUND);
    for i in [2, 4] {
        wait_ping(lab, n, &name, &cs[&i].ip, TRAFFIC_BOUND);
        wait_ping(lab, i, &format!("c{i}"), &c.ip, TRAFFIC_BOUND);
    }
    (added, c)
}

/// From the table's timeline: h6's route deleted only after its grace period, h5's replaced before
/// (and before h6's, released earlier), the survivors' routes (the stopped h3's among them) and the
/// user's routes never changed.
fn assert_timeline(
    timeline: &[Snapshot],
    routes: &BTreeMap<usize, RouteEntry>,
    users: &[RouteEntry],
    s: &ScaleIn,
    (watch_from, routes_in): (Instant, Instant),
) {
    let grace = Duration::from_secs(GRACE_SECS);
    let gc6 = deletion_seen(timeline, &routes[&6].route_entry_id).expect("h6's route deleted");
    let gc5 = deletion_seen(timeline, &routes[&5].route_entry_id).expect("h5's route replaced");
    let after = |t: Instant, i: usize| t.saturating_duration_since(s.released_at[&i]).as_secs_f64();
    eprintln!(
        "deletions seen: h6's route {:.1} s after its release (grace {GRACE_SECS} s), h5's {:.1} s after its release",
        after(gc6, 6),
        after(gc5, 5)
    );
    assert!(
        gc6 >= s.released_at[&6] + grace,
        "h6's route was deleted {:.1} s after the release, before the {GRACE_SECS} s grace period ended",
        after(gc6, 6)
    );
    assert!(
        gc5 < s.released_at[&5] + grace && gc5 < gc6,
        "h5's stale route was not replaced at once: deleted {:.1} s after its release (h6's, released \
         earlier, {:.1} s)",
        after(gc5, 5),
        after(gc6, 6)
    );
    for i in [1, 2, 3, 4] {
        let mut want = seen(&routes[&i]);
        want.status = "Available".into();
        let what = format!("h{i}'s route{}", if i == 3 { " (h3 stopped)" } else { "" });
        assert_untouched(
            timeline,
            routes_in,
            &routes[&i].route_entry_id,
            &want,
            &what,
        );
    }
    for u in users {
        assert_untouched(
            timeline,
            watch_from,
            &u.route_entry_id,
            &seen(u),
            "a user's route",
        );
    }
}

/// No API write since `seq` names any of `protected` (entry ids, destinations).
fn assert_no_writes_naming(lab: &Lab, seq: u64, protected: &[String]) {
    let bad: Vec<CallRecord> = writes_since(lab, seq)
        .into_iter()
        .filter(|c| {
            c.params
                .values()
                .any(|v| protected.iter().any(|p| v.contains(p.as_str())))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "writes naming a survivor's or a user's route during the scale-in:\n{}",
        describe_calls(&bad)
    );
}

#[test]
fn e2e_fleet_one_configuration_six_hosts_scale_in_and_a_reused_ip() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_fleet_one_configuration_six_hosts_scale_in_and_a_reused_ip");
    let user_toml = user_data_agent_toml();
    let mut opts = options(6, DockerVersion::V20);
    opts.fleet = true;
    opts.agent_config_text = Some(user_toml.clone());
    opts.agent_config = Some(AgentConfigHook::new(|_, c| test_timing(c)));
    let mut lab = up(opts);
    let all = [1, 2, 3, 4, 5, 6];

    // One configuration, six distinct derived subnets, nothing applied by broken mappings.
    assert_one_configuration(&lab, &user_toml, &test_timing);
    assert_derived_subnets(&lab, &all);
    assert_bad_mappings_refused_in(&lab, 1);
    let m: BTreeMap<usize, Member> = all.iter().map(|&i| (i, member(&lab, i))).collect();

    // A user's routes, not crossdock's: one to a host that will be released, one to a survivor.
    let users = [
        user_route(&lab, "10.250.0.0/24", &m[&6].instance),
        user_route(&lab, "172.31.0.0/24", &m[&1].instance),
    ];
    let foreign: Vec<String> = users.iter().map(|u| u.route_entry_id.clone()).collect();
    let watch = TableWatch::start(&lab);
    let watch_from = Instant::now();
    let routes = bring_up(&mut lab, &m, &foreign);
    let routes_in = Instant::now();
    let cs = containers_connected(&lab, &m);

    // Scale-in, and a new host in a released one's place.
    let s = scale_in(&mut lab, &routes);
    let (added, _) = reuse_ip(&mut lab, &m, &routes, &cs, s.released_at[&5]);

    // h6's route goes once its grace period is over; the table ends exactly as it should, the
    // stopped h3's route still in it a grace period after the stop.
    let gone_by = s.released_at[&6] + Duration::from_secs(GRACE_SECS) + GC_MARGIN;
    let route6 = routes[&6].route_entry_id.clone();
    wait_until(
        &lab,
        "h6's stale route deleted after its grace period",
        gone_by.saturating_duration_since(Instant::now()),
        || {
            (!custom_routes(&lab)
                .iter()
                .any(|e| e.route_entry_id == route6))
            .then_some(())
        },
    );
    let mut want = expected_table(&lab, &[1, 2, 3, 4]);
    want.push((added.subnet.clone(), added.instance_id.clone()));
    wait_table(&lab, &want, &foreign, ROUTES_BOUND);
    assert!(
        s.stopped_at.elapsed() >= Duration::from_secs(GRACE_SECS),
        "the stopped host was watched for less than a grace period"
    );
    assert_timeline(
        &watch.finish(),
        &routes,
        &users,
        &s,
        (watch_from, routes_in),
    );
    let protected: Vec<String> = [1, 2, 3, 4]
        .iter()
        .flat_map(|&i| [routes[&i].route_entry_id.clone(), m[&i].subnet.clone()])
        .chain(foreign.iter().cloned())
        .chain(users.iter().map(|u| u.destination_cidr_block.to_string()))
        .collect();
    assert_no_writes_naming(&lab, s.seq, &protected);
    let deleted = counter_sum(
        &lab,
        &[1, 2, 4, added.index],
        "crossdock_route_deleted_total",
    );
    assert!(
        deleted >= 2.0,
        "the agents counted {deleted} route deletions, not the 2 they made"
    );
    assert_connected(&lab, (2, "c2", &cs[&2]), (4, "c4", &cs[&4]), TRAFFIC_BOUND);
}
