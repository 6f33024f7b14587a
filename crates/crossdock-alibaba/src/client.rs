//! The signed RPC client for the VPC (2016-04-28) and ECS (2014-05-26) APIs, with retries.
//!
//! Every call is `POST /` with the parameters in the query and an empty body, signed with
//! ACS3-HMAC-SHA256 ([`crate::signing`]). [`Client::call`] retries what [`crate::ErrorClass::Retryable`]
//! says is transient, waiting [`RetryPolicy::delay`] between attempts (the server's rate-limit hint
//! when it gives one), within the per-call attempt/time limits and the client-wide [`RetryBudget`].
//! Writes are safe to retry: creates carry a deterministic `ClientToken`, deletes of a vanished entry
//! come back as not-found, and the source/destination-check change is idempotent. The batch writes of
//! fleet mode (`CreateRouteEntries`, `DeleteRouteEntries`) carry no token and are sent once: their
//! caller paces retries, and a retried batch is still safe because an entry that did commit comes back
//! per entry as a duplicate (create) or not found (delete).
//!
//! Endpoints are the region's public ones unless configured; `http://` is accepted so the lab's
//! emulator can be used. Environment proxies are ignored (a VPC host reaches the endpoints directly,
//! and tests must never leak to a proxy).

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::clock::{system_clock, Clock};
use crate::counters::{CallCounters, Snapshot};
use crate::credentials::{CredentialStatus, CredentialsProvider};
use crate::error::{ApiError, Cause, Error, ErrorClass};
use crate::product::Product;
use crate::retry::{
    rate_limit_hint, tokio_sleeper, RetryBudget, RetryPolicy, Sleeper, ThrottleGate,
};
use crate::signing;
use crate::transport::{body_failure_kind, send_failure_kind, transport_message};
use crate::types::*;

/// Options of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Region (`RegionId` of every call, and the default endpoints).
    pub region_id: String,
    /// VPC endpoint; empty = `https://vpc.<region>.aliyuncs.com`.
    pub vpc_endpoint: String,
    /// ECS endpoint; empty = `https://ecs.<region>.aliyuncs.com`.
    pub ecs_endpoint: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Retries of one call.
    pub retry: RetryPolicy,
    /// Capacity of the client-wide retry budget (tokens; a retry costs 5, a success returns 1).
    pub retry_budget: u64,
    /// First window of the throttle gate ([`crate::ThrottleGate`]): after a throttled answer, every call of
    /// this client waits a random time in [0, window] first.
    pub throttle_window: Duration,
    /// Largest window of the throttle gate.
    pub throttle_window_max: Duration,
}

