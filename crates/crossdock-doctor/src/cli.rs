//! `crossdock doctor`: the command line, wiring the real fact sources to the checks and the output.

use crate::gather::{self, Sources};
use crate::model::run_checks;
use crate::probe::{ProbeRequest, RealProbe};
use crate::render::{self, Report};
use clap::Args;
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// `crossdock doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Configuration file.
    #[arg(
        long,
        short = 'c',
        default_value = crossdock_config::DEFAULT_PATH,
        env = "CROSSDOCK_CONFIG"
    )]
    pub config: PathBuf,
    /// Machine-readable output (the same checks, with stable ids).
    #[arg(long)]
    pub json: bool,
    /// Send traffic to this address (a container on another host, or a peer's bridge address) and
    /// report how far it got on this host.
    #[arg(long, value_name = "IP")]
    pub probe: Option<Ipv4Addr>,
    /// Probe with a TCP connect to this port instead of ICMP echo.
    #[arg(long, value_name = "PORT", requires = "probe")]
    pub probe_port: Option<u16>,
    /// Source address of the probe (default: the served bridge's address, so the traffic is
    /// treated like a container's).
    #[arg(long, value_name = "IP", requires = "probe")]
    pub probe_source: Option<Ipv4Addr>,
    /// ICMP echo requests to send.
    #[arg(long, default_value_t = 3, value_name = "N", requires = "probe")]
    pub probe_count: u32,
    /// Custom route entries allowed per route table (the account's quota; Alibaba's default is 200).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub route_quota: u32,
    /// Skip the cloud checks (no call to the metadata service or the cloud API).
    #[arg(long)]
    pub no_cloud: bool,
    /// With `[names]` on: the name outside the zone asked through the resolver, to see that it
    /// forwards (it must exist upstream, or at least get an answer from there).
    #[arg(long, default_value = crate::names::EXTERNAL_NAME, value_name = "NAME")]
    pub names_external: String,
    /// With `[names]` on: the Docker daemon.json whose "dns" should name the resolver.
    #[arg(long, default_value = crate::names::DAEMON_JSON, value_name = "PATH")]
    pub daemon_json: PathBuf,
}

/// Runs doctor and returns the exit status: 0 all ok, 1 warnings, 2 failures.
pub fn run(args: DoctorArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crossdock doctor: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let report = rt.block_on(diagnose(&args));
    if args.json {
        println!("{}", report.to_json());
    } else {
        let stdout = std::io::stdout();
        let colour = stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let width = if colour { terminal_width() } else { 0 };
        print!("{}", render::table(&report, colour, width));
    }
    report.exit_code
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(120)
}

/// Gathers, checks and (with `--probe`) probes, with the real sources.
pub async fn diagnose(args: &DoctorArgs) -> Report {
    let host = gather::RealHost::default();
    let docker = gather::RealDocker;
    let agent = gather::RealAgent;
    let cloud = gather::RealCloud {
        env: crossdock_alibaba::EnvVars::from_process(),
        route_quota: args.route_quota,
        enabled: !args.no_cloud,
    };
    let names = crate::names::RealNames {
        daemon_json: args.daemon_json.clone(),
        external_name: args.names_external.clone(),
    };
    let sources = Sources {
        host: &host,
        docker: &docker,
        agent: &agent,
        cloud: &cloud,
        names: &names,
    };
    let facts = gather::gather(
        gather::load_config(&args.config),
        sources,
        std::env::var_os("CROSSDOCK_SOCKET").map(PathBuf::from),
        chrono::Utc::now(),
    )
    .await;
    let checks = run_checks(&crate::checks::all(), &facts);
    let probe = match args.probe {
        None => None,
        Some(target) => {
            let network = facts.network();
            let req = ProbeRequest {
                target,
                port: args.probe_port,
                source: args.probe_source.or(network.and_then(|n| n.gateway)),
                count: args.probe_count.max(1),
            };
            let tools = RealProbe { host };
            Some(crate::probe::run(&tools, &req, facts.subnet()).await)
        }
    };
    Report::new(checks, probe)
}
