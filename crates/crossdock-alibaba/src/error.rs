//! Errors as classes the caller can act on, each with the fix an operator should apply.
//!
//! Alibaba's API answers with an error `Code` string; the route reconciler does not care about the
//! several hundred codes, only about what to do next: try again later ([`ErrorClass::Retryable`]),
//! look the route up because the destination already exists ([`ErrorClass::Duplicate`]), count a
//! delete as done ([`ErrorClass::NotFound`]), or stop and tell a human ([`ErrorClass::Permanent`]).
//! [`classify`] is that mapping, as one table; [`Error::fix`] says what to do, naming the RAM action
//! when a permission is missing. Finer questions the callers ask, for the same table: was it
//! throttling ([`is_throttling`]: the client's throttle gate, the route conditions, the doctor and the
//! benchmarks all mean the same thing by it), or did the service itself fail ([`is_service_fault`]).
//! Nothing in here ever holds a secret: messages are built from codes, actions, endpoints and the
//! server's own message.
//!
//! `Display` is one line ending in the fix. Where a failure has an underlying error (the HTTP
//! client's, the JSON parser's, the date parser's), it is kept as [`std::error::Error::source`], so a
//! caller can walk the chain instead of parsing text.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::product::Product;

/// What the caller should do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Transient (conflicting task, throttling, 5xx, timeout): back off and try again.
    Retryable,
    /// The route's destination already exists in the table: look it up (ours = done, not ours =
    /// conflict), never overwrite.
    Duplicate,
    /// The route entry does not exist (any more): a delete is done.
    NotFound,
    /// Retrying will not help (quota, invalid CIDR, missing permission, ...): report with the fix.
    Permanent,
}

impl ErrorClass {
    /// Lower-case label for metrics (`retryable`, `duplicate`, `not_found`, `permanent`).
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Duplicate => "duplicate",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Permanent => "permanent",
        }
    }
}

/// Codes that mean "another change is in flight": retry with backoff. (Any `IncorrectStatus.*` too.)
const BUSY_CODES: &[&str] = &[
    "TaskConflict",
    "IncorrectRouteEntryStatus",
    "OperationConflict",
    "IncorrectStatus.RouteTableStatus",
    "OperationFailed.DistibuteLock", // sic, as Alibaba spells it
    "OperationFailed.DistributeLock",
    "OperationFailed.LastTokenProcessing",
    "LastTokenProcessing",
];

/// Codes that mean the service itself failed, whatever the HTTP status (as every 5xx does).
const SERVICE_FAULT_CODES: &[&str] = &["ServiceUnavailable", "InternalError", "UnknownError"];

/// STS credentials expired between fetch and use: the client refreshes them and tries again.
const EXPIRED_TOKEN_CODE: &str = "InvalidSecurityToken.Expired";

const DUPLICATE_CODES: &[&str] = &[
    "InvalidCIDRBlock.Duplicate",
    "VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE",
];

const NOT_FOUND_CODES: &[&str] = &["InvalidRouteEntry.NotFound", "InvalidRouteEntryId.NotFound"];

/// Maps an API error code and HTTP status to what the caller should do.
///
/// Duplicate and not-found codes are matched ignoring ASCII case (Alibaba spells `CIDR`/`Cidr` both
/// ways). Any `Throttling*` code, any `IncorrectStatus.*` code, HTTP 429 and every 5xx are retryable;
/// everything else, including unknown codes, is permanent, so an unknown failure is reported instead of
/// hammered.
pub fn classify(code: &str, http_status: u16) -> ErrorClass {
    if DUPLICATE_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        return ErrorClass::Duplicate;
    }
    if NOT_FOUND_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        return ErrorClass::NotFound;
    }
    if is_throttling(code, http_status)
        || is_service_fault(code, http_status)
        || BUSY_CODES.contains(&code)
        || code.starts_with("IncorrectStatus.")
        || code == EXPIRED_TOKEN_CODE
    {
        return ErrorClass::Retryable;
    }
    ErrorClass::Permanent
}

/// Whether an error code is a throttling code (`Throttling`, `Throttling.User`, `Throttling.Api`, ...),
/// for callers that only have the code (call statistics).
pub fn is_throttling_code(code: &str) -> bool {
    code.starts_with("Throttling")
}

