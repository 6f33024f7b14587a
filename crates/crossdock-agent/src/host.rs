//! One host reconcile pass: learn the served network from Docker (or the static subnet), check it
//! against the cluster range, then assert forwarding and the firewall rules (the cluster's, and the
//! scrape port's when `[metrics] listen` is exposed), updating the `docker`, `subnet`, `forwarding`
//! and `firewall` conditions and the counters as it goes.
//!
//! Every side effect goes through a trait ([`DockerSource`], [`Firewall`], [`Sysctl`], [`Links`]), so
//! the pass is unit-tested here with in-memory parts; the root integration tests run it against a real
//! dockerd, iptables and kernel.
//!
//! Nothing is applied from a bad input: when the served network is missing or its subnet lies outside
//! the cluster range, the pass stops after reporting it and returns the problem as a [`ConfigError`]
//! (at start-up the daemon exits with status 2; later it keeps the last good kernel state). Until the
//! subnet is known and accepted (Docker not answering yet) no sysctl or rule is written either.

use crate::state::{AgentState, Concern, Reason, State, Update};
use crossdock_config::{check_subnet, Config, ConfigError};
use crossdock_docker::{DockerError, DockerSource};
use crossdock_hostnet::{
    desired_rules, desired_sysctls, ensure_sysctls, DesiredInput, Firewall, Links, ScrapeGuard,
    Sysctl,
};
use ipnet::Ipv4Net;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The kernel and Docker, as the pass sees them.
#[derive(Clone)]
pub struct HostDeps {
    /// `None` in static-subnet mode.
    pub docker: Option<Arc<dyn DockerSource>>,
    pub firewall: Arc<dyn Firewall>,
    pub sysctl: Arc<dyn Sysctl>,
    pub links: Arc<dyn Links>,
}

impl std::fmt::Debug for HostDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostDeps")
            .field("docker", &self.docker.is_some())
            .finish_non_exhaustive()
    }
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Writes made (rules, chains, sysctls).
    pub changes: u64,
    /// False if any step failed.
    pub ok: bool,
    /// A configuration problem found in what Docker reported (missing network, subnet outside the
    /// cluster range). Nothing was applied.
    pub config_error: Option<ConfigError>,
    /// The validated subnet this host serves, if known.
    pub subnet: Option<Ipv4Net>,
    /// Whether Docker answered (always true in static mode).
    pub docker_answered: bool,
}

fn docker_config_error(e: &DockerError, cfg: &Config) -> Option<ConfigError> {
    let net = &cfg.docker.network;
    match e {
        DockerError::NetworkNotFound { .. } => Some(ConfigError::new(
            "docker.network",
            format!("Docker has no network named `{net}`"),
            "create it, or name an existing bridge network (`docker network ls`); \"bridge\" is docker0",
        )),
        DockerError::NotBridge { driver, .. } => Some(ConfigError::new(
            "docker.network",
            format!("Docker network `{net}` uses the `{driver}` driver"),
            "name a bridge network; crossdock routes bridge subnets",
        )),
        DockerError::NoIpv4Subnet { .. } => Some(ConfigError::new(
            "docker.network",
            format!("Docker network `{net}` has no IPv4 subnet"),
            "give it one (\"bip\" in daemon.json for docker0, --subnet for a user-defined network)",
        )),
        _ => None,
    }
}

