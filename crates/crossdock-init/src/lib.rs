//! `crossdock init`: gives Docker's default bridge the subnet derived from this host's private IP,
//! before Docker starts.
//!
//! Why: in fleet mode every host boots from the same user data, so nobody writes a `bip` per host.
//! This command, run once per boot by `crossdock-init.service` (ordered `Before=docker.service`),
//! reads the private IP (and the VPC CIDR when `[subnet] host_ranges` is empty) from the metadata
//! service, computes the subnet with the mapping of `crossdock_config::mapping`, and writes `"bip"`
//! into Docker's `daemon.json`, keeping every other key ([`daemon_json`]). It never restarts Docker:
//! if Docker already runs with another subnet it says a restart is needed, and if that restart would
//! move containers it refuses ([`decide`]).
//!
//! With `[names]` on it also writes `"dns"`: the agent's resolver on the bridge gateway first, then
//! the host's own resolvers ([`names_dns`]).
//!
//! Exit codes: 0 written or unchanged; 1 a runtime failure (metadata service or Docker not
//! answering, a write failed); 2 bad input (configuration, mapping, daemon.json) or a refusal.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod cli;
pub mod daemon_json;
pub mod decide;
pub mod docker;
pub mod identity;
pub mod names_dns;
pub mod userdata;

/// Why `crossdock init` stopped. `Display` is one line with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitError {
    /// Bad configuration, mapping or daemon.json, or a refusal: exit 2.
    BadInput(String),
    /// Something did not answer or could not be written: exit 1.
    Runtime(String),
}

impl InitError {
    /// The process exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::BadInput(_) => 2,
            InitError::Runtime(_) => 1,
        }
    }
}

impl std::fmt::Display for InitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InitError::BadInput(m) | InitError::Runtime(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for InitError {}
