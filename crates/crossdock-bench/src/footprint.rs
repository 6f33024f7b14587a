//! F1: the agent's footprint, resident memory and CPU share, sampled from `/proc` once a second: while
//! idle (nothing changes on the host) and during churn (containers starting and stopping, which makes
//! Docker emit events the agent reacts to). CPU counts the agent's own time and that of the child
//! processes it waited for (iptables runs as a child).

use crate::procstat::{self, Reading};
use crate::report::{num, Figure, Target};
use crate::stats::summarize;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Readings of one process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    pub pid: u32,
    /// (seconds since the sampler started, reading)
    pub samples: Vec<(f64, Reading)>,
    /// Set when the process went away during sampling.
    pub gone: bool,
}

impl Series {
    pub fn rss_max_mib(&self) -> Option<f64> {
        self.samples
            .iter()
            .map(|(_, r)| r.rss_kib)
            .max()
            .map(|k| k as f64 / 1024.0)
    }

    pub fn rss_median_mib(&self) -> Option<f64> {
        let v: Vec<f64> = self
            .samples
            .iter()
            .map(|(_, r)| r.rss_kib as f64 / 1024.0)
            .collect();
        summarize(&v).map(|s| s.median)
    }

    /// CPU share (percent of one core) between the first and the last sample.
    pub fn cpu_percent(&self, ticks_per_sec: u64) -> Option<f64> {
        let (t0, a) = self.samples.first()?;
        let (t1, b) = self.samples.last()?;
        (t1 > t0).then(|| procstat::cpu_percent(a.ticks, b.ticks, t1 - t0, ticks_per_sec))
    }

    pub fn seconds(&self) -> f64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        }
    }
}

/// Samples processes on a thread until stopped.
#[derive(Debug)]
pub struct Sampler {
    started: Instant,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Series>>>,
}

impl Sampler {
    pub fn start(procs: Vec<(String, u32)>, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            let mut series: Vec<Series> = procs
                .into_iter()
                .map(|(label, pid)| Series {
                    label,
                    pid,
                    ..Series::default()
                })
                .collect();
            loop {
                let t = started.elapsed().as_secs_f64();
                for s in series.iter_mut().filter(|s| !s.gone) {
                    match procstat::read(s.pid) {
                        Ok(r) => s.samples.push((t, r)),
                        Err(_) => s.gone = true,
                    }
                }
                let next = started + every.mul_f64((t / every.as_secs_f64()).floor() + 1.0);
                while Instant::now() < next {
                    if flag.load(Ordering::Relaxed) {
                        return series;
                    }
                    std::thread::sleep(
                        Duration::from_millis(50)
                            .min(next.saturating_duration_since(Instant::now())),
                    );
                }
            }
        });
        Sampler {
            started,
            stop,
            handle: Some(handle),
        }
    }

    /// Takes one last reading and returns everything.
    pub fn stop(mut self) -> Vec<Series> {
        self.stop.store(true, Ordering::Relaxed);
        let mut series = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        // A final reading so the CPU window ends now, not at the last whole period.
        let t = self.started.elapsed().as_secs_f64();
        for s in series.iter_mut().filter(|s| !s.gone) {
            if let Ok(r) = procstat::read(s.pid) {
                s.samples.push((t, r));
            }
        }
        series
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One phase (idle or churn) of the footprint measurement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub series: Vec<Series>,
    /// Containers started and removed during the phase.
    pub churn_containers: usize,
    pub ticks_per_sec: u64,
    pub error: Option<String>,
}

/// The PIDs of the lab's agents (h1, h2, ...), those that run.
pub fn agent_pids(lab: &crossdock_lab::lab::LabState) -> Vec<(String, u32)> {
    lab.hosts
        .iter()
        .filter_map(|h| crossdock_lab::lab::agent_pid(h).map(|p| (h.name.clone(), p)))
        .collect()
}

/// Runs the docker CLI against a lab host's dockerd (checked).
fn docker(host: &crossdock_lab::HostState, args: &[&str]) -> Result<()> {
    let docker_host = host.docker_host.as_deref().unwrap_or_default();
    let mut cmd = crossdock_lab::dockerd::docker_command(docker_host);
    cmd.args(args).stdin(std::process::Stdio::null());
    crate::proc::run_checked(cmd, &format!("docker {} on {}", args.join(" "), host.name))?;
    Ok(())
}

/// Containers start and stop on the lab's Docker hosts for `duration` (at most 3 alive per host)
/// while the agents are sampled.
pub fn churn(
    lab: &crossdock_lab::lab::LabState,
    duration: Duration,
    check: &dyn Fn() -> Result<()>,
) -> Phase {
    let mut phase = Phase {
        name: "churn".into(),
        ticks_per_sec: procstat::clock_ticks(),
        ..Phase::default()
    };
    let sampler = Sampler::start(agent_pids(lab), Duration::from_secs(1));
    let started = Instant::now();
    let hosts: Vec<&crossdock_lab::HostState> = lab
        .hosts
        .iter()
        .filter(|h| h.docker_host.is_some())
        .collect();
    let mut alive: Vec<(usize, String)> = Vec::new();
    let mut k = 0usize;
    let result = (|| -> Result<()> {
        if hosts.is_empty() {
            anyhow::bail!("the lab has no Docker hosts to churn containers on");
        }
        while started.elapsed() < duration {
            check()?;
            let host = k % hosts.len();
            let name = format!("churn-{k}");
            docker(
                hosts[host],
                &[
                    "run",
                    "-d",
                    "--name",
                    &name,
                    crossdock_lab::dockerd::BUSYBOX_IMAGE,
                    "sleep",
                    "600",
                ],
            )?;
            alive.push((host, name));
            k += 1;
            if alive.len() > 3 * hosts.len() {
                let (h, n) = alive.remove(0);
                docker(hosts[h], &["rm", "-f", &n])?;
            }
        }
        Ok(())
    })();
    for (h, n) in alive.drain(..) {
        let _ = docker(hosts[h], &["rm", "-f", &n]);
    }
    phase.series = sampler.stop();
    phase.churn_containers = k;
    if let Err(e) = result {
        phase.error = Some(format!("{e:#}"));
    }
    phase
}

