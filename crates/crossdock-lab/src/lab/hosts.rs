//! Hosts that come and go: fleet mode (one identical agent configuration for every host, each host's
//! Docker bridge subnet written by `crossdock init` before its dockerd starts) and adding, stopping,
//! starting and releasing hosts of a running lab, as an Auto Scaling group does with ECS instances.
//!
//! Why one module for both: fleet mode exists for clusters whose hosts join and leave while it runs, so
//! the steps that make a host (namespace, tagged instance, agent configuration, init, dockerd, agent)
//! are the same for `lab up` and `lab host add`, and `lab host release` undoes them in reverse, the way
//! a released instance disappears: abruptly, leaving its routes in the table for the survivors to clean.

use super::*;
use crossdock_config::{Config, SubnetMode};
use crossdock_vpcsim::model::Tag;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// What the lab changes in an agent configuration it is given (`lab up --fleet --agent-config FILE`):
/// only where the cloud endpoints and the per-host sockets are. Everything else is used as written.
pub const LAB_OVERRIDES: &[&str] = &[
    "cloud.metadata_url = \"http://100.100.100.200\" (the lab's metadata service)",
    "cloud.vpc_endpoint = \"http://100.100.100.201\" (the emulator's API)",
    "cloud.ecs_endpoint = \"http://100.100.100.201\" (the emulator's API)",
    "health_socket = \"<host dir>/agent.sock\" (per host: the lab's hosts share one filesystem)",
    "docker.host = \"unix://<host dir>/docker.sock\" (per host, for the same reason)",
    "with --names: names.enabled = true, names.resolv_conf = \"<lab dir>/resolv.conf\" (the VPC DNS stand-in)",
];

/// The fleet's shared agent configuration (what every host's `agent.toml` is, before its own sockets).
pub fn fleet_config_path(state: &LabState) -> PathBuf {
    state.dir.join("agent-fleet.toml")
}

/// The tag of lab `name`'s hosts unless the configuration given names another.
pub fn default_fleet_tag(name: &str) -> String {
    format!("crossdock-cluster={name}")
}

/// Points a configuration at the lab's metadata service and API (the first three [`LAB_OVERRIDES`]).
pub fn apply_lab_endpoints(c: &mut Config) {
    c.cloud.metadata_url = format!("http://{METADATA_IP}");
    c.cloud.vpc_endpoint = format!("http://{API_IP}");
    c.cloud.ecs_endpoint = format!("http://{API_IP}");
}

/// The shared configuration the lab writes when given none: every host's subnet derived from its
/// private IP (host range = the VPC CIDR) inside 10.0.0.0/8, members = instances with the lab's tag.
pub fn default_fleet_config(name: &str) -> Config {
    let mut c = Config {
        cluster_cidrs: vec!["10.0.0.0/8".parse().expect("valid")],
        ..Default::default()
    };
    c.subnet.mode = SubnetMode::Derived;
    c.fleet.tag = Some(default_fleet_tag(name).parse().expect("a valid tag"));
    c.cloud.provider = crossdock_config::Provider::Alibaba;
    apply_lab_endpoints(&mut c);
    c
}

/// The shared configuration from a given text (checked as the agent checks it), with the lab's
/// endpoints. A configuration that does not derive subnets cannot run a fleet: refused.
pub fn fleet_config_from_text(text: &str) -> Result<Config> {
    let mut c = crossdock_config::parse(text).map_err(|e| {
        InputError(format!(
            "the agent configuration given to the lab is not valid: {e}"
        ))
    })?;
    if c.subnet.mode != SubnetMode::Derived {
        return Err(InputError(
            "the agent configuration given to the lab does not derive subnets: fleet mode needs subnet.mode = \"derived\" under [subnet]".into(),
        )
        .into());
    }
    apply_lab_endpoints(&mut c);
    Ok(c)
}

/// One host's configuration in fleet mode: the shared one with the host's own sockets (the last two
/// [`LAB_OVERRIDES`]); nothing else differs between hosts.
pub fn fleet_host_config(shared: &Config, host: &HostState) -> Config {
    let mut c = shared.clone();
    c.health_socket = host.agent_socket.clone();
    c.docker.host = host
        .docker_host
        .clone()
        .unwrap_or_else(|| format!("unix://{}/docker.sock", host.dir.display()));
    c
}

