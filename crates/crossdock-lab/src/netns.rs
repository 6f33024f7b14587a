//! Named network namespaces for the lab and for every root-gated integration test.
//!
//! The lab's hosts, its vRouter and each test's private network are `ip netns` namespaces: they are named
//! (so a crashed run can be cleaned up by name), mounted under `/run/netns/NAME` (so `nsenter --net=PATH`
//! can enter them), and torn down with `ip netns delete`. Commands run inside them through `nsenter`, never
//! `ip netns exec`: the latter remounts `/sys`, which hides the cgroup hierarchy and breaks dockerd.
//!
//! veth pairs are created with each end born directly in its namespace (`ip -n A link add X type veth peer
//! name Y netns B`), so nothing ever appears, even briefly, in the root namespace.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Where `ip netns` mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Runs a command to completion and fails with a message naming it and quoting its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!("cannot run `{program}` (is it installed? scripts/install-deps installs it)")
        })?;
    if !output.status.success() {
        bail!(
            "`{} {}` failed ({}): {}",
            program,
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// A named network namespace. Dropping a namespace made by [`Netns::create`] deletes it (best effort); one
/// opened with [`Netns::open`], or released with [`Netns::keep`], is left alone. Dropping never kills any
/// process: whoever spawned processes inside owns them.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    owned: bool,
}

impl Netns {
    /// Creates `NAME` (`ip netns add`) and brings its loopback up. Fails if it already exists.
    pub fn create(name: &str) -> Result<Netns> {
        validate_name(name)?;
        if Self::exists(name) {
            bail!("network namespace {name} already exists (left by an earlier run? `ip netns delete {name}`, or `crossdock lab down` for a lab)");
        }
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
            path: Path::new(NETNS_DIR).join(name),
            owned: true,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Opens an existing namespace without taking ownership: dropping it deletes nothing.
    pub fn open(name: &str) -> Result<Netns> {
        validate_name(name)?;
        if !Self::exists(name) {
            bail!("network namespace {name} does not exist");
        }
        Ok(Netns {
            name: name.to_string(),
            path: Path::new(NETNS_DIR).join(name),
            owned: false,
        })
    }

    /// True if `/run/netns/NAME` exists.
    pub fn exists(name: &str) -> bool {
        Path::new(NETNS_DIR).join(name).exists()
    }

    /// Every named namespace whose name starts with `prefix`.
    pub fn list_with_prefix(prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(NETNS_DIR)
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Deletes a namespace by name; a missing one is not an error.
    pub fn delete_by_name(name: &str) -> Result<()> {
        if Self::exists(name) {
            run("ip", &["netns", "delete", name])?;
        }
        Ok(())
    }

    /// Stops dropping from deleting the namespace (it outlives this handle, e.g. a lab left up).
    pub fn keep(mut self) -> Netns {
        self.owned = false;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, for `nsenter --net=`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `--net=/run/netns/NAME`.
    pub fn nsenter_arg(&self) -> String {
        format!("--net={}", self.path.display())
    }

    /// A `Command` that runs `argv` inside the namespace (through `nsenter`), for callers that want to set
    /// the environment or stdio themselves.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(self.nsenter_arg()).arg("--").args(argv);
        cmd
    }

    /// Runs `argv` inside the namespace to completion; a non-zero exit is an error naming the command, the
    /// namespace and its stderr.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let output = self.exec_unchecked(argv)?;
        if !output.status.success() {
            bail!(
                "`{}` in netns {} failed ({}): {}",
                argv.join(" "),
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    /// Runs `argv` inside the namespace and returns its output whatever its exit status.
    pub fn exec_unchecked(&self, argv: &[&str]) -> Result<Output> {
        if argv.is_empty() {
            bail!("no command given to run in netns {}", self.name);
        }
        self.command(argv)
            .stdin(Stdio::null())
            .output()
            .with_context(|| {
                format!(
                    "cannot run nsenter for `{}` in netns {}",
                    argv.join(" "),
                    self.name
                )
            })
    }

    /// Runs `argv` inside the namespace and returns its trimmed stdout.
    pub fn exec_stdout(&self, argv: &[&str]) -> Result<String> {
        let out = self.exec(argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts `argv` inside the namespace in the background (stdin from /dev/null, output inherited).
    pub fn spawn(&self, argv: &[&str]) -> Result<Child> {
        if argv.is_empty() {
            bail!("no command given to start in netns {}", self.name);
        }
        self.command(argv)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start `{}` in netns {}", argv.join(" "), self.name))
    }

    /// `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> Result<Output> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Adds an address (`192.168.1.11/24`) to a device.
    pub fn addr_add(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "add", cidr, "dev", dev]).map(drop)
    }

    /// Sets a device up.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"]).map(drop)
    }

    /// Adds (or replaces) a route to `dest` via `gateway`.
    pub fn route_replace(&self, dest: &str, gateway: &str) -> Result<()> {
        self.ip(&["route", "replace", dest, "via", gateway])
            .map(drop)
    }

    /// Deletes the route to `dest`; a missing route is not an error.
    pub fn route_delete(&self, dest: &str) -> Result<()> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "route", "del", dest])
            .stdin(Stdio::null())
            .output()
            .context("cannot run ip")?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || err.contains("No such process") {
            Ok(())
        } else {
            bail!(
                "`ip -n {} route del {dest}` failed: {}",
                self.name,
                err.trim()
            )
        }
    }

    /// Sets the default route.
    pub fn default_route(&self, gateway: &str) -> Result<()> {
        self.route_replace("default", gateway)
    }

    /// Writes a namespaced sysctl (`net.ipv4.ip_forward`, ...) inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Reads a namespaced sysctl.
    pub fn sysctl_get(&self, key: &str) -> Result<String> {
        self.exec_stdout(&["sysctl", "-n", key])
    }

    /// PIDs of the processes whose network namespace is this one (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.owned {
            let _ = Self::delete_by_name(&self.name);
        }
    }
}

/// Creates a veth pair with end `a_dev` in `a` and end `b_dev` in `b`, both up. Neither end ever exists in
/// the root namespace. Interface names must be at most 15 characters.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    for dev in [a_dev, b_dev] {
        validate_ifname(dev)?;
    }
    a.ip(&[
        "link",
        "add",
        a_dev,
        "type",
        "veth",
        "peer",
        "name",
        b_dev,
        "netns",
        b.name(),
    ])?;
    a.link_up(a_dev)?;
    b.link_up(b_dev)?;
    Ok(())
}

/// Linux interface names: 1..=15 bytes, no `/`, no whitespace.
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        bail!("interface name {name:?} is invalid: it must be 1 to 15 characters without '/' or spaces");
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 200
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        || name.starts_with('.')
    {
        bail!("network namespace name {name:?} is invalid: use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(validate_ifname("p-h1").is_ok());
        assert!(validate_ifname("123456789012345").is_ok());
        assert!(validate_ifname("1234567890123456").is_err());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("a/b").is_err());
    }

    #[test]
    fn namespace_names_are_checked() {
        assert!(validate_name("cdl-default-h1").is_ok());
        assert!(validate_name("../etc").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name("").is_err());
    }
}
