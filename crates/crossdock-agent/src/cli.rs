//! Command-line entry points of the agent crate: `crossdock agent`, `status`, `deregister`.
//! (Skeleton: filled in by the agent work.)

use clap::Args;

/// `crossdock agent`
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "/etc/crossdock/agent.toml", env = "CROSSDOCK_CONFIG")]
    pub config: std::path::PathBuf,
}

/// `crossdock status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the raw JSON of the agent's /status.
    #[arg(long)]
    pub json: bool,
}

/// `crossdock deregister`
#[derive(Debug, Args)]
pub struct DeregisterArgs {
    /// Configuration file.
    #[arg(long, short = 'c', default_value = "/etc/crossdock/agent.toml", env = "CROSSDOCK_CONFIG")]
    pub config: std::path::PathBuf,
}

pub fn run_agent(_args: AgentArgs) -> u8 {
    eprintln!("crossdock agent: not built yet");
    1
}
pub fn run_status(_args: StatusArgs) -> u8 {
    eprintln!("crossdock status: not built yet");
    1
}
pub fn run_deregister(_args: DeregisterArgs) -> u8 {
    eprintln!("crossdock deregister: not built yet");
    1
}
