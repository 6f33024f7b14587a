//! Command-line entry points of the agent crate: `crossdock agent` (the daemon, `--check-config`,
//! `--cleanup`), `crossdock status`, `crossdock deregister`.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad input or configuration.

use crate::daemon::{self, Exit};
use crate::routes::{self, RouteSync};
use clap::Args;
use crossdock_config::Config;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `crossdock agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        default_value = "/etc/crossdock/agent.toml",
        env = "CROSSDOCK_CONFIG"
    )]
    pub config: std::path::PathBuf,
    /// Validate the configuration (with the scrape address against this host's and, if Docker
    /// answers, the served network and its subnet); when valid, print the effective configuration as
    /// TOML. Exit 0 valid, 2 invalid (then only the error is printed).
    #[arg(long, conflicts_with = "cleanup")]
    pub check_config: bool,
    /// Remove every iptables rule and chain crossdock owns, and nothing else, then exit. Stop the
    /// agent first, or it puts them back.
    #[arg(long)]
    pub cleanup: bool,
}

/// `crossdock status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the raw JSON of the agent's /status (with --fleet: of its `fleet` part).
    #[arg(long)]
    pub json: bool,
    /// Fleet mode: every member host with its subnet, its route per table and its agent's version
    /// and last-seen time (names on), members without a route, then silent agents, first; routes
    /// whose host is gone last.
    #[arg(long)]
    pub fleet: bool,
    /// The agent's health socket.
    #[arg(
        long,
        env = "CROSSDOCK_SOCKET",
        default_value = "/run/crossdock/agent.sock"
    )]
    pub socket: PathBuf,
}

/// `crossdock deregister`: deletes this host's own VPC routes (those carrying crossdock's marker and
/// pointing at this instance) in every route table of the VPC, for decommissioning. Stop the agent first,
/// or it registers the route again on its next pass.
#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        default_value = "/etc/crossdock/agent.toml",
        env = "CROSSDOCK_CONFIG"
    )]
    pub config: std::path::PathBuf,
    /// Print the result as JSON (the route report: condition and deleted routes).
    #[arg(long)]
    pub json: bool,
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, u8> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().map_err(|e| {
        eprintln!("crossdock: cannot start the async runtime: {e}");
        1
    })
}

fn load_or_report(path: &Path) -> Result<Config, u8> {
    crossdock_config::load(path).map_err(|e| {
        eprintln!("crossdock: {}: {e}", path.display());
        2
    })
}

