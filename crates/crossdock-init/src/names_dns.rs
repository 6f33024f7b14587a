//! With `[names]` on, containers must ask the agent's resolver: `crossdock init` writes daemon.json
//! `"dns"` = the bridge gateway (where the agent answers) first, then the host's own upstream
//! resolvers.
//!
//! Why the upstreams after it: a container's resolver library tries the next server when the
//! first refuses or does not answer, so while the agent is stopped (upgrade, crash) external names
//! keep resolving straight from the VPC resolvers; only the fleet's names pause. Loopback
//! resolvers (systemd-resolved's 127.0.0.53) are left out: from a container they are its own
//! loopback. Containers take the list when they are created, and Docker reads daemon.json when it
//! starts, which is why init writes it before Docker starts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use crossdock_config::Config;
use ipnet::Ipv4Net;

use crate::InitError;

/// The resolvers for daemon.json `"dns"`: `gateway`, then every upstream that a container can
/// reach (not loopback, not the gateway itself), in order, once each.
pub fn servers(gateway: Ipv4Addr, upstreams: &[IpAddr]) -> Vec<IpAddr> {
    let mut out = vec![IpAddr::V4(gateway)];
    for u in upstreams {
        if !u.is_loopback() && !u.is_unspecified() && !out.contains(u) {
            out.push(*u);
        }
    }
    out
}

/// daemon.json's `"dns"` value for `servers`.
pub fn value(servers: &[IpAddr]) -> serde_json::Value {
    serde_json::Value::from(
        servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<String>>(),
    )
}

/// The name servers of a resolv.conf.
pub fn nameservers(path: &Path) -> Result<Vec<IpAddr>, InitError> {
    let text = std::fs::read(path).map_err(|e| {
        InitError::BadInput(format!(
            "names.resolv_conf: cannot read {}: {e} (fix: point names.resolv_conf at the resolv.conf listing this host's resolvers)",
            path.display()
        ))
    })?;
    let (conf, _ignored) = resolv_conf::Config::parse_with_errors(&text);
    Ok(conf
        .nameservers
        .iter()
        .map(|ns| match ns {
            resolv_conf::ScopedIp::V4(ip) => IpAddr::V4(*ip),
            resolv_conf::ScopedIp::V6(ip, _) => IpAddr::V6(*ip),
        })
        .collect())
}

/// What init writes into `"dns"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsList {
    /// The resolvers, the agent's first.
    pub servers: Vec<IpAddr>,
    /// Set when containers would have no resolver left while the agent is stopped.
    pub warning: Option<String>,
}

/// The `"dns"` list for this host (`None` with `[names]` off).
pub fn for_host(cfg: &Config, subnet: Ipv4Net) -> Result<Option<DnsList>, InitError> {
    let n = &cfg.names;
    if !n.enabled {
        return Ok(None);
    }
    if n.dns_port != 53 {
        return Err(InitError::BadInput(format!(
            "names.dns_port is {}, but Docker's \"dns\" setting can only name resolvers on port 53 (fix: set dns_port = 53 under [names])",
            n.dns_port
        )));
    }
    let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    let list = servers(gateway, &nameservers(&n.resolv_conf)?);
    let warning = (list.len() == 1).then(|| {
        format!(
            "{} lists no resolver a container can reach (only loopback ones or none): while the agent is stopped, containers resolve no names at all (fix: list the VPC resolvers in it, e.g. nameserver 100.100.2.136)",
            n.resolv_conf.display()
        )
    });
    Ok(Some(DnsList {
        servers: list,
        warning,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_gateway_first_then_the_reachable_upstreams_once_each() {
        let got = servers(
            "10.1.11.1".parse().unwrap(),
            &[
                ip("127.0.0.53"),
                ip("100.100.2.136"),
                ip("10.1.11.1"),
                ip("100.100.2.138"),
                ip("100.100.2.136"),
                ip("::1"),
            ],
        );
        assert_eq!(
            got,
            [ip("10.1.11.1"), ip("100.100.2.136"), ip("100.100.2.138")]
        );
        assert_eq!(
            value(&got),
            serde_json::json!(["10.1.11.1", "100.100.2.136", "100.100.2.138"])
        );
    }

    fn cfg(resolv: &Path, extra: &str) -> Config {
        crossdock_config::parse(&format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n[cloud]\nprovider = \"alibaba\"\n[names]\nenabled = true\nresolv_conf = \"{}\"\n{extra}",
            resolv.display()
        ))
        .unwrap()
    }

    #[test]
    fn the_list_comes_from_the_configured_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "options rotate\nnameserver 100.100.2.136\n").unwrap();
        let subnet = "10.1.11.0/24".parse().unwrap();
        let got = for_host(&cfg(&resolv, ""), subnet).unwrap().unwrap();
        assert_eq!(got.servers, [ip("10.1.11.1"), ip("100.100.2.136")]);
        assert_eq!(got.warning, None);
        std::fs::write(&resolv, "nameserver 127.0.0.53\n").unwrap();
        let got = for_host(&cfg(&resolv, ""), subnet).unwrap().unwrap();
        assert_eq!(got.servers, [ip("10.1.11.1")]);
        assert!(got.warning.unwrap().contains("fix:"));
        let off = crossdock_config::parse("cluster_cidrs = [\"10.0.0.0/8\"]").unwrap();
        assert!(for_host(&off, subnet).unwrap().is_none());
    }

    #[test]
    fn another_port_or_a_missing_file_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let subnet = "10.1.11.0/24".parse().unwrap();
        let e = for_host(&cfg(&dir.path().join("none"), ""), subnet).unwrap_err();
        assert!(
            matches!(&e, InitError::BadInput(m) if m.contains("names.resolv_conf")),
            "{e}"
        );
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(&resolv, "nameserver 100.100.2.136\n").unwrap();
        let e = for_host(&cfg(&resolv, "dns_port = 5353"), subnet).unwrap_err();
        assert!(
            matches!(&e, InitError::BadInput(m) if m.contains("dns_port")),
            "{e}"
        );
    }
}
