//! The daemon: binds the health socket, tells its supervisor it is ready, then reconciles the host on
//! every Docker event, on a resync timer and on a reload (after reading the configuration again),
//! while the route side runs in a task of its own. A stop signal ends it cleanly and leaves the
//! kernel state (rules, sysctls) and the VPC routes in place, so restarting the agent never cuts
//! traffic. The supervisor's status line follows the health summary, so `systemctl status` says what
//! is wrong without a trip to the health socket.
//!
//! Bad input applies nothing: the configuration is validated before the daemon starts, and the first
//! time Docker answers, a missing network or a subnet outside the cluster range makes the agent exit
//! with status 2 before any rule or sysctl is written. Later (someone deletes the network, changes bip
//! to a subnet outside the range) the same problem is a failed condition and the last good state stays.
//!
//! Everything outside the process comes in through [`DaemonDeps`] (Docker, the kernel, the route
//! side, the supervisor, the signals, the host's addresses), built for real by [`DaemonDeps::real`]
//! and by fakes in the loop's unit tests, which run without root.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use ipnet::Ipv4Net;
use tokio::sync::{mpsc, watch, Notify};

use crossdock_config::{Config, ConfigError};
use crossdock_docker::{BollardDocker, DockerEvent, DockerSource};
use crossdock_hostnet::{Iptables, ProcSysctl, RtNetlink};

use crate::health;
use crate::host::{run_pass, HostDeps};
use crate::logging::LogHandle;
use crate::names::{self, NamesDeps, NamesSettings};
use crate::notify::{Note, Notifier, StatusLine, Systemd};
use crate::reload;
use crate::routes::{RouteSync, RouteSyncReport};
use crate::scrape::{self, HostAddresses, ScrapeEndpoint};
use crate::state::{AgentState, Concern, Reason, Update};

/// How the daemon ended.
#[derive(Debug)]
pub enum Exit {
    /// Stopped by a signal.
    Clean,
    /// Bad input found at start-up (exit status 2).
    Config(ConfigError),
    /// Could not run at all (exit status 1).
    Runtime(String),
}

/// What the signals ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: read the configuration again.
    Reload,
    /// SIGTERM / SIGINT: stop.
    Stop,
}

/// A stream of signals.
pub type Signals = Pin<Box<dyn Stream<Item = Signal> + Send>>;

/// Builds the host side's backends for a configuration (again after each reload).
pub type HostFactory =
    Arc<dyn Fn(&Config, Option<Arc<dyn DockerSource>>) -> HostDeps + Send + Sync>;

/// Everything the daemon touches outside its own memory.
pub struct DaemonDeps {
    /// Docker (`None` in static-subnet mode).
    pub docker: Option<Arc<dyn DockerSource>>,
    /// The firewall, sysctls and links for a configuration.
    pub host: HostFactory,
    /// The VPC side.
    pub routes: Arc<dyn RouteSync>,
    /// systemd.
    pub notifier: Arc<dyn Notifier>,
    /// SIGHUP / SIGTERM / SIGINT.
    pub signals: Signals,
    /// The host's own addresses (the scrape endpoint must listen on one of them).
    pub addresses: Arc<dyn HostAddresses>,
    /// `[names]`: containers, identity (`None`: names off, or no Docker).
    pub names: Option<NamesDeps>,
}

impl std::fmt::Debug for DaemonDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonDeps")
            .field("docker", &self.docker.is_some())
            .finish_non_exhaustive()
    }
}

