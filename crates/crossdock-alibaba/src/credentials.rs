//! Where the AccessKey comes from, in Alibaba's usual order, and keeping RAM-role STS credentials fresh.
//!
//! Order (the same as Alibaba's default credential chain, minus the profile files crossdock has no use
//! for): explicit `[cloud] access_key_id/secret` → environment `ALIBABA_CLOUD_ACCESS_KEY_ID` /
//! `ALIBABA_CLOUD_ACCESS_KEY_SECRET` (+ `ALIBABA_CLOUD_SECURITY_TOKEN`) → the instance's RAM role via
//! the metadata service (role from `cloud.ram_role`, else `ALIBABA_CLOUD_ECS_METADATA`, else discovered).
//!
//! RAM-role credentials expire. They are refreshed well before `Expiration` (15 minutes, or a third of
//! their lifetime if shorter). When the metadata service fails, the provider backs off (1 s doubling to
//! 60 s, no call in between) and keeps handing out the last credentials for as long as they are valid,
//! so a metadata hiccup never interrupts route management; only after expiry does the error surface.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossdock_backoff::Exponential;
use serde::Deserialize;

use crate::clock::Clock;
use crate::error::{Cause, Error};
use crate::metadata::MetadataClient;
use crate::secret::Secret;
use crate::settings::Settings;

/// Environment variables of Alibaba's credential chain that crossdock reads.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// See [`ENV_ACCESS_KEY_ID`].
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// See [`ENV_ACCESS_KEY_ID`].
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
/// The RAM role name, when not configured.
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
/// `true` makes the metadata token mandatory.
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";

/// A snapshot of the relevant environment variables (injectable, so tests never mutate the process
/// environment).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvVars(BTreeMap<String, String>);

impl std::fmt::Debug for EnvVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values include secrets: names only.
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl EnvVars {
    /// Reads the variables crossdock uses from the process environment.
    pub fn from_process() -> Self {
        let mut map = BTreeMap::new();
        for name in [
            ENV_ACCESS_KEY_ID,
            ENV_ACCESS_KEY_SECRET,
            ENV_SECURITY_TOKEN,
            ENV_ECS_METADATA,
            ENV_IMDSV1_DISABLED,
        ] {
            if let Ok(v) = std::env::var(name) {
                map.insert(name.to_string(), v);
            }
        }
        Self(map)
    }

    /// From explicit pairs (tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// A non-empty value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// Whether `ALIBABA_CLOUD_IMDSV1_DISABLED` is `true` (any case) or `1`.
    pub fn imdsv1_disabled(&self) -> bool {
        self.get(ENV_IMDSV1_DISABLED)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }
}

/// Where a set of credentials came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `[cloud] access_key_id` / `access_key_secret`.
    Config,
    /// `ALIBABA_CLOUD_ACCESS_KEY_ID` and friends.
    Environment,
    /// The instance RAM role of that name, from the metadata service.
    RamRole(String),
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::Config => f.write_str("the AccessKey in [cloud] of the config"),
            CredentialSource::Environment => write!(f, "the AccessKey in {ENV_ACCESS_KEY_ID}"),
            CredentialSource::RamRole(r) => write!(f, "RAM role `{r}` from the metadata service"),
        }
    }
}

/// One set of credentials. `Debug` redacts the secret and the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// AccessKey id (`LTAI...` or `STS....`); not a secret, it travels in the Authorization header.
    pub access_key_id: String,
    /// AccessKey secret.
    pub access_key_secret: Secret,
    /// STS security token, for RAM-role and STS credentials.
    pub security_token: Option<Secret>,
    /// When STS credentials expire.
    pub expiration: Option<DateTime<Utc>>,
    /// Where they came from.
    pub source: CredentialSource,
}

/// The state of the credentials, for the agent's `credentials` condition. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct CredentialStatus {
    /// Where credentials come from (human readable), empty before the first fetch.
    pub source: String,
    /// Whether valid credentials are held right now.
    pub valid: bool,
    /// When the held credentials expire (STS).
    pub expiration: Option<DateTime<Utc>>,
    /// When they were last fetched.
    pub last_refresh: Option<DateTime<Utc>>,
    /// The last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
}

/// Hands out valid credentials: static ones as they are, RAM-role ones refreshed before expiry.
pub struct CredentialsProvider {
    inner: Inner,
}

enum Inner {
    Static(Credentials),
    RamRole(Box<RamRole>),
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsProvider")
            .field("status", &self.status())
            .finish()
    }
}

