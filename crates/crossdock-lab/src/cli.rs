//! `crossdock lab ...`: build, inspect, poke and remove a simulated Alibaba VPC on this machine.
//!
//! Every subcommand takes `--name NAME` (default `default`) so several labs live side by side. The
//! processes a lab runs (emulator, dockerds, agents) outlive the command that started them; `down` finds
//! them again through `lab.json`, pid files and the lab's naming patterns.

use crate::dockerd::DockerVersion;
use crate::lab::{self, InputError, Lab, LabOptions, LabState};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use crossdock_vpcsim::admin::{ErrorFault, Faults, Settings};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Lab name; several labs can live side by side.
    #[arg(long, default_value = "default", global = true)]
    pub name: String,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build a lab: vRouter, vSwitch, N hosts each with a real dockerd and the agent, the VPC emulator.
    Up(UpArgs),
    /// Show the lab's hosts, agents, routes and API credentials.
    Status {
        /// Machine-readable output (a scripting contract).
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a host's namespace, with DOCKER_HOST, CROSSDOCK_SOCKET and CROSSDOCK_CONFIG set.
    Exec {
        /// The host: h1, h2, ...
        host: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Start, stop, restart or kill (SIGKILL, a crash) a host's agent.
    Agent { host: String, action: AgentAction },
    /// Add, release, stop or start a host (an ECS instance) of a running lab.
    Host {
        #[command(subcommand)]
        host: HostCommand,
    },
    /// Create custom route tables and bind or unbind vSwitches (a lab with zones).
    Table {
        #[command(subcommand)]
        table: TableCommand,
    },
    /// Inject faults into the emulated cloud API and metadata service.
    Fault {
        #[command(subcommand)]
        fault: FaultCommand,
    },
    /// Remove the lab: every namespace, link, process, mount and directory (also after a crash).
    Down,
    /// List the labs on this machine.
    List,
    /// Containers on different hosts talk by their own IPs: the README's demo.
    Demo(DemoArgs),
    /// Run the VPC emulator (started by `up` inside the vRouter namespace).
    #[command(hide = true)]
    VpcServer(crossdock_vpcsim::cli::VpcServerArgs),
    /// Run the upstream DNS stand-in (started by `up --names` inside the vRouter namespace).
    #[command(hide = true)]
    DnsServer(crate::upstream_dns::DnsServerArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("fleet_mode").args(["fleet", "names"]).multiple(true)))]
pub struct UpArgs {
    /// Hosts with a dockerd.
    #[arg(long, default_value_t = 2)]
    pub hosts: usize,
    /// Docker engine: 20 (Debian 12's 20.10) or 28 (28.x from Debian sid, via scripts/install-deps).
    #[arg(long, default_value = "20", value_parser = parse_docker)]
    pub docker: DockerVersion,
    /// Do not start the agents (start them later with `crossdock lab agent HOST start`).
    #[arg(long)]
    pub no_agents: bool,
    /// More hosts without Docker, whose agent serves a fixed subnet (route storms, benchmarks).
    #[arg(long, default_value_t = 0)]
    pub static_hosts: usize,
    /// Register instances with the ENI source/destination check off (Alibaba's default is on).
    #[arg(long)]
    pub no_source_dest_check: bool,
    /// How long a new route stays Pending in the emulator, in milliseconds.
    #[arg(long)]
    pub pending_ms: Option<u64>,
    /// Fleet mode: hosts tagged crossdock-cluster=<lab name>, one identical agent configuration
    /// (derived subnets), each host's bridge subnet written by `crossdock init` before its dockerd.
    #[arg(long)]
    pub fleet: bool,
    /// Container names across hosts (implies --fleet): [names] on in every agent, the VPC DNS
    /// stand-in (answering example.test) at 100.100.2.136 in the vRouter, and every host's
    /// resolv.conf pointing at it.
    #[arg(long)]
    pub names: bool,
    /// Fleet mode: the agent configuration to run on every host (e.g. the agent.toml of
    /// deploy/cloud-init/user-data.yaml); the lab only points its cloud endpoints and per-host sockets
    /// into the lab.
    #[arg(long, value_name = "FILE", requires = "fleet_mode")]
    pub agent_config: Option<PathBuf>,
    /// vSwitches, one per zone (vsw<k> = 192.168.<k>.0/24); hosts are spread over them round-robin.
    /// By default vsw1 uses the VPC's system route table and every other vSwitch a custom table of
    /// its own.
    #[arg(long, visible_alias = "zones", default_value_t = 1, value_name = "N")]
    pub vswitches: usize,
    /// A custom route table bound to these vSwitches (`2`, `vsw2`, `2,3`); repeat for more tables.
    /// Replaces the default layout: vSwitches not named use the system table.
    #[arg(
        long = "custom-table",
        value_name = "VSWITCHES",
        conflicts_with = "no_custom_tables"
    )]
    pub custom_table: Vec<lab::CustomTables>,
    /// Every vSwitch uses the system route table.
    #[arg(long)]
    pub no_custom_tables: bool,
}

