//! Helpers shared by the root tests that run `crossdock doctor --json` in a namespace and compare
//! its verdicts with a baseline.
#![allow(dead_code)]

use crossdock_doctor::model::Status;
use crossdock_hostnet::rules::POSTROUTING_CHAIN;
use crossdock_lab::netns::Netns;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

/// Runs `cmd` (a doctor invocation with `--json`) and returns the report, checking that the exit
/// status matches the report's.
pub fn doctor_json(mut cmd: Command) -> Value {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run doctor");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        v["exit_code"].as_u64().map(|c| c as i32),
        "exit status matches the report"
    );
    v
}

/// id -> (status, the check's JSON).
pub fn statuses(v: &Value) -> BTreeMap<String, (String, Value)> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_string(),
                (c["status"].as_str().unwrap().to_string(), c.clone()),
            )
        })
        .collect()
}

/// The checks that depend on `id`, directly or not.
pub fn dependents(id: &str) -> Vec<String> {
    let defs = crossdock_doctor::checks::all();
    let mut out: Vec<String> = Vec::new();
    let mut frontier = vec![id.to_string()];
    while let Some(cur) = frontier.pop() {
        for d in &defs {
            if d.depends_on.contains(&cur.as_str()) && !out.contains(&d.id.to_string()) {
                out.push(d.id.to_string());
                frontier.push(d.id.to_string());
            }
        }
    }
    out
}

/// Asserts `id` has `status` with a fix containing `fix`, and that every other check that moved from
/// the baseline is a dependent of `id`, held back naming it. Returns the check.
pub fn only(base: &Value, now: &Value, id: &str, status: Status, fix: &str) -> Value {
    let b = statuses(base);
    let n = statuses(now);
    let (s, check) = &n[id];
    assert_eq!(s, status.as_str(), "{id}: {check:#}");
    let fix_text = check["fix"].as_str().unwrap_or_default();
    assert!(
        fix_text.contains(fix),
        "{id}: fix `{fix_text}` lacks `{fix}`"
    );
    let deps = dependents(id);
    for (other, (s2, c2)) in &n {
        if other == id || b[other].0 == *s2 {
            continue;
        }
        assert!(
            deps.contains(other),
            "{other} moved {} -> {s2} but does not depend on {id}: {c2:#}",
            b[other].0
        );
        if status == Status::Fail {
            assert_eq!(s2, "skip", "{other}");
            assert_eq!(c2["blocked_by"], id, "{other}");
        }
    }
    check.clone()
}

/// Asserts the report's non-ok checks are exactly `expected` (id, status).
pub fn not_ok(v: &Value, expected: &[(&str, &str)]) {
    let got: Vec<(String, String)> = statuses(v)
        .into_iter()
        .filter(|(_, (s, _))| s != "ok")
        .map(|(id, (s, _))| (id, s))
        .collect();
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "{v:#}");
}

/// A RETURN inside CROSSDOCK-POSTROUTING is handed back to Docker's MASQUERADE by the kernel
/// (tests/kernel_agreement.rs); crossdock-hostnet first wrote the exemption that way. The root tests
/// make sure their baseline has the ACCEPT that works (a no-op when the agent already wrote it), so
/// that it is a host where cluster traffic really keeps its source.
pub fn make_nat_exemption_final(ns: &Netns) {
    let dump = ns
        .exec_stdout(&["iptables", "-t", "nat", "-S", POSTROUTING_CHAIN])
        .unwrap();
    for (i, line) in dump.lines().filter(|l| l.starts_with("-A ")).enumerate() {
        if line.ends_with("-j RETURN") {
            let spec = line
                .trim_start_matches(&format!("-A {POSTROUTING_CHAIN} "))
                .replace("-j RETURN", "-j ACCEPT")
                .replace('"', "");
            let mut argv = vec![
                "iptables".to_string(),
                "-t".into(),
                "nat".into(),
                "-R".into(),
                POSTROUTING_CHAIN.into(),
                (i + 1).to_string(),
            ];
            argv.extend(spec.split_whitespace().map(String::from));
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            ns.exec(&argv).unwrap();
        }
    }
}
