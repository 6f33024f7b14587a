//! The figures of a run with their targets, printed as a table, written as markdown and JSON.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What a figure must be to meet its target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
    /// No target: shown for context.
    None,
}

impl Target {
    pub fn met(&self, value: f64) -> Option<bool> {
        if !value.is_finite() {
            return match self {
                Target::None => None,
                _ => Some(false),
            };
        }
        match *self {
            Target::AtLeast(t) => Some(value >= t),
            Target::AtMost(t) => Some(value <= t),
            Target::Below(t) => Some(value < t),
            Target::None => None,
        }
    }

    pub fn show(&self, unit: &str) -> String {
        let u = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        match self {
            Target::AtLeast(t) => format!("≥ {}{u}", num(*t)),
            Target::AtMost(t) => format!("≤ {}{u}", num(*t)),
            Target::Below(t) => format!("< {}{u}", num(*t)),
            Target::None => "—".into(),
        }
    }
}

/// A number with as many decimals as it needs to be read (3 significant digits, at most 3 decimals).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let a = v.abs();
    let d = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    format!("{v:.d$}")
}

/// One reported figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// `D1`, `C2`, ...
    pub id: String,
    pub name: String,
    /// `None` when it could not be measured (see `detail`).
    pub value: Option<f64>,
    pub unit: String,
    pub target: Target,
    /// The value is only a lower bound (the measurement stopped at a deadline first).
    #[serde(default)]
    pub lower_bound: bool,
    /// Spread, the raw parts, or why it is missing.
    pub detail: String,
    /// A second value judged in the same row (a point of a trade-off, where both targets must hold at
    /// once); `lower_bound` applies to it as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub also: Option<Also>,
}

/// The second value of a [`Figure`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Also {
    pub value: Option<f64>,
    pub unit: String,
    pub target: Target,
}

fn value_with_unit(value: Option<f64>, unit: &str, lower_bound: bool) -> String {
    let bound = if lower_bound { "> " } else { "" };
    match value {
        Some(v) if unit.is_empty() => format!("{bound}{}", num(v)),
        Some(v) => format!("{bound}{} {unit}", num(v)),
        None => "n/a".into(),
    }
}

fn met_one(value: Option<f64>, target: Target) -> Option<bool> {
    match (value, target) {
        (_, Target::None) => None,
        (Some(v), t) => t.met(v),
        (None, _) => Some(false),
    }
}

impl Figure {
    pub fn new(id: &str, name: &str, value: Option<f64>, unit: &str, target: Target) -> Figure {
        Figure {
            id: id.into(),
            name: name.into(),
            value: value.filter(|v| v.is_finite()),
            unit: unit.into(),
            target,
            lower_bound: false,
            detail: String::new(),
            also: None,
        }
    }

    /// Adds a second value that must meet its own target for the row to be met.
    pub fn also(mut self, value: Option<f64>, unit: &str, target: Target) -> Figure {
        self.also = Some(Also {
            value: value.filter(|v| v.is_finite()),
            unit: unit.into(),
            target,
        });
        self
    }

    /// Marks the value as a lower bound.
    pub fn lower_bound(mut self, yes: bool) -> Figure {
        self.lower_bound = yes;
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Figure {
        self.detail = detail.into();
        self
    }

    /// `Some(true|false)` against the target (and the second value's, if any: both must hold);
    /// `None` without target. A missing value misses its target.
    pub fn met(&self) -> Option<bool> {
        let first = met_one(self.value, self.target);
        match self.also.as_ref().map(|a| met_one(a.value, a.target)) {
            None | Some(None) => first,
            Some(Some(second)) => Some(first.unwrap_or(true) && second),
        }
    }

    /// Whether a value the row is judged on is missing.
    fn missing(&self) -> bool {
        self.value.is_none() || self.also.as_ref().is_some_and(|a| a.value.is_none())
    }

    pub fn verdict(&self) -> &'static str {
        match self.met() {
            None => "",
            Some(true) => "met",
            Some(false) if self.missing() => "NOT MEASURED",
            Some(false) => "NOT MET",
        }
    }

    pub fn value_text(&self) -> String {
        let first = value_with_unit(self.value, &self.unit, self.lower_bound);
        match &self.also {
            None => first,
            Some(a) => format!(
                "{first}, {}",
                value_with_unit(a.value, &a.unit, self.lower_bound)
            ),
        }
    }

    /// The target, or both targets.
    pub fn target_text(&self) -> String {
        let first = self.target.show(&self.unit);
        match &self.also {
            None => first,
            Some(a) => format!("{first}, {}", a.target.show(&a.unit)),
        }
    }
}

/// A markdown table of figures.
pub fn markdown_table(figures: &[Figure]) -> String {
    let mut s = String::from(
        "| id | figure | value | target | verdict | detail |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            f.id,
            f.name,
            f.value_text(),
            f.target_text(),
            f.verdict(),
            f.detail.replace('|', "\\|").replace('\n', " ")
        );
    }
    s
}

