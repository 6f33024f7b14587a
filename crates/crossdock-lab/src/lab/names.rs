//! Container names in the lab (`lab up --names`, fleet mode): the upstream DNS stand-in in the
//! vRouter, the hosts' resolv.conf, `[names]` switched on in the fleet's configuration, and an
//! outsider on the vSwitch for the tests.
//!
//! Why a resolv.conf of the lab's own: the agent forwards external names to the resolvers its
//! resolv.conf lists, and `crossdock init` lists them after the agent in daemon.json `dns`; on
//! Alibaba that is the host's /etc/resolv.conf naming the VPC DNS. The lab's hosts share the root
//! mount namespace, whose /etc/resolv.conf is never touched, so every host's `[names] resolv_conf`
//! names `<lab dir>/resolv.conf`, which points at the stand-in ([`UPSTREAM_DNS_IP`]) instead.

use super::*;
use crate::upstream_dns::UPSTREAM_DNS_IP;
use crossdock_config::Config;
use std::net::Ipv4Addr;

/// The lab's resolv.conf: the stand-in as the only name server.
pub fn resolv_conf_path(state: &LabState) -> PathBuf {
    state.dir.join("resolv.conf")
}

/// The stand-in's pid file (written by it once it answers).
fn pid_file(state: &LabState) -> PathBuf {
    state.dir.join("vpc/upstream-dns.pid")
}

/// Switches `[names]` on in the fleet's configuration, with the lab's resolv.conf.
pub fn apply_lab_names(c: &mut Config, state: &LabState) {
    c.names.enabled = true;
    c.names.resolv_conf = resolv_conf_path(state);
}

/// The stand-in's PID, if it runs.
pub fn upstream_dns_pid(state: &LabState) -> Option<u32> {
    procs::pid_from_file(&pid_file(state), &[&state.dir.display().to_string()])
}

impl Lab {
    /// Starts the upstream DNS stand-in in the vRouter and writes the lab's resolv.conf; waits
    /// (bounded) until the stand-in has bound its sockets.
    pub(super) fn start_upstream_dns(&mut self) -> Result<()> {
        let vr = Netns::open(&self.state.vr_netns)?;
        vr.addr_add("lo", &format!("{UPSTREAM_DNS_IP}/32"))?;
        let path = resolv_conf_path(&self.state);
        std::fs::write(
            &path,
            format!(
                "# lab {}: the VPC DNS stand-in\nnameserver {UPSTREAM_DNS_IP}\n",
                self.state.name
            ),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        let pid_file = pid_file(&self.state);
        let _ = std::fs::remove_file(&pid_file);
        let log = open_log(&self.state.dir.join("vpc/upstream-dns.log"))?;
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", vr.path().display()))
            .arg("--")
            .arg(&self.state.crossdock_bin)
            .args(["lab", "dns-server", "--name", &self.state.name])
            .args(["--listen", &format!("{UPSTREAM_DNS_IP}:53")])
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("cannot start the upstream DNS stand-in")?;
        let up = wait_for(Duration::from_secs(10), || {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return Some(false);
            }
            pid_file.exists().then_some(true)
        });
        if up != Some(true) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the upstream DNS stand-in did not come up; its log {} says:\n{}",
                self.state.dir.join("vpc/upstream-dns.log").display(),
                dockerd::log_tail(&self.state.dir.join("vpc/upstream-dns.log"), 0, 20)
            );
        }
        self.children.push(child);
        Ok(())
    }

    /// A namespace on vSwitch 1 at `ip` that is no member of anything: no instance, no agent, no
    /// tag (an attacker's or a stranger's host in the VPC). Named like a host (`cdl-<lab>-h<n>`,
    /// a fresh index), so `down` removes it; not in `lab.json`'s hosts.
    pub fn outsider(&mut self, ip: Ipv4Addr) -> Result<Netns> {
        let vsw = self.vswitch("1")?;
        let index = self.state.next_index.max(1);
        self.state.next_index = index + 1;
        self.save()?;
        let name = host_netns_name(&self.state.name, index);
        let vr = Netns::open(&self.state.vr_netns)?.keep();
        let ns = Netns::create(&name)?.keep();
        let port = format!("p-o{index}");
        netns::veth(&ns, "eth0", &vr, &port)?;
        vr.ip(&["link", "set", &port, "master", &vsw.bridge])?;
        ns.addr_add("eth0", &format!("{ip}/24"))?;
        ns.default_route(&vsw.gateway)?;
        Ok(ns)
    }
}
