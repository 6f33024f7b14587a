//! `crossdock lab vpc-server ...`: the emulator as a process (the lab starts it inside the vRouter
//! namespace). The flags map one to one onto [`ServerOptions`].

use crate::admin::Settings;
use crate::dataplane::{Dataplane, KernelDataplane, MemoryDataplane};
use crate::model::Bootstrap;
use crate::server::ServerOptions;
use clap::{Args, ValueEnum};
use ipnet::Ipv4Net;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataplaneKind {
    /// Kernel routes (proto 250) and an nftables bridge table in this network namespace (needs root).
    Kernel,
    /// Nothing touches the kernel (API-only use).
    Memory,
}

/// Run the emulated Alibaba VPC (API, metadata service, admin socket, vRouter data plane).
#[derive(Debug, Clone, Args)]
pub struct VpcServerArgs {
    /// State file (JSON); created with a fresh VPC when missing, reloaded on restart.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// API listen address (repeatable), e.g. 100.100.100.201:80.
    #[arg(long = "api-listen")]
    pub api_listen: Vec<SocketAddr>,
    /// Metadata service listen address (repeatable), e.g. 100.100.100.200:80.
    #[arg(long = "metadata-listen")]
    pub metadata_listen: Vec<SocketAddr>,
    /// The API on a unix socket too.
    #[arg(long)]
    pub api_socket: Option<PathBuf>,
    /// The admin API's unix socket.
    #[arg(long)]
    pub admin_socket: Option<PathBuf>,
    /// How long a new route stays Pending, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub pending_ms: u64,
    /// How long a deleted route stays Deleting, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub deleting_ms: u64,
    /// Lifetime of the metadata service's STS credentials, in seconds.
    #[arg(long, default_value_t = 900)]
    pub credential_lifetime_secs: u64,
    /// Custom route entries per route table.
    #[arg(long, default_value_t = 200)]
    pub route_quota: usize,
    /// Seed for generated ids and injected faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "cn-hangzhou")]
    pub region_id: String,
    #[arg(long, default_value = "cn-hangzhou-h")]
    pub zone_id: String,
    #[arg(long, default_value = "192.168.0.0/16")]
    pub vpc_cidr: Ipv4Net,
    #[arg(long, default_value = "192.168.1.0/24")]
    pub vswitch_cidr: Ipv4Net,
    /// Require the metadata token (hardened mode).
    #[arg(long)]
    pub metadata_hardened: bool,
    #[arg(long, value_enum, default_value = "kernel")]
    pub dataplane: DataplaneKind,
}

impl VpcServerArgs {
    pub fn options(&self) -> ServerOptions {
        let dataplane: Arc<dyn Dataplane> = match self.dataplane {
            DataplaneKind::Kernel => Arc::new(KernelDataplane::new(None)),
            DataplaneKind::Memory => Arc::new(MemoryDataplane::default()),
        };
        ServerOptions {
            state_file: self.state.clone(),
            api_listen: self.api_listen.clone(),
            metadata_listen: self.metadata_listen.clone(),
            api_socket: self.api_socket.clone(),
            admin_socket: self.admin_socket.clone(),
            bootstrap: Bootstrap {
                seed: self.seed,
                region_id: self.region_id.clone(),
                zone_id: self.zone_id.clone(),
                vpc_cidr: self.vpc_cidr,
                vswitch_cidr: self.vswitch_cidr,
                admin_access_key: None,
            },
            settings: Settings {
                pending_ms: self.pending_ms,
                deleting_ms: self.deleting_ms,
                credential_lifetime_secs: self.credential_lifetime_secs.max(1),
                route_entry_quota: self.route_quota,
                metadata_hardened: self.metadata_hardened,
                ..Settings::default()
            },
            dataplane,
        }
    }
}

/// Runs the emulator until SIGINT/SIGTERM (builds its own tokio runtime); returns the exit code.
pub fn run(args: VpcServerArgs) -> u8 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crossdock lab vpc-server: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(crate::server::serve(args.options())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crossdock lab vpc-server: {e:#}");
            1
        }
    }
}
