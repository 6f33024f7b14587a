//! Putting it together: identity, credentials and the signed client from the [`Settings`], the
//! process environment and the metadata service.

use std::sync::Arc;

use crate::client::{Client, ClientOptions};
use crate::clock::{system_clock, Clock};
use crate::counters::CallCounters;
use crate::credentials::{CredentialsProvider, EnvVars};
use crate::error::Error;
use crate::identity::Identity;
use crate::metadata::MetadataClient;
use crate::retry::{tokio_sleeper, RetryPolicy, Sleeper};
use crate::settings::Settings;

/// Everything needed to talk to the cloud as this instance.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The API client (credentials inside).
    pub client: Arc<Client>,
    /// Who this host is.
    pub identity: Identity,
    /// The metadata client, when `metadata_url` is set.
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
    /// First window of the client's throttle gate ([`crate::ThrottleGate`]).
    pub throttle_window: std::time::Duration,
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
            throttle_window: ClientOptions::new(String::new()).throttle_window,
        }
    }
}

/// Resolves identity and credentials from the settings, the process environment and the metadata
/// service, and builds the client. Credentials are not fetched yet (the first call does), so this
/// fails only when identity cannot be resolved or the settings are unusable.
pub async fn connect(settings: &Settings) -> Result<Connection, Error> {
    connect_with(settings, ConnectOptions::default()).await
}

/// [`connect`] with explicit environment, clock, sleeper and retry policy.
pub async fn connect_with(cfg: &Settings, opts: ConnectOptions) -> Result<Connection, Error> {
    let counters = Arc::new(CallCounters::default());
    let metadata = if cfg.metadata_url.trim().is_empty() {
        None
    } else {
        let mode = cfg.metadata_token.tightened(opts.env.imdsv1_disabled());
        Some(Arc::new(MetadataClient::new(
            cfg.metadata_url.trim(),
            mode,
            opts.clock.clone(),
            counters.clone(),
        )?))
    };
    let identity = Identity::resolve(cfg, metadata.as_deref()).await?;
    let credentials = Arc::new(CredentialsProvider::from_settings(
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
        throttle_window: opts.throttle_window,
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