impl DaemonDeps {
    /// The real backends: bollard, iptables, /proc/sys, netlink, systemd, process signals.
    pub fn real(cfg: &Config, routes: Arc<dyn RouteSync>) -> Result<Self, String> {
        use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
        let signals = signal_hook_tokio::Signals::new([SIGHUP, SIGTERM, SIGINT])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?
            .map(|s| {
                if s == SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                }
            });
        let bollard = (cfg.docker.static_subnet.is_none())
            .then(|| Arc::new(BollardDocker::new(cfg.docker_socket())));
        let docker = bollard.clone().map(|b| b as Arc<dyn DockerSource>);
        let names = bollard.filter(|_| cfg.names.enabled).map(|b| NamesDeps {
            docker: b.clone(),
            containers: b,
            identity: Arc::new(names::HostIdentity::new(cfg.cloud.clone())),
        });
        Ok(Self {
            docker,
            host: Arc::new(|cfg: &Config, docker| HostDeps {
                docker,
                firewall: Arc::new(Iptables::new(cfg.firewall.lock_wait_secs)),
                sysctl: Arc::new(ProcSysctl::default()),
                links: Arc::new(RtNetlink),
            }),
            routes,
            notifier: Arc::new(Systemd),
            signals: Box::pin(signals),
            addresses: Arc::new(RtNetlink),
            names,
        })
    }
}

/// Applies a route report to the state.
fn apply_route_report(state: &Mutex<AgentState>, r: &RouteSyncReport) {
    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
    st.set(Concern::Route, Update::from(&r.route));
    st.set(Concern::Credentials, Update::from(&r.credentials));
    if r.instance_id.is_some() {
        st.instance_id = r.instance_id.clone();
    }
    st.routes = r.routes.clone();
    st.fleet = r.fleet.clone();
}

/// The route loop: a pass at start, whenever the served subnet changes, and every `interval` (or
/// sooner/later when the route side asks). The fleet's members go to `members` (the names task),
/// and a change of them is told to the host loop through `names_changed` (the firewall).
async fn route_loop(
    routes: Arc<dyn RouteSync>,
    mut subnet: watch::Receiver<Option<Ipv4Net>>,
    state: Arc<Mutex<AgentState>>,
    status: Arc<StatusLine>,
    interval: Duration,
    members: watch::Sender<Vec<std::net::Ipv4Addr>>,
    names_changed: Arc<Notify>,
) {
    loop {
        let current = *subnet.borrow_and_update();
        let report = routes.sync(current).await;
        apply_route_report(&state, &report);
        // A pass without a fleet view (cloud not reachable) keeps the last known members: names
        // must not be withdrawn, nor the catalog port closed, because an API call failed. In
        // per-host mode the members are the hosts behind crossdock's routes.
        let members_now = match (&report.fleet, &report.peers) {
            (Some(fleet), _) => Some(names::member_ips(Some(fleet))),
            (None, Some(peers)) => Some(peers.clone()),
            (None, None) => None,
        };
        if let Some(ips) = members_now {
            state.lock().unwrap_or_else(|p| p.into_inner()).members = ips.clone();
            let changed = members.send_if_modified(|m| {
                let changed = *m != ips;
                *m = ips;
                changed
            });
            if changed {
                names_changed.notify_one();
            }
        }
        status.publish(&state);
        let wait = report.retry_after.unwrap_or(interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = subnet.changed() => if changed.is_err() { return },
        }
    }
}