/// Whether an answer says the account or the API is over its rate: a throttling code or HTTP 429.
/// Retryable; the one definition behind the client's throttle gate and counter, the `Throttled`
/// route condition and the doctor's "could not ask".
pub fn is_throttling(code: &str, http_status: u16) -> bool {
    is_throttling_code(code) || http_status == 429
}

/// Whether an answer says the service itself failed: any 5xx, or `ServiceUnavailable`,
/// `InternalError`, `UnknownError` whatever the status. Retryable.
pub fn is_service_fault(code: &str, http_status: u16) -> bool {
    http_status >= 500 || SERVICE_FAULT_CODES.contains(&code)
}

/// Whether the code says the credentials themselves are bad (not a missing permission).
pub fn is_auth_code(code: &str) -> bool {
    code.starts_with("InvalidAccessKeyId")
        || code.starts_with("InvalidSecurityToken")
        || code == "SignatureDoesNotMatch"
        || code.starts_with("InvalidAccessKeySecret")
        || code == "IncompleteSignature"
        || code.starts_with("InvalidTimeStamp")
}

/// Whether the code says the caller lacks a RAM permission for the action.
pub fn is_permission_code(code: &str) -> bool {
    code.starts_with("Forbidden") || code == "NoPermission" || code.starts_with("NoPermission.")
}

/// An error answer of the API (HTTP status plus the JSON `Code`, `Message`, `RequestId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Which API (VPC or ECS).
    pub product: Product,
    /// The action called, e.g. `CreateRouteEntry`.
    pub action: String,
    /// Alibaba's error code, e.g. `TaskConflict`; `HTTP<status>` when the body had none.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The request id, for Alibaba support.
    pub request_id: String,
    /// HTTP status.
    pub http_status: u16,
    /// How long the server asked us to wait (rate-limit `TimeLeft` or `Retry-After`), if it said.
    pub retry_hint: Option<Duration>,
}

