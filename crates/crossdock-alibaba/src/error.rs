//! Errors as classes the caller can act on, each with the fix an operator should apply.
//!
//! Alibaba's API answers with an error `Code` string; the route reconciler does not care about the
//! several hundred codes, only about what to do next: try again later ([`ErrorClass::Retryable`]),
//! look the route up because the destination already exists ([`ErrorClass::Duplicate`]), count a
//! delete as done ([`ErrorClass::NotFound`]), or stop and tell a human ([`ErrorClass::Permanent`]).
//! [`classify`] is that mapping, as one table; [`Error::fix`] says what to do, naming the RAM action
//! when a permission is missing. Nothing in here ever holds a secret: messages are built from codes,
//! actions, endpoints and the server's own message.

use std::fmt;
use std::time::Duration;

use crate::client::Product;

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

/// Codes that mean "another change is in flight or the service is busy": retry with backoff.
const RETRYABLE_CODES: &[&str] = &[
    "TaskConflict",
    "IncorrectRouteEntryStatus",
    "OperationConflict",
    "IncorrectStatus.RouteTableStatus",
    "OperationFailed.DistibuteLock", // sic, as Alibaba spells it
    "OperationFailed.DistributeLock",
    "OperationFailed.LastTokenProcessing",
    "LastTokenProcessing",
    "ServiceUnavailable",
    "InternalError",
    "UnknownError",
    // STS credentials expired between fetch and use: the client refreshes them and tries again.
    "InvalidSecurityToken.Expired",
];

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
    if RETRYABLE_CODES.contains(&code)
        || code.starts_with("Throttling")
        || code.starts_with("IncorrectStatus.")
        || http_status == 429
        || http_status >= 500
    {
        return ErrorClass::Retryable;
    }
    ErrorClass::Permanent
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
                if code.starts_with("Throttling") || self.http_status == 429 {
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

/// Every error of this crate. `Display` is one line ending in the fix; no variant holds a secret.
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
    },
    /// The API answered 2xx with a body we cannot read.
    Decode {
        /// The action called.
        action: String,
        /// What was wrong with the body.
        message: String,
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

    /// A throttled answer (`Throttling*` or HTTP 429): the account or the API is over its rate.
    pub fn is_throttling(&self) -> bool {
        match self {
            Error::Api(e) => e.code.starts_with("Throttling") || e.http_status == 429,
            _ => false,
        }
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
            Error::Decode { action, message } => {
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

impl std::error::Error for Error {}

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