impl ClientOptions {
    /// Defaults for a region: public endpoints, 10 s timeout, default retry policy.
    pub fn new(region_id: impl Into<String>) -> Self {
        Self {
            region_id: region_id.into(),
            vpc_endpoint: String::new(),
            ecs_endpoint: String::new(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            retry_budget: 100,
            throttle_window: Duration::from_secs(1),
            throttle_window_max: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://host[:port]/`
    base: reqwest::Url,
    /// `host[:port]` as sent in the Host header.
    host: String,
}

impl Endpoint {
    fn parse(raw: &str, field: &str) -> Result<Self, Error> {
        let bad = |message: String| {
            Error::Config {
            field: field.to_string(),
            message,
            fix: format!(
                "set {field} to http(s)://host[:port], or leave it empty for the region's public endpoint"
            ),
        }
        };
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|e| bad(format!("`{raw}` is not a URL: {e}")))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(bad(format!("`{raw}` is neither http nor https")));
        }
        let Some(host) = url.host_str() else {
            return Err(bad(format!("`{raw}` has no host")));
        };
        if !(url.path() == "/" || url.path().is_empty()) || url.query().is_some() {
            return Err(bad(format!(
                "`{raw}` has a path or query; RPC calls go to `/`"
            )));
        }
        let host = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        Ok(Self { base: url, host })
    }
}

/// The VPC/ECS API client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Client {
    http: reqwest::Client,
    region: String,
    vpc: Endpoint,
    ecs: Endpoint,
    credentials: Arc<CredentialsProvider>,
    retry: RetryPolicy,
    budget: RetryBudget,
    gate: ThrottleGate,
    /// When the account last throttled a call of this client.
    throttled_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    counters: Arc<CallCounters>,
    sleeper: Sleeper,
    clock: Clock,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("region", &self.region)
            .field("vpc_endpoint", &self.vpc.base.as_str())
            .field("ecs_endpoint", &self.ecs.base.as_str())
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Largest page sizes the APIs accept.
const ROUTE_ENTRY_PAGE: &str = "100";
const ROUTE_TABLE_PAGE: u64 = 50;
const VSWITCH_PAGE: u64 = 50;
const INSTANCE_PAGE: &str = "100";
/// A listing that goes on for longer than this many pages is treated as a broken server.
const MAX_PAGES: usize = 1000;

impl Client {
    /// A client with the given credentials. `counters` may be shared with the metadata client so that
    /// one snapshot shows every call.
    pub fn new(
        opts: ClientOptions,
        credentials: Arc<CredentialsProvider>,
        counters: Arc<CallCounters>,
    ) -> Result<Self, Error> {
        if opts.region_id.trim().is_empty() {
            return Err(Error::Config {
                field: "cloud.region_id".into(),
                message: "is empty".into(),
                fix: "set cloud.region_id or let it be read from the metadata service".into(),
            });
        }
        let region = opts.region_id.trim().to_string();
        let vpc_raw = if opts.vpc_endpoint.trim().is_empty() {
            Product::Vpc.default_endpoint(&region)
        } else {
            opts.vpc_endpoint.clone()
        };
        let ecs_raw = if opts.ecs_endpoint.trim().is_empty() {
            Product::Ecs.default_endpoint(&region)
        } else {
            opts.ecs_endpoint.clone()
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(opts.timeout)
            .connect_timeout(opts.connect_timeout)
            .user_agent(concat!("crossdock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config {
                field: "cloud".into(),
                message: format!("cannot build an HTTP client: {e}"),
                fix: "report this as a bug".into(),
            })?;
        Ok(Self {
            http,
            vpc: Endpoint::parse(&vpc_raw, "cloud.vpc_endpoint")?,
            ecs: Endpoint::parse(&ecs_raw, "cloud.ecs_endpoint")?,
            region,
            credentials,
            retry: opts.retry,
            budget: RetryBudget::new(opts.retry_budget),
            gate: ThrottleGate::new(opts.throttle_window, opts.throttle_window_max),
            throttled_at: std::sync::Mutex::new(None),
            counters,
            sleeper: tokio_sleeper(),
            clock: system_clock(),
        })
    }

    /// Replaces how the client sleeps between retries (tests record instead of waiting).
    pub fn with_sleeper(mut self, sleeper: Sleeper) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Replaces the clock used for `x-acs-date`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The call counters.
    pub fn counters(&self) -> Snapshot {
        self.counters.snapshot()
    }

    /// The credentials' state (no secrets).
    pub fn credential_status(&self) -> CredentialStatus {
        self.credentials.status()
    }

    /// The throttle gate's current window (zero: no account-wide throttling seen lately).
    pub fn throttle_window(&self) -> Duration {
        self.gate.window()
    }

    /// Whether the account throttled a call of this client in the last `period`.
    pub fn throttled_within(&self, period: Duration) -> bool {
        self.throttled_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < period)
    }

    /// Tokens left in the retry budget.
    pub fn retry_budget_available(&self) -> u64 {
        self.budget.available()
    }

