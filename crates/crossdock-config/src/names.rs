//! `[names]`: container names across hosts (a DNS zone answered on every host, fed by a catalog
//! that the member hosts exchange).
//!
//! Why it is off by default: it opens two ports (the resolver on the bridge gateway, the catalog
//! exchange on the private IP) and changes what containers use as their resolver (`crossdock init`
//! writes daemon.json `dns`), which an operator should choose. What the file alone can tell is
//! checked here: the zone and host label are valid DNS names, the ports are not 0, the paths are
//! absolute, and a host without Docker (`docker.static_subnet`) has no containers to name. Whether
//! the key file is readable and long enough is checked by the agent at start (exit 2 too).

use crate::{range_check, Config, ConfigError, Provider};
use crossdock_names::{Label, ZoneName};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// `[names]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamesConfig {
    /// Run the resolver and the catalog exchange. Default false.
    pub enabled: bool,
    /// The zone: `<container>.<host>.<zone>` and `<name>.<zone>`. Default `crossdock.internal`.
    #[serde(deserialize_with = "de_zone")]
    pub zone: ZoneName,
    /// `<host>` in `<container>.<host>.<zone>`: one DNS label. Default `""` = the instance's
    /// hostname from the metadata service (with `cloud.provider = "alibaba"`), else the system
    /// hostname, made a label by the zone's sanitising rule.
    #[serde(deserialize_with = "de_opt_label", serialize_with = "ser_opt_label")]
    pub host_name: Option<Label>,
    /// The resolver's port on the bridge gateway address (UDP and TCP). Default 53.
    pub dns_port: u16,
    /// The catalog exchange's UDP port on the private IP. Default 7953.
    ///
    /// Not 7946: that is memberlist's port, which Docker swarm's gossip binds on the same private
    /// IP (`docker swarm init`/`join` with `--advertise-addr`; also Serf and the memberlist of
    /// Loki, Mimir, Cortex), so whichever starts second cannot bind it (dockerd logs "failed to
    /// create memberlist ... bind: address already in use" and swarm's overlay DNS never learns
    /// other hosts' containers). 7953 is outside the ports of common container-network software
    /// (swarm 2377/7946/4789, flannel 8285/8472, Calico 179/5473, Cilium 4240/4244/8472, Weave
    /// 6783/6784, Consul 8300-8302, Nomad 4646-4648, etcd 2379/2380, WireGuard 51820) and below
    /// Linux's ephemeral range (32768-60999).
    pub catalog_port: u16,
    /// A file holding the fleet's shared key (at least 16 bytes) authenticating every catalog
    /// datagram. Default `""` = no key (the firewall rule and the member check still apply).
    #[serde(deserialize_with = "de_opt_path", serialize_with = "ser_opt_path")]
    pub cluster_key_file: Option<PathBuf>,
    /// A member host that went silent (agent killed or restarting) keeps its records this long, in
    /// seconds; a host that is no member any more loses them 10 s after it was last heard. Default 300;
    /// 5..=86400.
    pub withdraw_after_secs: u64,
    /// The resolv.conf naming the upstream resolvers for every name outside the zone. Default
    /// `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

impl Default for NamesConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            zone: ZoneName::default(),
            host_name: None,
            dns_port: 53,
            catalog_port: 7953,
            cluster_key_file: None,
            withdraw_after_secs: 300,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// How long a host that is no member any more keeps its records after it was last heard.
pub const NON_MEMBER_WITHDRAW_SECS: u64 = 10;

impl NamesConfig {
    /// How long a silent non-member keeps its records: 10 s, or less when `withdraw_after_secs`
    /// is shorter.
    pub fn non_member_withdraw_secs(&self) -> u64 {
        self.withdraw_after_secs.min(NON_MEMBER_WITHDRAW_SECS)
    }
}

fn absolute(field: &str, p: &Path, example: &str) -> Result<(), ConfigError> {
    if p.is_absolute() {
        return Ok(());
    }
    Err(ConfigError::new(
        field,
        format!("`{}` is not an absolute path", p.display()),
        format!("use an absolute path, e.g. {example}"),
    ))
}

impl Config {
    /// The checks of `[names]` (called by [`Config::validate`]).
    pub(crate) fn validate_names(&self) -> Result<(), ConfigError> {
        let n = &self.names;
        for (field, port) in [
            ("names.dns_port", n.dns_port),
            ("names.catalog_port", n.catalog_port),
        ] {
            if port == 0 {
                return Err(ConfigError::new(
                    field,
                    "0 is not a port",
                    "use a port from 1 to 65535 (defaults: dns_port 53, catalog_port 7953)",
                ));
            }
        }
        range_check(
            "names.withdraw_after_secs",
            n.withdraw_after_secs,
            5,
            86_400,
            "seconds",
        )?;
        if let Some(key) = &n.cluster_key_file {
            absolute("names.cluster_key_file", key, "/etc/crossdock/cluster.key")?;
        }
        absolute("names.resolv_conf", &n.resolv_conf, "/etc/resolv.conf")?;
        if !n.enabled {
            return Ok(());
        }
        if self.docker.static_subnet.is_some() {
            return Err(ConfigError::new(
                "names.enabled",
                "true, but docker.static_subnet is set: this host runs no Docker whose containers could be named",
                "set enabled = false under [names] on hosts without Docker, or serve a Docker network",
            ));
        }
        let private_ip = self.cloud.private_ip.trim();
        if self.cloud.provider == Provider::None && private_ip.parse::<Ipv4Addr>().is_err() {
            return Err(ConfigError::new(
                "cloud.private_ip",
                format!("`{private_ip}` is not an IPv4 address, and [names] needs this host's private IP for the catalog exchange when cloud.provider = \"none\""),
                "set private_ip under [cloud] to this host's private IPv4 address, or use provider = \"alibaba\" (read from the metadata service)",
            ));
        }
        Ok(())
    }
}

