//! Output: a table for people, JSON for scripts.
//!
//! The table puts the verdict first and the fix on its own line under every warning and failure, so
//! the one line to act on is easy to find; checks held back by a failure, or skipped because a check
//! they need does not apply here, are listed on one line under that check rather than one by one; colour is added only when stdout is a terminal (and
//! `NO_COLOR` is unset), so logs and pipes stay plain. The JSON carries the same checks with stable
//! ids plus the probe, for scripts and bug reports.

use crate::model::{Check, Status, Summary};
use crate::probe::ProbeReport;
use serde::Serialize;
use std::fmt::Write as _;

/// Everything one doctor run reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeReport>,
    pub summary: Summary,
    pub exit_code: u8,
}

impl Report {
    pub fn new(checks: Vec<Check>, probe: Option<ProbeReport>) -> Self {
        let mut summary = Summary::of(&checks);
        if let Some(p) = &probe {
            // A probe that did not get its traffic out counts as a failure of the run.
            if !p.ok {
                summary.fail += 1;
            }
        }
        let exit_code = summary.exit_code();
        Self {
            version: env!("CARGO_PKG_VERSION"),
            checks,
            probe,
            summary,
            exit_code,
        }
    }

    /// A check by id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn paint(s: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn status_cell(s: Status, colour: bool) -> String {
    let (label, code) = match s {
        Status::Ok => ("ok  ", "32"),
        Status::Warn => ("WARN", "33;1"),
        Status::Fail => ("FAIL", "31;1"),
        Status::Skip => ("skip", "2"),
    };
    paint(label, code, colour)
}

/// The human table. `width` is the terminal width used to wrap evidence (0 = no wrapping).
pub fn table(report: &Report, colour: bool, width: usize) -> String {
    let id_w = report
        .checks
        .iter()
        .filter(|c| c.blocked_by.is_none() && c.skipped_by.is_none())
        .map(|c| c.id.len())
        .max()
        .unwrap_or(10)
        .max(5);
    let indent = 4 + 2 + id_w + 2;
    let mut out = String::new();
    let _ = writeln!(out, "{:<4}  {:<id_w$}  EVIDENCE", "", "CHECK");
    for c in &report.checks {
        if c.status == Status::Skip && (c.blocked_by.is_some() || c.skipped_by.is_some()) {
            // Shown once, under the failure that held it back or the skip it follows.
            continue;
        }
        let lines = wrap(&c.evidence, width.saturating_sub(indent));
        let mut first = true;
        for l in lines {
            if first {
                let _ = writeln!(
                    out,
                    "{}  {:<id_w$}  {l}",
                    status_cell(c.status, colour),
                    c.id
                );
                first = false;
            } else {
                let _ = writeln!(out, "{:indent$}{l}", "");
            }
        }
        if let Some(fix) = &c.fix {
            if matches!(c.status, Status::Warn | Status::Fail) {
                let label = paint("fix:", "36", colour);
                let mut first = true;
                for l in wrap(fix, width.saturating_sub(indent + 5)) {
                    if first {
                        let _ = writeln!(out, "{:indent$}{label} {l}", "");
                        first = false;
                    } else {
                        let _ = writeln!(out, "{:indent$}     {l}", "");
                    }
                }
            }
        }
        for (text, group) in [
            (
                "not checked because of this failure",
                held_by(report, c, |h| &h.blocked_by),
            ),
            (
                "not checked for the same reason",
                held_by(report, c, |h| &h.skipped_by),
            ),
        ] {
            if group.is_empty() {
                continue;
            }
            let text = format!("{text} ({}): {}", group.len(), group.join(", "));
            for l in wrap(&text, width.saturating_sub(indent)) {
                let _ = writeln!(out, "{:indent$}{}", "", paint(&l, "2", colour));
            }
        }
    }
    if let Some(p) = &report.probe {
        out.push('\n');
        out.push_str(&p.render(colour));
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\n{} ok, {} warning(s), {} failure(s), {} skipped (exit {})",
        s.ok, s.warn, s.fail, s.skip, report.exit_code
    );
    out
}

