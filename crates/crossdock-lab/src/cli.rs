//! `crossdock lab ...` (skeleton: filled in by the lab work).
use clap::Args;

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Lab name; several labs can live side by side.
    #[arg(long, default_value = "default", global = true)]
    pub name: String,
}

pub fn run(_args: LabArgs) -> u8 {
    eprintln!("crossdock lab: not built yet");
    1
}
