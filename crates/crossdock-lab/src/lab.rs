//! The lab: a simulated Alibaba VPC built from network namespaces on this machine.
//!
//! One vRouter namespace holds the vSwitch bridge, the VPC's kernel routes and the emulator (API at
//! 100.100.100.201, metadata at 100.100.100.200); each simulated ECS host is a namespace with `eth0` on the
//! vSwitch, a real dockerd and the crossdock agent. Everything a lab makes is named after it (namespaces
//! `cdl-<lab>-*`, directory `/var/lib/crossdock-lab/<lab>`), recorded in `lab.json` before it is made, and
//! owned by pid files, so [`down`] can take it all apart even after a crash of whatever built it.
//!
//! The layout is a contract (docs/CONTRACTS.md, "Lab layout"): tests, the demo and the benchmarks rely on it.

use crate::dockerd::{self, ContainerInfo, DockerVersion, Dockerd, DockerdSpec};
use crate::http;
use crate::netns::{self, Netns};
use crate::procs;
use anyhow::{anyhow, bail, Context, Result};
use crossdock_vpcsim::admin::{AdminClient, Info, Settings};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod hosts;
mod names;
mod zones;
use hosts::start_host_dockerd;
pub use hosts::{
    apply_lab_endpoints, default_fleet_config, default_fleet_tag, fleet_config_from_text,
    fleet_config_path, fleet_host_config, run_init, subnet_of_bip, HostAdd, LAB_OVERRIDES,
};
pub use names::{apply_lab_names, resolv_conf_path, upstream_dns_pid};
pub use zones::{
    find_vswitch, host_ip_in, host_vswitch, planned_vswitch, usable_host_ip, vswitch_bridge,
    vswitch_cidr, vswitch_gateway, vswitch_name, vswitches_of, zone_id, zone_statuses,
    CustomTables, TableStatus, VSwitchState, VSwitchStatus, MAX_CUSTOM_TABLES, MAX_VSWITCHES,
};

/// Where labs live.
pub const LAB_ROOT: &str = "/var/lib/crossdock-lab";
/// The vSwitch gateway (the vRouter's address on the bridge).
pub const GATEWAY: &str = "192.168.1.253";
/// The vSwitch.
pub const VSWITCH_CIDR: &str = "192.168.1.0/24";
/// The metadata service address.
pub const METADATA_IP: &str = "100.100.100.200";
/// The VPC/ECS API address.
pub const API_IP: &str = "100.100.100.201";
/// The bridge in the vRouter namespace.
pub const BRIDGE: &str = "vsw";
/// The most hosts one lab may have (private IPs 192.168.1.11 ..= 192.168.1.210).
pub const MAX_HOSTS: usize = 200;

/// The function behind an [`AgentConfigHook`].
pub type AgentConfigFn = dyn Fn(usize, &mut crossdock_config::Config) + Send + Sync;

/// A hook that edits each host's agent configuration before it is written (1-based host index).
#[derive(Clone)]
pub struct AgentConfigHook(pub Arc<AgentConfigFn>);

impl AgentConfigHook {
    pub fn new(f: impl Fn(usize, &mut crossdock_config::Config) + Send + Sync + 'static) -> Self {
        AgentConfigHook(Arc::new(f))
    }
}

impl std::fmt::Debug for AgentConfigHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentConfigHook(..)")
    }
}

/// What [`Lab::up`] builds.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Lab name: lower-case letters, digits and `-`, at most 20 characters.
    pub name: String,
    /// Hosts with a dockerd (`h1` ..).
    pub hosts: usize,
    /// More hosts after those, with no dockerd: their agent serves `docker.static_subnet` (route storms).
    pub static_hosts: usize,
    pub docker: DockerVersion,
    /// Start the crossdock agent in each host.
    pub agents: bool,
    /// The `crossdock` binary: runs the emulator (`crossdock lab vpc-server`) and the agents.
    pub crossdock_bin: PathBuf,
    /// The ENI source/destination check of new instances (Alibaba: on; the agent turns it off).
    pub source_dest_check: bool,
    /// Emulator settings applied right after it starts (pending time, quotas, QPS limits ...).
    pub emulator_settings: Option<Settings>,
    /// Edits each agent's configuration.
    pub agent_config: Option<AgentConfigHook>,
    /// How long `up` waits for the agents to report healthy (it never fails because of them).
    pub agent_wait: Duration,
    /// Fleet mode: every host is tagged `crossdock-cluster=<lab name>` (or the tag of
    /// `agent_config_text`), every agent runs ONE identical configuration (`subnet.mode = "derived"`,
    /// `fleet.tag`), and each host's Docker bridge subnet is written by `crossdock init` before its
    /// dockerd starts (see the `hosts` module). In fleet mode `agent_config` runs once, on the shared
    /// configuration, with host index 0.
    pub fleet: bool,
    /// Fleet mode: the agent configuration as TOML text (e.g. the agent.toml of
    /// deploy/cloud-init/user-data.yaml), used unchanged except for the lab overrides listed at
    /// [`hosts::LAB_OVERRIDES`].
    pub agent_config_text: Option<String>,
    /// vSwitches, one per zone (`192.168.<k>.0/24`); hosts are spread over them round-robin.
    pub vswitches: usize,
    /// Which vSwitches get custom route tables (default: every one but the first).
    pub custom_tables: CustomTables,
    /// Fleet mode: container names across hosts (`[names]` on in the shared configuration), with
    /// the upstream DNS stand-in in the vRouter and the lab's resolv.conf (see the `names` module).
    pub names: bool,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            name: "default".into(),
            hosts: 2,
            static_hosts: 0,
            docker: DockerVersion::V20,
            agents: true,
            crossdock_bin: default_crossdock_bin(),
            source_dest_check: true,
            emulator_settings: None,
            agent_config: None,
            agent_wait: Duration::from_secs(20),
            fleet: false,
            agent_config_text: None,
            vswitches: 1,
            custom_tables: CustomTables::default(),
            names: false,
        }
    }
}

/// This executable when it is `crossdock` (the CLI); in a test binary, the `crossdock` that
/// [`crate::testing::crossdock_bin`] finds (`CROSSDOCK_BIN`, or next to the test's `deps/` directory).
pub fn default_crossdock_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("crossdock"));
    if exe.file_name().is_some_and(|n| n == "crossdock") {
        return exe;
    }
    crate::testing::crossdock_bin().unwrap_or(exe)
}