fn de_zone<'de, D: Deserializer<'de>>(d: D) -> Result<ZoneName, D::Error> {
    let raw = String::deserialize(d)?;
    ZoneName::new(&raw).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{raw}` is not a DNS zone name (dot-separated labels of a-z, 0-9 and `-`)"
        ))
    })
}

fn de_opt_label<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Label>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.is_empty() {
        return Ok(None);
    }
    Label::new(&raw).map(Some).map_err(|_| {
        let hint = Label::sanitize(&raw).map_or(String::new(), |l| format!("; e.g. `{l}`"));
        serde::de::Error::custom(format!(
            "`{raw}` is not a DNS label (1 to 63 characters of a-z, 0-9 and `-`){hint}"
        ))
    })
}

fn ser_opt_label<S: Serializer>(v: &Option<Label>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_ref().map_or("", Label::as_str))
}

fn de_opt_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let raw = String::deserialize(d)?;
    Ok((!raw.trim().is_empty()).then(|| PathBuf::from(raw)))
}

fn ser_opt_path<S: Serializer>(v: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(p) => s.collect_str(&p.display()),
        None => s.serialize_str(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "cluster_cidrs = [\"10.0.0.0/8\"]\n";

    fn parse(section: &str) -> Result<Config, ConfigError> {
        crate::parse(&format!(
            "{MIN}[cloud]\nprivate_ip = \"192.168.1.11\"\n[names]\n{section}"
        ))
    }

    #[test]
    fn the_default_catalog_port_is_not_swarms_gossip_port() {
        // Docker swarm (memberlist) binds TCP/UDP 7946 on the address the agent's catalog uses:
        // the default must leave it to swarm (an operator may still choose it).
        let d = NamesConfig::default();
        assert_ne!(d.catalog_port, 7946);
        assert!(![2377, 4789, 7946, 8472, 51820].contains(&d.catalog_port));
        assert!(
            d.catalog_port < 32768,
            "inside Linux's ephemeral port range"
        );
    }

    #[test]
    fn off_by_default_with_the_documented_defaults_and_round_trips() {
        let c = crate::parse(MIN).unwrap();
        assert_eq!(c.names, NamesConfig::default());
        assert!(!c.names.enabled);
        assert_eq!(c.names.zone.as_str(), "crossdock.internal");
        assert_eq!((c.names.dns_port, c.names.catalog_port), (53, 7953));
        assert_eq!(c.names.withdraw_after_secs, 300);
        assert_eq!(c.names.resolv_conf, PathBuf::from("/etc/resolv.conf"));
        let on = parse("enabled = true\nzone = \"Fleet.Example.\"\nhost_name = \"web-1\"\ncluster_key_file = \"/etc/crossdock/cluster.key\"\nwithdraw_after_secs = 20").unwrap();
        assert_eq!(on.names.zone.as_str(), "fleet.example");
        assert_eq!(on.names.host_name.as_ref().unwrap().as_str(), "web-1");
        assert_eq!(on.names.non_member_withdraw_secs(), 10);
        assert_eq!(crate::parse(&on.to_toml()).unwrap(), on);
        let printed = c.to_toml();
        assert!(
            printed.contains(
                "[names]\nenabled = false\nzone = \"crossdock.internal\"\nhost_name = \"\""
            ),
            "{printed}"
        );
    }

    fn err(section: &str) -> ConfigError {
        parse(section).unwrap_err()
    }

    #[test]
    fn bad_values_name_the_field_and_the_fix() {
        let e = err("zone = \"bad_zone\"");
        assert_eq!(e.field, "names.zone");
        assert!(
            e.message.contains("bad_zone") && e.fix.contains("crossdock.internal"),
            "{e}"
        );
        let e = err("host_name = \"Web_1\"");
        assert_eq!(e.field, "names.host_name");
        assert!(e.message.contains("`web-1`"), "{e}");
        assert_eq!(err("dns_port = 0").field, "names.dns_port");
        assert_eq!(err("catalog_port = 0").field, "names.catalog_port");
        assert_eq!(
            err("withdraw_after_secs = 1").field,
            "names.withdraw_after_secs"
        );
        assert_eq!(
            err("cluster_key_file = \"key\"").field,
            "names.cluster_key_file"
        );
        assert_eq!(
            err("resolv_conf = \"resolv.conf\"").field,
            "names.resolv_conf"
        );
        assert_eq!(err("dns_port = 70000").field, "names.dns_port");
    }

    #[test]
    fn enabled_needs_docker_and_a_private_ip() {
        let e = crate::parse(&format!(
            "{MIN}[docker]\nstatic_subnet = \"10.1.0.0/24\"\n[cloud]\nprivate_ip = \"192.168.1.11\"\n[names]\nenabled = true"
        ))
        .unwrap_err();
        assert_eq!(e.field, "names.enabled");
        let e = crate::parse(&format!("{MIN}[names]\nenabled = true")).unwrap_err();
        assert_eq!(e.field, "cloud.private_ip");
        assert!(e.fix.contains("alibaba"), "{e}");
        // Off, neither matters.
        assert!(crate::parse(&format!("{MIN}[names]\nenabled = false")).is_ok());
        let alibaba = format!("{MIN}[cloud]\nprovider = \"alibaba\"\n[names]\nenabled = true");
        assert!(crate::parse(&alibaba).is_ok());
    }
}
