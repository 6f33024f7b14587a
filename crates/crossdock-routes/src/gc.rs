//! Evidence that a route's next hop is gone, kept across passes.
//!
//! Deleting a cloud route is the dangerous operation, so a crossdock route whose instance is no
//! member is deleted only on positive evidence held over time:
//!
//! - the instance is asked about by id (no tag filter: an untagged instance is not a released one)
//!   in the same call as this host, and the answer must show this host. An answer that does not (an
//!   empty page, a filter the API ignored, a broken proxy) is odd: it proves nothing and resets
//!   nothing, and no route is deleted on it;
//! - the instance must be absent from every such answer for the whole grace period. Any answer that
//!   shows it (stopped, untagged, re-tagged) forgets what was seen.
//!
//! The tracker is pure: time comes in as an argument (a monotonic offset), so the rules are tested
//! without waiting. It lives in memory; an agent that restarts starts the grace period again, which
//! only ever delays a deletion.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::fleet_plan::ReleaseEvidence;

/// An instance listing that cannot serve as evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OddAnswer {
    /// What was wrong with it.
    pub why: String,
}

impl std::fmt::Display for OddAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// When each non-member next hop was first seen released, by instance id.
#[derive(Debug, Clone, Default)]
pub struct ReleaseTracker {
    first_seen: BTreeMap<String, Duration>,
}

impl ReleaseTracker {
    /// Takes in one answer to "which of `asked` (plus this host) exist?": `answered` are the ids
    /// the answer listed. Returns which asked instances are released, and which of those have been
    /// released for at least `grace` (at `now`).
    pub fn observe(
        &mut self,
        self_id: &str,
        asked: &BTreeSet<String>,
        answered: &BTreeSet<String>,
        now: Duration,
        grace: Duration,
    ) -> Result<ReleaseEvidence, OddAnswer> {
        if !answered.contains(self_id) {
            return Err(OddAnswer {
                why: format!(
                    "the instance listing asked for {} ids including this host {self_id} and did not show \
                     this host; it proves nothing about the others",
                    asked.len() + 1
                ),
            });
        }
        // Forget instances no route points at any more, and any instance the answer showed.
        self.first_seen
            .retain(|id, _| asked.contains(id) && !answered.contains(id));
        let mut evidence = ReleaseEvidence::default();
        for id in asked.iter().filter(|id| !answered.contains(*id)) {
            let first = *self.first_seen.entry(id.clone()).or_insert(now);
            evidence.released.insert(id.clone());
            if now.saturating_sub(first) >= grace {
                evidence.due.insert(id.clone());
            }
        }
        Ok(evidence)
    }

    /// When the next released instance reaches its grace period (offset from the same origin as
    /// `now`), if any is waiting.
    pub fn next_due(&self, grace: Duration) -> Option<Duration> {
        self.first_seen.values().map(|first| *first + grace).min()
    }

    /// Since when each waiting instance has been seen released.
    pub fn waiting(&self) -> &BTreeMap<String, Duration> {
        &self.first_seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const GRACE: Duration = Duration::from_secs(300);

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn an_answer_without_this_host_is_no_evidence_and_resets_nothing() {
        let mut t = ReleaseTracker::default();
        let asked = ids(&["i-old"]);
        t.observe("i-me", &asked, &ids(&["i-me"]), at(0), GRACE)
            .unwrap();
        let err = t
            .observe("i-me", &asked, &ids(&[]), at(400), GRACE)
            .unwrap_err();
        assert!(err.why.contains("i-me"), "{err}");
        // The first sighting is kept: a later good answer finds it due.
        let ev = t
            .observe("i-me", &asked, &ids(&["i-me"]), at(400), GRACE)
            .unwrap();
        assert_eq!(ev.due, ids(&["i-old"]));
    }

    #[test]
    fn released_becomes_due_only_after_the_whole_grace_period() {
        let mut t = ReleaseTracker::default();
        let asked = ids(&["i-old"]);
        let me = ids(&["i-me"]);
        let ev = t.observe("i-me", &asked, &me, at(10), GRACE).unwrap();
        assert_eq!(ev.released, ids(&["i-old"]));
        assert!(ev.due.is_empty());
        assert_eq!(t.next_due(GRACE), Some(at(310)));
        let ev = t.observe("i-me", &asked, &me, at(309), GRACE).unwrap();
        assert!(ev.due.is_empty());
        let ev = t.observe("i-me", &asked, &me, at(310), GRACE).unwrap();
        assert_eq!(ev.due, ids(&["i-old"]));
    }

    #[test]
    fn an_instance_seen_again_starts_over() {
        let mut t = ReleaseTracker::default();
        let asked = ids(&["i-x"]);
        t.observe("i-me", &asked, &ids(&["i-me"]), at(0), GRACE)
            .unwrap();
        // Listed again (stopped, untagged): not released.
        let ev = t
            .observe("i-me", &asked, &ids(&["i-me", "i-x"]), at(200), GRACE)
            .unwrap();
        assert!(ev.released.is_empty());
        let ev = t
            .observe("i-me", &asked, &ids(&["i-me"]), at(400), GRACE)
            .unwrap();
        assert_eq!(ev.released, ids(&["i-x"]));
        assert!(ev.due.is_empty(), "the grace period restarted at 400 s");
    }

    #[test]
    fn ids_no_longer_asked_about_are_forgotten() {
        let mut t = ReleaseTracker::default();
        t.observe("i-me", &ids(&["i-a", "i-b"]), &ids(&["i-me"]), at(0), GRACE)
            .unwrap();
        t.observe("i-me", &ids(&["i-b"]), &ids(&["i-me"]), at(10), GRACE)
            .unwrap();
        assert_eq!(
            t.waiting().keys().cloned().collect::<BTreeSet<_>>(),
            ids(&["i-b"])
        );
    }
}
