//! Shared helpers of the end-to-end tests (`tests/e2e_*.rs`), and only of those.
//!
//! Why a module and not more lab API: these are the *observations* the e2e tests make (is the route
//! table exactly this, did a packet get through, what does the agent's `/status` say, which API calls
//! did the agents make) and the small vocabulary of assertions around them. Building, poking and
//! removing labs is `crossdock_lab`'s job and the emulator's hand is `crossdock_vpcsim::AdminClient`;
//! nothing here creates namespaces, dockerds or emulators itself.
//!
//! Conventions: every wait polls with a deadline and panics with a diagnosis (route table, agent
//! health, the tail of each agent log) when the deadline passes; nothing sleeps to synchronise.

#![allow(dead_code)] // each e2e file uses a different subset

use crossdock_lab::demo;
use crossdock_lab::dockerd::{self, BUSYBOX_IMAGE};
use crossdock_lab::lab::{agent_pid, wait_for, AgentConfigHook};
use crossdock_lab::testing::unique_lab_name;
use crossdock_lab::{ContainerInfo, DockerVersion, Dockerd, DockerdSpec, Lab, LabOptions};
use crossdock_vpcsim::admin::{CallLog, CallRecord, Settings};
use crossdock_vpcsim::model::{EntryType, RouteEntry};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// The binary under test: the lab runs it as emulator and as every agent.
pub const CROSSDOCK: &str = env!("CARGO_BIN_EXE_crossdock");

/// How often the agents re-check host state in the e2e labs (contract default 30 s). Shortened so that
/// repairs of host state (flushed chains) are observed in seconds; the code path is the same timer.
pub const HOST_RESYNC_SECS: u64 = 5;
/// How often the agents re-check their route (contract default 60 s); shortened for the same reason.
pub const CLOUD_RESYNC_SECS: u64 = 10;
/// How long a new route stays `Pending` in the emulator (Alibaba: a few seconds; default 2 s).
pub const PENDING_MS: u64 = 500;

/// From agents started to every route `Available` and applied by the vRouter, on a quiet API. The
/// agent creates one route, polls it to `Available` (0.5 s here) and the vRouter applies it; 60 s leaves
/// room for a loaded 2-core CI machine running two labs at once.
pub const ROUTES_BOUND: Duration = Duration::from_secs(60);
/// From "should work" to a packet getting through: one host resync plus the vRouter's apply, with room.
pub const TRAFFIC_BOUND: Duration = Duration::from_secs(30);

/// Lab options for an e2e test: a fresh unique name, this build's binary, agents NOT started (each test
/// starts them when its scenario says so), fast resyncs, short `Pending`.
pub fn options(hosts: usize, docker: DockerVersion) -> LabOptions {
    LabOptions {
        name: unique_lab_name(),
        hosts,
        docker,
        agents: false,
        crossdock_bin: CROSSDOCK.into(),
        emulator_settings: Some(Settings {
            pending_ms: PENDING_MS,
            ..Settings::default()
        }),
        agent_config: Some(fast_resync(|_, _| {})),
        ..LabOptions::default()
    }
}

/// An agent-config hook with the e2e resync intervals, then `more` (1-based host index).
pub fn fast_resync(
    more: impl Fn(usize, &mut crossdock_config::Config) + Send + Sync + 'static,
) -> AgentConfigHook {
    AgentConfigHook::new(move |i, c| {
        c.resync_interval_secs = HOST_RESYNC_SECS;
        c.cloud.resync_interval_secs = CLOUD_RESYNC_SECS;
        more(i, c);
    })
}

/// Builds the lab (removed again when the returned value is dropped, also when the test panics).
pub fn up(opts: LabOptions) -> Lab {
    let name = opts.name.clone();
    let started = Instant::now();
    let lab = Lab::up(opts).unwrap_or_else(|e| panic!("lab {name} did not come up: {e:#}"));
    eprintln!("lab {name} up in {:.1} s", started.elapsed().as_secs_f64());
    lab
}

/// Prints the test's wall time when dropped (also when the test fails), and appends it to the file
/// named by `CROSSDOCK_E2E_TIMES` if set (scripts/test collects them).
#[derive(Debug)]
pub struct Timer {
    name: &'static str,
    started: Instant,
}

