//! The agent's configuration file (`/etc/crossdock/agent.toml`): schema, defaults and validation.
//!
//! Why a crate of its own: the agent, `crossdock doctor` and the lab all read or write this file, and the
//! rules for what is acceptable must be the same everywhere. The schema is the one in
//! `docs/CONTRACTS.md`; every field has a default except `cluster_cidrs`, and unknown fields are
//! rejected so that a misspelt key is an error rather than a silently ignored setting.
//!
//! Every problem is reported as one [`ConfigError`] naming the field, what is wrong and the fix, printed
//! on one line. Nothing is applied from a file that does not validate: [`load`] and [`parse`] run
//! [`Config::validate`] before returning.
//!
//! ```
//! let cfg = crossdock_config::parse("cluster_cidrs = [\"10.10.0.0/16\"]").unwrap();
//! assert_eq!(cfg.resync_interval_secs, 30);
//! assert!(crossdock_config::check_subnet("10.10.3.0/24".parse().unwrap(), &cfg).is_ok());
//! ```

// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod fleet;
pub mod mapping;
pub mod metrics;
pub mod names;

pub use fleet::{ClusterTag, FleetConfig, SubnetConfig, SubnetMode, TagError};
pub use mapping::{MappingError, SubnetMapping};
pub use metrics::MetricsConfig;
pub use names::NamesConfig;

use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where the agent looks for its configuration unless `-c` or `CROSSDOCK_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/crossdock/agent.toml";

/// One configuration problem: which field, what is wrong with it, and what to do about it.
///
/// `Display` renders it on a single line: `<field>: <message> (fix: <fix>)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} (fix: {fix})")]
pub struct ConfigError {
    /// Dotted path of the offending field (`docker.network`, `cluster_cidrs`), or `line N` for a TOML
    /// syntax error, or `file` when the file itself cannot be read.
    pub field: String,
    /// What is wrong, naming the offending value.
    pub message: String,
    /// What the operator should do.
    pub fix: String,
}

impl ConfigError {
    /// Builds an error; newlines are folded so the rendering stays on one line.
    pub fn new(
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
        Self {
            field: one_line(field.into()),
            message: one_line(message.into()),
            fix: one_line(fix.into()),
        }
    }
}

/// A secret string (the explicit AccessKey secret; the API client also keeps STS tokens and metadata
/// session tokens in it). Its `Debug`, `Display` and the effective-config printout never show the value;
/// call [`Secret::expose`] where it is really needed (signing).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether no secret was configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

/// Log output format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Who manages the VPC route for this host's container subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The agent registers the route through Alibaba Cloud's VPC API.
    Alibaba,
    /// Routes are managed outside crossdock (Terraform, the console); the agent only keeps the host
    /// side. This is the default, so that nothing talks to a cloud API unless asked to.
    #[default]
    None,
}

/// Whether the metadata service is asked for an IMDSv2-style session token first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataToken {
    /// Try to get a token, fall back to plain requests if the service does not offer one (default).
    #[default]
    Auto,
    /// Fail if no token can be obtained (hardened instances).
    Required,
    /// Never ask for a token.
    Disabled,
}

/// What to do about the ENI's source/destination check, which drops routed container traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceDestCheck {
    /// Switch it off through the ECS API (default).
    #[default]
    Disable,
    /// Only report it as a failed condition; someone else switches it off.
    Report,
}

