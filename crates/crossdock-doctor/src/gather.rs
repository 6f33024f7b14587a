//! Gathering the facts: small traits over each side effect, their real implementations, and the
//! orchestration that decides what to ask for given what is already known.
//!
//! Every real implementation calls the crate that owns that side effect: sysctls and links through
//! `crossdock-hostnet`, Docker through `crossdock-docker`, the cloud through `crossdock-alibaba` (and
//! `crossdock-routes` for which tables count), the agent over `crossdock-unixhttp`. Only what no crate
//! offers is done here: `iptables-save -c` (one snapshot of every table with counters) and
//! `ip -j route get` (the kernel's route decision for one address). Nothing here writes anything.
//!
//! [`gather`] is the orchestration; it is unit-tested with canned sources, so the choices it makes
//! (which interface is external, which sysctls to read, which address stands in for a peer) are
//! checked without root.

use crate::facts::{
    sample_peer, AgentCondition, AgentFacts, AgentState, CloudFacts, ConfigFacts, DockerFacts,
    ExternalFacts, Fact, Facts, HostFacts, LinkFacts, RouteLookup, Unavailable,
};
use crate::iptables::Ruleset;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use crossdock_config::{Config, Provider};
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one external command (iptables-save, ip) may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// The host's kernel state.
#[async_trait]
pub trait HostProbe: Send + Sync {
    /// `iptables-save -c` of every table.
    async fn iptables_save(&self) -> Fact<String>;
    /// A sysctl by `/proc/sys` path.
    fn sysctl(&self, path: &str) -> Fact<String>;
    /// The interface of the IPv4 default route.
    async fn default_route_interface(&self) -> Fact<Option<String>>;
    /// A link by name (`None`: no such link).
    async fn link(&self, name: &str) -> Fact<Option<LinkFacts>>;
    /// The kernel's route for `dst` (from `src` when given).
    async fn route_get(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Fact<RouteLookup>;
}

/// The Docker engine.
#[async_trait]
pub trait DockerProbe: Send + Sync {
    async fn docker(&self, cfg: &Config) -> Fact<DockerFacts>;
}

/// The agent's health socket.
#[async_trait]
pub trait AgentProbe: Send + Sync {
    async fn status(&self, socket: &Path) -> AgentState;
}

/// The cloud.
#[async_trait]
pub trait CloudProbe: Send + Sync {
    async fn cloud(&self, cfg: &Config, subnet: Option<Ipv4Net>) -> CloudFacts;
}

/// The fact sources of one run.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    pub host: &'a dyn HostProbe,
    pub docker: &'a dyn DockerProbe,
    pub agent: &'a dyn AgentProbe,
    pub cloud: &'a dyn CloudProbe,
}

impl std::fmt::Debug for Sources<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sources")
    }
}

/// Where the agent's socket is: `CROSSDOCK_SOCKET`, else the configuration's `health_socket`, else the
/// default.
pub fn agent_socket(env_socket: Option<PathBuf>, cfg: Option<&Config>) -> PathBuf {
    env_socket
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| cfg.map(|c| c.health_socket.clone()))
        .unwrap_or_else(|| Config::default().health_socket)
}

