//! doctor's real DNS probe ([`crossdock_doctor::names::ask`]) against crossdock's own resolver on
//! loopback, forwarding to the lab's upstream stand-in (also on loopback): the zone's SOA over UDP
//! and TCP, an external name forwarded, and a port where nothing answers. No root, no network
//! beyond 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use crossdock_dns::{DnsConfig, DnsServer, ZoneSlot};
use crossdock_doctor::names::{ask, QueryKind, Rcode, Transport};
use crossdock_lab::upstream_dns::{serve, TEST_NAME, TEST_ZONE};

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("loopback is IPv4 here"),
    }
}

#[tokio::test]
async fn the_probe_sees_the_zone_over_udp_and_tcp_forwarding_and_silence() {
    let records = [(TEST_NAME.to_string(), Ipv4Addr::new(192, 0, 2, 10))];
    let (_upstream, upstream_addr) = serve("127.0.0.1:0".parse().unwrap(), TEST_ZONE, &records)
        .await
        .unwrap();
    let config = DnsConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        vec!["127.0.0.0/8".parse().unwrap()],
        vec![upstream_addr],
    );
    // An empty fleet: the zone still has its apex.
    let catalog = crossdock_names::Catalog::new(
        crossdock_names::HostId("i-1".into()),
        crossdock_names::CatalogLimits::default(),
    );
    let view = catalog.view(
        &crossdock_names::ZoneName::default(),
        &["10.0.0.0/8".parse().unwrap()],
        crossdock_names::ZoneTtls::default(),
    );
    let slot = Arc::new(ZoneSlot::new(view));
    let server = DnsServer::start(&config, slot).await.unwrap();
    let addr = v4(server.local_addrs()[0]);

    for t in [Transport::Udp, Transport::Tcp] {
        let soa = ask(addr, "crossdock.internal", QueryKind::Soa, t)
            .await
            .unwrap();
        assert_eq!(soa.rcode, Rcode::NoError, "{t:?}: {soa:?}");
        assert_eq!(soa.answers, 1, "{t:?}: {soa:?}");
        assert!(soa.authoritative, "{t:?}: {soa:?}");
    }
    let ext = ask(addr, TEST_NAME, QueryKind::A, Transport::Udp)
        .await
        .unwrap();
    assert_eq!((ext.rcode, ext.answers), (Rcode::NoError, 1), "{ext:?}");

    // A TCP port where nothing listens: refused at once, reported with the fix.
    let idle = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = v4(idle.local_addr().unwrap());
    drop(idle);
    let err = ask(closed, "crossdock.internal", QueryKind::Soa, Transport::Tcp)
        .await
        .unwrap_err();
    assert!(err.message.contains("over TCP"), "{err:?}");
    assert!(err.fix.contains("crossdock status"), "{err:?}");
}
