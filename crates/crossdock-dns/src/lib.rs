//! The resolver for containers: authoritative for the fleet's zone, forwarding every other name
//! to the host's own resolvers, answering only the host's containers and loopback.
//!
//! Built on the hickory crates (no DNS wire handling of our own): `hickory-server` owns the
//! sockets, the message parsing and the access control; the answers for the zone come from a
//! `crossdock-names` snapshot ([`ZoneSlot`]), which the agent replaces whenever the catalog
//! changes; every other question goes through hickory's forwarding zone handler to the upstream
//! resolvers, read from the host's resolv.conf ([`upstreams_from_resolv_conf`]).
//!
//! - [`server`]: [`DnsServer::start`] binds UDP and TCP on each listening address (the bridge
//!   gateway) and refuses clients outside the allowed networks;
//! - [`handler`]: the zone's answers as DNS messages, forwarding the rest;
//! - [`upstream`]: the upstream resolvers from resolv.conf.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod handler;
pub mod server;
pub mod upstream;

use std::net::SocketAddr;

pub use handler::{DnsStats, NamesHandler, ZoneSlot};
pub use server::{DnsConfig, DnsServer};
pub use upstream::upstreams_from_resolv_conf;

/// Why the resolver could not start. Each message names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listening address could not be bound.
    #[error("cannot listen for DNS on {addr}: {message} (fix: the address must be on this host, e.g. the Docker bridge's gateway, and the port free for UDP and TCP)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        message: String,
    },
    /// No client network was given: hickory would answer everyone.
    #[error("the DNS resolver has no allowed client networks and would be an open resolver (fix: list the container subnets and 127.0.0.0/8)")]
    NoAllowedClients,
    /// No upstream resolver.
    #[error("the DNS resolver has no upstream resolver for external names (fix: give the host's resolv.conf, or upstream addresses)")]
    NoUpstreams,
    /// The resolv.conf could not be used.
    #[error("cannot take upstream resolvers from {path}: {message} (fix: point it at the host's resolv.conf listing the VPC resolvers)")]
    ResolvConf {
        /// The file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// hickory refused the forwarding configuration.
    #[error("the DNS forwarder cannot be configured: {0}")]
    Forwarder(String),
    /// The server's tasks failed.
    #[error("the DNS server failed: {0}")]
    Server(String),
}

impl DnsError {
    fn bind(addr: SocketAddr, e: &std::io::Error) -> Self {
        Self::Bind {
            addr,
            message: e.to_string(),
        }
    }
}
