//! `[subnet]` and `[fleet]`: where this host's container subnet comes from, and which ECS instances
//! form the cluster.
//!
//! Why here: fleet mode exists so that every host runs from one identical configuration. That only
//! works if the rules that turn a private IP into a subnet, and the tag that defines membership, are
//! checked once, the same way, by the agent, `crossdock init`, `crossdock doctor` and `--check-config`.
//! Everything that can be checked from the file alone is checked in [`Config::validate`]; when
//! `subnet.host_ranges` is empty the VPC CIDR is only known at run time, so the agent and
//! `crossdock init` finish the check with [`Config::subnet_mapping`].

use crate::mapping::SubnetMapping;
use crate::{range_check, Config, ConfigError, Provider};
use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Where the host's container subnet comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubnetMode {
    /// The served Docker network's subnet, or `[docker] static_subnet` (default; per-host mode).
    #[default]
    Docker,
    /// Computed from the private IP by [`SubnetMapping`]; `crossdock init` writes it to Docker.
    Derived,
}

/// `[subnet]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubnetConfig {
    /// `docker` (default) or `derived`.
    pub mode: SubnetMode,
    /// CIDRs holding the hosts' private IPs, in order. Default `[]` = the VPC CIDR (metadata
    /// `vpc-cidr-block`). Use the cluster's vSwitch CIDRs when the VPC is too big to map.
    #[serde(deserialize_with = "crate::de_cidr_list")]
    pub host_ranges: Vec<Ipv4Net>,
    /// Prefix length of each host's container subnet. Default 24; 16..=30.
    pub prefix_len: u8,
}

impl Default for SubnetConfig {
    fn default() -> Self {
        Self {
            mode: SubnetMode::Docker,
            host_ranges: Vec::new(),
            prefix_len: 24,
        }
    }
}

/// `[fleet]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// The ECS tag marking the cluster's instances, `key=value`. Default `""` = fleet mode off.
    #[serde(deserialize_with = "de_opt_tag", serialize_with = "ser_opt_tag")]
    pub tag: Option<ClusterTag>,
    /// A released instance's route is deleted only after it was seen released this long, in seconds.
    /// Default 300; 1..=604800. Values below 60 are meant for tests.
    pub release_grace_secs: u64,
    /// At most this many route deletions per pass. Default 20; 1..=50 (one DeleteRouteEntries call).
    pub max_deletes_per_pass: u32,
    /// How often the fleet's membership and route table are re-read, in seconds: by each member in
    /// a fleet of up to 8, proportionally less often by each in a larger one (about 8 sweeps per
    /// interval in all). Default 60; 5..=86400.
    pub sweep_interval_secs: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            tag: None,
            release_grace_secs: 300,
            max_deletes_per_pass: 20,
            sweep_interval_secs: 60,
        }
    }
}

/// The ECS tag that defines cluster membership, written `key=value` (split at the first `=`).
///
/// Follows Alibaba Cloud's tag rules: the key is 1 to 128 characters and does not start with
/// `aliyun` or `acs:`; the value is 1 to 128 characters (crossdock requires a value so that the
/// filter is exact); neither contains `http://` or `https://`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterTag {
    /// Tag key, e.g. `crossdock-cluster`.
    pub key: String,
    /// Tag value, e.g. `prod`.
    pub value: String,
}

