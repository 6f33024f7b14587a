//! Gathering the facts: small traits over each side effect, their real implementations, and the
//! orchestration that decides what to ask for given what is already known.
//!
//! Every real implementation calls the crate that owns that side effect: sysctls and links through
//! `crossdock-hostnet`, Docker through `crossdock-docker`, the cloud through `crossdock-alibaba` (and
//! `crossdock-routes` for which tables count), the agent over `crossdock-unixhttp`. Only what no crate
//! offers is done here: `iptables-save -c` (one snapshot of every table with counters) and
//! `ip -j route get` (the kernel's route decision for one address). Nothing here writes anything.
//!
//! [`gather`] is the orchestration; it is unit-tested with canned sources (`gather_tests.rs`), so
//! the choices it makes (which interface is external, which sysctls to read, which address stands
//! in for a peer, which sources are not asked at all) are checked without root.

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
    /// Container names' resolver, catalog port and Docker's resolvers (asked with `[names]` on).
    pub names: &'a dyn crate::names::NamesProbe,
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
        Some(c) if c.docker.static_subnet.is_some() => Err(Unavailable::new(
            "not asked: docker.static_subnet serves a fixed subnet without Docker",
            "nothing to do",
        )),
        Some(c) => src.docker.docker(c).await,
        None => Err(Unavailable::new(
            "not asked: the configuration did not load",
            "fix the configuration first",
        )),
    };
    let network = docker.as_ref().ok().and_then(|d| d.network.as_ref().ok());
    let subnet = network
        .and_then(|n| n.subnet)
        .or_else(|| cfg.as_ref().and_then(|c| c.docker.static_subnet));
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

    let names = match &cfg {
        Some(c) if c.names.enabled => {
            let net = docker.as_ref().ok().and_then(|d| d.network.as_ref().ok());
            let served = net.map(|n| (n.name.as_str(), n.gateway));
            Some(crate::names::gather(c, served, src.names).await)
        }
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
        names,
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

/// Runs a program to completion within [`COMMAND_TIMEOUT`] (through `crossdock_hostnet::command`,
/// the runner the agent's firewall driver uses); stdout on success, else what went wrong and the fix.
pub async fn run_command(program: &[String], args: &[&str]) -> Result<String, Unavailable> {
    use crossdock_hostnet::command::{run, RunError};
    let out = match run(program, args, None, COMMAND_TIMEOUT).await {
        Ok(out) => out,
        Err(RunError::Timeout { command, secs }) => {
            return Err(Unavailable::new(
                format!("`{command}` did not finish within {secs} s"),
                "find what is slowing it down (a huge ruleset, a hung xtables lock holder)",
            ))
        }
        Err(RunError::Spawn { program, message }) => {
            return Err(Unavailable::new(
                format!("cannot run `{program}`: {message}"),
                format!("install it or put it on PATH ({program})"),
            ))
        }
    };
    if out.success() {
        return Ok(out.stdout);
    }
    let fix = if out.stderr.contains("ermission denied") || out.stderr.contains("must be root") {
        "run doctor as root (sudo crossdock doctor)".to_string()
    } else {
        format!("run `{}` by hand to see why it fails", out.command)
    };
    Err(Unavailable::new(
        format!(
            "`{}` failed (exit status: {}): {}",
            out.command, out.code, out.stderr
        ),
        fix,
    ))
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

/// Docker through `crossdock-docker`: its connection and its reading of the served network (subnet,
/// gateway, bridge device), plus what doctor reports beside it from the same network document
/// (driver options such as the gateway mode, the attached containers' addresses).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealDocker;

/// A crossdock-docker error as a fact: its problem, and its fix.
pub fn docker_unavailable(e: &crossdock_docker::DockerError) -> Unavailable {
    Unavailable::new(
        e.problem(),
        e.fix()
            .unwrap_or("check `docker network inspect` for the served network"),
    )
}

/// The facts from crossdock-docker's report (pure: unit-tested with canned reports).
pub fn docker_facts(
    endpoint: &str,
    report: Result<crossdock_docker::EngineReport, crossdock_docker::DockerError>,
) -> Fact<DockerFacts> {
    let report = report.map_err(|e| docker_unavailable(&e))?;
    let network = report
        .network
        .map(|d| crate::facts::NetworkFacts {
            name: d.served.name,
            id: d.served.id,
            driver: "bridge".into(),
            subnet: Some(d.served.subnet),
            gateway: d.served.gateway,
            bridge: d.served.bridge,
            options: d.options,
            containers: d.containers,
        })
        .map_err(|e| docker_unavailable(&e));
    Ok(DockerFacts {
        endpoint: endpoint.to_string(),
        version: report.version,
        api_version: report.api_version,
        network,
    })
}

#[async_trait]
impl DockerProbe for RealDocker {
    async fn docker(&self, cfg: &Config) -> Fact<DockerFacts> {
        let d = crossdock_docker::BollardDocker::new(cfg.docker_socket());
        docker_facts(&cfg.docker.host, d.engine_report(&cfg.docker.network).await)
    }
}

/// The cloud through `crossdock-alibaba`, with the tables `crossdock-routes` would use.
#[derive(Debug, Clone)]
pub struct RealCloud {
    /// The credential environment (`ALIBABA_CLOUD_*`).
    pub env: crossdock_alibaba::EnvVars,
    pub route_quota: u32,
    /// `false` (`--no-cloud`): nothing is asked and every cloud fact says so.
    pub enabled: bool,
}

/// A cloud error as a fact: the message without the fix, and the fix.
pub fn cloud_unavailable(e: &crossdock_alibaba::Error) -> Unavailable {
    let message = match e {
        crossdock_alibaba::Error::Api(a) => format!(
            "{} {}: {} ({})",
            a.product.name(),
            a.action,
            a.code,
            a.message.trim()
        ),
        other => {
            let text = other.to_string();
            text.split(" — fix:")
                .next()
                .unwrap_or(&text)
                .trim()
                .to_string()
        }
    };
    Unavailable::new(message, e.fix())
}

/// What a call says about the permission for its action: allowed when it succeeded, when a dry run
/// passed (`DryRunOperation`), or when the API refused it for a reason that comes after
/// authorisation (a duplicate, a bad parameter, another route write in flight); refused on a
/// permission or credential error; undetermined (an error) when the service could not be asked
/// (transport, throttling, 5xx).
pub fn permission_from<T>(r: &Result<T, crossdock_alibaba::Error>) -> Fact<()> {
    use crossdock_alibaba::Error;
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("DryRunOperation") => Ok(()),
        Err(e) if e.denied_action().is_some() || e.is_credentials_problem() => {
            Err(cloud_unavailable(e))
        }
        Err(Error::Api(a)) if !(a.is_throttling() || a.is_service_fault()) => Ok(()),
        Err(e) => Err(cloud_unavailable(e)),
    }
}

fn masked(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

fn skipped_cloud(reason: &Unavailable, quota: u32) -> CloudFacts {
    CloudFacts {
        metadata: Err(reason.clone()),
        credentials: Err(reason.clone()),
        permissions: Vec::new(),
        route_tables: Err(reason.clone()),
        routes: Err(reason.clone()),
        cidrs: Err(reason.clone()),
        cidrs_source: String::new(),
        source_dest_check: Err(reason.clone()),
        route_quota: quota,
        fleet: None,
        table_paths: None,
    }
}

#[async_trait]
impl CloudProbe for RealCloud {
    async fn cloud(&self, cfg: &Config, subnet: Option<Ipv4Net>) -> CloudFacts {
        use crate::checks::ACTIONS;
        use crate::facts::{CredentialFacts, MetadataFacts, PermissionFact, ProbeMethod};
        use crossdock_alibaba::{ConnectOptions, Product, RetryPolicy, RouteEntryFilter};
        if !self.enabled {
            return skipped_cloud(
                &Unavailable::new(
                    "not asked (--no-cloud)",
                    "run doctor without --no-cloud to check the cloud side",
                ),
                self.route_quota,
            );
        }
        let c = &cfg.cloud;
        let opts = ConnectOptions {
            env: self.env.clone(),
            retry: RetryPolicy {
                max_attempts: 2,
                ..RetryPolicy::default()
            },
            timeout: Duration::from_secs(10),
            ..ConnectOptions::default()
        };
        let settings = crossdock_routes::cloud_settings(c);
        let conn = match crossdock_alibaba::connect_with(&settings, opts).await {
            Ok(conn) => conn,
            Err(e) => return skipped_cloud(&cloud_unavailable(&e), self.route_quota),
        };
        let id = &conn.identity;
        let md = conn.metadata.clone();
        let token_mode = match md.as_ref().map(|m| m.mode()) {
            None => "not used: identity from the configuration".to_string(),
            Some(crossdock_alibaba::TokenMode::Auto) => "used if offered".to_string(),
            Some(crossdock_alibaba::TokenMode::Required) => "required".to_string(),
            Some(crossdock_alibaba::TokenMode::Disabled) => "not used".to_string(),
        };
        let metadata = Ok(MetadataFacts {
            url: if c.metadata_url.is_empty() {
                "(none)".into()
            } else {
                c.metadata_url.clone()
            },
            token_mode,
            instance_id: id.instance_id.clone(),
            region_id: id.region_id.clone(),
            vpc_id: id.vpc_id.clone(),
            vswitch_id: id.vswitch_id.clone(),
            private_ip: id.private_ip.clone(),
            eni_id: id.eni_id.clone(),
        });

        // The credentials, fetched the way the client fetches them, to show source and expiry.
        let provider = crossdock_alibaba::CredentialsProvider::from_settings(
            &settings,
            &self.env,
            md.clone(),
            crossdock_alibaba::system_clock(),
        );
        let creds = match provider {
            Ok(p) => p.get().await.map_err(|e| cloud_unavailable(&e)),
            Err(e) => Err(cloud_unavailable(&e)),
        };

        let client = &conn.client;
        let tables = client.describe_route_table_list(&id.vpc_id).await;
        let vswitches = client.describe_vswitches(&id.vpc_id).await;
        let credentials = creds.map(|cr| CredentialFacts {
            source: match &cr.source {
                crossdock_alibaba::CredentialSource::RamRole(r) => format!("ram role {r}"),
                other => other.to_string(),
            },
            access_key_id: masked(&cr.access_key_id),
            expiration: cr.expiration,
            accepted: match &tables {
                Err(e) if e.is_credentials_problem() => Err(cloud_unavailable(e)),
                Err(e) if e.class() == crossdock_alibaba::ErrorClass::Retryable => {
                    Err(cloud_unavailable(e))
                }
                _ => Ok(()),
            },
        });

        let mut permissions = vec![
            PermissionFact {
                action: "DescribeRouteTableList".into(),
                method: ProbeMethod::Read,
                result: permission_from(&tables),
            },
            PermissionFact {
                action: "DescribeVSwitches".into(),
                method: ProbeMethod::Read,
                result: permission_from(&vswitches),
            },
        ];

        // The VPC's and vSwitches' CIDRs: from the API, else from the metadata service.
        let vpc_cidr = match &md {
            Some(m) => m
                .get("vpc-cidr-block", "doctor")
                .await
                .ok()
                .and_then(|s| s.parse::<Ipv4Net>().ok()),
            None => None,
        };
        let (cidrs, cidrs_source) = match &vswitches {
            Ok(v) => (
                Ok(crossdock_routes::plan::NetworkCidrs {
                    vpc: vpc_cidr.into_iter().collect(),
                    vswitches: v
                        .iter()
                        .filter_map(|s| {
                            s.cidr_block
                                .parse::<Ipv4Net>()
                                .ok()
                                .map(|n| (s.vswitch_id.clone(), n))
                        })
                        .collect(),
                }),
                "the API (DescribeVSwitches) and the metadata service".to_string(),
            ),
            Err(e) => match &md {
                Some(m) => {
                    let own = m
                        .get("vswitch-cidr-block", "doctor")
                        .await
                        .ok()
                        .and_then(|s| s.parse::<Ipv4Net>().ok());
                    (
                        Ok(crossdock_routes::plan::NetworkCidrs {
                            vpc: vpc_cidr.into_iter().collect(),
                            vswitches: own
                                .map(|n| (id.vswitch_id.clone(), n))
                                .into_iter()
                                .collect(),
                        }),
                        "the metadata service only (DescribeVSwitches failed: other vSwitches unknown)"
                            .to_string(),
                    )
                }
                None => (Err(cloud_unavailable(e)), String::new()),
            },
        };

        let route_tables = match (&tables, &vswitches) {
            (Ok(t), v) => crossdock_routes::plan::choose_tables(
                &c.route_table_ids,
                &id.vswitch_id,
                v.as_deref().unwrap_or(&[]),
                t,
            )
            .map_err(|m| {
                Unavailable::new(
                    m,
                    "set cloud.route_table_ids to the table(s) to register in",
                )
            }),
            (Err(_), _) if !c.route_table_ids.is_empty() => Ok(c.route_table_ids.clone()),
            (Err(e), _) => Err(cloud_unavailable(e)),
        };

        let mut routes_result: Result<Vec<crossdock_alibaba::RouteEntry>, Unavailable> =
            Ok(Vec::new());
        let mut list_permission: Fact<()> = Ok(());
        if let Ok(ts) = &route_tables {
            for t in ts {
                let r = client
                    .describe_route_entry_list(t, &RouteEntryFilter::default())
                    .await;
                list_permission = list_permission.and(permission_from(&r));
                match r {
                    Ok(mut entries) => {
                        if let Ok(all) = &mut routes_result {
                            all.append(&mut entries);
                        }
                    }
                    Err(e) => routes_result = Err(cloud_unavailable(&e)),
                }
            }
        } else {
            routes_result = Err(Unavailable::new(
                "no route table to list",
                "see cloud.route-table",
            ));
        }
        permissions.push(PermissionFact {
            action: "DescribeRouteEntryList".into(),
            method: ProbeMethod::Read,
            result: if route_tables.is_ok() {
                list_permission
            } else {
                Err(Unavailable::new(
                    "not probed: no route table known",
                    "see cloud.route-table",
                ))
            },
        });

        // CreateRouteEntry as a dry run: checked and validated, never executed.
        let dst = subnet
            .or_else(|| cfg.cluster_cidrs.first().copied())
            .map(|n| n.to_string())
            .unwrap_or_default();
        let create = match route_tables.as_ref().ok().and_then(|t| t.first()) {
            Some(t) => permission_from(
                &client
                    .call(
                        Product::Vpc,
                        "CreateRouteEntry",
                        &[
                            ("RouteTableId", t.clone()),
                            ("DestinationCidrBlock", dst),
                            ("NextHopType", "Instance".into()),
                            ("NextHopId", id.instance_id.clone()),
                            ("RouteEntryName", c.route_name.clone()),
                            ("Description", format!("crossdock:{}", id.instance_id)),
                            ("DryRun", "true".into()),
                        ],
                    )
                    .await,
            ),
            None => Err(Unavailable::new(
                "not probed: no route table known",
                "see cloud.route-table",
            )),
        };
        permissions.push(PermissionFact {
            action: "CreateRouteEntry".into(),
            method: ProbeMethod::DryRun,
            result: create,
        });
        permissions.push(PermissionFact {
            action: "DeleteRouteEntry".into(),
            method: ProbeMethod::NotProbed,
            result: Ok(()),
        });

        let eni = client.describe_network_interface(&id.eni_id).await;
        permissions.push(PermissionFact {
            action: "DescribeNetworkInterfaces".into(),
            method: ProbeMethod::Read,
            result: permission_from(&eni),
        });
        let source_dest_check = match &eni {
            Ok(n) => n.source_dest_check.ok_or_else(|| {
                Unavailable::new(
                    format!("{} does not report SourceDestCheck", id.eni_id),
                    "check the ENI in the ECS console",
                )
            }),
            Err(e) => Err(cloud_unavailable(e)),
        };
        // ModifyNetworkInterfaceAttribute as a dry run that would set the value it already has, so
        // that even an API ignoring DryRun changes nothing.
        let modify = match &source_dest_check {
            Ok(current) => PermissionFact {
                action: "ModifyNetworkInterfaceAttribute".into(),
                method: ProbeMethod::DryRun,
                result: permission_from(
                    &client
                        .call(
                            Product::Ecs,
                            "ModifyNetworkInterfaceAttribute",
                            &[
                                ("NetworkInterfaceId", id.eni_id.clone()),
                                ("SourceDestCheck", current.to_string()),
                                ("DryRun", "true".into()),
                            ],
                        )
                        .await,
                ),
            },
            Err(_) => PermissionFact {
                action: "ModifyNetworkInterfaceAttribute".into(),
                method: ProbeMethod::NotProbed,
                result: Ok(()),
            },
        };
        permissions.push(modify);
        // Fleet mode's instance listings and batch-write permissions (nothing when it is off).
        let (fleet, fleet_permissions) =
            crate::fleet::gather(client, cfg, id, &route_tables, &routes_result).await;
        permissions.extend(fleet_permissions);
        // The tables on a path to this host (fleet mode: from the members' vSwitches).
        let member_vswitches = fleet
            .as_ref()
            .and_then(|ff| ff.members.as_ref().ok())
            .map(|m| m.iter().map(|i| i.vswitch_id.clone()).collect());
        let table_paths = crate::table_checks::gather(
            client,
            &c.route_table_ids,
            &id.vswitch_id,
            &vswitches,
            &tables,
            member_vswitches.as_ref(),
        )
        .await;
        // Report in the order the checks are defined.
        permissions.sort_by_key(|p| {
            ACTIONS
                .iter()
                .position(|(_, a, _)| *a == p.action)
                .unwrap_or(usize::MAX)
        });

        CloudFacts {
            metadata,
            credentials,
            permissions,
            route_tables,
            routes: routes_result,
            cidrs,
            cidrs_source,
            source_dest_check,
            route_quota: self.route_quota,
            fleet,
            table_paths,
        }
    }
}

#[cfg(test)]
#[path = "gather_tests.rs"]
mod tests;