/// `10.1.11.1/24` → `10.1.11.0/24`.
pub fn subnet_of_bip(bip: &str) -> Result<String> {
    let net: Ipv4Net = bip
        .parse()
        .with_context(|| format!("`{bip}` is not a bridge address (address/prefix)"))?;
    Ok(net.trunc().to_string())
}

/// Runs `crossdock init` in `host`'s namespace, where the metadata service answers as on an ECS
/// instance: it derives the host's subnet from its private IP and writes the `bip` into the host's
/// daemon.json (the file its dockerd then reads). The lab's only call of `crossdock init`; its
/// output goes to `init.log` in the host's directory.
pub fn run_init(state: &LabState, host: &HostState) -> Result<()> {
    let daemon_json = host.dir.join("daemon.json");
    let log = host.dir.join("init.log");
    let out = host_command(host, &[])
        .arg(&state.crossdock_bin)
        .arg("init")
        .arg("--config")
        .arg(&host.agent_config)
        .arg("--daemon-json")
        .arg(&daemon_json)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `crossdock init` in host {}", host.name))?;
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    let _ = std::fs::write(&log, &text);
    if !out.status.success() {
        bail!(
            "`crossdock init` in host {} failed ({}): {}",
            host.name,
            out.status,
            String::from_utf8_lossy(&text).trim()
        );
    }
    Ok(())
}

/// The `bip` a host's daemon.json holds.
fn bip_in_daemon_json(host: &HostState) -> Result<String> {
    let path = host.dir.join("daemon.json");
    dockerd::read_daemon_json(&path)?
        .get("bip")
        .and_then(|v| v.as_str())
        .map(String::from)
        .ok_or_else(|| anyhow!("{} has no \"bip\" after `crossdock init`", path.display()))
}

/// Imports the busybox image unless the daemon has it (a restarted daemon keeps its data root).
fn ensure_busybox(docker_host: &str) -> Result<()> {
    let has = dockerd::docker_command(docker_host)
        .args(["image", "inspect", dockerd::BUSYBOX_IMAGE])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if has {
        return Ok(());
    }
    dockerd::import_busybox(docker_host)
}

/// Starts one host's dockerd (in fleet mode after `crossdock init`): (host name, bip in use, child).
pub(super) fn start_host_dockerd(
    state: &LabState,
    host: &HostState,
    docker: DockerVersion,
) -> Result<(String, String, Option<Child>)> {
    let spec = if state.fleet_tag.is_some() {
        run_init(state, host)?;
        DockerdSpec::keeping_daemon_json(host.netns_path(), &host.dir, docker)
    } else {
        let bip = host.bip.as_deref().unwrap_or_default();
        DockerdSpec::new(host.netns_path(), &host.dir, bip, docker)
    };
    let d =
        Dockerd::start(spec).with_context(|| format!("starting dockerd in host {}", host.name))?;
    ensure_busybox(&d.docker_host())
        .with_context(|| format!("importing busybox into host {}", host.name))?;
    let bip = bip_in_daemon_json(host)?;
    Ok((host.name.clone(), bip, d.detach()))
}

/// What `lab host add` makes.
#[derive(Debug, Clone, Default)]
pub struct HostAdd {
    /// Its private IP (e.g. a released host's, to test a reused IP); default: the first free one.
    pub ip: Option<Ipv4Addr>,
    /// No dockerd. In fleet mode such a host runs no agent either (its route is the others' job);
    /// in per-host mode its agent serves a fixed subnet, like `--static-hosts`.
    pub no_docker: bool,
    /// Its vSwitch (`vsw2`, a number or an id); default: the one holding `ip`, else round-robin by
    /// the host's index.
    pub vswitch: Option<String>,
}

