//! The lab's upstream DNS: a stand-in for the VPC's resolvers (100.100.2.136 on Alibaba), so the
//! agents' forwarding of external names is tested without leaving the lab's namespaces.
//!
//! `crossdock lab up --names` runs it (`crossdock lab dns-server`, hidden) inside the vRouter
//! namespace on [`UPSTREAM_DNS_IP`]:53, UDP and TCP, and points every host's resolv.conf at it.
//! It is a hickory-server authoritative for one test zone ([`TEST_ZONE`], with
//! [`TEST_NAME`] → [`TEST_IP`] unless other records are given); names outside it are REFUSED,
//! which is what a resolver that is not ours to recurse would say. It writes its pid file only
//! once its sockets are bound, so the lab waits for that file instead of sleeping.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use hickory_proto::rr::{rdata, Name, RData, Record};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

/// Where the stand-in answers in the vRouter namespace (the address of Alibaba's VPC DNS).
pub const UPSTREAM_DNS_IP: &str = "100.100.2.136";
/// The zone it is authoritative for.
pub const TEST_ZONE: &str = "example.test";
/// The name it answers by default.
pub const TEST_NAME: &str = "www.example.test";
/// ... with this address.
pub const TEST_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// `crossdock lab dns-server`
#[derive(Debug, Args)]
pub struct DnsServerArgs {
    /// Address and port to answer on, UDP and TCP.
    #[arg(long, default_value = "100.100.2.136:53")]
    pub listen: SocketAddr,
    /// The zone it is authoritative for.
    #[arg(long, default_value = TEST_ZONE)]
    pub zone: String,
    /// A record `NAME=IPV4` (repeatable); default www.example.test=192.0.2.10.
    #[arg(long = "record", value_parser = parse_record)]
    pub records: Vec<(String, Ipv4Addr)>,
    /// Written with the process id once the sockets are bound.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
}

fn parse_record(s: &str) -> Result<(String, Ipv4Addr), String> {
    let (name, ip) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=IPV4"))?;
    let ip = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
    Ok((name.to_string(), ip))
}

fn fqdn(s: &str) -> Result<Name> {
    let dotted = if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
    };
    Name::from_ascii(&dotted).map_err(|e| anyhow!("`{s}` is not a DNS name: {e}"))
}

/// Binds `listen` (UDP and TCP) and answers `zone` with `records`; the running server and the
/// bound address.
pub async fn serve(
    listen: SocketAddr,
    zone: &str,
    records: &[(String, Ipv4Addr)],
) -> Result<(Server<Catalog>, SocketAddr)> {
    let origin = fqdn(zone)?;
    let handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = rdata::SOA::new(
        fqdn(&format!("ns.{zone}"))?,
        fqdn(&format!("hostmaster.{zone}"))?,
        1,
        3600,
        600,
        86400,
        60,
    );
    handler
        .upsert(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1)
        .await;
    for (name, ip) in records {
        let rec = Record::from_rdata(fqdn(name)?, 60, RData::A(rdata::A(*ip)));
        handler.upsert(rec, 1).await;
    }
    let mut catalog = Catalog::new();
    catalog.upsert(origin.into(), vec![Arc::new(handler)]);
    let mut server = Server::new(catalog);
    let udp = UdpSocket::bind(listen)
        .await
        .with_context(|| format!("cannot bind {listen}/udp"))?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound)
        .await
        .with_context(|| format!("cannot bind {bound}/tcp"))?;
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 4096);
    Ok((server, bound))
}

/// Runs the stand-in until it is killed; the exit status.
pub fn run(args: DnsServerArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crossdock lab dns-server: cannot start the runtime: {e}");
            return 1;
        }
    };
    let records = if args.records.is_empty() {
        vec![(TEST_NAME.to_string(), TEST_IP)]
    } else {
        args.records.clone()
    };
    let result: Result<()> = rt.block_on(async {
        let (_server, bound) = serve(args.listen, &args.zone, &records).await?;
        if let Some(p) = &args.pid_file {
            std::fs::write(p, std::process::id().to_string())
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        eprintln!(
            "crossdock lab dns-server: answering {} on {bound}",
            args.zone
        );
        std::future::pending::<()>().await;
        Ok(())
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crossdock lab dns-server: {e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::RecordType;

    async fn ask(server: SocketAddr, q: &str) -> Message {
        let mut msg = Message::query();
        msg.add_query(Query::query(fqdn(q).unwrap(), RecordType::A));
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(&msg.to_vec().unwrap(), server).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    #[tokio::test]
    async fn answers_its_zone_and_refuses_the_rest() {
        let records = [(TEST_NAME.to_string(), TEST_IP)];
        let (_server, addr) = serve("127.0.0.1:0".parse().unwrap(), TEST_ZONE, &records)
            .await
            .unwrap();
        let ans = ask(addr, TEST_NAME).await;
        assert_eq!(ans.metadata.response_code, ResponseCode::NoError);
        assert!(
            matches!(&ans.answers[0].data, RData::A(a) if a.0 == TEST_IP),
            "{ans:?}"
        );
        let nx = ask(addr, "nope.example.test").await;
        assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
        let other = ask(addr, "example.com").await;
        assert_eq!(other.metadata.response_code, ResponseCode::Refused);
    }

    #[test]
    fn records_are_name_equals_address() {
        assert_eq!(
            parse_record("a.example.test=192.0.2.1").unwrap(),
            ("a.example.test".to_string(), Ipv4Addr::new(192, 0, 2, 1))
        );
        assert!(parse_record("a.example.test").is_err());
        assert!(parse_record("a=b").is_err());
    }
}
