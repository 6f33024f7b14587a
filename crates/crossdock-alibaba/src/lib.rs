//! Alibaba Cloud VPC/ECS client: signed RPC calls, typed errors and retries, STS credentials, instance
//! identity.
//!
//! There is no maintained Alibaba SDK for Rust, and crossdock needs eleven API actions, so this crate is a
//! small, exact client rather than a generated one: ACS3-HMAC-SHA256 signing (pinned by the official
//! SDK's captured requests), errors mapped to what the caller should do ([`ErrorClass`], with a fix
//! text), retries with jittered capped backoff that honour the server's rate-limit hints, Alibaba's
//! credential chain with RAM-role STS credentials refreshed before they expire, and the instance's
//! identity from the metadata service. Everything that talks to the network takes its base URL from
//! configuration, so tests use loopback servers and the lab uses its emulator.
//!
//! Typical use (what the agent does):
//! ```no_run
//! # async fn demo(cfg: &crossdock_config::CloudConfig) -> Result<(), crossdock_alibaba::Error> {
//! let conn = crossdock_alibaba::connect(cfg).await?;
//! let tables = conn.client.describe_route_table_list(&conn.identity.vpc_id).await?;
//! # Ok(()) }
//! ```

pub mod client;
pub mod counters;
pub mod credentials;
pub mod error;
pub mod metadata;
pub mod retry;
pub mod secret;
pub mod signing;
pub mod types;

use std::sync::Arc;

pub use client::{Client, ClientOptions, Product};
pub use counters::{CallCounters, Snapshot as CallCounts};
pub use credentials::{
    CredentialSource, CredentialStatus, Credentials, CredentialsProvider, EnvVars,
};
pub use error::{classify, ApiError, Error, ErrorClass, TransportKind};
pub use metadata::{system_clock, Clock, Identity, MetadataClient, TokenMode};
pub use retry::{full_jitter, tokio_sleeper, RetryBudget, RetryPolicy, Sleeper, ThrottleGate};
pub use secret::Secret;
pub use types::{
    client_token, BatchFailure, BatchResult, CreateRouteEntry, Instance, InstanceQuery,
    InstanceStatus, NetworkInterface, NewRoute, NextHop, RouteEntry, RouteEntryFilter, RouteTable,
    RouteToDelete, Tag, VSwitch, VpcAttribute, MAX_INSTANCE_IDS, MAX_ROUTE_BATCH,
};

/// Everything needed to talk to the cloud as this instance.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The API client (credentials inside).
    pub client: Arc<Client>,
    /// Who this host is.
    pub identity: Identity,
    /// The metadata client, when `cloud.metadata_url` is set.
    pub metadata: Option<Arc<MetadataClient>>,
}

/// Knobs of [`connect_with`] that tests and the lab change.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The relevant environment variables.
    pub env: EnvVars,
    /// "Now", for credential expiry and request dates.
    pub clock: Clock,
    /// How retries wait.
    pub sleeper: Sleeper,
    /// Retry policy of API calls.
    pub retry: RetryPolicy,
    /// Whole-request timeout of API calls.
    pub timeout: std::time::Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("env", &self.env)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            env: EnvVars::from_process(),
            clock: system_clock(),
            sleeper: tokio_sleeper(),
            retry: RetryPolicy::default(),
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Resolves identity and credentials from the `[cloud]` config, the process environment and the
/// metadata service, and builds the client. Credentials are not fetched yet (the first call does),
/// so this fails only when identity cannot be resolved or the configuration is unusable.
pub async fn connect(cfg: &crossdock_config::CloudConfig) -> Result<Connection, Error> {
    connect_with(cfg, ConnectOptions::default()).await
}

/// [`connect`] with explicit environment, clock, sleeper and retry policy.
pub async fn connect_with(
    cfg: &crossdock_config::CloudConfig,
    opts: ConnectOptions,
) -> Result<Connection, Error> {
    let counters = Arc::new(CallCounters::default());
    let metadata = if cfg.metadata_url.trim().is_empty() {
        None
    } else {
        let mode = TokenMode::from_config(cfg.metadata_token, opts.env.imdsv1_disabled());
        Some(Arc::new(MetadataClient::new(
            cfg.metadata_url.trim(),
            mode,
            opts.clock.clone(),
            counters.clone(),
        )?))
    };
    let identity = Identity::resolve(cfg, metadata.as_deref()).await?;
    let credentials = Arc::new(CredentialsProvider::from_config(
        cfg,
        &opts.env,
        metadata.clone(),
        opts.clock.clone(),
    )?);
    let client_opts = ClientOptions {
        vpc_endpoint: cfg.vpc_endpoint.clone(),
        ecs_endpoint: cfg.ecs_endpoint.clone(),
        timeout: opts.timeout,
        retry: opts.retry.clone(),
        ..ClientOptions::new(identity.region_id.clone())
    };
    let client = Client::new(client_opts, credentials, counters)?
        .with_sleeper(opts.sleeper.clone())
        .with_clock(opts.clock.clone());
    Ok(Connection {
        client: Arc::new(client),
        identity,
        metadata,
    })
}
