//! Variant (d): Docker's own multi-host answer, a swarm-scope overlay network (`--attachable`) across the
//! lab's dockerds: `docker swarm init` on the first host, the others join as workers, one overlay network
//! with a subnet outside the lab's container subnets, a container on it in each host.

use anyhow::{bail, Context, Result};
use crossdock_lab::{ContainerInfo, Lab};
use std::time::Duration;

pub const NETWORK: &str = "bench-overlay";
/// Outside every lab host's `10.<i-1>.0.0/24` (at most 200 hosts).
pub const SUBNET: &str = "10.250.0.0/24";

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Makes a swarm of the lab's hosts `manager` and `workers` and the attachable overlay network.
pub fn setup(lab: &Lab, manager: usize, workers: &[usize]) -> Result<()> {
    let addr = lab.host(manager).private_ip.clone();
    lab.docker(
        manager,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            &addr,
            "--listen-addr",
            &format!("{addr}:2377"),
        ],
    )
    .context("docker swarm init")?;
    let token = text(&lab.docker(manager, &["swarm", "join-token", "-q", "worker"])?);
    for &w in workers {
        let ip = lab.host(w).private_ip.clone();
        lab.docker(
            w,
            &[
                "swarm",
                "join",
                "--advertise-addr",
                &ip,
                "--token",
                &token,
                &format!("{addr}:2377"),
            ],
        )
        .with_context(|| format!("docker swarm join on h{w}"))?;
    }
    let want = 1 + workers.len();
    let ready = crate::proc::poll(Duration::from_secs(60), Duration::from_millis(250), || {
        let out = lab
            .docker(manager, &["node", "ls", "--format", "{{.Status}}"])
            .ok()?;
        (text(&out).lines().filter(|l| *l == "Ready").count() >= want).then_some(())
    });
    if ready.is_none() {
        bail!("the swarm did not report {want} Ready nodes within 60 s");
    }
    lab.docker(
        manager,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "--subnet",
            SUBNET,
            NETWORK,
        ],
    )
    .context("creating the overlay network")?;
    Ok(())
}

/// A long-running container on the overlay network on host `index`.
pub fn run_container(lab: &Lab, index: usize, name: &str) -> Result<ContainerInfo> {
    lab.run_container(
        index,
        name,
        &[
            "--network",
            NETWORK,
            crossdock_lab::dockerd::BUSYBOX_IMAGE,
            "sleep",
            "1000000",
        ],
    )
    .with_context(|| format!("starting {name} on the overlay network on h{index}"))
}
