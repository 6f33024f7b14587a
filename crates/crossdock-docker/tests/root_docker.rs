//! The bollard client against a real dockerd (20.10 and 28.x) in a fresh network namespace (root
//! only): network inspection for the default bridge and a user-defined one, the event stream, and a
//! daemon restart with a new bip seen as Disconnected → Reconnected with the new subnet.

use crossdock_docker::{BollardDocker, DockerEvent, DockerSource};
use crossdock_lab::dockerd::{DockerVersion, Dockerd, DockerdSpec};
use crossdock_lab::netns::Netns;
use std::time::Duration;
use tokio::sync::mpsc;

/// Waits (bounded) for an event matching `want`, skipping others.
async fn expect_event(
    rx: &mut mpsc::Receiver<DockerEvent>,
    what: &str,
    want: impl Fn(&DockerEvent) -> bool,
) -> DockerEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) if want(&ev) => return ev,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("event channel closed while waiting for {what}"),
            Err(_) => panic!("no {what} event within 60 s"),
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn run(version: DockerVersion) {
    if !crossdock_lab::testing::root_or_skip() {
        return;
    }
    let tag = format!("{}-{}", version.as_str(), std::process::id());
    let ns = Netns::create(&format!("cd-docker-{tag}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = DockerdSpec::new(ns.path(), dir.path().join("d"), "10.7.1.1/24", version);
    let socket = spec.socket_path();

    // The client is created and the watcher started before the daemon exists: both must wait.
    let docker = BollardDocker::new(format!("unix://{}", socket.display()));
    let early = docker.inspect_network("bridge").await.unwrap_err();
    assert_eq!(early.kind(), "docker_unavailable");
    let (tx, mut rx) = mpsc::channel(64);
    let watcher = docker.watch(tx);

    let mut dockerd = blocking(move || Dockerd::start(spec).unwrap()).await;
    expect_event(&mut rx, "connected", |e| {
        matches!(e, DockerEvent::Connected)
    })
    .await;
    let net = docker.inspect_network("bridge").await.unwrap();
    assert_eq!(net.subnet.to_string(), "10.7.1.0/24");
    assert_eq!(net.bridge, "docker0");
    assert_eq!(
        net.gateway.map(|g| g.to_string()).as_deref(),
        Some("10.7.1.1")
    );
    assert!(
        net.docker_version.starts_with(match version {
            DockerVersion::V20 => "20.",
            DockerVersion::V28 => "28.",
        }),
        "{}",
        net.docker_version
    );
    let missing = docker.inspect_network("nope").await.unwrap_err();
    assert_eq!(missing.kind(), "docker_network_not_found", "{missing}");

    // A user-defined network: create event, br-<id12> bridge.
    let d = &dockerd;
    d.docker(&["network", "create", "--subnet", "10.7.2.0/24", "cdnet"])
        .unwrap();
    expect_event(
        &mut rx,
        "network create",
        |e| matches!(e, DockerEvent::NetworkCreate { network } if network == "cdnet"),
    )
    .await;
    let user = docker.inspect_network("cdnet").await.unwrap();
    assert_eq!(user.subnet.to_string(), "10.7.2.0/24");
    assert_eq!(user.bridge, format!("br-{}", &user.id[..12]));

    // A container start gives connect + start events.
    d.import_busybox().unwrap();
    d.run_container("c1", &["busybox:lab", "sleep", "300"])
        .unwrap();
    expect_event(
        &mut rx,
        "network connect",
        |e| matches!(e, DockerEvent::NetworkConnect { network, .. } if network == "bridge"),
    )
    .await;
    expect_event(&mut rx, "container start", |e| {
        matches!(e, DockerEvent::ContainerStart { .. })
    })
    .await;

    // Restart with another bip: the stream ends, comes back, and the new subnet is seen.
    dockerd = blocking(move || {
        dockerd.restart(Some("10.7.3.1/24")).unwrap();
        dockerd
    })
    .await;
    expect_event(&mut rx, "disconnected", |e| {
        matches!(e, DockerEvent::Disconnected { .. })
    })
    .await;
    expect_event(&mut rx, "reconnected", |e| {
        matches!(e, DockerEvent::Reconnected)
    })
    .await;
    let net = docker.inspect_network("bridge").await.unwrap();
    assert_eq!(net.subnet.to_string(), "10.7.3.0/24");

    watcher.abort();
    blocking(move || {
        dockerd.stop().unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_20_10() {
    run(DockerVersion::V20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_28() {
    run(DockerVersion::V28).await;
}
