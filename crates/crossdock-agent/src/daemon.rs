//! The daemon: binds the health socket, tells systemd it is ready, then reconciles the host on every
//! Docker event, on a resync timer and on SIGHUP (after reloading the configuration), while the route
//! side runs in a task of its own. SIGTERM/SIGINT stop it cleanly and leave the kernel state (rules,
//! sysctls) and the VPC routes in place, so restarting the agent never cuts traffic. systemd's
//! `STATUS=` line follows the health summary, so `systemctl status` says what is wrong without a
//! trip to the health socket.
//!
//! Bad input applies nothing: the configuration is validated before the daemon starts, and the first
//! time Docker answers, a missing network or a subnet outside the cluster range makes the agent exit
//! with status 2 before any rule or sysctl is written. Later (someone deletes the network, changes bip
//! to a subnet outside the range) the same problem is a failed condition and the last good state stays.
//! A reload (SIGHUP) whose file is invalid, whose cluster range no longer holds the served subnet, or
//! whose scrape address (`[metrics] listen`) is not this host's or cannot be bound, is rejected with
//! the same one-line message and the running configuration (and scrape listener) stays.

use crate::health;
use crate::host::{run_pass, HostDeps};
use crate::logging::LogHandle;
use crate::routes::{RouteSync, RouteSyncReport};
use crate::scrape::{self, ScrapeEndpoint};
use crate::state::AgentState;
use crossdock_config::{Config, ConfigError};
use crossdock_docker::{BollardDocker, DockerEvent, DockerSource};
use crossdock_hostnet::{Iptables, ProcSysctl, RtNetlink};
use futures_util::StreamExt;
use ipnet::Ipv4Net;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How the daemon ended.
#[derive(Debug)]
pub enum Exit {
    /// SIGTERM/SIGINT.
    Clean,
    /// Bad input found at start-up (exit status 2).
    Config(ConfigError),
    /// Could not run at all (exit status 1).
    Runtime(String),
}

/// Keeps systemd's `STATUS=` line in step with the agent's health summary
/// ([`AgentState::summary_line`]), sending only when the text changes. Both the host loop and the
/// route loop publish through one notifier so neither repeats what the other already sent.
#[derive(Debug, Default)]
struct StatusNotifier {
    last: Mutex<Option<String>>,
}

impl StatusNotifier {
    /// Records `text` as shown; true when it differs from what systemd shows now.
    fn changed(last: &mut Option<String>, text: &str) -> bool {
        if last.as_deref() == Some(text) {
            return false;
        }
        *last = Some(text.to_string());
        true
    }

    /// Sends the current summary if it changed. The summary is taken and sent while holding the
    /// notifier, so two loops publishing at once cannot leave an older text showing.
    fn publish(&self, state: &Mutex<AgentState>) {
        let mut last = self.last.lock().unwrap();
        let text = state.lock().unwrap().summary_line();
        if Self::changed(&mut last, &text) {
            tracing::debug!(status = %text, "systemd status");
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&text)]);
        }
    }
}

/// Applies a route report to the state.
fn apply_route_report(state: &Mutex<AgentState>, r: &RouteSyncReport) {
    let mut st = state.lock().unwrap();
    st.set("route", r.route.clone());
    st.set("credentials", r.credentials.clone());
    if r.instance_id.is_some() {
        st.instance_id = r.instance_id.clone();
    }
    st.routes = r.routes.clone();
    st.fleet = r.fleet.clone();
}

/// The route loop: a pass at start, whenever the served subnet changes, and every `interval` (or
/// sooner/later when the route side asks).
async fn route_loop(
    routes: Arc<dyn RouteSync>,
    mut subnet: watch::Receiver<Option<Ipv4Net>>,
    state: Arc<Mutex<AgentState>>,
    status: Arc<StatusNotifier>,
    interval: Duration,
) {
    loop {
        let current = *subnet.borrow_and_update();
        let report = routes.sync(current).await;
        apply_route_report(&state, &report);
        status.publish(&state);
        let wait = report.retry_after.unwrap_or(interval);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = subnet.changed() => if changed.is_err() { return },
        }
    }
}

/// Checks a reloaded configuration against what the running agent serves; the same problems that
/// would stop a fresh start reject the reload.
fn check_reload(new: &Config, state: &Mutex<AgentState>, old: &Config) -> Result<(), ConfigError> {
    let served = state.lock().unwrap().subnet;
    if let Some(subnet) = served {
        if new.docker.network == old.docker.network && new.docker.static_subnet.is_none() {
            crossdock_config::check_subnet(subnet, new)?;
        }
    }
    Ok(())
}

fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.docker.host != new.docker.host {
        v.push("docker.host");
    }
    if old.docker.static_subnet.is_some() != new.docker.static_subnet.is_some() {
        v.push("docker.static_subnet (switching mode)");
    }
    if old.health_socket != new.health_socket {
        v.push("health_socket");
    }
    if old.log_format != new.log_format {
        v.push("log_format");
    }
    if old.cloud != new.cloud {
        v.push("[cloud]");
    }
    v
}

