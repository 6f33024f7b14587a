//! The upstream resolvers: the host's own, from its resolv.conf.
//!
//! Containers keep resolving external names through the same resolvers the host uses (on
//! Alibaba, the VPC's DNS at 100.100.2.136 and 100.100.2.138). The file is parsed by the
//! `resolv-conf` crate (hickory's own parser); only its `nameserver` lines matter here, and a
//! line the parser does not understand does not hide the others. Port 53 is implied, as in
//! resolv.conf itself.
//!
//! The resolver's own listening addresses are dropped from the list: a host whose resolv.conf
//! points at crossdock would otherwise forward to itself in a loop.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use resolv_conf::ScopedIp;

use crate::DnsError;

/// The DNS port of resolv.conf's name servers.
pub const DNS_PORT: u16 = 53;

/// The name servers of the resolv.conf at `path`, without any of `own` (see the module docs).
pub fn upstreams_from_resolv_conf(
    path: &Path,
    own: &[SocketAddr],
) -> Result<Vec<SocketAddr>, DnsError> {
    let text = std::fs::read(path).map_err(|e| DnsError::ResolvConf {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let (config, _ignored_lines) = resolv_conf::Config::parse_with_errors(&text);
    let upstreams: Vec<SocketAddr> = config
        .nameservers
        .iter()
        .map(|ns| SocketAddr::new(scoped_ip(ns), DNS_PORT))
        .filter(|a| !own.contains(a))
        .collect();
    if upstreams.is_empty() {
        return Err(DnsError::ResolvConf {
            path: path.display().to_string(),
            message: "it lists no name server other than this resolver".into(),
        });
    }
    Ok(upstreams)
}

fn scoped_ip(ns: &ScopedIp) -> IpAddr {
    match ns {
        ScopedIp::V4(ip) => IpAddr::V4(*ip),
        ScopedIp::V6(ip, _) => IpAddr::V6(*ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn nameserver_lines_become_upstreams_on_port_53() {
        let f = file(
            "# Alibaba\noptions timeout:2 attempts:3 rotate single-request-reopen\n\
             nameserver 100.100.2.136\nnameserver 100.100.2.138\nsearch example\n",
        );
        let got = upstreams_from_resolv_conf(f.path(), &[]).unwrap();
        assert_eq!(
            got,
            vec![
                "100.100.2.136:53".parse::<SocketAddr>().unwrap(),
                "100.100.2.138:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn the_resolver_itself_is_never_an_upstream() {
        let f = file("nameserver 10.1.0.1\nnameserver 100.100.2.136\n");
        let own = ["10.1.0.1:53".parse().unwrap()];
        let got = upstreams_from_resolv_conf(f.path(), &own).unwrap();
        assert_eq!(got, vec!["100.100.2.136:53".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn a_file_without_name_servers_or_missing_is_an_error_naming_it() {
        let f = file("search example\n");
        let err = upstreams_from_resolv_conf(f.path(), &[]).unwrap_err();
        assert!(
            err.to_string().contains(&f.path().display().to_string()),
            "{err}"
        );
        let err =
            upstreams_from_resolv_conf(Path::new("/nonexistent/resolv.conf"), &[]).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/resolv.conf"),
            "{err}"
        );
    }
}