impl UpArgs {
    /// The custom tables asked for.
    pub fn custom_tables(&self) -> lab::CustomTables {
        if self.no_custom_tables {
            return lab::CustomTables::None;
        }
        if self.custom_table.is_empty() {
            return lab::CustomTables::AllButFirst;
        }
        let groups = self
            .custom_table
            .iter()
            .flat_map(|t| match t {
                lab::CustomTables::Groups(g) => g.clone(),
                _ => vec![],
            })
            .collect();
        lab::CustomTables::Groups(groups)
    }
}

#[derive(Debug, Subcommand)]
pub enum TableCommand {
    /// The VPC's route tables, each with its vSwitches and custom entries.
    List,
    /// A new custom route table, bound to the given vSwitches (vsw2, 2 or a vSwitch id).
    Create {
        #[arg(long = "bind", value_name = "VSWITCH")]
        bind: Vec<String>,
    },
    /// Bind a vSwitch to a custom table: its traffic is routed by that table from now on.
    Bind { table: String, vswitch: String },
    /// Unbind a vSwitch from a custom table: the system table routes its traffic again.
    Unbind { table: String, vswitch: String },
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// A new host: an instance (with the fleet tag in fleet mode), its dockerd and agent, as `up`
    /// makes them.
    Add {
        /// Its private IP (e.g. a released host's); default: the first free one.
        #[arg(long)]
        ip: Option<std::net::Ipv4Addr>,
        /// No dockerd (in fleet mode no agent either: the other members route to it).
        #[arg(long)]
        no_docker: bool,
        /// Its vSwitch (vsw2, 2 or an id); default: the one holding --ip, else round-robin.
        #[arg(long)]
        vswitch: Option<String>,
    },
    /// Release a host as ECS releases an instance: processes gone without clean-up, the instance
    /// absent from every API answer (its routes stay), namespace and directory removed.
    Release { host: String },
    /// Stop a host: agent and dockerd stop, its link goes down, the instance is Stopped.
    Stop { host: String },
    /// Start a stopped host: the instance Running, `crossdock init` (fleet mode), dockerd, agent.
    Start { host: String },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Hosts (2 or more).
    #[arg(long, default_value_t = 2)]
    pub hosts: usize,
    #[arg(long, default_value = "20", value_parser = parse_docker)]
    pub docker: DockerVersion,
    /// Leave the lab up afterwards.
    #[arg(long)]
    pub keep: bool,
    /// How long to wait for the agents to make the routes Available, in seconds.
    #[arg(long, default_value_t = 90)]
    pub route_timeout: u64,
    /// Leave out container names: a per-host lab (no fleet mode, no `[names]`) and no names step.
    #[arg(long)]
    pub no_names: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentAction {
    Start,
    Stop,
    Restart,
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DownUp {
    Down,
    Up,
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Show the injected faults and the limits.
    Show,
    /// Remove every injected fault (limits stay).
    Reset,
    /// Add latency to an action (`*` = every action); 0 removes it.
    Latency { action: String, ms: u64 },
    /// Fail a share of an action's calls (`*` = every action); rate 0 removes it.
    Error {
        action: String,
        /// Probability per call, 0..=1.
        rate: f64,
        /// The error code returned.
        #[arg(long, default_value = "ServiceUnavailable")]
        code: String,
        /// The error comes after the action took effect (a lost response).
        #[arg(long)]
        after_commit: bool,
    },
    /// Limit an action to QPS requests per second (`*` = default for every action); 0 = unlimited.
    Throttle { action: String, qps: u32 },
    /// Every route write gets TaskConflict while on.
    TaskConflict { state: OnOff },
    /// The whole API answers 503 while down.
    Api { state: DownUp },
    /// The metadata service answers 503 while down.
    Metadata { state: DownUp },
    /// Every STS credential handed out so far expires now.
    ExpireCredentials,
}

fn parse_docker(s: &str) -> Result<DockerVersion, String> {
    s.parse().map_err(|e: anyhow::Error| e.to_string())
}

/// Runs `crossdock lab ...`; returns the exit code.
pub fn run(args: LabArgs) -> u8 {
    if let Err(e) = lab::validate_name(&args.name) {
        eprintln!("crossdock lab: {e}");
        return 2;
    }
    let result = match args.command {
        LabCommand::Up(up) => cmd_up(&args.name, up),
        LabCommand::Status { json } => cmd_status(&args.name, json),
        LabCommand::Exec { host, command } => cmd_exec(&args.name, &host, &command),
        LabCommand::Agent { host, action } => cmd_agent(&args.name, &host, action),
        LabCommand::Host { host } => cmd_host(&args.name, host),
        LabCommand::Table { table } => cmd_table(&args.name, table),
        LabCommand::Fault { fault } => cmd_fault(&args.name, fault),
        LabCommand::Down => cmd_down(&args.name),
        LabCommand::List => cmd_list(),
        LabCommand::Demo(demo) => cmd_demo(&args.name, demo),
        LabCommand::VpcServer(v) => return crossdock_vpcsim::cli::run(v),
        LabCommand::DnsServer(d) => return crate::upstream_dns::run(d),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("crossdock lab: {e:#}");
            if e.chain().any(|c| c.is::<InputError>()) {
                2
            } else {
                1
            }
        }
    }
}

fn crossdock_bin() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the crossdock binary (current_exe)")
}

