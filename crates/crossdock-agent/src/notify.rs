//! What the daemon tells its supervisor: ready, the one-line status, watchdog pings, stopping.
//!
//! Behind a small trait so the daemon loop is tested without systemd: [`Systemd`] speaks the
//! `sd_notify` protocol, [`Recorder`] keeps what was said for assertions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::AgentState;

/// One thing said to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// `READY=1` with a first status line.
    Ready(String),
    /// `STATUS=...`.
    Status(String),
    /// `WATCHDOG=1`.
    Watchdog,
    /// `STOPPING=1`.
    Stopping,
}

/// The supervisor (systemd, or a recorder in tests).
pub trait Notifier: Send + Sync {
    /// Says one thing.
    fn note(&self, note: Note);
    /// How often to ping the watchdog (`None`: no watchdog).
    fn watchdog_period(&self) -> Option<Duration>;
}

/// systemd through `$NOTIFY_SOCKET` (a no-op when the agent is not run by systemd).
#[derive(Debug, Default, Clone, Copy)]
pub struct Systemd;

impl Notifier for Systemd {
    fn note(&self, note: Note) {
        use sd_notify::NotifyState as S;
        let _ = match &note {
            Note::Ready(text) => sd_notify::notify(false, &[S::Ready, S::Status(text)]),
            Note::Status(text) => sd_notify::notify(false, &[S::Status(text)]),
            Note::Watchdog => sd_notify::notify(false, &[S::Watchdog]),
            Note::Stopping => sd_notify::notify(false, &[S::Stopping]),
        };
    }

    fn watchdog_period(&self) -> Option<Duration> {
        let mut usec = 0u64;
        // Ping at half the timeout systemd set.
        sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
    }
}

/// Keeps every note (tests).
#[derive(Debug, Default)]
pub struct Recorder {
    notes: Mutex<Vec<Note>>,
    watchdog: Option<Duration>,
}

impl Recorder {
    /// A recorder that asks for watchdog pings every `period`.
    pub fn with_watchdog(period: Duration) -> Self {
        Self {
            notes: Mutex::default(),
            watchdog: Some(period),
        }
    }

    /// What was said so far.
    pub fn notes(&self) -> Vec<Note> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Notifier for Recorder {
    fn note(&self, note: Note) {
        self.notes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(note);
    }
    fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }
}

/// Keeps the supervisor's status line in step with the agent's health summary
/// ([`AgentState::summary_line`]), sending only when the text changes. The host loop and the
/// route loop publish through one of these, so neither repeats what the other already sent.
pub struct StatusLine {
    notifier: Arc<dyn Notifier>,
    last: Mutex<Option<String>>,
}

impl StatusLine {
    /// Publishes through `notifier`.
    pub fn new(notifier: Arc<dyn Notifier>) -> Self {
        Self {
            notifier,
            last: Mutex::new(None),
        }
    }

    /// Records `text` as shown; true when it differs from what is shown now.
    pub fn changed(last: &mut Option<String>, text: &str) -> bool {
        if last.as_deref() == Some(text) {
            return false;
        }
        *last = Some(text.to_string());
        true
    }

    /// Sends the current summary if it changed. The summary is taken and sent while holding the
    /// line, so two loops publishing at once cannot leave an older text showing.
    pub fn publish(&self, state: &Mutex<AgentState>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let text = state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary_line();
        if Self::changed(&mut last, &text) {
            tracing::debug!(status = %text, "supervisor status");
            self.notifier.note(Note::Status(text));
        }
    }

    /// The text shown now.
    pub fn shown(&self) -> Option<String> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for StatusLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusLine")
            .field("last", &self.shown())
            .finish_non_exhaustive()
    }
}