    /// Calls `action` with `params` (`RegionId` is added unless present) and returns the JSON body of
    /// the success answer, retrying transient failures.
    pub async fn call(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, Error> {
        self.call_with_attempts(product, action, params, self.retry.max_attempts)
            .await
    }

    /// [`Client::call`] with at most `max_attempts` attempts. With 1 the caller paces its own retries
    /// (route writes): the call goes out at once, without the throttle gate's wait, and its answer
    /// still tells the gate whether the account is throttled. Holding a route write back behind the
    /// reads would leave the table idle while it is the one thing every host waits for.
    async fn call_with_attempts(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, String)],
        max_attempts: u32,
    ) -> Result<serde_json::Value, Error> {
        let mut owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if !owned.iter().any(|(k, _)| k == "RegionId") {
            owned.push(("RegionId".into(), self.region.clone()));
        }
        let started = tokio::time::Instant::now();
        let mut waited = Duration::ZERO;
        let mut attempt: u32 = 0;
        let caller_paced = max_attempts == 1;
        let mut pending_wait = if caller_paced {
            Duration::ZERO
        } else {
            self.gate.delay()
        };
        loop {
            attempt += 1;
            if !pending_wait.is_zero() {
                (self.sleeper)(pending_wait).await;
                waited += pending_wait;
            }
            let result = self.attempt(product, action, &owned).await;
            let err = match result {
                Ok(v) => {
                    self.gate.passed();
                    self.budget.refund();
                    return Ok(v);
                }
                Err(e) => e,
            };
            if err.is_throttling() {
                self.gate.throttled();
                *self.throttled_at.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(tokio::time::Instant::now());
            } else {
                self.gate.passed();
            }
            if err.is_expired_token() {
                // Also when the caller retries: its next attempt must not sign with this one.
                self.credentials.invalidate().await;
            }
            if err.class() != ErrorClass::Retryable || attempt >= max_attempts {
                return Err(err);
            }
            // Our backoff (or the server's hint), or the throttle gate's wait if that is longer.
            let delay = self
                .retry
                .delay(attempt, err.retry_hint())
                .max(self.gate.delay());
            // Time budget of this call: real elapsed time or the sum of our waits, whichever is larger
            // (the latter keeps the limit meaningful when the sleeper does not really sleep).
            let spent = started.elapsed().max(waited);
            if spent + delay > self.retry.max_elapsed {
                tracing::debug!(
                    action,
                    attempt,
                    "giving up: the call's time budget is spent"
                );
                return Err(err);
            }
            if !self.budget.try_spend() {
                self.counters.record_budget_exhausted();
                tracing::warn!(
                    action,
                    "not retrying: the client's retry budget is exhausted"
                );
                return Err(err);
            }
            self.counters.record_retry();
            tracing::debug!(action, attempt, ?delay, error = %err, "retrying");
            pending_wait = delay;
        }
    }