fn resync_timer(secs: u64) -> tokio::time::Interval {
    let period = Duration::from_secs(secs);
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Why the loop runs the next host pass (`None`: stop).
type Trigger = Option<&'static str>;

/// The running daemon's state between passes.
struct Running {
    config_path: PathBuf,
    cfg: Config,
    log: LogHandle,
    deps: DaemonDeps,
    host: HostDeps,
    state: Arc<Mutex<AgentState>>,
    status: Arc<StatusLine>,
    endpoint: ScrapeEndpoint,
    resync: tokio::time::Interval,
    watchdog: Option<tokio::time::Interval>,
    events: mpsc::Receiver<DockerEvent>,
    /// `[names]` on: told when the fleet's members or the resolver's clients change, which the
    /// firewall follows.
    names_changed: Option<Arc<Notify>>,
}

impl Running {
    /// Takes in a batch of Docker events (everything queued at once is one reason to reconcile).
    fn on_events(&mut self, first: DockerEvent) -> Trigger {
        let mut events = vec![first];
        while let Ok(more) = self.events.try_recv() {
            events.push(more);
        }
        let mut st_events = 0u64;
        let mut trigger = None;
        for ev in &events {
            st_events += 1;
            tracing::debug!(event = ?ev, "Docker event");
            match ev {
                DockerEvent::Disconnected { reason } => {
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).set(
                        Concern::Docker,
                        Update::pending(
                            Reason::Reconnecting,
                            format!("the Docker event stream ended ({reason}); reconnecting"),
                        ),
                    );
                    self.status.publish(&self.state);
                }
                DockerEvent::Connected | DockerEvent::Reconnected => {
                    trigger = Some("docker_reconnect")
                }
                _ => {
                    trigger.get_or_insert("docker_event");
                }
            }
        }
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .metrics
            .docker_events += st_events;
        trigger
    }

    /// SIGHUP: the new configuration, or the running one kept (`None`: nothing to reconcile).
    async fn on_reload(&mut self) -> Trigger {
        let read = reload::read(
            &self.config_path,
            &self.cfg,
            &self.state,
            &mut self.endpoint,
            &*self.deps.addresses,
        )
        .await;
        match read {
            Ok(new) => {
                for what in reload::restart_only_changes(&self.cfg, &new) {
                    tracing::warn!(
                        setting = what,
                        "changed in the file; takes effect when the agent restarts"
                    );
                }
                let applied = reload::applied(&self.cfg, &new);
                self.log.set_level(&applied.log_level);
                if applied.resync_interval_secs != self.cfg.resync_interval_secs {
                    self.resync = resync_timer(applied.resync_interval_secs);
                }
                self.cfg = applied;
                self.host = (self.deps.host)(&self.cfg, self.deps.docker.clone());
                self.metrics(|m| m.config_reloads += 1);
                tracing::info!(config = %self.config_path.display(), "configuration reloaded");
                Some("reload")
            }
            Err(e) => {
                self.metrics(|m| m.config_reload_errors += 1);
                tracing::error!(
                    "configuration reload rejected, keeping the running configuration: {}: {e}",
                    self.config_path.display()
                );
                None
            }
        }
    }

    fn metrics(&self, f: impl FnOnce(&mut crate::metrics::Metrics)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).metrics);
    }

    /// Waits for the next reason to reconcile (`None`: a stop signal).
    async fn next(&mut self) -> Trigger {
        loop {
            tokio::select! {
                ev = self.events.recv() => {
                    if let Some(t) = ev.and_then(|ev| self.on_events(ev)) {
                        return Some(t);
                    }
                }
                _ = self.resync.tick() => return Some("resync"),
                _ = async {
                    match self.names_changed.as_ref() {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                }, if self.names_changed.is_some() => {
                    return Some("names");
                }
                _ = async {
                    match self.watchdog.as_mut() {
                        Some(w) => {
                            w.tick().await;
                        }
                        None => std::future::pending().await,
                    }
                }, if self.watchdog.is_some() => {
                    self.deps.notifier.note(Note::Watchdog);
                }
                sig = self.deps.signals.next() => match sig {
                    Some(Signal::Reload) => {
                        if let Some(t) = self.on_reload().await {
                            return Some(t);
                        }
                    }
                    Some(Signal::Stop) | None => return None,
                },
            }
        }
    }
}

