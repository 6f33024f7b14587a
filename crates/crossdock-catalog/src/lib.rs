//! The catalog exchange: every member host publishes its container records and learns
//! everyone else's.
//!
//! Built on chitchat (Quickwit's scuttlebutt gossip with a phi-accrual failure detector and
//! per-node key-value state) rather than a protocol of our own. Chosen over foca (SWIM
//! membership): foca disseminates custom broadcasts a bounded number of times and has no
//! anti-entropy, so a restarted agent would not get the whole catalog back without a sync
//! protocol of our own; chitchat's per-node key-values with versions give exactly the
//! incremental updates, full recovery and failure detection the catalog needs, and it lets the
//! application bring its own transport, which is where the peer check and the cluster key live.
//!
//! - [`exchange`]: [`Exchange`], one host's side (publish, learn, expire, snapshots);
//! - [`encode`]: a record set as chitchat key-values;
//! - [`agents`]: each peer's agent version and when it was last heard (the fleet view);
//! - [`transport`]: the UDP transport with the peer-address check and the optional HMAC key.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod agents;
pub mod encode;
pub mod exchange;
pub mod transport;

use std::net::SocketAddr;

pub use agents::{AgentDirectory, AgentVersion, BadVersion, PeerAgent};
pub use exchange::{Exchange, ExchangeConfig, ExchangeStats};
pub use transport::{ClusterKey, PeerSet, WireStats};

/// Why the exchange could not start or stop. Each message names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The gossip socket could not be opened.
    #[error("cannot start the catalog exchange on {listen}/udp: {message} (fix: the address must be this host's and the port free)")]
    Start {
        /// The address.
        listen: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The cluster key is too short.
    #[error("the catalog cluster key has {len} bytes, fewer than 16 (fix: use at least 16 random bytes, e.g. `openssl rand -hex 32`)")]
    KeyTooShort {
        /// Its length.
        len: usize,
    },
    /// Stopping failed.
    #[error("the catalog exchange did not stop cleanly: {0}")]
    Stop(String),
}
