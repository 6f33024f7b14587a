//! `[metrics]`: the optional TCP scrape endpoint for Prometheus.
//!
//! Why a TCP listener at all: Prometheus scrapes HTTP over TCP, while the health socket is a unix
//! socket readable only by the `crossdock` group. Why it is off by default and bound to one named
//! address: the agent runs as root on every host of the VPC, so exposing it is the operator's explicit
//! choice, either on loopback (a local Prometheus agent) or on this host's private IP with the
//! scraper ranges spelt out (`scrapers`), which the agent turns into a firewall rule and a check of
//! every connection's peer address.
//!
//! What can be checked from the file alone is checked here (an IPv4 `address:port`, one address and
//! not "any", scrapers present for a non-loopback address). Whether the address belongs to this host
//! needs the kernel and is checked by the agent at start, `--check-config` and reload.

use crate::ConfigError;
use ipnet::Ipv4Net;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddrV4;

/// `[metrics]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where to serve `/metrics` and `/healthz` over TCP: `"127.0.0.1:9464"` for a Prometheus on this
    /// host, `"<private IP>:9464"` for one elsewhere in the VPC (with `scrapers`). Default `""`: no
    /// TCP listener (the health socket still serves both).
    #[serde(deserialize_with = "de_listen", serialize_with = "ser_listen")]
    pub listen: Option<SocketAddrV4>,
    /// The IPv4 ranges allowed to scrape a non-loopback `listen` address (a firewall rule admits only
    /// them to the port, and the agent answers 403 to anyone else). Required then; ignored for a
    /// loopback address. Default `[]`.
    #[serde(deserialize_with = "crate::de_cidr_list")]
    pub scrapers: Vec<Ipv4Net>,
}

impl MetricsConfig {
    /// The listen address when it is not a loopback one: the case that needs the firewall rule and
    /// the peer check.
    pub fn exposed(&self) -> Option<SocketAddrV4> {
        self.listen.filter(|a| !a.ip().is_loopback())
    }

    /// Checks what the file alone can tell: one concrete address and a port, scrapers for a
    /// non-loopback address.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(addr) = self.listen else {
            return Ok(());
        };
        let ip = addr.ip();
        if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
            return Err(ConfigError::new(
                "metrics.listen",
                format!("`{addr}` is not one address of this host"),
                "name one address: 127.0.0.1:9464 for a Prometheus on this host, or this host's private IP (e.g. 192.168.1.10:9464) with metrics.scrapers",
            ));
        }
        if addr.port() == 0 {
            return Err(ConfigError::new(
                "metrics.listen",
                format!("`{addr}` has no port"),
                "give a port, e.g. 9464 (the port registered for exporters like this one)",
            ));
        }
        if !ip.is_loopback() && self.scrapers.is_empty() {
            return Err(ConfigError::new(
                "metrics.scrapers",
                format!("empty, but metrics.listen = \"{addr}\" is reachable from other hosts"),
                "list the ranges allowed to scrape, e.g. scrapers = [\"192.168.1.5/32\"] for your Prometheus server, or listen on 127.0.0.1",
            ));
        }
        Ok(())
    }
}

fn de_listen<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddrV4>, D::Error> {
    let raw = String::deserialize(d)?;
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{raw}` is not an IPv4 address:port (write e.g. 127.0.0.1:9464, or this host's private IP and a port; \"\" = off)"
        ))
    })
}

fn ser_listen<S: Serializer>(v: &Option<SocketAddrV4>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(a) => s.serialize_str(&a.to_string()),
        None => s.serialize_str(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "cluster_cidrs = [\"10.0.0.0/8\"]\n";

    fn parse(section: &str) -> Result<MetricsConfig, ConfigError> {
        crate::parse(&format!("{MIN}[metrics]\n{section}")).map(|c| c.metrics)
    }

    #[test]
    fn off_by_default_and_round_trips() {
        let c = crate::parse(MIN).unwrap();
        assert_eq!(c.metrics, MetricsConfig::default());
        assert_eq!(c.metrics.listen, None);
        let on = parse("listen = \"192.168.1.10:9464\"\nscrapers = [\"192.168.1.5/32\"]").unwrap();
        assert_eq!(on.listen, Some("192.168.1.10:9464".parse().unwrap()));
        assert_eq!(on.exposed(), on.listen);
        let full = crate::parse(&format!(
            "{MIN}[metrics]\nlisten = \"192.168.1.10:9464\"\nscrapers = [\"192.168.1.5/32\"]"
        ))
        .unwrap();
        assert_eq!(crate::parse(&full.to_toml()).unwrap(), full);
        let printed = crate::parse(MIN).unwrap().to_toml();
        assert!(
            printed.contains("[metrics]\nlisten = \"\"\nscrapers = []"),
            "{printed}"
        );
    }

    #[test]
    fn loopback_needs_no_scrapers() {
        let c = parse("listen = \"127.0.0.1:9464\"").unwrap();
        assert_eq!(c.exposed(), None);
    }

    /// (section, field, fragment of the message or fix)
    #[test]
    fn bad_values_name_the_field_and_the_fix() {
        let cases = [
            (
                "listen = \"9464\"",
                "metrics.listen",
                "not an IPv4 address:port",
            ),
            (
                "listen = \"localhost:9464\"",
                "metrics.listen",
                "not an IPv4 address:port",
            ),
            (
                "listen = \"[::1]:9464\"",
                "metrics.listen",
                "not an IPv4 address:port",
            ),
            (
                "listen = \"127.0.0.1\"",
                "metrics.listen",
                "not an IPv4 address:port",
            ),
            (
                "listen = \"0.0.0.0:9464\"",
                "metrics.listen",
                "name one address",
            ),
            ("listen = \"127.0.0.1:0\"", "metrics.listen", "give a port"),
            (
                "listen = \"192.168.1.10:9464\"",
                "metrics.scrapers",
                "list the ranges allowed",
            ),
            (
                "listen = \"192.168.1.10:9464\"\nscrapers = [\"192.168.1.5\"]",
                "metrics.scrapers",
                "not an IPv4 CIDR",
            ),
            (
                "scrapers = [\"192.168.1.5/24\"]",
                "metrics.scrapers",
                "did you mean 192.168.1.0/24",
            ),
            ("port = 9464", "metrics.port", "unknown field"),
        ];
        for (section, field, fragment) in cases {
            let e = parse(section).expect_err(section);
            assert_eq!(e.field, field, "{section}: {e}");
            assert!(e.to_string().contains(fragment), "{section}: {e}");
        }
    }
}
