//! A small TCP request/response tool (netperf's TCP_RR in spirit): one connection, one message in
//! flight, each answered by an echo of the same size. Its transaction rate and latency percentiles are
//! what a chatty service sees, which throughput figures hide.
//!
//! The benchmark runs the server and the client from its own binary inside the lab's namespaces
//! (`nsenter -t <container pid> -n crossdock-bench rr-server ...`), so no tool has to be in the
//! container image. The server prints one JSON line when it listens (the parent waits for that line,
//! never for a fixed time) and one per connection with the peer address the kernel reports, which
//! shows whether the path kept the sender's address or NATed it. The same server answers the
//! start-up probe ([`probe`]) of the control-plane benchmark.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the server prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerEvent {
    /// Listening on this port.
    Ready { port: u16 },
    /// A connection from this peer (as the kernel reports it).
    Peer { addr: String },
}

/// One RR run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrResult {
    pub transactions: u64,
    pub seconds: f64,
    /// Transactions per second.
    pub rate: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub size: usize,
}

/// When a probe first got an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Wall-clock time of the first answer that counts (from the expected source, if one is expected),
    /// milliseconds since the Unix epoch.
    pub success_unix_ms: i64,
    /// The first answer of any kind (e.g. while the path still NATs the sender).
    pub first_answer_unix_ms: i64,
    pub attempts: u64,
    pub started_unix_ms: i64,
    /// The sources the server reported, in the order first seen.
    pub sources_seen: Vec<String>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn emit(out: &mut impl Write, event: &ServerEvent) -> Result<()> {
    // One write per line: a reader never sees half an event.
    let mut line = serde_json::to_string(event)?;
    line.push('\n');
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Serves echo connections on `listener` (each on a thread) and reports events to `out`.
/// `max_conns` > 0: returns after that many connections were served to the end. `tell_peer`: each
/// connection first receives the peer address the server sees and a newline (for [`probe`]).
pub fn serve(
    listener: TcpListener,
    out: &mut impl Write,
    max_conns: usize,
    tell_peer: bool,
) -> Result<()> {
    let port = listener.local_addr()?.port();
    emit(out, &ServerEvent::Ready { port })?;
    let mut handles = Vec::new();
    for (served, conn) in listener.incoming().enumerate() {
        let stream = conn.context("accept failed")?;
        let peer = stream
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        emit(out, &ServerEvent::Peer { addr: peer.clone() })?;
        handles.push(std::thread::spawn(move || {
            let mut stream = stream;
            if tell_peer && stream.write_all(format!("{peer}\n").as_bytes()).is_err() {
                return;
            }
            echo(stream)
        }));
        if max_conns > 0 && served + 1 >= max_conns {
            break;
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs request/response transactions of `size` bytes against `addr` for `duration` (after a short
/// warm-up that is not counted).
pub fn client(addr: SocketAddr, duration: Duration, size: usize) -> Result<RrResult> {
    if size == 0 || size > 65536 {
        bail!("the message size must be 1..=65536 bytes (got {size})");
    }
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("cannot connect to the RR server at {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let req = vec![0x5au8; size];
    let mut resp = vec![0u8; size];
    let mut one = |s: &mut TcpStream| -> Result<()> {
        s.write_all(&req)?;
        s.read_exact(&mut resp)
            .context("the RR server stopped answering")?;
        Ok(())
    };
    for _ in 0..200 {
        one(&mut stream)?;
    }
    let mut lat_ns: Vec<u64> = Vec::with_capacity(200_000);
    let start = Instant::now();
    while start.elapsed() < duration {
        let t = Instant::now();
        one(&mut stream)?;
        lat_ns.push(t.elapsed().as_nanos() as u64);
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = stream.shutdown(Shutdown::Both);
    Ok(summarize_latencies(lat_ns, seconds, size))
}

/// The RR figures of raw per-transaction latencies.
pub fn summarize_latencies(mut lat_ns: Vec<u64>, seconds: f64, size: usize) -> RrResult {
    lat_ns.sort_unstable();
    let n = lat_ns.len();
    let pct = |q: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        lat_ns[idx] as f64 / 1000.0
    };
    let mean_us = if n == 0 {
        f64::NAN
    } else {
        lat_ns.iter().sum::<u64>() as f64 / n as f64 / 1000.0
    };
    RrResult {
        transactions: n as u64,
        seconds,
        rate: if seconds > 0.0 {
            n as f64 / seconds
        } else {
            0.0
        },
        mean_us,
        p50_us: pct(0.50),
        p90_us: pct(0.90),
        p99_us: pct(0.99),
        size,
    }
}

/// Reads the server's `peer\n` line (at most 64 bytes).
fn read_peer_line(s: &mut TcpStream) -> Option<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        s.read_exact(&mut b).ok()?;
        if b[0] == b'\n' {
            return String::from_utf8(line).ok();
        }
        line.push(b[0]);
    }
    None
}

/// Tries, every `interval`, to open a connection to `addr` and get an answer, until that works or
/// `timeout` passes. Without `expect_source` an answer is one byte echoed (the path carries data both
/// ways); with it, the server (started with `tell_peer`) must report that source address (the path
/// also keeps the sender's address: no NAT on the way). `on_start` is called once the first attempt is
/// about to be made, so a caller can start the clock of what it measures only after probing runs.
pub fn probe(
    addr: SocketAddr,
    timeout: Duration,
    interval: Duration,
    expect_source: Option<std::net::IpAddr>,
    on_start: impl FnOnce(i64),
) -> Result<ProbeResult> {
    let started = Instant::now();
    let started_unix_ms = unix_ms();
    on_start(started_unix_ms);
    let mut attempts = 0u64;
    let mut first_answer_unix_ms = None;
    let mut sources_seen: Vec<String> = Vec::new();
    loop {
        attempts += 1;
        let attempt_started = Instant::now();
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(250)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.set_nodelay(true);
            let answered = match expect_source {
                None => {
                    let mut b = [0u8; 1];
                    s.write_all(b"p").is_ok() && s.read_exact(&mut b).is_ok() && b[0] == b'p'
                }
                Some(want) => match read_peer_line(&mut s) {
                    Some(seen) => {
                        first_answer_unix_ms.get_or_insert_with(unix_ms);
                        if !sources_seen.contains(&seen) {
                            sources_seen.push(seen.clone());
                        }
                        seen.parse::<std::net::IpAddr>().is_ok_and(|ip| ip == want)
                    }
                    None => false,
                },
            };
            if answered {
                let now = unix_ms();
                return Ok(ProbeResult {
                    success_unix_ms: now,
                    first_answer_unix_ms: first_answer_unix_ms.unwrap_or(now),
                    attempts,
                    started_unix_ms,
                    sources_seen,
                });
            }
        }
        if started.elapsed() >= timeout {
            bail!(
                "no answer from {addr}{} within {:.1} s ({attempts} attempts; sources the server saw: {})",
                expect_source.map(|e| format!(" seeing source {e}")).unwrap_or_default(),
                timeout.as_secs_f64(),
                if sources_seen.is_empty() { "none".to_string() } else { sources_seen.join(", ") }
            );
        }
        // Pace the attempts: a refused connection returns at once.
        if let Some(rest) = interval.checked_sub(attempt_started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

/// Reads server events from the lines of its output.
pub fn parse_events(text: &str) -> Vec<ServerEvent> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l.trim()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback in a thread; its events come through a pipe.
    fn server(max_conns: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<ServerEvent>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            serve(listener, &mut out, max_conns, false).unwrap();
            parse_events(&String::from_utf8(out).unwrap())
        });
        (addr, handle)
    }

    #[test]
    fn client_measures_transactions_and_the_server_reports_the_peer() {
        let (addr, handle) = server(1);
        let r = client(addr, Duration::from_millis(200), 1).unwrap();
        assert!(r.transactions > 10, "{r:?}");
        assert!(r.rate > 0.0);
        assert!(r.p50_us <= r.p90_us && r.p90_us <= r.p99_us, "{r:?}");
        let events = handle.join().unwrap();
        assert_eq!(events[0], ServerEvent::Ready { port: addr.port() });
        assert_eq!(
            events[1],
            ServerEvent::Peer {
                addr: "127.0.0.1".into()
            }
        );
    }

    #[test]
    fn larger_messages_are_echoed_whole() {
        let (addr, handle) = server(1);
        let r = client(addr, Duration::from_millis(100), 4096).unwrap();
        assert!(r.transactions > 0);
        assert_eq!(r.size, 4096);
        handle.join().unwrap();
    }

    /// A writer that hands each write to a channel, so the test sees output while the server runs.
    struct ChannelWriter(std::sync::mpsc::Sender<Vec<u8>>);

    impl Write for ChannelWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_ready_line_comes_before_any_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut w = ChannelWriter(tx);
            let _ = serve(listener, &mut w, 1, false);
        });
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let text = String::from_utf8(first).unwrap();
        assert_eq!(
            serde_json::from_str::<ServerEvent>(text.trim()).unwrap(),
            ServerEvent::Ready { port }
        );
        TcpStream::connect(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn probe_succeeds_against_an_echo_server_and_times_out_against_nothing() {
        let (addr, _handle) = server(0);
        let mut started = None;
        let r = probe(
            addr,
            Duration::from_secs(5),
            Duration::from_millis(20),
            None,
            |t| started = Some(t),
        )
        .unwrap();
        assert_eq!(r.attempts, 1);
        assert_eq!(started, Some(r.started_unix_ms));
        assert!(r.success_unix_ms >= r.started_unix_ms);

        // A port nobody listens on: bind, note the port, close.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = probe(
            closed,
            Duration::from_millis(150),
            Duration::from_millis(20),
            None,
            |_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("no answer"), "{err}");
    }

    fn telling_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener, &mut Vec::new(), 0, true));
        addr
    }

    #[test]
    fn probe_with_an_expected_source_needs_the_server_to_see_it() {
        let addr = telling_server();
        let r = probe(
            addr,
            Duration::from_secs(5),
            Duration::from_millis(20),
            Some("127.0.0.1".parse().unwrap()),
            |_| {},
        )
        .unwrap();
        assert_eq!(r.sources_seen, vec!["127.0.0.1".to_string()]);
        assert!(r.first_answer_unix_ms <= r.success_unix_ms);

        // The server sees 127.0.0.1, not the expected address: answers, but no success.
        let err = probe(
            addr,
            Duration::from_millis(200),
            Duration::from_millis(20),
            Some("10.0.0.2".parse().unwrap()),
            |_| {},
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("seeing source 10.0.0.2"), "{err}");
        assert!(err.contains("sources the server saw: 127.0.0.1"), "{err}");
    }

    #[test]
    fn a_telling_server_still_echoes_after_the_peer_line() {
        let addr = telling_server();
        let mut s = TcpStream::connect(addr).unwrap();
        assert_eq!(read_peer_line(&mut s).as_deref(), Some("127.0.0.1"));
        s.write_all(b"xy").unwrap();
        let mut b = [0u8; 2];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"xy");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let r = summarize_latencies((1..=100).map(|u| u * 1000).collect(), 2.0, 1);
        assert_eq!(r.transactions, 100);
        assert_eq!(r.rate, 50.0);
        assert_eq!((r.p50_us, r.p90_us, r.p99_us), (50.0, 90.0, 99.0));
        assert_eq!(r.mean_us, 50.5);
    }

    #[test]
    fn message_size_is_checked() {
        let (addr, _h) = server(0);
        assert!(client(addr, Duration::from_millis(10), 0).is_err());
    }
}
