//! The DNS client the names benchmark runs inside a container's network namespace
//! (`crossdock-bench dns-query`, hidden): waits until a name resolves to an address (N1), or asks
//! one name many times in a row and reports the latency of each answer (N2).
//!
//! Why a tool of our own instead of busybox `nslookup` in a loop: a process start per query (and a
//! `docker exec` per start) costs more than the answer being measured. Messages are hickory-proto's
//! (no DNS wire handling of our own); one question in flight at a time, over UDP, as a libc
//! resolver asks.

use anyhow::{anyhow, Context, Result};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one question may wait for its answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The A records of one answer (empty for NXDOMAIN or no answer).
fn ask(sock: &UdpSocket, name: &Name) -> Result<(ResponseCode, Vec<Ipv4Addr>)> {
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name.clone(), RecordType::A));
    let id = msg.metadata.id;
    sock.send(&msg.to_vec().context("encoding the question")?)
        .context("sending the question")?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf).context("no answer")?;
        let reply = Message::from_vec(&buf[..n]).map_err(|e| anyhow!("unreadable answer: {e}"))?;
        if reply.metadata.id != id {
            continue; // a late answer to an earlier question
        }
        let ips = reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        return Ok((reply.metadata.response_code, ips));
    }
}

fn socket(server: SocketAddr) -> Result<UdpSocket> {
    let sock = UdpSocket::bind("0.0.0.0:0").context("binding a UDP socket")?;
    sock.connect(server).context("connecting to the server")?;
    sock.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    Ok(sock)
}

fn fqdn(name: &str) -> Result<Name> {
    let mut n = Name::from_ascii(name).map_err(|e| anyhow!("`{name}`: {e}"))?;
    n.set_fqdn(true);
    Ok(n)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// When `name` first resolved to `expect`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolved {
    /// Unix time of the first answer holding `expect`, ms (`None`: not before the timeout).
    pub resolved_unix_ms: Option<u64>,
    /// Questions asked.
    pub attempts: u64,
}

/// Asks for `name` every `interval` until an answer holds `expect` (any address when `None`), for
/// at most `timeout`.
pub fn wait(
    server: SocketAddr,
    name: &str,
    expect: Option<Ipv4Addr>,
    timeout: Duration,
    interval: Duration,
) -> Result<Resolved> {
    let sock = socket(server)?;
    let name = fqdn(name)?;
    let deadline = Instant::now() + timeout;
    let mut attempts = 0;
    while Instant::now() < deadline {
        attempts += 1;
        if let Ok((_, ips)) = ask(&sock, &name) {
            if expect.map_or(!ips.is_empty(), |e| ips.contains(&e)) {
                return Ok(Resolved {
                    resolved_unix_ms: Some(unix_ms()),
                    attempts,
                });
            }
        }
        std::thread::sleep(interval);
    }
    Ok(Resolved {
        resolved_unix_ms: None,
        attempts,
    })
}

/// The latency of `count` questions for `name`, asked one after the other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Each answered question's latency, µs, in order.
    pub micros: Vec<f64>,
    /// Questions without an answer holding an address.
    pub failed: u64,
}

/// Asks `count` times (after `warmup` questions that are not counted).
pub fn latencies(server: SocketAddr, name: &str, count: usize, warmup: usize) -> Result<Latencies> {
    let sock = socket(server)?;
    let name = fqdn(name)?;
    let mut out = Latencies {
        micros: Vec::with_capacity(count),
        failed: 0,
    };
    for i in 0..warmup + count {
        let started = Instant::now();
        let ok = matches!(ask(&sock, &name), Ok((ResponseCode::NoError, ips)) if !ips.is_empty());
        let took = started.elapsed().as_secs_f64() * 1e6;
        if i < warmup {
            continue;
        }
        if ok {
            out.micros.push(took);
        } else {
            out.failed += 1;
        }
    }
    Ok(out)
}
