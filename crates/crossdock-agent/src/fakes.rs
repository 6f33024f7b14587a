//! In-memory stand-ins for the kernel and Docker, shared by the host pass's and the daemon loop's
//! unit tests (test-only).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crossdock_docker::{DockerError, DockerEvent, DockerSource, ServedNetwork};
use crossdock_hostnet::{LinkInfo, Links, NetlinkError, Sysctl, SysctlError};

/// `/proc/sys` as a map.
#[derive(Debug, Default)]
pub struct FakeSysctl(pub Mutex<BTreeMap<String, String>>);

impl Sysctl for FakeSysctl {
    fn read(&self, path: &str) -> Result<String, SysctlError> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .ok_or(SysctlError::Read {
                name: path.into(),
                message: "No such file or directory".into(),
            })
    }
    fn write(&self, path: &str, value: &str) -> Result<(), SysctlError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.into(), value.into());
        Ok(())
    }
}

/// Links `eth0` and `docker0`; the default route's interface as given.
#[derive(Debug)]
pub struct FakeLinks(pub Option<String>);

#[async_trait]
impl Links for FakeLinks {
    async fn default_route_interface(&self) -> Result<Option<String>, NetlinkError> {
        Ok(self.0.clone())
    }
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        Ok((name == "eth0" || name == "docker0").then(|| LinkInfo {
            name: name.into(),
            index: 2,
            mtu: Some(1500),
            up: true,
        }))
    }
}

/// Docker whose answer the test sets and whose events the test sends; counts inspections (one
/// per host pass).
#[derive(Debug)]
pub struct ScriptedDocker {
    pub answer: Mutex<Result<ServedNetwork, DockerError>>,
    feed: Mutex<Option<mpsc::Receiver<DockerEvent>>>,
    pub inspections: AtomicUsize,
}

impl ScriptedDocker {
    /// Docker answering `answer`, and the sender of its event stream.
    pub fn new(
        answer: Result<ServedNetwork, DockerError>,
    ) -> (Arc<Self>, mpsc::Sender<DockerEvent>) {
        let (tx, rx) = mpsc::channel(64);
        let d = Arc::new(Self {
            answer: Mutex::new(answer),
            feed: Mutex::new(Some(rx)),
            inspections: AtomicUsize::new(0),
        });
        (d, tx)
    }

    /// Host passes so far.
    pub fn inspections(&self) -> usize {
        self.inspections.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl DockerSource for ScriptedDocker {
    async fn inspect_network(&self, _name: &str) -> Result<ServedNetwork, DockerError> {
        self.inspections.fetch_add(1, Ordering::SeqCst);
        self.answer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn watch(&self, tx: mpsc::Sender<DockerEvent>) -> JoinHandle<()> {
        let feed = self.feed.lock().unwrap_or_else(|p| p.into_inner()).take();
        tokio::spawn(async move {
            let Some(mut feed) = feed else { return };
            while let Some(ev) = feed.recv().await {
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// The served network `bridge` on docker0 with this subnet.
pub fn served(subnet: &str) -> ServedNetwork {
    ServedNetwork {
        name: "bridge".into(),
        id: "abc".into(),
        subnet: subnet.parse().unwrap(),
        gateway: None,
        bridge: "docker0".into(),
        docker_version: "28.5.2".into(),
    }
}