impl Lab {
    /// Fleet mode, before the hosts are made: the shared agent configuration (given or the lab's,
    /// then the `agent_config` hook once with index 0), written to [`fleet_config_path`], and the tag
    /// the hosts' instances get (the configuration's `fleet.tag`, else `crossdock-cluster=<lab>`).
    pub(super) fn prepare_fleet(&mut self, opts: &LabOptions) -> Result<()> {
        let mut shared = match &opts.agent_config_text {
            Some(text) => fleet_config_from_text(text)?,
            None => default_fleet_config(&self.state.name),
        };
        if let Some(hook) = &opts.agent_config {
            (hook.0)(0, &mut shared);
        }
        if opts.names {
            super::names::apply_lab_names(&mut shared, &self.state);
        }
        let tag = shared.fleet.tag.as_ref().map(ToString::to_string);
        self.state.fleet_tag = Some(tag.unwrap_or_else(|| default_fleet_tag(&self.state.name)));
        let path = fleet_config_path(&self.state);
        std::fs::write(&path, shared.to_toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.save()
    }

    /// The fleet's shared configuration as written by [`Lab::prepare_fleet`].
    pub fn fleet_config(&self) -> Result<Config> {
        let path = fleet_config_path(&self.state);
        crossdock_config::load(&path)
            .map_err(|e| anyhow!("the lab's fleet configuration {}: {e}", path.display()))
    }

    /// Fleet mode, once the VPC is known: the shared configuration must map its CIDR (else no host
    /// could get a subnet: refused before any dockerd starts), and hosts without Docker get the subnet
    /// the mapping gives them (for the status; nothing writes it anywhere).
    pub(super) fn check_fleet_mapping(&mut self, vpc_cidr: Ipv4Net) -> Result<()> {
        let shared = self.fleet_config()?;
        let mapping = shared.subnet_mapping(Some(vpc_cidr)).map_err(|e| {
            InputError(format!(
                "the fleet configuration cannot give this lab's hosts (VPC {vpc_cidr}) a subnet: {e}"
            ))
        })?;
        for h in self
            .state
            .hosts
            .iter_mut()
            .filter(|h| h.docker_host.is_none())
        {
            let ip: Ipv4Addr = h.private_ip.parse().context("host IP")?;
            h.subnet = mapping
                .subnet_for(ip)
                .map_err(|e| anyhow!("{e}"))?
                .to_string();
        }
        Ok(())
    }

    /// Whether a host runs an agent: every host in per-host mode; in fleet mode those with Docker.
    pub fn runs_agent(&self, host: &HostState) -> bool {
        host.docker_host.is_some() || self.state.fleet_tag.is_none()
    }

    /// Makes host `h<index>`'s namespace with `eth0` on vSwitch `vswitch` (1-based) and records the
    /// host.
    pub(super) fn create_host_netns(
        &mut self,
        index: usize,
        ip: String,
        docker: bool,
        vswitch: usize,
    ) -> Result<HostState> {
        let vsw = self.vswitch(&vswitch.to_string())?;
        let name = format!("h{index}");
        let host_dir = self.state.dir.join("hosts").join(&name);
        std::fs::create_dir_all(&host_dir)
            .with_context(|| format!("cannot create {}", host_dir.display()))?;
        let per_host = self.state.fleet_tag.is_none();
        let host = HostState {
            name: name.clone(),
            index,
            netns: host_netns_name(&self.state.name, index),
            private_ip: ip,
            port: format!("p-{name}"),
            instance_id: String::new(),
            eni_id: String::new(),
            // fleet mode: known once `crossdock init` ran (or the mapping was asked)
            subnet: if per_host {
                host_subnet(index)
            } else {
                String::new()
            },
            bip: (docker && per_host).then(|| host_bip(index)),
            dir: host_dir.clone(),
            docker_host: docker.then(|| format!("unix://{}/docker.sock", host_dir.display())),
            agent_socket: host_dir.join("agent.sock"),
            agent_config: host_dir.join("agent.toml"),
            vswitch: vsw.name.clone(),
        };
        self.state.hosts.push(host.clone());
        self.save()?;
        let vr = Netns::open(&self.state.vr_netns)?.keep();
        let ns = Netns::create(&host.netns)?.keep();
        // A fresh ECS instance does not forward. A new namespace inherits IPv4 settings from the root
        // namespace, where the machine's own dockerd has usually switched forwarding on; and Docker
        // only sets the FORWARD policy to DROP when it is the one turning forwarding on.
        ns.sysctl("net.ipv4.ip_forward", "0")?;
        netns::veth(&ns, "eth0", &vr, &host.port)?;
        vr.ip(&["link", "set", &host.port, "master", &vsw.bridge])?;
        ns.addr_add("eth0", &format!("{}/24", host.private_ip))?;
        ns.default_route(&vsw.gateway)?;
        Ok(host)
    }

    /// Registers host `name` as an ECS instance (tagged in fleet mode) and records its ids.
    pub(super) fn register_instance(&mut self, name: &str) -> Result<()> {
        let h = self.host_named(name)?.clone();
        let tags: Vec<Tag> = match &self.state.fleet_tag {
            Some(t) => vec![t.parse().map_err(|e: String| anyhow!(e))?],
            None => vec![],
        };
        let vswitch_id = self.vswitch_of_host(&h)?.vswitch_id;
        let req = crossdock_vpcsim::admin::CreateInstance {
            hostname: format!("{}-{}", self.state.name, h.name),
            private_ip: Some(h.private_ip.parse().context("host IP")?),
            port: Some(h.port.clone()),
            vswitch_id: (!vswitch_id.is_empty()).then_some(vswitch_id),
            source_dest_check: Some(self.state.source_dest_check),
            tags,
            ..Default::default()
        };
        let instance = self.admin_sync(move |c| async move { c.create_instance(&req).await })?;
        let h = self
            .state
            .hosts
            .iter_mut()
            .find(|x| x.name == name)
            .expect("the host was just found");
        h.instance_id = instance.instance_id;
        h.eni_id = instance.eni_id;
        self.save()
    }

    /// Writes a host's `agent.toml`: in fleet mode the shared configuration with its own sockets; in
    /// per-host mode the lab's per-host configuration edited by `hook`.
    pub(super) fn write_agent_config(
        &self,
        host: &HostState,
        hook: Option<&AgentConfigHook>,
    ) -> Result<()> {
        let config = if self.state.fleet_tag.is_some() {
            fleet_host_config(&self.fleet_config()?, host)
        } else {
            let mut c = agent_config_for(host);
            if let Some(hook) = hook {
                (hook.0)(host.index, &mut c);
            }
            c
        };
        std::fs::write(&host.agent_config, config.to_toml())
            .with_context(|| format!("cannot write {}", host.agent_config.display()))
    }

    /// The vSwitch (number) and IP for a new host `index`: the vSwitch asked for, else the one holding
    /// the IP asked for, else round-robin; the IP asked for if usable and free, else the first free one.
    fn place_host(&self, req: &HostAdd, index: usize) -> Result<(usize, Ipv4Addr)> {
        let vswitches = self.vswitches();
        let vsw = match (&req.vswitch, req.ip) {
            (Some(name), _) => self.vswitch(name)?,
            (None, Some(ip)) => vswitches
                .iter()
                .find(|v| usable_host_ip(&v.cidr, ip))
                .cloned()
                .ok_or_else(|| {
                    let cidrs: Vec<&str> = vswitches.iter().map(|v| v.cidr.as_str()).collect();
                    InputError(format!(
                        "{ip} cannot be a lab host's IP: use .11 to .250 of a vSwitch ({})",
                        cidrs.join(", ")
                    ))
                })?,
            (None, None) => {
                let k = host_vswitch(index, vswitches.len());
                vswitches[k - 1].clone()
            }
        };
        Ok((vsw.number, self.free_ip(req.ip, &vsw)?))
    }

    /// The IP for a new host on `vsw`: the one asked for if usable and free, else the first free one.
    fn free_ip(&self, asked: Option<Ipv4Addr>, vsw: &VSwitchState) -> Result<Ipv4Addr> {
        let taken = |ip: Ipv4Addr| {
            self.state
                .hosts
                .iter()
                .any(|h| h.private_ip == ip.to_string())
        };
        let net: Ipv4Net = vsw.cidr.parse().context("vSwitch CIDR")?;
        match asked {
            Some(ip) if !usable_host_ip(&vsw.cidr, ip) => Err(InputError(format!(
                "{ip} cannot be the IP of a host on {} ({}): use .11 to .250 of it",
                vsw.name, vsw.cidr
            ))
            .into()),
            Some(ip) if taken(ip) => Err(InputError(format!(
                "{ip} belongs to a host of lab {} already (release it first)",
                self.state.name
            ))
            .into()),
            Some(ip) => Ok(ip),
            None => net
                .hosts()
                .filter(|ip| usable_host_ip(&vsw.cidr, *ip))
                .find(|ip| !taken(*ip))
                .ok_or_else(|| anyhow!("vSwitch {} of lab {} is full", vsw.name, self.state.name)),
        }
    }

    /// Adds a host to a running lab as `up` makes one: namespace, instance (with the fleet tag),
    /// agent configuration, dockerd (after `crossdock init` in fleet mode), agent. On failure what was
    /// made is taken away again.
    pub fn host_add(&mut self, req: &HostAdd) -> Result<HostState> {
        if !req.no_docker {
            self.state.docker_version.check_installed()?;
        }
        let max = self.state.hosts.iter().map(|h| h.index).max().unwrap_or(0);
        let index = self.state.next_index.max(max + 1);
        let (vswitch, ip) = self.place_host(req, index)?;
        self.state.next_index = index + 1;
        match self.add_host_steps(index, ip, !req.no_docker, vswitch) {
            Ok(h) => Ok(h),
            Err(e) => {
                let name = format!("h{index}");
                if self.state.hosts.iter().any(|h| h.name == name) {
                    if let Err(c) = self.host_release(&name) {
                        return Err(e.context(format!("and removing {name} again failed: {c:#}")));
                    }
                }
                Err(e.context(format!("adding host {name} to lab {}", self.state.name)))
            }
        }
    }

    fn add_host_steps(
        &mut self,
        index: usize,
        ip: Ipv4Addr,
        docker: bool,
        vswitch: usize,
    ) -> Result<HostState> {
        let host = self.create_host_netns(index, ip.to_string(), docker, vswitch)?;
        if self.state.fleet_tag.is_some() && !docker {
            let admin = self.state.admin_socket.clone();
            let info: Info = admin_call(&admin, |c| async move { c.info().await })?;
            self.check_fleet_mapping(info.vpc_cidr)?;
        }
        self.register_instance(&host.name)?;
        let host = self.host_named(&host.name)?.clone();
        self.write_agent_config(&host, None)?;
        self.save()?;
        self.start_dockerds(std::slice::from_ref(&host.name))?;
        if self.state.agents && self.runs_agent(&host) {
            self.agent_start(&host.name)?;
        }
        Ok(self.host_named(&host.name)?.clone())
    }

    /// Releases host `name` the way ECS releases an instance: its processes die without a clean
    /// shutdown (agent SIGKILL, dockerd and containers gone), the instance leaves the emulator (absent
    /// from every answer; its route entries stay), its namespace and directory are removed and it
    /// leaves `lab.json`.
    pub fn host_release(&mut self, name: &str) -> Result<()> {
        let host = self.host_named(name)?.clone();
        self.agent_kill(&host.name)?;
        dockerd::cleanup_dir(&host.dir)?;
        if let Ok(ns) = Netns::open(&host.netns) {
            procs::terminate(&ns.pids(), Duration::from_secs(3));
        }
        if !host.instance_id.is_empty() {
            let id = host.instance_id.clone();
            let released = self.admin_sync(move |c| async move {
                let known = c.instances().await?.iter().any(|i| i.instance_id == id);
                if known {
                    c.release_instance(&id).await?;
                }
                Ok(())
            });
            released.with_context(|| {
                format!("releasing instance {} of host {name}", host.instance_id)
            })?;
        }
        Netns::delete_by_name(&host.netns)?;
        let left = procs::unmount_under(&host.dir)?;
        if !left.is_empty() {
            bail!(
                "cannot unmount under {}: {}",
                host.dir.display(),
                left.join(", ")
            );
        }
        if host.dir.exists() {
            std::fs::remove_dir_all(&host.dir)
                .with_context(|| format!("cannot remove {}", host.dir.display()))?;
        }
        self.state.hosts.retain(|h| h.name != host.name);
        self.save()
    }

    /// Stops host `name` as ECS stops an instance: its agent (SIGTERM) and dockerd stop, its network
    /// link goes down, and the instance is `Stopped` (still listed, IP and routes kept).
    pub fn host_stop(&mut self, name: &str) -> Result<()> {
        let host = self.host_named(name)?.clone();
        self.agent_stop(&host.name)?;
        if host.docker_host.is_some() {
            dockerd::cleanup_dir(&host.dir)?;
        }
        Netns::open(&host.netns)?.ip(&["link", "set", "eth0", "down"])?;
        let id = host.instance_id.clone();
        self.admin_sync(move |c| async move { c.stop_instance(&id).await })?;
        Ok(())
    }

    /// Starts a stopped host again as a booting instance: `Running`, its link up, `crossdock init`
    /// (fleet mode; idempotent) and dockerd, then its agent.
    pub fn host_start(&mut self, name: &str) -> Result<()> {
        let host = self.host_named(name)?.clone();
        let id = host.instance_id.clone();
        self.admin_sync(move |c| async move { c.start_instance(&id).await })?;
        let gateway = self.vswitch_of_host(&host)?.gateway;
        let ns = Netns::open(&host.netns)?;
        ns.link_up("eth0")?;
        ns.ip(&["route", "replace", "default", "via", &gateway])?;
        if host.docker_host.is_some() && dockerd::running_pid(&host.dir).is_none() {
            self.start_dockerds(std::slice::from_ref(&host.name))?;
        }
        if self.state.agents && self.runs_agent(&host) {
            self.agent_start(&host.name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &str) -> HostState {
        let dir = PathBuf::from(dir);
        HostState {
            name: "h3".into(),
            index: 3,
            netns: "cdl-x-h3".into(),
            private_ip: "192.168.1.13".into(),
            port: "p-h3".into(),
            instance_id: String::new(),
            eni_id: String::new(),
            subnet: String::new(),
            bip: None,
            docker_host: Some(format!("unix://{}/docker.sock", dir.display())),
            agent_socket: dir.join("agent.sock"),
            agent_config: dir.join("agent.toml"),
            dir,
            vswitch: "vsw1".into(),
        }
    }

    #[test]
    fn fleet_hosts_differ_only_in_their_sockets() {
        let shared = default_fleet_config("x");
        let a = fleet_host_config(&shared, &host("/var/lib/crossdock-lab/x/hosts/h1"));
        let b = fleet_host_config(&shared, &host("/var/lib/crossdock-lab/x/hosts/h2"));
        assert_ne!(a, b);
        let mut b2 = b.clone();
        b2.health_socket = a.health_socket.clone();
        b2.docker.host = a.docker.host.clone();
        assert_eq!(a, b2, "nothing but the two sockets differs");
        let parsed = crossdock_config::parse(&a.to_toml()).expect("a valid configuration");
        assert_eq!(parsed.subnet.mode, SubnetMode::Derived);
        assert_eq!(parsed.fleet.tag.unwrap().to_string(), "crossdock-cluster=x");
        assert_eq!(parsed.cloud.vpc_endpoint, "http://100.100.100.201");
        // the lab's VPC (192.168.0.0/16) maps into 10.0.0.0/8: 192.168.1.11 -> 10.1.11.0/24
        let subnet = shared
            .derived_subnet(
                "192.168.1.11".parse().unwrap(),
                Some("192.168.0.0/16".parse().unwrap()),
            )
            .unwrap();
        assert_eq!(subnet.to_string(), "10.1.11.0/24");
    }

    #[test]
    fn a_given_configuration_gets_only_the_lab_endpoints() {
        let text = "cluster_cidrs = [\"10.0.0.0/8\"]\nlog_level = \"debug\"\n[subnet]\nmode = \"derived\"\n[fleet]\ntag = \"crossdock-cluster=prod\"\nrelease_grace_secs = 7\n[cloud]\nprovider = \"alibaba\"\n";
        let c = fleet_config_from_text(text).unwrap();
        let mut expected = crossdock_config::parse(text).unwrap();
        apply_lab_endpoints(&mut expected);
        assert_eq!(c, expected);
        assert_eq!(
            (c.fleet.release_grace_secs, c.log_level.as_str()),
            (7, "debug")
        );
        let per_host = "cluster_cidrs = [\"10.0.0.0/8\"]\n";
        let e = fleet_config_from_text(per_host).unwrap_err().to_string();
        assert!(e.contains("subnet.mode = \"derived\""), "{e}");
        assert!(fleet_config_from_text("cluster_cidrs = 3").is_err());
    }

    #[test]
    fn bridge_addresses_name_their_subnet_and_host_ips_stay_in_range() {
        assert_eq!(subnet_of_bip("10.1.11.1/24").unwrap(), "10.1.11.0/24");
        assert!(subnet_of_bip("nonsense").is_err());
        assert!(usable_host_ip(
            VSWITCH_CIDR,
            "192.168.1.11".parse().unwrap()
        ));
        assert!(usable_host_ip(
            VSWITCH_CIDR,
            "192.168.1.250".parse().unwrap()
        ));
        for bad in ["192.168.1.10", "192.168.1.253", "192.168.2.11"] {
            assert!(!usable_host_ip(VSWITCH_CIDR, bad.parse().unwrap()), "{bad}");
        }
    }
}