pub fn run_agent(args: AgentArgs) -> u8 {
    if args.cleanup {
        return run_cleanup(&args.config);
    }
    let cfg = match load_or_report(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check_config {
        return check_config(&args.config, cfg);
    }
    let log = crate::logging::init(cfg.log_format, &cfg.log_level);
    let rt = match runtime(2) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let exit = rt.block_on(async {
        if let Err(e) = check_mapping_at_start(&cfg).await {
            return Exit::Config(e);
        }
        let routes: Arc<dyn RouteSync> = routes::for_config(&cfg);
        let path = std::path::absolute(&args.config).unwrap_or_else(|_| args.config.clone());
        match daemon::DaemonDeps::real(&cfg, routes) {
            Ok(deps) => daemon::run(path, cfg, log, deps).await,
            Err(e) => Exit::Runtime(e),
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    match exit {
        Exit::Clean => 0,
        Exit::Config(e) => {
            eprintln!("crossdock: {}: {e}", args.config.display());
            2
        }
        Exit::Runtime(m) => {
            eprintln!("crossdock: {m}");
            1
        }
    }
}

/// Derived subnets with the VPC CIDR as the host range: the mapping can only be checked once the
/// metadata service says what the VPC CIDR is. A mapping that cannot fit is bad input (exit 2, as
/// `crossdock init` says too); a metadata service that does not answer yet is not, and the route side
/// keeps asking.
async fn check_mapping_at_start(cfg: &Config) -> Result<(), crossdock_config::ConfigError> {
    let derived = cfg.subnet.mode == crossdock_config::SubnetMode::Derived;
    if !derived
        || !cfg.subnet.host_ranges.is_empty()
        || cfg.cloud.provider != crossdock_config::Provider::Alibaba
    {
        return Ok(());
    }
    match crossdock_init::identity::resolve(cfg, std::time::Duration::from_secs(3)).await {
        Ok(id) => cfg.subnet_mapping(id.vpc_cidr).map(|_| ()),
        Err(e) => {
            tracing::warn!("cannot check the subnet mapping against the VPC CIDR yet: {e}");
            Ok(())
        }
    }
}

/// `--check-config`: the file (already loaded), then what only this host can tell: the scrape
/// address, and (best effort, bounded) what Docker says about the network. The effective
/// configuration is printed only when all of it passed, so a refusal (exit 2) is never mistaken for
/// success when the output is skimmed or piped; the verdict goes to stderr either way.
fn check_config(path: &Path, cfg: Config) -> u8 {
    let rt = match runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let (code, verdict) = rt.block_on(check_on_host(&cfg));
    if code == 0 {
        print!("{}", cfg.to_toml());
    }
    eprintln!("crossdock: {}: {verdict}", path.display());
    code
}

/// The exit code and the one-line verdict of `--check-config` beyond the file itself.
async fn check_on_host(cfg: &Config) -> (u8, String) {
    use crossdock_docker::DockerSource;
    if let Err(e) = crate::scrape::check_listen(&cfg.metrics, &crossdock_hostnet::RtNetlink).await {
        return (2, e.to_string());
    }
    if let Err(e) = crate::names::NamesSettings::from_config(cfg) {
        return (2, e.to_string());
    }
    if cfg.docker.static_subnet.is_some() {
        return (0, "valid (static_subnet mode: Docker not consulted)".into());
    }
    let docker = crossdock_docker::BollardDocker::new(cfg.docker_socket());
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        docker.inspect_network(&cfg.docker.network),
    )
    .await;
    match answer {
        Ok(Ok(net)) => match crossdock_config::check_subnet(net.subnet, cfg) {
            Ok(()) => (
                0,
                format!(
                    "valid; Docker network `{}` is {} on {}",
                    net.name, net.subnet, net.bridge
                ),
            ),
            Err(e) => (2, e.to_string()),
        },
        Ok(Err(e @ crossdock_docker::DockerError::NetworkNotFound { .. })) => {
            tracing::debug!(error = %e, "network lookup");
            let ce = crossdock_config::ConfigError::new(
                "docker.network",
                format!("Docker has no network named `{}`", cfg.docker.network),
                "create it, or name an existing bridge network (`docker network ls`)",
            );
            (2, ce.to_string())
        }
        Ok(Err(e)) => (0, format!("valid; the served network was not checked: {e}")),
        Err(_) => (
            0,
            "valid; the served network was not checked: Docker did not answer within 5 s".into(),
        ),
    }
}

fn run_cleanup(path: &Path) -> u8 {
    let (lock_wait, socket) = match crossdock_config::load(path) {
        Ok(c) => (c.firewall.lock_wait_secs, Some(c.health_socket)),
        Err(e) => {
            eprintln!(
                "crossdock: {}: {e}; cleaning up with the default iptables lock wait",
                path.display()
            );
            (5, None)
        }
    };
    let rt = match runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        if let Some(sock) = socket.filter(|s| s.exists()) {
            if crossdock_unixhttp::request(&sock, "GET", "/healthz", None, None)
                .await
                .is_ok()
            {
                eprintln!(
                    "crossdock: warning: the agent is still running (it answers on {}) and will put its rules back; stop it first",
                    sock.display()
                );
            }
        }
        let fw = crossdock_hostnet::Iptables::new(lock_wait);
        match crossdock_hostnet::Firewall::cleanup(&fw).await {
            Ok(ch) => {
                for line in &ch.log {
                    println!("{line}");
                }
                println!(
                    "removed {} rules and {} chains",
                    ch.rules_removed, ch.chains_removed
                );
                0
            }
            Err(e) => {
                eprintln!("crossdock: cleanup failed: {e}");
                1
            }
        }
    })
}

pub fn run_status(args: StatusArgs) -> u8 {
    let rt = match runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let resp = rt.block_on(crossdock_unixhttp::request(
        &args.socket,
        "GET",
        "/status",
        None,
        None,
    ));
    let resp = match resp {
        Ok(r) if r.is_success() => r,
        Ok(r) => {
            eprintln!(
                "crossdock: the agent on {} answered HTTP {}: {}",
                args.socket.display(),
                r.status,
                r.text().trim()
            );
            return 1;
        }
        Err(e) => {
            eprintln!("crossdock: {}", no_agent(&e.to_string()));
            return 1;
        }
    };
    let v: serde_json::Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("crossdock: the agent's /status is not JSON: {e}");
            return 1;
        }
    };
    if args.fleet {
        return print_fleet(&v["fleet"], args.json);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        print!("{}", render_status(&v));
    }
    let healthy = v["conditions"].as_object().is_some_and(|m| {
        m.values()
            .all(|c| matches!(c["state"].as_str(), Some("ready" | "disabled")))
    });
    if healthy {
        0
    } else {
        1
    }
}