/// One simulated ECS host, as recorded in `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostState {
    /// `h1`, `h2`, ...
    pub name: String,
    /// 1-based.
    pub index: usize,
    pub netns: String,
    pub private_ip: String,
    /// Its port on the vSwitch bridge, in the vRouter namespace.
    pub port: String,
    pub instance_id: String,
    pub eni_id: String,
    /// The container subnet (`10.<i-1>.0.0/24`).
    pub subnet: String,
    /// docker0's address, `None` for a static host (no dockerd).
    pub bip: Option<String>,
    pub dir: PathBuf,
    /// `unix://.../docker.sock`, `None` for a static host.
    pub docker_host: Option<String>,
    pub agent_socket: PathBuf,
    pub agent_config: PathBuf,
    /// The lab name of its vSwitch (`vsw1`, ...).
    #[serde(default = "first_vswitch")]
    pub vswitch: String,
}

fn first_vswitch() -> String {
    zones::vswitch_name(1)
}

impl HostState {
    pub fn netns_path(&self) -> PathBuf {
        Path::new(netns::NETNS_DIR).join(&self.netns)
    }
    pub fn docker_socket(&self) -> Option<PathBuf> {
        self.docker_host
            .as_ref()
            .map(|h| PathBuf::from(h.trim_start_matches("unix://")))
    }
    pub fn agent_pidfile(&self) -> PathBuf {
        self.dir.join("agent.pid")
    }
    pub fn agent_log(&self) -> PathBuf {
        self.dir.join("agent.log")
    }
    /// The environment `lab exec` sets.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "CROSSDOCK_SOCKET".to_string(),
                self.agent_socket.display().to_string(),
            ),
            (
                "CROSSDOCK_CONFIG".to_string(),
                self.agent_config.display().to_string(),
            ),
        ];
        if let Some(h) = &self.docker_host {
            env.push(("DOCKER_HOST".to_string(), h.clone()));
        }
        env
    }
}

/// `lab.json`: everything needed to use or remove the lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabState {
    pub name: String,
    pub dir: PathBuf,
    pub vr_netns: String,
    pub docker_version: DockerVersion,
    pub crossdock_bin: PathBuf,
    pub agents: bool,
    /// `creating` until `up` finished, then `up`.
    pub phase: String,
    pub created_at: u64,
    pub region_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub route_table_id: String,
    pub admin_access_key_id: String,
    pub admin_access_key_secret: String,
    pub api_endpoint: String,
    pub metadata_endpoint: String,
    pub api_socket: PathBuf,
    pub admin_socket: PathBuf,
    pub hosts: Vec<HostState>,
    /// Fleet mode: the tag every host instance carries (`key=value`); `None` = per-host mode.
    #[serde(default)]
    pub fleet_tag: Option<String>,
    /// The ENI source/destination check of new instances (for `host add`).
    #[serde(default = "yes")]
    pub source_dest_check: bool,
    /// The index the next added host gets (indexes are never reused, so names and paths are not).
    #[serde(default)]
    pub next_index: usize,
    /// The vSwitches (empty in a `lab.json` from before zones: the one vSwitch, see
    /// [`vswitches_of`]).
    #[serde(default)]
    pub vswitches: Vec<VSwitchState>,
    /// Container names on (`up --names`): the upstream DNS stand-in runs in the vRouter.
    #[serde(default)]
    pub names: bool,
}

fn yes() -> bool {
    true
}

/// `crossdock lab status --json` (a scripting contract: see docs/CONTRACTS.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LabStatus {
    pub name: String,
    pub api_endpoint: String,
    pub metadata_endpoint: String,
    pub region_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub route_table_id: String,
    pub admin_access_key_id: String,
    pub admin_access_key_secret: String,
    pub api_socket: PathBuf,
    pub admin_socket: PathBuf,
    pub docker_version: String,
    /// `running` or `stopped`.
    pub emulator: String,
    pub hosts: Vec<HostStatus>,
    /// The custom entries of every route table (empty when the emulator is down).
    pub routes: Vec<RouteStatus>,
    /// The vSwitches and the table each one is bound to.
    #[serde(default)]
    pub vswitches: Vec<VSwitchStatus>,
    /// The VPC's route tables (empty when the emulator is down).
    #[serde(default)]
    pub route_tables: Vec<TableStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostStatus {
    pub name: String,
    pub netns: String,
    pub private_ip: String,
    pub instance_id: String,
    pub eni_id: String,
    /// `unix://...`, or `""` for a static host.
    pub docker_host: String,
    pub subnet: String,
    /// `ready`, `unhealthy`, `starting` (running, socket not answering yet) or `stopped`.
    pub agent: String,
    /// The health socket's answer (the failing conditions when unhealthy).
    pub agent_detail: String,
    pub agent_socket: PathBuf,
    pub agent_config: PathBuf,
    /// `running`, `stopped` or `none` (static host).
    pub dockerd: String,
    /// The instance's status in the emulator: `Running`, `Stopped`, `released` (no longer in the
    /// emulator), or `""` when the emulator is down.
    #[serde(default)]
    pub instance_status: String,
    /// The instance's tags, `key=value`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its vSwitch (`vsw1`, ...).
    #[serde(default)]
    pub vswitch: String,
    /// The route table of its vSwitch (`""` when the emulator is down).
    #[serde(default)]
    pub route_table_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// The table holding the entry.
    #[serde(default)]
    pub route_table_id: String,
    pub route_entry_id: String,
    pub destination: String,
    pub next_hop_id: String,
    /// The lab host the next hop is, if any.
    pub next_hop_host: String,
    pub status: String,
    pub route_entry_name: String,
}

/// A mistake in what was asked for (exit code 2), as opposed to a failure while doing it (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// The directory of lab `name`.
pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(LAB_ROOT).join(name)
}

/// The vRouter namespace of lab `name`.
pub fn vr_netns_name(name: &str) -> String {
    format!("cdl-{name}-vr")
}

/// The namespace of host `index` (1-based) of lab `name`.
pub fn host_netns_name(name: &str, index: usize) -> String {
    format!("cdl-{name}-h{index}")
}

