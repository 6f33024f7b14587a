//! An emulated Alibaba Cloud VPC, faithful where a route controller can tell the difference.
//!
//! Nobody can test a VPC-route agent without a cloud account, so the lab brings the cloud along: this
//! crate speaks Alibaba's RPC wire protocol (ACS3-HMAC-SHA256 and signature v1, verified; STS tokens,
//! checked), implements the route-table and ECS actions the agent uses with the real field names, error
//! codes and quirks (routes are `Pending` before `Available`, one route write at a time per VPC, quotas,
//! throttling, RAM policies), serves the instance metadata service with rotating role credentials, and
//! mirrors the route table into the kernel of the lab's vRouter namespace, where it also enforces the
//! ENI source/destination check. An admin API on a unix socket lets tests inspect the call log and
//! inject faults.
//!
//! Entry points: [`server::start`] / [`server::serve`] with [`server::ServerOptions`],
//! [`admin::AdminClient`] for the admin socket, [`cli::VpcServerArgs`] + [`cli::run`] for the CLI.

pub mod actions;
pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod dataplane;
pub mod error;
pub mod metadata;
pub mod model;
pub mod server;
pub mod sim;
pub mod store;

pub use admin::AdminClient;
pub use cli::{run, VpcServerArgs};
pub use server::{serve, start, Server, ServerOptions};