impl ApiError {
    /// An API error with HTTP status 400 and no request id (for fakes and tests of callers).
    pub fn new(
        product: Product,
        action: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            product,
            action: action.into(),
            code: code.into(),
            message: message.into(),
            request_id: String::new(),
            http_status: 400,
            retry_hint: None,
        }
    }

    /// This error's class.
    pub fn class(&self) -> ErrorClass {
        classify(&self.code, self.http_status)
    }

    /// A throttled answer ([`is_throttling`]).
    pub fn is_throttling(&self) -> bool {
        is_throttling(&self.code, self.http_status)
    }

    /// The service itself failed ([`is_service_fault`]).
    pub fn is_service_fault(&self) -> bool {
        is_service_fault(&self.code, self.http_status)
    }

    /// The RAM action the call needs, e.g. `vpc:CreateRouteEntry`.
    pub fn ram_action(&self) -> String {
        format!("{}:{}", self.product.ram_prefix(), self.action)
    }

    /// What the operator should do about it.
    pub fn fix(&self) -> String {
        let code = self.code.as_str();
        let lower = code.to_ascii_lowercase();
        if is_permission_code(code) {
            return format!(
                "the RAM policy of these credentials does not allow {}: add it to the policy of the \
                 instance RAM role (crossdock needs vpc:DescribeRouteTableList, vpc:DescribeRouteEntryList, \
                 vpc:CreateRouteEntry, vpc:DeleteRouteEntry, vpc:CreateRouteEntries, vpc:DeleteRouteEntries, \
                 vpc:DescribeVSwitches, vpc:DescribeVpcAttribute, ecs:DescribeNetworkInterfaces, \
                 ecs:ModifyNetworkInterfaceAttribute, ecs:DescribeInstances; deploy/ram-policy.json)",
                self.ram_action()
            );
        }
        if code == "SignatureDoesNotMatch" || code.starts_with("InvalidAccessKeySecret") {
            return "the AccessKey secret does not match the AccessKey id: check \
                    ALIBABA_CLOUD_ACCESS_KEY_SECRET or cloud.access_key_secret, or use the instance RAM role"
                .into();
        }
        if code.starts_with("InvalidAccessKeyId") {
            return "the AccessKey id is unknown or disabled: check ALIBABA_CLOUD_ACCESS_KEY_ID or \
                    cloud.access_key_id, or use the instance RAM role"
                .into();
        }
        if code.starts_with("InvalidSecurityToken") {
            return "the STS token was rejected: crossdock refreshes RAM-role credentials itself; if the \
                    token came from ALIBABA_CLOUD_SECURITY_TOKEN, renew it or use the instance RAM role"
                .into();
        }
        if code.starts_with("InvalidTimeStamp") {
            return "the request time is out of range: synchronise this host's clock (chrony/NTP)"
                .into();
        }
        if lower.starts_with("quotaexceeded") || lower.contains("quota") {
            return "the route table has no room for another custom route (default quota 200 entries per \
                    table): delete unused custom routes or raise the route-entry quota in the Quota Center"
                .into();
        }
        match self.class() {
            ErrorClass::Duplicate => {
                return "a route for this destination already exists in the table; crossdock looks it up and \
                        never overwrites a route it does not own"
                    .into()
            }
            ErrorClass::NotFound => return "the route entry is already gone; nothing to do".into(),
            ErrorClass::Retryable => {
                if self.is_throttling() {
                    return "the API rate limit was hit; crossdock backs off and retries. If it persists, \
                            raise cloud.resync_interval_secs or the API quota"
                        .into();
                }
                if self.http_status >= 500 {
                    return "Alibaba Cloud answered with a server error; crossdock retries. If it persists, \
                            check the service status and the endpoint (cloud.vpc_endpoint/cloud.ecs_endpoint)"
                        .into();
                }
                return "another change in this VPC is in progress; crossdock retries with backoff".into();
            }
            ErrorClass::Permanent => {}
        }
        if lower.starts_with("invalidcidrblock") {
            return "the VPC refuses this destination CIDR (it overlaps a vSwitch CIDR, lies in \
                    100.64.0.0/10 or is malformed): give Docker a bridge subnet (bip) outside the VPC's \
                    vSwitch CIDRs and inside cluster_cidrs"
                .into();
        }
        if code.starts_with("InvalidNextHopId") || code == "IllegalParam.NextHopId" {
            return "the next hop instance is not accepted: check cloud.instance_id and cloud.region_id \
                    (the instance must be in this VPC)"
                .into();
        }
        if code.starts_with("InvalidRouteTableId") {
            return "the route table does not exist in this region: check cloud.route_table_ids and \
                    cloud.region_id"
                .into();
        }
        if code.starts_with("InvalidVpcId") || code.starts_with("InvalidVSwitchId") {
            return "the VPC or vSwitch does not exist in this region: check cloud.vpc_id, \
                    cloud.vswitch_id and cloud.region_id"
                .into();
        }
        if code.starts_with("InvalidEniId") || code.starts_with("InvalidNetworkInterfaceId") {
            return "the network interface does not exist: check cloud.eni_id".into();
        }
        if code == "OperationDenied" {
            return "the VPC does not allow this change on that route (system route, or a route owned by \
                    another service)"
                .into();
        }
        format!(
            "look up code {code} in Alibaba Cloud's API error center for {}; quote request id {} to support",
            self.action,
            if self.request_id.is_empty() {
                "(none)"
            } else {
                &self.request_id
            }
        )
    }
}

/// How a request failed to get an answer at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// No answer within the request timeout.
    Timeout,
    /// TCP/TLS connection could not be made.
    Connect,
    /// Anything else (reset, malformed HTTP).
    Other,
}

/// The underlying error of a failure (the HTTP client's, the JSON parser's, ...), kept so that
/// [`std::error::Error::source`] reaches it. Shared, so that [`Error`] stays `Clone`; two causes are
/// equal when they read the same.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Keeps `e`.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }

    /// The error kept.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// Every error of this crate. `Display` is one line ending in the fix; no variant holds a secret.