/// The whole agent configuration. Field order is the order of the printed effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Every host's container subnet lies inside one of these IPv4 ranges (for example `10.0.0.0/8`).
    /// Traffic from these ranges to the local container subnet is let in, and traffic from the local
    /// subnet to them keeps its source address. Required; no default. Ranges must not overlap.
    #[serde(deserialize_with = "de_cidr_list")]
    pub cluster_cidrs: Vec<Ipv4Net>,
    /// The interface towards the VPC, on which forwarding is switched on. Default `"auto"`: the
    /// interface holding the IPv4 default route.
    pub external_interface: String,
    /// How often the host state (sysctls, iptables rules) is re-checked even without a Docker event,
    /// in seconds. Default 30; 1..=86400.
    pub resync_interval_secs: u64,
    /// The health socket (HTTP over a unix socket, mode 0660). Default `/run/crossdock/agent.sock`.
    pub health_socket: PathBuf,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info` or `crossdock=debug,info`. Default `info`.
    pub log_level: String,
    /// How to reach Docker and which network to serve.
    pub docker: DockerConfig,
    /// iptables settings.
    pub firewall: FirewallConfig,
    /// VPC route registration.
    pub cloud: CloudConfig,
    /// Where the container subnet comes from (`docker` or `derived`).
    pub subnet: SubnetConfig,
    /// Fleet mode: the cluster's members and the clean-up of released ones.
    pub fleet: FleetConfig,
    /// The optional TCP scrape endpoint (`/metrics`, `/healthz`) for Prometheus.
    pub metrics: MetricsConfig,
    /// Container names across hosts: the resolver and the catalog exchange.
    pub names: NamesConfig,
}

/// `[docker]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The Docker Engine API endpoint; only `unix://<absolute path>` is supported. Default
    /// `unix:///var/run/docker.sock`.
    pub host: String,
    /// The Docker network whose subnet is routed to this host. Default `bridge` (the default bridge,
    /// device `docker0`); a user-defined bridge network is named here.
    pub network: String,
    /// Serve this fixed subnet without talking to Docker at all (boot-storm tests of the route side,
    /// benchmarks). Default `""` (unset): the subnet comes from Docker. No firewall rules are kept in
    /// this mode, as there is no bridge; forwarding and routes are.
    #[serde(deserialize_with = "de_opt_cidr", serialize_with = "ser_opt_cidr")]
    pub static_subnet: Option<Ipv4Net>,
}

/// `[firewall]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirewallConfig {
    /// How long one iptables call may wait for the xtables lock (`iptables -w N`), in seconds.
    /// Default 5; 1..=300.
    pub lock_wait_secs: u64,
}

/// `[cloud]`: identity fields left empty are read from the ECS metadata service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloudConfig {
    /// `none` (default): routes are managed elsewhere. `alibaba`: the agent registers them.
    pub provider: Provider,
    /// Region, e.g. `cn-hangzhou`. Default `""` = from the metadata service.
    pub region_id: String,
    /// This ECS instance (`i-...`), the route's next hop. Default `""` = from the metadata service.
    pub instance_id: String,
    /// The VPC (`vpc-...`). Default `""` = from the metadata service.
    pub vpc_id: String,
    /// The instance's vSwitch (`vsw-...`). Default `""` = from the metadata service.
    pub vswitch_id: String,
    /// The instance's primary private IPv4 address. Default `""` = from the metadata service.
    pub private_ip: String,
    /// The primary ENI (`eni-...`), for the source/destination check. Default `""` = from metadata.
    pub eni_id: String,
    /// Route tables to register in. Default `[]` = the vSwitch's table, else the VPC's system table.
    pub route_table_ids: Vec<String>,
    /// The metadata service. Default `http://100.100.100.200`.
    pub metadata_url: String,
    /// `auto` (default), `required` or `disabled`: whether to use a metadata session token.
    pub metadata_token: MetadataToken,
    /// The instance RAM role for STS credentials. Default `""` = `ALIBABA_CLOUD_ECS_METADATA` or
    /// discovered from the metadata service.
    pub ram_role: String,
    /// VPC API endpoint. Default `""` = `https://vpc.<region>.aliyuncs.com`.
    pub vpc_endpoint: String,
    /// ECS API endpoint. Default `""` = `https://ecs.<region>.aliyuncs.com`.
    pub ecs_endpoint: String,
    /// The `RouteEntryName` marking routes as crossdock's (the description is
    /// `crossdock:<instance-id>`). Default `crossdock`; 1..=128 characters.
    pub route_name: String,
    /// `disable` (default) or `report`: what to do about the ENI source/destination check.
    pub source_dest_check: SourceDestCheck,
    /// How often the route is re-checked, in seconds. Default 60; 1..=86400.
    pub resync_interval_secs: u64,
    /// First backoff window, in milliseconds, after the VPC refuses this host's route write because
    /// the table is busy (`TaskConflict`, `IncorrectRouteEntryStatus`) or the account is throttled.
    /// The agent waits a random time in [0, window] and tries the same write again without re-reading
    /// anything; each further refusal doubles the window up to `write_backoff_max_ms`. Smaller: a
    /// fleet booting together fills the table faster but spends more calls. Default 500; 10..=60000.
    pub write_backoff_ms: u64,
    /// Largest backoff window between refused route writes, in milliseconds. Default 8000;
    /// `write_backoff_ms`..=600000.
    pub write_backoff_max_ms: u64,
    /// Explicit AccessKey id. Discouraged: prefer the environment or the RAM role. Default `""`.
    pub access_key_id: String,
    /// Explicit AccessKey secret, set together with `access_key_id`. Never printed. Default `""`.
    pub access_key_secret: Secret,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_cidrs: Vec::new(),
            external_interface: "auto".into(),
            resync_interval_secs: 30,
            health_socket: PathBuf::from("/run/crossdock/agent.sock"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            docker: DockerConfig::default(),
            firewall: FirewallConfig::default(),
            cloud: CloudConfig::default(),
            subnet: SubnetConfig::default(),
            fleet: FleetConfig::default(),
            metrics: MetricsConfig::default(),
            names: NamesConfig::default(),
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        Self {
            host: "unix:///var/run/docker.sock".into(),
            network: "bridge".into(),
            static_subnet: None,
        }
    }
}

