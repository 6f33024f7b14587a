//! Finding and ending the processes and mounts the lab started, and nothing else.
//!
//! The machine also runs a system dockerd and whatever else its owner runs, so every clean-up here is
//! targeted: a PID read from our own pid file is only signalled if its command line still names our
//! directory, helper processes are found by a path that only they carry (their own state directory), and
//! mounts are only those under a directory we own. Signals go through `kill(1)` because the workspace
//! forbids `unsafe` (and so direct `libc::kill`).

use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The NUL-separated command line of `pid`, joined with spaces; `None` if the process is gone.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name, which may itself contain spaces.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// True while `pid` is alive and its command line contains every one of `needles`: how a PID read from
/// a pid file is told apart from an unrelated process that reused it.
pub fn alive_with_cmdline(pid: u32, needles: &[&str]) -> bool {
    alive(pid) && cmdline(pid).is_some_and(|c| needles.iter().all(|n| c.contains(n)))
}

/// The PID written in `pidfile`, if that process is alive and its command line contains every one of
/// `needles` ([`alive_with_cmdline`]); `None` for a missing or unreadable file too.
pub fn pid_from_file(pidfile: &Path, needles: &[&str]) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    alive_with_cmdline(pid, needles).then_some(pid)
}

/// Every PID on the machine.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs (other than this process) whose command line contains `needle`.
pub fn pids_with_cmdline_containing(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter(|&p| cmdline(p).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// PIDs whose cgroup path (any controller) has `segment` as a path component.
pub fn pids_in_cgroup_segment(segment: &str) -> Vec<u32> {
    let marker = format!("/{segment}");
    all_pids()
        .into_iter()
        .filter(|&p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup")).is_ok_and(|c| {
                c.lines().any(|l| {
                    l.split(':').nth(2).is_some_and(|path| {
                        path == marker || path.starts_with(&format!("{marker}/"))
                    })
                })
            })
        })
        .collect()
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid`; a vanished process is not an error.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Polls until every PID in `pids` is gone or `timeout` passes; returns those still alive.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL and wait again. Returns the PIDs that survived even that.
pub fn terminate(pids: &[u32], grace: Duration) -> Vec<u32> {
    if pids.is_empty() {
        return Vec::new();
    }
    for &p in pids {
        signal(p, "TERM");
    }
    let left = wait_gone(pids, grace);
    for &p in &left {
        signal(p, "KILL");
    }
    wait_gone(&left, Duration::from_secs(5))
}

/// SIGKILL right away and wait.
pub fn kill_now(pids: &[u32]) -> Vec<u32> {
    for &p in pids {
        signal(p, "KILL");
    }
    wait_gone(pids, Duration::from_secs(5))
}

/// Decodes the octal escapes (`\040` for a space, ...) of a /proc/self/mountinfo field.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let value = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points in `mountinfo` text equal to `dir` or below it, deepest first.
pub fn mounts_under_in(mountinfo: &str, dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().trim_end_matches('/').to_string();
    let mut found: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_field)
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .collect();
    found.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    found.dedup();
    found
}

/// Mount points of this mount namespace at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| mounts_under_in(&m, dir))
        .unwrap_or_default()
}

/// Lazily unmounts everything at or below `dir` (deepest first), repeating while mounts remain (stacked
/// mounts), within a bound. Returns the mount points still present.
pub fn unmount_under(dir: &Path) -> Result<Vec<String>> {
    for _ in 0..8 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return Ok(mounts);
        }
        for m in &mounts {
            let _ = Command::new("umount")
                .args(["-l", m])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .context("cannot run umount")?;
        }
    }
    Ok(mounts_under(dir))
}

/// Removes cgroup directories named `segment` directly under each v1 controller (and cgroup v2's root),
/// children first; only empty cgroups can be removed, so this never disturbs a live process.
pub fn remove_cgroups(segment: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<std::path::PathBuf> = controllers
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(segment))
        .collect();
    roots.push(Path::new("/sys/fs/cgroup").join(segment));
    for root in roots {
        if root.is_dir() {
            remove_cgroup_tree(&root);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(|e| e.ok()) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_below_a_directory_are_found_deepest_first() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
90 22 0:50 / /var/lib/x/h1/data/overlay2/abc/merged rw - overlay overlay rw
91 22 0:4 net:[4026532] /var/lib/x/h1/exec/netns/1f2e rw - nsfs nsfs rw
92 22 0:51 / /var/lib/x/h10/data rw - tmpfs tmpfs rw
93 22 0:52 / /var/lib/x/h1/with\\040space rw - tmpfs tmpfs rw
94 22 0:53 / /var/lib/x/h1 rw - tmpfs tmpfs rw
";
        let found = mounts_under_in(info, Path::new("/var/lib/x/h1/"));
        assert_eq!(
            found,
            vec![
                "/var/lib/x/h1/data/overlay2/abc/merged".to_string(),
                "/var/lib/x/h1/exec/netns/1f2e".to_string(),
                "/var/lib/x/h1/with space".to_string(),
                "/var/lib/x/h1".to_string(),
            ]
        );
    }

    #[test]
    fn this_process_is_alive_and_its_cmdline_is_readable() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(cmdline(me).is_some_and(|c| !c.is_empty()));
        assert!(!alive(u32::MAX - 1));
    }

    #[test]
    fn a_pid_file_counts_only_while_its_process_matches() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.pid");
        assert_eq!(pid_from_file(&file, &[]), None, "no file");
        std::fs::write(&file, "not a pid").unwrap();
        assert_eq!(pid_from_file(&file, &[]), None);
        let me = std::process::id();
        let exe = cmdline(me).unwrap();
        let first = exe.split(' ').next().unwrap();
        std::fs::write(&file, format!("{me}\n")).unwrap();
        assert_eq!(pid_from_file(&file, &[first]), Some(me));
        assert_eq!(pid_from_file(&file, &[first, "/no/such/needle"]), None);
        std::fs::write(&file, (u32::MAX - 1).to_string()).unwrap();
        assert_eq!(pid_from_file(&file, &[]), None, "a process that is gone");
        assert!(alive_with_cmdline(me, &[]));
        assert!(!alive_with_cmdline(me, &["/no/such/needle"]));
    }

    #[test]
    fn terminate_ends_a_child_process() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        // A child stays a zombie until reaped; reap it from another thread as it exits.
        let reaper = std::thread::spawn(move || child.wait());
        assert!(terminate(&[pid], Duration::from_secs(5)).is_empty());
        assert!(!reaper.join().unwrap().unwrap().success());
    }
}
