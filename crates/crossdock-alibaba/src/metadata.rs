//! The ECS instance metadata service: the raw items behind this host's identity, and its RAM role's
//! STS credentials.
//!
//! Hardened ECS instances only answer requests that carry a session token obtained with
//! `PUT /latest/api/token` (like AWS IMDSv2). [`TokenMode::Auto`] asks for one and falls back to plain
//! requests when the service does not offer it, which is what Alibaba's own credential provider does;
//! [`TokenMode::Required`] (config `metadata_token = "required"` or `ALIBABA_CLOUD_IMDSV1_DISABLED=true`)
//! fails instead of falling back. The token is cached for most of its lifetime and dropped when the
//! service rejects it.
//!
//! The base URL is injectable so tests and the lab never depend on `100.100.100.200`. Proxies from the
//! environment are ignored: the metadata service is link-local and must never go through a proxy.
//! Which items make up the [`crate::Identity`] is [`crate::identity`]'s business.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::counters::CallCounters;
use crate::error::{Cause, Error};
use crate::secret::Secret;
use crate::settings::TokenMode;
use crate::transport::transport_message;

/// Token lifetime asked for, in seconds (the service's maximum).
pub const TOKEN_TTL_SECS: i64 = 21_600;
/// After the token endpoint failed in `Auto` mode, plain requests are used for this long before
/// asking again.
const TOKEN_RETRY_AFTER_SECS: i64 = 300;

enum TokenState {
    Unknown,
    Have {
        token: Secret,
        renew_at: DateTime<Utc>,
    },
    Unavailable {
        retry_at: DateTime<Utc>,
    },
}

/// Client of the metadata service.
pub struct MetadataClient {
    base: String,
    host: String,
    http: reqwest::Client,
    mode: TokenMode,
    token: tokio::sync::Mutex<TokenState>,
    clock: Clock,
    counters: Arc<CallCounters>,
}

impl std::fmt::Debug for MetadataClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataClient")
            .field("base", &self.base)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl MetadataClient {
    /// A client of the metadata service at `base_url` (e.g. `http://100.100.100.200`).
    pub fn new(
        base_url: &str,
        mode: TokenMode,
        clock: Clock,
        counters: Arc<CallCounters>,
    ) -> Result<Self, Error> {
        let url = reqwest::Url::parse(base_url).map_err(|e| Error::Config {
            field: "cloud.metadata_url".into(),
            message: format!("`{base_url}` is not a URL: {e}"),
            fix: "set cloud.metadata_url to http://100.100.100.200 (or the lab's metadata address)"
                .into(),
        })?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(Error::Config {
                field: "cloud.metadata_url".into(),
                message: format!("`{base_url}` is not http(s)"),
                fix: "set cloud.metadata_url to http://100.100.100.200".into(),
            });
        }
        let host = url.host_str().unwrap_or_default().to_string();
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Config {
                field: "cloud.metadata_url".into(),
                message: format!("cannot build an HTTP client: {e}"),
                fix: "report this as a bug".into(),
            })?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_string(),
            host,
            http,
            mode,
            token: tokio::sync::Mutex::new(TokenState::Unknown),
            clock,
            counters,
        })
    }

    /// The token mode in force.
    pub fn mode(&self) -> TokenMode {
        self.mode
    }

    /// `GET /latest/meta-data/<item>`, trimmed. The counters label the call `metadata:<label>`.
    pub async fn get(&self, item: &str, label: &str) -> Result<String, Error> {
        let path = format!("/latest/meta-data/{item}");
        let action = format!("metadata:{label}");
        for attempt in 0..2 {
            let token = self.token().await?;
            let mut req = self.http.get(format!("{}{path}", self.base));
            if let Some(t) = &token {
                req = req.header("X-aliyun-ecs-metadata-token", t.expose());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.counters.record(&self.host, &action, "transport");
                    return Err(Error::Metadata {
                        path,
                        message: transport_message(&e),
                        transient: true,
                        source: Some(Cause::new(e)),
                    });
                }
            };
            let status = resp.status().as_u16();
            if (status == 401 || status == 403) && token.is_some() && attempt == 0 {
                // The token expired or was revoked: drop it and try once more with a fresh one.
                self.counters.record(&self.host, &action, "retryable");
                *self.token.lock().await = TokenState::Unknown;
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            if !(200..300).contains(&status) {
                self.counters.record(
                    &self.host,
                    &action,
                    if status >= 500 {
                        "retryable"
                    } else {
                        "permanent"
                    },
                );
                let hint = if status == 401 || status == 403 {
                    " (the service wants a metadata token: check cloud.metadata_token)"
                } else {
                    ""
                };
                return Err(Error::Metadata {
                    path,
                    message: format!("HTTP {status}{hint}"),
                    transient: status >= 500 || status == 429,
                    source: None,
                });
            }
            self.counters.record(&self.host, &action, "ok");
            return Ok(body.trim().to_string());
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// The session token to send, if any.
    async fn token(&self) -> Result<Option<Secret>, Error> {
        if self.mode == TokenMode::Disabled {
            return Ok(None);
        }
        let mut state = self.token.lock().await;
        let now = (self.clock)();
        match &*state {
            TokenState::Have { token, renew_at } if now < *renew_at => {
                return Ok(Some(token.clone()))
            }
            TokenState::Unavailable { retry_at }
                if now < *retry_at && self.mode == TokenMode::Auto =>
            {
                return Ok(None)
            }
            _ => {}
        }
        match self.fetch_token().await {
            Ok(token) => {
                // Renew with a tenth of the lifetime to spare.
                let renew_at = now + chrono::Duration::seconds(TOKEN_TTL_SECS * 9 / 10);
                *state = TokenState::Have {
                    token: token.clone(),
                    renew_at,
                };
                Ok(Some(token))
            }
            Err(e) if self.mode == TokenMode::Auto => {
                tracing::debug!(error = %e, "metadata token unavailable; using plain metadata requests");
                *state = TokenState::Unavailable {
                    retry_at: now + chrono::Duration::seconds(TOKEN_RETRY_AFTER_SECS),
                };
                Ok(None)
            }
            Err(e) => {
                *state = TokenState::Unknown;
                Err(e)
            }
        }
    }

    async fn fetch_token(&self) -> Result<Secret, Error> {
        let path = "/latest/api/token".to_string();
        let result = self
            .http
            .put(format!("{}{path}", self.base))
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                TOKEN_TTL_SECS.to_string(),
            )
            .send()
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.counters
                    .record(&self.host, "metadata:token", "transport");
                return Err(Error::Metadata {
                    path,
                    message: format!(
                        "no session token: {} (cloud.metadata_token = required)",
                        transport_message(&e)
                    ),
                    transient: true,
                    source: Some(Cause::new(e)),
                });
            }
        };
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        let token = body.trim();
        if !(200..300).contains(&status) || token.is_empty() {
            self.counters
                .record(&self.host, "metadata:token", "permanent");
            return Err(Error::Metadata {
                path,
                message: format!(
                    "no session token (HTTP {status}); the token is required by cloud.metadata_token or \
                     ALIBABA_CLOUD_IMDSV1_DISABLED"
                ),
                transient: status >= 500,
                source: None,
            });
        }
        self.counters.record(&self.host, "metadata:token", "ok");
        Ok(Secret::new(token))
    }
}