impl fmt::Display for ClusterTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Why a tag does not parse; `Display` names the tag and says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{given}` is not a cluster tag: {reason}; write it as key=value, e.g. crossdock-cluster=prod"
)]
pub struct TagError {
    /// The text given.
    pub given: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn tag_rule(key: &str, value: &str) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    let has_url = |s: &str| s.contains("http://") || s.contains("https://");
    if key.trim().is_empty() {
        Some("the key is empty")
    } else if key.chars().count() > 128 {
        Some("the key is longer than 128 characters")
    } else if lower.starts_with("aliyun") || lower.starts_with("acs:") {
        Some("keys starting with aliyun or acs: are reserved by Alibaba Cloud")
    } else if value.is_empty() {
        Some("the value is empty")
    } else if value.chars().count() > 128 {
        Some("the value is longer than 128 characters")
    } else if has_url(key) || has_url(value) {
        Some("tags may not contain http:// or https://")
    } else {
        None
    }
}

impl FromStr for ClusterTag {
    type Err = TagError;

    fn from_str(s: &str) -> Result<Self, TagError> {
        let err = |reason| TagError {
            given: s.to_string(),
            reason,
        };
        let (key, value) = s.split_once('=').ok_or_else(|| err("there is no `=`"))?;
        match tag_rule(key, value) {
            Some(reason) => Err(err(reason)),
            None => Ok(Self {
                key: key.to_string(),
                value: value.to_string(),
            }),
        }
    }
}

impl Serialize for ClusterTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClusterTag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

fn de_opt_tag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ClusterTag>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(serde::de::Error::custom)
}

fn ser_opt_tag<S: Serializer>(v: &Option<ClusterTag>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.collect_str(t),
        None => s.serialize_str(""),
    }
}

fn mapping_error(e: crate::mapping::MappingError) -> ConfigError {
    ConfigError::new(e.field(), e.message(), e.fix())
}

impl Config {
    /// The checks of `[subnet]` and `[fleet]` (called by [`Config::validate`]).
    pub(crate) fn validate_subnet_fleet(&self) -> Result<(), ConfigError> {
        range_check(
            "subnet.prefix_len",
            u64::from(self.subnet.prefix_len),
            16,
            30,
            "(prefix length)",
        )?;
        let derived = self.subnet.mode == SubnetMode::Derived;
        // `derived` with `docker.static_subnet` is allowed (hosts without Docker in a fleet, e.g. the
        // benchmark's storms): the static subnet is what the host serves, and the route side checks at
        // run time that it is the derived one (`SubnetMismatch` otherwise), as it does Docker's.
        if derived && !self.subnet.host_ranges.is_empty() {
            self.subnet_mapping(None)?;
        }
        let f = &self.fleet;
        if let Some(tag) = &f.tag {
            if !derived {
                return Err(ConfigError::new(
                    "fleet.tag",
                    format!("`{tag}` is set but subnet.mode is not \"derived\"; members' subnets could not be computed"),
                    "set subnet.mode = \"derived\" under [subnet], or leave fleet.tag empty for per-host mode",
                ));
            }
            if self.cloud.provider != Provider::Alibaba {
                return Err(ConfigError::new(
                    "fleet.tag",
                    format!("`{tag}` is set but cloud.provider is not \"alibaba\"; members are listed through the ECS API"),
                    "set provider = \"alibaba\" under [cloud], or leave fleet.tag empty",
                ));
            }
        }
        range_check(
            "fleet.release_grace_secs",
            f.release_grace_secs,
            1,
            604_800,
            "seconds (300 or more in production)",
        )?;
        range_check(
            "fleet.max_deletes_per_pass",
            u64::from(f.max_deletes_per_pass),
            1,
            50,
            "routes",
        )?;
        range_check(
            "fleet.sweep_interval_secs",
            f.sweep_interval_secs,
            5,
            86_400,
            "seconds",
        )
    }

    /// The derived-subnet mapping of this configuration: `subnet.host_ranges`, or when that is empty
    /// the VPC CIDR `vpc_cidr` (metadata `vpc-cidr-block`), onto `cluster_cidrs` at
    /// `subnet.prefix_len`. Errors name the field and the fix, as for the rest of the file (exit 2).
    pub fn subnet_mapping(&self, vpc_cidr: Option<Ipv4Net>) -> Result<SubnetMapping, ConfigError> {
        let hosts: Vec<Ipv4Net> = if self.subnet.host_ranges.is_empty() {
            vpc_cidr.into_iter().collect()
        } else {
            self.subnet.host_ranges.clone()
        };
        SubnetMapping::new(&hosts, &self.cluster_cidrs, self.subnet.prefix_len)
            .map_err(mapping_error)
    }

    /// This host's derived subnet from its private IP (and the VPC CIDR, used when
    /// `subnet.host_ranges` is empty).
    pub fn derived_subnet(
        &self,
        private_ip: Ipv4Addr,
        vpc_cidr: Option<Ipv4Net>,
    ) -> Result<Ipv4Net, ConfigError> {
        self.subnet_mapping(vpc_cidr)?
            .subnet_for(private_ip)
            .map_err(mapping_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    const MIN: &str = "cluster_cidrs = [\"10.0.0.0/8\"]\n";
    const ALIBABA: &str = "[cloud]\nprovider = \"alibaba\"\n";

    #[test]
    fn defaults_are_per_host_mode() {
        let c = parse(MIN).unwrap();
        assert_eq!(c.subnet, SubnetConfig::default());
        assert_eq!(c.subnet.mode, SubnetMode::Docker);
        assert!(c.subnet.host_ranges.is_empty());
        assert_eq!(c.subnet.prefix_len, 24);
        assert_eq!(c.fleet.tag, None);
        assert_eq!(c.fleet.release_grace_secs, 300);
        assert_eq!(c.fleet.max_deletes_per_pass, 20);
        assert_eq!(c.fleet.sweep_interval_secs, 60);
    }

    #[test]
    fn fleet_config_parses_and_round_trips() {
        let text = format!(
            "{MIN}{ALIBABA}[subnet]\nmode = \"derived\"\nhost_ranges = [\"192.168.0.0/20\", \"192.168.16.0/20\"]\nprefix_len = 26\n[fleet]\ntag = \"crossdock-cluster=prod=blue\"\nrelease_grace_secs = 2\nmax_deletes_per_pass = 50\nsweep_interval_secs = 5\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.subnet.mode, SubnetMode::Derived);
        assert_eq!(c.subnet.host_ranges.len(), 2);
        let tag = c.fleet.tag.clone().unwrap();
        assert_eq!(
            (tag.key.as_str(), tag.value.as_str()),
            ("crossdock-cluster", "prod=blue")
        );
        let printed = c.to_toml();
        assert!(
            printed.contains("[subnet]") && printed.contains("[fleet]"),
            "{printed}"
        );
        assert!(
            printed.contains("tag = \"crossdock-cluster=prod=blue\""),
            "{printed}"
        );
        assert!(printed.contains("mode = \"derived\""), "{printed}");
        assert_eq!(parse(&printed).unwrap(), c);
        // The defaults print too (`--check-config` shows both tables).
        let plain = parse(MIN).unwrap().to_toml();
        assert!(
            plain.contains("[subnet]\nmode = \"docker\"\nhost_ranges = []\nprefix_len = 24"),
            "{plain}"
        );
        assert!(plain.contains("[fleet]\ntag = \"\""), "{plain}");
    }

    #[test]
    fn tags_follow_alibaba_rules() {
        let long = "k".repeat(129);
        for bad in [
            "prod",
            "=prod",
            " =x",
            "k=",
            "aliyun-x=1",
            "ACS:x=1",
            "k=https://x",
            &format!("{long}=v"),
            &format!("k={long}"),
        ] {
            assert!(bad.parse::<ClusterTag>().is_err(), "{bad} accepted");
        }
        for good in [
            "crossdock-cluster=prod",
            "a=b",
            "team=a b",
            &format!("{}={}", "k".repeat(128), "v".repeat(128)),
        ] {
            let t: ClusterTag = good.parse().unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(t.to_string(), good);
        }
    }

    /// (input after MIN, field, fragment of the one-line error)
    #[test]
    fn refusals_name_the_field_and_the_fix() {
        let derived = "[subnet]\nmode = \"derived\"\n";
        let cases: Vec<(String, &str, &str)> = vec![
            (
                "[subnet]\nmode = \"auto\"".to_string(),
                "subnet.mode",
                "use one of: docker, derived",
            ),
            (
                "[subnet]\nprefix_len = 15".to_string(),
                "subnet.prefix_len",
                "from 16 to 30",
            ),
            (
                "[subnet]\nprefix_len = 31".to_string(),
                "subnet.prefix_len",
                "from 16 to 30",
            ),
            (
                "[subnet]\nprefix_len = 300".to_string(),
                "subnet.prefix_len",
                "invalid",
            ),
            (
                "[subnet]\nhost_ranges = [\"192.168.0.1/16\"]".to_string(),
                "subnet.host_ranges",
                "did you mean 192.168.0.0/16",
            ),
            (
                "[subnet]\nhostranges = []".to_string(),
                "subnet.hostranges",
                "unknown field",
            ),
            (
                "[fleet]\ntag = \"prod\"".to_string(),
                "fleet.tag",
                "key=value",
            ),
            (
                "[fleet]\ntag = \"aliyun=1\"".to_string(),
                "fleet.tag",
                "reserved",
            ),
            (
                format!("{ALIBABA}[fleet]\ntag = \"c=prod\""),
                "fleet.tag",
                "subnet.mode = \"derived\"",
            ),
            (
                format!("{derived}[fleet]\ntag = \"c=prod\""),
                "fleet.tag",
                "provider = \"alibaba\"",
            ),
            (
                format!("{derived}host_ranges = [\"172.16.0.0/12\"]"),
                "subnet.prefix_len",
                "prefix_len = 28",
            ),
            (
                format!("{derived}host_ranges = [\"10.0.0.0/20\"]"),
                "subnet.host_ranges",
                "overlaps cluster range 10.0.0.0/8",
            ),
            (
                format!("{derived}host_ranges = [\"192.168.0.0/20\", \"192.168.1.0/24\"]"),
                "subnet.host_ranges",
                "overlap",
            ),
            (
                "[fleet]\nrelease_grace_secs = 0".to_string(),
                "fleet.release_grace_secs",
                "from 1 to 604800",
            ),
            (
                "[fleet]\nmax_deletes_per_pass = 0".to_string(),
                "fleet.max_deletes_per_pass",
                "from 1 to 50",
            ),
            (
                "[fleet]\nmax_deletes_per_pass = 51".to_string(),
                "fleet.max_deletes_per_pass",
                "from 1 to 50",
            ),
            (
                "[fleet]\nsweep_interval_secs = 4".to_string(),
                "fleet.sweep_interval_secs",
                "from 5 to 86400",
            ),
            ("[fleet]\nfoo = 1".to_string(), "fleet.foo", "unknown field"),
        ];
        let mut failures = Vec::new();
        for (rest, field, fragment) in cases {
            let text = format!("{MIN}{rest}\n");
            match parse(&text) {
                Ok(_) => failures.push(format!("{rest:?} accepted")),
                Err(e) => {
                    let line = e.to_string();
                    if e.field != field
                        || !line.contains(fragment)
                        || line.contains('\n')
                        || e.fix.is_empty()
                    {
                        failures.push(format!(
                            "{rest:?}: got {line:?}, want {field} / {fragment:?}"
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn a_static_subnet_may_serve_a_derived_host() {
        // A fleet host without Docker: it serves the static subnet; the route side checks at run time
        // that it is the derived one.
        let c = parse(&format!(
            "{MIN}{ALIBABA}[subnet]\nmode = \"derived\"\n[fleet]\ntag = \"c=p\"\n[docker]\nstatic_subnet = \"10.1.11.0/24\"\n"
        ))
        .unwrap();
        assert_eq!(c.subnet.mode, SubnetMode::Derived);
        assert_eq!(
            c.docker.static_subnet,
            Some("10.1.11.0/24".parse().unwrap())
        );
    }

    #[test]
    fn empty_host_ranges_are_checked_with_the_vpc_cidr_at_run_time() {
        let c = parse(&format!(
            "{MIN}{ALIBABA}[subnet]\nmode = \"derived\"\n[fleet]\ntag = \"c=p\"\n"
        ))
        .unwrap();
        let vpc: Ipv4Net = "192.168.0.0/16".parse().unwrap();
        assert_eq!(
            c.derived_subnet("192.168.1.10".parse().unwrap(), Some(vpc))
                .unwrap()
                .to_string(),
            "10.1.10.0/24"
        );
        let e = c.subnet_mapping(None).unwrap_err();
        assert_eq!(e.field, "subnet.host_ranges");
        let e = c
            .subnet_mapping(Some("172.16.0.0/12".parse().unwrap()))
            .unwrap_err();
        assert!(e.fix.contains("vSwitch"), "{e}");
        let e = c
            .derived_subnet("172.16.0.1".parse().unwrap(), Some(vpc))
            .unwrap_err();
        assert!(e.message.contains("172.16.0.1"), "{e}");
        // Explicit host ranges win over the VPC CIDR.
        let c = parse(&format!(
            "{MIN}[subnet]\nmode = \"derived\"\nhost_ranges = [\"192.168.4.0/22\"]\n"
        ))
        .unwrap();
        assert_eq!(
            c.derived_subnet("192.168.4.1".parse().unwrap(), Some(vpc))
                .unwrap()
                .to_string(),
            "10.0.1.0/24"
        );
    }
}