/// What `crossdock status` says when no agent answers: the error and where to look (the unit is
/// `crossdock-agent`).
fn no_agent(error: &str) -> String {
    format!(
        "{error} (fix: start the agent, see `systemctl status crossdock-agent`, or point --socket / CROSSDOCK_SOCKET at its health socket)"
    )
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) if s.is_empty() => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `crossdock status --fleet`: exit 0 when every member is routed and no stale route waits, 1
/// otherwise, 2 when the agent is not in fleet mode.
fn print_fleet(f: &serde_json::Value, json: bool) -> u8 {
    if !f.is_object() {
        eprintln!(
            "crossdock: the agent is not in fleet mode or has not swept yet (fix: set [fleet] tag, or wait for its first route pass)"
        );
        return 2;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(f).unwrap_or_default());
    } else {
        print!("{}", render_fleet_hosts(f));
    }
    let clean = ["routes_missing", "stale_routes", "conflicts"]
        .iter()
        .all(|k| f[*k].as_array().is_none_or(|a| a.is_empty()));
    u8::from(!clean)
}

/// `12s ago`, `4m ago`, `3h ago`, `2d ago`.
fn ago_text(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s ago"),
        120..7200 => format!("{}m ago", secs / 60),
        7200..172_800 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// The LAST SEEN column: `12s ago`, `SILENT 45s ago` / `NOT HEARD` for a silent agent, `-` when
/// nothing is known (names off).
fn last_seen_text(h: &serde_json::Value) -> String {
    let ago = h["last_seen"]["secs_ago"].as_u64();
    match (ago, h["agent_silent"] == true) {
        (Some(secs), false) => ago_text(secs),
        (Some(secs), true) => format!("SILENT {}", ago_text(secs)),
        (None, true) => "NOT HEARD".into(),
        (None, false) => "-".into(),
    }
}

fn route_missing(h: &serde_json::Value) -> bool {
    h["routes"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["status"] == "Missing"))
}

/// The fleet view: one line per member (subnet, agent version and last seen, route per table), then
/// the routes whose host is gone.
pub fn render_fleet_hosts(f: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let hosts = f["hosts"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        out,
        "{:<24} {:<9} {:<16} {:<18} {:<7} {:<10} {:<15} ROUTES",
        "MEMBER", "STATUS", "PRIVATE IP", "SUBNET", "ROUTED", "VERSION", "LAST SEEN"
    );
    let mut sorted = hosts.clone();
    // Members lacking a route first, then those whose agent is silent: they stand out.
    sorted.sort_by_key(|h| (!route_missing(h), h["agent_silent"] != true));
    for h in &sorted {
        let routes = h["routes"].as_array().cloned().unwrap_or_default();
        let routed = if routes.is_empty() {
            "-"
        } else if routes.iter().all(|r| r["status"] == "Available") {
            "yes"
        } else if routes.iter().any(|r| r["status"] == "Missing") {
            "MISSING"
        } else {
            "pending"
        };
        let per_table: Vec<String> = routes
            .iter()
            .map(|r| format!("{}={}", s(&r["table_id"]), s(&r["status"])))
            .collect();
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:<16} {:<18} {:<7} {:<10} {:<15} {}",
            s(&h["instance_id"]),
            s(&h["status"]),
            s(&h["private_ip"]),
            s(&h["subnet"]),
            routed,
            s(&h["agent_version"]),
            last_seen_text(h),
            per_table.join(" ")
        );
    }
    for r in f["stale_routes"].as_array().cloned().unwrap_or_default() {
        let _ = writeln!(
            out,
            "{:<24} {:<9} {:<16} {:<18} {:<7} {:<10} {:<15} {}={} (host gone; {}, due in {} s)",
            s(&r["instance_id"]),
            "RELEASED",
            "-",
            s(&r["cidr"]),
            "STALE",
            "-",
            "-",
            s(&r["table_id"]),
            s(&r["entry_id"]),
            s(&r["waiting_for"]),
            s(&r["due_in_secs"])
        );
    }
    let silent = hosts.iter().filter(|h| h["agent_silent"] == true).count();
    let _ = writeln!(
        out,
        "{} members ({} running){}{}",
        hosts.len(),
        s(&f["running"]),
        if silent > 0 {
            format!("; {silent} agents not heard lately")
        } else {
            String::new()
        },
        if f["written_since"] == true {
            "; routes were written after this view, the agent's next pass reads them again"
        } else {
            ""
        }
    );
    out
}