/// `source()` is the underlying error where there is one (transport, metadata, decode failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The API answered with an error.
    Api(ApiError),
    /// No answer from the API endpoint.
    Transport {
        /// The action attempted.
        action: String,
        /// The endpoint (scheme://host:port).
        endpoint: String,
        /// Timeout, connect or other.
        kind: TransportKind,
        /// What went wrong.
        message: String,
        /// The HTTP client's error.
        source: Option<Cause>,
    },
    /// No usable credentials.
    Credentials {
        /// What went wrong.
        message: String,
        /// What to do.
        fix: String,
    },
    /// The ECS metadata service failed (identity or RAM role credentials).
    Metadata {
        /// The metadata path, e.g. `/latest/meta-data/instance-id`.
        path: String,
        /// What went wrong.
        message: String,
        /// Whether trying again later may help (network error, 5xx) as opposed to e.g. 404.
        transient: bool,
        /// The underlying error (HTTP client, credentials document parser), if any.
        source: Option<Cause>,
    },
    /// The API answered 2xx with a body we cannot read.
    Decode {
        /// The action called.
        action: String,
        /// What was wrong with the body.
        message: String,
        /// The JSON parser's error, if it was one.
        source: Option<Cause>,
    },
    /// A configuration value is unusable.
    Config {
        /// The config field, e.g. `cloud.vpc_endpoint`.
        field: String,
        /// What is wrong.
        message: String,
        /// What to do.
        fix: String,
    },
}

