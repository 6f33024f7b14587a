//! The per-host agent: host and route reconcilers, health socket, metrics, signals.
//!
//! Data flow: [`crossdock_docker`] says which subnet and bridge this host serves and when Docker
//! changed something; [`host::run_pass`] turns that plus the configuration into kernel state through
//! [`crossdock_hostnet`] (sysctls, iptables); the learned subnet goes to the route side
//! ([`routes::RouteSync`]) which keeps the VPC route; everything found lands in [`state::AgentState`],
//! served by [`health`] on a unix socket (and by [`scrape`] over TCP for Prometheus, when configured)
//! and shown by `crossdock status`. [`daemon`] drives it all.
// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod cli;
pub mod daemon;
pub mod fleet_agents;
pub mod health;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod names_status;
pub mod notify;
pub mod reload;
pub mod routes;
pub mod scrape;
pub mod state;

#[cfg(test)]
mod daemon_tests;
#[cfg(test)]
mod fakes;
#[cfg(test)]
mod names_tests;
