//! Netlink look-ups (read-only): which interface holds the IPv4 default route (the external interface
//! when the configuration says `auto`), whether a link exists, is up, and its MTU (the bridge), and
//! which IPv4 addresses this host holds (the scrape endpoint must listen on one of them).
//!
//! Behind the [`Links`] trait so the agent's logic can be tested without a kernel to ask.

use async_trait::async_trait;
use futures_util::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use netlink_packet_route::link::{LinkAttribute, LinkFlag, LinkMessage};
use netlink_packet_route::route::{RouteAttribute, RouteHeader, RouteType};
use rtnetlink::IpVersion;
use std::net::{IpAddr, Ipv4Addr};

/// A network interface as the agent cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    pub index: u32,
    pub mtu: Option<u32>,
    pub up: bool,
}

/// Why a netlink query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("netlink {what} failed: {message} (fix: the agent needs a working rtnetlink socket; check its sandboxing, e.g. RestrictAddressFamilies=AF_NETLINK)")]
pub struct NetlinkError {
    pub what: String,
    pub message: String,
}

/// Read-only link and route queries.
#[async_trait]
pub trait Links: Send + Sync {
    /// The interface of the IPv4 default route in the main table (lowest metric), if any.
    async fn default_route_interface(&self) -> Result<Option<String>, NetlinkError>;
    /// A link by name, `None` if there is no such link.
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError>;
}

/// The kernel, through rtnetlink; one short-lived connection per query, in the caller's namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtNetlink;

fn err(what: &str, e: impl std::fmt::Display) -> NetlinkError {
    NetlinkError {
        what: what.into(),
        message: e.to_string(),
    }
}

fn connect(what: &str) -> Result<rtnetlink::Handle, NetlinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| err(what, e))?;
    tokio::spawn(conn);
    Ok(handle)
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        name: String::new(),
        index: msg.header.index,
        mtu: None,
        up: msg.header.flags.contains(&LinkFlag::Up),
    };
    for a in &msg.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Mtu(m) => info.mtu = Some(*m),
            _ => {}
        }
    }
    info
}

fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.code.map(|c| c.get()) == Some(-libc_enodev()))
}

const fn libc_enodev() -> i32 {
    19 // ENODEV
}

#[async_trait]
impl Links for RtNetlink {
    async fn default_route_interface(&self) -> Result<Option<String>, NetlinkError> {
        let what = "route dump";
        let handle = connect(what)?;
        let mut routes = handle.route().get(IpVersion::V4).execute();
        let mut best: Option<(u32, u32)> = None; // (metric, oif)
        while let Some(r) = routes.try_next().await.map_err(|e| err(what, e))? {
            let mut table = u32::from(r.header.table);
            let mut oif = None;
            let mut metric = 0;
            for a in &r.attributes {
                match a {
                    RouteAttribute::Table(t) => table = *t,
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    RouteAttribute::Priority(p) => metric = *p,
                    _ => {}
                }
            }
            if r.header.destination_prefix_length != 0
                || table != u32::from(RouteHeader::RT_TABLE_MAIN)
                || r.header.kind != RouteType::Unicast
            {
                continue;
            }
            if let Some(oif) = oif {
                if best.is_none_or(|(m, _)| metric < m) {
                    best = Some((metric, oif));
                }
            }
        }
        let Some((_, index)) = best else {
            return Ok(None);
        };
        let mut links = handle.link().get().match_index(index).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(link_info(&msg).name)),
            Ok(None) => Ok(None),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(err("link lookup", e)),
        }
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, NetlinkError> {
        let what = "link lookup";
        let handle = connect(what)?;
        let mut links = handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(link_info(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_no_device(&e) => Ok(None),
            Err(e) => Err(err(what, e)),
        }
    }
}

impl RtNetlink {
    /// Every IPv4 address configured on an interface of this namespace (the `IFA_LOCAL` address of
    /// each, which on a point-to-point link differs from the peer's `IFA_ADDRESS`). Used to check that
    /// an address the agent is told to listen on is one of this host's; needs no privilege.
    pub async fn ipv4_addresses(&self) -> Result<Vec<Ipv4Addr>, NetlinkError> {
        let what = "address dump";
        let handle = connect(what)?;
        let mut addrs = handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(msg) = addrs.try_next().await.map_err(|e| err(what, e))? {
            let mut local = None;
            let mut address = None;
            for a in &msg.attributes {
                match a {
                    AddressAttribute::Local(IpAddr::V4(ip)) => local = Some(*ip),
                    AddressAttribute::Address(IpAddr::V4(ip)) => address = Some(*ip),
                    _ => {}
                }
            }
            out.extend(local.or(address));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read-only queries against this process's own namespace: loopback always exists.
    #[tokio::test]
    async fn loopback_exists_and_a_made_up_link_does_not() {
        let lo = RtNetlink.link("lo").await.unwrap().expect("lo exists");
        assert_eq!(lo.name, "lo");
        assert_eq!(lo.index, 1);
        assert!(lo.mtu.is_some());
        assert_eq!(RtNetlink.link("crossdock-none0").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_addresses_include_loopback() {
        let addrs = RtNetlink.ipv4_addresses().await.unwrap();
        assert!(addrs.contains(&Ipv4Addr::LOCALHOST), "{addrs:?}");
        assert!(!addrs.contains(&Ipv4Addr::UNSPECIFIED), "{addrs:?}");
    }

    #[tokio::test]
    async fn default_route_interface_is_a_real_link_when_present() {
        if let Some(name) = RtNetlink.default_route_interface().await.unwrap() {
            assert!(RtNetlink.link(&name).await.unwrap().is_some(), "{name}");
        }
    }
}