/// The same as plain text for the terminal.
pub fn text_table(figures: &[Figure]) -> String {
    let rows: Vec<[String; 5]> = figures
        .iter()
        .map(|f| {
            [
                f.id.clone(),
                f.name.clone(),
                f.value_text(),
                f.target_text(),
                f.verdict().to_string(),
            ]
        })
        .collect();
    let header = ["id", "figure", "value", "target", "verdict"].map(String::from);
    let mut widths = [0usize; 5];
    for r in std::iter::once(&header).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_decide_met_and_missing_values_miss() {
        assert_eq!(Target::AtLeast(0.97).met(0.97), Some(true));
        assert_eq!(Target::AtLeast(0.97).met(0.969), Some(false));
        assert_eq!(Target::AtMost(2.5).met(2.6), Some(false));
        assert_eq!(Target::Below(0.1).met(0.1), Some(false));
        assert_eq!(Target::Below(0.1).met(0.05), Some(true));
        assert_eq!(Target::None.met(1.0), None);
        let f = Figure::new("D1", "x", None, "", Target::AtLeast(1.0));
        assert_eq!(f.met(), Some(false));
        assert_eq!(f.verdict(), "NOT MEASURED");
        let f = Figure::new("D1", "x", Some(f64::NAN), "", Target::AtLeast(1.0));
        assert_eq!(f.value, None);
        assert_eq!(
            Figure::new("i", "x", Some(3.0), "s", Target::None).verdict(),
            ""
        );
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(num(0.97123), "0.971");
        assert_eq!(num(2.3456), "2.35");
        assert_eq!(num(14.11), "14.1");
        assert_eq!(num(240.4), "240");
        assert_eq!(num(f64::NAN), "n/a");
    }

    #[test]
    fn tables_show_value_target_and_verdict() {
        let figs = vec![
            Figure::new(
                "D1",
                "crossdock / open firewall, 1 stream",
                Some(0.99),
                "",
                Target::AtLeast(0.97),
            )
            .detail("median of 5 paired ratios [0.95–1.01]"),
            Figure::new(
                "C1",
                "agent start → first packet",
                Some(3.1),
                "s",
                Target::AtMost(2.5),
            ),
        ];
        let md = markdown_table(&figs);
        assert!(md.contains("| D1 | crossdock / open firewall, 1 stream | 0.990 | ≥ 0.970 | met | median of 5 paired ratios [0.95–1.01] |"), "{md}");
        assert!(
            md.contains("| C1 | agent start → first packet | 3.10 s | ≤ 2.50 s | NOT MET |"),
            "{md}"
        );
        let lb = Figure::new("C2", "x", Some(1.52), "×", Target::AtMost(1.3)).lower_bound(true);
        assert_eq!(lb.value_text(), "> 1.52 ×");
        assert_eq!(lb.verdict(), "NOT MET");
        let txt = text_table(&figs);
        assert_eq!(txt.lines().count(), 3);
        assert!(txt.lines().nth(2).unwrap().ends_with("NOT MET"));
    }

    #[test]
    fn a_row_with_two_values_is_met_only_when_both_are() {
        let row = |ratio: Option<f64>, calls: Option<f64>| {
            Figure::new("C2 curve", "x", ratio, "×", Target::AtMost(1.3)).also(
                calls,
                "calls/host",
                Target::AtMost(4.0),
            )
        };
        assert_eq!(row(Some(1.2), Some(3.0)).verdict(), "met");
        assert_eq!(row(Some(1.2), Some(9.0)).verdict(), "NOT MET");
        assert_eq!(row(Some(1.5), Some(3.0)).verdict(), "NOT MET");
        assert_eq!(row(Some(1.2), None).verdict(), "NOT MEASURED");
        assert_eq!(row(None, Some(3.0)).verdict(), "NOT MEASURED");
        let r = row(Some(1.2), Some(3.0));
        assert_eq!(r.value_text(), "1.20 ×, 3.00 calls/host");
        assert_eq!(r.target_text(), "≤ 1.30 ×, ≤ 4.00 calls/host");
        assert_eq!(
            row(Some(1.6), Some(30.0)).lower_bound(true).value_text(),
            "> 1.60 ×, > 30.0 calls/host"
        );
        let md = markdown_table(&[r]);
        assert!(
            md.contains(
                "| C2 curve | x | 1.20 ×, 3.00 calls/host | ≤ 1.30 ×, ≤ 4.00 calls/host | met |"
            ),
            "{md}"
        );
        // A row without a second value reads as before.
        let one = Figure::new("C1", "y", Some(2.0), "s", Target::AtMost(2.5));
        assert_eq!(one.target_text(), "≤ 2.50 s");
        assert!(!serde_json::to_string(&one).unwrap().contains("also"));
    }
}
