//! The daemon's event loop with every outside system replaced (no root, no Docker, no systemd):
//! event batching, reloads accepted and refused, Docker gone and back, exit 2 on a bad first
//! answer, watchdog pings, ready before anything else, the subnet handed to the route side.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use tokio::sync::mpsc;

use crossdock_config::Config;
use crossdock_docker::{DockerError, DockerEvent, DockerSource};
use crossdock_hostnet::{MemoryFirewall, Table, DOCKER_USER};

use crate::daemon::{run, DaemonDeps, Exit, Signal};
use crate::fakes::{served, FakeLinks, FakeSysctl, ScriptedDocker};
use crate::host::HostDeps;
use crate::logging::LogHandle;
use crate::notify::{Note, Recorder};
use crate::routes::{NoRoutes, RouteSync, RouteSyncReport};
use crate::scrape::HostAddresses;

/// The route side as a recorder of the subnets it was asked to route.
#[derive(Default)]
struct Routes(Mutex<Vec<Option<Ipv4Net>>>);

#[async_trait]
impl RouteSync for Routes {
    async fn sync(&self, subnet: Option<Ipv4Net>) -> RouteSyncReport {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(subnet);
        NoRoutes.sync(subnet).await
    }
}

struct NoAddresses;

#[async_trait]
impl HostAddresses for NoAddresses {
    async fn ipv4(&self) -> Result<Vec<std::net::Ipv4Addr>, String> {
        Ok(vec!["127.0.0.1".parse().unwrap()])
    }
}

struct Rig {
    dir: tempfile::TempDir,
    docker: Arc<ScriptedDocker>,
    events: mpsc::Sender<DockerEvent>,
    signals: mpsc::Sender<Signal>,
    notes: Arc<Recorder>,
    routes: Arc<Routes>,
    daemon: tokio::task::JoinHandle<Exit>,
}

fn config_text(dir: &Path, cluster: &str, resync: u64) -> String {
    format!(
        "cluster_cidrs = [\"{cluster}\"]\nhealth_socket = \"{}\"\nresync_interval_secs = {resync}\n",
        dir.join("agent.sock").display()
    )
}

fn config_path(dir: &Path) -> PathBuf {
    dir.join("agent.toml")
}

/// Starts the daemon on fakes, with Docker answering `answer`.
fn start(answer: Result<crossdock_docker::ServedNetwork, DockerError>, notes: Recorder) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        config_path(dir.path()),
        config_text(dir.path(), "10.0.0.0/8", 3600),
    )
    .unwrap();
    let cfg: Config = crossdock_config::load(&config_path(dir.path())).unwrap();
    let (docker, events) = ScriptedDocker::new(answer);
    let (sig_tx, sig_rx) = mpsc::channel::<Signal>(8);
    let signals =
        futures_util::stream::unfold(
            sig_rx,
            |mut rx| async move { rx.recv().await.map(|s| (s, rx)) },
        );
    let notes = Arc::new(notes);
    let routes = Arc::new(Routes::default());
    let deps = DaemonDeps {
        docker: Some(docker.clone() as Arc<dyn DockerSource>),
        host: Arc::new(|_: &Config, docker| {
            let fw = Arc::new(MemoryFirewall::new());
            fw.seed(Table::Filter, DOCKER_USER, &["-j RETURN"]);
            HostDeps {
                docker,
                firewall: fw,
                sysctl: Arc::new(FakeSysctl(Mutex::new(
                    [
                        ("net/ipv4/ip_forward", "1"),
                        ("net/ipv4/conf/eth0/forwarding", "1"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ))),
                links: Arc::new(FakeLinks(Some("eth0".into()))),
            }
        }),
        routes: routes.clone(),
        notifier: notes.clone(),
        signals: Box::pin(signals),
        addresses: Arc::new(NoAddresses),
        names: None,
    };
    let path = config_path(dir.path());
    let daemon = tokio::spawn(run(path, cfg, LogHandle::detached(), deps));
    Rig {
        dir,
        docker,
        events,
        signals: sig_tx,
        notes,
        routes,
        daemon,
    }
}

/// Polls `f` every 10 ms until it holds, for at most 5 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn status(rig: &Rig) -> serde_json::Value {
    let resp = crossdock_unixhttp::request(
        &rig.dir.path().join("agent.sock"),
        "GET",
        "/status",
        None,
        None,
    )
    .await
    .unwrap();
    serde_json::from_slice(&resp.body).unwrap()
}

