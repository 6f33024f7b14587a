//! A process's memory and CPU time from `/proc/<pid>/status` and `/proc/<pid>/stat`, for the
//! footprint figures (resident set size, CPU share).

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::process::Command;

/// CPU times of a process, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuTicks {
    pub utime: u64,
    pub stime: u64,
    /// Of its children that it waited for (the agent runs iptables as a child process).
    pub cutime: u64,
    pub cstime: u64,
}

impl CpuTicks {
    /// Own time.
    pub fn own(&self) -> u64 {
        self.utime + self.stime
    }
    /// Own time plus waited-for children.
    pub fn total(&self) -> u64 {
        self.own() + self.cutime + self.cstime
    }
}

/// `VmRSS` in KiB.
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmRSS")
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...) in KiB.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `VmHWM` (the peak resident set size) of a live process, KiB.
pub fn read_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    parse_status_kib(&status, "VmHWM").ok_or_else(|| anyhow!("/proc/{pid}/status has no VmHWM"))
}

/// Fields 14–17 of `/proc/<pid>/stat` (the command name, field 2, may hold spaces and parentheses:
/// everything up to the last `)` is skipped).
pub fn parse_stat(stat: &str) -> Option<CpuTicks> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // rest starts at field 3 (state); utime is field 14 = index 11 here.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok());
    Some(CpuTicks {
        utime: get(11)?,
        stime: get(12)?,
        cutime: get(13)?,
        cstime: get(14)?,
    })
}

/// One reading of a live process.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub rss_kib: u64,
    pub ticks: CpuTicks,
}

/// Reads `/proc/<pid>`; an error if the process is gone.
pub fn read(pid: u32) -> Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    Ok(Reading {
        rss_kib: parse_rss_kib(&status)
            .ok_or_else(|| anyhow!("/proc/{pid}/status has no VmRSS (a kernel thread?)"))?,
        ticks: parse_stat(&stat).ok_or_else(|| anyhow!("/proc/{pid}/stat is not parseable"))?,
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if getconf is missing).
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// CPU share in percent of one core between two readings `seconds` apart.
pub fn cpu_percent(before: CpuTicks, after: CpuTicks, seconds: f64, ticks_per_sec: u64) -> f64 {
    if seconds <= 0.0 {
        return f64::NAN;
    }
    let d = after.total().saturating_sub(before.total()) as f64;
    d / ticks_per_sec as f64 / seconds * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_status() {
        let s = "Name:\tcrossdock\nVmPeak:\t  20000 kB\nVmRSS:\t    7424 kB\nRssAnon:\t 3000 kB\n";
        assert_eq!(parse_rss_kib(s), Some(7424));
        assert_eq!(parse_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn other_kib_fields_are_read_by_their_whole_name() {
        let s = "VmHWMx:\t1 kB\nVmHWM:\t   9100 kB\nVmRSS:\t7424 kB\n";
        assert_eq!(parse_status_kib(s, "VmHWM"), Some(9100));
        assert_eq!(parse_status_kib(s, "VmRSS"), Some(7424));
        assert_eq!(parse_status_kib(s, "VmPeak"), None);
    }

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let stat = "4242 (cross dock) (x)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 37 12 5 3 20 0 9 0 123 456 789";
        let t = parse_stat(stat).unwrap();
        assert_eq!(
            t,
            CpuTicks {
                utime: 37,
                stime: 12,
                cutime: 5,
                cstime: 3
            }
        );
        assert_eq!(t.own(), 49);
        assert_eq!(t.total(), 57);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let a = CpuTicks {
            utime: 100,
            stime: 0,
            cutime: 0,
            cstime: 0,
        };
        let b = CpuTicks {
            utime: 130,
            stime: 10,
            cutime: 10,
            cstime: 0,
        };
        // 50 ticks at 100/s = 0.5 s of CPU in 10 s = 5 %.
        assert!((cpu_percent(a, b, 10.0, 100) - 5.0).abs() < 1e-9);
        assert!(cpu_percent(a, b, 0.0, 100).is_nan());
    }

    #[test]
    fn this_process_can_be_read() {
        let r = read(std::process::id()).unwrap();
        assert!(r.rss_kib > 0);
        assert!(clock_ticks() > 0);
    }
}