/// Gathers every fact, asking only for what the earlier answers make meaningful.
pub async fn gather(
    config: ConfigFacts,
    src: Sources<'_>,
    env_socket: Option<PathBuf>,
    now: DateTime<Utc>,
) -> Facts {
    let cfg = config.config.as_ref().ok().cloned();
    let docker = match &cfg {
        Some(c) => src.docker.docker(c).await,
        None => Err(Unavailable::new(
            "not asked: the configuration did not load",
            "fix the configuration first",
        )),
    };
    let network = docker.as_ref().ok().and_then(|d| d.network.as_ref().ok());
    let subnet = network.and_then(|n| n.subnet);
    let bridge_name = network.map(|n| n.bridge.clone());

    // The external interface: configured, else the default route's.
    let external: Fact<ExternalFacts> = match &cfg {
        None => Err(Unavailable::new(
            "not looked up: the configuration did not load",
            "fix the configuration first",
        )),
        Some(c) => {
            let (name, chosen_by) = match c.external_interface() {
                Some(n) => (Ok(Some(n.to_string())), "configured"),
                None => (
                    src.host.default_route_interface().await,
                    "holds the default route",
                ),
            };
            match name {
                Err(u) => Err(u),
                Ok(None) => Err(Unavailable::new(
                    "external_interface = \"auto\" but there is no IPv4 default route",
                    "add a default route, or name the interface towards the VPC in external_interface",
                )),
                Ok(Some(name)) => match src.host.link(&name).await {
                    Err(u) => Err(u),
                    Ok(None) => Err(Unavailable::new(
                        format!("interface {name} ({chosen_by}) does not exist"),
                        "set external_interface to the interface towards the VPC (ip -br link lists them)",
                    )),
                    Ok(Some(link)) => Ok(ExternalFacts {
                        link,
                        chosen_by: chosen_by.to_string(),
                        default_gateway: None,
                    }),
                },
            }
        }
    };
    let ext_name = external.as_ref().ok().map(|e| e.link.name.clone());

    let mut sysctl_paths = vec![
        "net/ipv4/ip_forward".to_string(),
        "net/ipv4/conf/all/rp_filter".to_string(),
    ];
    if let Some(e) = &ext_name {
        sysctl_paths.push(format!("net/ipv4/conf/{e}/forwarding"));
        sysctl_paths.push(format!("net/ipv4/conf/{e}/rp_filter"));
    }
    if let Some(b) = &bridge_name {
        sysctl_paths.push(format!("net/ipv4/conf/{b}/forwarding"));
    }
    let sysctls: BTreeMap<String, Fact<String>> = sysctl_paths
        .into_iter()
        .map(|p| {
            let v = src.host.sysctl(&p);
            (p, v)
        })
        .collect();

    let peer = cfg
        .as_ref()
        .and_then(|c| sample_peer(&c.cluster_cidrs, subnet));
    let peer_route = match peer {
        Some(p) => Some(src.host.route_get(p, None).await),
        None => None,
    };
    let external = external.map(|mut e| {
        if let Some(Ok(r)) = &peer_route {
            if r.dev == e.link.name {
                e.default_gateway = r.gateway;
            }
        }
        e
    });

    let bridge = match &bridge_name {
        Some(b) => Some(match src.host.link(b).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(Unavailable::new(
                format!("bridge {b} of the served network does not exist"),
                "start a container on the network (Docker creates user-defined bridges lazily on some versions) or check the network's com.docker.network.bridge.name",
            )),
            Err(u) => Err(u),
        }),
        None => None,
    };

    let iptables = match src.host.iptables_save().await {
        Ok(text) => Ruleset::parse(&text).map_err(|e| {
            Unavailable::new(
                e.to_string(),
                "report this with the output of iptables-save attached",
            )
        }),
        Err(u) => Err(u),
    };

    let agent = src
        .agent
        .status(&agent_socket(env_socket, cfg.as_ref()))
        .await;

    let cloud = match &cfg {
        Some(c) if c.cloud.provider == Provider::Alibaba => Some(src.cloud.cloud(c, subnet).await),
        _ => None,
    };

    Facts {
        now,
        config,
        docker,
        host: HostFacts {
            sysctls,
            external,
            bridge,
            peer_route,
            iptables,
        },
        agent,
        cloud,
    }
}

/// Loads the configuration as doctor reports it.
pub fn load_config(path: &Path) -> ConfigFacts {
    ConfigFacts {
        path: path.to_path_buf(),
        config: crossdock_config::load(path),
    }
}

// ---------------------------------------------------------------- real implementations

/// Runs a program to completion within [`COMMAND_TIMEOUT`]; stdout on success.
pub async fn run_command(program: &[String], args: &[&str]) -> Result<String, Unavailable> {
    let shown = format!("{} {}", program.join(" "), args.join(" "));
    let mut cmd = tokio::process::Command::new(&program[0]);
    cmd.args(&program[1..])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(Unavailable::new(
                format!(
                    "`{shown}` did not finish within {} s",
                    COMMAND_TIMEOUT.as_secs()
                ),
                "find what is slowing it down (a huge ruleset, a hung xtables lock holder)",
            ))
        }
        Ok(Err(e)) => {
            return Err(Unavailable::new(
                format!("cannot run `{}`: {e}", program[0]),
                format!("install it or put it on PATH ({})", program[0]),
            ))
        }
        Ok(Ok(o)) => o,
    };
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let fix = if stderr.contains("ermission denied") || stderr.contains("must be root") {
            "run doctor as root (sudo crossdock doctor)".to_string()
        } else {
            format!("run `{shown}` by hand to see why it fails")
        };
        Err(Unavailable::new(
            format!("`{shown}` failed ({}): {stderr}", out.status),
            fix,
        ))
    }
}

