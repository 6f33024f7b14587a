//! A synthetic catalog member for N3 (`crossdock-bench catalog-peer`, hidden): the exchange of
//! `crossdock-catalog`, as an agent runs it, publishing a fixed set of records and nothing else.
//!
//! The names benchmark runs one in the network namespace of each lab host that has no dockerd
//! and no agent (an instance tagged into the fleet, so the measured agent admits its address as a
//! member): it binds `<private IP>:<catalog_port>`, uses the fleet's cluster id and key, and
//! publishes `--records` records shaped like a Compose host's (`app-<k>-1` containers of service
//! `app-<k>`, addresses from the host's subnet), so every service name is shared by every host.
//! It runs until its standard input closes (or it is killed).

use anyhow::{anyhow, bail, Context, Result};
use crossdock_catalog::{ClusterKey, Exchange, ExchangeConfig};
use crossdock_names::{ContainerRecord, HostId, Label};
use ipnet::Ipv4Net;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// What one synthetic member publishes and where.
#[derive(Debug, Clone)]
pub struct PeerArgs {
    /// `<private IP>:<catalog_port>`.
    pub listen: SocketAddr,
    /// Its identity in the exchange (the instance id, as an agent uses).
    pub host_id: String,
    /// `<host>` in `<container>.<host>.<zone>`.
    pub label: String,
    /// Every member's gossip address (this one is left out).
    pub members: Vec<SocketAddr>,
    /// `crossdock:<zone>`, as the agents use.
    pub cluster_id: String,
    pub key_file: Option<PathBuf>,
    /// Addresses of the records come from here (from `.2` on).
    pub subnet: Ipv4Net,
    pub records: usize,
}

/// `count` records of a Compose-like host: container `app-<k>-1` of service `app-<k>` at
/// `<subnet>.<k + 2>`.
pub fn records(subnet: Ipv4Net, count: usize) -> Result<Vec<ContainerRecord>> {
    let base = u32::from(subnet.network());
    let room = subnet.hosts().count().saturating_sub(1); // the gateway takes .1
    if count > room {
        bail!("{subnet} has room for {room} containers, not {count}");
    }
    (0..count)
        .map(|k| {
            let label = |s: String| Label::new(&s).map_err(|e| anyhow!("`{s}`: {e}"));
            Ok(ContainerRecord {
                container: label(format!("app-{k}-1"))?,
                name: label(format!("app-{k}"))?,
                ip: Ipv4Addr::from(base + 2 + u32::try_from(k)?),
            })
        })
        .collect()
}

/// Runs the member until standard input closes; prints `{"published": n}` once its records are
/// published.
pub fn run(args: PeerArgs) -> Result<()> {
    let records = records(args.subnet, args.records)?;
    let key = match &args.key_file {
        Some(p) => Some(
            ClusterKey::new(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
                .map_err(|e| anyhow!("{}: {e}", p.display()))?,
        ),
        None => None,
    };
    let label = Label::new(&args.label).map_err(|e| anyhow!("`{}`: {e}", args.label))?;
    let members: Vec<SocketAddr> = args
        .members
        .iter()
        .copied()
        .filter(|m| *m != args.listen)
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let mut config = ExchangeConfig::new(HostId(args.host_id), label, args.listen, members);
        config.cluster_id = args.cluster_id;
        config.key = key;
        let exchange = Exchange::start(config)
            .await
            .map_err(|e| anyhow!("starting the exchange: {e}"))?;
        exchange.publish(&records).await;
        println!("{{\"published\":{}}}", records.len());
        // Until the benchmark closes our standard input.
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .context("waiting for standard input")?;
        exchange
            .shutdown()
            .await
            .map_err(|e| anyhow!("leaving the exchange: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_compose_like_and_fill_the_subnet_from_dot_two() {
        let r = records("10.1.13.0/24".parse().unwrap(), 100).unwrap();
        assert_eq!(r.len(), 100);
        assert_eq!(r[0].container.as_str(), "app-0-1");
        assert_eq!(r[0].name.as_str(), "app-0");
        assert_eq!(r[0].ip, Ipv4Addr::new(10, 1, 13, 2));
        assert_eq!(r[99].ip, Ipv4Addr::new(10, 1, 13, 101));
        let mut ips: Vec<_> = r.iter().map(|x| x.ip).collect();
        ips.dedup();
        assert_eq!(ips.len(), 100);
    }

    #[test]
    fn records_refuse_more_than_the_subnet_holds() {
        let net: Ipv4Net = "10.1.13.0/28".parse().unwrap();
        assert_eq!(records(net, 13).unwrap().len(), 13); // .2 ..= .14
        assert!(records(net, 14).is_err());
    }
}
