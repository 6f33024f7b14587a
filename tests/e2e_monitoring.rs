//! End to end: the scrape endpoint (`[metrics] listen`) in the lab, root only.
//!
//! h1 runs an agent (real dockerd, iptables, emulated VPC) listening on its private IP with one
//! scraper admitted, h2; h2 and h3 are hosts of the same VPC without agents. Over real TCP between
//! the namespaces: h2 scrapes `/metrics` and `/healthz`, h3 is turned away by the firewall rule the
//! agent keeps (connection refused), `/status` is not served over TCP. A reload moves the port and
//! swaps the scrapers (h3 in, h2 out, the old port closed); a reload naming an address that is not
//! h1's is refused and the listener stays; `--check-config` refuses that file with exit status 2 and
//! prints nothing of the configuration; `--cleanup` removes the scrape port's rules.
//!
//! Every wait polls with a deadline; nothing sleeps to synchronise.

mod common;

use common::*;
use crossdock_lab::lab::{host_ip, wait_for};
use crossdock_lab::testing::root_or_skip;
use crossdock_lab::{procs, DockerVersion, Lab};
use std::time::Duration;

/// From the agent's start (or a reload) to the endpoint answering, with room for a loaded machine.
const LISTEN_BOUND: Duration = Duration::from_secs(60);

/// What one HTTP GET from host `from` got: `Ok((status, body))`, or `Err(curl's message)` when no
/// HTTP answer came (connection refused, timeout).
fn http_get(lab: &Lab, from: usize, url: &str) -> Result<(u16, String), String> {
    let out = lab
        .exec_unchecked(
            from,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "-w",
                "\n%{http_code}",
                url,
            ],
        )
        .expect("curl in the host");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

fn url(port: u16, path: &str) -> String {
    format!("http://{}:{port}{path}", host_ip(1))
}

/// Waits until `from` gets HTTP 200 for `/metrics` on `port`; returns the body.
fn wait_scrape(lab: &Lab, from: usize, port: u16) -> String {
    wait_until(
        lab,
        &format!("h{from} scraping h1:{port}"),
        LISTEN_BOUND,
        || {
            http_get(lab, from, &url(port, "/metrics"))
                .ok()
                .filter(|(code, _)| *code == 200)
                .map(|(_, body)| body)
        },
    )
    .0
}

/// Waits until `from` is refused at once (curl's exit 7, "couldn't connect": a TCP reset, from the
/// REJECT rule or a closed port; not a timeout, not an HTTP answer).
fn wait_refused(lab: &Lab, from: usize, port: u16) -> String {
    let mut last = None;
    let refused = wait_for(LISTEN_BOUND, || {
        let got = http_get(lab, from, &url(port, "/metrics"));
        let refused = got
            .as_ref()
            .err()
            .filter(|e| e.starts_with("curl: (7)"))
            .cloned();
        last = Some(got);
        refused
    });
    refused.unwrap_or_else(|| {
        panic!(
            "h{from} refused by h1:{port}: not within {LISTEN_BOUND:?}; the last answer: {last:?}\n{}",
            diagnosis(lab)
        )
    })
}

/// h1's crossdock rules in the filter table's INPUT side.
fn input_rules(lab: &Lab) -> Vec<String> {
    iptables_save(lab, 1)
        .lines()
        .filter(|l| l.starts_with("-A INPUT") || l.starts_with("-A CROSSDOCK-INPUT"))
        .filter(|l| l.contains("crossdock"))
        .map(String::from)
        .collect()
}

fn set_metrics(lab: &Lab, listen: &str, scrapers: &[String]) {
    edit_agent_config(lab, 1, |c| {
        c.metrics.listen = Some(listen.parse().expect("an address"));
        c.metrics.scrapers = scrapers.iter().map(|s| s.parse().unwrap()).collect();
    });
}

fn reload(lab: &Lab) {
    let pid = agent_pid_of(lab, 1).expect("h1's agent runs");
    procs::signal(pid, "HUP");
}

