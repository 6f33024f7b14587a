//! SIGHUP: read the file again, check it against what the agent serves, and take what can change
//! while running. A file that would stop a fresh start is rejected the same way, and the running
//! configuration (and scrape listener) stays.

use std::path::Path;
use std::sync::Mutex;

use crossdock_config::{Config, ConfigError};

use crate::scrape::{self, HostAddresses, ScrapeEndpoint};
use crate::state::AgentState;

/// Checks a reloaded configuration against what the running agent serves; the same problems that
/// would stop a fresh start reject the reload.
pub fn check_reload(
    new: &Config,
    state: &Mutex<AgentState>,
    old: &Config,
) -> Result<(), ConfigError> {
    let served = state.lock().unwrap_or_else(|p| p.into_inner()).subnet;
    if let Some(subnet) = served {
        if new.docker.network == old.docker.network && new.docker.static_subnet.is_none() {
            crossdock_config::check_subnet(subnet, new)?;
        }
    }
    Ok(())
}

/// Settings that changed in the file but take effect only on a restart.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.docker.host != new.docker.host {
        v.push("docker.host");
    }
    if old.docker.static_subnet.is_some() != new.docker.static_subnet.is_some() {
        v.push("docker.static_subnet (switching mode)");
    }
    if old.health_socket != new.health_socket {
        v.push("health_socket");
    }
    if old.log_format != new.log_format {
        v.push("log_format");
    }
    if old.cloud != new.cloud {
        v.push("[cloud]");
    }
    if old.names != new.names {
        v.push("[names]");
    }
    v
}

/// The configuration the agent runs with after accepting `new`: the file's values, except the
/// restart-only settings, which keep `old`'s.
pub fn applied(old: &Config, new: &Config) -> Config {
    let mut applied = new.clone();
    applied.docker.host = old.docker.host.clone();
    applied.health_socket = old.health_socket.clone();
    applied.log_format = old.log_format;
    applied.cloud = old.cloud.clone();
    applied.names = old.names.clone();
    if applied.docker.static_subnet.is_some() != old.docker.static_subnet.is_some() {
        applied.docker.static_subnet = old.docker.static_subnet;
    }
    applied
}

/// Reads and checks the file; applies the scrape endpoint's part (a new address is bound before
/// the old one is let go); the rest is the caller's. Nothing changes when this fails.
pub async fn read(
    path: &Path,
    old: &Config,
    state: &Mutex<AgentState>,
    endpoint: &mut ScrapeEndpoint,
    addresses: &dyn HostAddresses,
) -> Result<Config, String> {
    let new = crossdock_config::load(path).map_err(|e| e.to_string())?;
    check_reload(&new, state, old).map_err(|e| e.to_string())?;
    scrape::check_listen(&new.metrics, addresses)
        .await
        .map_err(|e| e.to_string())?;
    endpoint.apply(&new.metrics).await?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crossdock_config::parse(text).unwrap()
    }

    #[test]
    fn a_reload_must_still_hold_the_served_subnet() {
        let old = cfg("cluster_cidrs = [\"10.0.0.0/8\"]");
        let state = Mutex::new(AgentState::new("/x".into()));
        // Nothing served yet: any valid file is accepted.
        let narrower = cfg("cluster_cidrs = [\"10.9.0.0/16\"]");
        assert!(check_reload(&narrower, &state, &old).is_ok());
        state.lock().unwrap_or_else(|p| p.into_inner()).subnet =
            Some("10.1.0.0/24".parse().unwrap());
        let e = check_reload(&narrower, &state, &old).unwrap_err();
        assert_eq!(e.field, "cluster_cidrs");
        assert!(e.message.contains("10.1.0.0/24"), "{e}");
        assert!(check_reload(&cfg("cluster_cidrs = [\"10.1.0.0/16\"]"), &state, &old).is_ok());
        // Serving another network next: its subnet is checked when Docker reports it, not here.
        let other = cfg("cluster_cidrs = [\"10.9.0.0/16\"]\n[docker]\nnetwork = \"other\"");
        assert!(check_reload(&other, &state, &old).is_ok());
    }

    #[test]
    fn settings_that_need_a_restart_are_named_and_kept() {
        let old = cfg("cluster_cidrs = [\"10.0.0.0/8\"]");
        let new = cfg("cluster_cidrs = [\"10.0.0.0/8\"]\nhealth_socket = \"/run/x.sock\"\nlog_format = \"json\"\nresync_interval_secs = 5\n[cloud]\nprovider = \"alibaba\"");
        assert_eq!(
            restart_only_changes(&old, &new),
            ["health_socket", "log_format", "[cloud]"]
        );
        assert!(restart_only_changes(&old, &old).is_empty());
        let running = applied(&old, &new);
        assert_eq!(running.health_socket, old.health_socket);
        assert_eq!(running.cloud, old.cloud);
        assert_eq!(
            running.resync_interval_secs, 5,
            "reloadable settings are taken"
        );
    }
}
