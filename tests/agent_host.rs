//! The agent's host side against a REAL dockerd (20.10 and 28.x), a real kernel and real iptables, in a
//! fresh network namespace (root only; reports a skip otherwise: `crossdock_lab::testing::skip`).
//!
//! One scenario per Docker version, in the order an operator meets them: start (rules, sysctls,
//! conditions, socket mode), an idle resync (zero changes), Docker's own rules and the FORWARD policy
//! untouched, `iptables -F` of our chain and of DOCKER-USER repaired by the resync, the same repaired at
//! once by a Docker event (with the resync pushed to an hour by a SIGHUP reload), SIGHUP with a bad file
//! (rejected, old config kept), a bip change followed without restarting the agent, SIGTERM leaving the
//! kernel state in place, `--cleanup` removing exactly crossdock's rules, and bad input at start-up
//! (subnet outside the cluster range, missing network) exiting 2 with nothing applied.
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise.

use crossdock_lab::dockerd::{DockerVersion, Dockerd, DockerdSpec};
use crossdock_lab::netns::Netns;
use crossdock_lab::procs;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_crossdock");
const CLUSTER: &str = "10.31.0.0/16";

/// Polls `f` every 100 ms until it returns Some, or panics after `secs` naming `what`.
fn wait<T>(what: &str, secs: u64, agent: Option<&Agent>, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            let log = agent.map(|a| a.log_tail()).unwrap_or_default();
            panic!("timed out after {secs} s waiting for {what}\n--- agent log (tail) ---\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `crossdock agent` inside the namespace; killed (by PID) if the test ends early.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
    socket: PathBuf,
}

impl Agent {
    fn start(ns: &Netns, config: &Path, log: &Path, socket: &Path) -> Agent {
        let out = std::fs::File::create(log).unwrap();
        let child = ns
            .command(&[BIN, "agent", "-c", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log: log.to_path_buf(),
            socket: socket.to_path_buf(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(crossdock_unixhttp::request(
            &self.socket,
            "GET",
            path,
            None,
            None,
        ))
        .ok()
        .map(|r| (r.status, r.text()))
    }

    fn status(&self) -> Option<Value> {
        self.get("/status")
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
    }

    /// Waits for a status satisfying `ok`, returns it.
    fn wait_status(&self, what: &str, secs: u64, ok: impl Fn(&Value) -> bool) -> Value {
        wait(what, secs, Some(self), || self.status().filter(|s| ok(s)))
    }

    /// Waits for the process to exit; returns its exit code.
    fn wait_exit(&mut self, secs: u64) -> i32 {
        let child = self.child.as_mut().unwrap();
        let code = wait("the agent to exit", secs, None, || {
            child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1))
        });
        self.child = None;
        code
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One sample of the agent's /metrics (0 if absent).
fn metric(agent: &Agent, series: &str) -> u64 {
    let (_, text) = agent.get("/metrics").unwrap_or_default();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn cond<'a>(s: &'a Value, name: &str) -> &'a str {
    s["conditions"][name]["state"].as_str().unwrap_or("?")
}

fn iptables_save(ns: &Netns) -> String {
    ns.exec_stdout(&["iptables-save"]).unwrap()
}

/// Docker's (everyone's but ours) rules, user chains and built-in policies, each prefixed with its
/// table; counters stripped. (A table nobody used before, like raw on 20.10, appears in iptables-save
/// once used, with its default policies; those carry no information and are left out.)
fn foreign_rules(ns: &Netns) -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for l in iptables_save(ns).lines() {
        let ours_or_noise =
            l.to_lowercase().contains("crossdock") || l.starts_with('#') || l == "COMMIT";
        let default_policy = l.starts_with(':') && l.contains(" ACCEPT") && table != "filter";
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if !ours_or_noise && !default_policy {
            out.push(format!("{table}: {}", l.split(" [").next().unwrap()));
        }
    }
    out
}

/// The rules the agent must hold for `subnet`, as `iptables` argument lists (table first).
fn expected_rules(subnet: &str) -> Vec<Vec<String>> {
    let s = |v: &str| v.split(' ').map(String::from).collect::<Vec<_>>();
    vec![
        s(&format!("-t filter -C CROSSDOCK-FORWARD -s {CLUSTER} -d {subnet} -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT")),
        s(&format!("-t nat -C CROSSDOCK-POSTROUTING -s {subnet} -d {CLUSTER} -m comment --comment crossdock:keep-container-source -j ACCEPT")),
        s(&format!("-t raw -C CROSSDOCK-PREROUTING -s {CLUSTER} -d {subnet} ! -i docker0 -m comment --comment crossdock:cluster-before-docker-raw-drop -j ACCEPT")),
        s("-t filter -C DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD"),
        s("-t nat -C POSTROUTING -m comment --comment crossdock:jump -j CROSSDOCK-POSTROUTING"),
        s("-t raw -C PREROUTING -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING"),
    ]
}

fn rules_in_place(ns: &Netns, subnet: &str) -> bool {
    let jumps_first = [
        ("filter", "DOCKER-USER", "CROSSDOCK-FORWARD"),
        ("nat", "POSTROUTING", "CROSSDOCK-POSTROUTING"),
        ("raw", "PREROUTING", "CROSSDOCK-PREROUTING"),
    ]
    .iter()
    .all(|(t, c, target)| {
        ns.exec_stdout(&["iptables", "-t", t, "-S", c])
            .ok()
            .and_then(|out| {
                out.lines()
                    .nth(1)
                    .map(|l| l.ends_with(&format!("-j {target}")))
            })
            .unwrap_or(false)
    });
    jumps_first
        && expected_rules(subnet).iter().all(|r| {
            let mut argv = vec!["iptables"];
            argv.extend(r.iter().map(String::as_str));
            ns.exec_unchecked(&argv).unwrap().status.success()
        })
}

fn write_config(
    path: &Path,
    dockerd: &Dockerd,
    socket: &Path,
    resync: u64,
    cluster: &str,
    network: &str,
) {
    std::fs::write(
        path,
        format!(
            "cluster_cidrs = [\"{cluster}\"]\nresync_interval_secs = {resync}\nhealth_socket = \"{}\"\nlog_level = \"info\"\n\n[docker]\nhost = \"unix://{}\"\nnetwork = \"{network}\"\n",
            socket.display(),
            dockerd.socket_path().display()
        ),
    )
    .unwrap();
}

fn scenario(version: DockerVersion) {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let started = Instant::now();
    let tag = format!("{}-{}", version.as_str(), std::process::id());
    let ns = Netns::create(&format!("cd-agent-{tag}")).unwrap();
    // An uplink with a default route, so "auto" finds eth0 (both veth ends live in the namespace).
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    ns.link_up("eth0").unwrap();
    ns.link_up("eth0p").unwrap();
    ns.addr_add("eth0", "192.168.77.2/24").unwrap();
    ns.default_route("192.168.77.1").unwrap();

    // A fresh host: forwarding off, so Docker switches it on and sets the FORWARD policy to DROP.
    ns.sysctl("net.ipv4.ip_forward", "0").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut dockerd = Dockerd::start(DockerdSpec::new(
        ns.path(),
        dir.path().join("d"),
        "10.31.1.1/24",
        version,
    ))
    .unwrap();
    dockerd.import_busybox().unwrap();
    // Docker switched forwarding on everywhere; turn it off on eth0 so the agent has work to do.
    ns.sysctl("net.ipv4.conf.eth0.forwarding", "0").unwrap();
    let docker_rules = foreign_rules(&ns);
    assert!(
        iptables_save(&ns).contains(":FORWARD DROP"),
        "Docker sets FORWARD DROP"
    );

    let config = dir.path().join("agent.toml");
    let socket = dir.path().join("agent.sock");
    let log = dir.path().join("agent.log");
    write_config(&config, &dockerd, &socket, 2, CLUSTER, "bridge");

    // --check-config prints the effective configuration and checks the network with Docker.
    let out = Command::new(BIN)
        .args(["agent", "-c", config.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("resync_interval_secs = 2"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("10.31.1.0/24 on docker0"));

    // 1. Start: rules, sysctls, conditions, socket mode.
    let mut agent = Agent::start(&ns, &config, &log, &socket);
    let s = agent.wait_status("firewall and forwarding ready", 60, |s| {
        cond(s, "firewall") == "ready" && cond(s, "forwarding") == "ready"
    });
    assert_eq!(cond(&s, "docker"), "ready");
    assert_eq!(cond(&s, "subnet"), "ready");
    assert_eq!(cond(&s, "route"), "disabled");
    assert_eq!(cond(&s, "credentials"), "disabled");
    assert_eq!(s["subnet"], "10.31.1.0/24");
    assert_eq!(s["bridge"], "docker0");
    assert_eq!(s["external_interface"], "eth0");
    let major = match version {
        DockerVersion::V20 => "20.",
        DockerVersion::V28 => "28.",
    };
    assert!(
        s["docker_version"].as_str().unwrap().starts_with(major),
        "{s}"
    );
    assert!(
        rules_in_place(&ns, "10.31.1.0/24"),
        "{}",
        iptables_save(&ns)
    );
    assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(ns.sysctl_get("net.ipv4.conf.eth0.forwarding").unwrap(), "1");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    assert_eq!(agent.get("/healthz").unwrap(), (200, "ok\n".to_string()));

    // 2. Idle resyncs change nothing; Docker's rules and the FORWARD policy are untouched.
    let first = s["counters"]["reconciles"].as_u64().unwrap();
    let s = agent.wait_status("two more passes", 30, |s| {
        s["counters"]["reconciles"].as_u64().unwrap() >= first + 2
    });
    assert_eq!(s["counters"]["last_reconcile_changes"], 0, "{s}");
    let (_, metrics) = agent.get("/metrics").unwrap();
    assert!(
        metrics.contains("crossdock_last_reconcile_changes 0"),
        "{metrics}"
    );
    assert!(metrics.contains("crossdock_reconcile_total{trigger=\"resync\",result=\"ok\"}"));
    assert_eq!(
        foreign_rules(&ns),
        docker_rules,
        "Docker's own rules must be untouched"
    );

    // 3. Someone flushes our chain and DOCKER-USER: back within the resync interval (2 s).
    ns.exec(&["iptables", "-F", "CROSSDOCK-FORWARD"]).unwrap();
    ns.exec(&["iptables", "-F", "DOCKER-USER"]).unwrap();
    let t = Instant::now();
    wait("rules restored by the resync", 15, Some(&agent), || {
        rules_in_place(&ns, "10.31.1.0/24").then_some(())
    });
    eprintln!("[{tag}] restored by resync after {:?}", t.elapsed());

    // 4. SIGHUP reload with a one-hour resync, then the same flush is repaired by a Docker event.
    write_config(&config, &dockerd, &socket, 3600, CLUSTER, "bridge");
    procs::signal(agent.pid(), "HUP");
    agent.wait_status("the reload", 20, |s| s["counters"]["config_reloads"] == 1);
    // The pass the reload triggers has finished before the flush (it would repair it otherwise).
    wait("the reload pass", 20, Some(&agent), || {
        (metric(
            &agent,
            "crossdock_reconcile_total{trigger=\"reload\",result=\"ok\"}",
        ) == 1)
            .then_some(())
    });
    let resyncs = metric(
        &agent,
        "crossdock_reconcile_total{trigger=\"resync\",result=\"ok\"}",
    );
    let events = metric(
        &agent,
        "crossdock_reconcile_total{trigger=\"docker_event\",result=\"ok\"}",
    );
    ns.exec(&["iptables", "-F", "CROSSDOCK-FORWARD"]).unwrap();
    ns.exec(&["iptables", "-t", "raw", "-F", "CROSSDOCK-PREROUTING"])
        .unwrap();
    let c1 = dockerd
        .run_container("c1", &["busybox:lab", "sleep", "600"])
        .unwrap();
    let t = Instant::now();
    wait(
        "rules restored by the container-start event",
        15,
        Some(&agent),
        || rules_in_place(&ns, "10.31.1.0/24").then_some(()),
    );
    eprintln!("[{tag}] restored by a Docker event after {:?}", t.elapsed());
    assert_eq!(
        metric(
            &agent,
            "crossdock_reconcile_total{trigger=\"resync\",result=\"ok\"}"
        ),
        resyncs,
        "no resync may have run: the repair came from the event"
    );
    assert!(
        metric(
            &agent,
            "crossdock_reconcile_total{trigger=\"docker_event\",result=\"ok\"}"
        ) > events
    );
    if version == DockerVersion::V28 {
        // Docker 28 appended its raw DROP for the container after our jump.
        let raw = ns
            .exec_stdout(&["iptables", "-t", "raw", "-S", "PREROUTING"])
            .unwrap();
        let lines: Vec<&str> = raw.lines().collect();
        assert!(lines[1].contains("CROSSDOCK-PREROUTING"), "{raw}");
        assert!(raw.contains(&format!("-d {}/32", c1.ip)), "{raw}");
    }

    // 5. SIGHUP with a bad file, then with a range no longer holding the subnet: both rejected.
    std::fs::write(&config, "cluster_cidrs = [\"10.31.0.0/16\"\n").unwrap();
    procs::signal(agent.pid(), "HUP");
    agent.wait_status("a rejected reload", 20, |s| {
        s["counters"]["config_reload_errors"] == 1
    });
    write_config(&config, &dockerd, &socket, 2, "10.99.0.0/16", "bridge");
    procs::signal(agent.pid(), "HUP");
    agent.wait_status("a second rejected reload", 20, |s| {
        s["counters"]["config_reload_errors"] == 2
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("configuration reload rejected"), "{text}");
    assert!(text.contains("malformed TOML"), "{text}");
    assert!(text.contains("outside the cluster range"), "{text}");
    let s = agent.status().unwrap();
    assert_eq!(s["counters"]["config_reloads"], 1, "{s}");
    assert_eq!(cond(&s, "firewall"), "ready");
    assert!(rules_in_place(&ns, "10.31.1.0/24"));
    write_config(&config, &dockerd, &socket, 2, CLUSTER, "bridge");
    procs::signal(agent.pid(), "HUP");
    agent.wait_status("the good file reloaded", 20, |s| {
        s["counters"]["config_reloads"] == 2
    });

    // 6. bip change: dockerd restarts with another subnet; the agent follows without a restart.
    let pid = agent.pid();
    dockerd.restart(Some("10.31.2.1/24")).unwrap();
    let t = Instant::now();
    agent.wait_status("the new subnet", 60, |s| {
        s["subnet"] == "10.31.2.0/24"
            && cond(s, "firewall") == "ready"
            && cond(s, "docker") == "ready"
    });
    wait("rules for the new subnet", 30, Some(&agent), || {
        rules_in_place(&ns, "10.31.2.0/24").then_some(())
    });
    eprintln!("[{tag}] followed the bip change after {:?}", t.elapsed());
    let save = iptables_save(&ns);
    assert!(
        !save
            .lines()
            .any(|l| l.contains("crossdock") && l.contains("10.31.1.0/24")),
        "old rules left:\n{save}"
    );
    assert!(procs::alive(pid) && agent.pid() == pid);
    assert!(save.contains(":FORWARD DROP"));

    // 7. SIGTERM: a clean exit that leaves the kernel state in place.
    let docker_rules_now = foreign_rules(&ns);
    procs::signal(agent.pid(), "TERM");
    assert_eq!(agent.wait_exit(20), 0, "{}", agent.log_tail());
    assert!(
        rules_in_place(&ns, "10.31.2.0/24"),
        "SIGTERM must leave the rules"
    );
    assert_eq!(ns.sysctl_get("net.ipv4.conf.eth0.forwarding").unwrap(), "1");
    assert!(!socket.exists(), "the health socket is removed on exit");

    // 8. --cleanup removes exactly crossdock's rules and chains.
    let out = ns
        .exec(&[BIN, "agent", "-c", config.to_str().unwrap(), "--cleanup"])
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed 6 rules and 3 chains"));
    let save = iptables_save(&ns);
    assert!(!save.to_lowercase().contains("crossdock"), "{save}");
    assert_eq!(foreign_rules(&ns), docker_rules_now);

    // 9. Bad input at start-up exits 2 and applies nothing.
    ns.sysctl("net.ipv4.conf.eth0.forwarding", "0").unwrap();
    for (cluster, network, needle) in [
        ("10.99.0.0/16", "bridge", "outside the cluster range"),
        (CLUSTER, "nope", "docker.network"),
    ] {
        write_config(&config, &dockerd, &socket, 2, cluster, network);
        let mut bad = Agent::start(&ns, &config, &log, &socket);
        assert_eq!(bad.wait_exit(60), 2, "{}", bad.log_tail());
        assert!(bad.log_tail().contains(needle), "{}", bad.log_tail());
        let save = iptables_save(&ns);
        assert!(!save.to_lowercase().contains("crossdock"), "{save}");
        assert_eq!(ns.sysctl_get("net.ipv4.conf.eth0.forwarding").unwrap(), "0");
    }

    dockerd.stop().unwrap();
    eprintln!("[{tag}] scenario took {:?}", started.elapsed());
}

#[test]
fn agent_host_side_on_docker_20_10() {
    scenario(DockerVersion::V20);
}

#[test]
fn agent_host_side_on_docker_28() {
    scenario(DockerVersion::V28);
}

/// Static-subnet mode with systemd's notify protocol: no Docker at all; READY=1 arrives only once the
/// health socket answers; WATCHDOG=1 pings follow at half of WATCHDOG_USEC; forwarding is set, no
/// firewall rule is written, and the conditions say so.
#[test]
fn static_mode_ready_and_watchdog() {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    use std::os::unix::net::UnixDatagram;
    let ns = Netns::create(&format!("cd-agent-static-{}", std::process::id())).unwrap();
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    ns.link_up("eth0").unwrap();
    ns.link_up("eth0p").unwrap();
    ns.addr_add("eth0", "192.168.78.2/24").unwrap();
    ns.default_route("192.168.78.1").unwrap();
    ns.sysctl("net.ipv4.ip_forward", "0").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    let socket = dir.path().join("agent.sock");
    let log = dir.path().join("agent.log");
    std::fs::write(
        &config,
        format!(
            "cluster_cidrs = [\"{CLUSTER}\"]\nhealth_socket = \"{}\"\n[docker]\nstatic_subnet = \"10.31.9.0/24\"\nhost = \"unix:///nonexistent/docker.sock\"\n",
            socket.display()
        ),
    )
    .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    // `exec` keeps the PID through sh → nsenter → crossdock, so WATCHDOG_PID=$$ names the agent.
    let script = format!(
        "export WATCHDOG_PID=$$; exec nsenter {} {BIN} agent -c {}",
        ns.nsenter_arg(),
        config.display()
    );
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .args(["-c", &script])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut agent = Agent {
        child: Some(child),
        log: log.clone(),
        socket: socket.clone(),
    };

    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notify message");
    let first = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(first.contains("READY=1"), "{first}");
    // At READY=1 the socket already answers.
    assert!(
        agent.get("/healthz").is_some(),
        "READY=1 before the health socket answered"
    );
    let started = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        let n = notify.recv(&mut buf).expect("watchdog pings");
        if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "3 pings at 200 ms took {took:?}"
    );

    let s = agent.wait_status("forwarding ready", 20, |s| cond(s, "forwarding") == "ready");
    assert_eq!(s["subnet"], "10.31.9.0/24");
    assert_eq!(cond(&s, "docker"), "disabled");
    assert_eq!(cond(&s, "firewall"), "disabled");
    assert_eq!(cond(&s, "subnet"), "ready");
    assert_eq!(agent.get("/healthz").unwrap().0, 200);
    assert_eq!(ns.sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let save = iptables_save(&ns);
    assert!(!save.to_lowercase().contains("crossdock"), "{save}");

    procs::signal(agent.pid(), "TERM");
    assert_eq!(agent.wait_exit(20), 0, "{}", agent.log_tail());
}

/// At boot the agent may start before Docker: it binds its socket, reports `docker` pending and
/// /healthz 503, applies nothing, and converges as soon as the daemon answers.
fn boot_before_docker(version: DockerVersion) {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let tag = format!("boot-{}-{}", version.as_str(), std::process::id());
    let ns = Netns::create(&format!("cd-agent-{tag}")).unwrap();
    ns.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])
    .unwrap();
    ns.link_up("eth0").unwrap();
    ns.link_up("eth0p").unwrap();
    ns.addr_add("eth0", "192.168.79.2/24").unwrap();
    ns.default_route("192.168.79.1").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = DockerdSpec::new(ns.path(), dir.path().join("d"), "10.31.5.1/24", version);
    let docker_socket = spec.socket_path();
    let config = dir.path().join("agent.toml");
    let socket = dir.path().join("agent.sock");
    std::fs::write(
        &config,
        format!(
            "cluster_cidrs = [\"{CLUSTER}\"]\nhealth_socket = \"{}\"\n[docker]\nhost = \"unix://{}\"\n",
            socket.display(),
            docker_socket.display()
        ),
    )
    .unwrap();
    let agent = Agent::start(&ns, &config, &dir.path().join("agent.log"), &socket);
    let s = agent.wait_status("docker pending", 20, |s| {
        s["conditions"]["docker"]["reason"] == "WaitingForDocker"
    });
    assert_eq!(cond(&s, "firewall"), "pending");
    let (code, body) = agent.get("/healthz").unwrap();
    assert_eq!(code, 503);
    assert!(
        body.contains("docker: pending (WaitingForDocker)"),
        "{body}"
    );
    assert!(!iptables_save(&ns).to_lowercase().contains("crossdock"));

    let mut dockerd = Dockerd::start(spec).unwrap();
    let t = Instant::now();
    agent.wait_status("ready after Docker came up", 60, |s| {
        cond(s, "docker") == "ready" && cond(s, "firewall") == "ready"
    });
    eprintln!("[{tag}] converged {:?} after dockerd answered", t.elapsed());
    assert!(
        rules_in_place(&ns, "10.31.5.0/24"),
        "{}",
        iptables_save(&ns)
    );
    assert_eq!(agent.get("/healthz").unwrap().0, 200);
    drop(agent);
    dockerd.stop().unwrap();
}

#[test]
fn agent_waits_for_docker_at_boot_20_10() {
    boot_before_docker(DockerVersion::V20);
}

#[test]
fn agent_waits_for_docker_at_boot_28() {
    boot_before_docker(DockerVersion::V28);
}