#[test]
fn e2e_monitoring_the_scrape_endpoint_admits_only_its_scrapers() {
    if !root_or_skip() {
        return;
    }
    let _t = Timer::start("e2e_monitoring_the_scrape_endpoint_admits_only_its_scrapers");
    let mut opts = options(1, DockerVersion::V20);
    opts.static_hosts = 2;
    let (h2, h3) = (format!("{}/32", host_ip(2)), format!("{}/32", host_ip(3)));
    let scrapers = [h2.clone()];
    opts.agent_config = Some(fast_resync(move |i, c| {
        if i == 1 {
            c.metrics.listen = Some(format!("{}:9464", host_ip(1)).parse().unwrap());
            c.metrics.scrapers = scrapers.iter().map(|s| s.parse().unwrap()).collect();
        }
    }));
    let mut lab = up(opts);
    start_agents(&mut lab, &["h1"]);

    // h2 scrapes the same text the socket serves; /healthz answers; /status stays on the socket.
    let body = wait_scrape(&lab, 2, 9464);
    assert!(body.contains("# TYPE crossdock_condition gauge"), "{body}");
    assert!(body.contains("process_resident_memory_bytes "), "{body}");
    let (code, _) = http_get(&lab, 2, &url(9464, "/healthz")).expect("/healthz answers");
    assert!(code == 200 || code == 503, "/healthz: {code}");
    assert_eq!(http_get(&lab, 2, &url(9464, "/status")).unwrap().0, 404);

    // h3 reaches h1 (same vSwitch) but not the port: the agent's rule rejects it.
    wait_until(&lab, "the scrape port's rules on h1", LISTEN_BOUND, || {
        let rules = input_rules(&lab);
        (rules.len() == 3).then_some(rules)
    });
    let rules = input_rules(&lab);
    let head: Vec<&String> = rules
        .iter()
        .filter(|l| l.starts_with("-A INPUT "))
        .collect();
    assert!(head[0].ends_with("-j CROSSDOCK-INPUT"), "{rules:?}");
    assert!(
        head[1].contains("--dport 9464") && head[1].contains("REJECT"),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|l| l.starts_with("-A CROSSDOCK-INPUT ") && l.contains(&format!("-s {h2}"))),
        "{rules:?}"
    );
    wait_refused(&lab, 3, 9464);

    // Reload: another port, h3 in, h2 out; the old port closes.
    set_metrics(
        &lab,
        &format!("{}:9465", host_ip(1)),
        std::slice::from_ref(&h3),
    );
    reload(&lab);
    let body = wait_scrape(&lab, 3, 9465);
    assert!(
        body.contains("crossdock_config_reloads_total{result=\"ok\"} 1"),
        "{body}"
    );
    wait_refused(&lab, 2, 9465);
    wait_refused(&lab, 3, 9464);

    // A file naming an address h1 does not hold: --check-config refuses it (exit 2, only the error),
    // and so does a reload, which keeps the listener.
    set_metrics(&lab, "192.168.1.99:9465", std::slice::from_ref(&h3));
    let config = lab.host(1).agent_config.clone();
    let config = config.to_str().unwrap();
    let out = lab
        .exec_unchecked(1, &[CROSSDOCK, "agent", "--check-config", "-c", config])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "printed on refusal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("metrics.listen: 192.168.1.99 is not an address of this host"),
        "{stderr}"
    );
    reload(&lab);
    wait_until(
        &lab,
        "the bad reload counted as rejected",
        LISTEN_BOUND,
        || {
            let body = http_get(&lab, 3, &url(9465, "/metrics")).ok()?.1;
            body.contains("crossdock_config_reloads_total{result=\"error\"} 1")
                .then_some(())
        },
    );
    assert_eq!(http_get(&lab, 3, &url(9465, "/metrics")).unwrap().0, 200);

    // Stopped and cleaned up: no scrape rule left.
    lab.agent_stop("h1").expect("stopping h1's agent");
    let out = lab
        .exec_unchecked(1, &[CROSSDOCK, "agent", "--cleanup", "-c", config])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(input_rules(&lab), Vec::<String>::new());
    assert!(!iptables_save(&lab, 1).contains("CROSSDOCK-INPUT"));
}