/// Runs one pass. `state` is locked only briefly, never across an await.
pub async fn run_pass(
    cfg: &Config,
    deps: &HostDeps,
    state: &Mutex<AgentState>,
    trigger: &str,
) -> PassOutcome {
    let started = Instant::now();
    let mut out = PassOutcome {
        ok: true,
        ..Default::default()
    };
    let mut errors: Vec<&'static str> = Vec::new();

    // 1. The served network.
    let docker = deps
        .docker
        .as_ref()
        .filter(|_| cfg.docker.static_subnet.is_none());
    let network: Option<(Ipv4Net, Option<String>)> = match docker {
        None => {
            let subnet = cfg.docker.static_subnet;
            out.docker_answered = true;
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.set(
                Concern::Docker,
                Update::disabled(
                    Reason::StaticSubnet,
                    "[docker] static_subnet is set: Docker is not consulted",
                ),
            );
            match subnet {
                Some(s) => {
                    st.set(
                        Concern::Subnet,
                        Update::ready(Reason::Static, format!("{s} from [docker] static_subnet")),
                    );
                    st.subnet = Some(s);
                    st.bridge = None;
                    Some((s, None))
                }
                None => None,
            }
        }
        Some(docker) => match docker.inspect_network(&cfg.docker.network).await {
            Ok(net) => {
                out.docker_answered = true;
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.set(
                    Concern::Docker,
                    Update::ready(
                        Reason::Connected,
                        format!(
                            "Docker {} answering on {}",
                            net.docker_version, cfg.docker.host
                        ),
                    ),
                );
                st.docker_version = Some(net.docker_version.clone());
                match check_subnet(net.subnet, cfg) {
                    Err(e) => {
                        st.set(
                            Concern::Subnet,
                            Update::failed(Reason::OutsideClusterRange, e.to_string()),
                        );
                        out.config_error = Some(e);
                        errors.push("subnet_outside_cluster");
                        None
                    }
                    Ok(()) => {
                        if let Some(old) = st.subnet.filter(|old| *old != net.subnet) {
                            tracing::info!(old = %old, new = %net.subnet, "the served subnet changed");
                        }
                        st.set(
                            Concern::Subnet,
                            Update::ready(
                                Reason::Learned,
                                format!(
                                    "{} on {} (Docker network `{}`)",
                                    net.subnet, net.bridge, net.name
                                ),
                            ),
                        );
                        st.subnet = Some(net.subnet);
                        st.bridge = Some(net.bridge.clone());
                        st.gateway = net.gateway;
                        Some((net.subnet, Some(net.bridge)))
                    }
                }
            }
            Err(e) => {
                errors.push(e.kind());
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(ce) = docker_config_error(&e, cfg) {
                    out.docker_answered = true;
                    st.set(
                        Concern::Docker,
                        Update::ready(
                            Reason::Connected,
                            format!("Docker answering on {}", cfg.docker.host),
                        ),
                    );
                    st.set(
                        Concern::Subnet,
                        Update::failed(Reason::NetworkUnusable, ce.to_string()),
                    );
                    out.config_error = Some(ce);
                    None
                } else {
                    // Docker is down or restarting: keep asserting the last known state.
                    let never = st.docker_version.is_none();
                    let u = if never {
                        Update {
                            error: Some(e.to_string()),
                            ..Update::pending(Reason::WaitingForDocker, e.to_string())
                        }
                    } else {
                        Update::failed(Reason::Unavailable, e.to_string())
                    };
                    st.set(Concern::Docker, u);
                    st.subnet.map(|s| (s, st.bridge.clone()))
                }
            }
        },
    };

    if out.config_error.is_some() {
        return finish(state, trigger, started, out, &errors);
    }
    out.subnet = network.as_ref().map(|(s, _)| *s);

    // 2. Forwarding, only for a known and accepted subnet: before Docker has answered once there is
    // nothing validated to forward for, and bad input applies nothing.
    let Some((subnet, bridge)) = network else {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        for name in [Concern::Forwarding, Concern::Firewall] {
            // A failure already reported stays until a pass can act on it.
            if st.conditions.get(name).map(|c| c.state) != Some(State::Failed) {
                st.set(
                    name,
                    Update::pending(
                        Reason::WaitingForSubnet,
                        "the served subnet is not known yet",
                    ),
                );
            }
        }
        drop(st);
        return finish(state, trigger, started, out, &errors);
    };
    let ext = match cfg.external_interface() {
        Some(name) => Ok(name.to_string()),
        None => match deps.links.default_route_interface().await {
            Ok(Some(name)) => Ok(name),
            Ok(None) => Err(Update::failed(
                Reason::NoDefaultRoute,
                "external_interface = \"auto\" but there is no IPv4 default route (fix: set external_interface, or add the default route)",
            )),
            Err(e) => Err(Update::failed(Reason::NetlinkFailed, e.to_string())),
        },
    };
    let ext = match ext {
        Ok(name) => match deps.links.link(&name).await {
            Ok(Some(_)) => Ok(name),
            Ok(None) => Err(Update::failed(
                Reason::InterfaceNotFound,
                format!("external interface {name} does not exist (fix: set external_interface to the interface facing the VPC, or \"auto\")"),
            )),
            Err(e) => Err(Update::failed(Reason::NetlinkFailed, e.to_string())),
        },
        Err(u) => Err(u),
    };
    match ext {
        Ok(ext) => {
            let wanted = desired_sysctls(&ext);
            let result = ensure_sysctls(&wanted, deps.sysctl.as_ref());
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            st.external_interface = Some(ext.clone());
            match result {
                Ok(changed) => {
                    out.changes += changed.len() as u64;
                    st.metrics.sysctl_changes += changed.len() as u64;
                    for c in &changed {
                        tracing::info!(sysctl = %c, "set");
                    }
                    st.set(
                        Concern::Forwarding,
                        Update::ready(
                            Reason::Enabled,
                            format!("net.ipv4.ip_forward=1 and forwarding on {ext}"),
                        ),
                    );
                }
                Err(e) => {
                    errors.push("sysctl");
                    st.set(
                        Concern::Forwarding,
                        Update::failed(Reason::SysctlFailed, e.to_string()),
                    );
                }
            }
        }
        Err(u) => {
            errors.push("forwarding");
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set(Concern::Forwarding, u);
        }
    }

    // 3. Firewall.
    firewall_step(cfg, deps, state, subnet, bridge, &mut out, &mut errors).await;
    finish(state, trigger, started, out, &errors)
}

