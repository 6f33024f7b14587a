//! The `crossdock init` command line and its flow: configuration, identity, subnet, daemon.json,
//! Docker, decision, write. Each step's failure is one line on stderr with the fix.

use crate::daemon_json::{self, Applied, DaemonJson};
use crate::decide::{self, DockerState};
use crate::{docker, identity, InitError};
use clap::Args;
use crossdock_config::{Config, SubnetMode};
use ipnet::Ipv4Net;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The daemon.json Docker reads by default.
pub const DEFAULT_DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// `crossdock init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Configuration file (needs [subnet] mode = "derived").
    #[arg(
        long,
        short = 'c',
        default_value = crossdock_config::DEFAULT_PATH,
        env = "CROSSDOCK_CONFIG"
    )]
    pub config: PathBuf,
    /// Docker's daemon.json to write "bip" into.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_DAEMON_JSON)]
    pub daemon_json: PathBuf,
    /// Print the daemon.json that would be written, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to keep trying the metadata service while it does not answer, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub metadata_wait: u64,
}

/// How long Docker may take to answer, when it is asked at all.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `crossdock init`; returns the exit status.
pub fn run(args: InitArgs) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crossdock init: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(init(&args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crossdock init: {e}");
            e.exit_code()
        }
    }
}

fn note(msg: impl std::fmt::Display) {
    eprintln!("crossdock init: {msg}");
}

/// Loads the configuration and checks that init has something to do with it.
pub fn load_config(path: &Path) -> Result<Config, InitError> {
    let cfg = crossdock_config::load(path)
        .map_err(|e| InitError::BadInput(format!("{}: {e}", path.display())))?;
    if cfg.subnet.mode != SubnetMode::Derived {
        return Err(InitError::BadInput(format!(
            "{}: subnet.mode is \"docker\", so this host's subnet is chosen by hand and there is nothing to derive (fix: set mode = \"derived\" under [subnet] for fleet mode, or give Docker its subnet yourself with \"bip\" in daemon.json)",
            path.display()
        )));
    }
    if cfg.docker.network != "bridge" {
        return Err(InitError::BadInput(format!(
            "{}: docker.network is `{}`, but crossdock init sets the default bridge's subnet (daemon.json \"bip\", docker0) (fix: set network = \"bridge\" under [docker], or create `{}` with the derived subnet yourself)",
            path.display(),
            cfg.docker.network,
            cfg.docker.network
        )));
    }
    Ok(cfg)
}

/// Reads daemon.json: `None` when it does not exist.
pub fn read_daemon_json(path: &Path) -> Result<(Option<Vec<u8>>, DaemonJson), InitError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((None, DaemonJson::default()))
        }
        Err(e) => {
            return Err(InitError::Runtime(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    let file = DaemonJson::parse(&text).map_err(|e| {
        InitError::BadInput(format!(
            "{} is not a JSON object: {e} (fix: correct it, or remove it and run crossdock init again)",
            path.display()
        ))
    })?;
    Ok((Some(bytes), file))
}

/// The whole flow.
async fn init(args: &InitArgs) -> Result<(), InitError> {
    let cfg = load_config(&args.config)?;
    let (old, file) = read_daemon_json(&args.daemon_json)?;
    let id = identity::resolve(&cfg, Duration::from_secs(args.metadata_wait)).await?;
    let subnet = cfg
        .derived_subnet(id.private_ip, id.vpc_cidr)
        .map_err(|e| InitError::BadInput(format!("{}: {e}", args.config.display())))?;
    let bip = daemon_json::bip_for(subnet);
    note(format_args!(
        "private IP {} -> container subnet {subnet} (bip {bip})",
        id.private_ip
    ));
    if let Some(problem) = daemon_json::conflicts(&file, subnet) {
        return Err(InitError::BadInput(format!(
            "{}: {problem}",
            args.daemon_json.display()
        )));
    }
    let dns = crate::names_dns::for_host(&cfg, subnet)?;
    let dns_value = dns.as_ref().map(|d| crate::names_dns::value(&d.servers));
    if let Some(d) = &dns {
        let list: Vec<String> = d.servers.iter().map(ToString::to_string).collect();
        note(format_args!("[names] on: dns {}", list.join(", ")));
        if let Some(w) = &d.warning {
            note(w);
        }
    }
    let socket = cfg.docker_socket();
    let signs = docker::signs(&socket, &file);
    let docker_state = docker::state(&socket, signs, DOCKER_TIMEOUT).await?;
    let dns_in_file = dns_value.is_none() || file.get_value("dns") == dns_value;
    let file_has_it = file.get_str("bip").as_deref() == Some(bip.as_str()) && dns_in_file;
    let decision = decide::decide(file_has_it, subnet, &docker_state)
        .map_err(|r| InitError::BadInput(r.to_string()))?;
    let new_text = if decision.write {
        let with_bip = file.with_bip(&bip);
        match &dns_value {
            Some(v) => with_bip.with_value("dns", v),
            None => with_bip,
        }
        .render()
    } else {
        String::from_utf8_lossy(old.as_deref().unwrap_or_default()).into_owned()
    };
    if args.dry_run {
        print!("{new_text}");
        let what = if decision.write {
            "would write"
        } else {
            "would leave unchanged"
        };
        note(format_args!(
            "dry run: {what} {}; nothing was changed",
            args.daemon_json.display()
        ));
        return Ok(());
    }
    report_write(args, &old, &new_text, &bip, decision.write)?;
    report_docker(&docker_state, subnet, decision.restart_needed);
    Ok(())
}

fn report_write(
    args: &InitArgs,
    old: &Option<Vec<u8>>,
    new_text: &str,
    bip: &str,
    write: bool,
) -> Result<(), InitError> {
    let path = &args.daemon_json;
    if !write {
        note(format_args!(
            "{} unchanged: bip is already {bip}",
            path.display()
        ));
        return Ok(());
    }
    let applied = daemon_json::apply(path, old.as_deref(), new_text)
        .map_err(|e| InitError::Runtime(format!("cannot write {}: {e} (fix: make its directory writable, or point --daemon-json at the right file)", path.display())))?;
    match applied {
        Applied::Unchanged => note(format_args!(
            "{} unchanged: bip is already {bip}",
            path.display()
        )),
        Applied::Written { backup: Some(b) } => note(format_args!(
            "{} written: bip {bip} (the previous file is {})",
            path.display(),
            b.display()
        )),
        Applied::Written { backup: None } => {
            note(format_args!("{} written: bip {bip}", path.display()))
        }
    }
    Ok(())
}

fn report_docker(state: &DockerState, subnet: Ipv4Net, restart_needed: bool) {
    match state {
        DockerState::NotRunning => note("Docker is not running; it takes the subnet when it starts"),
        DockerState::Running { subnet: current, .. } if restart_needed => note(format_args!(
            "Docker is running with {} and no containers: restart it to apply {subnet} (`systemctl restart docker`); crossdock init does not restart Docker",
            current.map_or("no default bridge".to_string(), |c| c.to_string())
        )),
        DockerState::Running { .. } => note(format_args!("Docker already runs with {subnet}")),
    }
}
