//! The check model: what one diagnosis says, and how checks that depend on a failed one are held back.
//!
//! Why dependencies are explicit: when Docker is unreachable, every check that needs Docker's subnet
//! would fail too, and a table of twenty red lines hides the one thing to fix. Each check names the
//! checks it needs; when one of them failed (or was itself held back), the check is not run and is
//! reported `skip` with "not checked: <root> failed", so breaking one thing names that one check.
//! The same goes for a check that does not apply here (no cloud provider): its dependents are skipped
//! naming it and its reason once ("not checked: <root> was skipped (<reason>)"), never a chain of
//! reasons, and the table shows the whole group on one line under it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Checked, and as it should be.
    Ok,
    /// Works, but risky or about to break (a security hole, an expiring credential, a nearly full table).
    Warn,
    /// Broken: traffic between hosts' containers will not flow (or not with container source IPs).
    Fail,
    /// Not checked: a dependency failed, or the check does not apply here.
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One diagnosis as reported: stable id, what was looked at, the verdict, the evidence and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier, `<area>.<thing>` (e.g. `firewall.forward-chain`); scripts key on it.
    pub id: String,
    /// One line saying what is checked.
    pub title: String,
    pub status: Status,
    /// What was seen: values, rule positions, API answers.
    pub evidence: String,
    /// The exact action that repairs it (set for `warn` and `fail`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Checks this one needs to pass first.
    pub depends_on: Vec<String>,
    /// For a check held back by a failure: the failed check at the root of the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_by: Option<String>,
    /// For a check not run because a check it needs does not apply here: that check, at the root of
    /// the chain (whose evidence says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped_by: Option<String>,
}

/// What a check's logic returns; the runner adds id, title and dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub evidence: String,
    pub fix: Option<String>,
}

impl Outcome {
    pub fn ok(evidence: impl Into<String>) -> Self {
        Self {
            status: Status::Ok,
            evidence: evidence.into(),
            fix: None,
        }
    }
    pub fn warn(evidence: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Warn,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
    pub fn fail(evidence: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
    /// Does not apply here (e.g. no cloud provider configured); not a failure.
    pub fn skip(reason: impl Into<String>) -> Self {
        Self {
            status: Status::Skip,
            evidence: reason.into(),
            fix: None,
        }
    }
}

/// A check's logic over some facts `F`.
pub type CheckFn<F> = Box<dyn Fn(&F) -> Outcome + Send + Sync>;

/// A check definition: identity, dependencies and logic.
pub struct CheckDef<F> {
    pub id: &'static str,
    pub title: &'static str,
    pub depends_on: &'static [&'static str],
    pub run: CheckFn<F>,
}

impl<F> CheckDef<F> {
    pub fn new(
        id: &'static str,
        title: &'static str,
        depends_on: &'static [&'static str],
        run: impl Fn(&F) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        Self {
            id,
            title,
            depends_on,
            run: Box::new(run),
        }
    }
}

impl<F> fmt::Debug for CheckDef<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckDef")
            .field("id", &self.id)
            .field("depends_on", &self.depends_on)
            .finish()
    }
}

/// Runs `defs` in order over `facts`. A check whose dependency failed, or was held back by a failure,
/// is not run: it is reported `skip` naming the failed root. A dependency skipped because it does not
/// apply skips its dependents the same way, naming it. Dependencies must be defined earlier in `defs`
/// (see [`validate_defs`]); an unknown one is treated as failed so a wiring mistake is visible.
pub fn run_checks<F>(defs: &[CheckDef<F>], facts: &F) -> Vec<Check> {
    let mut done: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out: Vec<Check> = Vec::with_capacity(defs.len());
    for def in defs {
        // (evidence, failed root) of a failure upstream; (evidence, skipped root) of a skip upstream.
        let mut held: Option<(String, Option<String>)> = None;
        let mut skipped: Option<(String, String)> = None;
        for dep in def.depends_on {
            let Some(&i) = done.get(dep) else {
                held = Some((
                    format!("not checked: dependency {dep} is not defined (a doctor bug)"),
                    Some((*dep).to_string()),
                ));
                break;
            };
            let d = &out[i];
            match (d.status, &d.blocked_by) {
                (Status::Fail, _) => {
                    held = Some((format!("not checked: {dep} failed"), Some(d.id.clone())));
                    break;
                }
                (Status::Skip, Some(root)) => {
                    held = Some((format!("not checked: {root} failed"), Some(root.clone())));
                    break;
                }
                (Status::Skip, None) if skipped.is_none() => {
                    let root = d.skipped_by.as_ref().map_or(i, |r| done[r.as_str()]);
                    let root = &out[root];
                    skipped = Some((
                        format!("not checked: {} was skipped ({})", root.id, root.evidence),
                        root.id.clone(),
                    ));
                }
                _ => {}
            }
        }
        let (status, evidence, fix, blocked_by, skipped_by) = match (held, skipped) {
            (Some((e, root)), _) => (Status::Skip, e, None, root, None),
            (None, Some((e, root))) => (Status::Skip, e, None, None, Some(root)),
            (None, None) => {
                let o = (def.run)(facts);
                (o.status, o.evidence, o.fix, None, None)
            }
        };
        done.insert(def.id, out.len());
        out.push(Check {
            id: def.id.to_string(),
            title: def.title.to_string(),
            status,
            evidence,
            fix,
            depends_on: def.depends_on.iter().map(|s| s.to_string()).collect(),
            blocked_by,
            skipped_by,
        });
    }
    out
}