/// F1 figures from the idle and churn phases.
pub fn figures(idle: Option<&Phase>, churn: Option<&Phase>) -> Vec<Figure> {
    let mut out = Vec::new();
    for (phase, name) in [(idle, "idle"), (churn, "churn")] {
        let Some(p) = phase else { continue };
        let rss = p
            .series
            .iter()
            .filter_map(Series::rss_max_mib)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let cpus: Vec<f64> = p
            .series
            .iter()
            .filter_map(|s| s.cpu_percent(p.ticks_per_sec))
            .collect();
        let cpu_max = cpus
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let secs = p.series.iter().map(Series::seconds).fold(0.0, f64::max);
        let per_agent: Vec<String> = p
            .series
            .iter()
            .map(|s| {
                format!(
                    "{}: RSS max {} MiB, CPU {} %{}",
                    s.label,
                    s.rss_max_mib().map(num).unwrap_or("n/a".into()),
                    s.cpu_percent(p.ticks_per_sec)
                        .map(num)
                        .unwrap_or("n/a".into()),
                    if s.gone {
                        " (exited during the phase)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let mut detail = format!("{} s; {}", num(secs), per_agent.join("; "));
        if p.churn_containers > 0 {
            detail.push_str(&format!(
                "; {} containers started and removed",
                p.churn_containers
            ));
        }
        if let Some(e) = &p.error {
            detail.push_str(&format!("; ERROR {e}"));
        }
        out.push(
            Figure::new(
                "F1",
                &format!("agent RSS, {name} (max over agents)"),
                rss,
                "MiB",
                Target::AtMost(20.0),
            )
            .detail(detail.clone()),
        );
        let cpu_target = if name == "idle" {
            Target::Below(0.1)
        } else {
            Target::None
        };
        out.push(
            Figure::new(
                "F1",
                &format!("agent CPU, {name} (max over agents)"),
                cpu_max,
                "%",
                cpu_target,
            )
            .detail(format!(
                "{} s, own + waited-for children, % of one core",
                num(secs)
            )),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procstat::CpuTicks;

    fn reading(rss_kib: u64, ticks: u64) -> Reading {
        Reading {
            rss_kib,
            ticks: CpuTicks {
                utime: ticks,
                ..CpuTicks::default()
            },
        }
    }

    #[test]
    fn series_give_rss_and_cpu_over_their_window() {
        let s = Series {
            label: "h1".into(),
            pid: 1,
            samples: vec![
                (0.0, reading(8192, 100)),
                (50.0, reading(10240, 102)),
                (100.0, reading(9216, 105)),
            ],
            gone: false,
        };
        assert_eq!(s.rss_max_mib(), Some(10.0));
        assert_eq!(s.rss_median_mib(), Some(9.0));
        // 5 ticks at 100/s over 100 s = 0.05 %
        assert!((s.cpu_percent(100).unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(s.seconds(), 100.0);
        assert_eq!(Series::default().cpu_percent(100), None);
    }

    #[test]
    fn figures_take_the_worst_agent() {
        let mk = |label: &str, rss: u64, ticks: u64| Series {
            label: label.into(),
            pid: 1,
            samples: vec![(0.0, reading(rss, 0)), (300.0, reading(rss, ticks))],
            gone: false,
        };
        let idle = Phase {
            name: "idle".into(),
            series: vec![mk("h1", 7 * 1024, 15), mk("h2", 9 * 1024, 60)],
            ticks_per_sec: 100,
            ..Phase::default()
        };
        let f = figures(Some(&idle), None);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].value, Some(9.0));
        assert_eq!(f[0].met(), Some(true));
        // h2: 60 ticks = 0.6 s in 300 s = 0.2 %
        assert!((f[1].value.unwrap() - 0.2).abs() < 1e-9);
        assert_eq!(f[1].met(), Some(false));
    }

    #[test]
    fn the_sampler_reads_this_process_until_stopped() {
        let sampler = Sampler::start(
            vec![("me".into(), std::process::id())],
            Duration::from_millis(20),
        );
        let series = sampler.stop();
        assert_eq!(series.len(), 1);
        assert!(!series[0].samples.is_empty());
        assert!(!series[0].gone);
        let gone = Sampler::start(
            vec![("nobody".into(), u32::MAX - 1)],
            Duration::from_millis(20),
        )
        .stop();
        assert!(gone[0].gone);
    }
}
