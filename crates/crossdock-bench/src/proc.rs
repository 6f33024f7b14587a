//! Running the tools of a measurement: commands inside a namespace, children that are killed when the
//! measurement ends (also on error), and servers whose output lines are read with a deadline.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A network namespace to run a tool in: a named one (a lab host) or a process's (a container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ns {
    Path(PathBuf),
    Pid(u32),
}

impl Ns {
    /// `nsenter` into this namespace (network only: the tools come from the root file system).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        match self {
            Ns::Path(p) => {
                cmd.arg(format!("--net={}", p.display()));
            }
            Ns::Pid(pid) => {
                cmd.args(["-t", &pid.to_string(), "-n"]);
            }
        }
        cmd.arg("--").args(argv).stdin(Stdio::null());
        cmd
    }

    /// Runs `argv` here; a non-zero exit is an error quoting its output.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        run_checked(self.command(argv), &argv.join(" "))
    }

    pub fn describe(&self) -> String {
        match self {
            Ns::Path(p) => p.display().to_string(),
            Ns::Pid(pid) => format!("the network namespace of pid {pid}"),
        }
    }
}

/// Runs a command; a non-zero exit becomes an error naming `what` with its stderr and stdout.
pub fn run_checked(mut cmd: Command, what: &str) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{what}`"))?;
    if !out.status.success() {
        bail!(
            "`{what}` failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(out)
}

/// A child process killed (by its own PID) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard { child: Some(child) }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Waits up to `timeout` for the child to exit by itself; kills it after that. True if it exited.
    pub fn wait_or_kill(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if let Some(child) = self.child.as_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => {
                        self.child = None;
                        return true;
                    }
                    Ok(None) if Instant::now() >= deadline => break,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        self.kill();
        false
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child whose stdout lines arrive on a channel, so they can be awaited with a deadline.
#[derive(Debug)]
pub struct LineChild {
    pub guard: ChildGuard,
    lines: Receiver<String>,
    what: String,
}

impl LineChild {
    /// Spawns `cmd` with stdout piped (stderr is inherited: tool errors reach the terminal).
    pub fn spawn(mut cmd: Command, what: &str) -> Result<LineChild> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{what}`"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        Ok(LineChild {
            guard: ChildGuard::new(child),
            lines: rx,
            what: what.to_string(),
        })
    }

    /// The next line, waiting at most `timeout`; an error if the child closed its output or is silent.
    pub fn next_line(&self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(l),
            Err(RecvTimeoutError::Timeout) => bail!(
                "`{}` printed nothing within {:.1} s",
                self.what,
                timeout.as_secs_f64()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("`{}` exited before printing what was expected", self.what)
            }
        }
    }

    /// The next line if one comes within `timeout` (`Ok(None)` if not); an error once the child closed
    /// its output.
    pub fn try_line(&self, timeout: Duration) -> Result<Option<String>> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Ok(Some(l)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                bail!("`{}` exited before printing what was expected", self.what)
            }
        }
    }

    /// Every line until the child closes its output or `timeout` passes.
    pub fn rest(&self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => out.push(l),
                Err(_) => break,
            }
        }
        out
    }
}

/// Polls `f` every `every` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_commands_enter_the_network_namespace_only() {
        let c = Ns::Pid(42).command(&["ip", "link"]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["-t", "42", "-n", "--", "ip", "link"]);
        let c = Ns::Path("/run/netns/x".into()).command(&["ss"]);
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--net=/run/netns/x", "--", "ss"]);
    }

    #[test]
    fn failures_quote_the_command_and_its_output() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo oops >&2; exit 3"]);
        let e = run_checked(c, "sh -c oops").unwrap_err().to_string();
        assert!(
            e.contains("`sh -c oops` failed") && e.contains("oops"),
            "{e}"
        );
    }

    #[test]
    fn lines_arrive_with_deadlines_and_the_child_is_killed_on_drop() {
        let mut c = Command::new("sh");
        c.args(["-c", "echo ready; echo more; exec sleep 30"]);
        let lc = LineChild::spawn(c, "sh").unwrap();
        assert_eq!(lc.next_line(Duration::from_secs(5)).unwrap(), "ready");
        assert_eq!(
            lc.rest(Duration::from_millis(300)),
            vec!["more".to_string()]
        );
        let pid = lc.guard.id();
        drop(lc);
        // killed and reaped: its /proc entry is gone
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn a_silent_child_times_out_and_an_exited_one_says_so() {
        let mut c = Command::new("true");
        c.arg("x");
        let lc = LineChild::spawn(c, "true").unwrap();
        let e = lc
            .next_line(Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("exited"), "{e}");
        let mut c = Command::new("sleep");
        c.arg("30");
        let lc = LineChild::spawn(c, "sleep").unwrap();
        let e = lc
            .next_line(Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(e.contains("printed nothing"), "{e}");
    }

    #[test]
    fn wait_or_kill_reports_whether_the_child_exited() {
        let mut g = ChildGuard::new(Command::new("true").spawn().unwrap());
        assert!(g.wait_or_kill(Duration::from_secs(5)));
        let mut g = ChildGuard::new(Command::new("sleep").arg("30").spawn().unwrap());
        assert!(!g.wait_or_kill(Duration::from_millis(50)));
    }

    #[test]
    fn poll_returns_the_first_some_or_none_at_the_deadline() {
        let mut n = 0;
        assert_eq!(
            poll(Duration::from_secs(5), Duration::from_millis(1), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(
            poll(
                Duration::from_millis(20),
                Duration::from_millis(5),
                || None::<()>
            ),
            None
        );
    }
}