impl Timer {
    pub fn start(name: &'static str) -> Self {
        Timer {
            name,
            started: Instant::now(),
        }
    }
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let secs = self.started.elapsed().as_secs_f64();
        let outcome = if std::thread::panicking() {
            "FAILED"
        } else {
            "ok"
        };
        eprintln!("e2e wall time: {} {secs:.1} s ({outcome})", self.name);
        if let Some(path) = std::env::var_os("CROSSDOCK_E2E_TIMES") {
            use std::io::Write;
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = writeln!(f, "{}\t{secs:.1}\t{outcome}", self.name);
            }
        }
    }
}

// ---- waiting ------------------------------------------------------------------------------------

/// Polls `f` until it gives `Some`, at most `bound`; on timeout panics with `what` and a diagnosis of
/// the lab. Returns the value and how long it took.
pub fn wait_until<T>(
    lab: &Lab,
    what: &str,
    bound: Duration,
    f: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let started = Instant::now();
    match wait_for(bound, f) {
        Some(v) => (v, started.elapsed()),
        None => panic!("{what}: not within {bound:?}\n{}", diagnosis(lab)),
    }
}

/// What a failing e2e test prints: the route table, each host's agent health, conditions and log tail.
pub fn diagnosis(lab: &Lab) -> String {
    let mut s = String::new();
    s.push_str(&format!("--- lab {} ---\n", lab.name()));
    match lab.admin_sync(|c| async move { c.state().await }) {
        Ok(state) => {
            s.push_str("route table (custom entries):\n");
            for e in state
                .entries
                .iter()
                .filter(|e| e.entry_type == EntryType::Custom)
            {
                s.push_str(&format!(
                    "  {} {} -> {} {} name={:?} desc={:?}\n",
                    e.route_entry_id,
                    e.destination_cidr_block,
                    e.next_hop_id,
                    e.status.as_str(),
                    e.route_entry_name,
                    e.description
                ));
            }
        }
        Err(e) => s.push_str(&format!("emulator state unavailable: {e:#}\n")),
    }
    for h in lab.hosts() {
        let (health, detail) = lab.agent_health(&h.name);
        s.push_str(&format!(
            "{} ({}, {}): agent {health}: {}\n",
            h.name,
            h.instance_id,
            h.subnet,
            detail.lines().next().unwrap_or("")
        ));
        if let Some(status) = status(lab, h.index) {
            s.push_str(&format!("  conditions: {}\n", status["conditions"]));
        }
        let log = std::fs::read_to_string(h.agent_log()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        for l in &lines[lines.len().saturating_sub(12)..] {
            s.push_str(&format!("  | {l}\n"));
        }
    }
    s
}

// ---- agents -------------------------------------------------------------------------------------

/// Starts the agents of the named hosts.
pub fn start_agents(lab: &mut Lab, hosts: &[&str]) {
    for h in hosts {
        lab.agent_start(h)
            .unwrap_or_else(|e| panic!("starting the agent of {h}: {e:#}"));
    }
}

/// Host `index`'s agent `/status` as JSON (`None` while it does not answer).
pub fn status(lab: &Lab, index: usize) -> Option<Value> {
    let r = crossdock_lab::http::get(
        &lab.host(index).agent_socket,
        "/status",
        Duration::from_secs(3),
    )
    .ok()?;
    serde_json::from_slice(&r.body).ok()
}

/// Host `index`'s agent `/metrics` text.
pub fn metrics(lab: &Lab, index: usize) -> Option<String> {
    let r = crossdock_lab::http::get(
        &lab.host(index).agent_socket,
        "/metrics",
        Duration::from_secs(3),
    )
    .ok()?;
    r.is_success().then(|| r.text())
}

/// The value of an unlabelled Prometheus sample, e.g. `crossdock_route_conflicts`.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A condition of `/status` (`docker`, `subnet`, `forwarding`, `firewall`, `route`, `credentials`).
pub fn condition(status: &Value, name: &str) -> Value {
    status["conditions"][name].clone()
}

/// The `state` of a condition, `""` if absent.
pub fn condition_state(status: &Value, name: &str) -> String {
    status["conditions"][name]["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits until host `index`'s agent reports condition `name` in a state satisfying `pred`; returns
/// the whole `/status`.
pub fn wait_condition(
    lab: &Lab,
    index: usize,
    name: &str,
    bound: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    let what = format!("h{index}: condition {name} as expected");
    wait_until(lab, &what, bound, || {
        let s = status(lab, index)?;
        pred(&s["conditions"][name]).then_some(s)
    })
    .0
}

/// Waits until the agents of `indexes` are healthy (`/healthz` 200).
pub fn wait_ready(lab: &Lab, indexes: &[usize], bound: Duration) {
    for &i in indexes {
        let name = lab.host(i).name.clone();
        wait_until(lab, &format!("the agent of {name} ready"), bound, || {
            (lab.agent_health(&name).0 == "ready").then_some(())
        });
    }
}

/// The agent's pid (it runs).
pub fn agent_pid_of(lab: &Lab, index: usize) -> Option<u32> {
    agent_pid(lab.host(index))
}

// ---- the cloud side -----------------------------------------------------------------------------

/// The custom entries of the lab's route table.
pub fn custom_routes(lab: &Lab) -> Vec<RouteEntry> {
    let table = lab.state().route_table_id.clone();
    lab.admin_sync(|c| async move { c.state().await })
        .map(|s| {
            s.entries
                .into_iter()
                .filter(|e| e.route_table_id == table && e.entry_type == EntryType::Custom)
                .collect()
        })
        .unwrap_or_else(|e| panic!("reading the emulator's state: {e:#}"))
}

/// What a route crossdock made for `instance` looks like: (destination, next hop) plus the marker.
pub fn is_crossdock_route_of(e: &RouteEntry, cidr: &str, instance: &str) -> bool {
    e.destination_cidr_block.to_string() == cidr
        && e.next_hop_id == instance
        && e.next_hop_type == "Instance"
        && e.route_entry_name == "crossdock"
        && e.description == format!("crossdock:{instance}")
}

/// Waits until the route table's custom entries are EXACTLY `want` (destination, instance) — each with
/// crossdock's marker and `Available`, nothing else, no duplicate — and the vRouter applied them.
/// `foreign` entries (ids) are allowed to be there too and are not counted.
pub fn wait_table(
    lab: &Lab,
    want: &[(String, String)],
    foreign: &[String],
    bound: Duration,
) -> (Vec<RouteEntry>, Duration) {
    let what = format!("the route table to be exactly {want:?} (Available, marked) and applied");
    wait_until(lab, &what, bound, || {
        let ours: Vec<RouteEntry> = custom_routes(lab)
            .into_iter()
            .filter(|e| !foreign.contains(&e.route_entry_id))
            .collect();
        let exact = ours.len() == want.len()
            && want.iter().all(|(cidr, inst)| {
                ours.iter().any(|e| {
                    is_crossdock_route_of(e, cidr, inst) && e.status.as_str() == "Available"
                })
            });
        if !exact {
            return None;
        }
        let dp = lab
            .admin_sync(|c| async move { c.dataplane().await })
            .ok()?;
        (dp.applied_generation >= dp.wanted_generation && dp.last_error.is_none()).then_some(ours)
    })
}

/// The table every Docker host's default subnet routed to it.
pub fn expected_table(lab: &Lab, indexes: &[usize]) -> Vec<(String, String)> {
    indexes
        .iter()
        .map(|&i| (lab.host(i).subnet.clone(), lab.host(i).instance_id.clone()))
        .collect()
}

/// The sequence number the next API call will get (for "what happened since").
pub fn call_seq(lab: &Lab) -> u64 {
    lab.admin_sync(|c| async move { c.calls(None).await })
        .map(|l| l.next_seq)
        .unwrap_or_else(|e| panic!("reading the call log: {e:#}"))
}

/// The API calls since `seq`.
pub fn calls_since(lab: &Lab, seq: u64) -> CallLog {
    lab.admin_sync(move |c| async move { c.calls(Some(seq)).await })
        .unwrap_or_else(|e| panic!("reading the call log: {e:#}"))
}

/// The write calls since `seq` (route and ENI writes, whatever their outcome).
pub fn writes_since(lab: &Lab, seq: u64) -> Vec<CallRecord> {
    calls_since(lab, seq)
        .calls
        .into_iter()
        .filter(|c| c.write)
        .collect()
}

/// One line per call, for assertion messages.
pub fn describe_calls(calls: &[CallRecord]) -> String {
    calls
        .iter()
        .map(|c| {
            format!(
                "{} {} {} {:?} {:?}",
                c.time,
                c.action,
                c.code,
                c.instance_id,
                c.params.get("DestinationCidrBlock")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the data plane -----------------------------------------------------------------------------

/// A busybox container on host `index` that stays up, with the demo's TCP receiver (records the
/// sender's address as the receiver's kernel sees it).
pub fn container(lab: &Lab, index: usize, name: &str) -> ContainerInfo {
    let c = lab
        .run_container(index, name, &[BUSYBOX_IMAGE, "sleep", "86400"])
        .unwrap_or_else(|e| panic!("container {name} on h{index}: {e:#}"));
    demo::start_receiver(lab, index, name)
        .unwrap_or_else(|e| panic!("receiver in {name} on h{index}: {e:#}"));
    c
}

/// Starts a stopped container again (after a dockerd restart) with its receiver; its new address.
pub fn restart_container(lab: &Lab, index: usize, name: &str) -> ContainerInfo {
    lab.docker(index, &["start", name])
        .unwrap_or_else(|e| panic!("docker start {name} on h{index}: {e:#}"));
    let host = lab.host(index).docker_host.clone().unwrap_or_default();
    let c = dockerd::inspect_container(&host, name)
        .unwrap_or_else(|e| panic!("inspect {name} on h{index}: {e:#}"));
    demo::start_receiver(lab, index, name)
        .unwrap_or_else(|e| panic!("receiver in {name} on h{index}: {e:#}"));
    c
}

/// One ping (2 s) from a container.
pub fn pings(lab: &Lab, from: usize, container: &str, ip: &str) -> bool {
    demo::ping_once(lab, from, container, ip).unwrap_or(false)
}

/// Waits until a ping from `container` on `from` reaches `ip`; returns how long it took.
pub fn wait_ping(lab: &Lab, from: usize, container: &str, ip: &str, bound: Duration) -> Duration {
    wait_until(
        lab,
        &format!("ping {container}@h{from} -> {ip}"),
        bound,
        || pings(lab, from, container, ip).then_some(()),
    )
    .1
}

/// Asserts that no ping from `container` on `from` reaches `ip` (3 probes of 2 s).
pub fn assert_no_ping(lab: &Lab, from: usize, container: &str, ip: &str, why: &str) {
    let reached = demo::ping(lab, from, container, ip).unwrap_or(false);
    assert!(
        !reached,
        "ping {container}@h{from} -> {ip} got through, but {why}\n{}",
        diagnosis(lab)
    );
}

/// A TCP exchange from `(from, from_c)` to `(to, to_c)` at `to_ip`; the source address the receiver saw.
pub fn tcp(lab: &Lab, from: (usize, &str), to: (usize, &str), to_ip: &str) -> Option<String> {
    demo::tcp_exchange(lab, from.0, from.1, to.0, to.1, to_ip).unwrap_or(None)
}

/// Waits until a TCP exchange gets through and the receiver sees `source` (the sender's container IP,
/// i.e. no NAT on the way).
pub fn wait_tcp_from(
    lab: &Lab,
    from: (usize, &str),
    to: (usize, &str),
    to_ip: &str,
    source: &str,
    bound: Duration,
) -> Duration {
    let mut last = None;
    let what = format!(
        "TCP {}@h{} -> {}@h{} {to_ip} with the receiver seeing {source}",
        from.1, from.0, to.1, to.0
    );
    let started = Instant::now();
    let ok = wait_for(bound, || {
        last = tcp(lab, from, to, to_ip);
        (last.as_deref() == Some(source)).then_some(())
    });
    if ok.is_none() {
        panic!(
            "{what}: not within {bound:?} (last seen source: {last:?})\n{}",
            diagnosis(lab)
        );
    }
    started.elapsed()
}

/// Both containers reach each other (ping both ways) and TCP both ways shows the sender's own IP.
pub fn assert_connected(
    lab: &Lab,
    a: (usize, &str, &ContainerInfo),
    b: (usize, &str, &ContainerInfo),
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    wait_ping(lab, a.0, a.1, &b.2.ip, bound);
    wait_ping(lab, b.0, b.1, &a.2.ip, bound);
    wait_tcp_from(lab, (a.0, a.1), (b.0, b.1), &b.2.ip, &a.2.ip, bound);
    wait_tcp_from(lab, (b.0, b.1), (a.0, a.1), &a.2.ip, &b.2.ip, bound);
    started.elapsed()
}

// ---- host state ---------------------------------------------------------------------------------

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `argv` in host `index` (checked) and returns stdout.
pub fn host_sh(lab: &Lab, index: usize, argv: &[&str]) -> String {
    let out = lab.exec(index, argv).unwrap_or_else(|e| panic!("{e:#}"));
    stdout(&out)
}

/// `iptables-save` of host `index` without comments and counters: the kernel's rule set.
pub fn iptables_save(lab: &Lab, index: usize) -> String {
    host_sh(lab, index, &["iptables-save"])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            // chain lines carry counters: ":DOCKER - [0:0]"
            match l.find(" [") {
                Some(p) if l.starts_with(':') => &l[..p],
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The policy of the filter FORWARD chain of host `index` (`DROP`, `ACCEPT`).
pub fn forward_policy(lab: &Lab, index: usize) -> String {
    host_sh(lab, index, &["iptables", "-w", "-S", "FORWARD"])
        .lines()
        .find_map(|l| l.strip_prefix("-P FORWARD ").map(|p| p.trim().to_string()))
        .unwrap_or_default()
}

/// Asserts the host's firewall is narrow: FORWARD policy DROP, no unconditional ACCEPT in FORWARD,
/// DOCKER-USER or crossdock's chains (every crossdock ACCEPT names both a source and a destination).
pub fn assert_narrow_firewall(lab: &Lab, index: usize) {
    assert_eq!(
        forward_policy(lab, index),
        "DROP",
        "h{index}: the FORWARD policy must stay DROP"
    );
    let rules = host_sh(lab, index, &["iptables", "-w", "-S"]);
    for l in rules.lines() {
        let chain = l.split_whitespace().nth(1).unwrap_or("");
        let relevant =
            chain == "FORWARD" || chain == "DOCKER-USER" || chain.starts_with("CROSSDOCK-");
        if relevant && l.starts_with("-A") && l.ends_with("-j ACCEPT") {
            let narrowed = (l.contains(" -s ") && l.contains(" -d "))
                || l.contains("--ctstate")
                || l.contains(" -i docker0")
                || l.contains(" -i br-");
            assert!(narrowed, "h{index}: a broad ACCEPT rule: {l}\n{rules}");
        }
    }
}

/// Whether host `index` has crossdock's three chains, each jumped to, with rules for `subnet`.
pub fn has_crossdock_rules(lab: &Lab, index: usize, subnet: &str) -> bool {
    let save = iptables_save(lab, index);
    let jump = |table_chain: &str, target: &str| {
        save.lines().any(|l| {
            l.starts_with(&format!("-A {table_chain} ")) && l.ends_with(&format!("-j {target}"))
        })
    };
    let has_rule = |chain: &str| {
        save.lines()
            .any(|l| l.starts_with(&format!("-A {chain} ")) && l.contains(subnet))
    };
    jump("DOCKER-USER", "CROSSDOCK-FORWARD")
        && jump("POSTROUTING", "CROSSDOCK-POSTROUTING")
        && jump("PREROUTING", "CROSSDOCK-PREROUTING")
        && has_rule("CROSSDOCK-FORWARD")
        && has_rule("CROSSDOCK-POSTROUTING")
        && has_rule("CROSSDOCK-PREROUTING")
}

// ---- dockerd ------------------------------------------------------------------------------------

/// Restarts host `index`'s dockerd through the lab's dockerd helper (same data directory), optionally
/// with a new bip. Its containers stop (the restart kills them, as a daemon crash would). Returns the
/// new daemon's process handle: the lab's `down` stops the daemon; the caller reaps the handle.
pub fn restart_dockerd(lab: &Lab, index: usize, new_bip: Option<&str>) -> Option<Child> {
    let h = lab.host(index);
    let bip = h.bip.clone().expect("a host with dockerd");
    let spec = DockerdSpec::new(h.netns_path(), &h.dir, &bip, lab.state().docker_version);
    let mut d = Dockerd::attach(spec).unwrap_or_else(|e| panic!("h{index}'s dockerd: {e:#}"));
    d.restart(new_bip)
        .unwrap_or_else(|e| panic!("restarting h{index}'s dockerd: {e:#}"));
    d.detach()
}

/// Reaps a dockerd handle from [`restart_dockerd`] once the lab is down.
pub fn reap(children: Vec<Option<Child>>) {
    for mut c in children.into_iter().flatten() {
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

// ---- files --------------------------------------------------------------------------------------

/// Edits host `index`'s agent configuration file (the lab wrote it; the agent reads it at start).
pub fn edit_agent_config(
    lab: &Lab,
    index: usize,
    edit: impl FnOnce(&mut crossdock_config::Config),
) {
    let path = lab.host(index).agent_config.clone();
    let mut c = crossdock_config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    edit(&mut c);
    let mut text = c.to_toml();
    // to_toml redacts the AccessKey secret; write the real one back.
    if !c.cloud.access_key_secret.is_empty() {
        text = text.replace(
            "access_key_secret = \"<redacted>\"",
            &format!(
                "access_key_secret = \"{}\"",
                c.cloud.access_key_secret.expose()
            ),
        );
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Every file mode bit of `path`.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// A sorted set of strings, for comparing lists regardless of order.
pub fn set<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> BTreeSet<String> {
    items.into_iter().map(Into::into).collect()
}