/// True if `netns` is one of lab `name`'s namespaces (`cdl-<name>-vr` or `cdl-<name>-h<digits>`), and not
/// one of a lab whose name merely starts the same way.
pub fn is_lab_netns(name: &str, netns: &str) -> bool {
    let Some(rest) = netns.strip_prefix(&format!("cdl-{name}-")) else {
        return false;
    };
    rest == "vr"
        || rest
            .strip_prefix('h')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks a lab name: lower-case letters, digits and `-`, 1..=20 characters, starting with a letter or
/// digit (it becomes part of namespace names and paths).
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 20
        || name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(InputError(format!(
            "lab name {name:?} is invalid: use 1 to 20 lower-case letters, digits and '-' (not first)"
        ))
        .into());
    }
    Ok(())
}

/// The fixed MAC of vSwitch `k`'s bridge in the vRouter (locally administered).
pub fn bridge_mac(k: usize) -> String {
    format!("02:cd:00:00:00:{:02x}", k % 256)
}

/// The private IP of host `index`.
pub fn host_ip(index: usize) -> String {
    format!("192.168.1.{}", 10 + index)
}

/// The container subnet of host `index` (`10.<index-1>.0.0/24`, as in the article: h1 → 10.0.0.0/24).
pub fn host_subnet(index: usize) -> String {
    format!("10.{}.0.0/24", index - 1)
}

/// docker0's address of host `index`.
pub fn host_bip(index: usize) -> String {
    format!("10.{}.0.1/24", index - 1)
}

/// The agent configuration of a host, as the lab writes it.
pub fn agent_config_for(host: &HostState) -> crossdock_config::Config {
    let mut c = crossdock_config::Config {
        cluster_cidrs: vec!["10.0.0.0/8".parse().expect("valid")],
        health_socket: host.agent_socket.clone(),
        ..Default::default()
    };
    match &host.docker_host {
        Some(h) => c.docker.host = h.clone(),
        None => {
            c.docker.host = format!("unix://{}/docker.sock", host.dir.display());
            c.docker.static_subnet = Some(host.subnet.parse().expect("valid subnet"));
        }
    }
    c.cloud.provider = crossdock_config::Provider::Alibaba;
    c.cloud.metadata_url = format!("http://{METADATA_IP}");
    c.cloud.vpc_endpoint = format!("http://{API_IP}");
    c.cloud.ecs_endpoint = format!("http://{API_IP}");
    c
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs an admin API call from synchronous code.
pub fn admin_call<T, F, Fut>(socket: &Path, f: F) -> Result<T>
where
    F: FnOnce(AdminClient) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let client = AdminClient::new(socket);
    http::block_on(async move { f(client).await })?
}

/// A lab. One made by [`Lab::up`] is removed when dropped (unless [`Lab::keep`] was called); one opened
/// with [`Lab::load`] is not owned and is left alone.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    children: Vec<Child>,
    owned: bool,
    /// The emulator settings `up` was given (re-applied when the emulator is restarted).
    settings: Option<Settings>,
}

impl Lab {
    /// Builds a lab (see the module docs); on failure everything made so far is removed again.
    pub fn up(opts: LabOptions) -> Result<Lab> {
        validate_name(&opts.name)?;
        if opts.vswitches == 0 || opts.vswitches > MAX_VSWITCHES {
            return Err(InputError(format!(
                "a lab has 1 to {MAX_VSWITCHES} vSwitches (asked for {})",
                opts.vswitches
            ))
            .into());
        }
        opts.custom_tables.groups(opts.vswitches)?;
        if opts.hosts + opts.static_hosts == 0 || opts.hosts + opts.static_hosts > MAX_HOSTS {
            return Err(InputError(format!(
                "a lab has 1 to {MAX_HOSTS} hosts (asked for {} with Docker and {} static)",
                opts.hosts, opts.static_hosts
            ))
            .into());
        }
        if !crate::is_root() {
            bail!("crossdock lab needs root (network namespaces, dockerd): run it with sudo");
        }
        if opts.hosts > 0 {
            opts.docker.check_installed()?;
            if !Path::new(dockerd::BUSYBOX_ROOTFS).is_file() {
                bail!(
                    "{} is missing: run scripts/install-deps",
                    dockerd::BUSYBOX_ROOTFS
                );
            }
        }
        if opts.names && !opts.fleet {
            return Err(InputError(
                "the lab runs container names in fleet mode (its hosts' catalogs meet as members): add --fleet"
                    .into(),
            )
            .into());
        }
        if opts.agent_config_text.is_some() && !opts.fleet {
            return Err(InputError(
                "an agent configuration file is only taken in fleet mode (add --fleet)".into(),
            )
            .into());
        }
        if !opts.crossdock_bin.is_file() {
            bail!(
                "the crossdock binary {} does not exist (build it: cargo build)",
                opts.crossdock_bin.display()
            );
        }
        let dir = lab_dir(&opts.name);
        let leftovers: Vec<String> = Netns::list_with_prefix("cdl-")
            .into_iter()
            .filter(|n| is_lab_netns(&opts.name, n))
            .collect();
        if dir.exists() || !leftovers.is_empty() {
            bail!(
                "lab {} already exists (or an earlier one left {}): remove it with `crossdock lab down --name {}`",
                opts.name,
                if leftovers.is_empty() { dir.display().to_string() } else { leftovers.join(", ") },
                opts.name
            );
        }
        let mut lab = Lab {
            state: LabState {
                name: opts.name.clone(),
                dir: dir.clone(),
                vr_netns: vr_netns_name(&opts.name),
                docker_version: opts.docker,
                crossdock_bin: opts
                    .crossdock_bin
                    .canonicalize()
                    .unwrap_or(opts.crossdock_bin.clone()),
                agents: opts.agents,
                phase: "creating".into(),
                created_at: now_secs(),
                region_id: String::new(),
                vpc_id: String::new(),
                vswitch_id: String::new(),
                route_table_id: String::new(),
                admin_access_key_id: String::new(),
                admin_access_key_secret: String::new(),
                api_endpoint: format!("http://{API_IP}"),
                metadata_endpoint: format!("http://{METADATA_IP}"),
                api_socket: dir.join("vpc/api.sock"),
                admin_socket: dir.join("vpc/admin.sock"),
                hosts: Vec::new(),
                fleet_tag: None,
                source_dest_check: opts.source_dest_check,
                next_index: 1,
                vswitches: Vec::new(),
                names: opts.names,
            },
            children: Vec::new(),
            owned: true,
            settings: opts.emulator_settings.clone(),
        };
        match lab.build(&opts) {
            Ok(()) => Ok(lab),
            Err(e) => {
                let cleanup = lab.down();
                match cleanup {
                    Ok(()) => Err(e),
                    Err(c) => {
                        Err(e.context(format!("and removing the half-built lab failed too: {c:#}")))
                    }
                }
            }
        }
    }

