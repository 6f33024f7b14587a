//! Who this host is: its private IP and, when `subnet.host_ranges` is empty, the VPC CIDR.
//!
//! Read from the ECS metadata service with the same client, URL and token mode as the agent
//! (`[cloud] metadata_url`, `metadata_token`, `ALIBABA_CLOUD_IMDSV1_DISABLED`); a `[cloud]
//! private_ip` set in the file wins. At boot the network may be up a moment before the metadata
//! service answers, so transient failures are retried with backoff for a bounded time.

use crate::InitError;
use crossdock_alibaba::{system_clock, CallCounters, EnvVars, Error, MetadataClient, TokenMode};
use crossdock_backoff::Exponential;
use crossdock_config::{Config, MetadataToken};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the mapping needs to know about this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The primary private IPv4 address.
    pub private_ip: Ipv4Addr,
    /// The VPC CIDR, read only when `subnet.host_ranges` is empty.
    pub vpc_cidr: Option<Ipv4Net>,
}

/// Reads the identity, retrying transient metadata failures until `wait` has passed.
pub async fn resolve(cfg: &Config, wait: Duration) -> Result<HostIdentity, InitError> {
    let configured_ip = cfg.cloud.private_ip.trim();
    let need_vpc = cfg.subnet.host_ranges.is_empty();
    if !configured_ip.is_empty() && !need_vpc {
        return Ok(HostIdentity {
            private_ip: parse_ip(configured_ip, "cloud.private_ip")?,
            vpc_cidr: None,
        });
    }
    let md = client(cfg)?;
    let private_ip = if configured_ip.is_empty() {
        let v = get(&md, "private-ipv4", wait).await?;
        parse_ip(&v, "metadata private-ipv4")?
    } else {
        parse_ip(configured_ip, "cloud.private_ip")?
    };
    let vpc_cidr = if need_vpc {
        let v = get(&md, "vpc-cidr-block", wait).await?;
        let net: Ipv4Net = v.parse().map_err(|_| {
            InitError::Runtime(format!(
                "the metadata service answered `{v}` for vpc-cidr-block, which is not an IPv4 CIDR (fix: list the cluster's vSwitch CIDRs in [subnet] host_ranges)"
            ))
        })?;
        Some(net.trunc())
    } else {
        None
    };
    Ok(HostIdentity {
        private_ip,
        vpc_cidr,
    })
}

fn parse_ip(v: &str, what: &str) -> Result<Ipv4Addr, InitError> {
    v.parse().map_err(|_| {
        let msg = format!("{what} is `{v}`, not an IPv4 address");
        if what.starts_with("cloud.") {
            InitError::BadInput(format!("{msg} (fix: correct it or leave it empty)"))
        } else {
            InitError::Runtime(format!("{msg} (fix: set [cloud] private_ip)"))
        }
    })
}

fn client(cfg: &Config) -> Result<MetadataClient, InitError> {
    let url = cfg.cloud.metadata_url.trim();
    if url.is_empty() {
        let missing = if cfg.cloud.private_ip.trim().is_empty() {
            "cloud.private_ip"
        } else {
            "subnet.host_ranges"
        };
        return Err(InitError::BadInput(format!(
            "{missing} is empty and cloud.metadata_url is empty too, so it cannot be discovered (fix: set {missing}, or set cloud.metadata_url = \"http://100.100.100.200\")"
        )));
    }
    // The agent's mapping of the same setting is crossdock_routes::cloud_settings.
    let mode = match cfg.cloud.metadata_token {
        MetadataToken::Auto => TokenMode::Auto,
        MetadataToken::Required => TokenMode::Required,
        MetadataToken::Disabled => TokenMode::Disabled,
    }
    .tightened(EnvVars::from_process().imdsv1_disabled());
    MetadataClient::new(url, mode, system_clock(), Arc::new(CallCounters::default()))
        .map_err(|e| InitError::BadInput(e.to_string()))
}

/// Waits between metadata attempts: 0.5 s doubling to 4 s.
const RETRY: Exponential = Exponential::new(Duration::from_millis(500), Duration::from_secs(4));

/// One metadata item; transient failures are retried ([`RETRY`]) until `wait` passed.
async fn get(md: &MetadataClient, item: &str, wait: Duration) -> Result<String, InitError> {
    let deadline = Instant::now() + wait;
    let mut delays = RETRY.delays();
    loop {
        match md.get(item, "init").await {
            Ok(v) if !v.is_empty() => return Ok(v),
            Ok(_) => {
                return Err(InitError::Runtime(format!(
                    "the metadata service answered nothing for {item} (fix: check cloud.metadata_url, or set the value in the configuration)"
                )))
            }
            Err(e @ Error::Metadata { transient: true, .. })
                if Instant::now() + delays.peek() < deadline =>
            {
                let delay = delays.next_delay();
                eprintln!("crossdock init: {e}; trying again in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(InitError::Runtime(e.to_string())),
        }
    }
}