impl Error {
    /// The class of this error. Transport failures are retryable; credential, metadata, decode and
    /// configuration errors are permanent for the call at hand (the credentials provider keeps its
    /// own backoff, and the reconciler retries on its next pass).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Api(e) => e.class(),
            Error::Transport { .. } => ErrorClass::Retryable,
            _ => ErrorClass::Permanent,
        }
    }

    /// The API error code, if the API answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The denied RAM action (`vpc:CreateRouteEntry`) when the error is a missing permission.
    pub fn denied_action(&self) -> Option<String> {
        match self {
            Error::Api(e) if is_permission_code(&e.code) => Some(e.ram_action()),
            _ => None,
        }
    }

    /// Whether the credentials themselves are missing or rejected (as opposed to a missing permission).
    pub fn is_credentials_problem(&self) -> bool {
        match self {
            Error::Api(e) => is_auth_code(&e.code),
            Error::Credentials { .. } => true,
            Error::Metadata { path, .. } => path.contains("security-credentials"),
            _ => false,
        }
    }

    /// A throttled answer ([`is_throttling`]): the account or the API is over its rate.
    pub fn is_throttling(&self) -> bool {
        match self {
            Error::Api(e) => e.is_throttling(),
            _ => false,
        }
    }

    /// The API said the STS token expired: refresh the credentials before the next attempt.
    pub fn is_expired_token(&self) -> bool {
        self.code() == Some(EXPIRED_TOKEN_CODE)
    }

    /// The server's rate-limit hint, if the answer carried one.
    pub fn retry_hint(&self) -> Option<Duration> {
        match self {
            Error::Api(e) => e.retry_hint,
            _ => None,
        }
    }

    /// What the operator should do about it.
    pub fn fix(&self) -> String {
        match self {
            Error::Api(e) => e.fix(),
            Error::Transport {
                endpoint, kind, ..
            } => match kind {
                TransportKind::Timeout => format!(
                    "{endpoint} did not answer in time; crossdock retries. If it persists, check egress \
                     from this host to the endpoint (security group, NAT, DNS) or set cloud.vpc_endpoint / \
                     cloud.ecs_endpoint to the VPC-internal endpoint"
                ),
                _ => format!(
                    "cannot connect to {endpoint}: check DNS and egress from this host, or set \
                     cloud.vpc_endpoint / cloud.ecs_endpoint"
                ),
            },
            Error::Credentials { fix, .. } => fix.clone(),
            Error::Metadata { transient, .. } => {
                if *transient {
                    "the ECS metadata service (cloud.metadata_url) did not answer; crossdock retries. Off ECS, \
                     set the identity fields of [cloud] and provide credentials in the environment"
                        .into()
                } else {
                    "the ECS metadata service does not have this item: set the matching field in [cloud] \
                     (instance_id, region_id, vpc_id, vswitch_id, private_ip, eni_id, ram_role)"
                        .into()
                }
            }
            Error::Decode { .. } => {
                "the endpoint does not speak Alibaba's API: check cloud.vpc_endpoint / cloud.ecs_endpoint"
                    .into()
            }
            Error::Config { fix, .. } => fix.clone(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => {
                write!(
                    f,
                    "{} {} failed: {} ({}, HTTP {}",
                    e.product.name(),
                    e.action,
                    e.code,
                    e.message.trim(),
                    e.http_status
                )?;
                if !e.request_id.is_empty() {
                    write!(f, ", request id {}", e.request_id)?;
                }
                write!(f, ") — fix: {}", e.fix())
            }
            Error::Transport {
                action,
                endpoint,
                message,
                ..
            } => write!(
                f,
                "{action} at {endpoint} failed: {message} — fix: {}",
                self.fix()
            ),
            Error::Credentials { message, fix } => write!(f, "credentials: {message} — fix: {fix}"),
            Error::Metadata { path, message, .. } => {
                write!(f, "metadata {path}: {message} — fix: {}", self.fix())
            }
            Error::Decode {
                action, message, ..
            } => {
                write!(
                    f,
                    "{action}: unreadable response: {message} — fix: {}",
                    self.fix()
                )
            }
            Error::Config {
                field,
                message,
                fix,
            } => write!(f, "{field}: {message} — fix: {fix}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport { source, .. }
            | Error::Metadata { source, .. }
            | Error::Decode { source, .. } => source
                .as_ref()
                .map(|c| c.get() as &(dyn std::error::Error + 'static)),
            Error::Api(_) | Error::Credentials { .. } | Error::Config { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classification table: code, HTTP status, expected class.
    #[test]
    fn classification_table() {
        use ErrorClass::*;
        let table: &[(&str, u16, ErrorClass)] = &[
            ("TaskConflict", 400, Retryable),
            ("IncorrectRouteEntryStatus", 400, Retryable),
            ("OperationConflict", 400, Retryable),
            ("IncorrectStatus.RouteTableStatus", 400, Retryable),
            ("IncorrectStatus.VpcStatus", 400, Retryable),
            ("OperationFailed.DistibuteLock", 400, Retryable),
            ("Throttling", 400, Retryable),
            ("Throttling.User", 400, Retryable),
            ("Throttling.Api", 400, Retryable),
            ("ServiceUnavailable", 503, Retryable),
            ("InternalError", 500, Retryable),
            ("HTTP502", 502, Retryable),
            ("SomethingNew", 503, Retryable),
            ("HTTP429", 429, Retryable),
            ("InvalidSecurityToken.Expired", 400, Retryable),
            ("InvalidCIDRBlock.Duplicate", 400, Duplicate),
            ("InvalidCidrBlock.Duplicate", 400, Duplicate),
            ("VPC_ROUTE_ENTRY_CIDR_BLOCK_DUPLICATE", 200, Duplicate),
            ("InvalidRouteEntry.NotFound", 404, NotFound),
            ("InvalidRouteEntryId.NotFound", 404, NotFound),
            ("QuotaExceeded", 400, Permanent),
            ("QuotaExceeded.RouteEntryNum", 400, Permanent),
            ("InvalidCidrBlock", 400, Permanent),
            ("InvalidCidrBlock.Malformed", 400, Permanent),
            ("InvalidRouteTableId.NotFound", 404, Permanent),
            ("InvalidNextHopId.NotFound", 404, Permanent),
            ("IllegalParam.NextHopId", 400, Permanent),
            ("OperationDenied", 400, Permanent),
            ("Forbidden.RAM", 403, Permanent),
            ("InvalidAccessKeyId.NotFound", 404, Permanent),
            ("SignatureDoesNotMatch", 400, Permanent),
            ("SomethingNew", 400, Permanent),
        ];
        for (code, status, want) in table {
            assert_eq!(
                classify(code, *status),
                *want,
                "code {code} status {status}"
            );
        }
    }

    /// The finer questions, by the same table: throttled, service fault (both retryable).
    #[test]
    fn throttling_and_service_faults() {
        // code, HTTP status, throttling, service fault
        let table: &[(&str, u16, bool, bool)] = &[
            ("Throttling", 400, true, false),
            ("Throttling.User", 400, true, false),
            ("Throttling.Api", 503, true, true),
            ("HTTP429", 429, true, false),
            ("TaskConflict", 400, false, false),
            ("ServiceUnavailable", 400, false, true),
            ("InternalError", 500, false, true),
            ("UnknownError", 400, false, true),
            ("HTTP502", 502, false, true),
            ("QuotaExceeded", 400, false, false),
            ("throttling", 400, false, false),
        ];
        for (code, status, throttled, fault) in table {
            let e = ApiError {
                http_status: *status,
                ..ApiError::new(Product::Vpc, "CreateRouteEntry", *code, "")
            };
            assert_eq!(e.is_throttling(), *throttled, "{code} {status}");
            assert_eq!(Error::Api(e.clone()).is_throttling(), *throttled);
            assert_eq!(e.is_service_fault(), *fault, "{code} {status}");
            if *throttled || *fault {
                assert_eq!(e.class(), ErrorClass::Retryable, "{code} {status}");
            }
        }
        assert!(is_throttling_code("Throttling.User") && !is_throttling_code("HTTP429"));
        let expired = Error::Api(ApiError::new(
            Product::Vpc,
            "X",
            "InvalidSecurityToken.Expired",
            "",
        ));
        assert!(expired.is_expired_token() && !expired.is_throttling());
        let transport = Error::Transport {
            action: "X".into(),
            endpoint: "http://x".into(),
            kind: TransportKind::Timeout,
            message: "timed out".into(),
            source: None,
        };
        assert!(!transport.is_throttling() && !transport.is_expired_token());
    }

    #[test]
    fn source_is_the_kept_cause_and_does_not_change_display_or_equality() {
        use std::error::Error as _;
        let parse = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let text = parse.to_string();
        let with = Error::Decode {
            action: "DescribeVpcAttribute".into(),
            message: text.clone(),
            source: Some(Cause::new(parse)),
        };
        let again = Error::Decode {
            action: "DescribeVpcAttribute".into(),
            message: text.clone(),
            source: Some(Cause::new(
                serde_json::from_str::<serde_json::Value>("{").unwrap_err(),
            )),
        };
        let without = Error::Decode {
            action: "DescribeVpcAttribute".into(),
            message: text.clone(),
            source: None,
        };
        assert_eq!(with.to_string(), without.to_string());
        assert_eq!(with, again, "causes that read the same are equal");
        assert_ne!(with, without);
        let cause = with.source().expect("kept");
        assert!(cause.downcast_ref::<serde_json::Error>().is_some());
        assert_eq!(cause.to_string(), text);
        assert!(Error::Api(ApiError::new(Product::Ecs, "X", "Y", "z"))
            .source()
            .is_none());
    }

    #[test]
    fn fixes_name_the_thing() {
        let e = ApiError::new(Product::Vpc, "CreateRouteEntry", "Forbidden.RAM", "denied");
        assert!(e.fix().contains("vpc:CreateRouteEntry"), "{}", e.fix());
        let e = ApiError::new(
            Product::Ecs,
            "ModifyNetworkInterfaceAttribute",
            "Forbidden.RAM",
            "",
        );
        assert_eq!(
            Error::Api(e.clone()).denied_action().as_deref(),
            Some("ecs:ModifyNetworkInterfaceAttribute")
        );
        let q = ApiError::new(Product::Vpc, "CreateRouteEntry", "QuotaExceeded", "full");
        assert!(q.fix().contains("Quota Center"));
        let c = ApiError::new(
            Product::Vpc,
            "CreateRouteEntry",
            "InvalidCidrBlock",
            "overlap",
        );
        assert!(c.fix().contains("bip"));
        let t = ApiError::new(
            Product::Vpc,
            "DescribeRouteEntryList",
            "Throttling.User",
            "",
        );
        assert!(t.fix().contains("rate limit"));
        let line = Error::Api(q).to_string();
        assert!(!line.contains('\n'));
        assert!(
            line.contains("QuotaExceeded") && line.contains("fix:"),
            "{line}"
        );
    }
}