/// The firewall: the cluster rules for the bridge, plus the scrape port's rules when `[metrics] listen`
/// is exposed, and with `[names]` the resolver's and the catalog's (members from the route side's
/// last fleet sweep). A static-subnet host (no bridge) keeps only the scrape port's; once it has
/// written them it keeps applying, so switching the listener off removes them.
async fn firewall_step(
    cfg: &Config,
    deps: &HostDeps,
    state: &Mutex<AgentState>,
    subnet: Ipv4Net,
    bridge: Option<String>,
    out: &mut PassOutcome,
    errors: &mut Vec<&'static str>,
) {
    let scrape = cfg.metrics.exposed().map(|listen| ScrapeGuard {
        listen,
        scrapers: cfg.metrics.scrapers.clone(),
    });
    let (kept, names) = {
        let st = state.lock().unwrap_or_else(|p| p.into_inner());
        let names = bridge
            .as_ref()
            .and_then(|_| crate::names::firewall_guard(cfg, subnet, &st));
        (st.scrape_rules_kept, names)
    };
    if bridge.is_none() && scrape.is_none() && !kept {
        state.lock().unwrap_or_else(|p| p.into_inner()).set(
            Concern::Firewall,
            Update::disabled(
                Reason::StaticSubnet,
                "no bridge in static_subnet mode: host firewall rules are not managed",
            ),
        );
        return;
    }
    let what = match &bridge {
        Some(b) => format!("for {subnet} on {b}"),
        None => "for the scrape port (static_subnet mode)".to_string(),
    };
    let desired = DesiredInput {
        cluster_cidrs: cfg.cluster_cidrs.clone(),
        local_subnet: subnet,
        bridge,
        scrape,
        names,
    };
    let result = deps.firewall.apply(&desired).await;
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    match result {
        Ok(ch) => {
            for line in &ch.log {
                tracing::info!(change = %line, "iptables");
            }
            st.metrics.rules_added += ch.rules_added as u64;
            st.metrics.rules_removed += ch.rules_removed as u64;
            st.metrics.chains_created += ch.chains_created as u64;
            st.metrics.chains_removed += ch.chains_removed as u64;
            out.changes += ch.total() as u64;
            st.scrape_rules_kept = desired.scrape.is_some();
            st.set(
                Concern::Firewall,
                Update::ready(
                    Reason::InPlace,
                    format!(
                        "{} rules in place {what}; the last pass made {} changes",
                        desired_rules(&desired).len(),
                        ch.total()
                    ),
                ),
            );
        }
        Err(e) => {
            errors.push(e.kind());
            st.set(
                Concern::Firewall,
                Update::failed(Reason::IptablesFailed, e.to_string()),
            );
        }
    }
}

