//! Is Docker running, and with which bridge subnet and how many containers?
//!
//! The catch is socket activation: on Debian and Ubuntu `docker.socket` holds Docker's socket while
//! Docker itself is stopped, and the first connection starts `docker.service`, which is ordered
//! after `crossdock-init.service`: asking would hang until we give up. So under systemd the socket is
//! only asked when Docker's pid file names a live process (Docker writes it once it runs; `"pidfile"`
//! in daemon.json, default `/var/run/docker.pid`). Without systemd (containers, the lab), an existing
//! socket is asked directly. Nobody listening counts as "not running".

use crate::daemon_json::DaemonJson;
use crate::decide::DockerState;
use crate::InitError;
use crossdock_docker::{BollardDocker, DockerError, DockerSource};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Docker's default pid file.
pub const DEFAULT_PIDFILE: &str = "/var/run/docker.pid";

/// What can be seen about Docker without talking to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signs {
    /// The configured socket exists.
    pub socket_exists: bool,
    /// The machine runs systemd (`/run/systemd/system` exists): the socket may be socket-activated.
    pub systemd_booted: bool,
    /// Docker's pid file names a live process.
    pub pidfile_alive: bool,
}

/// Whether to ask the socket (see the module documentation).
pub fn should_ask(s: Signs) -> bool {
    s.socket_exists && (s.pidfile_alive || !s.systemd_booted)
}

/// The pid file Docker uses with this daemon.json.
pub fn pidfile(file: &DaemonJson) -> PathBuf {
    PathBuf::from(
        file.get_str("pidfile")
            .unwrap_or_else(|| DEFAULT_PIDFILE.into()),
    )
}

fn pid_alive(pidfile: &Path) -> bool {
    std::fs::read_to_string(pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|pid| pid > 0 && Path::new(&format!("/proc/{pid}")).exists())
}

/// Looks at the machine: the socket, systemd, the pid file.
pub fn signs(socket: &Path, file: &DaemonJson) -> Signs {
    Signs {
        socket_exists: socket.exists(),
        systemd_booted: Path::new("/run/systemd/system").is_dir(),
        pidfile_alive: pid_alive(&pidfile(file)),
    }
}

/// Docker's state, asking the socket at `socket` only when [`should_ask`] says so, bounded by `timeout`.
pub async fn state(
    socket: &Path,
    signs: Signs,
    timeout: Duration,
) -> Result<DockerState, InitError> {
    if !should_ask(signs) {
        return Ok(DockerState::NotRunning);
    }
    let docker = BollardDocker::new(socket);
    match tokio::time::timeout(timeout, ask(&docker)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(InitError::Runtime(format!(
            "cannot read Docker's bridge network: {e}"
        ))),
        Err(_) => Err(InitError::Runtime(format!(
            "Docker does not answer on {} within {} s (fix: start or repair Docker, or stop it so that it reads the new daemon.json when it starts)",
            socket.display(),
            timeout.as_secs()
        ))),
    }
}

async fn ask(docker: &BollardDocker) -> Result<DockerState, DockerError> {
    match docker.connect_once().await {
        Ok(_) => {}
        Err(DockerError::Unavailable { .. }) => return Ok(DockerState::NotRunning),
        Err(e) => return Err(e),
    }
    let subnet = match docker.inspect_network("bridge").await {
        Ok(n) => Some(n.subnet),
        Err(DockerError::NetworkNotFound { .. } | DockerError::NoIpv4Subnet { .. }) => None,
        Err(e) => return Err(e),
    };
    let containers = docker.container_count().await?;
    Ok(DockerState::Running { subnet, containers })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_asked_only_when_it_cannot_start_docker() {
        // (socket exists, systemd, pid file alive) -> ask
        let table = [
            ((false, false, false), false),
            ((false, true, true), false),
            ((true, false, false), true),
            ((true, false, true), true),
            // Under systemd a socket without a live dockerd is docker.socket: asking would start
            // docker.service, which waits for us.
            ((true, true, false), false),
            ((true, true, true), true),
        ];
        for ((socket_exists, systemd_booted, pidfile_alive), want) in table {
            let s = Signs {
                socket_exists,
                systemd_booted,
                pidfile_alive,
            };
            assert_eq!(should_ask(s), want, "{s:?}");
        }
    }

    #[test]
    fn the_pid_file_comes_from_daemon_json() {
        assert_eq!(
            pidfile(&DaemonJson::default()),
            PathBuf::from(DEFAULT_PIDFILE)
        );
        let f = DaemonJson::parse(r#"{"pidfile": "/run/d.pid"}"#).unwrap();
        assert_eq!(pidfile(&f), PathBuf::from("/run/d.pid"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("docker.pid");
        assert!(!pid_alive(&p));
        std::fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        assert!(pid_alive(&p));
        std::fs::write(&p, "not a pid").unwrap();
        assert!(!pid_alive(&p));
    }

    #[tokio::test]
    async fn nobody_listening_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        // A socket file nobody listens on (left behind by a dead daemon).
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let s = signs(&sock, &DaemonJson::default());
        assert!(s.socket_exists);
        let got = state(
            &sock,
            Signs {
                systemd_booted: false,
                ..s
            },
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(got.unwrap(), DockerState::NotRunning);
    }
}
