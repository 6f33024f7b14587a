//! `crossdock`: one binary, thin on purpose. It parses the command line, then hands each subcommand to
//! the library crate that owns it; logging set-up, signals and the logic live there. Exit codes are the
//! same everywhere: 0 success, 1 a runtime failure (or doctor warnings), 2 bad input (or doctor failures).
//!
//! The `lab` subcommand (the emulated VPC, namespaces, a dockerd per host) exists only with the `lab`
//! feature, which is on by default for development and off in the packaged binary.

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "crossdock",
    version,
    about = "Direct routing between Docker hosts through the cloud VPC route table",
    long_about = "crossdock gives every Docker host's bridge a subnet of its own, keeps forwarding and a narrow \
firewall in place, and registers one VPC route per host (bridge subnet -> this instance), so containers on \
different hosts reach each other by their own IPs with no overlay.\n\nExit codes: 0 success; 1 runtime \
failure (doctor: warnings); 2 bad input or configuration (doctor: failures)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the per-host agent (the systemd service), or check/clean up its state.
    Agent(crossdock_agent::cli::AgentArgs),
    /// Show the running agent's health, conditions and route state.
    Status(crossdock_agent::cli::StatusArgs),
    /// Delete this host's own VPC routes, for decommissioning.
    Deregister(crossdock_agent::cli::DeregisterArgs),
    /// Write Docker's bridge subnet, derived from this host's private IP, into daemon.json (before
    /// Docker starts; fleet mode).
    Init(crossdock_init::cli::InitArgs),
    /// Diagnose every step of direct routing on this host and in the VPC, and say the fix.
    Doctor(crossdock_doctor::cli::DoctorArgs),
    /// A simulated Alibaba VPC on this machine: emulator, network namespaces, one dockerd per host.
    #[cfg(feature = "lab")]
    Lab(crossdock_lab::cli::LabArgs),
    /// Print shell completions or the man page.
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Subcommand)]
enum Generate {
    /// Shell completions for bash, zsh, fish, ...
    Completions { shell: clap_complete::Shell },
    /// The man page (roff), to stdout.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Agent(args) => crossdock_agent::cli::run_agent(args),
        Command::Status(args) => crossdock_agent::cli::run_status(args),
        Command::Deregister(args) => crossdock_agent::cli::run_deregister(args),
        Command::Init(args) => crossdock_init::cli::run(args),
        Command::Doctor(args) => crossdock_doctor::cli::run(args),
        #[cfg(feature = "lab")]
        Command::Lab(args) => crossdock_lab::cli::run(args),
        Command::Generate { what } => generate(what),
    };
    ExitCode::from(code)
}

fn generate(what: Generate) -> u8 {
    let mut cmd = Cli::command();
    match what {
        Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut cmd, "crossdock", &mut std::io::stdout());
            0
        }
        Generate::Man => match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("crossdock: cannot write the man page: {e}");
                1
            }
        },
    }
}