fn host_deps(cfg: &Config, docker: Option<Arc<dyn DockerSource>>) -> HostDeps {
    HostDeps {
        docker,
        firewall: Arc::new(Iptables::new(cfg.firewall.lock_wait_secs)),
        sysctl: Arc::new(ProcSysctl::default()),
        links: Arc::new(RtNetlink),
    }
}

fn resync_timer(secs: u64) -> tokio::time::Interval {
    let period = Duration::from_secs(secs);
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn run(
    config_path: PathBuf,
    mut cfg: Config,
    log: LogHandle,
    routes: Arc<dyn RouteSync>,
) -> Exit {
    let state = Arc::new(Mutex::new(AgentState::new(config_path.clone())));

    let mut signals = match signal_hook_tokio::Signals::new([SIGHUP, SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => return Exit::Runtime(format!("cannot install signal handlers: {e}")),
    };

    // The scrape endpoint: its address checked like the rest of the file, then bound.
    if let Err(e) = scrape::check_listen(&cfg.metrics, &RtNetlink).await {
        return Exit::Config(e);
    }
    let mut endpoint = ScrapeEndpoint::new(health::scrape_router(state.clone(), routes.clone()));
    if let Err(e) = endpoint.apply(&cfg.metrics).await {
        return Exit::Runtime(e);
    }

    // Health socket first: systemd hears READY=1 only once it answers.
    let socket = cfg.health_socket.clone();
    let listener = match crossdock_unixhttp::bind_socket(&socket, 0o660) {
        Ok(l) => l,
        Err(e) => {
            return Exit::Runtime(format!(
                "{e} (fix: check that the directory is writable by the agent, or set health_socket)"
            ))
        }
    };
    let router = health::router(state.clone(), routes.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("health socket bound; reconciling"),
        ],
    );
    tracing::info!(socket = %socket.display(), config = %config_path.display(), "crossdock agent started");

    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec).then(|| {
        let period = Duration::from_micros(watchdog_usec / 2).max(Duration::from_millis(100));
        tokio::time::interval(period)
    });
    let mut watchdog = watchdog;

    // Docker and its event watcher (none in static-subnet mode).
    let (ev_tx, mut ev_rx) = mpsc::channel::<DockerEvent>(256);
    let docker: Option<Arc<dyn DockerSource>> = if cfg.docker.static_subnet.is_some() {
        None
    } else {
        Some(Arc::new(BollardDocker::new(cfg.docker_socket())))
    };
    let watcher = docker.as_ref().map(|d| d.watch(ev_tx.clone()));
    let mut deps = host_deps(&cfg, docker.clone());

    // Route side.
    let status = Arc::new(StatusNotifier::default());
    let (subnet_tx, subnet_rx) = watch::channel::<Option<Ipv4Net>>(None);
    let route_task = tokio::spawn(route_loop(
        routes.clone(),
        subnet_rx,
        state.clone(),
        status.clone(),
        Duration::from_secs(cfg.cloud.resync_interval_secs),
    ));

    let mut resync = resync_timer(cfg.resync_interval_secs);
    // Until Docker has answered once, a configuration problem in what it reports stops the agent.
    let mut validated = false;
    let mut trigger = "start";

    let exit = loop {
        let outcome = run_pass(&cfg, &deps, &state, trigger).await;
        status.publish(&state);
        if let Some(e) = outcome.config_error.clone() {
            if !validated {
                break Exit::Config(e);
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

        // Wait for the next reason to reconcile.
        let next = loop {
            tokio::select! {
                ev = ev_rx.recv() => {
                    let Some(ev) = ev else { continue };
                    let mut events = vec![ev];
                    while let Ok(more) = ev_rx.try_recv() {
                        events.push(more);
                    }
                    state.lock().unwrap().metrics.docker_events += events.len() as u64;
                    let mut t = None;
                    for ev in &events {
                        tracing::debug!(event = ?ev, "Docker event");
                        match ev {
                            DockerEvent::Disconnected { reason } => {
                                state.lock().unwrap().set("docker", crate::state::Update::pending(
                                    "Reconnecting",
                                    format!("the Docker event stream ended ({reason}); reconnecting"),
                                ));
                                status.publish(&state);
                            }
                            DockerEvent::Connected | DockerEvent::Reconnected => t = Some("docker_reconnect"),
                            _ => { t.get_or_insert("docker_event"); }
                        }
                    }
                    if let Some(t) = t { break Some(t) }
                }
                _ = resync.tick() => break Some("resync"),
                _ = async { watchdog.as_mut().unwrap().tick().await }, if watchdog.is_some() => {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                sig = signals.next() => match sig {
                    Some(SIGHUP) => {
                        match reload(&config_path, &cfg, &state, &mut endpoint).await {
                            Ok(new) => {
                                for what in restart_only_changes(&cfg, &new) {
                                    tracing::warn!(setting = what, "changed in the file; takes effect when the agent restarts");
                                }
                                let mut applied = new.clone();
                                applied.docker.host = cfg.docker.host.clone();
                                applied.health_socket = cfg.health_socket.clone();
                                applied.log_format = cfg.log_format;
                                applied.cloud = cfg.cloud.clone();
                                if applied.docker.static_subnet.is_some() != cfg.docker.static_subnet.is_some() {
                                    applied.docker.static_subnet = cfg.docker.static_subnet;
                                }
                                log.set_level(&applied.log_level);
                                if applied.resync_interval_secs != cfg.resync_interval_secs {
                                    resync = resync_timer(applied.resync_interval_secs);
                                }
                                cfg = applied;
                                deps = host_deps(&cfg, docker.clone());
                                state.lock().unwrap().metrics.config_reloads += 1;
                                tracing::info!(config = %config_path.display(), "configuration reloaded");
                                break Some("reload");
                            }
                            Err(e) => {
                                state.lock().unwrap().metrics.config_reload_errors += 1;
                                tracing::error!("configuration reload rejected, keeping the running configuration: {}: {e}", config_path.display());
                            }
                        }
                    }
                    Some(_) | None => break None,
                },
            }
        };
        match next {
            Some(t) => trigger = t,
            None => break Exit::Clean,
        }
    };

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watcher {
        w.abort();
    }
    route_task.abort();
    server.abort();
    let _ = std::fs::remove_file(&socket);
    // Config and runtime exits are printed once, by the CLI, as the one-line message.
    if let Exit::Clean = exit {
        tracing::info!("stopping; kernel state and routes are left in place");
    }
    exit
}

/// Reads and checks the file; applies the scrape endpoint's part (a new address is bound before the
/// old one is let go), the rest is applied by the caller. Nothing changes when this fails.
async fn reload(
    path: &Path,
    old: &Config,
    state: &Mutex<AgentState>,
    endpoint: &mut ScrapeEndpoint,
) -> Result<Config, String> {
    let new = crossdock_config::load(path).map_err(|e| e.to_string())?;
    check_reload(&new, state, old).map_err(|e| e.to_string())?;
    scrape::check_listen(&new.metrics, &RtNetlink)
        .await
        .map_err(|e| e.to_string())?;
    endpoint.apply(&new.metrics).await?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crossdock_config::parse(text).unwrap()
    }

    #[test]
    fn a_reload_must_still_hold_the_served_subnet() {
        let old = cfg("cluster_cidrs = [\"10.0.0.0/8\"]");
        let state = Mutex::new(AgentState::new("/x".into()));
        // Nothing served yet: any valid file is accepted.
        let narrower = cfg("cluster_cidrs = [\"10.9.0.0/16\"]");
        assert!(check_reload(&narrower, &state, &old).is_ok());
        state.lock().unwrap().subnet = Some("10.1.0.0/24".parse().unwrap());
        let e = check_reload(&narrower, &state, &old).unwrap_err();
        assert_eq!(e.field, "cluster_cidrs");
        assert!(e.message.contains("10.1.0.0/24"), "{e}");
        assert!(check_reload(&cfg("cluster_cidrs = [\"10.1.0.0/16\"]"), &state, &old).is_ok());
        // Serving another network next: its subnet is checked when Docker reports it, not here.
        let other = cfg("cluster_cidrs = [\"10.9.0.0/16\"]\n[docker]\nnetwork = \"other\"");
        assert!(check_reload(&other, &state, &old).is_ok());
    }

    #[test]
    fn the_status_line_is_sent_only_when_it_changes() {
        let mut last = None;
        let changed = |last: &mut Option<String>, t: &str| StatusNotifier::changed(last, t);
        assert!(changed(
            &mut last,
            "pending: docker (WaitingForDocker: refused)"
        ));
        assert!(!changed(
            &mut last,
            "pending: docker (WaitingForDocker: refused)"
        ));
        assert!(changed(&mut last, "ready: 10.0.1.0/24 routed; firewall ok"));
        assert!(!changed(
            &mut last,
            "ready: 10.0.1.0/24 routed; firewall ok"
        ));
        assert!(changed(
            &mut last,
            "pending: docker (WaitingForDocker: refused)"
        ));

        // publish() goes through the same check on the state's own summary.
        let n = StatusNotifier::default();
        let state = Mutex::new(AgentState::new("/x".into()));
        n.publish(&state);
        let first = n.last.lock().unwrap().clone().unwrap();
        assert_eq!(first, state.lock().unwrap().summary_line());
        state.lock().unwrap().set(
            "docker",
            crate::state::Update::failed("Unavailable", "connection refused"),
        );
        n.publish(&state);
        assert_eq!(
            n.last.lock().unwrap().as_deref(),
            Some("failed: docker (Unavailable: connection refused); 5 more not ready")
        );
    }

    #[test]
    fn settings_that_need_a_restart_are_named() {
        let old = cfg("cluster_cidrs = [\"10.0.0.0/8\"]");
        let new = cfg("cluster_cidrs = [\"10.0.0.0/8\"]\nhealth_socket = \"/run/x.sock\"\nlog_format = \"json\"\nresync_interval_secs = 5\n[cloud]\nprovider = \"alibaba\"");
        assert_eq!(
            restart_only_changes(&old, &new),
            ["health_socket", "log_format", "[cloud]"]
        );
        assert!(restart_only_changes(&old, &old).is_empty());
    }
}