/// Wiring errors in a definition list: duplicate ids, dependencies not defined earlier.
pub fn validate_defs<F>(defs: &[CheckDef<F>]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for def in defs {
        for dep in def.depends_on {
            if !seen.contains(dep) {
                problems.push(format!(
                    "{} depends on {dep}, not defined before it",
                    def.id
                ));
            }
        }
        if !seen.insert(def.id) {
            problems.push(format!("{} is defined twice", def.id));
        }
    }
    problems
}

/// Counts per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Summary {
    pub fn of(checks: &[Check]) -> Self {
        let mut s = Summary::default();
        for c in checks {
            match c.status {
                Status::Ok => s.ok += 1,
                Status::Warn => s.warn += 1,
                Status::Fail => s.fail += 1,
                Status::Skip => s.skip += 1,
            }
        }
        s
    }

    /// The process exit status: 0 all ok, 1 warnings, 2 failures.
    pub fn exit_code(&self) -> u8 {
        if self.fail > 0 {
            2
        } else if self.warn > 0 {
            1
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F {
        a: Status,
        b: Status,
    }

    fn outcome(s: Status) -> Outcome {
        match s {
            Status::Ok => Outcome::ok("fine"),
            Status::Warn => Outcome::warn("meh", "do x"),
            Status::Fail => Outcome::fail("broken", "do y"),
            Status::Skip => Outcome::skip("n/a here"),
        }
    }

    fn defs() -> Vec<CheckDef<F>> {
        vec![
            CheckDef::new("a", "A", &[], |f: &F| outcome(f.a)),
            CheckDef::new("b", "B", &["a"], |f: &F| outcome(f.b)),
            CheckDef::new("c", "C", &["b"], |_| Outcome::ok("c ran")),
            CheckDef::new("d", "D", &[], |_| Outcome::ok("independent")),
        ]
    }

    fn statuses(checks: &[Check]) -> Vec<(String, Status)> {
        checks.iter().map(|c| (c.id.clone(), c.status)).collect()
    }

    #[test]
    fn failure_holds_back_dependents_transitively_naming_the_root() {
        let checks = run_checks(
            &defs(),
            &F {
                a: Status::Fail,
                b: Status::Ok,
            },
        );
        assert_eq!(
            statuses(&checks),
            vec![
                ("a".into(), Status::Fail),
                ("b".into(), Status::Skip),
                ("c".into(), Status::Skip),
                ("d".into(), Status::Ok)
            ]
        );
        assert_eq!(checks[1].evidence, "not checked: a failed");
        assert_eq!(checks[2].evidence, "not checked: a failed");
        assert_eq!(checks[2].blocked_by.as_deref(), Some("a"));
        assert_eq!(checks[0].fix.as_deref(), Some("do y"));
        assert_eq!(checks[1].fix, None);
    }

    #[test]
    fn warnings_do_not_hold_back_and_not_applicable_skips_propagate_without_blame() {
        let checks = run_checks(
            &defs(),
            &F {
                a: Status::Warn,
                b: Status::Skip,
            },
        );
        assert_eq!(checks[1].status, Status::Skip);
        assert_eq!(checks[1].blocked_by, None);
        assert_eq!(checks[2].status, Status::Skip);
        assert_eq!(checks[2].evidence, "not checked: b was skipped (n/a here)");
        assert_eq!(checks[2].blocked_by, None);
        assert_eq!(checks[2].skipped_by.as_deref(), Some("b"));
        assert_eq!(checks[1].skipped_by, None, "b is the root: its own reason");
        assert_eq!(Summary::of(&checks).exit_code(), 1);
    }

    #[test]
    fn a_chain_of_skips_names_the_root_and_its_reason_once() {
        let defs: Vec<CheckDef<F>> = vec![
            CheckDef::new("cloud", "C", &[], |_| Outcome::skip("provider none")),
            CheckDef::new("creds", "K", &["cloud"], |_| Outcome::ok("x")),
            CheckDef::new("perm", "P", &["creds"], |_| Outcome::ok("x")),
            CheckDef::new("quota", "Q", &["perm"], |_| Outcome::ok("x")),
        ];
        let checks = run_checks(
            &defs,
            &F {
                a: Status::Ok,
                b: Status::Ok,
            },
        );
        for c in &checks[1..] {
            assert_eq!(c.evidence, "not checked: cloud was skipped (provider none)");
            assert_eq!(c.skipped_by.as_deref(), Some("cloud"));
        }
    }

    #[test]
    fn exit_codes() {
        let ok = run_checks(
            &defs(),
            &F {
                a: Status::Ok,
                b: Status::Ok,
            },
        );
        assert_eq!(Summary::of(&ok).exit_code(), 0);
        assert_eq!(ok[2].evidence, "c ran");
        let bad = run_checks(
            &defs(),
            &F {
                a: Status::Ok,
                b: Status::Fail,
            },
        );
        assert_eq!(
            Summary::of(&bad),
            Summary {
                ok: 2,
                warn: 0,
                fail: 1,
                skip: 1
            }
        );
        assert_eq!(Summary::of(&bad).exit_code(), 2);
    }

    #[test]
    fn wiring_errors_are_found() {
        assert!(validate_defs(&defs()).is_empty());
        let mut d = defs();
        d.swap(0, 1);
        d.push(CheckDef::new("d", "dup", &[], |_| Outcome::ok("")));
        let problems = validate_defs(&d);
        assert_eq!(problems.len(), 2, "{problems:?}");
        // An undefined dependency holds the check back visibly instead of running it.
        let checks = run_checks(
            &d,
            &F {
                a: Status::Ok,
                b: Status::Ok,
            },
        );
        assert_eq!(checks[0].status, Status::Skip);
        assert!(checks[0].evidence.contains("not defined"));
    }
}