impl CredentialsProvider {
    /// Static credentials (config or environment).
    pub fn fixed(credentials: Credentials) -> Self {
        Self {
            inner: Inner::Static(credentials),
        }
    }

    /// Picks the first source of the chain that is present. Nothing is fetched yet: RAM-role
    /// credentials are fetched on the first [`CredentialsProvider::get`].
    pub fn from_settings(
        cfg: &Settings,
        env: &EnvVars,
        metadata: Option<Arc<MetadataClient>>,
        clock: Clock,
    ) -> Result<Self, Error> {
        let id = cfg.access_key_id.trim();
        let secret = cfg.access_key_secret.expose().trim();
        match (id.is_empty(), secret.is_empty()) {
            (false, false) => {
                return Ok(Self::fixed(Credentials {
                    access_key_id: id.to_string(),
                    access_key_secret: Secret::new(secret),
                    security_token: None,
                    expiration: None,
                    source: CredentialSource::Config,
                }))
            }
            (true, true) => {}
            _ => {
                return Err(Error::Config {
                    field: "cloud.access_key_id".into(),
                    message: "access_key_id and access_key_secret must be set together".into(),
                    fix: "set both, or neither (then the environment or the RAM role is used)"
                        .into(),
                })
            }
        }
        match (env.get(ENV_ACCESS_KEY_ID), env.get(ENV_ACCESS_KEY_SECRET)) {
            (Some(id), Some(secret)) => {
                return Ok(Self::fixed(Credentials {
                    access_key_id: id.to_string(),
                    access_key_secret: Secret::new(secret),
                    security_token: env.get(ENV_SECURITY_TOKEN).map(Secret::new),
                    expiration: None,
                    source: CredentialSource::Environment,
                }))
            }
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => {
                return Err(Error::Credentials {
                    message: format!(
                        "only one of {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} is set"
                    ),
                    fix: "set both, or unset both to use the instance RAM role".into(),
                })
            }
        }
        let Some(metadata) = metadata else {
            return Err(Error::Credentials {
                message: "no credentials: none in [cloud], none in the environment, and no metadata service \
                          (cloud.metadata_url is empty)"
                    .into(),
                fix: format!(
                    "attach a RAM role to the instance and set cloud.metadata_url, or set {ENV_ACCESS_KEY_ID} \
                     and {ENV_ACCESS_KEY_SECRET}"
                ),
            });
        };
        let role = if !cfg.ram_role.trim().is_empty() {
            Some(cfg.ram_role.trim().to_string())
        } else {
            env.get(ENV_ECS_METADATA).map(str::to_string)
        };
        Ok(Self {
            inner: Inner::RamRole(Box::new(RamRole::new(metadata, role, clock))),
        })
    }

    /// Valid credentials, fetching or refreshing RAM-role ones as needed.
    pub async fn get(&self) -> Result<Credentials, Error> {
        match &self.inner {
            Inner::Static(c) => Ok(c.clone()),
            Inner::RamRole(r) => r.get().await,
        }
    }

    /// Forces a refresh on the next [`CredentialsProvider::get`] (after the API said the token
    /// expired). No effect on static credentials.
    pub async fn invalidate(&self) {
        if let Inner::RamRole(r) = &self.inner {
            r.state.lock().await.force = true;
        }
    }

