//! crossdock's benchmarks, one command (`scripts/bench`): the data path against the host network, the
//! manual recipe, Docker's swarm overlay and a flannel-like VXLAN overlay; the control plane (start-up
//! time, boot storms of 50–200 hosts against a slow, serialising, throttling VPC API, steady state);
//! and the agent's footprint. Everything runs in the lab (`crossdock-lab`): network namespaces, real
//! dockerds, the emulated VPC, the real agent binary. Figures are medians over interleaved repeats,
//! targets are ratios measured in the same run, and every figure is printed with its target.

pub mod calls;
pub mod catalog_peer;
pub mod control;
pub mod datapath;
pub mod dnsq;
pub mod fleet;
pub mod footprint;
pub mod iperf;
pub mod names;
pub mod plot;
pub mod proc;
pub mod procstat;
pub mod report;
pub mod rr;
pub mod run;
pub mod stats;
pub mod swarm;
pub mod vxlan;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Turns SIGINT and SIGTERM into a flag that long waits check, so a stopped run still removes its labs.
pub fn install_signal_handlers() -> anyhow::Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag().clone())?;
    }
    Ok(())
}

/// An error once the run was interrupted.
pub fn check_interrupted() -> anyhow::Result<()> {
    if flag().load(Ordering::Relaxed) {
        anyhow::bail!("interrupted: removing the benchmark's labs");
    }
    Ok(())
}