/// Parses `ip -j route get` output.
pub fn parse_route_get(dst: Ipv4Addr, json: &str) -> Result<RouteLookup, String> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("unreadable `ip -j route get` output: {e}"))?;
    let r = v
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| "`ip -j route get` printed no route".to_string())?;
    let s = |k: &str| r.get(k).and_then(|x| x.as_str()).map(str::to_string);
    Ok(RouteLookup {
        destination: dst,
        dev: s("dev").unwrap_or_default(),
        gateway: s("gateway").and_then(|g| g.parse().ok()),
        src: s("prefsrc").and_then(|g| g.parse().ok()),
        kind: s("type").unwrap_or_else(|| "unicast".into()),
    })
}

/// The real host: `/proc/sys`, rtnetlink, `iptables-save` and `ip` from PATH (or prefixed commands).
#[derive(Debug, Clone)]
pub struct RealHost {
    pub sysctl: crossdock_hostnet::ProcSysctl,
    pub iptables_save: Vec<String>,
    pub ip: Vec<String>,
}

impl Default for RealHost {
    fn default() -> Self {
        Self {
            sysctl: crossdock_hostnet::ProcSysctl::default(),
            iptables_save: vec!["iptables-save".into()],
            ip: vec!["ip".into()],
        }
    }
}

#[async_trait]
impl HostProbe for RealHost {
    async fn iptables_save(&self) -> Fact<String> {
        run_command(&self.iptables_save, &["-c"]).await
    }

    fn sysctl(&self, path: &str) -> Fact<String> {
        use crossdock_hostnet::Sysctl;
        self.sysctl.read(path).map_err(|e| {
            Unavailable::new(
                e.to_string(),
                "check that the interface exists and that /proc/sys is mounted",
            )
        })
    }

    async fn default_route_interface(&self) -> Fact<Option<String>> {
        use crossdock_hostnet::Links;
        crossdock_hostnet::RtNetlink
            .default_route_interface()
            .await
            .map_err(|e| Unavailable::new(e.to_string(), "run doctor where rtnetlink is usable"))
    }

    async fn link(&self, name: &str) -> Fact<Option<LinkFacts>> {
        use crossdock_hostnet::Links;
        crossdock_hostnet::RtNetlink
            .link(name)
            .await
            .map(|l| {
                l.map(|l| LinkFacts {
                    name: l.name,
                    mtu: l.mtu.unwrap_or(0),
                    up: l.up,
                })
            })
            .map_err(|e| Unavailable::new(e.to_string(), "run doctor where rtnetlink is usable"))
    }

    async fn route_get(&self, dst: Ipv4Addr, src: Option<Ipv4Addr>) -> Fact<RouteLookup> {
        let d = dst.to_string();
        let s = src.map(|s| s.to_string());
        let mut args = vec!["-j", "route", "get", d.as_str()];
        if let Some(s) = &s {
            args.extend(["from", s.as_str()]);
        }
        match run_command(&self.ip, &args).await {
            Ok(out) => parse_route_get(dst, &out).map_err(|m| {
                Unavailable::new(
                    m,
                    "check `ip route get` by hand (iproute2 with JSON support)",
                )
            }),
            Err(u) => {
                let kind = ["unreachable", "prohibit", "blackhole"]
                    .into_iter()
                    .find(|k| u.message.to_ascii_lowercase().contains(k));
                match kind {
                    Some(k) => Ok(RouteLookup {
                        destination: dst,
                        dev: String::new(),
                        gateway: None,
                        src: None,
                        kind: k.to_string(),
                    }),
                    None => Err(u),
                }
            }
        }
    }
}

/// The agent over its health socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealAgent;

/// Reads the parts of `/status` doctor uses.
pub fn agent_facts(socket: &Path, raw: serde_json::Value) -> AgentFacts {
    let conditions: BTreeMap<String, AgentCondition> = raw
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    AgentFacts {
        socket: socket.to_path_buf(),
        version: raw
            .get("version")
            .and_then(|v| v.as_str())
            .map(String::from),
        pid: raw.get("pid").and_then(|v| v.as_u64()),
        subnet: raw.get("subnet").and_then(|v| v.as_str()).map(String::from),
        conditions,
        raw,
    }
}

#[async_trait]
impl AgentProbe for RealAgent {
    async fn status(&self, socket: &Path) -> AgentState {
        match crossdock_unixhttp::get_json::<serde_json::Value>(socket, "/status").await {
            Ok((200, v)) => AgentState::Running(agent_facts(socket, v)),
            Ok((code, _)) => AgentState::NotRunning {
                socket: socket.to_path_buf(),
                message: format!("/status answered HTTP {code}"),
            },
            Err(e) => AgentState::NotRunning {
                socket: socket.to_path_buf(),
                message: e.to_string(),
            },
        }
    }
}
