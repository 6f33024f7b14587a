//! Forwarding sysctls, read before written: a value already right is never rewritten (no needless
//! writes, and the agent works read-only where someone else already manages them).
//!
//! `/proc/sys/net` shows the network namespace of the process reading it, so an agent started inside
//! a namespace (the lab) sees and sets that namespace's values.

use crate::rules::SysctlSetting;
use std::path::{Path, PathBuf};

/// Why a sysctl could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("cannot read {name}: {message} (fix: check that the interface exists and /proc/sys is mounted)")]
    Read { name: String, message: String },
    #[error("cannot set {name}={value}: {message} (fix: run the agent as root with CAP_NET_ADMIN and a writable /proc/sys)")]
    Write {
        name: String,
        value: String,
        message: String,
    },
}

/// Reading and writing sysctls by their `/proc/sys` relative path.
pub trait Sysctl: Send + Sync {
    fn read(&self, path: &str) -> Result<String, SysctlError>;
    fn write(&self, path: &str, value: &str) -> Result<(), SysctlError>;
}

/// The real sysctls under `/proc/sys` (or another root, for tests).
#[derive(Debug, Clone)]
pub struct ProcSysctl {
    root: PathBuf,
}

impl Default for ProcSysctl {
    fn default() -> Self {
        Self::new("/proc/sys")
    }
}

impl ProcSysctl {
    pub fn new(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
        }
    }
}

fn dotted(path: &str) -> String {
    SysctlSetting {
        path: path.into(),
        value: String::new(),
    }
    .dotted()
}

impl Sysctl for ProcSysctl {
    fn read(&self, path: &str) -> Result<String, SysctlError> {
        std::fs::read_to_string(self.root.join(path))
            .map(|s| s.trim().to_string())
            .map_err(|e| SysctlError::Read {
                name: dotted(path),
                message: e.to_string(),
            })
    }

    fn write(&self, path: &str, value: &str) -> Result<(), SysctlError> {
        std::fs::write(self.root.join(path), format!("{value}\n")).map_err(|e| SysctlError::Write {
            name: dotted(path),
            value: value.into(),
            message: e.to_string(),
        })
    }
}

/// Sets every sysctl that differs from `desired`; returns the dotted names it changed.
pub fn ensure_sysctls(
    desired: &[SysctlSetting],
    sysctl: &dyn Sysctl,
) -> Result<Vec<String>, SysctlError> {
    let mut changed = Vec::new();
    for s in desired {
        if sysctl.read(&s.path)? != s.value {
            sysctl.write(&s.path, &s.value)?;
            changed.push(format!("{}={}", s.dotted(), s.value));
        }
    }
    Ok(changed)
}

/// Whether every sysctl already has its desired value.
pub fn sysctls_in_place(
    desired: &[SysctlSetting],
    sysctl: &dyn Sysctl,
) -> Result<bool, SysctlError> {
    for s in desired {
        if sysctl.read(&s.path)? != s.value {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::desired_sysctls;

    fn tree(values: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, v) in values {
            let f = dir.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, format!("{v}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn writes_only_what_differs() {
        let dir = tree(&[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/eth0/forwarding", "0"),
        ]);
        let s = ProcSysctl::new(dir.path());
        let want = desired_sysctls("eth0");
        assert!(!sysctls_in_place(&want, &s).unwrap());
        let changed = ensure_sysctls(&want, &s).unwrap();
        assert_eq!(changed, vec!["net.ipv4.conf.eth0.forwarding=1"]);
        assert_eq!(s.read("net/ipv4/conf/eth0/forwarding").unwrap(), "1");
        assert!(ensure_sysctls(&want, &s).unwrap().is_empty());
        assert!(sysctls_in_place(&want, &s).unwrap());
    }

    #[test]
    fn a_missing_interface_is_a_read_error_naming_it() {
        let dir = tree(&[("net/ipv4/ip_forward", "0")]);
        let s = ProcSysctl::new(dir.path());
        let e = ensure_sysctls(&desired_sysctls("eth9"), &s).unwrap_err();
        assert!(
            e.to_string().contains("net.ipv4.conf.eth9.forwarding"),
            "{e}"
        );
        // The first one was still set: ip_forward is global and comes first.
        assert_eq!(s.read("net/ipv4/ip_forward").unwrap(), "1");
    }

    #[test]
    fn real_proc_sys_is_readable() {
        let v = ProcSysctl::default().read("net/ipv4/ip_forward").unwrap();
        assert!(v == "0" || v == "1", "{v}");
    }
}