/// Fleet mode's part of `crossdock status`: membership, missing routes, stale routes waiting.
fn render_fleet(out: &mut String, f: &serde_json::Value) {
    use std::fmt::Write;
    let list = |k: &str| f[k].as_array().cloned().unwrap_or_default();
    let (missing, stale, conflicts) = (
        list("routes_missing"),
        list("stale_routes"),
        list("conflicts"),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "fleet {}: {} members ({} running), {} routes missing, {} stale routes waiting, {} conflicts",
        s(&f["tag"]),
        s(&f["members"]),
        s(&f["running"]),
        missing.len(),
        stale.len(),
        conflicts.len()
    );
    for m in &missing {
        let _ = writeln!(
            out,
            "  missing  {:<18} → {:<22} in {}",
            s(&m["cidr"]),
            s(&m["instance_id"]),
            s(&m["table_id"])
        );
    }
    for r in &stale {
        let _ = writeln!(
            out,
            "  stale    {:<18} → {:<22} in {} ({} released; {}, due in {} s)",
            s(&r["cidr"]),
            s(&r["instance_id"]),
            s(&r["table_id"]),
            s(&r["entry_id"]),
            s(&r["waiting_for"]),
            s(&r["due_in_secs"])
        );
    }
    for h in list("hosts").iter().filter(|h| h["agent_silent"] == true) {
        let _ = writeln!(
            out,
            "  silent   {:<18} {:<22} agent last heard {} (version {})",
            s(&h["private_ip"]),
            s(&h["instance_id"]),
            h["last_seen"]["secs_ago"]
                .as_u64()
                .map_or_else(|| "never".to_string(), ago_text),
            s(&h["agent_version"])
        );
    }
    for c in &conflicts {
        let _ = writeln!(
            out,
            "  conflict {:<18} → {:<22} in {} held by {} ({})",
            s(&c["cidr"]),
            s(&c["instance_id"]),
            s(&c["table_id"]),
            s(&c["entry_id"]),
            s(&c["holder"])
        );
    }
}

/// The human view of `/status`.
pub fn render_status(v: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "crossdock agent {} (pid {}), started {}, config {}",
        s(&v["version"]),
        s(&v["pid"]),
        s(&v["started_at"]),
        s(&v["config_path"])
    );
    let _ = writeln!(
        out,
        "subnet {} on {}, Docker {}, external interface {}, instance {}",
        s(&v["subnet"]),
        s(&v["bridge"]),
        s(&v["docker_version"]),
        s(&v["external_interface"]),
        s(&v["instance_id"])
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12} {:<9} {:<22} {:<21} MESSAGE",
        "CONDITION", "STATE", "REASON", "SINCE"
    );
    if let Some(conds) = v["conditions"].as_object() {
        for name in crate::state::CONDITIONS {
            let c = &conds.get(name.as_str()).cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "{:<12} {:<9} {:<22} {:<21} {}",
                name,
                s(&c["state"]),
                s(&c["reason"]),
                s(&c["last_change"]),
                s(&c["message"])
            );
            if let Some(err) = c["last_error"].as_str() {
                if c["state"] != "failed" {
                    let _ = writeln!(out, "{:<12} {:<9} last error: {err}", "", "");
                }
            }
        }
    }
    if let Some(routes) = v["routes"].as_array().filter(|r| !r.is_empty()) {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<26} {:<18} {:<26} {:<10} OWNER",
            "ROUTE TABLE", "DESTINATION", "ENTRY", "STATUS"
        );
        for r in routes {
            let _ = writeln!(
                out,
                "{:<26} {:<18} {:<26} {:<10} {}",
                s(&r["table_id"]),
                s(&r["cidr"]),
                s(&r["entry_id"]),
                s(&r["status"]),
                s(&r["owner"])
            );
        }
    }
    if v["fleet"].is_object() {
        render_fleet(&mut out, &v["fleet"]);
    }
    if v["names"].is_object() {
        crate::names_status::render(&mut out, &v["names"]);
    }
    let c = &v["counters"];
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "reconciles {} ({} with errors); last pass {} changes in {} ms at {}; rules +{} -{}; sysctl writes {}; Docker events {}",
        s(&c["reconciles"]),
        s(&c["reconcile_errors"]),
        s(&c["last_reconcile_changes"]),
        s(&c["last_reconcile_duration_ms"]),
        s(&c["last_reconcile_at"]),
        s(&c["rules_added"]),
        s(&c["rules_removed"]),
        s(&c["sysctl_changes"]),
        s(&c["docker_events"]),
    );
    out
}