    fn build(&mut self, opts: &LabOptions) -> Result<()> {
        let started = Instant::now();
        let dir = self.state.dir.clone();
        std::fs::create_dir_all(dir.join("vpc"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        self.save()?;
        if opts.fleet {
            self.prepare_fleet(opts)?;
        }
        self.build_vrouter(opts.vswitches)?;
        if opts.names {
            self.start_upstream_dns()?;
        }
        for index in 1..=opts.hosts + opts.static_hosts {
            let k = host_vswitch(index, opts.vswitches);
            self.create_host_netns(index, host_ip_in(k, index), index <= opts.hosts, k)?;
        }
        self.state.next_index = opts.hosts + opts.static_hosts + 1;

        // The emulator, in the vRouter namespace, then one instance per host.
        self.start_emulator()?;
        let admin = self.state.admin_socket.clone();
        let info: Info = admin_call(&admin, |c| async move { c.info().await })?;
        self.state.region_id = info.region_id.clone();
        self.state.vpc_id = info.vpc_id.clone();
        self.state.vswitch_id = info.vswitch_id.clone();
        self.state.route_table_id = info.system_route_table_id.clone();
        self.state.admin_access_key_id = info.admin_access_key_id.clone();
        self.state.admin_access_key_secret = info.admin_access_key_secret.clone();
        if let Some(settings) = opts.emulator_settings.clone() {
            admin_call(
                &admin,
                move |c| async move { c.set_settings(&settings).await },
            )?;
        }
        self.create_vswitches(&info, &opts.custom_tables.groups(opts.vswitches)?)?;
        if opts.fleet {
            self.check_fleet_mapping(info.vpc_cidr)?;
        }
        for name in self.host_names() {
            self.register_instance(&name)?;
        }
        for host in self.state.hosts.clone() {
            self.write_agent_config(&host, opts.agent_config.as_ref())?;
        }
        self.save()?;
        self.start_dockerds(&self.host_names())?;

        // The agents.
        if opts.agents {
            for host in self.state.hosts.clone() {
                if self.runs_agent(&host) {
                    self.agent_start(&host.name)?;
                }
            }
        }
        self.state.phase = "up".into();
        self.save()?;
        if opts.agents {
            let names: Vec<String> = self.state.hosts.iter().map(|h| h.name.clone()).collect();
            wait_for(opts.agent_wait, || {
                names
                    .iter()
                    .all(|n| self.agent_health(n).0 != "starting")
                    .then_some(())
            });
        }
        tracing::info!(lab = %self.state.name, elapsed = ?started.elapsed(), "lab up");
        Ok(())
    }

    /// The vRouter: the vSwitch bridges (`vswitches` of them), forwarding, the cloud-service addresses.
    fn build_vrouter(&mut self, vswitches: usize) -> Result<()> {
        let vr = Netns::create(&self.state.vr_netns)?.keep();
        // A bridge takes the lowest MAC of its ports unless given one: removing a host's port (a
        // release) would change the gateway's MAC under every host's ARP cache and black-hole their
        // traffic for ~15 s. A fixed, locally administered MAC per vSwitch, like a real gateway's.
        vr.ip(&[
            "link",
            "add",
            BRIDGE,
            "address",
            &bridge_mac(1),
            "type",
            "bridge",
        ])?;
        vr.addr_add(BRIDGE, &format!("{GATEWAY}/24"))?;
        vr.link_up(BRIDGE)?;
        vr.addr_add("lo", &format!("{METADATA_IP}/32"))?;
        vr.addr_add("lo", &format!("{API_IP}/32"))?;
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            ("net.ipv4.conf.vsw.send_redirects", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            vr.sysctl(k, v)?;
        }
        self.build_vswitch_bridges(&vr, vswitches)
    }

    fn host_names(&self) -> Vec<String> {
        self.state.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Starts the dockerds of the named hosts that have one, side by side; in fleet mode each after
    /// `crossdock init` wrote its daemon.json. The hosts' records get the bip and subnet in use.
    fn start_dockerds(&mut self, names: &[String]) -> Result<()> {
        let hosts: Vec<HostState> = self
            .state
            .hosts
            .iter()
            .filter(|h| names.contains(&h.name) && h.docker_host.is_some())
            .cloned()
            .collect();
        let docker = self.state.docker_version;
        let state = &self.state;
        let results: Vec<Result<(String, String, Option<Child>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = hosts
                .iter()
                .map(|h| s.spawn(move || start_host_dockerd(state, h, docker)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("a dockerd start thread panicked")))
                })
                .collect()
        });
        let mut first_error = None;
        for r in results {
            match r {
                Ok((name, bip, child)) => {
                    self.children.extend(child);
                    if let Some(h) = self.state.hosts.iter_mut().find(|h| h.name == name) {
                        h.subnet = subnet_of_bip(&bip)?;
                        h.bip = Some(bip);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.save()?;
        first_error.map_or(Ok(()), Err)
    }

    fn start_emulator(&mut self) -> Result<()> {
        let child = spawn_emulator(&self.state, self.settings.as_ref())?;
        self.children.push(child);
        Ok(())
    }

    /// Stops the emulator (SIGTERM; its state stays on disk). The API and metadata service go away.
    pub fn emulator_stop(&mut self) -> Result<()> {
        if let Some(pid) = emulator_pid(&self.state) {
            if !procs::terminate(&[pid], Duration::from_secs(10)).is_empty() {
                bail!("the VPC emulator (pid {pid}) would not stop");
            }
        }
        self.reap();
        Ok(())
    }

    /// Starts the emulator again from its state file (no-op if it runs), waiting until it answers.
    pub fn emulator_start(&mut self) -> Result<()> {
        if emulator_pid(&self.state).is_some() {
            return Ok(());
        }
        self.start_emulator()?;
        if let Some(settings) = self.settings.clone() {
            admin_call(&self.state.admin_socket, move |c| async move {
                c.set_settings(&settings).await
            })?;
        }
        Ok(())
    }

    /// Opens an existing lab from its `lab.json` (not owned: dropping it removes nothing).
    pub fn load(name: &str) -> Result<Lab> {
        validate_name(name)?;
        let path = lab_dir(name).join("lab.json");
        let text = match std::fs::read_to_string(&path) {
            // Naming a lab that is not there is bad input (exit 2), like any other unknown name.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(InputError(format!("lab {name} does not exist ({} is missing): create it with `crossdock lab up --name {name}`, or see `crossdock lab list`", path.display())).into());
            }
            read => read.with_context(|| format!("cannot read {}", path.display()))?,
        };
        let state: LabState = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a lab state file", path.display()))?;
        Ok(Lab {
            state,
            children: Vec::new(),
            owned: false,
            settings: None,
        })
    }

    fn save(&self) -> Result<()> {
        let path = self.state.dir.join("lab.json");
        let tmp = self.state.dir.join("lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.state)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Leaves the lab up when this handle is dropped.
    pub fn keep(mut self) -> LabState {
        self.owned = false;
        self.state.clone()
    }

    pub fn name(&self) -> &str {
        &self.state.name
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn hosts(&self) -> &[HostState] {
        &self.state.hosts
    }

    /// Host `index` (1-based, as in `h1`). Panics on an index outside the lab: a test bug.
    pub fn host(&self, index: usize) -> &HostState {
        self.state
            .hosts
            .iter()
            .find(|h| h.index == index)
            .unwrap_or_else(|| panic!("lab {} has no host h{index}", self.state.name))
    }

    /// A host by name (`h1`) or by its namespace name.
    pub fn host_named(&self, name: &str) -> Result<&HostState> {
        self.state
            .hosts
            .iter()
            .find(|h| h.name == name || h.netns == name)
            .ok_or_else(|| {
                anyhow::Error::from(InputError(format!(
                    "lab {} has no host {name} (it has {})",
                    self.state.name,
                    self.state
                        .hosts
                        .iter()
                        .map(|h| h.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            })
    }

    /// The emulator's admin client (async).
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(&self.state.admin_socket)
    }

    /// Runs an admin call from synchronous code.
    pub fn admin_sync<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(AdminClient) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        admin_call(&self.state.admin_socket, f)
    }

    /// A command that runs `argv` in host `index`'s namespace with the lab environment
    /// (DOCKER_HOST, CROSSDOCK_SOCKET, CROSSDOCK_CONFIG).
    pub fn command(&self, index: usize, argv: &[&str]) -> Command {
        let host = self.host(index);
        host_command(host, argv)
    }

    /// Runs `argv` in host `index` to completion; a non-zero exit is an error quoting stderr.
    pub fn exec(&self, index: usize, argv: &[&str]) -> Result<Output> {
        let out = self.exec_unchecked(index, argv)?;
        if !out.status.success() {
            bail!(
                "`{}` in lab {} host h{index} failed ({}): {}{}",
                argv.join(" "),
                self.state.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(out)
    }

    /// Runs `argv` in host `index` and returns its output whatever the exit status.
    pub fn exec_unchecked(&self, index: usize, argv: &[&str]) -> Result<Output> {
        self.command(index, argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run `{}` in host h{index}", argv.join(" ")))
    }

    /// Runs the docker CLI against host `index`'s dockerd (checked).
    pub fn docker(&self, index: usize, args: &[&str]) -> Result<Output> {
        let host = self.host(index);
        let docker_host = host
            .docker_host
            .as_deref()
            .ok_or_else(|| anyhow!("host {} has no dockerd (a static host)", host.name))?;
        let out = dockerd::docker_command(docker_host)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("cannot run the docker CLI")?;
        if !out.status.success() {
            bail!(
                "`docker {}` on host {} failed: {}",
                args.join(" "),
                host.name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    /// `docker run -d --name NAME ARGS...` on host `index`; its id, IP and PID.
    pub fn run_container(&self, index: usize, name: &str, args: &[&str]) -> Result<ContainerInfo> {
        let mut full = vec!["run", "-d", "--name", name];
        full.extend_from_slice(args);
        self.docker(index, &full)?;
        let host = self.host(index);
        dockerd::inspect_container(host.docker_host.as_deref().unwrap_or_default(), name)
    }

    /// Runs `argv` inside a container's network namespace (from the root mount namespace, so host tools
    /// such as iperf3 work without being in the image).
    pub fn container_netns_exec(&self, container: &ContainerInfo, argv: &[&str]) -> Result<Output> {
        Command::new("nsenter")
            .arg("-t")
            .arg(container.pid.to_string())
            .arg("-n")
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .context("cannot run nsenter")
    }

    /// Starts host `name`'s agent (no-op if it runs).
    pub fn agent_start(&mut self, name: &str) -> Result<u32> {
        let host = self.host_named(name)?.clone();
        if let Some(pid) = agent_pid(&host) {
            return Ok(pid);
        }
        let child = spawn_agent(&self.state, &host)?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Stops host `name`'s agent with SIGTERM (SIGKILL after 10 s).
    pub fn agent_stop(&mut self, name: &str) -> Result<()> {
        let host = self.host_named(name)?.clone();
        if let Some(pid) = agent_pid(&host) {
            let left = procs::terminate(&[pid], Duration::from_secs(10));
            if !left.is_empty() {
                bail!("the agent of host {name} (pid {pid}) would not stop");
            }
        }
        self.reap();
        Ok(())
    }

    /// Kills host `name`'s agent with SIGKILL (a crash: it cleans nothing up).
    pub fn agent_kill(&mut self, name: &str) -> Result<()> {
        let host = self.host_named(name)?.clone();
        if let Some(pid) = agent_pid(&host) {
            procs::kill_now(&[pid]);
        }
        self.reap();
        Ok(())
    }

    /// Stops and starts host `name`'s agent.
    pub fn agent_restart(&mut self, name: &str) -> Result<u32> {
        self.agent_stop(name)?;
        self.agent_start(name)
    }

    /// Host `name`'s agent health: (state, detail). State: `ready`, `unhealthy`, `starting`, `stopped`.
    pub fn agent_health(&self, name: &str) -> (String, String) {
        match self.host_named(name) {
            Ok(h) => agent_health(h),
            Err(e) => ("stopped".into(), e.to_string()),
        }
    }

    /// Waits until host `name`'s agent reports `ready`.
    pub fn wait_agent_ready(&self, name: &str, timeout: Duration) -> Result<()> {
        let mut last = (String::new(), String::new());
        if wait_for(timeout, || {
            last = self.agent_health(name);
            (last.0 == "ready").then_some(())
        })
        .is_some()
        {
            return Ok(());
        }
        bail!(
            "the agent of host {name} is not ready after {timeout:?}: {} {}",
            last.0,
            last.1
        )
    }

    /// The status (what `crossdock lab status --json` prints).
    pub fn status(&self) -> LabStatus {
        status_of(&self.state)
    }

    fn reap(&mut self) {
        self.children
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    /// Removes the lab: every process, mount, namespace and directory. Idempotent.
    pub fn down(&mut self) -> Result<()> {
        let result = down(&self.state.name);
        for child in &mut self.children {
            let _ = child.try_wait();
        }
        // Everything was killed above: reap the children this process started.
        for mut child in self.children.drain(..) {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.owned = false;
        result
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = self.down() {
                eprintln!(
                    "crossdock lab: removing lab {} failed: {e:#}",
                    self.state.name
                );
            }
        }
    }
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// A command running `argv` in `host`'s namespace with the lab environment.
pub fn host_command(host: &HostState, argv: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net={}", host.netns_path().display()))
        .arg("--")
        .args(argv)
        .envs(host.env());
    cmd
}

/// The agent's PID from its pid file, if that process is alive and is that host's agent.
pub fn agent_pid(host: &HostState) -> Option<u32> {
    procs::pid_from_file(
        &host.agent_pidfile(),
        &[&host.agent_config.display().to_string()],
    )
}

fn spawn_agent(state: &LabState, host: &HostState) -> Result<Child> {
    let log = open_log(&host.agent_log())?;
    let mut cmd = host_command(host, &[]);
    cmd.arg(&state.crossdock_bin)
        .arg("agent")
        .arg("--config")
        .arg(&host.agent_config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start the agent of host {}", host.name))?;
    std::fs::write(host.agent_pidfile(), child.id().to_string())
        .with_context(|| format!("cannot write {}", host.agent_pidfile().display()))?;
    Ok(child)
}

/// The emulator's PID from its pid file, if that process is alive and is this lab's emulator.
pub fn emulator_pid(state: &LabState) -> Option<u32> {
    procs::pid_from_file(
        &state.dir.join("vpc/vpcsim.pid"),
        &[&state.admin_socket.display().to_string()],
    )
}

/// Starts the emulator inside the vRouter namespace and waits (bounded) until its admin socket answers.
fn spawn_emulator(state: &LabState, settings: Option<&Settings>) -> Result<Child> {
    let vpc_dir = state.dir.join("vpc");
    let log_path = vpc_dir.join("vpcsim.log");
    let log = open_log(&log_path)?;
    let defaults = Settings::default();
    let s = settings.unwrap_or(&defaults);
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!(
        "--net={}",
        Path::new(netns::NETNS_DIR).join(&state.vr_netns).display()
    ))
    .arg("--")
    .arg(&state.crossdock_bin)
    .args(["lab", "vpc-server", "--name", &state.name])
    .arg("--state")
    .arg(vpc_dir.join("state.json"))
    .arg("--api-socket")
    .arg(&state.api_socket)
    .arg("--admin-socket")
    .arg(&state.admin_socket)
    .args(["--api-listen", &format!("{API_IP}:80")])
    .args(["--metadata-listen", &format!("{METADATA_IP}:80")])
    .args(["--seed", &seed_of(&state.name).to_string()])
    .args(["--pending-ms", &s.pending_ms.to_string()])
    .args(["--deleting-ms", &s.deleting_ms.to_string()])
    .args([
        "--credential-lifetime-secs",
        &s.credential_lifetime_secs.to_string(),
    ])
    .args(["--route-quota", &s.route_entry_quota.to_string()])
    .args(if s.metadata_hardened {
        &["--metadata-hardened"][..]
    } else {
        &[][..]
    })
    .stdin(Stdio::null())
    .stdout(log.try_clone()?)
    .stderr(log)
    .process_group(0);
    let mut child = cmd.spawn().context("cannot start the VPC emulator")?;
    std::fs::write(vpc_dir.join("vpcsim.pid"), child.id().to_string())?;
    let admin = state.admin_socket.clone();
    let ready = wait_for(Duration::from_secs(30), || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return Some(false);
        }
        http::get(&admin, "/healthz", Duration::from_secs(2))
            .ok()
            .filter(|r| r.is_success())
            .map(|_| true)
    });
    if ready != Some(true) {
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the VPC emulator did not come up (admin socket {}); its log {} says:\n{}",
            admin.display(),
            log_path.display(),
            dockerd::log_tail(&log_path, 0, 20)
        );
    }
    Ok(child)
}

/// A per-lab seed, so two labs hand out different ids.
pub fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) >> 1
}

/// Starts host `name`'s agent of lab `state` from a process that does not own the lab (the CLI); the
/// agent outlives it.
pub fn agent_start_detached(state: &LabState, name: &str) -> Result<u32> {
    let host = find_host(state, name)?;
    if let Some(pid) = agent_pid(host) {
        return Ok(pid);
    }
    let child = spawn_agent(state, host)?;
    Ok(child.id())
}

fn find_host<'a>(state: &'a LabState, name: &str) -> Result<&'a HostState> {
    state
        .hosts
        .iter()
        .find(|h| h.name == name || h.netns == name)
        .ok_or_else(|| {
            anyhow::Error::from(InputError(format!(
                "lab {} has no host {name} (it has {})",
                state.name,
                state
                    .hosts
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        })
}

/// The health of a host's agent: (`ready`|`unhealthy`|`starting`|`stopped`, detail).
pub fn agent_health(host: &HostState) -> (String, String) {
    let running = agent_pid(host).is_some();
    match http::get(&host.agent_socket, "/healthz", Duration::from_secs(2)) {
        Ok(r) if r.is_success() => ("ready".into(), r.text().trim().to_string()),
        Ok(r) => ("unhealthy".into(), r.text().trim().to_string()),
        Err(e) if running => ("starting".into(), format!("{e:#}")),
        Err(_) => (
            "stopped".into(),
            format!("no agent process (its log: {})", host.agent_log().display()),
        ),
    }
}

/// Every table's custom entries, each with the lab host its next hop is.
fn route_statuses(state: &LabState, vpc: &crossdock_vpcsim::model::State) -> Vec<RouteStatus> {
    vpc.entries
        .iter()
        .filter(|e| e.entry_type == crossdock_vpcsim::model::EntryType::Custom)
        .map(|e| RouteStatus {
            route_table_id: e.route_table_id.clone(),
            route_entry_id: e.route_entry_id.clone(),
            destination: e.destination_cidr_block.to_string(),
            next_hop_id: e.next_hop_id.clone(),
            next_hop_host: state
                .hosts
                .iter()
                .find(|h| h.instance_id == e.next_hop_id || h.eni_id == e.next_hop_id)
                .map(|h| h.name.clone())
                .unwrap_or_default(),
            status: e.status.as_str().to_string(),
            route_entry_name: e.route_entry_name.clone(),
        })
        .collect()
}

/// One host's status; `vpc` = the emulator's state when it answers.
fn host_status(h: &HostState, vpc: Option<&crossdock_vpcsim::model::State>) -> HostStatus {
    let (agent, agent_detail) = agent_health(h);
    let dockerd = if h.docker_host.is_none() {
        "none"
    } else if dockerd::running_pid(&h.dir).is_some() {
        "running"
    } else {
        "stopped"
    };
    let instance = vpc.and_then(|v| v.instance(&h.instance_id));
    let instance_status = match (vpc, instance) {
        (None, _) => String::new(),
        (Some(_), None) => "released".into(),
        (Some(_), Some(i)) => i.status.as_str().into(),
    };
    HostStatus {
        name: h.name.clone(),
        netns: h.netns.clone(),
        private_ip: h.private_ip.clone(),
        instance_id: h.instance_id.clone(),
        eni_id: h.eni_id.clone(),
        docker_host: h.docker_host.clone().unwrap_or_default(),
        subnet: h.subnet.clone(),
        agent,
        agent_detail,
        agent_socket: h.agent_socket.clone(),
        agent_config: h.agent_config.clone(),
        dockerd: dockerd.into(),
        instance_status,
        tags: instance
            .map(|i| i.tags.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        vswitch: h.vswitch.clone(),
        route_table_id: vpc
            .zip(instance)
            .map(|(v, i)| v.table_of_vswitch(&i.vswitch_id).to_string())
            .unwrap_or_default(),
    }
}

/// The lab's status from its state file and live probes.
pub fn status_of(state: &LabState) -> LabStatus {
    let emulator_running = http::get(&state.admin_socket, "/healthz", Duration::from_secs(2))
        .is_ok_and(|r| r.is_success());
    let vpc = if emulator_running {
        admin_call(&state.admin_socket, |c| async move { c.state().await }).ok()
    } else {
        None
    };
    let routes = vpc
        .as_ref()
        .map(|v| route_statuses(state, v))
        .unwrap_or_default();
    let hosts = state
        .hosts
        .iter()
        .map(|h| host_status(h, vpc.as_ref()))
        .collect();
    let (vswitches, route_tables) = zone_statuses(state, vpc.as_ref());
    LabStatus {
        vswitches,
        route_tables,
        name: state.name.clone(),
        api_endpoint: state.api_endpoint.clone(),
        metadata_endpoint: state.metadata_endpoint.clone(),
        region_id: state.region_id.clone(),
        vpc_id: state.vpc_id.clone(),
        vswitch_id: state.vswitch_id.clone(),
        route_table_id: state.route_table_id.clone(),
        admin_access_key_id: state.admin_access_key_id.clone(),
        admin_access_key_secret: state.admin_access_key_secret.clone(),
        api_socket: state.api_socket.clone(),
        admin_socket: state.admin_socket.clone(),
        docker_version: state.docker_version.as_str().to_string(),
        emulator: if emulator_running {
            "running"
        } else {
            "stopped"
        }
        .into(),
        hosts,
        routes,
    }
}

/// Removes lab `name` whatever state it is in: from `lab.json` and pid files when they exist, and by the
/// names and paths the lab uses otherwise. Safe to run twice; a lab that does not exist is not an error.
pub fn down(name: &str) -> Result<()> {
    validate_name(name)?;
    let dir = lab_dir(name);
    let needle = format!("{}/", dir.display());
    let host_dirs: Vec<PathBuf> = std::fs::read_dir(dir.join("hosts"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();

    // 1. The agents and the emulator (each only if its pid file names a live process of this lab).
    let pids: Vec<u32> = host_dirs
        .iter()
        .map(|d| d.join("agent.pid"))
        .chain([dir.join("vpc/vpcsim.pid")])
        .filter_map(|pidfile| procs::pid_from_file(&pidfile, &[&needle]))
        .collect();
    procs::terminate(&pids, Duration::from_secs(5));

    // 2. The dockerds, their containerd, shims and containers, side by side.
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = host_dirs
            .iter()
            .map(|d| s.spawn(move || dockerd::cleanup_dir(d).map_err(|e| format!("{e:#}"))))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or(Err("a clean-up thread panicked".into()))
                    .err()
            })
            .collect()
    });

    // 3. Anything else of the lab: processes naming its directory, processes inside its namespaces.
    let namespaces: Vec<String> = Netns::list_with_prefix("cdl-")
        .into_iter()
        .filter(|n| is_lab_netns(name, n))
        .collect();
    for _ in 0..3 {
        let mut rest = procs::pids_with_cmdline_containing(&needle);
        for ns in &namespaces {
            if let Ok(ns) = Netns::open(ns) {
                rest.extend(ns.pids());
            }
        }
        rest.retain(|&p| p != std::process::id());
        rest.sort_unstable();
        rest.dedup();
        if rest.is_empty() {
            break;
        }
        procs::terminate(&rest, Duration::from_secs(3));
    }

    // 4. The namespaces (their links, the bridge, routes and firewall rules go with them).
    for ns in &namespaces {
        Netns::delete_by_name(ns)?;
    }

    // 5. Mounts and the directory.
    let left = procs::unmount_under(&dir)?;
    if !left.is_empty() {
        bail!(
            "cannot unmount under {}: {}",
            dir.display(),
            left.join(", ")
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    if !errors.is_empty() {
        bail!("removing lab {name}: {}", errors.join("; "));
    }
    let survivors: Vec<String> = Netns::list_with_prefix("cdl-")
        .into_iter()
        .filter(|n| is_lab_netns(name, n))
        .collect();
    if !survivors.is_empty() {
        bail!(
            "network namespaces {} are still there",
            survivors.join(", ")
        );
    }
    Ok(())
}

/// Names of the labs that exist (by directory or by namespace).
pub fn list() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(LAB_ROOT)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    for ns in Netns::list_with_prefix("cdl-") {
        if let Some(lab) = ns.strip_suffix("-vr").and_then(|n| n.strip_prefix("cdl-")) {
            names.push(lab.to_string());
        }
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_namespaces_are_matched_exactly() {
        assert!(is_lab_netns("a", "cdl-a-vr"));
        assert!(is_lab_netns("a", "cdl-a-h1"));
        assert!(is_lab_netns("a", "cdl-a-h12"));
        assert!(
            !is_lab_netns("a", "cdl-a-b-vr"),
            "another lab whose name starts with a-"
        );
        assert!(!is_lab_netns("a", "cdl-a-h1-vr"));
        assert!(!is_lab_netns("a", "cdl-a-h"));
        assert!(!is_lab_netns("a", "cdl-ab-vr"));
        assert!(!is_lab_netns("a", "other"));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("default").is_ok());
        assert!(validate_name("t1234-0").is_ok());
        assert!(validate_name("Default").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("abcdefghijklmnopqrstu").is_err());
    }

    #[test]
    fn addresses_follow_the_article() {
        assert_eq!(host_ip(1), "192.168.1.11");
        assert_eq!(host_subnet(1), "10.0.0.0/24");
        assert_eq!(host_bip(2), "10.1.0.1/24");
        assert_eq!(vr_netns_name("x"), "cdl-x-vr");
        assert_eq!(host_netns_name("x", 3), "cdl-x-h3");
    }

    fn sample_host(docker: bool) -> HostState {
        let dir = PathBuf::from("/var/lib/crossdock-lab/x/hosts/h2");
        HostState {
            name: "h2".into(),
            index: 2,
            netns: "cdl-x-h2".into(),
            private_ip: host_ip(2),
            port: "p-h2".into(),
            instance_id: "i-1".into(),
            eni_id: "eni-1".into(),
            subnet: host_subnet(2),
            bip: docker.then(|| host_bip(2)),
            docker_host: docker.then(|| format!("unix://{}/docker.sock", dir.display())),
            agent_socket: dir.join("agent.sock"),
            agent_config: dir.join("agent.toml"),
            dir,
            vswitch: "vsw1".into(),
        }
    }

    #[test]
    fn the_agent_configuration_is_valid_and_points_at_the_lab() {
        let host = sample_host(true);
        let text = agent_config_for(&host).to_toml();
        let parsed = crossdock_config::parse(&text).expect("the lab writes a valid configuration");
        assert_eq!(
            parsed.cluster_cidrs,
            vec!["10.0.0.0/8".parse::<ipnet::Ipv4Net>().unwrap()]
        );
        assert_eq!(
            parsed.docker.host,
            "unix:///var/lib/crossdock-lab/x/hosts/h2/docker.sock"
        );
        assert_eq!(
            parsed.health_socket,
            PathBuf::from("/var/lib/crossdock-lab/x/hosts/h2/agent.sock")
        );
        assert_eq!(parsed.cloud.provider, crossdock_config::Provider::Alibaba);
        assert_eq!(parsed.cloud.metadata_url, "http://100.100.100.200");
        assert_eq!(parsed.cloud.vpc_endpoint, "http://100.100.100.201");
        assert_eq!(parsed.cloud.ecs_endpoint, "http://100.100.100.201");
        assert_eq!(parsed.docker.static_subnet, None);

        let static_host = sample_host(false);
        let parsed = crossdock_config::parse(&agent_config_for(&static_host).to_toml()).unwrap();
        assert_eq!(
            parsed.docker.static_subnet,
            Some("10.1.0.0/24".parse().unwrap())
        );
    }

    #[test]
    fn exec_sets_the_lab_environment() {
        let host = sample_host(true);
        let env = host.env();
        assert!(env.contains(&(
            "DOCKER_HOST".into(),
            "unix:///var/lib/crossdock-lab/x/hosts/h2/docker.sock".into()
        )));
        assert!(env.contains(&(
            "CROSSDOCK_SOCKET".into(),
            "/var/lib/crossdock-lab/x/hosts/h2/agent.sock".into()
        )));
        assert!(env.contains(&(
            "CROSSDOCK_CONFIG".into(),
            "/var/lib/crossdock-lab/x/hosts/h2/agent.toml".into()
        )));
        let cmd = host_command(&host, &["docker", "ps"]);
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            vec!["--net=/run/netns/cdl-x-h2", "--", "docker", "ps"]
        );
    }

    #[test]
    fn the_status_json_has_the_contract_fields() {
        let state = LabState {
            name: "x".into(),
            dir: lab_dir("x"),
            vr_netns: vr_netns_name("x"),
            docker_version: DockerVersion::V28,
            crossdock_bin: "/bin/true".into(),
            agents: true,
            phase: "up".into(),
            created_at: 0,
            region_id: "cn-hangzhou".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            route_table_id: "vtb-1".into(),
            admin_access_key_id: "LTAIadmin".into(),
            admin_access_key_secret: "s".into(),
            api_endpoint: "http://100.100.100.201".into(),
            metadata_endpoint: "http://100.100.100.200".into(),
            api_socket: "/nonexistent/api.sock".into(),
            admin_socket: "/nonexistent/admin.sock".into(),
            hosts: vec![sample_host(true)],
            fleet_tag: None,
            source_dest_check: true,
            next_index: 3,
            vswitches: vec![],
            names: false,
        };
        let value = serde_json::to_value(status_of(&state)).unwrap();
        for key in [
            "name",
            "api_endpoint",
            "region_id",
            "vpc_id",
            "admin_access_key_id",
            "admin_access_key_secret",
            "api_socket",
            "admin_socket",
            "docker_version",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["emulator"], "stopped");
        let h = &value["hosts"][0];
        for key in [
            "name",
            "netns",
            "private_ip",
            "instance_id",
            "docker_host",
            "subnet",
            "agent",
        ] {
            assert!(h.get(key).is_some(), "missing hosts[].{key}");
        }
        assert_eq!(h["agent"], "stopped");
        assert_eq!(h["subnet"], "10.1.0.0/24");
        assert_eq!(h["vswitch"], "vsw1");
        assert_eq!(h["route_table_id"], "", "the emulator is down");
        assert_eq!(value["vswitches"][0]["name"], "vsw1");
        assert_eq!(value["vswitches"][0]["vswitch_id"], "vsw-1");
        assert_eq!(value["vswitches"][0]["bridge"], "vsw");
    }
}
