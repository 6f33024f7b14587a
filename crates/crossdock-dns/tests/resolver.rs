//! The resolver end to end on loopback: a stand-in upstream (hickory-server with a static zone)
//! on one port, crossdock's resolver on another, queries from hickory's resolver and from raw
//! hickory messages sent by a socket bound to another loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crossdock_dns::{DnsConfig, DnsServer, ZoneSlot};
use crossdock_names::{
    Catalog, CatalogLimits, ContainerRecord, HostId, HostRecords, Label, RecordVersion, ZoneName,
    ZoneTtls,
};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::Resolver;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog as HickoryCatalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Another loopback address: Linux routes all of 127.0.0.0/8 to `lo`, so a socket binds to it
/// without any setup.
const OTHER_LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// The upstream stand-in: `example.test.` with `www.example.test. A 192.0.2.10`.
async fn upstream() -> (Server<HickoryCatalog>, SocketAddr) {
    let origin = name("example.test.");
    let zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = rdata::SOA::new(
        name("ns.example.test."),
        name("hostmaster.example.test."),
        1,
        60,
        60,
        60,
        60,
    );
    zone.upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
        .await;
    let www = RData::A(rdata::A(Ipv4Addr::new(192, 0, 2, 10)));
    zone.upsert(Record::from_rdata(name("www.example.test."), 60, www), 1)
        .await;
    let mut catalog = HickoryCatalog::new();
    catalog.upsert(origin.into(), vec![Arc::new(zone)]);
    let mut server = Server::new(catalog);
    let udp = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    let tcp = TcpListener::bind(addr).await.unwrap();
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    (server, addr)
}

fn rec(c: &str, n: &str, ip: [u8; 4]) -> ContainerRecord {
    ContainerRecord {
        container: Label::new(c).unwrap(),
        name: Label::new(n).unwrap(),
        ip: ip.into(),
    }
}

/// Two hosts, each running a `web`; h1 also runs `db`.
fn catalog() -> Catalog {
    let mut c = Catalog::new(HostId("i-1".into()), CatalogLimits::default());
    for (id, host, records) in [
        (
            "i-1",
            "h1",
            vec![
                rec("web", "web", [10, 1, 0, 2]),
                rec("db", "db", [10, 1, 0, 3]),
            ],
        ),
        ("i-2", "h2", vec![rec("web-1", "web", [10, 2, 0, 2])]),
    ] {
        let set = HostRecords {
            host: Label::new(host).unwrap(),
            version: RecordVersion {
                incarnation: 1,
                counter: 1,
            },
            records,
        };
        c.merge(HostId(id.into()), set, Duration::ZERO);
    }
    c
}

fn view(c: &Catalog) -> crossdock_names::ZoneView {
    c.view(
        &ZoneName::default(),
        &["10.0.0.0/8".parse().unwrap()],
        ZoneTtls::default(),
    )
}

/// crossdock's resolver on 127.0.0.1, answering 127.0.0.1/32 only.
async fn resolver_under_test(upstream: SocketAddr) -> (DnsServer, Arc<ZoneSlot>, SocketAddr) {
    let slot = Arc::new(ZoneSlot::new(view(&catalog())));
    let config = DnsConfig::new(
        vec![SocketAddr::new(LOCALHOST, 0)],
        vec!["127.0.0.1/32".parse().unwrap()],
        vec![upstream],
    );
    let server = DnsServer::start(&config, slot.clone()).await.unwrap();
    let addr = server.local_addrs()[0];
    (server, slot, addr)
}

/// A client as a container's would be, without a cache, over `tcp` or UDP.
fn client(server: SocketAddr, tcp: bool) -> Resolver<TokioRuntimeProvider> {
    let mut conn = if tcp {
        ConnectionConfig::tcp()
    } else {
        ConnectionConfig::udp()
    };
    conn.port = server.port();
    let mut ns = NameServerConfig::udp(server.ip());
    ns.connections = vec![conn];
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    let opts: &mut ResolverOpts = builder.options_mut();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(3);
    builder.build().unwrap()
}

