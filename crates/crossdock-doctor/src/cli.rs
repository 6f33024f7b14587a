//! `crossdock doctor` (skeleton: filled in by the doctor work).
use clap::Args;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(_args: DoctorArgs) -> u8 {
    eprintln!("crossdock doctor: not built yet");
    2
}
