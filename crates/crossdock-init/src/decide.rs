//! Whether `crossdock init` may write the subnet, given what Docker is doing right now.
//!
//! Why a decision of its own: changing `bip` under a running Docker does nothing until Docker
//! restarts, and that restart gives every container on the default bridge a new address: connections
//! break and peers' routes point at the wrong host. So init never restarts Docker, and refuses when a
//! restart would move containers. The rule is pure and tested as a table; the side effects (asking
//! Docker, writing the file) are elsewhere.

use ipnet::Ipv4Net;

/// What Docker is doing on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerState {
    /// Not running (no socket, nobody listening, or not started yet at boot): it reads daemon.json
    /// when it starts.
    NotRunning,
    /// Running with this default-bridge subnet (`None`: no default bridge) and this many containers
    /// (running or stopped).
    Running {
        subnet: Option<Ipv4Net>,
        containers: u64,
    },
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Write daemon.json (false: it already holds the subnet).
    pub write: bool,
    /// Docker runs with another subnet and must be restarted to apply it (by the operator).
    pub restart_needed: bool,
}

/// Why init refuses: what differs, and the fix. One line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The decision for a file that does (`file_has_it`) or does not yet hold `subnet`.
pub fn decide(
    file_has_it: bool,
    subnet: Ipv4Net,
    docker: &DockerState,
) -> Result<Decision, Refusal> {
    let write = !file_has_it;
    match docker {
        DockerState::NotRunning => Ok(Decision {
            write,
            restart_needed: false,
        }),
        DockerState::Running {
            subnet: Some(current),
            ..
        } if *current == subnet => Ok(Decision {
            write,
            restart_needed: false,
        }),
        DockerState::Running { containers: 0, .. } => Ok(Decision {
            write,
            restart_needed: true,
        }),
        DockerState::Running {
            subnet: current,
            containers,
        } => {
            let current = current.map_or("no default bridge".to_string(), |c| {
                format!("bridge subnet {c}")
            });
            Err(Refusal(format!(
                "Docker is running with {current}, not the derived {subnet}, and has {containers} container(s); applying the new subnet needs a Docker restart that would give them new addresses (fix: remove or migrate the containers (`docker ps -a`), then run crossdock init again and restart Docker; or keep this host's subnet with [subnet] mode = \"docker\")"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        let want: Ipv4Net = "10.1.10.0/24".parse().unwrap();
        let other: Ipv4Net = "172.17.0.0/16".parse().unwrap();
        let run = |subnet, containers| DockerState::Running { subnet, containers };
        let ok = |write, restart_needed| {
            Ok::<_, ()>(Decision {
                write,
                restart_needed,
            })
        };
        // (file already holds it, Docker, expected: Ok(write, restart) or Err(()))
        let table = [
            (false, DockerState::NotRunning, ok(true, false)),
            (true, DockerState::NotRunning, ok(false, false)),
            (false, run(Some(want), 0), ok(true, false)),
            (false, run(Some(want), 5), ok(true, false)),
            (true, run(Some(want), 5), ok(false, false)),
            (false, run(Some(other), 0), ok(true, true)),
            (true, run(Some(other), 0), ok(false, true)),
            (false, run(None, 0), ok(true, true)),
            (false, run(Some(other), 1), Err(())),
            (true, run(Some(other), 3), Err(())),
            (false, run(None, 2), Err(())),
        ];
        for (has, docker, expected) in table {
            let got = decide(has, want, &docker).map_err(|r| {
                assert!(r.0.contains("fix:") && !r.0.contains('\n'), "{r}");
                assert!(r.0.contains("10.1.10.0/24"), "{r}");
            });
            assert_eq!(got, expected, "file has it: {has}, Docker: {docker:?}");
        }
    }

    #[test]
    fn the_refusal_says_what_differs() {
        let r = decide(
            false,
            "10.1.10.0/24".parse().unwrap(),
            &DockerState::Running {
                subnet: Some("172.17.0.0/16".parse().unwrap()),
                containers: 2,
            },
        )
        .unwrap_err();
        assert!(
            r.0.contains("172.17.0.0/16") && r.0.contains("2 container"),
            "{r}"
        );
    }
}