/// The ids of the checks whose `root` (blocked_by or skipped_by) is `c`.
fn held_by<'a>(
    report: &'a Report,
    c: &Check,
    root: impl Fn(&Check) -> &Option<String>,
) -> Vec<&'a str> {
    report
        .checks
        .iter()
        .filter(|h| root(h).as_deref() == Some(c.id.as_str()))
        .map(|h| h.id.as_str())
        .collect()
}

/// Greedy word wrap; `width` 0 means one line.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    if width < 20 {
        return vec![text.to_string()];
    }
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, status: Status, fix: Option<&str>) -> Check {
        Check {
            id: id.into(),
            title: "t".into(),
            status,
            evidence: format!("evidence of {id}"),
            fix: fix.map(String::from),
            depends_on: vec![],
            blocked_by: None,
            skipped_by: None,
        }
    }

    #[test]
    fn table_puts_the_fix_under_failures_and_warnings_only() {
        let r = Report::new(
            vec![
                check("a.one", Status::Ok, None),
                check("b.two", Status::Fail, Some("do this")),
                check("c.three", Status::Warn, Some("maybe that")),
                check("d.four", Status::Skip, None),
            ],
            None,
        );
        let t = table(&r, false, 0);
        assert!(!t.contains('\x1b'), "no colour when asked for none");
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].starts_with("ok    a.one"));
        assert!(lines[2].starts_with("FAIL  b.two"));
        assert_eq!(lines[3].trim(), "fix: do this");
        assert!(lines[4].starts_with("WARN  c.three"));
        assert_eq!(lines[5].trim(), "fix: maybe that");
        assert!(lines[6].starts_with("skip  d.four"));
        // A check held back by a failure is listed once, under that failure.
        let mut held = check("e.five", Status::Skip, None);
        held.blocked_by = Some("b.two".into());
        let r2 = Report::new(
            vec![check("b.two", Status::Fail, Some("do this")), held],
            None,
        );
        let t2 = table(&r2, false, 0);
        let l2: Vec<&str> = t2.lines().collect();
        assert_eq!(
            l2[3].trim(),
            "not checked because of this failure (1): e.five"
        );
        assert!(!t2.contains("skip  e.five"));
        assert!(t.contains("1 ok, 1 warning(s), 1 failure(s), 1 skipped (exit 2)"));
        let coloured = table(&r, true, 0);
        assert!(coloured.contains("\x1b[31;1mFAIL\x1b[0m"));
    }

    #[test]
    fn checks_skipped_for_one_reason_are_one_line_under_it() {
        let mut group = vec![check("cloud.metadata", Status::Skip, None)];
        group[0].evidence = "cloud.provider = \"none\"".into();
        for id in [
            "cloud.credentials",
            "cloud.route-table",
            "cloud.route-quota",
        ] {
            let mut c = check(id, Status::Skip, None);
            c.evidence =
                "not checked: cloud.metadata was skipped (cloud.provider = \"none\")".into();
            c.skipped_by = Some("cloud.metadata".into());
            group.push(c);
        }
        let t = table(&Report::new(group, None), false, 0);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[1].starts_with("skip  cloud.metadata  cloud.provider = \"none\""),
            "{t}"
        );
        assert_eq!(
            lines[2].trim(),
            "not checked for the same reason (3): cloud.credentials, cloud.route-table, cloud.route-quota"
        );
        assert!(!t.contains("was skipped"), "{t}");
        assert!(
            t.contains("0 ok, 0 warning(s), 0 failure(s), 4 skipped (exit 0)"),
            "{t}"
        );
    }

    #[test]
    fn json_has_stable_ids_statuses_and_exit_code() {
        let r = Report::new(vec![check("a.one", Status::Warn, Some("x"))], None);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["checks"][0]["id"], "a.one");
        assert_eq!(v["checks"][0]["status"], "warn");
        assert_eq!(v["checks"][0]["fix"], "x");
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["summary"]["warn"], 1);
        assert!(v.get("probe").is_none());
    }

    #[test]
    fn wrapping_keeps_words_whole() {
        let w = wrap("aaaa bbbb cccc dddd eeee ffff gggg", 20);
        assert_eq!(w, vec!["aaaa bbbb cccc dddd", "eeee ffff gggg"]);
        assert_eq!(wrap("short", 0), vec!["short"]);
        assert_eq!(wrap("", 40), vec![""]);
    }
}