/// Exit 0 when every owned route is gone (or there was none), 1 when some could not be deleted (the
/// message says which and why), 2 for a configuration that does not let crossdock manage routes.
pub fn run_deregister(args: DeregisterArgs) -> u8 {
    let cfg = match load_or_report(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cfg.cloud.provider != crossdock_config::Provider::Alibaba {
        eprintln!(
            "crossdock deregister: {}: [cloud] provider is \"none\", so routes are managed outside crossdock and there is nothing of crossdock's to delete; set provider = \"alibaba\" if this host's route was registered by crossdock",
            args.config.display()
        );
        return 2;
    }
    let _log = crate::logging::init(cfg.log_format, &cfg.log_level);
    let rt = match runtime(1) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let routes = match crossdock_routes::connect(&cfg.cloud).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "crossdock deregister: cannot reach the cloud API: {e}. {}",
                    e.fix()
                );
                return 1;
            }
        };
        let report = routes.deregister().await;
        if args.json {
            match serde_json::to_string_pretty(&report) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("crossdock deregister: cannot encode the report: {e}"),
            }
        } else {
            for r in &report.routes {
                println!("deleted {} {} ({})", r.table_id, r.cidr, r.entry_id);
            }
            println!("{}", report.route.message);
        }
        if report.is_ready() {
            0
        } else {
            eprintln!("crossdock deregister: {}", report.route.message);
            1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_agent_status_points_at_the_unit() {
        let m = no_agent("cannot connect to /run/crossdock/agent.sock");
        assert!(m.contains("`systemctl status crossdock-agent`"), "{m}");
        assert!(!m.contains("crossdock`"), "{m}");
    }

    #[test]
    fn check_config_refuses_a_scrape_address_of_another_host_without_asking_docker() {
        let cfg = crossdock_config::parse(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"unix:///nonexistent/docker.sock\"\n[metrics]\nlisten = \"192.0.2.77:9464\"\nscrapers = [\"192.0.2.0/24\"]",
        )
        .unwrap();
        let rt = runtime(1).unwrap();
        let (code, verdict) = rt.block_on(check_on_host(&cfg));
        assert_eq!(code, 2, "{verdict}");
        assert!(
            verdict.starts_with("metrics.listen: 192.0.2.77 is not an address of this host"),
            "{verdict}"
        );
        let mut local = cfg.clone();
        local.metrics.listen = Some("127.0.0.1:9464".parse().unwrap());
        let (code, verdict) = rt.block_on(check_on_host(&local));
        assert_eq!(code, 0, "{verdict}");
        assert!(
            verdict.contains("the served network was not checked"),
            "{verdict}"
        );
    }

    #[test]
    fn fleet_view_puts_unrouted_members_first_and_marks_gone_hosts() {
        let f = serde_json::json!({
            "tag": "crossdock-cluster=prod", "members": 2, "running": 2,
            "routes_missing": [{"table_id": "vtb-1", "cidr": "10.1.12.0/24", "instance_id": "i-b"}],
            "stale_routes": [{"table_id": "vtb-1", "cidr": "10.1.13.0/24", "entry_id": "rte-9",
                "instance_id": "i-gone", "waiting_for": "grace_period", "due_in_secs": 120}],
            "conflicts": [],
            "hosts": [
                {"instance_id": "i-a", "status": "Running", "private_ip": "192.168.1.11",
                 "vswitch_id": "vsw-1", "subnet": "10.1.11.0/24",
                 "routes": [{"table_id": "vtb-1", "entry_id": "rte-1", "status": "Available"}]},
                {"instance_id": "i-b", "status": "Running", "private_ip": "192.168.1.12",
                 "vswitch_id": "vsw-1", "subnet": "10.1.12.0/24",
                 "routes": [{"table_id": "vtb-1", "entry_id": "", "status": "Missing"}]}
            ]
        });
        let text = render_fleet_hosts(&f);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("i-b") && lines[1].contains("MISSING"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("i-a") && lines[2].contains("vtb-1=Available"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("i-gone")
                && lines[3].contains("STALE")
                && lines[3].contains("due in 120 s"),
            "{text}"
        );
        assert_eq!(print_fleet(&serde_json::Value::Null, false), 2);
    }

    #[test]
    fn fleet_view_shows_each_agents_version_and_last_seen_and_silent_ones_stand_out() {
        let routed =
            serde_json::json!([{"table_id": "vtb-1", "entry_id": "rte-1", "status": "Available"}]);
        let member = |id: &str,
                      ip: &str,
                      version: serde_json::Value,
                      seen: serde_json::Value,
                      silent: bool| {
            serde_json::json!({"instance_id": id, "status": "Running", "private_ip": ip,
                "vswitch_id": "vsw-1", "subnet": "10.1.11.0/24", "routes": routed,
                "agent_version": version, "last_seen": seen, "agent_silent": silent})
        };
        let f = serde_json::json!({
            "tag": "crossdock-cluster=prod", "members": 4, "running": 4,
            "routes_missing": [], "stale_routes": [], "conflicts": [],
            "hosts": [
                member("i-a", "192.168.1.11", "0.1.0".into(),
                    serde_json::json!({"secs_ago": 12, "at": "2025-06-01T11:59:48Z"}), false),
                member("i-b", "192.168.1.12", "0.1.0".into(),
                    serde_json::json!({"secs_ago": 300, "at": "2025-06-01T11:55:00Z"}), true),
                member("i-c", "192.168.1.13", serde_json::Value::Null, serde_json::Value::Null, true),
                member("i-d", "192.168.1.14", serde_json::Value::Null, serde_json::Value::Null, false),
            ]
        });
        let text = render_fleet_hosts(&f);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("VERSION") && lines[0].contains("LAST SEEN"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("i-b") && lines[1].contains("SILENT 5m ago"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("i-c") && lines[2].contains("NOT HEARD"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("i-a")
                && lines[3].contains("0.1.0")
                && lines[3].contains("12s ago"),
            "{text}"
        );
        // Names off: nothing known, nothing marked.
        let cols: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(cols[0], "i-d", "{text}");
        assert_eq!(&cols[5..8], ["-", "-", "vtb-1=Available"], "{text}");
        assert!(
            text.ends_with("4 members (4 running); 2 agents not heard lately\n"),
            "{text}"
        );
        // The summary of `crossdock status` names them too.
        let mut out = String::new();
        render_fleet(&mut out, &f);
        assert!(
            out.contains("silent   192.168.1.12")
                && out.contains("agent last heard 5m ago (version 0.1.0)"),
            "{out}"
        );
        assert!(
            out.contains("i-c") && out.contains("last heard never"),
            "{out}"
        );
        assert_eq!(print_fleet(&f, false), 0);
    }

    #[test]
    fn status_table_shows_every_condition_and_the_network() {
        let mut st = crate::state::AgentState::new("/etc/crossdock/agent.toml".into());
        st.subnet = Some("10.1.0.0/24".parse().unwrap());
        st.bridge = Some("docker0".into());
        st.set(
            crate::state::Concern::Firewall,
            crate::state::Update::failed(crate::state::Reason::IptablesFailed, "lock held"),
        );
        let text = render_status(&st.status_json());
        assert!(text.contains("subnet 10.1.0.0/24 on docker0"), "{text}");
        for n in crate::state::CONDITIONS {
            assert!(
                text.lines().any(|l| l.starts_with(n.as_str())),
                "{n} missing:\n{text}"
            );
        }
        assert!(text.contains("IptablesFailed"));
        assert!(text.contains("reconciles 0"));
    }
}