/// Polls `/status` until `f` holds, for at most 5 s; returns the document that passed.
async fn status_until(
    rig: &Rig,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = status(rig).await;
        if f(&st) {
            return st;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn stop(rig: Rig) -> (Exit, Vec<Note>) {
    rig.signals.send(Signal::Stop).await.unwrap();
    let exit = rig.daemon.await.unwrap();
    (exit, rig.notes.notes())
}

#[tokio::test]
async fn ready_comes_first_then_the_subnet_goes_to_the_route_side_and_stop_is_clean() {
    let rig = start(Ok(served("10.1.0.0/24")), Recorder::default());
    let routes = rig.routes.clone();
    eventually("the route side to get the subnet", || {
        routes
            .0
            .lock()
            .unwrap()
            .contains(&Some("10.1.0.0/24".parse().unwrap()))
    })
    .await;
    let st = status(&rig).await;
    assert_eq!(st["conditions"]["firewall"]["state"], "ready", "{st}");
    let (exit, notes) = stop(rig).await;
    assert!(matches!(exit, Exit::Clean), "{exit:?}");
    assert!(matches!(notes.first(), Some(Note::Ready(_))), "{notes:?}");
    assert_eq!(notes.last(), Some(&Note::Stopping));
    assert!(
        notes
            .iter()
            .any(|n| matches!(n, Note::Status(t) if t.starts_with("ready"))),
        "{notes:?}"
    );
}

#[tokio::test]
async fn events_queued_together_make_one_pass() {
    let rig = start(Ok(served("10.1.0.0/24")), Recorder::default());
    let docker = rig.docker.clone();
    eventually("the first pass", || docker.inspections() == 1).await;
    // Queue a burst before the loop can look: all of it is one reason to reconcile.
    for i in 0..20 {
        rig.events
            .send(DockerEvent::ContainerStart {
                container: format!("c{i}"),
            })
            .await
            .unwrap();
    }
    status_until(&rig, "the 20 events counted", |s| {
        s["counters"]["docker_events"] == 20
    })
    .await;
    let passes = docker.inspections();
    assert!((2..=3).contains(&passes), "20 events made {passes} passes");
    stop(rig).await;
}

#[tokio::test]
async fn docker_gone_then_back_is_pending_then_reconciled_again() {
    let rig = start(Ok(served("10.1.0.0/24")), Recorder::default());
    let docker = rig.docker.clone();
    eventually("the first pass", || docker.inspections() == 1).await;
    rig.events
        .send(DockerEvent::Disconnected {
            reason: "daemon stopped".into(),
        })
        .await
        .unwrap();
    let notes = rig.notes.clone();
    eventually("the reconnecting status", || {
        notes
            .notes()
            .iter()
            .any(|n| matches!(n, Note::Status(t) if t.contains("Reconnecting")))
    })
    .await;
    assert_eq!(docker.inspections(), 1, "a disconnect alone runs no pass");
    rig.events.send(DockerEvent::Reconnected).await.unwrap();
    eventually("a pass after the reconnect", || docker.inspections() == 2).await;
    let st = status(&rig).await;
    assert_eq!(st["conditions"]["docker"]["state"], "ready", "{st}");
    stop(rig).await;
}

#[tokio::test]
async fn a_bad_first_answer_from_docker_exits_with_a_config_error() {
    let rig = start(Ok(served("192.168.5.0/24")), Recorder::default());
    let exit = rig.daemon.await.unwrap();
    match exit {
        Exit::Config(e) => assert!(e.to_string().contains("192.168.5.0/24"), "{e}"),
        other => panic!("expected a config exit, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reload_is_applied_when_valid_and_refused_when_not() {
    let rig = start(Ok(served("10.1.0.0/24")), Recorder::default());
    let docker = rig.docker.clone();
    eventually("the first pass", || docker.inspections() == 1).await;
    let path = config_path(rig.dir.path());
    // Valid: a wider cluster range still holds the served subnet.
    std::fs::write(&path, config_text(rig.dir.path(), "10.0.0.0/7", 3600)).unwrap();
    rig.signals.send(Signal::Reload).await.unwrap();
    eventually("the reload's pass", || docker.inspections() == 2).await;
    // Refused: the new range no longer holds the served subnet; no pass, running config kept.
    std::fs::write(&path, config_text(rig.dir.path(), "10.9.0.0/16", 3600)).unwrap();
    rig.signals.send(Signal::Reload).await.unwrap();
    let st = status_until(&rig, "a reload error counted", |s| {
        s["counters"]["config_reload_errors"] == 1
    })
    .await;
    assert_eq!(st["counters"]["config_reloads"], 1, "{st}");
    assert_eq!(docker.inspections(), 2, "a refused reload runs no pass");
    stop(rig).await;
}

#[tokio::test]
async fn the_watchdog_is_pinged_at_its_period() {
    let rig = start(
        Ok(served("10.1.0.0/24")),
        Recorder::with_watchdog(Duration::from_millis(100)),
    );
    let notes = rig.notes.clone();
    eventually("three watchdog pings", || {
        notes
            .notes()
            .iter()
            .filter(|n| **n == Note::Watchdog)
            .count()
            >= 3
    })
    .await;
    stop(rig).await;
}
