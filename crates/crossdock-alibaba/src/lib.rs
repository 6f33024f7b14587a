//! Alibaba Cloud VPC/ECS client: signed RPC calls, typed errors and retries, STS credentials, instance
//! identity.
//!
//! There is no maintained Alibaba SDK for Rust, and crossdock needs eleven API actions, so this crate is a
//! small, exact client rather than a generated one: ACS3-HMAC-SHA256 signing (pinned by the official
//! SDK's captured requests), errors mapped to what the caller should do ([`ErrorClass`], with a fix
//! text), retries with jittered capped backoff that honour the server's rate-limit hints, Alibaba's
//! credential chain with RAM-role STS credentials refreshed before they expire, and the instance's
//! identity from the metadata service. Everything that talks to the network takes its base URL from
//! the [`Settings`], so tests use loopback servers and the lab uses its emulator.
//!
//! The client is configured by its own [`Settings`], not by an application's configuration: the
//! agent maps its `[cloud]` table onto them at the edge (`crossdock_routes::cloud_settings`).
//!
//! Typical use (what the agent does):
//! ```no_run
//! # async fn demo(settings: &crossdock_alibaba::Settings) -> Result<(), crossdock_alibaba::Error> {
//! let conn = crossdock_alibaba::connect(settings).await?;
//! let tables = conn.client.describe_route_table_list(&conn.identity.vpc_id).await?;
//! # Ok(()) }
//! ```
//!
//! Files use each other in one direction only, no cycles: `product`, `clock`, `counters`, `secret`,
//! `signing`, `retry` (leaves) ← `settings` (secret), `error` (product) ← `types`, `transport` ←
//! `metadata` ← `identity`, `credentials` ← `client` ← `connect`. Shared pieces live in the leaf that
//! owns them (the API a call goes to in `product`, "now" in `clock`), not in one of their users.

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod client;
pub mod clock;
pub mod connect;
pub mod counters;
pub mod credentials;
pub mod error;
pub mod identity;
pub mod metadata;
pub mod product;
pub mod retry;
pub mod secret;
pub mod settings;
pub mod signing;
mod transport;
pub mod types;

pub use client::{Client, ClientOptions};
pub use clock::{system_clock, Clock};
pub use connect::{connect, connect_with, ConnectOptions, Connection};
pub use counters::{CallCounters, Snapshot as CallCounts};
pub use credentials::{
    CredentialSource, CredentialStatus, Credentials, CredentialsProvider, EnvVars,
};
pub use error::{
    classify, is_service_fault, is_throttling, is_throttling_code, ApiError, Cause, Error,
    ErrorClass, TransportKind,
};
pub use identity::Identity;
pub use metadata::MetadataClient;
pub use product::Product;
pub use retry::{full_jitter, tokio_sleeper, RetryBudget, RetryPolicy, Sleeper, ThrottleGate};
pub use secret::Secret;
pub use settings::{Settings, TokenMode};
pub use types::{
    client_token, BatchFailure, BatchResult, CreateRouteEntry, Instance, InstanceQuery,
    InstanceStatus, NetworkInterface, NewRoute, NextHop, RouteEntry, RouteEntryFilter, RouteTable,
    RouteToDelete, Tag, VSwitch, VpcAttribute, MAX_INSTANCE_IDS, MAX_ROUTE_BATCH,
};