impl Default for FirewallConfig {
    fn default() -> Self {
        Self { lock_wait_secs: 5 }
    }
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            provider: Provider::None,
            region_id: String::new(),
            instance_id: String::new(),
            vpc_id: String::new(),
            vswitch_id: String::new(),
            private_ip: String::new(),
            eni_id: String::new(),
            route_table_ids: Vec::new(),
            metadata_url: "http://100.100.100.200".into(),
            metadata_token: MetadataToken::Auto,
            ram_role: String::new(),
            vpc_endpoint: String::new(),
            ecs_endpoint: String::new(),
            route_name: "crossdock".into(),
            source_dest_check: SourceDestCheck::Disable,
            resync_interval_secs: 60,
            write_backoff_ms: 500,
            write_backoff_max_ms: 8000,
            access_key_id: String::new(),
            access_key_secret: Secret::default(),
        }
    }
}

fn parse_cidr(s: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = s.trim().parse().map_err(|_| {
        format!("`{s}` is not an IPv4 CIDR (write it as address/prefix, e.g. 10.0.0.0/8)")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "`{s}` has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

fn de_cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ipv4Net>, D::Error> {
    let raw = Vec::<String>::deserialize(d)?;
    raw.iter()
        .map(|s| parse_cidr(s).map_err(serde::de::Error::custom))
        .collect()
}

fn de_opt_cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ipv4Net>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(None);
    }
    parse_cidr(&raw).map(Some).map_err(serde::de::Error::custom)
}

fn ser_opt_cidr<S: Serializer>(v: &Option<Ipv4Net>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_str(&n.to_string()),
        None => s.serialize_str(""),
    }
}

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            "file",
            format!("cannot read {}: {e}", path.display()),
            format!(
                "create {} (only cluster_cidrs is required) or point -c / CROSSDOCK_CONFIG at the right file",
                path.display()
            ),
        )
    })?;
    parse(&text)
}