fn cmd_up(name: &str, up: UpArgs) -> Result<u8> {
    let agent_config_text = match &up.agent_config {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
            InputError(format!(
                "cannot read the agent configuration {}: {e}",
                path.display()
            ))
        })?),
        None => None,
    };
    let opts = LabOptions {
        fleet: up.fleet || up.names,
        names: up.names,
        agent_config_text,
        name: name.to_string(),
        hosts: up.hosts,
        static_hosts: up.static_hosts,
        docker: up.docker,
        agents: !up.no_agents,
        crossdock_bin: crossdock_bin()?,
        source_dest_check: !up.no_source_dest_check,
        emulator_settings: up.pending_ms.map(|ms| Settings {
            pending_ms: ms,
            ..Settings::default()
        }),
        vswitches: up.vswitches,
        custom_tables: up.custom_tables(),
        ..LabOptions::default()
    };
    let started = std::time::Instant::now();
    let lab = Lab::up(opts)?;
    let state = lab.keep();
    println!(
        "lab {name} is up ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    print_status(&lab::status_of(&state), &state);
    Ok(0)
}

fn print_status(status: &lab::LabStatus, state: &LabState) {
    println!(
        "  VPC {} in {} (vSwitch {}, route table {}), Docker {}",
        status.vpc_id,
        status.region_id,
        status.vswitch_id,
        status.route_table_id,
        status.docker_version
    );
    println!(
        "  vRouter netns {}: gateway {}, metadata {}, API {} (emulator {})",
        state.vr_netns,
        lab::GATEWAY,
        status.metadata_endpoint,
        status.api_endpoint,
        status.emulator
    );
    println!(
        "  API from the root namespace: unix socket {}; admin socket {}",
        status.api_socket.display(),
        status.admin_socket.display()
    );
    println!(
        "  admin AccessKey: {} / {}",
        status.admin_access_key_id, status.admin_access_key_secret
    );
    println!();
    print!("{}", crate::demo::table(status));
    println!();
    if status.vswitches.len() > 1 || status.route_tables.len() > 1 {
        print!("{}", tables_text(status));
        println!();
    }
    if let Some(tag) = &state.fleet_tag {
        println!(
            "  fleet mode: instances tagged {tag}, one agent configuration {}",
            lab::fleet_config_path(state).display()
        );
    }
    if state.names {
        println!(
            "  names: every agent answers crossdock.internal on its bridge gateway; the VPC DNS stand-in {} answers {} ({}), named by {}",
            crate::upstream_dns::UPSTREAM_DNS_IP,
            crate::upstream_dns::TEST_ZONE,
            crate::upstream_dns::TEST_NAME,
            lab::resolv_conf_path(state).display()
        );
    }
    for h in &status.hosts {
        println!(
            "  {}: {} (table {}), netns {}, instance {}{}, dockerd {} {}, agent {}{}",
            h.name,
            h.vswitch,
            or_unknown(&h.route_table_id),
            h.netns,
            if h.instance_status.is_empty() {
                "?"
            } else {
                &h.instance_status
            },
            if h.tags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", h.tags.join(", "))
            },
            h.dockerd,
            if h.docker_host.is_empty() {
                "-"
            } else {
                &h.docker_host
            },
            h.agent,
            if h.agent == "ready" || h.agent_detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", one_line(&h.agent_detail))
            }
        );
    }
    println!(
        "\n  try: crossdock lab exec --name {} h1 -- docker ps",
        status.name
    );
}