    /// The current state, without secrets.
    pub fn status(&self) -> CredentialStatus {
        match &self.inner {
            Inner::Static(c) => CredentialStatus {
                source: c.source.to_string(),
                valid: true,
                expiration: c.expiration,
                last_refresh: None,
                last_error: None,
            },
            Inner::RamRole(r) => r.status.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

struct RamRole {
    metadata: Arc<MetadataClient>,
    configured_role: Option<String>,
    clock: Clock,
    state: tokio::sync::Mutex<RoleState>,
    status: Mutex<CredentialStatus>,
}

#[derive(Default)]
struct RoleState {
    role: Option<String>,
    creds: Option<Credentials>,
    fetched_at: Option<DateTime<Utc>>,
    next_attempt: Option<DateTime<Utc>>,
    failures: u32,
    last_error: Option<Error>,
    force: bool,
}

/// Refresh this long before expiry at most.
const REFRESH_BEFORE_SECS: i64 = 15 * 60;
/// When the service hands back credentials that are already inside the refresh window (it has not
/// rotated them yet), ask again only after this long.
const REFETCH_SECS: i64 = 60;
/// Backoff after metadata failures: 1 s doubling to 60 s.
const FAILURE_BACKOFF: Exponential =
    Exponential::new(Duration::from_secs(1), Duration::from_secs(60));

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleCredentialsDoc {
    #[serde(default)]
    code: String,
    #[serde(default)]
    access_key_id: String,
    #[serde(default)]
    access_key_secret: String,
    #[serde(default)]
    security_token: String,
    #[serde(default)]
    expiration: String,
}

impl RamRole {
    fn new(metadata: Arc<MetadataClient>, role: Option<String>, clock: Clock) -> Self {
        let source = match &role {
            Some(r) => CredentialSource::RamRole(r.clone()).to_string(),
            None => "the instance RAM role (not yet discovered) from the metadata service".into(),
        };
        Self {
            metadata,
            configured_role: role,
            clock,
            state: tokio::sync::Mutex::new(RoleState::default()),
            status: Mutex::new(CredentialStatus {
                source,
                ..CredentialStatus::default()
            }),
        }
    }

    /// When to refresh credentials fetched at `fetched` that expire at `exp`.
    fn refresh_at(fetched: DateTime<Utc>, exp: DateTime<Utc>) -> DateTime<Utc> {
        let lifetime = exp - fetched;
        let margin = std::cmp::min(chrono::Duration::seconds(REFRESH_BEFORE_SECS), lifetime / 3);
        exp - margin
    }

    async fn get(&self) -> Result<Credentials, Error> {
        let mut st = self.state.lock().await;
        let now = (self.clock)();
        let waiting = st.next_attempt.is_some_and(|t| now < t);
        let valid = st
            .creds
            .as_ref()
            .filter(|c| c.expiration.is_some_and(|exp| now < exp));
        if let Some(c) = valid {
            let exp = c.expiration.unwrap_or(now);
            let fresh = now < Self::refresh_at(st.fetched_at.unwrap_or(now), exp);
            if (fresh && !st.force) || waiting {
                return Ok(c.clone());
            }
        } else if let (true, Some(e)) = (waiting, &st.last_error) {
            // Backing off after a failure and nothing valid to hand out: fail fast, no call.
            return Err(e.clone());
        }
        match self.fetch(&mut st).await {
            Ok(new) => {
                let exp = new.expiration.unwrap_or(now);
                st.force = false;
                st.failures = 0;
                st.last_error = None;
                // Lifetime is measured from when these credentials were first seen, not from a
                // re-fetch that returned them again.
                let same = st.creds.as_ref().is_some_and(|old| {
                    old.access_key_id == new.access_key_id && old.expiration == new.expiration
                });
                if !same || st.fetched_at.is_none() {
                    st.fetched_at = Some(now);
                }
                let fetched = st.fetched_at.unwrap_or(now);
                // Not rotated yet (already inside the refresh window): do not ask again at every call.
                st.next_attempt = (Self::refresh_at(fetched, exp) <= now)
                    .then(|| now + chrono::Duration::seconds(REFETCH_SECS));
                st.creds = Some(new.clone());
                let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                *status = CredentialStatus {
                    source: new.source.to_string(),
                    valid: true,
                    expiration: new.expiration,
                    last_refresh: Some(now),
                    last_error: None,
                };
                Ok(new)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let backoff = FAILURE_BACKOFF.ceiling(st.failures);
                st.next_attempt =
                    Some(now + chrono::Duration::from_std(backoff).unwrap_or_default());
                st.last_error = Some(e.clone());
                let still_valid = st
                    .creds
                    .as_ref()
                    .filter(|c| c.expiration.is_some_and(|exp| now < exp))
                    .cloned();
                {
                    let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
                    status.valid = still_valid.is_some();
                    status.last_error = Some(e.to_string());
                }
                match still_valid {
                    Some(c) => {
                        tracing::warn!(error = %e, expiration = ?c.expiration,
                            "refreshing RAM-role credentials failed; keeping the current ones until they expire");
                        Ok(c)
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self, st: &mut RoleState) -> Result<Credentials, Error> {
        let role = match (&self.configured_role, &st.role) {
            (Some(r), _) | (None, Some(r)) => r.clone(),
            (None, None) => {
                let found = self
                    .metadata
                    .get("ram/security-credentials/", "credentials")
                    .await
                    .map_err(|e| match e {
                        Error::Metadata {
                            transient: false, ..
                        } => no_role_error(),
                        other => other,
                    })?;
                let role = found.lines().next().unwrap_or("").trim().to_string();
                if role.is_empty() {
                    return Err(no_role_error());
                }
                st.role = Some(role.clone());
                role
            }
        };
        let path = format!("ram/security-credentials/{role}");
        let body = self.metadata.get(&path, "credentials").await?;
        let bad = |message: String, source: Option<Cause>| Error::Metadata {
            path: format!("/latest/meta-data/{path}"),
            message,
            transient: true,
            source,
        };
        let doc: RoleCredentialsDoc = serde_json::from_str(&body).map_err(|e| {
            bad(
                format!("not a credentials document: {e}"),
                Some(Cause::new(e)),
            )
        })?;
        if !doc.code.is_empty() && doc.code != "Success" {
            return Err(bad(format!("the service answered Code={}", doc.code), None));
        }
        if doc.access_key_id.is_empty()
            || doc.access_key_secret.is_empty()
            || doc.security_token.is_empty()
        {
            return Err(bad("incomplete credentials document".into(), None));
        }
        let expiration = DateTime::parse_from_rfc3339(doc.expiration.trim())
            .map_err(|e| {
                bad(
                    format!("unreadable Expiration `{}`: {e}", doc.expiration),
                    Some(Cause::new(e)),
                )
            })?
            .with_timezone(&Utc);
        Ok(Credentials {
            access_key_id: doc.access_key_id,
            access_key_secret: Secret::new(doc.access_key_secret),
            security_token: Some(Secret::new(doc.security_token)),
            expiration: Some(expiration),
            source: CredentialSource::RamRole(role),
        })
    }
}

fn no_role_error() -> Error {
    Error::Credentials {
        message: "no RAM role is attached to this instance (metadata ram/security-credentials/ is empty)"
            .into(),
        fix: format!(
            "attach a RAM role with the crossdock policy to the instance, set cloud.ram_role, or set \
             {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        crate::clock::system_clock()
    }

    #[test]
    fn chain_prefers_config_then_environment() {
        let mut cfg = Settings {
            access_key_id: "AKCFG".into(),
            access_key_secret: Secret::new("S1"),
            ..Default::default()
        };
        let env = EnvVars::from_pairs([
            (ENV_ACCESS_KEY_ID, "AKENV"),
            (ENV_ACCESS_KEY_SECRET, "S2"),
            (ENV_SECURITY_TOKEN, "T2"),
        ]);
        let p = CredentialsProvider::from_settings(&cfg, &env, None, clock()).unwrap();
        assert_eq!(p.status().source, CredentialSource::Config.to_string());
        cfg.access_key_id.clear();
        cfg.access_key_secret = Secret::default();
        let p = CredentialsProvider::from_settings(&cfg, &env, None, clock()).unwrap();
        let Inner::Static(c) = &p.inner else {
            panic!("static expected")
        };
        assert_eq!(c.access_key_id, "AKENV");
        assert_eq!(c.security_token.as_ref().unwrap().expose(), "T2");
        assert_eq!(c.source, CredentialSource::Environment);
        // Nothing anywhere and no metadata: an error that names the fix.
        let err = CredentialsProvider::from_settings(&cfg, &EnvVars::default(), None, clock())
            .unwrap_err();
        assert!(err.to_string().contains("RAM role"), "{err}");
        // Half an AccessKey in the environment is an error, not a silent fallback.
        let half = EnvVars::from_pairs([(ENV_ACCESS_KEY_ID, "AK")]);
        assert!(CredentialsProvider::from_settings(&cfg, &half, None, clock()).is_err());
    }

    #[test]
    fn debug_of_credentials_and_env_redacts() {
        let c = Credentials {
            access_key_id: "AK".into(),
            access_key_secret: Secret::new("THE-SECRET"),
            security_token: Some(Secret::new("THE-TOKEN")),
            expiration: None,
            source: CredentialSource::Environment,
        };
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("THE-SECRET") && !dbg.contains("THE-TOKEN"),
            "{dbg}"
        );
        let env = EnvVars::from_pairs([(ENV_ACCESS_KEY_SECRET, "THE-SECRET")]);
        assert!(!format!("{env:?}").contains("THE-SECRET"));
        let p = CredentialsProvider::fixed(c);
        assert!(!format!("{p:?}").contains("THE-SECRET"));
    }

    #[test]
    fn refresh_point_is_well_before_expiry() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let six_h = t0 + chrono::Duration::hours(6);
        assert_eq!(
            RamRole::refresh_at(t0, six_h),
            six_h - chrono::Duration::minutes(15)
        );
        let short = t0 + chrono::Duration::minutes(15);
        assert_eq!(
            RamRole::refresh_at(t0, short),
            t0 + chrono::Duration::minutes(10)
        );
    }
}