fn finish(
    state: &Mutex<AgentState>,
    trigger: &str,
    started: Instant,
    mut out: PassOutcome,
    errors: &[&str],
) -> PassOutcome {
    out.ok = errors.is_empty();
    let took = started.elapsed();
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    for e in errors {
        st.metrics.record_error(e);
    }
    st.metrics.record_pass(trigger, out.ok, took, out.changes);
    tracing::debug!(
        trigger,
        ok = out.ok,
        changes = out.changes,
        ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        "host reconcile pass"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{FakeLinks, FakeSysctl};
    use async_trait::async_trait;
    use crossdock_docker::{DockerEvent, ServedNetwork};
    use crossdock_hostnet::{MemoryFirewall, Table, DOCKER_USER};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    /// Docker as data: the answer to inspect_network, changeable by the test.
    struct FakeDocker(Mutex<Result<ServedNetwork, DockerError>>);

    #[async_trait]
    impl DockerSource for FakeDocker {
        async fn inspect_network(&self, _name: &str) -> Result<ServedNetwork, DockerError> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }
        fn watch(&self, _tx: mpsc::Sender<DockerEvent>) -> JoinHandle<()> {
            tokio::spawn(async {})
        }
    }

    fn net(subnet: &str) -> ServedNetwork {
        crate::fakes::served(subnet)
    }

    struct Rig {
        cfg: Config,
        docker: Arc<FakeDocker>,
        fw: Arc<MemoryFirewall>,
        sysctl: Arc<FakeSysctl>,
        deps: HostDeps,
        state: Mutex<AgentState>,
    }

    fn rig(
        cfg_text: &str,
        answer: Result<ServedNetwork, DockerError>,
        default_if: Option<&str>,
    ) -> Rig {
        let cfg = crossdock_config::parse(cfg_text).unwrap();
        let docker = Arc::new(FakeDocker(Mutex::new(answer)));
        let fw = Arc::new(MemoryFirewall::new());
        fw.seed(Table::Filter, DOCKER_USER, &["-j RETURN"]);
        let sysctl = Arc::new(FakeSysctl::default());
        for (p, v) in [
            ("net/ipv4/ip_forward", "0"),
            ("net/ipv4/conf/eth0/forwarding", "0"),
        ] {
            sysctl
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(p.into(), v.into());
        }
        let deps = HostDeps {
            docker: cfg
                .docker
                .static_subnet
                .is_none()
                .then(|| docker.clone() as Arc<dyn DockerSource>),
            firewall: fw.clone(),
            sysctl: sysctl.clone(),
            links: Arc::new(FakeLinks(default_if.map(String::from))),
        };
        Rig {
            cfg,
            docker,
            fw,
            sysctl,
            deps,
            state: Mutex::new(AgentState::new("/etc/crossdock/agent.toml".into())),
        }
    }

    const CFG: &str = "cluster_cidrs = [\"10.0.0.0/8\"]";

    fn cond(r: &Rig, name: Concern) -> (State, Reason) {
        let st = r.state.lock().unwrap_or_else(|p| p.into_inner());
        let c = st.conditions.get(name).unwrap();
        (c.state, c.reason)
    }

    #[tokio::test]
    async fn first_pass_applies_everything_second_changes_nothing() {
        let r = rig(CFG, Ok(net("10.1.0.0/24")), Some("eth0"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert!(o.ok, "{o:?}");
        assert_eq!(
            o.changes,
            2 + 3 + 6,
            "2 sysctls, 3 chains, 3 rules and 3 jumps"
        );
        assert_eq!(o.subnet, Some("10.1.0.0/24".parse().unwrap()));
        for n in [
            Concern::Docker,
            Concern::Subnet,
            Concern::Forwarding,
            Concern::Firewall,
        ] {
            assert_eq!(cond(&r, n).0, State::Ready, "{n}");
        }
        assert_eq!(r.sysctl.read("net/ipv4/conf/eth0/forwarding").unwrap(), "1");
        let o = run_pass(&r.cfg, &r.deps, &r.state, "resync").await;
        assert_eq!((o.ok, o.changes), (true, 0));
        let st = r.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(st.metrics.last_changes, 0);
        assert_eq!(st.metrics.reconcile_total(), 2);
        assert_eq!(st.external_interface.as_deref(), Some("eth0"));
    }

    #[tokio::test]
    async fn subnet_outside_the_cluster_range_applies_nothing() {
        let r = rig(CFG, Ok(net("172.17.0.0/16")), Some("eth0"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        let e = o.config_error.expect("a config error");
        assert_eq!(e.field, "cluster_cidrs");
        assert_eq!(r.fw.writes(), 0);
        assert_eq!(r.sysctl.read("net/ipv4/ip_forward").unwrap(), "0");
        assert_eq!(
            cond(&r, Concern::Subnet),
            (State::Failed, Reason::OutsideClusterRange)
        );
    }

    #[tokio::test]
    async fn a_missing_network_is_a_config_error_naming_docker_network() {
        let r = rig(
            CFG,
            Err(DockerError::NetworkNotFound {
                name: "bridge".into(),
            }),
            Some("eth0"),
        );
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert_eq!(o.config_error.unwrap().field, "docker.network");
        assert_eq!(r.fw.writes(), 0);
        assert_eq!(cond(&r, Concern::Docker).0, State::Ready);
    }

    #[tokio::test]
    async fn docker_down_keeps_asserting_the_last_known_state() {
        let r = rig(CFG, Ok(net("10.1.0.0/24")), Some("eth0"));
        run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        *r.docker.0.lock().unwrap_or_else(|p| p.into_inner()) = Err(DockerError::Unavailable {
            socket: "/var/run/docker.sock".into(),
            message: "connection refused".into(),
        });
        r.fw.external_flush(Table::Filter, "CROSSDOCK-FORWARD");
        r.sysctl.write("net/ipv4/ip_forward", "0").unwrap();
        let o = run_pass(&r.cfg, &r.deps, &r.state, "resync").await;
        assert!(!o.ok);
        assert_eq!(
            o.changes, 2,
            "the flushed rule and ip_forward are restored for the last known subnet"
        );
        assert_eq!(r.sysctl.read("net/ipv4/ip_forward").unwrap(), "1");
        assert_eq!(
            cond(&r, Concern::Docker),
            (State::Failed, Reason::Unavailable)
        );
        assert_eq!(cond(&r, Concern::Firewall).0, State::Ready);
        let st = r.state.lock().unwrap_or_else(|p| p.into_inner());
        assert_eq!(st.metrics.errors["docker_unavailable"], 1);
    }

    #[tokio::test]
    async fn docker_not_up_yet_is_pending_and_nothing_is_guessed() {
        let r = rig(
            CFG,
            Err(DockerError::Unavailable {
                socket: "/var/run/docker.sock".into(),
                message: "No such file".into(),
            }),
            Some("eth0"),
        );
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert!(o.config_error.is_none());
        assert_eq!(
            cond(&r, Concern::Docker),
            (State::Pending, Reason::WaitingForDocker)
        );
        assert_eq!(
            cond(&r, Concern::Firewall),
            (State::Pending, Reason::WaitingForSubnet)
        );
        assert_eq!(
            cond(&r, Concern::Forwarding),
            (State::Pending, Reason::WaitingForSubnet)
        );
        assert_eq!(r.fw.writes(), 0);
        assert_eq!(o.changes, 0);
        assert_eq!(r.sysctl.read("net/ipv4/ip_forward").unwrap(), "0");
        assert_eq!(r.sysctl.read("net/ipv4/conf/eth0/forwarding").unwrap(), "0");

        // Docker answers with a subnet inside the range: now forwarding and the rules are applied.
        *r.docker.0.lock().unwrap_or_else(|p| p.into_inner()) = Ok(net("10.1.0.0/24"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "docker_reconnect").await;
        assert!(o.ok, "{o:?}");
        assert_eq!(r.sysctl.read("net/ipv4/ip_forward").unwrap(), "1");
        assert_eq!(r.sysctl.read("net/ipv4/conf/eth0/forwarding").unwrap(), "1");
        assert_eq!(
            cond(&r, Concern::Forwarding),
            (State::Ready, Reason::Enabled)
        );
        assert_eq!(cond(&r, Concern::Firewall).0, State::Ready);
    }

    #[tokio::test]
    async fn a_new_subnet_replaces_the_old_rules() {
        let r = rig(CFG, Ok(net("10.1.0.0/24")), Some("eth0"));
        run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        *r.docker.0.lock().unwrap_or_else(|p| p.into_inner()) = Ok(net("10.2.0.0/24"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "docker_reconnect").await;
        assert_eq!(o.changes, 6);
        let text = format!("{:?}", r.fw.dump(Table::Filter));
        assert!(
            text.contains("10.2.0.0/24") && !text.contains("10.1.0.0/24"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_default_route_fails_forwarding_but_the_firewall_still_runs() {
        let r = rig(CFG, Ok(net("10.1.0.0/24")), None);
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert!(!o.ok);
        assert_eq!(
            cond(&r, Concern::Forwarding),
            (State::Failed, Reason::NoDefaultRoute)
        );
        assert_eq!(cond(&r, Concern::Firewall).0, State::Ready);
        let r = rig(
            &format!("{CFG}\nexternal_interface = \"eth7\""),
            Ok(net("10.1.0.0/24")),
            Some("eth0"),
        );
        run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert_eq!(
            cond(&r, Concern::Forwarding),
            (State::Failed, Reason::InterfaceNotFound)
        );
    }

    /// The rules of `chain` in the filter table, one string each.
    fn filter_chain(r: &Rig, chain: &str) -> Vec<String> {
        r.fw.dump(Table::Filter)
            .chain(chain)
            .map(|c| c.rules.iter().map(|x| x.args.join(" ")).collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn an_exposed_scrape_port_gets_its_rules_and_loses_them_when_switched_off() {
        let exposed = format!(
            "{CFG}\n[metrics]\nlisten = \"192.168.1.11:9464\"\nscrapers = [\"192.168.1.12/32\"]"
        );
        let r = rig(&exposed, Ok(net("10.1.0.0/24")), Some("eth0"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert_eq!(
            o.changes,
            2 + 4 + 9,
            "2 sysctls, 4 chains, 9 rules and jumps"
        );
        let input = filter_chain(&r, "INPUT");
        assert!(input[0].ends_with("-j CROSSDOCK-INPUT"), "{input:?}");
        assert!(
            input[1].contains("--dport 9464") && input[1].contains("REJECT"),
            "{input:?}"
        );
        assert!(filter_chain(&r, "CROSSDOCK-INPUT")[0].starts_with("-s 192.168.1.12/32"));
        assert_eq!(
            run_pass(&r.cfg, &r.deps, &r.state, "resync").await.changes,
            0
        );
        // Loopback needs no rules: a reload to 127.0.0.1 removes them.
        let local =
            crossdock_config::parse(&format!("{CFG}\n[metrics]\nlisten = \"127.0.0.1:9464\""))
                .unwrap();
        let o = run_pass(&local, &r.deps, &r.state, "reload").await;
        assert_eq!(
            o.changes,
            1 + 3,
            "the chain, its rule, the jump and the REJECT"
        );
        assert!(filter_chain(&r, "INPUT").is_empty());
        assert!(r.fw.dump(Table::Filter).chain("CROSSDOCK-INPUT").is_none());
    }

    #[tokio::test]
    async fn a_static_host_keeps_only_the_scrape_port_rules() {
        let text = format!(
            "{CFG}\n[docker]\nstatic_subnet = \"10.9.0.0/24\"\n[metrics]\nlisten = \"192.168.1.11:9464\"\nscrapers = [\"192.168.1.12/32\"]"
        );
        let r = rig(&text, Ok(net("10.1.0.0/24")), Some("eth0"));
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert!(o.ok, "{o:?}");
        assert_eq!(
            o.changes,
            2 + 1 + 3,
            "2 sysctls, CROSSDOCK-INPUT, its rule, 2 in INPUT"
        );
        assert_eq!(cond(&r, Concern::Firewall), (State::Ready, Reason::InPlace));
        assert!(r
            .fw
            .dump(Table::Filter)
            .chain("CROSSDOCK-FORWARD")
            .is_none());
        // Switched off: removed once, then the firewall is not managed any more.
        let off =
            crossdock_config::parse(&format!("{CFG}\n[docker]\nstatic_subnet = \"10.9.0.0/24\""))
                .unwrap();
        assert_eq!(run_pass(&off, &r.deps, &r.state, "reload").await.changes, 4);
        assert!(filter_chain(&r, "INPUT").is_empty());
        let writes = r.fw.writes();
        run_pass(&off, &r.deps, &r.state, "resync").await;
        assert_eq!(cond(&r, Concern::Firewall).0, State::Disabled);
        assert_eq!(r.fw.writes(), writes);
    }

    #[tokio::test]
    async fn static_subnet_mode_skips_docker_and_firewall() {
        let r = rig(
            &format!("{CFG}\n[docker]\nstatic_subnet = \"10.9.0.0/24\""),
            Err(DockerError::Unavailable {
                socket: "x".into(),
                message: "must not be asked".into(),
            }),
            Some("eth0"),
        );
        let o = run_pass(&r.cfg, &r.deps, &r.state, "start").await;
        assert!(o.ok, "{o:?}");
        assert_eq!(o.subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert_eq!(o.changes, 2);
        assert_eq!(r.fw.writes(), 0);
        assert_eq!(cond(&r, Concern::Docker).0, State::Disabled);
        assert_eq!(cond(&r, Concern::Firewall).0, State::Disabled);
        assert_eq!(cond(&r, Concern::Forwarding).0, State::Ready);
    }
}