fn one_line(s: &str) -> String {
    let line = s.lines().map(str::trim).collect::<Vec<_>>().join("; ");
    if line.len() > 160 {
        format!(
            "{}...",
            &line[..line
                .char_indices()
                .nth(157)
                .map(|(i, _)| i)
                .unwrap_or(line.len())]
        )
    } else {
        line
    }
}

fn cmd_status(name: &str, json: bool) -> Result<u8> {
    let lab = Lab::load(name)?;
    let status = lab.status();
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("lab {name} ({})", lab.state().dir.display());
        print_status(&status, lab.state());
    }
    Ok(0)
}

fn cmd_exec(name: &str, host: &str, command: &[String]) -> Result<u8> {
    let lab = Lab::load(name)?;
    let host = lab.host_named(host)?;
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let err = lab::host_command(host, &argv).exec();
    bail!(
        "cannot run `{}` in host {}: {err}",
        command.join(" "),
        host.name
    )
}

fn cmd_agent(name: &str, host: &str, action: AgentAction) -> Result<u8> {
    let mut lab = Lab::load(name)?;
    let host = lab.host_named(host)?.name.clone();
    match action {
        AgentAction::Start => {
            let pid = lab::agent_start_detached(lab.state(), &host)?;
            report_agent(&lab, &host, pid);
        }
        AgentAction::Stop => {
            lab.agent_stop(&host)?;
            println!("agent of {host} stopped");
        }
        AgentAction::Kill => {
            lab.agent_kill(&host)?;
            println!("agent of {host} killed");
        }
        AgentAction::Restart => {
            lab.agent_stop(&host)?;
            let pid = lab::agent_start_detached(lab.state(), &host)?;
            report_agent(&lab, &host, pid);
        }
    }
    Ok(0)
}

fn cmd_host(name: &str, cmd: HostCommand) -> Result<u8> {
    let mut lab = Lab::load(name)?;
    match cmd {
        HostCommand::Add {
            ip,
            no_docker,
            vswitch,
        } => {
            let host = lab.host_add(&lab::HostAdd {
                ip,
                no_docker,
                vswitch,
            })?;
            println!(
                "host {} added: IP {} on {}, instance {}, subnet {}",
                host.name, host.private_ip, host.vswitch, host.instance_id, host.subnet
            );
            if lab.runs_agent(&host) && lab.state().agents {
                if let Some(pid) = lab::agent_pid(&host) {
                    report_agent(&lab, &host.name, pid);
                }
            }
        }
        HostCommand::Release { host } => {
            let host = lab.host_named(&host)?.name.clone();
            lab.host_release(&host)?;
            println!("host {host} released");
        }
        HostCommand::Stop { host } => {
            let host = lab.host_named(&host)?.name.clone();
            lab.host_stop(&host)?;
            println!("host {host} stopped");
        }
        HostCommand::Start { host } => {
            let host = lab.host_named(&host)?.name.clone();
            lab.host_start(&host)?;
            println!("host {host} started");
            if let Some(pid) = lab::agent_pid(lab.host_named(&host)?) {
                report_agent(&lab, &host, pid);
            }
        }
    }
    Ok(0)
}