/// Runs the agent until a stop signal.
pub async fn run(config_path: PathBuf, cfg: Config, log: LogHandle, deps: DaemonDeps) -> Exit {
    let state = Arc::new(Mutex::new(AgentState::new(config_path.clone())));
    let names_settings = match NamesSettings::from_config(&cfg) {
        Ok(s) => s,
        Err(e) => return Exit::Config(e),
    };
    // The scrape endpoint: its address checked like the rest of the file, then bound.
    if let Err(e) = scrape::check_listen(&cfg.metrics, &*deps.addresses).await {
        return Exit::Config(e);
    }
    let mut endpoint =
        ScrapeEndpoint::new(health::scrape_router(state.clone(), deps.routes.clone()));
    if let Err(e) = endpoint.apply(&cfg.metrics).await {
        return Exit::Runtime(e);
    }
    // Health socket first: the supervisor hears READY=1 only once it answers.
    let socket = cfg.health_socket.clone();
    let listener = match crossdock_unixhttp::bind_socket(&socket, 0o660) {
        Ok(l) => l,
        Err(e) => {
            return Exit::Runtime(format!(
                "{e} (fix: check that the directory is writable by the agent, or set health_socket)"
            ))
        }
    };
    let router = health::router(state.clone(), deps.routes.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    deps.notifier
        .note(Note::Ready("health socket bound; reconciling".into()));
    tracing::info!(socket = %socket.display(), config = %config_path.display(), "crossdock agent started");

    let (ev_tx, events) = mpsc::channel::<DockerEvent>(256);
    let watcher = deps.docker.as_ref().map(|d| d.watch(ev_tx.clone()));
    let status = Arc::new(StatusLine::new(deps.notifier.clone()));
    let (subnet_tx, subnet_rx) = watch::channel::<Option<Ipv4Net>>(None);
    let (members_tx, members_rx) = watch::channel(Vec::new());
    let names_changed = Arc::new(Notify::new());
    let route_task = tokio::spawn(route_loop(
        deps.routes.clone(),
        subnet_rx,
        state.clone(),
        status.clone(),
        Duration::from_secs(cfg.cloud.resync_interval_secs),
        members_tx,
        names_changed.clone(),
    ));
    let names_task = names_settings
        .zip(deps.names.clone())
        .map(|(settings, nd)| {
            let run = names::run(
                settings,
                nd,
                members_rx,
                state.clone(),
                names_changed.clone(),
            );
            tokio::spawn(run)
        });
    let mut running = Running {
        config_path,
        host: (deps.host)(&cfg, deps.docker.clone()),
        resync: resync_timer(cfg.resync_interval_secs),
        watchdog: deps.notifier.watchdog_period().map(tokio::time::interval),
        cfg,
        log,
        deps,
        state,
        status,
        endpoint,
        events,
        names_changed: names_task.is_some().then_some(names_changed),
    };
    let exit = host_loop(&mut running, &subnet_tx).await;

    running.deps.notifier.note(Note::Stopping);
    if let Some(w) = watcher {
        w.abort();
    }
    route_task.abort();
    if let Some(t) = names_task {
        t.abort();
    }
    server.abort();
    let _ = std::fs::remove_file(&socket);
    // Config and runtime exits are printed once, by the CLI, as the one-line message.
    if let Exit::Clean = exit {
        tracing::info!("stopping; kernel state and routes are left in place");
    }
    exit
}

/// Host passes until a stop signal, or until the first answer from Docker is bad input.
async fn host_loop(r: &mut Running, subnet_tx: &watch::Sender<Option<Ipv4Net>>) -> Exit {
    // Until Docker has answered once, a configuration problem in what it reports stops the agent.
    let mut validated = false;
    let mut trigger = "start";
    loop {
        let outcome = run_pass(&r.cfg, &r.host, &r.state, trigger).await;
        r.status.publish(&r.state);
        if let Some(e) = outcome.config_error.clone() {
            if !validated {
                return Exit::Config(e);
            }
        } else if outcome.docker_answered {
            validated = true;
        }
        if outcome.subnet.is_some() {
            subnet_tx.send_if_modified(|s| {
                let changed = *s != outcome.subnet;
                *s = outcome.subnet;
                changed
            });
        }
        match r.next().await {
            Some(t) => trigger = t,
            None => return Exit::Clean,
        }
    }
}