/// Parses and validates configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let cfg = parse_unvalidated(text)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Parses configuration text (syntax, unknown fields, types, CIDR syntax) without the semantic checks
/// of [`Config::validate`]. Useful for tools that want to report every problem themselves.
pub fn parse_unvalidated(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| translate_toml_error(text, e))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Lists the backticked names in a serde message ("expected one of `a`, `b`") as "a, b".
fn backticked(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

fn translate_toml_error(text: &str, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let path: Vec<String> = e
        .path()
        .iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Some(format!("[{index}]")),
            serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect();
    let inner = e.inner();
    let msg = inner.message().trim().to_string();
    let loc = inner.span().map(|s| line_col(text, s.start));
    let at = loc.map_or(String::new(), |(l, c)| format!(" at line {l}, column {c}"));
    let join = |extra: Option<&str>| -> String {
        let mut out = String::new();
        for p in path.iter().map(String::as_str).chain(extra) {
            if !out.is_empty() && !p.starts_with('[') {
                out.push('.');
            }
            out.push_str(p);
        }
        out
    };

    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let names = backticked(rest);
        let unknown = names.first().copied().unwrap_or("?");
        let allowed = names.get(1..).unwrap_or_default().join(", ");
        // serde_path_to_error already ends the path with the unknown key; older versions did not.
        let field = if path.last().map(String::as_str) == Some(unknown) {
            join(None)
        } else {
            join(Some(unknown))
        };
        return ConfigError::new(
            field,
            format!("unknown field{at}"),
            format!("remove it or correct the spelling; fields allowed here: {allowed}"),
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let names = backticked(rest);
        let given = names.first().copied().unwrap_or("?");
        let allowed = names.get(1..).unwrap_or_default().join(", ");
        return ConfigError::new(
            join(None),
            format!("`{given}` is not a valid value{at}"),
            format!("use one of: {allowed}"),
        );
    }
    if msg.starts_with("invalid type") || msg.starts_with("invalid value") {
        let expected = match msg.rsplit("expected ").next().unwrap_or("another type") {
            "u64" | "u32" => "a whole number (0 or more)",
            "a sequence" => "a list, e.g. [\"10.0.0.0/8\"]",
            other => other,
        };
        return ConfigError::new(
            join(None),
            format!("{msg}{at}"),
            format!("write {expected} here"),
        );
    }
    if !path.is_empty() {
        // Our own messages (CIDR syntax) and other value errors.
        let fix = if msg.contains("CIDR") || msg.contains("host bits") {
            "write an IPv4 network address with its prefix length, host bits zero, e.g. 10.0.0.0/8"
        } else if msg.contains("DNS zone name") || msg.contains("DNS label") {
            "write a DNS name in lower case (a-z, 0-9, `-`), e.g. crossdock.internal for the zone"
        } else if msg.contains("not a cluster tag") {
            "write the tag as key=value, e.g. crossdock-cluster=prod, or \"\" for per-host mode"
        } else {
            "correct the value"
        };
        return ConfigError::new(join(None), format!("{msg}{at}"), fix);
    }
    let field = loc.map_or("file".to_string(), |(l, _)| format!("line {l}"));
    let (l, c) = loc.unwrap_or((0, 0));
    ConfigError::new(
        field,
        format!("malformed TOML: {msg}"),
        if loc.is_some() {
            format!("correct the TOML syntax at line {l}, column {c}")
        } else {
            "correct the TOML syntax".to_string()
        },
    )
}

fn is_valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() < 16
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

fn range_check(field: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if v < lo || v > hi {
        return Err(ConfigError::new(
            field,
            format!("{v} is out of range"),
            format!("use a value from {lo} to {hi} {unit}"),
        ));
    }
    Ok(())
}

impl Config {
    /// Semantic checks beyond the schema: ranges present and not overlapping, intervals in range,
    /// paths absolute, the log filter parses, the static subnet inside the cluster range, and the
    /// `[cloud]` table complete enough for the chosen provider, and `[subnet]` / `[fleet]` consistent
    /// (see [`fleet`]; with empty `subnet.host_ranges` the mapping is checked at run time by
    /// [`Config::subnet_mapping`]). Returns the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_cidrs.is_empty() {
            return Err(ConfigError::new(
                "cluster_cidrs",
                "no cluster range given; it is required",
                "list the range holding every host's container subnet, e.g. cluster_cidrs = [\"10.0.0.0/8\"]",
            ));
        }
        for (i, a) in self.cluster_cidrs.iter().enumerate() {
            for b in &self.cluster_cidrs[i + 1..] {
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    let (outer, inner) = if a.prefix_len() <= b.prefix_len() {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    return Err(ConfigError::new(
                        "cluster_cidrs",
                        format!("ranges {a} and {b} overlap"),
                        format!("remove {inner}: it lies inside {outer}"),
                    ));
                }
            }
        }
        if self.external_interface != "auto" && !is_valid_ifname(&self.external_interface) {
            return Err(ConfigError::new(
                "external_interface",
                format!("`{}` is not a valid interface name", self.external_interface),
                "use \"auto\" or an interface name of 1 to 15 characters without '/', ':' or spaces, e.g. eth0",
            ));
        }
        range_check(
            "resync_interval_secs",
            self.resync_interval_secs,
            1,
            86_400,
            "seconds",
        )?;
        if !self.health_socket.is_absolute() {
            return Err(ConfigError::new(
                "health_socket",
                format!("`{}` is not an absolute path", self.health_socket.display()),
                "use an absolute path, e.g. /run/crossdock/agent.sock",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(ConfigError::new(
                "log_level",
                format!("`{}` is not a log filter: {e}", self.log_level),
                "use a level (error, warn, info, debug, trace) or a directive like crossdock=debug,info",
            ));
        }
        self.validate_docker()?;
        range_check(
            "firewall.lock_wait_secs",
            self.firewall.lock_wait_secs,
            1,
            300,
            "seconds",
        )?;
        self.validate_cloud()?;
        self.validate_subnet_fleet()?;
        self.metrics.validate()?;
        self.validate_names()
    }

    fn validate_docker(&self) -> Result<(), ConfigError> {
        let d = &self.docker;
        match d.host.strip_prefix("unix://") {
            Some(p) if p.starts_with('/') => {}
            _ => {
                return Err(ConfigError::new(
                    "docker.host",
                    format!("`{}` is not a unix socket address", d.host),
                    "use unix://<absolute path>, e.g. unix:///var/run/docker.sock (TCP is not supported)",
                ))
            }
        }
        if let Some(s) = d.static_subnet {
            check_subnet(s, self).map_err(|mut e| {
                e.field = "docker.static_subnet".into();
                e.fix = format!(
                    "choose a static subnet inside {} or add a range holding {s} to cluster_cidrs",
                    fmt_nets(&self.cluster_cidrs)
                );
                e
            })?;
        } else if d.network.trim().is_empty() {
            return Err(ConfigError::new(
                "docker.network",
                "no Docker network named",
                "name the network to serve, e.g. network = \"bridge\" for docker0",
            ));
        }
        Ok(())
    }

    fn validate_cloud(&self) -> Result<(), ConfigError> {
        let c = &self.cloud;
        if c.access_key_id.is_empty() != c.access_key_secret.is_empty() {
            let (field, other) = if c.access_key_id.is_empty() {
                ("cloud.access_key_id", "cloud.access_key_secret")
            } else {
                ("cloud.access_key_secret", "cloud.access_key_id")
            };
            return Err(ConfigError::new(
                field,
                format!("missing while {other} is set"),
                "set both access_key_id and access_key_secret, or neither (prefer the RAM role)",
            ));
        }
        if c.provider == Provider::None {
            return Ok(());
        }
        if !c.private_ip.is_empty() && c.private_ip.parse::<Ipv4Addr>().is_err() {
            return Err(ConfigError::new(
                "cloud.private_ip",
                format!("`{}` is not an IPv4 address", c.private_ip),
                "write the instance's primary private IPv4 address, or leave it empty to read it from the metadata service",
            ));
        }
        if !c.metadata_url.is_empty() && !is_http_url(&c.metadata_url) {
            return Err(ConfigError::new(
                "cloud.metadata_url",
                format!("`{}` is not an http(s) URL", c.metadata_url),
                "use http://100.100.100.200 (the ECS metadata service) or leave it empty and set every identity field",
            ));
        }
        if c.metadata_url.is_empty() {
            let identity = [
                ("cloud.region_id", &c.region_id),
                ("cloud.instance_id", &c.instance_id),
                ("cloud.vpc_id", &c.vpc_id),
                ("cloud.private_ip", &c.private_ip),
            ];
            if let Some((field, _)) = identity.iter().find(|(_, v)| v.is_empty()) {
                return Err(ConfigError::new(
                    *field,
                    "empty, and metadata_url is empty too, so it cannot be discovered",
                    format!("set {field}, or set cloud.metadata_url = \"http://100.100.100.200\""),
                ));
            }
        }
        for (field, v) in [
            ("cloud.vpc_endpoint", &c.vpc_endpoint),
            ("cloud.ecs_endpoint", &c.ecs_endpoint),
        ] {
            if !v.is_empty() && !is_http_url(v) {
                return Err(ConfigError::new(
                    field,
                    format!("`{v}` is not an http(s) URL"),
                    "write a URL such as https://vpc.cn-hangzhou.aliyuncs.com, or leave it empty for the region's default",
                ));
            }
        }
        if !c.region_id.is_empty()
            && !c
                .region_id
                .chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        {
            return Err(ConfigError::new(
                "cloud.region_id",
                format!("`{}` is not a region id", c.region_id),
                "write a region id such as cn-hangzhou, or leave it empty to read it from the metadata service",
            ));
        }
        if c.route_name.is_empty() || c.route_name.chars().count() > 128 {
            return Err(ConfigError::new(
                "cloud.route_name",
                format!("`{}` must be 1 to 128 characters", c.route_name),
                "use a short name such as crossdock",
            ));
        }
        if let Some(bad) = c
            .route_table_ids
            .iter()
            .find(|t| t.is_empty() || t.contains(char::is_whitespace))
        {
            return Err(ConfigError::new(
                "cloud.route_table_ids",
                format!("`{bad}` is not a route table id"),
                "list route table ids such as vtb-..., or leave the list empty to use the vSwitch's table",
            ));
        }
        range_check(
            "cloud.resync_interval_secs",
            c.resync_interval_secs,
            1,
            86_400,
            "seconds",
        )?;
        range_check(
            "cloud.write_backoff_ms",
            c.write_backoff_ms,
            10,
            60_000,
            "milliseconds",
        )?;
        range_check(
            "cloud.write_backoff_max_ms",
            c.write_backoff_max_ms,
            c.write_backoff_ms,
            600_000,
            "milliseconds",
        )
    }

    /// The effective configuration as TOML, with the AccessKey secret redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string(self)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }

    /// The Docker socket path from `docker.host` (`unix:///var/run/docker.sock` → the path).
    pub fn docker_socket(&self) -> PathBuf {
        PathBuf::from(
            self.docker
                .host
                .strip_prefix("unix://")
                .unwrap_or(&self.docker.host),
        )
    }

    /// The configured external interface, or `None` for `"auto"` (look up the default route).
    pub fn external_interface(&self) -> Option<&str> {
        (self.external_interface != "auto").then_some(self.external_interface.as_str())
    }
}

fn fmt_nets(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the local container subnet (from Docker or `static_subnet`) lies inside one of the
/// cluster ranges; a subnet outside them would never be reached by peers (and peers' rules would not
/// admit it). The error names `cluster_cidrs` and says both possible fixes.
pub fn check_subnet(subnet: Ipv4Net, config: &Config) -> Result<(), ConfigError> {
    if config
        .cluster_cidrs
        .iter()
        .any(|c| c.contains(&subnet.network()) && c.prefix_len() <= subnet.prefix_len())
    {
        return Ok(());
    }
    Err(ConfigError::new(
        "cluster_cidrs",
        format!(
            "the local container subnet {subnet} is outside the cluster range(s) {}",
            fmt_nets(&config.cluster_cidrs)
        ),
        format!(
            "give Docker a subnet inside {} (daemon.json \"bip\" for docker0, or the network's IPAM subnet), or add a range holding {subnet} to cluster_cidrs",
            fmt_nets(&config.cluster_cidrs)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "cluster_cidrs = [\"10.0.0.0/8\"]\n";

    fn err(text: &str) -> ConfigError {
        match parse(text) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn minimal_file_gets_every_default() {
        let c = parse(MIN).unwrap();
        assert_eq!(
            c.cluster_cidrs,
            vec!["10.0.0.0/8".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(c.external_interface, "auto");
        assert_eq!(c.external_interface(), None);
        assert_eq!(c.resync_interval_secs, 30);
        assert_eq!(c.health_socket, PathBuf::from("/run/crossdock/agent.sock"));
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_level, "info");
        assert_eq!(c.docker.host, "unix:///var/run/docker.sock");
        assert_eq!(c.docker_socket(), PathBuf::from("/var/run/docker.sock"));
        assert_eq!(c.docker.network, "bridge");
        assert_eq!(c.docker.static_subnet, None);
        assert_eq!(c.firewall.lock_wait_secs, 5);
        assert_eq!(c.cloud.provider, Provider::None);
        assert_eq!(c.cloud.metadata_url, "http://100.100.100.200");
        assert_eq!(c.cloud.metadata_token, MetadataToken::Auto);
        assert_eq!(c.cloud.route_name, "crossdock");
        assert_eq!(c.cloud.source_dest_check, SourceDestCheck::Disable);
        assert_eq!(c.cloud.resync_interval_secs, 60);
    }

    #[test]
    fn contract_example_parses_field_for_field() {
        // The full example of docs/CONTRACTS.md, kept in sync with it.
        let text = include_str!("../../../docs/CONTRACTS.md");
        let start = text.find("```toml\n").expect("toml block in CONTRACTS.md") + 8;
        let end = start + text[start..].find("```").unwrap();
        let c = parse(&text[start..end]).unwrap();
        let mut d = parse(MIN).unwrap();
        d.cluster_cidrs = c.cluster_cidrs.clone();
        assert_eq!(c, d, "the documented example must equal the defaults");
    }

    #[test]
    fn effective_config_round_trips_and_hides_the_secret() {
        let text = format!(
            "{MIN}[cloud]\nprovider = \"alibaba\"\naccess_key_id = \"LTAIexample\"\naccess_key_secret = \"s3cr3t-value\"\n[docker]\nstatic_subnet = \"10.1.2.0/24\"\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.cloud.access_key_secret.expose(), "s3cr3t-value");
        let printed = c.to_toml();
        assert!(!printed.contains("s3cr3t"), "{printed}");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(
            printed.contains("static_subnet = \"10.1.2.0/24\""),
            "{printed}"
        );
        let back = parse(&printed).unwrap();
        assert_eq!(back.cluster_cidrs, c.cluster_cidrs);
        assert_eq!(back.docker, c.docker);
        // Without a secret the whole thing round-trips exactly.
        let plain = parse(MIN).unwrap();
        assert_eq!(parse(&plain.to_toml()).unwrap(), plain);
    }

    /// (input, field, fragment of message or fix)
    #[test]
    fn validation_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("cluster_cidrs = [\"10.0.0.0/8\"\n", "line 2", "malformed TOML"),
            ("cluster_cidrs = \n", "line 1", "malformed TOML"),
            ("= 3\n", "line 1", "correct the TOML syntax"),
            ("", "cluster_cidrs", "required"),
            ("cluster_cidrs = []", "cluster_cidrs", "required"),
            (&format!("{MIN}colour = 1"), "colour", "unknown field"),
            (&format!("{MIN}[docker]\nnetwrok = \"x\""), "docker.netwrok", "fields allowed here: host, network, static_subnet"),
            (&format!("{MIN}[dockr]\n"), "dockr", "unknown field"),
            (&format!("{MIN}[cloud]\nregion = \"x\""), "cloud.region", "unknown field"),
            ("cluster_cidrs = [\"10.0.0.0/33\"]", "cluster_cidrs", "not an IPv4 CIDR"),
            ("cluster_cidrs = [\"10.0.0.0\"]", "cluster_cidrs", "not an IPv4 CIDR"),
            ("cluster_cidrs = [\"fd00::/8\"]", "cluster_cidrs", "not an IPv4 CIDR"),
            ("cluster_cidrs = [\"10.0.0.1/8\"]", "cluster_cidrs", "did you mean 10.0.0.0/8"),
            ("cluster_cidrs = \"10.0.0.0/8\"", "cluster_cidrs", "invalid type"),
            ("cluster_cidrs = [\"10.0.0.0/8\", \"10.1.0.0/16\"]", "cluster_cidrs", "remove 10.1.0.0/16"),
            ("cluster_cidrs = [\"10.1.0.0/16\", \"10.0.0.0/8\"]", "cluster_cidrs", "overlap"),
            ("cluster_cidrs = [\"10.1.0.0/16\", \"10.1.0.0/16\"]", "cluster_cidrs", "overlap"),
            (&format!("{MIN}log_format = \"xml\""), "log_format", "use one of: text, json"),
            (&format!("{MIN}log_level = \"crossdock=[\""), "log_level", "not a log filter"),
            (&format!("{MIN}resync_interval_secs = 0"), "resync_interval_secs", "from 1 to 86400"),
            (&format!("{MIN}resync_interval_secs = \"30\""), "resync_interval_secs", "invalid type"),
            (&format!("{MIN}resync_interval_secs = -5"), "resync_interval_secs", "invalid"),
            (&format!("{MIN}health_socket = \"agent.sock\""), "health_socket", "absolute"),
            (&format!("{MIN}external_interface = \"eth0/1\""), "external_interface", "not a valid interface name"),
            (&format!("{MIN}external_interface = \"averyveryverylongname\""), "external_interface", "1 to 15"),
            (&format!("{MIN}[docker]\nhost = \"tcp://1.2.3.4:2375\""), "docker.host", "unix socket"),
            (&format!("{MIN}[docker]\nnetwork = \"\""), "docker.network", "name the network"),
            (&format!("{MIN}[docker]\nstatic_subnet = \"172.17.0.0/16\""), "docker.static_subnet", "outside the cluster range"),
            (&format!("{MIN}[docker]\nstatic_subnet = \"10.1.0.0/99\""), "docker.static_subnet", "not an IPv4 CIDR"),
            (&format!("{MIN}[firewall]\nlock_wait_secs = 0"), "firewall.lock_wait_secs", "from 1 to 300"),
            (&format!("{MIN}[cloud]\nprovider = \"aws\""), "cloud.provider", "use one of: alibaba, none"),
            (&format!("{MIN}[cloud]\nmetadata_token = \"sometimes\""), "cloud.metadata_token", "auto, required, disabled"),
            (&format!("{MIN}[cloud]\nsource_dest_check = \"ignore\""), "cloud.source_dest_check", "disable, report"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"\""), "cloud.region_id", "cannot be discovered"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"\"\nregion_id = \"cn-hangzhou\"\ninstance_id = \"i-1\"\nvpc_id = \"vpc-1\""), "cloud.private_ip", "set cloud.private_ip"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"100.100.100.200\""), "cloud.metadata_url", "not an http(s) URL"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nprivate_ip = \"192.168.1.300\""), "cloud.private_ip", "not an IPv4 address"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nvpc_endpoint = \"vpc.example\""), "cloud.vpc_endpoint", "http(s) URL"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nregion_id = \"CN Hangzhou\""), "cloud.region_id", "not a region id"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nroute_name = \"\""), "cloud.route_name", "1 to 128"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nroute_table_ids = [\"\"]"), "cloud.route_table_ids", "not a route table id"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nresync_interval_secs = 0"), "cloud.resync_interval_secs", "from 1"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nwrite_backoff_ms = 5"), "cloud.write_backoff_ms", "from 10 to 60000"),
            (&format!("{MIN}[cloud]\nprovider = \"alibaba\"\nwrite_backoff_ms = 2000\nwrite_backoff_max_ms = 1000"), "cloud.write_backoff_max_ms", "from 2000 to 600000"),
            (&format!("{MIN}[cloud]\naccess_key_id = \"LTAI\""), "cloud.access_key_secret", "missing while cloud.access_key_id"),
            (&format!("{MIN}[cloud]\naccess_key_secret = \"x\""), "cloud.access_key_id", "set both"),
        ];
        let mut failures = Vec::new();
        for (text, field, fragment) in cases {
            let e = err(text);
            let line = e.to_string();
            if &e.field != field
                || !line.contains(fragment)
                || line.contains('\n')
                || e.fix.is_empty()
            {
                failures.push(format!(
                    "input {text:?}: got {line:?}, want field {field:?} and {fragment:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let e = err("cluster_cidrs = [\"10.0.0.0/8\"]\n\n[docker\nnetwork = \"x\"\n");
        assert_eq!(e.field, "line 3");
        assert!(e.fix.contains("line 3, column"), "{e}");
    }

    #[test]
    fn valid_variants_are_accepted() {
        let ok = [
            MIN.to_string(),
            "cluster_cidrs = [\"10.0.0.0/16\", \"10.1.0.0/16\", \"172.20.0.0/14\"]".to_string(),
            format!("{MIN}log_format = \"json\"\nlog_level = \"crossdock=debug,info\"\nexternal_interface = \"eth0\""),
            format!("{MIN}[docker]\nnetwork = \"cluster-net\"\nhost = \"unix:///run/docker.sock\""),
            format!("{MIN}[docker]\nnetwork = \"\"\nstatic_subnet = \"10.9.0.0/24\""),
            format!("{MIN}[cloud]\nprovider = \"alibaba\""),
            format!("{MIN}[cloud]\nprovider = \"alibaba\"\nmetadata_url = \"\"\nregion_id = \"cn-hangzhou\"\ninstance_id = \"i-1\"\nvpc_id = \"vpc-1\"\nprivate_ip = \"192.168.1.10\"\naccess_key_id = \"a\"\naccess_key_secret = \"b\""),
            // Provider none ignores the cloud identity fields' shape.
            format!("{MIN}[cloud]\nmetadata_url = \"\"\nprivate_ip = \"garbage\""),
        ];
        for text in ok {
            if let Err(e) = parse(&text) {
                panic!("{text:?} rejected: {e}");
            }
        }
    }

    #[test]
    fn check_subnet_inside_and_outside() {
        let c = parse("cluster_cidrs = [\"10.0.0.0/16\", \"10.8.0.0/16\"]").unwrap();
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(check_subnet(net("10.0.3.0/24"), &c).is_ok());
        assert!(check_subnet(net("10.8.0.0/16"), &c).is_ok());
        // Straddles: starts inside but is wider than the range.
        let e = check_subnet(net("10.0.0.0/15"), &c).unwrap_err();
        assert_eq!(e.field, "cluster_cidrs");
        let e = check_subnet(net("172.17.0.0/16"), &c).unwrap_err();
        assert!(e.message.contains("172.17.0.0/16"), "{e}");
        assert!(e.fix.contains("bip"), "{e}");
    }

    #[test]
    fn load_reports_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let e = load(&path).unwrap_err();
        assert_eq!(e.field, "file");
        std::fs::write(&path, MIN).unwrap();
        assert!(load(&path).is_ok());
    }
}