async fn a_records(r: &Resolver<TokioRuntimeProvider>, q: &str) -> Vec<Ipv4Addr> {
    let lookup = r.lookup(name(q), RecordType::A).await.unwrap();
    let mut ips: Vec<Ipv4Addr> = lookup
        .answers()
        .iter()
        .filter_map(|rec| match &rec.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

/// One raw question from a UDP socket bound to `from`.
async fn raw_query(server: SocketAddr, from: IpAddr, q: &str, t: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(name(q), t));
    msg.metadata.recursion_desired = true;
    let sock = UdpSocket::bind((from, 0)).await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

#[tokio::test]
async fn fleet_names_ptr_nxdomain_and_forwarding_over_udp_and_tcp() {
    let (_up, up_addr) = upstream().await;
    let (server, _slot, addr) = resolver_under_test(up_addr).await;
    for tcp in [false, true] {
        let r = client(addr, tcp);
        assert_eq!(
            a_records(&r, "web.crossdock.internal.").await,
            vec![Ipv4Addr::new(10, 1, 0, 2), Ipv4Addr::new(10, 2, 0, 2)],
            "tcp={tcp}"
        );
        assert_eq!(
            a_records(&r, "db.h1.crossdock.internal.").await,
            vec![Ipv4Addr::new(10, 1, 0, 3)]
        );
        let ptr = r
            .lookup(name("2.0.2.10.in-addr.arpa."), RecordType::PTR)
            .await
            .unwrap();
        let targets: Vec<String> = ptr
            .answers()
            .iter()
            .filter_map(|rec| match &rec.data {
                RData::PTR(p) => Some(p.0.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(targets, vec!["web-1.h2.crossdock.internal."]);
        let err = r
            .lookup(name("nope.crossdock.internal."), RecordType::A)
            .await
            .unwrap_err();
        assert!(err.is_nx_domain(), "{err}");
        // Forwarded to the stand-in, answer and NXDOMAIN relayed.
        assert_eq!(
            a_records(&r, "www.example.test.").await,
            vec![Ipv4Addr::new(192, 0, 2, 10)]
        );
        let err = r
            .lookup(name("missing.example.test."), RecordType::A)
            .await
            .unwrap_err();
        assert!(err.is_nx_domain(), "{err}");
    }
    let stats = server.stats();
    assert!(stats.forwarded.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn zone_answers_are_authoritative_with_the_soa_on_negative_answers() {
    let (_up, up_addr) = upstream().await;
    let (server, _slot, addr) = resolver_under_test(up_addr).await;
    let ans = raw_query(addr, LOCALHOST, "web.h1.crossdock.internal.", RecordType::A).await;
    assert_eq!(ans.metadata.response_code, ResponseCode::NoError);
    assert!(ans.metadata.authoritative);
    assert_eq!(ans.answers.len(), 1);
    assert_eq!(ans.answers[0].ttl, 5);
    let nx = raw_query(
        addr,
        LOCALHOST,
        "nope.h1.crossdock.internal.",
        RecordType::A,
    )
    .await;
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    assert!(nx
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA));
    let empty = raw_query(addr, LOCALHOST, "web.crossdock.internal.", RecordType::AAAA).await;
    assert_eq!(empty.metadata.response_code, ResponseCode::NoError);
    assert!(empty.answers.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_outside_the_allowed_networks_is_refused() {
    let (_up, up_addr) = upstream().await;
    let (server, _slot, addr) = resolver_under_test(up_addr).await;
    for q in ["web.crossdock.internal.", "www.example.test."] {
        let ans = raw_query(addr, OTHER_LOOPBACK, q, RecordType::A).await;
        assert_eq!(ans.metadata.response_code, ResponseCode::Refused, "{q}");
        assert!(ans.answers.is_empty());
    }
    // Over TCP too: a client bound to 127.0.0.2 gets no answer.
    let mut conn = ConnectionConfig::tcp();
    conn.port = addr.port();
    conn.bind_addr = Some(SocketAddr::new(OTHER_LOOPBACK, 0));
    let mut ns = NameServerConfig::tcp(addr.ip());
    ns.connections = vec![conn];
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().cache_size = 0;
    builder.options_mut().attempts = 1;
    let r = builder.build().unwrap();
    let err = r
        .lookup(name("web.crossdock.internal."), RecordType::A)
        .await
        .unwrap_err();
    assert!(!err.is_nx_domain(), "refused, not answered: {err}");
    // The allowed client still gets answers.
    let ok = raw_query(addr, LOCALHOST, "web.crossdock.internal.", RecordType::A).await;
    assert_eq!(ok.answers.len(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_new_snapshot_is_answered_at_once() {
    let (_up, up_addr) = upstream().await;
    let (server, slot, addr) = resolver_under_test(up_addr).await;
    let r = client(addr, false);
    assert_eq!(
        a_records(&r, "db.crossdock.internal.").await,
        vec![Ipv4Addr::new(10, 1, 0, 3)]
    );
    // `db` recreated with a new address on h1.
    let mut c = catalog();
    let set = HostRecords {
        host: Label::new("h1").unwrap(),
        version: RecordVersion {
            incarnation: 1,
            counter: 2,
        },
        records: vec![
            rec("web", "web", [10, 1, 0, 2]),
            rec("db", "db", [10, 1, 0, 7]),
        ],
    };
    c.merge(HostId("i-1".into()), set, Duration::from_secs(1));
    slot.set(view(&c));
    assert_eq!(
        a_records(&r, "db.crossdock.internal.").await,
        vec![Ipv4Addr::new(10, 1, 0, 7)]
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_open_resolver_is_refused_at_start() {
    let slot = Arc::new(ZoneSlot::default());
    let config = DnsConfig::new(
        vec![SocketAddr::new(LOCALHOST, 0)],
        vec![],
        vec!["127.0.0.1:53".parse().unwrap()],
    );
    let err = DnsServer::start(&config, slot).await.unwrap_err();
    assert!(err.to_string().contains("open resolver"), "{err}");
}

#[tokio::test]
async fn a_name_with_many_replicas_is_truncated_over_udp_and_whole_over_tcp() {
    let (_up, up_addr) = upstream().await;
    let (server, slot, addr) = resolver_under_test(up_addr).await;
    let mut c = Catalog::new(HostId("i-0".into()), CatalogLimits::default());
    for h in 0..60u8 {
        let set = HostRecords {
            host: Label::new(&format!("h{h}")).unwrap(),
            version: RecordVersion {
                incarnation: 1,
                counter: 1,
            },
            records: vec![rec("web", "web", [10, h, 0, 2])],
        };
        c.merge(HostId(format!("i-{h}")), set, Duration::ZERO);
    }
    slot.set(view(&c));
    // 60 A records do not fit in 512 bytes: the UDP answer says so, TCP carries them all.
    let udp = raw_query(addr, LOCALHOST, "web.crossdock.internal.", RecordType::A).await;
    assert!(udp.metadata.truncation);
    assert_eq!(
        a_records(&client(addr, true), "web.crossdock.internal.")
            .await
            .len(),
        60
    );
    server.shutdown().await.unwrap();
}