fn cmd_table(name: &str, cmd: TableCommand) -> Result<u8> {
    let lab = Lab::load(name)?;
    match cmd {
        TableCommand::List => {
            print!("{}", tables_text(&lab.status()));
        }
        TableCommand::Create { bind } => {
            let refs: Vec<&str> = bind.iter().map(String::as_str).collect();
            let t = lab.table_create(&refs)?;
            println!(
                "route table {} created (Custom), bound to {}",
                t.route_table_id,
                if bind.is_empty() {
                    "no vSwitch".to_string()
                } else {
                    bind.join(", ")
                }
            );
        }
        TableCommand::Bind { table, vswitch } => {
            lab.table_bind(&table, &vswitch)?;
            println!("{vswitch} is bound to {table}: its traffic is routed by that table");
        }
        TableCommand::Unbind { table, vswitch } => {
            lab.table_unbind(&table, &vswitch)?;
            println!("{vswitch} is unbound from {table}: the system table routes its traffic");
        }
    }
    Ok(0)
}

/// The vSwitches (with their tables) and the route tables (with their vSwitches), a line each.
fn tables_text(status: &lab::LabStatus) -> String {
    let mut s = String::new();
    for v in &status.vswitches {
        s.push_str(&format!(
            "  {} {} {} {} (bridge {}, gateway {}) -> {} {}\n",
            v.name,
            v.vswitch_id,
            v.cidr,
            v.zone_id,
            v.bridge,
            v.gateway,
            or_unknown(&v.route_table_id),
            v.route_table_type
        ));
    }
    for t in &status.route_tables {
        s.push_str(&format!(
            "  table {} ({}): vSwitches [{}], {} custom entries\n",
            t.route_table_id,
            t.route_table_type,
            t.vswitches.join(", "),
            t.custom_entries
        ));
    }
    s
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "?"
    } else {
        s
    }
}

/// Waits (bounded) until a just-started agent answers or exits, and says which.
fn report_agent(lab: &Lab, host: &str, pid: u32) {
    let mut health = lab.agent_health(host);
    lab::wait_for(Duration::from_secs(10), || {
        health = lab.agent_health(host);
        (health.0 != "starting").then_some(())
    });
    println!("agent of {host} (pid {pid}): {}", health.0);
    if health.0 != "ready" {
        println!("  {}", one_line(&health.1));
    }
}

/// Applies a fault command to the fault set and limits; returns whether each changed.
pub fn apply_fault(
    fault: &FaultCommand,
    faults: &mut Faults,
    settings: &mut Settings,
) -> Result<(bool, bool)> {
    match fault {
        FaultCommand::Show => Ok((false, false)),
        FaultCommand::Reset => {
            *faults = Faults::default();
            Ok((true, false))
        }
        FaultCommand::Latency { action, ms } => {
            if *ms == 0 {
                faults.latency_ms.remove(action);
            } else {
                faults.latency_ms.insert(action.clone(), *ms);
            }
            Ok((true, false))
        }
        FaultCommand::Error {
            action,
            rate,
            code,
            after_commit,
        } => {
            if !(0.0..=1.0).contains(rate) {
                return Err(InputError(format!(
                    "the error rate must be between 0 and 1 (got {rate})"
                ))
                .into());
            }
            if *rate == 0.0 {
                faults.errors.remove(action);
            } else {
                faults.errors.insert(
                    action.clone(),
                    ErrorFault {
                        rate: *rate,
                        code: code.clone(),
                        after_commit: *after_commit,
                    },
                );
            }
            Ok((true, false))
        }
        FaultCommand::Throttle { action, qps } => {
            settings.action_qps.insert(action.clone(), *qps);
            Ok((false, true))
        }
        FaultCommand::TaskConflict { state } => {
            faults.task_conflict_storm = *state == OnOff::On;
            Ok((true, false))
        }
        FaultCommand::Api { state } => {
            faults.api_down = *state == DownUp::Down;
            Ok((true, false))
        }
        FaultCommand::Metadata { state } => {
            faults.metadata_down = *state == DownUp::Down;
            Ok((true, false))
        }
        FaultCommand::ExpireCredentials => Ok((false, false)),
    }
}

