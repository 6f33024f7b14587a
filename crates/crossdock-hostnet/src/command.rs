//! Running an external program with a deadline: the one command runner of the host side, used by the
//! iptables driver here and by `crossdock doctor` (iptables-save, ip).
//!
//! Why one runner: every caller needs the same four things, and getting any of them wrong hangs or
//! blinds the agent: the child runs as a `tokio::process` child (no async worker blocks on it), it is
//! killed when it outlives its deadline (a program stuck behind someone else's lock must not stall the
//! daemon's health reporting), its stdin is either closed or fed from memory (iptables-restore reads
//! its transaction there), and its output comes back as text with stderr folded onto one line for
//! error messages. What a failure *means* (a lock, a missing binary, a permission problem) is for the
//! caller to say; this module only reports what happened.

use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The command as shown in messages (program words and arguments, quoted where needed).
    pub command: String,
    /// The exit status; -1 when the program was killed by a signal.
    pub code: i32,
    pub stdout: String,
    /// stderr with runs of whitespace (newlines included) folded into single spaces.
    pub stderr: String,
}

impl Output {
    /// Whether the program exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Why a program could not be run to completion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// It could not be started (not installed, not on PATH, not executable).
    #[error("cannot run `{program}`: {message}")]
    Spawn { program: String, message: String },
    /// It did not finish within the deadline and was killed.
    #[error("`{command}` did not finish within {secs} s and was killed")]
    Timeout { command: String, secs: u64 },
}

/// Runs `program` (its first word is the executable, the rest a prefix such as `nsenter --net=X`)
/// followed by `args`, feeding `stdin` if given, and kills it after `limit`.
pub async fn run(
    program: &[String],
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Output, RunError> {
    let Some((exe, prefix)) = program.split_first() else {
        return Err(RunError::Spawn {
            program: String::new(),
            message: "empty command line".into(),
        });
    };
    let words: Vec<&str> = prefix
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    let command = format!("{} {}", quote(exe), join_quoted(&words));
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(prefix)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let spawn_error = |e: std::io::Error| RunError::Spawn {
        program: exe.clone(),
        message: e.to_string(),
    };
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let finished = async {
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits without reading all of its input closes the pipe: its exit
            // status and stderr say why, so a write error here is not the interesting one.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(limit, finished).await {
        Err(_) => {
            return Err(RunError::Timeout {
                command,
                secs: limit.as_secs(),
            })
        }
        Ok(Err(e)) => return Err(spawn_error(e)),
        Ok(Ok(out)) => out,
    };
    Ok(Output {
        command,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: one_line(&String::from_utf8_lossy(&out.stderr)),
    })
}

/// Folds whitespace runs (newlines included) into single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One word as a shell or iptables-restore reads it: double-quoted (with `\` and `"` escaped) when it
/// is empty or holds whitespace or quotes, bare otherwise.
pub fn quote(word: &str) -> String {
    if word.is_empty() || word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        word.to_string()
    }
}

/// Words joined by spaces, each [`quote`]d.
pub fn join_quoted<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(ws: &[&str]) -> Vec<String> {
        ws.iter().map(|w| w.to_string()).collect()
    }

    #[tokio::test]
    async fn output_stdin_and_exit_status_come_back() {
        let out = run(
            &words(&["sh", "-c"]),
            &["cat; echo 'two\n  lines' >&2; exit 3"],
            Some("fed"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(out.stdout, "fed");
        assert_eq!(out.stderr, "two lines");
        assert_eq!(out.code, 3);
        assert!(!out.success());
        assert!(out.command.starts_with("sh -c "), "{}", out.command);
    }

    #[tokio::test]
    async fn a_missing_program_and_a_hung_one_are_told_apart() {
        let e = run(
            &words(&["/nonexistent/crossdock-no-such-program"]),
            &[],
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e}");
        let started = std::time::Instant::now();
        let e = run(
            &words(&["sleep"]),
            &["30"],
            None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RunError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn quoting_round_trips_through_the_save_format_splitter() {
        for w in ["plain", "two words", "", "a \"quoted\" word", "back\\slash"] {
            let line = format!("-A X --comment {}", quote(w));
            assert_eq!(crate::save::split_save_line(&line)[3], w, "{line}");
        }
        assert_eq!(join_quoted(&["-j", "ACCEPT"]), "-j ACCEPT");
    }
}
