//! `crossdock-bench`: runs the benchmarks (see `scripts/bench` and docs/performance.md). Its hidden
//! subcommands are the tools it runs inside the lab's namespaces: the RR server and client and the
//! start-up probe.

use clap::{Parser, Subcommand};
use crossdock_bench::run::{self, Options};
use crossdock_bench::{catalog_peer, dnsq, rr};
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "crossdock-bench",
    about = "crossdock's benchmarks: data path, control plane, footprint (needs root; run scripts/bench)",
    long_about = "Runs every benchmark in labs of its own (network namespaces, real dockerds, the VPC \
emulator, the real agent), prints every figure with its target and whether it is met, and writes \
results.md, results.json and PNG plots to the output directory.\n\nExit codes: 0 the run completed (the \
verdicts are in the table); 1 a runtime failure; 2 bad input."
)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    opts: Options,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Echo server for the RR benchmark and the probe (prints JSON lines: ready, then one per peer).
    #[command(hide = true)]
    RrServer {
        #[arg(long)]
        port: u16,
        /// Exit after this many connections (0 = serve forever).
        #[arg(long, default_value_t = 0)]
        max_conns: usize,
        /// Send each connection the peer address the server sees, then echo.
        #[arg(long)]
        tell_peer: bool,
    },
    /// Request/response client (prints one JSON result).
    #[command(hide = true)]
    RrClient {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        size: usize,
    },
    /// Probes until one byte comes back (prints a start line, then one JSON result).
    #[command(hide = true)]
    Probe {
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 30_000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        /// Count an answer only if the server (run with --tell-peer) saw this source address.
        #[arg(long)]
        expect_source: Option<std::net::IpAddr>,
    },
    /// DNS questions from inside a container (prints one JSON result): with --wait, waits until
    /// the name resolves (to --expect if given); else asks --count times and reports each latency.
    #[command(hide = true)]
    DnsQuery {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        name: String,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        expect: Option<std::net::Ipv4Addr>,
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// A synthetic catalog member (N3): publishes --records records until standard input closes.
    #[command(hide = true)]
    CatalogPeer {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        host_id: String,
        #[arg(long)]
        label: String,
        /// Every member's gossip address, comma-separated.
        #[arg(long, value_delimiter = ',')]
        members: Vec<SocketAddr>,
        #[arg(long)]
        cluster_id: String,
        #[arg(long)]
        key_file: Option<std::path::PathBuf>,
        #[arg(long)]
        subnet: ipnet::Ipv4Net,
        #[arg(long, default_value_t = 100)]
        records: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.tool {
        Some(Tool::RrServer {
            port,
            max_conns,
            tell_peer,
        }) => TcpListener::bind(("0.0.0.0", port))
            .map_err(|e| anyhow::anyhow!("cannot listen on port {port}: {e}"))
            .and_then(|l| rr::serve(l, &mut std::io::stdout(), max_conns, tell_peer)),
        Some(Tool::RrClient { to, seconds, size }) => {
            rr::client(to, Duration::from_secs(seconds), size).map(|r| {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            })
        }
        Some(Tool::Probe {
            to,
            timeout_ms,
            interval_ms,
            expect_source,
        }) => rr::probe(
            to,
            Duration::from_millis(timeout_ms),
            Duration::from_millis(interval_ms),
            expect_source,
            |t| println!("{{\"probing_since_unix_ms\":{t}}}"),
        )
        .map(|r| println!("{}", serde_json::to_string(&r).unwrap_or_default())),
        Some(Tool::DnsQuery {
            server,
            name,
            wait,
            expect,
            timeout_ms,
            interval_ms,
            count,
            warmup,
        }) => match wait {
            true => dnsq::wait(
                server,
                &name,
                expect,
                Duration::from_millis(timeout_ms),
                Duration::from_millis(interval_ms),
            )
            .map(|r| println!("{}", serde_json::to_string(&r).unwrap_or_default())),
            false => dnsq::latencies(server, &name, count, warmup)
                .map(|r| println!("{}", serde_json::to_string(&r).unwrap_or_default())),
        },
        Some(Tool::CatalogPeer {
            listen,
            host_id,
            label,
            members,
            cluster_id,
            key_file,
            subnet,
            records,
        }) => catalog_peer::run(catalog_peer::PeerArgs {
            listen,
            host_id,
            label,
            members,
            cluster_id,
            key_file,
            subnet,
            records,
        }),
        None => return ExitCode::from(run::main(cli.opts)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crossdock-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}