fn cmd_fault(name: &str, fault: FaultCommand) -> Result<u8> {
    let lab = Lab::load(name)?;
    let (mut faults, mut settings) =
        lab.admin_sync(|c| async move { Ok((c.faults().await?, c.settings().await?)) })?;
    let (faults_changed, settings_changed) = apply_fault(&fault, &mut faults, &mut settings)?;
    if faults_changed {
        let f = faults.clone();
        faults = lab.admin_sync(move |c| async move { c.set_faults(&f).await })?;
    }
    if settings_changed {
        let s = settings.clone();
        settings = lab.admin_sync(move |c| async move { c.set_settings(&s).await })?;
    }
    if matches!(fault, FaultCommand::ExpireCredentials) {
        lab.admin_sync(|c| async move { c.expire_credentials().await })?;
        println!("every STS credential expired; the metadata service hands out new ones");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({ "faults": faults, "settings": settings })
        )?
    );
    Ok(0)
}

fn cmd_down(name: &str) -> Result<u8> {
    let started = std::time::Instant::now();
    lab::down(name)?;
    println!(
        "lab {name} removed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn cmd_list() -> Result<u8> {
    let labs: Vec<(String, String)> = lab::list()
        .into_iter()
        .map(|name| {
            let phase = Lab::load(&name)
                .map(|l| {
                    format!(
                        "{} hosts, Docker {}",
                        l.hosts().len(),
                        l.state().docker_version
                    )
                })
                .unwrap_or_else(|_| {
                    "incomplete (remove it with `crossdock lab down --name NAME`)".into()
                });
            (name, phase)
        })
        .collect();
    print!("{}", list_text(&labs));
    Ok(0)
}

/// `crossdock lab list`: a line per lab (name, tab, what it is), or one line saying there is none.
fn list_text(labs: &[(String, String)]) -> String {
    if labs.is_empty() {
        return "no lab on this machine (create one with `crossdock lab up`)\n".into();
    }
    labs.iter().map(|(n, p)| format!("{n}\t{p}\n")).collect()
}

fn cmd_demo(name: &str, demo: DemoArgs) -> Result<u8> {
    let opts = LabOptions {
        name: name.to_string(),
        hosts: demo.hosts,
        docker: demo.docker,
        crossdock_bin: crossdock_bin()?,
        fleet: !demo.no_names,
        names: !demo.no_names,
        ..LabOptions::default()
    };
    let mut out = std::io::stdout();
    crate::demo::run(
        opts,
        demo.keep,
        Duration::from_secs(demo.route_timeout),
        &mut out,
    )?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: Cmd,
    }
    #[derive(Debug, Subcommand)]
    enum Cmd {
        Lab(LabArgs),
    }

    fn parse(args: &[&str]) -> LabArgs {
        let mut full = vec!["crossdock", "lab"];
        full.extend_from_slice(args);
        match Top::try_parse_from(full).unwrap().cmd {
            Cmd::Lab(l) => l,
        }
    }

    #[test]
    fn up_parses_its_options_and_the_name_anywhere() {
        let a = parse(&[
            "up",
            "--hosts",
            "3",
            "--docker",
            "28",
            "--name",
            "x1",
            "--no-agents",
            "--static-hosts",
            "5",
        ]);
        assert_eq!(a.name, "x1");
        match a.command {
            LabCommand::Up(u) => {
                assert_eq!(u.hosts, 3);
                assert_eq!(u.docker, DockerVersion::V28);
                assert!(u.no_agents);
                assert_eq!(u.static_hosts, 5);
            }
            other => panic!("{other:?}"),
        }
        let a = parse(&["--name", "y", "down"]);
        assert_eq!(a.name, "y");
        assert!(matches!(a.command, LabCommand::Down));
        assert_eq!(parse(&["status"]).name, "default");
    }

    #[test]
    fn list_says_when_there_is_no_lab() {
        assert_eq!(
            list_text(&[]),
            "no lab on this machine (create one with `crossdock lab up`)\n"
        );
        let one = [("demo".to_string(), "2 hosts, Docker 28".to_string())];
        assert_eq!(list_text(&one), "demo\t2 hosts, Docker 28\n");
    }

    #[test]
    fn status_of_a_lab_that_does_not_exist_is_bad_input() {
        let e = Lab::load("no-such-lab-zz").expect_err("no such lab");
        assert!(e.chain().any(|c| c.is::<InputError>()), "{e:#}");
        assert!(
            format!("{e:#}").contains("lab no-such-lab-zz does not exist"),
            "{e:#}"
        );
        let args = parse(&["status", "--name", "no-such-lab-zz"]);
        assert_eq!(run(args), 2);
    }

    #[test]
    fn fleet_up_and_host_commands_parse() {
        match parse(&["up", "--fleet", "--agent-config", "/tmp/a.toml"]).command {
            LabCommand::Up(u) => {
                assert!(u.fleet);
                assert_eq!(u.agent_config, Some(PathBuf::from("/tmp/a.toml")));
            }
            other => panic!("{other:?}"),
        }
        let no_fleet = Top::try_parse_from(["crossdock", "lab", "up", "--agent-config", "a"]);
        assert!(no_fleet.is_err(), "--agent-config needs --fleet");
        match parse(&["up", "--names", "--agent-config", "a"]).command {
            LabCommand::Up(u) => assert!(u.names && !u.fleet, "--names implies fleet mode"),
            other => panic!("{other:?}"),
        }
        match parse(&["host", "add", "--ip", "192.168.1.12", "--no-docker"]).command {
            LabCommand::Host {
                host:
                    HostCommand::Add {
                        ip,
                        no_docker,
                        vswitch,
                    },
            } => {
                assert_eq!(ip, Some("192.168.1.12".parse().unwrap()));
                assert!(no_docker);
                assert_eq!(vswitch, None);
            }
            other => panic!("{other:?}"),
        }
        for (verb, want) in [("release", "h2"), ("stop", "h2"), ("start", "h2")] {
            let host = match parse(&["host", verb, "h2"]).command {
                LabCommand::Host {
                    host:
                        HostCommand::Release { host }
                        | HostCommand::Stop { host }
                        | HostCommand::Start { host },
                } => host,
                other => panic!("{other:?}"),
            };
            assert_eq!(host, want);
        }
    }

    fn up(args: &[&str]) -> UpArgs {
        let mut full = vec!["up"];
        full.extend_from_slice(args);
        match parse(&full).command {
            LabCommand::Up(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn zones_and_custom_tables_parse() {
        use crate::lab::CustomTables;
        let u = up(&[]);
        assert_eq!(
            (u.vswitches, u.custom_tables()),
            (1, CustomTables::AllButFirst)
        );
        let u = up(&["--zones", "3"]);
        assert_eq!(
            (u.vswitches, u.custom_tables()),
            (3, CustomTables::AllButFirst)
        );
        let u = up(&[
            "--vswitches",
            "3",
            "--custom-table",
            "2,vsw3",
            "--custom-table",
            "vsw1",
        ]);
        assert_eq!(
            u.custom_tables(),
            CustomTables::Groups(vec![vec![2, 3], vec![1]])
        );
        assert_eq!(
            up(&["--no-custom-tables"]).custom_tables(),
            CustomTables::None
        );
        let both = Top::try_parse_from([
            "crossdock",
            "lab",
            "up",
            "--custom-table",
            "2",
            "--no-custom-tables",
        ]);
        assert!(both.is_err(), "either custom tables or none");
        let bad = Top::try_parse_from(["crossdock", "lab", "up", "--custom-table", "x"]);
        assert!(bad.unwrap_err().to_string().contains("vsw2"));
        match parse(&["table", "create", "--bind", "vsw2", "--bind", "3"]).command {
            LabCommand::Table {
                table: TableCommand::Create { bind },
            } => assert_eq!(bind, vec!["vsw2", "3"]),
            other => panic!("{other:?}"),
        }
        match parse(&["table", "bind", "vtb-1", "vsw2"]).command {
            LabCommand::Table {
                table: TableCommand::Bind { table, vswitch },
            } => assert_eq!((table.as_str(), vswitch.as_str()), ("vtb-1", "vsw2")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["table", "unbind", "vtb-1", "vsw2"]).command,
            LabCommand::Table {
                table: TableCommand::Unbind { .. }
            }
        ));
        match parse(&["host", "add", "--vswitch", "vsw2"]).command {
            LabCommand::Host {
                host: HostCommand::Add { vswitch, .. },
            } => assert_eq!(vswitch.as_deref(), Some("vsw2")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_lab_with_too_many_vswitches_is_bad_input_before_anything_is_made() {
        let e = Lab::up(LabOptions {
            name: "zz-never-made".into(),
            vswitches: 9,
            ..LabOptions::default()
        })
        .unwrap_err();
        assert!(e.chain().any(|c| c.is::<InputError>()), "{e:#}");
        assert!(e.to_string().contains("1 to 8 vSwitches"), "{e:#}");
        let e = Lab::up(LabOptions {
            name: "zz-never-made".into(),
            vswitches: 2,
            custom_tables: crate::lab::CustomTables::Groups(vec![vec![3]]),
            ..LabOptions::default()
        })
        .unwrap_err();
        assert!(e.chain().any(|c| c.is::<InputError>()), "{e:#}");
        assert!(!crate::lab::lab_dir("zz-never-made").exists());
    }

    #[test]
    fn exec_takes_the_command_after_the_separator() {
        let a = parse(&["exec", "h2", "--", "docker", "ps", "-a"]);
        match a.command {
            LabCommand::Exec { host, command } => {
                assert_eq!(host, "h2");
                assert_eq!(command, vec!["docker", "ps", "-a"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_bad_docker_version_is_refused() {
        let mut full = vec!["crossdock", "lab", "up", "--docker", "27"];
        let err = Top::try_parse_from(std::mem::take(&mut full))
            .unwrap_err()
            .to_string();
        assert!(err.contains("use 20"), "{err}");
    }

    #[test]
    fn faults_change_what_they_name() {
        let mut f = Faults::default();
        let mut s = Settings::default();
        let run =
            |c: FaultCommand, f: &mut Faults, s: &mut Settings| apply_fault(&c, f, s).unwrap();
        assert_eq!(
            run(
                FaultCommand::Latency {
                    action: "CreateRouteEntry".into(),
                    ms: 300
                },
                &mut f,
                &mut s
            ),
            (true, false)
        );
        assert_eq!(f.latency_ms["CreateRouteEntry"], 300);
        run(
            FaultCommand::Latency {
                action: "CreateRouteEntry".into(),
                ms: 0,
            },
            &mut f,
            &mut s,
        );
        assert!(f.latency_ms.is_empty());
        run(
            FaultCommand::Error {
                action: "*".into(),
                rate: 0.5,
                code: "InternalError".into(),
                after_commit: true,
            },
            &mut f,
            &mut s,
        );
        assert_eq!(
            f.errors["*"],
            ErrorFault {
                rate: 0.5,
                code: "InternalError".into(),
                after_commit: true
            }
        );
        assert!(apply_fault(
            &FaultCommand::Error {
                action: "*".into(),
                rate: 1.5,
                code: "X".into(),
                after_commit: false
            },
            &mut f,
            &mut s
        )
        .is_err());
        assert_eq!(
            run(
                FaultCommand::Throttle {
                    action: "DescribeRouteEntryList".into(),
                    qps: 2
                },
                &mut f,
                &mut s
            ),
            (false, true)
        );
        assert_eq!(s.action_qps["DescribeRouteEntryList"], 2);
        run(
            FaultCommand::TaskConflict { state: OnOff::On },
            &mut f,
            &mut s,
        );
        run(
            FaultCommand::Api {
                state: DownUp::Down,
            },
            &mut f,
            &mut s,
        );
        run(
            FaultCommand::Metadata {
                state: DownUp::Down,
            },
            &mut f,
            &mut s,
        );
        assert!(f.task_conflict_storm && f.api_down && f.metadata_down);
        run(FaultCommand::Api { state: DownUp::Up }, &mut f, &mut s);
        assert!(!f.api_down);
        run(FaultCommand::Reset, &mut f, &mut s);
        assert_eq!(f, Faults::default());
    }
}