    async fn attempt(
        &self,
        product: Product,
        action: &str,
        params: &[(String, String)],
    ) -> Result<serde_json::Value, Error> {
        let endpoint = match product {
            Product::Vpc => &self.vpc,
            Product::Ecs => &self.ecs,
        };
        let creds = self.credentials.get().await?;
        let date = (self.clock)().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        let headers = signing::rpc_headers(
            &endpoint.host,
            action,
            product.version(),
            &date,
            &nonce,
            &creds.access_key_id,
            creds.security_token.as_ref().map(|t| t.expose()),
        );
        let signed = signing::sign(
            "POST",
            params,
            headers,
            &creds.access_key_id,
            creds.access_key_secret.expose(),
        );
        let mut url = endpoint.base.clone();
        url.set_path("/");
        url.set_query(Some(&signed.query));
        let mut req = self.http.post(url).header("accept", "application/json");
        for (k, v) in &signed.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.counters.record(&endpoint.host, action, "transport");
                return Err(Error::Transport {
                    action: action.to_string(),
                    endpoint: format!("{}://{}", endpoint.base.scheme(), endpoint.host),
                    kind: send_failure_kind(&e),
                    message: transport_message(&e),
                    source: Some(Cause::new(e)),
                });
            }
        };
        let status = resp.status().as_u16();
        let hint = rate_limit_hint(
            resp.headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
        );
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.counters.record(&endpoint.host, action, "transport");
                return Err(Error::Transport {
                    action: action.to_string(),
                    endpoint: format!("{}://{}", endpoint.base.scheme(), endpoint.host),
                    kind: body_failure_kind(&e),
                    message: transport_message(&e),
                    source: Some(Cause::new(e)),
                });
            }
        };
        let parsed = serde_json::from_slice::<serde_json::Value>(&body);
        if (200..300).contains(&status) {
            return match parsed {
                Ok(v) if v.is_object() => {
                    self.counters.record(&endpoint.host, action, "ok");
                    Ok(v)
                }
                other => {
                    self.counters.record(&endpoint.host, action, "permanent");
                    Err(Error::Decode {
                        action: action.to_string(),
                        message: format!("HTTP {status} with a body that is not a JSON object"),
                        source: other.err().map(Cause::new),
                    })
                }
            };
        }
        let json = parsed.ok();
        let field = |name: &str| {
            json.as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let code = match field("Code") {
            c if c.is_empty() => format!("HTTP{status}"),
            c => c,
        };
        let message = match field("Message") {
            m if m.is_empty() => String::from_utf8_lossy(&body).chars().take(200).collect(),
            m => m,
        };
        let err = ApiError {
            product,
            action: action.to_string(),
            code,
            message,
            request_id: field("RequestId"),
            http_status: status,
            retry_hint: hint,
        };
        if err.is_throttling() {
            self.counters.record_throttled();
        }
        self.counters
            .record(&endpoint.host, action, err.class().label());
        Err(Error::Api(err))
    }

    async fn call_typed<T: DeserializeOwned>(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, String)],
    ) -> Result<T, Error> {
        self.call_typed_with_attempts(product, action, params, self.retry.max_attempts)
            .await
    }

    async fn call_typed_with_attempts<T: DeserializeOwned>(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, String)],
        max_attempts: u32,
    ) -> Result<T, Error> {
        let v = self
            .call_with_attempts(product, action, params, max_attempts)
            .await?;
        serde_json::from_value(v).map_err(|e| Error::Decode {
            action: action.to_string(),
            message: e.to_string(),
            source: Some(Cause::new(e)),
        })
    }

    /// `DescribeRouteTableList` for a VPC, every page.
    pub async fn describe_route_table_list(&self, vpc_id: &str) -> Result<Vec<RouteTable>, Error> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES as u64 {
            let raw: RawRouteTableList = self
                .call_typed(
                    Product::Vpc,
                    "DescribeRouteTableList",
                    &[
                        ("VpcId", vpc_id.to_string()),
                        ("PageNumber", page.to_string()),
                        ("PageSize", ROUTE_TABLE_PAGE.to_string()),
                    ],
                )
                .await?;
            let items = raw.router_table_list.unwrap_or_default().items;
            let n = items.len() as u64;
            out.extend(items.into_iter().map(RouteTable::from));
            if n == 0 || out.len() as u64 >= raw.total_count {
                return Ok(out);
            }
        }
        Err(too_many_pages("DescribeRouteTableList"))
    }

    /// `DescribeRouteEntryList` of a table with filters, following `NextToken` to the end.
    pub async fn describe_route_entry_list(
        &self,
        route_table_id: &str,
        filter: &RouteEntryFilter,
    ) -> Result<Vec<RouteEntry>, Error> {
        let mut base: Vec<(&str, String)> = vec![
            ("RouteTableId", route_table_id.to_string()),
            ("MaxResult", ROUTE_ENTRY_PAGE.to_string()),
        ];
        if let Some(v) = &filter.destination_cidr_block {
            base.push(("DestinationCidrBlock", v.clone()));
        }
        if let Some(v) = &filter.next_hop_id {
            base.push(("NextHopId", v.clone()));
        }
        if let Some(v) = &filter.route_entry_type {
            base.push(("RouteEntryType", v.clone()));
        }
        if let Some(v) = &filter.route_entry_name {
            base.push(("RouteEntryName", v.clone()));
        }
        self.paged(
            Product::Vpc,
            "DescribeRouteEntryList",
            base,
            |raw: RawRouteEntryList| {
                let items = raw.route_entrys.unwrap_or_default().items;
                (
                    items.into_iter().map(RouteEntry::from).collect(),
                    raw.next_token,
                )
            },
        )
        .await
    }

    /// A `NextToken`-paged listing: calls `action` with `base` (plus the token) until the token runs
    /// out; `page` splits one answer into its items and the next token. A token answered twice or
    /// more than `MAX_PAGES` pages is an error, never an endless loop.
    async fn paged<R: DeserializeOwned, T>(
        &self,
        product: Product,
        action: &'static str,
        base: Vec<(&str, String)>,
        page: impl Fn(R) -> (Vec<T>, Option<String>),
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = base.clone();
            if let Some(t) = &token {
                params.push(("NextToken", t.clone()));
            }
            let raw: R = self.call_typed(product, action, &params).await?;
            let (items, next) = page(raw);
            out.extend(items);
            match next.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                Some(_) => return Err(same_token_twice(action)),
                None => return Ok(out),
            }
        }
        Err(too_many_pages(action))
    }

    /// `CreateRouteEntry` with an `Instance` next hop; returns the new `RouteEntryId`.
    pub async fn create_route_entry(&self, req: &CreateRouteEntry) -> Result<String, Error> {
        self.create_route_entry_with_attempts(req, self.retry.max_attempts)
            .await
    }

    /// `CreateRouteEntry`, one attempt: for a caller that paces its own retries of a busy table
    /// (`TaskConflict`, `IncorrectRouteEntryStatus`) and of throttling, so that many hosts writing
    /// to one table do not each run a second, unpaced retry loop underneath. Retrying with the same
    /// `client_token` is safe: a write that did commit answers with the same entry.
    pub async fn create_route_entry_once(&self, req: &CreateRouteEntry) -> Result<String, Error> {
        self.create_route_entry_with_attempts(req, 1).await
    }

    async fn create_route_entry_with_attempts(
        &self,
        req: &CreateRouteEntry,
        max_attempts: u32,
    ) -> Result<String, Error> {
        let raw: RawCreateRouteEntry = self
            .call_typed_with_attempts(
                Product::Vpc,
                "CreateRouteEntry",
                &[
                    ("RouteTableId", req.route_table_id.clone()),
                    ("DestinationCidrBlock", req.destination_cidr_block.clone()),
                    ("NextHopType", "Instance".to_string()),
                    ("NextHopId", req.next_hop_id.clone()),
                    ("RouteEntryName", req.name.clone()),
                    ("Description", req.description.clone()),
                    ("ClientToken", req.client_token.clone()),
                ],
                max_attempts,
            )
            .await?;
        Ok(raw.route_entry_id)
    }

    /// `DeleteRouteEntry` by id. A vanished entry comes back as an error of class `NotFound`.
    pub async fn delete_route_entry(&self, route_entry_id: &str) -> Result<(), Error> {
        self.call(
            Product::Vpc,
            "DeleteRouteEntry",
            &[("RouteEntryId", route_entry_id.to_string())],
        )
        .await
        .map(|_| ())
    }

    /// `CreateRouteEntries` (next hop type `Instance`), one attempt: the caller paces retries of a
    /// refused call (`TaskConflict`, throttling) as for [`Client::create_route_entry_once`]. The answer
    /// can be a partial success (HTTP 200 with `FailedRouteEntries`). An empty batch makes no call;
    /// more than [`MAX_ROUTE_BATCH`] entries is refused before sending.
    pub async fn create_route_entries_once(
        &self,
        routes: &[NewRoute],
    ) -> Result<BatchResult, Error> {
        let mut params = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let key = |k: &str| format!("RouteEntries.{}.{k}", i + 1);
            params.push((key("RouteTableId"), r.route_table_id.clone()));
            params.push((key("DstCidrBlock"), r.destination_cidr_block.clone()));
            params.push((key("NextHop"), r.next_hop_id.clone()));
            params.push((key("NextHopType"), "Instance".to_string()));
            if !r.name.is_empty() {
                params.push((key("Name"), r.name.clone()));
            }
            if !r.description.is_empty() {
                params.push((key("Description"), r.description.clone()));
            }
        }
        self.batch_once(Product::Vpc, "CreateRouteEntries", routes.len(), params)
            .await
    }

    /// `DeleteRouteEntries`, one attempt (see [`Client::create_route_entries_once`]). Entries that
    /// are already gone come back in `FailedRouteEntries` with a not-found code.
    pub async fn delete_route_entries_once(
        &self,
        entries: &[RouteToDelete],
    ) -> Result<BatchResult, Error> {
        let mut params = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let key = |k: &str| format!("RouteEntries.{}.{k}", i + 1);
            params.push((key("RouteTableId"), e.route_table_id().to_string()));
            match e {
                RouteToDelete::ById { route_entry_id, .. } => {
                    params.push((key("RouteEntryId"), route_entry_id.clone()));
                }
                RouteToDelete::ByDestination {
                    destination_cidr_block,
                    next_hop_id,
                    ..
                } => {
                    params.push((key("DstCidrBlock"), destination_cidr_block.clone()));
                    params.push((key("NextHop"), next_hop_id.clone()));
                }
            }
        }
        self.batch_once(Product::Vpc, "DeleteRouteEntries", entries.len(), params)
            .await
    }

    async fn batch_once(
        &self,
        product: Product,
        action: &str,
        entries: usize,
        params: Vec<(String, String)>,
    ) -> Result<BatchResult, Error> {
        if entries == 0 {
            return Ok(BatchResult::default());
        }
        if entries > MAX_ROUTE_BATCH {
            return Err(Error::Config {
                field: format!("{action} RouteEntries"),
                message: format!(
                    "{entries} entries in one call; the API takes at most {MAX_ROUTE_BATCH}"
                ),
                fix: format!(
                    "split the batch into calls of at most {MAX_ROUTE_BATCH} entries \
                     (crossdock_alibaba::MAX_ROUTE_BATCH); this is a bug of the caller"
                ),
            });
        }
        let params: Vec<(&str, String)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let raw: RawBatchResult = self
            .call_typed_with_attempts(product, action, &params, 1)
            .await?;
        Ok(raw.into())
    }

    /// ECS `DescribeInstances` with the query's filters, every page (`NextToken`). Instance ids go
    /// as a JSON array, at most [`MAX_INSTANCE_IDS`] per call; a longer list is split into several
    /// listings whose results are concatenated. A released instance is simply absent.
    pub async fn describe_instances(&self, q: &InstanceQuery) -> Result<Vec<Instance>, Error> {
        let mut base: Vec<(&str, String)> = vec![("MaxResults", INSTANCE_PAGE.to_string())];
        if let Some(v) = &q.vpc_id {
            base.push(("VpcId", v.clone()));
        }
        if let Some(t) = &q.tag {
            base.push(("Tag.1.Key", t.key.clone()));
            base.push(("Tag.1.Value", t.value.clone()));
        }
        if q.instance_ids.is_empty() {
            return self.describe_instances_pages(base).await;
        }
        let mut out = Vec::new();
        for chunk in q.instance_ids.chunks(MAX_INSTANCE_IDS) {
            let mut params = base.clone();
            params.push(("InstanceIds", serde_json::Value::from(chunk).to_string()));
            out.extend(self.describe_instances_pages(params).await?);
        }
        Ok(out)
    }

    async fn describe_instances_pages(
        &self,
        base: Vec<(&str, String)>,
    ) -> Result<Vec<Instance>, Error> {
        self.paged(
            Product::Ecs,
            "DescribeInstances",
            base,
            |raw: RawInstances| {
                let items = raw.instances.unwrap_or_default().items;
                (
                    items.into_iter().map(Instance::from).collect(),
                    raw.next_token,
                )
            },
        )
        .await
    }

    /// `DescribeVSwitches` of a VPC, every page.
    pub async fn describe_vswitches(&self, vpc_id: &str) -> Result<Vec<VSwitch>, Error> {
        self.describe_vswitches_with_attempts(vpc_id, self.retry.max_attempts)
            .await
    }

    /// `DescribeVSwitches` with one attempt per page and without the throttle gate's wait: for a
    /// caller that decides itself when to try again after a refusal (a fleet member at boot, see
    /// `crossdock-routes`' boot pacing).
    pub async fn describe_vswitches_once(&self, vpc_id: &str) -> Result<Vec<VSwitch>, Error> {
        self.describe_vswitches_with_attempts(vpc_id, 1).await
    }

    async fn describe_vswitches_with_attempts(
        &self,
        vpc_id: &str,
        max_attempts: u32,
    ) -> Result<Vec<VSwitch>, Error> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES as u64 {
            let raw: RawVSwitchList = self
                .call_typed_with_attempts(
                    Product::Vpc,
                    "DescribeVSwitches",
                    &[
                        ("VpcId", vpc_id.to_string()),
                        ("PageNumber", page.to_string()),
                        ("PageSize", VSWITCH_PAGE.to_string()),
                    ],
                    max_attempts,
                )
                .await?;
            let items = raw.vswitches.unwrap_or_default().items;
            let n = items.len() as u64;
            out.extend(items.into_iter().map(VSwitch::from));
            if n == 0 || out.len() as u64 >= raw.total_count {
                return Ok(out);
            }
        }
        Err(too_many_pages("DescribeVSwitches"))
    }

    /// `DescribeVpcAttribute`.
    pub async fn describe_vpc_attribute(&self, vpc_id: &str) -> Result<VpcAttribute, Error> {
        let raw: RawVpcAttribute = self
            .call_typed(
                Product::Vpc,
                "DescribeVpcAttribute",
                &[("VpcId", vpc_id.to_string())],
            )
            .await?;
        Ok(raw.into())
    }

    /// ECS `DescribeNetworkInterfaces` for one ENI.
    pub async fn describe_network_interface(
        &self,
        eni_id: &str,
    ) -> Result<NetworkInterface, Error> {
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut params = vec![
                ("NetworkInterfaceId.1", eni_id.to_string()),
                ("MaxResults", "100".to_string()),
            ];
            if let Some(t) = &token {
                params.push(("NextToken", t.clone()));
            }
            let raw: RawNetworkInterfaces = self
                .call_typed(Product::Ecs, "DescribeNetworkInterfaces", &params)
                .await?;
            if let Some(found) = raw
                .network_interface_sets
                .unwrap_or_default()
                .items
                .into_iter()
                .find(|n| n.network_interface_id == eni_id)
            {
                return Ok(found.into());
            }
            match raw.next_token.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => break,
            }
        }
        Err(Error::Api(ApiError {
            http_status: 404,
            ..ApiError::new(
                Product::Ecs,
                "DescribeNetworkInterfaces",
                "InvalidEniId.NotFound",
                format!("network interface {eni_id} is not in this region"),
            )
        }))
    }

    /// ECS `ModifyNetworkInterfaceAttribute` setting `SourceDestCheck`.
    pub async fn modify_source_dest_check(&self, eni_id: &str, enabled: bool) -> Result<(), Error> {
        self.call(
            Product::Ecs,
            "ModifyNetworkInterfaceAttribute",
            &[
                ("NetworkInterfaceId", eni_id.to_string()),
                ("SourceDestCheck", enabled.to_string()),
            ],
        )
        .await
        .map(|_| ())
    }
}

fn same_token_twice(action: &str) -> Error {
    Error::Decode {
        action: action.to_string(),
        message: "the server returned the same NextToken twice".into(),
        source: None,
    }
}

fn too_many_pages(action: &str) -> Error {
    Error::Decode {
        action: action.to_string(),
        message: format!("more than {MAX_PAGES} pages"),
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_build_host_headers() {
        let e = Endpoint::parse("http://127.0.0.1:18080", "f").unwrap();
        assert_eq!(e.host, "127.0.0.1:18080");
        let e = Endpoint::parse("https://vpc.cn-hangzhou.aliyuncs.com/", "f").unwrap();
        assert_eq!(e.host, "vpc.cn-hangzhou.aliyuncs.com");
        let e = Endpoint::parse("http://100.100.100.201:80", "f").unwrap();
        assert_eq!(
            e.host, "100.100.100.201",
            "default port is not part of Host"
        );
        assert!(Endpoint::parse("ftp://x", "f").is_err());
        assert!(Endpoint::parse("http://x/api", "f").is_err());
    }
}
