//! The whole run: which parts, in which order, with which settings; the report it writes.
//!
//! Order (the full run fits in 20 minutes on 2 cores because the 10-minute steady-state window runs in
//! the background while the start-up and storm benchmarks use their own labs):
//! 1. the data-path lab (`bench-dp`: two Docker 20.10 hosts, agents running) and the data path;
//! 2. in the background on that lab: C3 with F1 idle in its first minutes, then F1 churn;
//! 3. in the foreground meanwhile: C1 (fresh `bench-c1` labs), C2 (a `bench-c2` lab per size), then the
//!    C2 trade-off sweep (a `bench-c2` lab per backoff setting, at one size; the agent's defaults are
//!    the main storm of that size, not run again); then fleet mode: C1 with fleet agents, fleet storms
//!    (a `bench-fleet` lab per size) and the scale-in on the lab of its storm;
//! 4. the report: a table on stdout, `results.md`, `results.json`, PNG plots.

use crate::control::{self, Backoff, Bins, C1Sample, C2Result, C3Result, Mode, Timings};
use crate::datapath::{self, Metric, Variant};
use crate::fleet::{self, FleetAgents, FleetStorm, ScaleIn, ScaleInSpec};
use crate::footprint::{self, Phase, Sampler};
use crate::plot::{self, Bar};
use crate::report::{self, num, Figure};
use crate::stats::summarize;
use crate::{check_interrupted, names, procstat};
use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use crossdock_lab::{DockerVersion, Lab, LabOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Minutes and seconds since the run started.
fn clock() -> String {
    let t = START.get_or_init(Instant::now).elapsed().as_secs();
    format!("{:02}:{:02}", t / 60, t % 60)
}

/// A section header with the run's clock.
macro_rules! section {
    ($($t:tt)*) => {
        eprintln!("[{}] {}", clock(), format!($($t)*))
    };
}

/// The labs this benchmark makes, by the parts that make them.
pub const LABS_BY_PART: [(&str, &[&str]); 7] = [
    ("datapath", &["bench-dp"]),
    ("c3", &["bench-dp"]),
    ("f1", &["bench-dp"]),
    ("c1", &["bench-c1"]),
    ("c2", &["bench-c2"]),
    // C1 in fleet mode reuses C1's lab name.
    ("fleet", &[fleet::LAB_NAME, "bench-c1"]),
    ("names", &[names::LAB_NAME, names::RSS_LAB_NAME]),
];

/// The labs the selected parts make: a run removes these first (a stopped run may have left
/// them) and no other, so that `--only names` never removes the lab of a run of another part
/// going on beside it.
pub fn labs_of(parts: &[String]) -> Vec<&'static str> {
    let mut labs: Vec<&'static str> = LABS_BY_PART
        .iter()
        .filter(|(part, _)| parts.iter().any(|p| p == part))
        .flat_map(|(_, labs)| labs.iter().copied())
        .collect();
    labs.sort_unstable();
    labs.dedup();
    labs
}

/// The parts of the full run.
pub const PARTS: [&str; 6] = ["datapath", "c1", "c2", "c3", "f1", "fleet"];
/// Parts run only when named in `--only`: container names (N1–N3; about 1.5 minutes, which the
/// full run's 20-minute budget has no room for).
pub const EXTRA_PARTS: [&str; 1] = ["names"];

/// The scale-in after the fleet storm of 200 hosts: 50 of them released.
pub const FLEET_SCALE_IN_DEFAULT: &str = "200:50";

/// The C2 sweep's backoff settings (write_backoff_ms:write_backoff_max_ms) besides the agent's
/// defaults (500:8000): one shorter and one longer, so the defaults sit between two points.
pub const C2_SWEEP_DEFAULT: &str = "100:2000,2000:30000";

/// `crossdock-bench` options.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Shorter periods and smaller storms, for development (about 5 minutes).
    #[arg(long)]
    pub quick: bool,
    /// Run only these parts (comma-separated): datapath, c1, c2, c3, f1, fleet (fleet mode: C1 with
    /// fleet agents, fleet storms, the scale-in), names (container names N1–N3: only when named here,
    /// the full run leaves it out).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where results.md, results.json and the plots go.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// The crossdock binary (default: the one next to this binary).
    #[arg(long)]
    pub crossdock_bin: Option<PathBuf>,
    /// Data-path rounds (every variant once per round). Default 7 (quick: 2).
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seconds per iperf3 run. Default 2.
    #[arg(long)]
    pub iperf_secs: Option<u64>,
    /// Seconds per RR run. Default 1.
    #[arg(long)]
    pub rr_secs: Option<u64>,
    /// C1 repetitions (fresh labs). Default 5 (quick: 2).
    #[arg(long)]
    pub c1_reps: Option<usize>,
    /// C2 storm sizes. Default 50,100,200 (quick: 10,20).
    #[arg(long, value_delimiter = ',')]
    pub c2_sizes: Vec<usize>,
    /// C2 trade-off sweep: route-write backoff settings FIRST:MAX (the agent's [cloud]
    /// write_backoff_ms:write_backoff_max_ms), comma-separated, a storm of --c2-sweep-hosts hosts each;
    /// the agent's default point is the main storm of that size. Part of c2. Default
    /// "100:2000,2000:30000"; "" or "none" turns the sweep off.
    #[arg(long, value_name = "LIST")]
    pub c2_sweep: Option<String>,
    /// Hosts per storm of the C2 sweep. Default 50 (quick: 10).
    #[arg(long, value_name = "N")]
    pub c2_sweep_hosts: Option<usize>,
    /// Fleet storm sizes (part fleet). Default 50,100,200 (quick: 10,20).
    #[arg(long, value_delimiter = ',')]
    pub fleet_sizes: Vec<usize>,
    /// Fleet scale-in: after the fleet storm of HOSTS hosts (run also when not in --fleet-sizes),
    /// RELEASED of them are released. Default "200:50" (quick: "20:5"); "none" turns it off.
    #[arg(long, value_name = "HOSTS:RELEASED")]
    pub fleet_scale_in: Option<String>,
    /// The fleet agents' [fleet] release_grace_secs (the scale-in's target is this + 60 s). Default 10.
    #[arg(long, value_name = "SECS")]
    pub fleet_grace_secs: Option<u64>,
    /// The fleet agents' [fleet] sweep_interval_secs. Default: the agent's own (60).
    #[arg(long, value_name = "SECS")]
    pub fleet_sweep_secs: Option<u64>,
    /// C3 steady-state period in seconds. Default 600 (quick: 60).
    #[arg(long)]
    pub c3_secs: Option<u64>,
    /// F1 idle period in seconds (inside the C3 window). Default 300 (quick: 60).
    #[arg(long)]
    pub idle_secs: Option<u64>,
    /// F1 churn period in seconds. Default 60 (quick: 15).
    #[arg(long)]
    pub churn_secs: Option<u64>,
}

/// The settings a run used (resolved defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub quick: bool,
    pub parts: Vec<String>,
    pub datapath: datapath::Config,
    pub timings: Timings,
    pub c1_reps: usize,
    pub c2_sizes: Vec<usize>,
    /// The C2 sweep's backoff settings besides the agent's defaults; empty: no sweep.
    #[serde(default)]
    pub c2_sweep: Vec<Backoff>,
    /// Hosts per storm of the C2 sweep.
    #[serde(default)]
    pub c2_sweep_hosts: usize,
    pub c3_secs: u64,
    pub idle_secs: u64,
    pub churn_secs: u64,
    /// Fleet storm sizes (the scale-in's size is stormed too).
    #[serde(default)]
    pub fleet_sizes: Vec<usize>,
    #[serde(default)]
    pub fleet_scale_in: Option<ScaleInSpec>,
    /// The fleet agents' `[fleet]` grace period and sweep interval.
    #[serde(default)]
    pub fleet_agents: FleetAgents,
}

/// Parses `--c2-sweep`: `FIRST:MAX` items, comma-separated; `""` or `none` for no sweep. The agent's
/// defaults are left out (the main storm of the sweep's size is that point).
pub fn parse_sweep(list: &str) -> Result<Vec<Backoff>> {
    let list = list.trim();
    if list.is_empty() || list.eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    let mut out: Vec<Backoff> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let b = Backoff::parse(item).map_err(|e| anyhow!("--c2-sweep: {e:#}"))?;
        if out.contains(&b) {
            bail!("--c2-sweep: {item:?} is listed twice; list each setting once");
        }
        out.push(b);
    }
    out.retain(|b| !b.is_agent_default());
    Ok(out)
}

impl Settings {
    /// The storms the C2 sweep runs: its settings, and the agent's defaults first when no main storm
    /// has the sweep's size; none without a sweep.
    pub fn c2_sweep_runs(&self) -> Vec<Backoff> {
        if self.c2_sweep.is_empty() {
            return Vec::new();
        }
        let default = (!self.c2_sizes.contains(&self.c2_sweep_hosts)).then(Backoff::default);
        default
            .into_iter()
            .chain(self.c2_sweep.iter().copied())
            .collect()
    }
}

impl Options {
    pub fn resolve(&self, bench_exe: PathBuf) -> Result<Settings> {
        let q = self.quick;
        let parts: Vec<String> = if self.only.is_empty() {
            PARTS.iter().map(|s| s.to_string()).collect()
        } else {
            self.only
                .iter()
                .map(|s| s.trim().to_ascii_lowercase())
                .collect()
        };
        let known = |p: &str| PARTS.contains(&p) || EXTRA_PARTS.contains(&p);
        if let Some(bad) = parts.iter().find(|p| !known(p)) {
            bail!(
                "--only: unknown part {bad:?} (parts: {}, {})",
                PARTS.join(", "),
                EXTRA_PARTS.join(", ")
            );
        }
        let settings = Settings {
            quick: q,
            parts,
            datapath: datapath::Config {
                rounds: self.rounds.unwrap_or(if q { 2 } else { 7 }),
                iperf_secs: self.iperf_secs.unwrap_or(2),
                rr_secs: self.rr_secs.unwrap_or(1),
                rr_size: 1,
                bench_exe,
            },
            timings: Timings::default(),
            c1_reps: self.c1_reps.unwrap_or(if q { 2 } else { 5 }),
            c2_sizes: if self.c2_sizes.is_empty() {
                if q {
                    vec![10, 20]
                } else {
                    vec![50, 100, 200]
                }
            } else {
                self.c2_sizes.clone()
            },
            c2_sweep: parse_sweep(self.c2_sweep.as_deref().unwrap_or(C2_SWEEP_DEFAULT))?,
            c2_sweep_hosts: self.c2_sweep_hosts.unwrap_or(if q { 10 } else { 50 }),
            c3_secs: self.c3_secs.unwrap_or(if q { 60 } else { 600 }),
            idle_secs: self.idle_secs.unwrap_or(if q { 60 } else { 300 }),
            churn_secs: self.churn_secs.unwrap_or(if q { 15 } else { 60 }),
            fleet_sizes: if self.fleet_sizes.is_empty() {
                if q {
                    vec![10, 20]
                } else {
                    vec![50, 100, 200]
                }
            } else {
                self.fleet_sizes.clone()
            },
            fleet_scale_in: ScaleInSpec::parse(self.fleet_scale_in.as_deref().unwrap_or(if q {
                "20:5"
            } else {
                FLEET_SCALE_IN_DEFAULT
            }))
            .map_err(|e| anyhow!("--fleet-scale-in: {e:#}"))?,
            fleet_agents: FleetAgents {
                grace_secs: self
                    .fleet_grace_secs
                    .unwrap_or(FleetAgents::default().grace_secs),
                sweep_secs: self
                    .fleet_sweep_secs
                    .unwrap_or(FleetAgents::default().sweep_secs),
            },
        };
        settings
            .fleet_agents
            .check()
            .map_err(|e| anyhow!("--fleet-grace-secs / --fleet-sweep-secs: {e:#}"))?;
        if let Some(n) = settings
            .fleet_sizes
            .iter()
            .find(|n| **n == 0 || **n > crossdock_lab::lab::MAX_HOSTS)
        {
            bail!(
                "--fleet-sizes: {n} is not 1..={} (the lab's limit)",
                crossdock_lab::lab::MAX_HOSTS
            );
        }
        if settings.datapath.rounds == 0 || settings.c1_reps == 0 {
            bail!("--rounds and --c1-reps must be at least 1");
        }
        if let Some(n) = settings
            .c2_sizes
            .iter()
            .find(|n| **n == 0 || **n > crossdock_lab::lab::MAX_HOSTS)
        {
            bail!(
                "--c2-sizes: {n} is not 1..={} (the lab's limit)",
                crossdock_lab::lab::MAX_HOSTS
            );
        }
        if settings.c2_sweep_hosts == 0 || settings.c2_sweep_hosts > crossdock_lab::lab::MAX_HOSTS {
            bail!(
                "--c2-sweep-hosts: {} is not 1..={} (the lab's limit)",
                settings.c2_sweep_hosts,
                crossdock_lab::lab::MAX_HOSTS
            );
        }
        Ok(settings)
    }
}

/// What a run found (results.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub crossdock_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub machine: Machine,
    pub settings: Settings,
    pub figures: Vec<Figure>,
    pub datapath: Option<datapath::Results>,
    pub c1: Vec<C1Sample>,
    pub c2: Vec<C2Result>,
    /// The C2 trade-off sweep's storms (the agent's default point is in `c2` when a main storm has
    /// the sweep's size).
    #[serde(default)]
    pub c2_sweep: Vec<C2Result>,
    /// C1 with fleet agents.
    #[serde(default)]
    pub c1_fleet: Vec<C1Sample>,
    /// Fleet storms.
    #[serde(default)]
    pub fleet: Vec<FleetStorm>,
    /// The scale-in after the fleet storm of its size.
    #[serde(default)]
    pub fleet_scale_in: Option<ScaleIn>,
    pub c3: Option<C3Result>,
    /// Container names (N1–N3).
    #[serde(default)]
    pub names: Option<names::NamesResult>,
    pub f1_idle: Option<Phase>,
    pub f1_churn: Option<Phase>,
    pub notes: Vec<String>,
    pub plots: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub memory_mib: u64,
    pub docker: String,
    pub iperf3: String,
}

fn first_line_of(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let s = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&s)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "not installed".into())
}

fn machine() -> Machine {
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|r| {
                    r.split_whitespace()
                        .next()
                        .and_then(|k| k.parse::<u64>().ok())
                })
        })
        .unwrap_or(0)
        / 1024;
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        kernel: first_line_of("uname", &["-r"]),
        memory_mib,
        docker: first_line_of(
            &DockerVersion::V20.dockerd().display().to_string(),
            &["--version"],
        ),
        iperf3: first_line_of("iperf3", &["--version"]),
    }
}

/// Fails with the fix when a tool the benchmark runs is missing.
fn check_tools() -> Result<()> {
    if !crossdock_lab::is_root() {
        bail!("the benchmarks need root (network namespaces, dockerd, iptables): run scripts/bench as root");
    }
    for tool in [
        "iperf3",
        "nsenter",
        "ss",
        "iptables",
        "iptables-save",
        "ip",
        "bridge",
        "getconf",
    ] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            bail!("{tool} is not installed: run scripts/install-deps");
        }
    }
    Ok(())
}

fn crossdock_bin(opts: &Options, bench_exe: &Path) -> Result<PathBuf> {
    let p = match &opts.crossdock_bin {
        Some(p) => p.clone(),
        None => bench_exe
            .parent()
            .map(|d| d.join("crossdock"))
            .ok_or_else(|| anyhow!("cannot tell where this binary is"))?,
    };
    if !p.is_file() {
        bail!(
            "the crossdock binary {} does not exist: build it (cargo build --release --bin crossdock) or pass --crossdock-bin",
            p.display()
        );
    }
    p.canonicalize()
        .with_context(|| format!("cannot resolve {}", p.display()))
}

/// `crossdock-bench` with options; returns the exit code.
pub fn main(opts: Options) -> u8 {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("crossdock-bench: cannot find its own binary: {e}");
            return 1;
        }
    };
    let settings = match opts.resolve(exe.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("crossdock-bench: {e:#}");
            return 2;
        }
    };
    let bins = match check_tools().and_then(|()| crossdock_bin(&opts, &exe)) {
        Ok(c) => Bins {
            crossdock: c,
            bench: exe,
        },
        Err(e) => {
            eprintln!("crossdock-bench: {e:#}");
            return 2;
        }
    };
    if let Err(e) = crate::install_signal_handlers() {
        eprintln!("crossdock-bench: cannot install signal handlers: {e}");
        return 1;
    }
    match run(&settings, &bins, &opts.out) {
        Ok(report) => {
            println!("\n{}", report::text_table(&report.figures));
            println!(
                "{} figures, {} met, {} not met or not measured; {:.1} min. Written: {}",
                report.figures.iter().filter(|f| f.met().is_some()).count(),
                report
                    .figures
                    .iter()
                    .filter(|f| f.met() == Some(true))
                    .count(),
                report
                    .figures
                    .iter()
                    .filter(|f| f.met() == Some(false))
                    .count(),
                report.duration_s / 60.0,
                opts.out.display()
            );
            0
        }
        Err(e) => {
            eprintln!("crossdock-bench: {e:#}");
            1
        }
    }
}

fn wants(s: &Settings, part: &str) -> bool {
    s.parts.iter().any(|p| p == part)
}

/// Runs the selected parts and writes the report.
pub fn run(s: &Settings, bins: &Bins, out: &Path) -> Result<Report> {
    let started = *START.get_or_init(Instant::now);
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for name in labs_of(&s.parts) {
        crossdock_lab::down(name).with_context(|| format!("removing the leftover lab {name}"))?;
    }
    let mut report = Report {
        crossdock_version: control::crossdock_version(&bins.crossdock),
        started_at,
        finished_at: String::new(),
        duration_s: 0.0,
        machine: machine(),
        settings: s.clone(),
        figures: Vec::new(),
        datapath: None,
        c1: Vec::new(),
        c2: Vec::new(),
        c2_sweep: Vec::new(),
        c1_fleet: Vec::new(),
        fleet: Vec::new(),
        fleet_scale_in: None,
        c3: None,
        names: None,
        f1_idle: None,
        f1_churn: None,
        notes: Vec::new(),
        plots: Vec::new(),
    };
    let check = || check_interrupted();
    let needs_dp_lab = ["datapath", "c3", "f1"].iter().any(|p| wants(s, p));
    let mut dp_lab = if needs_dp_lab {
        section!("== the data-path lab (2 hosts, Docker 20.10, agents)");
        let lab = Lab::up(LabOptions {
            name: "bench-dp".into(),
            hosts: 2,
            docker: DockerVersion::V20,
            agents: true,
            crossdock_bin: bins.crossdock.clone(),
            // The agents turn the check off as their first act; the lab starts with it off so the
            // variants without agents route as well.
            source_dest_check: false,
            agent_wait: Duration::from_secs(60),
            ..LabOptions::default()
        })
        .context("building the data-path lab")?;
        for i in 1..=2 {
            if let Err(e) = datapath::wait_agent_ready(&lab, i, Duration::from_secs(90)) {
                eprintln!("  note: {e:#}");
                report.notes.push(format!("data-path lab: {e:#}"));
            }
        }
        Some(lab)
    } else {
        None
    };

    if wants(s, "datapath") {
        section!("== data path: {} rounds of (a)–(e)", s.datapath.rounds);
        let lab = dp_lab.as_mut().expect("built above");
        match datapath::run(lab, &s.datapath, &check) {
            Ok(r) => report.datapath = Some(r),
            Err(e) => {
                check()?;
                report.notes.push(format!("data path: {e:#}"));
            }
        }
    }

    // C3 and F1 idle in the background on the data-path lab.
    let background = if wants(s, "c3") || wants(s, "f1") {
        let lab = dp_lab.as_ref().expect("built above");
        let state = lab.state().clone();
        let period = Duration::from_secs(if wants(s, "c3") {
            s.c3_secs.max(s.idle_secs)
        } else {
            s.idle_secs
        });
        let idle = s.idle_secs;
        let timings = s.timings.clone();
        let churn_secs = wants(s, "f1").then_some(s.churn_secs);
        section!(
            "== C3 steady state ({} s) with F1 idle (its first {} s), then F1 churn ({} s), on the data-path lab, in the background",
            period.as_secs(),
            idle,
            churn_secs.unwrap_or(0)
        );
        Some(std::thread::spawn(move || {
            let sampler = Sampler::start(footprint::agent_pids(&state), Duration::from_secs(1));
            let c3 = control::c3(&state, &timings, period, &check_interrupted);
            let mut series = sampler.stop();
            for s in &mut series {
                s.samples.retain(|(t, _)| *t <= idle as f64 + 0.5);
            }
            let phase = Phase {
                name: "idle".into(),
                series,
                ticks_per_sec: procstat::clock_ticks(),
                ..Phase::default()
            };
            let churn = churn_secs.map(|secs| {
                eprintln!(
                    "[{}] == F1: agents during container churn ({secs} s), in the background",
                    clock()
                );
                footprint::churn(&state, Duration::from_secs(secs), &check_interrupted)
            });
            (c3, phase, churn)
        }))
    } else {
        None
    };

    let foreground = (|| -> Result<()> {
        if wants(s, "c1") {
            eprintln!(
                "== C1: agent start → first packet ({} fresh labs)",
                s.c1_reps
            );
            report.c1 = control::c1(s.c1_reps, Mode::PerHost, &s.timings, bins, &check);
            check()?;
        }
        if wants(s, "c2") {
            section!("== C2: boot storms of {:?} hosts", s.c2_sizes);
            report.c2 = control::c2(&s.c2_sizes, Backoff::default(), &s.timings, bins, &check);
            check()?;
            let runs = s.c2_sweep_runs();
            if !runs.is_empty() {
                section!(
                    "== C2 trade-off sweep: storms of {} hosts with write backoff {} (the agent's default {}{})",
                    s.c2_sweep_hosts,
                    runs.iter().map(Backoff::label).collect::<Vec<_>>().join(", "),
                    Backoff::default().label(),
                    if s.c2_sizes.contains(&s.c2_sweep_hosts) {
                        ": the main storm of that size"
                    } else {
                        ""
                    }
                );
                report.c2_sweep =
                    control::c2_sweep(s.c2_sweep_hosts, &runs, &s.timings, bins, &check);
                check()?;
            }
        }
        if wants(s, "fleet") {
            section!(
                "== C1 in fleet mode: agent start → first packet ({} fresh labs)",
                s.c1_reps
            );
            report.c1_fleet = control::c1(s.c1_reps, Mode::Fleet, &s.timings, bins, &check);
            check()?;
            section!(
                "== fleet storms of {:?} hosts{} (fleet agents: release_grace_secs {}, sweep_interval_secs {})",
                fleet::storm_sizes(&s.fleet_sizes, s.fleet_scale_in),
                s.fleet_scale_in
                    .map(|x| format!(", then {} of the {} released", x.release, x.hosts))
                    .unwrap_or_default(),
                s.fleet_agents.grace_secs,
                s.fleet_agents.sweep_secs
            );
            let (storms, scale_in) = fleet::storms(
                &s.fleet_sizes,
                s.fleet_scale_in,
                s.fleet_agents,
                &s.timings,
                bins,
                &check,
            );
            report.fleet = storms;
            report.fleet_scale_in = scale_in;
            check()?;
        }
        if wants(s, "names") {
            let cfg = names::Config::new(s.quick);
            section!(
                "== container names: N1 ({} trials each, crossdock and swarm), N2 ({} rounds of {} questions), N3",
                cfg.trials,
                cfg.rounds,
                cfg.queries
            );
            match names::run(cfg, bins, &check) {
                Ok(r) => report.names = Some(r),
                Err(e) => {
                    check()?;
                    report.notes.push(format!("names: {e:#}"));
                }
            }
        }
        Ok(())
    })();

    if let Some(h) = background {
        if foreground.is_ok() {
            section!("== waiting for the steady-state window to end");
        }
        match h.join() {
            Ok((c3, idle, churn)) => {
                if wants(s, "c3") {
                    report.c3 = Some(c3);
                }
                if wants(s, "f1") {
                    report.f1_idle = Some(idle);
                    report.f1_churn = churn;
                }
            }
            Err(_) => report.notes.push("the steady-state thread panicked".into()),
        }
    }
    if let Some(mut lab) = dp_lab.take() {
        lab.down().context("removing the data-path lab")?;
    }
    foreground?;

    report.figures = figures(&report);
    report.finished_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    report.duration_s = started.elapsed().as_secs_f64();
    match plots(&report, out) {
        Ok(p) => report.plots = p,
        Err(e) => report.notes.push(format!("plots: {e:#}")),
    }
    write(&report, out)?;
    Ok(report)
}

/// Every figure of the report, in the issue's order.
pub fn figures(r: &Report) -> Vec<Figure> {
    let mut f = Vec::new();
    if let Some(d) = &r.datapath {
        f.extend(datapath::figures(d));
    }
    if wants(&r.settings, "c1") {
        f.extend(control::c1_figures(&r.c1));
    }
    if wants(&r.settings, "fleet") {
        f.extend(fleet::c1_figures(&r.c1_fleet, &r.c1));
    }
    f.extend(control::c2_figures(&r.c2));
    f.extend(control::c2_curve_figures(&c2_curve(r)));
    f.extend(fleet::storm_figures(&r.fleet, &r.c2, &r.settings.timings));
    if let Some(s) = &r.fleet_scale_in {
        f.extend(fleet::scale_in_figures(s));
    }
    if let Some(c3) = &r.c3 {
        f.extend(control::c3_figures(c3));
    }
    f.extend(footprint::figures(r.f1_idle.as_ref(), r.f1_churn.as_ref()));
    if let Some(n) = &r.names {
        f.extend(names::figures(n));
    }
    f
}

/// The storms of the C2 trade-off curve.
fn c2_curve(r: &Report) -> Vec<&C2Result> {
    control::c2_curve(&r.c2, &r.c2_sweep, r.settings.c2_sweep_hosts)
}

fn plots(r: &Report, out: &Path) -> Result<Vec<String>> {
    plot::init_font()?;
    let mut written = Vec::new();
    if let Some(d) = &r.datapath {
        let cats: Vec<String> = Variant::ALL
            .iter()
            .map(|v| format!("({}) {}", v.letter(), short(*v)))
            .collect();
        let bars = |m: Metric, scale: f64| -> Vec<Option<Bar>> {
            Variant::ALL
                .iter()
                .map(|v| {
                    datapath::variant_summary(&d.samples, *v, m).map(|s| Bar {
                        value: s.median * scale,
                        min: s.min * scale,
                        max: s.max * scale,
                    })
                })
                .collect()
        };
        let p = out.join("datapath-throughput.png");
        plot::bar_chart(
            &p,
            "TCP throughput between containers on two hosts (median, min–max)",
            "Gbit/s",
            &cats,
            &[
                ("1 stream".into(), bars(Metric::Tcp1, 1.0)),
                ("4 streams".into(), bars(Metric::Tcp4, 1.0)),
            ],
            &[],
        )?;
        written.push(p.display().to_string());
        let lat: Vec<Option<Bar>> = Variant::ALL
            .iter()
            .map(|v| {
                let vals: Vec<f64> = d
                    .samples
                    .iter()
                    .filter(|s| s.variant == *v)
                    .filter_map(|s| s.rr.as_ref().map(|r| r.p50_us))
                    .collect();
                summarize(&vals).map(|s| Bar {
                    value: s.median,
                    min: s.min,
                    max: s.max,
                })
            })
            .collect();
        let p = out.join("datapath-latency.png");
        plot::bar_chart(
            &p,
            "TCP request/response latency, 1 byte (p50; median, min–max over rounds)",
            "µs",
            &cats,
            &[("p50 latency".into(), lat)],
            &[],
        )?;
        written.push(p.display().to_string());
    }
    if !r.c2.is_empty() {
        let cats: Vec<String> = r.c2.iter().map(|c| format!("N = {}", c.hosts)).collect();
        let p = out.join("c2-convergence.png");
        plot::bar_chart(
            &p,
            "C2: time until every route is Available",
            "seconds",
            &cats,
            &[
                (
                    "measured".into(),
                    r.c2.iter()
                        .map(|c| c.converged_s.map(Bar::single))
                        .collect(),
                ),
                (
                    "not converged when the wait ended".into(),
                    r.c2.iter()
                        .map(|c| c.timed_out().then(|| Bar::single(c.deadline_s)))
                        .collect(),
                ),
                (
                    "serial limit N × 1.2 s".into(),
                    r.c2.iter()
                        .map(|c| Some(Bar::single(c.serial_limit_s)))
                        .collect(),
                ),
                (
                    "target 1.3 × serial".into(),
                    r.c2.iter()
                        .map(|c| Some(Bar::single(1.3 * c.serial_limit_s)))
                        .collect(),
                ),
            ],
            &[],
        )?;
        written.push(p.display().to_string());
        let actions: BTreeSet<String> =
            r.c2.iter()
                .flat_map(|c| c.calls.by_action.keys().cloned())
                .collect();
        let total = (
            "all actions".to_string(),
            r.c2.iter()
                .map(|c| (c.calls.total > 0).then(|| Bar::single(c.calls.per_host_mean())))
                .collect::<Vec<_>>(),
        );
        let series: Vec<(String, Vec<Option<Bar>>)> = std::iter::once(total)
            .chain(actions.iter().map(|a| {
                (
                    a.clone(),
                    r.c2.iter()
                        .map(|c| c.calls.by_action_per_host().get(a).map(|v| Bar::single(*v)))
                        .collect(),
                )
            }))
            .collect();
        let p = out.join("c2-calls.png");
        plot::bar_chart(
            &p,
            "C2: API calls per host by action (failed calls included)",
            "calls per host",
            &cats,
            &series,
            &[(4.0, "target: 4 calls per host, all actions".into())],
        )?;
        written.push(p.display().to_string());
        let p = out.join("c2-progress.png");
        let lines: Vec<(String, Vec<(f64, f64)>)> =
            r.c2.iter()
                .map(|c| {
                    (
                        format!("N = {}", c.hosts),
                        c.progress.iter().map(|(t, n)| (*t, *n as f64)).collect(),
                    )
                })
                .collect();
        plot::line_chart(
            &p,
            "C2: routes Available over time",
            "seconds since the agents started",
            "routes Available",
            &lines,
            &[],
        )?;
        written.push(p.display().to_string());
    }
    let points = control::c2_curve_points(&c2_curve(r));
    if !points.is_empty() {
        let p = out.join("c2-tradeoff.png");
        plot::tradeoff_chart(
            &p,
            &format!(
                "C2 trade-off at N = {}: the agent's route-write backoff (first–max window)",
                r.settings.c2_sweep_hosts
            ),
            "API calls per host (mean, failed calls included)",
            "time to all routes Available / serial limit",
            &points,
            (4.0, 1.3),
            "both targets: ≤ 4 calls/host and ≤ 1.3 × serial limit",
        )?;
        written.push(p.display().to_string());
    }
    if !r.fleet.is_empty() {
        written.extend(fleet_plots(r, out)?);
    }
    let mut rss = Vec::new();
    for phase in [&r.f1_idle, &r.f1_churn].into_iter().flatten() {
        for s in &phase.series {
            rss.push((
                format!("{} {}", s.label, phase.name),
                s.samples
                    .iter()
                    .map(|(t, x)| (*t, x.rss_kib as f64 / 1024.0))
                    .collect::<Vec<_>>(),
            ));
        }
    }
    if !rss.is_empty() {
        let p = out.join("f1-rss.png");
        plot::line_chart(
            &p,
            "F1: agent resident memory",
            "seconds into the phase",
            "MiB",
            &rss,
            &[(20.0, "target 20 MB".into())],
        )?;
        written.push(p.display().to_string());
    }
    Ok(written)
}

/// The fleet storms beside the per-host storms of the same sizes: time (with the lower bounds) and
/// calls per host.
fn fleet_plots(r: &Report, out: &Path) -> Result<Vec<String>> {
    let cats: Vec<String> = r.fleet.iter().map(|c| format!("N = {}", c.hosts)).collect();
    let per_host = |n: usize| {
        r.c2.iter()
            .find(|c| c.hosts == n && c.backoff.is_agent_default())
    };
    let p = out.join("fleet-storms.png");
    plot::bar_chart(
        &p,
        "Fleet storms: time until every route is Available, beside per-host mode",
        "seconds",
        &cats,
        &[
            (
                "per-host mode (C2)".into(),
                r.fleet
                    .iter()
                    .map(|f| {
                        per_host(f.hosts)
                            .and_then(|c| c.converged_s)
                            .map(Bar::single)
                    })
                    .collect(),
            ),
            (
                "fleet mode".into(),
                r.fleet
                    .iter()
                    .map(|f| f.run.converged_s.map(Bar::single))
                    .collect(),
            ),
            (
                "fleet: the last host's ENI check off".into(),
                r.fleet
                    .iter()
                    .map(|f| f.run.eni_off_s.map(Bar::single))
                    .collect(),
            ),
            (
                "fleet, not converged when the wait ended".into(),
                r.fleet
                    .iter()
                    .map(|f| f.timed_out().then(|| Bar::single(f.deadline_s)))
                    .collect(),
            ),
            (
                "lower bound: serial batches".into(),
                r.fleet
                    .iter()
                    .map(|f| Some(Bar::single(f.batch_bound_s)))
                    .collect(),
            ),
            (
                "lower bound: calls ÷ throttle".into(),
                r.fleet
                    .iter()
                    .map(|f| f.throttle_bound_s.map(Bar::single))
                    .collect(),
            ),
        ],
        &[(fleet::STORM_TARGET_S, "target: 60 s".into())],
    )?;
    let mut written = vec![p.display().to_string()];
    let p = out.join("fleet-calls.png");
    plot::bar_chart(
        &p,
        "Fleet storms: API calls per host, beside per-host mode (failed calls included)",
        "calls per host",
        &cats,
        &[
            (
                "per-host mode (C2)".into(),
                r.fleet
                    .iter()
                    .map(|f| {
                        per_host(f.hosts)
                            .filter(|c| c.calls.total > 0)
                            .map(|c| Bar::single(c.calls.per_host_mean()))
                    })
                    .collect(),
            ),
            (
                "fleet mode".into(),
                r.fleet
                    .iter()
                    .map(|f| {
                        (f.run.calls.total > 0).then(|| Bar::single(f.run.calls.per_host_mean()))
                    })
                    .collect(),
            ),
        ],
        &[(fleet::CALLS_TARGET, "target: 4 calls per host".into())],
    )?;
    written.push(p.display().to_string());
    Ok(written)
}

fn short(v: Variant) -> &'static str {
    match v {
        Variant::HostToHost => "host↔host",
        Variant::HostViaRouter => "host↔host via vRouter",
        Variant::Crossdock => "crossdock",
        Variant::OpenFirewall => "rules off + FWD ACCEPT",
        Variant::SwarmOverlay => "swarm overlay",
        Variant::Vxlan => "VXLAN (flannel)",
    }
}

/// The markdown report.
pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    m.push_str(&format!(
        "# crossdock benchmark results\n\n{} → {} ({:.1} min{}), {}; {} cores, {} MiB, kernel {}; {}; {}.\n\n",
        r.started_at,
        r.finished_at,
        r.duration_s / 60.0,
        if r.settings.quick { ", --quick" } else { "" },
        r.crossdock_version,
        r.machine.cores,
        r.machine.memory_mib,
        r.machine.kernel,
        r.machine.docker,
        r.machine.iperf3
    ));
    m.push_str("## Figures and targets\n\n");
    m.push_str(&report::markdown_table(&r.figures));
    if let Some(d) = &r.datapath {
        m.push_str(&format!(
            "\n## Data path by variant\n\nMedian [min–max] over {} rounds; iperf3 {} s per run, RR {} s with {}-byte messages.\n\n",
            r.settings.datapath.rounds, r.settings.datapath.iperf_secs, r.settings.datapath.rr_secs, r.settings.datapath.rr_size
        ));
        m.push_str(&datapath::variant_table(d));
        if let Some(e) = &d.swarm_error {
            m.push_str(&format!("\nSwarm overlay: {e}\n"));
        }
        m.push_str(&format!(
            "\nFORWARD policy as Docker left it: {}. ",
            d.forward_policy.join(", ")
        ));
        m.push_str(&format!(
            "iptables-save lines naming crossdock in h1: {}.\n",
            d.crossdock_rule_lines
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let errors: Vec<String> = d
            .samples
            .iter()
            .filter(|s| !s.errors.is_empty())
            .map(|s| {
                format!(
                    "- round {} {}: {}",
                    s.round + 1,
                    s.variant.title(),
                    s.errors.join("; ")
                )
            })
            .collect();
        if !errors.is_empty() {
            m.push_str(&format!("\nErrors:\n{}\n", errors.join("\n")));
        }
        for n in &d.notes {
            m.push_str(&format!("\n- {n}"));
        }
        m.push('\n');
    }
    if !r.c1.is_empty() {
        m.push_str("\n## C1: agent start → first packet\n\n| rep | first packet, container source kept, s | first answer of any kind, s | sources the receiver saw | both routes Available s | probes | error |\n|---|---|---|---|---|---|---|\n");
        for c in &r.c1 {
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                c.rep + 1,
                c.seconds.map(num).unwrap_or("n/a".into()),
                c.first_answer_s.map(num).unwrap_or("n/a".into()),
                c.sources_seen.join(" → "),
                c.routes_available_s.map(num).unwrap_or("n/a".into()),
                c.probe_attempts,
                c.error.clone().unwrap_or_default().replace('|', "\\|")
            ));
        }
    }
    if let Some(c) = r.c1.iter().find(|c| !c.first_call_s.is_empty()) {
        let mut firsts: Vec<(&String, &f64)> = c.first_call_s.iter().collect();
        firsts.sort_by(|a, b| a.1.total_cmp(b.1));
        m.push_str(&format!(
            "\nWhere the time goes (repetition {}): first call of each action after the agents started: {}; calls of both agents until the first packet: {}.\n",
            c.rep + 1,
            firsts
                .iter()
                .map(|(a, t)| format!("{a} {} s", num(**t)))
                .collect::<Vec<_>>()
                .join(", "),
            c.calls
                .iter()
                .map(|(a, n)| format!("{a} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !r.c2.is_empty() {
        m.push_str("\n## C2: boot storms\n\n| N | agents started (spawn s) | all Available s | serial limit s | ratio | agents ready s | calls/host mean (max) | reads | writes | failed by code | lost | duplicates | agents' RSS total MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for c in &r.c2 {
            m.push_str(&format!("| {} | {} |\n", c.hosts, storm_cells(c)));
        }
        for c in r.c2.iter().filter(|c| c.error.is_some()) {
            m.push_str(&format!(
                "\nN={}: {}\n",
                c.hosts,
                c.error.clone().unwrap_or_default()
            ));
        }
    }
    let curve = c2_curve(r);
    if !curve.is_empty() {
        m.push_str(&format!(
            "\n## C2 trade-off: the agent's route-write backoff at N = {}\n\nEach row a storm with `[cloud] write_backoff_ms`–`write_backoff_max_ms` set as shown (the default row is the main storm of that size).\n\n| write backoff | agents started (spawn s) | all Available s | serial limit s | ratio | agents ready s | calls/host mean (max) | reads | writes | failed by code | lost | duplicates | agents' RSS total MiB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            r.settings.c2_sweep_hosts
        ));
        for c in &curve {
            m.push_str(&format!(
                "| {}{} | {} |\n",
                c.backoff.label(),
                if c.backoff.is_agent_default() {
                    " (agent default)"
                } else {
                    ""
                },
                storm_cells(c)
            ));
        }
        for c in curve.iter().filter(|c| c.error.is_some()) {
            m.push_str(&format!(
                "\n{}: {}\n",
                c.backoff.label(),
                c.error.clone().unwrap_or_default()
            ));
        }
    }
    m.push_str(&fleet::markdown(
        &r.fleet,
        &r.c2,
        r.fleet_scale_in.as_ref(),
        &r.c1_fleet,
    ));
    if !r.notes.is_empty() {
        m.push_str("\n## Notes\n\n");
        for n in &r.notes {
            m.push_str(&format!("- {n}\n"));
        }
    }
    if !r.plots.is_empty() {
        m.push_str("\n## Plots\n\n");
        for p in &r.plots {
            let name = Path::new(p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            m.push_str(&format!("![{name}]({name})\n"));
        }
    }
    m
}

/// A storm's cells after its first column, for the storm tables.
fn storm_cells(c: &C2Result) -> String {
    format!(
        "{} ({}) | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {}",
        c.agents_started,
        num(c.spawn_s),
        match c.converged_s {
            Some(v) => num(v),
            None if c.timed_out() => format!("> {} (deadline)", num(c.deadline_s)),
            None => "n/a".into(),
        },
        num(c.serial_limit_s),
        match c.ratio() {
            Some(v) => num(v),
            None if c.timed_out() => format!("> {}", num(c.deadline_s / c.serial_limit_s)),
            None => "n/a".into(),
        },
        c.agents_ready_s.map(num).unwrap_or("n/a".into()),
        num(c.calls.per_host_mean()),
        c.calls.per_host_max(),
        c.calls.reads,
        c.calls.writes,
        if c.calls.by_code.is_empty() {
            "none".into()
        } else {
            c.calls
                .by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        c.lost,
        c.duplicates,
        num(c.agents_rss_mib)
    )
}

fn write(r: &Report, out: &Path) -> Result<()> {
    let json = out.join("results.json");
    std::fs::write(&json, serde_json::to_vec_pretty(r)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    let md = out.join("results.md");
    std::fs::write(&md, markdown(r)).with_context(|| format!("cannot write {}", md.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_removes_only_the_labs_of_its_parts() {
        let parts = |v: &[&str]| v.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(
            labs_of(&parts(&["names"])),
            vec!["bench-names", "bench-names-rss"]
        );
        assert_eq!(labs_of(&parts(&["fleet"])), vec!["bench-c1", "bench-fleet"]);
        assert_eq!(labs_of(&parts(&["c3", "f1"])), vec!["bench-dp"]);
        let all: Vec<String> = PARTS
            .iter()
            .chain(&EXTRA_PARTS)
            .map(|p| p.to_string())
            .collect();
        assert_eq!(
            labs_of(&all),
            vec![
                "bench-c1",
                "bench-c2",
                "bench-dp",
                "bench-fleet",
                "bench-names",
                "bench-names-rss"
            ]
        );
        // Every part has its labs listed.
        for p in PARTS.iter().chain(&EXTRA_PARTS) {
            assert!(LABS_BY_PART.iter().any(|(q, _)| q == p), "{p}");
        }
    }
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        o: Options,
    }

    fn opts(args: &[&str]) -> Options {
        T::parse_from(std::iter::once("x").chain(args.iter().copied())).o
    }

    #[test]
    fn quick_and_full_defaults() {
        let full = opts(&[]).resolve("b".into()).unwrap();
        assert_eq!(full.datapath.rounds, 7);
        assert_eq!(full.c2_sizes, vec![50, 100, 200]);
        assert_eq!(full.c3_secs, 600);
        assert_eq!(full.idle_secs, 300);
        assert_eq!(full.parts.len(), 6);
        assert_eq!(full.fleet_sizes, vec![50, 100, 200]);
        assert_eq!(
            full.fleet_scale_in,
            Some(ScaleInSpec {
                hosts: 200,
                release: 50
            })
        );
        assert_eq!(full.fleet_agents, FleetAgents::default());
        let quick = opts(&["--quick", "--only", "c2,datapath", "--c2-sizes", "5"])
            .resolve("b".into())
            .unwrap();
        assert_eq!(quick.datapath.rounds, 2);
        assert_eq!(quick.c2_sizes, vec![5]);
        assert_eq!(quick.parts, vec!["c2", "datapath"]);
        assert_eq!(quick.c3_secs, 60);
        assert_eq!(quick.fleet_sizes, vec![10, 20]);
        assert_eq!(quick.fleet_scale_in.unwrap().release, 5);
        let only = opts(&[
            "--only",
            "fleet",
            "--fleet-sizes",
            "50,100",
            "--fleet-scale-in",
            "none",
            "--fleet-grace-secs",
            "20",
            "--fleet-sweep-secs",
            "5",
        ])
        .resolve("b".into())
        .unwrap();
        assert_eq!(only.parts, vec!["fleet"]);
        assert_eq!(only.fleet_sizes, vec![50, 100]);
        assert_eq!(only.fleet_scale_in, None);
        assert_eq!(
            only.fleet_agents,
            FleetAgents {
                grace_secs: 20,
                sweep_secs: 5
            }
        );
    }

    fn b(first: u64, max: u64) -> Backoff {
        Backoff {
            write_backoff_ms: first,
            write_backoff_max_ms: max,
        }
    }

    #[test]
    fn the_c2_sweep_defaults_to_two_points_around_the_agents_defaults() {
        let full = opts(&[]).resolve("b".into()).unwrap();
        assert_eq!(full.c2_sweep, vec![b(100, 2000), b(2000, 30000)]);
        assert_eq!(full.c2_sweep_hosts, 50);
        // 50 is a main storm size: the default point is that storm, not run again.
        assert_eq!(full.c2_sweep_runs(), vec![b(100, 2000), b(2000, 30000)]);
        let quick = opts(&["--quick"]).resolve("b".into()).unwrap();
        assert_eq!(quick.c2_sweep_hosts, 10);
        assert_eq!(quick.c2_sweep_runs().len(), 2, "10 is a quick storm size");
        // No main storm of the sweep's size: the default point is run with the sweep, first.
        let other = opts(&["--c2-sizes", "100", "--c2-sweep", "50:1000 , 500:8000"])
            .resolve("b".into())
            .unwrap();
        assert_eq!(
            other.c2_sweep,
            vec![b(50, 1000)],
            "the default pair is not a sweep point"
        );
        assert_eq!(other.c2_sweep_runs(), vec![Backoff::default(), b(50, 1000)]);
        // Off.
        for off in ["", "none", " NONE "] {
            let s = opts(&["--c2-sweep", off]).resolve("b".into()).unwrap();
            assert!(s.c2_sweep.is_empty(), "{off:?}");
            assert!(s.c2_sweep_runs().is_empty(), "{off:?}");
        }
        let only = opts(&["--only", "c2", "--c2-sweep-hosts", "20"])
            .resolve("b".into())
            .unwrap();
        assert_eq!(only.c2_sweep_hosts, 20);
        assert_eq!(only.c2_sweep_runs()[0], Backoff::default());
    }

    #[test]
    fn bad_sweeps_are_refused_naming_the_item_and_the_fix() {
        let err = |args: &[&str]| {
            format!(
                "{:#}",
                opts(args).resolve("b".into()).expect_err("must be refused")
            )
        };
        let e = err(&["--c2-sweep", "100-2000"]);
        assert!(
            e.contains("--c2-sweep") && e.contains("\"100-2000\" is not FIRST:MAX"),
            "{e}"
        );
        let e = err(&["--c2-sweep", "100:lots"]);
        assert!(e.contains("\"lots\" is not a whole number"), "{e}");
        // The agent's own ranges: first window 10..=60000, max from the first to 600000.
        let e = err(&["--c2-sweep", "5:2000"]);
        assert!(
            e.contains("cloud.write_backoff_ms") && e.contains("from 10 to 60000"),
            "{e}"
        );
        let e = err(&["--c2-sweep", "2000:1000"]);
        assert!(
            e.contains("cloud.write_backoff_max_ms") && e.contains("from 2000"),
            "{e}"
        );
        let e = err(&["--c2-sweep", "100:2000,100:2000"]);
        assert!(e.contains("listed twice"), "{e}");
        let e = err(&["--c2-sweep-hosts", "0"]);
        assert!(e.contains("--c2-sweep-hosts: 0 is not 1..=200"), "{e}");
        assert!(err(&["--c2-sweep-hosts", "201"]).contains("--c2-sweep-hosts"));
    }

    #[test]
    fn bad_options_are_refused_with_the_valid_choices() {
        let e = opts(&["--only", "warp"])
            .resolve("b".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("datapath, c1, c2, c3, f1"), "{e}");
        assert!(opts(&["--c2-sizes", "500"]).resolve("b".into()).is_err());
        assert!(opts(&["--rounds", "0"]).resolve("b".into()).is_err());
        let e = |args: &[&str]| format!("{:#}", opts(args).resolve("b".into()).unwrap_err());
        assert!(e(&["--fleet-sizes", "0"]).contains("--fleet-sizes: 0"));
        assert!(e(&["--fleet-scale-in", "50"]).contains("--fleet-scale-in"));
        assert!(e(&["--fleet-sweep-secs", "1"]).contains("fleet.sweep_interval_secs"));
        assert!(e(&["--fleet-grace-secs", "0"]).contains("fleet.release_grace_secs"));
    }

    #[test]
    fn the_markdown_report_has_the_figures_and_the_storm_table() {
        let settings = opts(&["--quick"]).resolve("b".into()).unwrap();
        let mut r = Report {
            crossdock_version: "crossdock 0.1.0".into(),
            started_at: "t0".into(),
            finished_at: "t1".into(),
            duration_s: 60.0,
            machine: Machine {
                cores: 2,
                kernel: "6".into(),
                memory_mib: 1,
                docker: "d".into(),
                iperf3: "i".into(),
            },
            settings,
            figures: vec![],
            datapath: None,
            c1: vec![],
            c2: vec![C2Result {
                hosts: 10,
                agents_started: 10,
                serial_limit_s: 12.0,
                converged_s: Some(14.0),
                available: 10,
                calls: crate::calls::CallStats {
                    total: 60,
                    per_host: (0..10).map(|i| (format!("i-{i}"), 6)).collect(),
                    ..Default::default()
                },
                ..C2Result::default()
            }],
            c2_sweep: vec![
                C2Result {
                    hosts: 10,
                    backoff: b(100, 2000),
                    agents_started: 10,
                    serial_limit_s: 12.0,
                    converged_s: Some(13.0),
                    available: 10,
                    calls: crate::calls::CallStats {
                        total: 200,
                        per_host: (0..10).map(|i| (format!("i-{i}"), 20)).collect(),
                        ..Default::default()
                    },
                    ..C2Result::default()
                },
                C2Result {
                    hosts: 10,
                    backoff: b(2000, 30000),
                    agents_started: 10,
                    serial_limit_s: 12.0,
                    deadline_s: 38.0,
                    available: 7,
                    lost: 3,
                    calls: crate::calls::CallStats {
                        total: 30,
                        per_host: (0..10).map(|i| (format!("i-{i}"), 3)).collect(),
                        ..Default::default()
                    },
                    ..C2Result::default()
                },
            ],
            c1_fleet: vec![],
            fleet: vec![],
            fleet_scale_in: None,
            names: None,
            c3: None,
            f1_idle: None,
            f1_churn: None,
            notes: vec!["something".into()],
            plots: vec!["/x/c2-calls.png".into()],
        };
        r.figures = figures(&r);
        let md = markdown(&r);
        assert!(md.contains("| C2 | N=10: time to all routes Available / serial limit | 1.17 × | ≤ 1.30 × | met |"), "{md}");
        assert!(md.contains("| 10 | 10 ("), "{md}");
        // The trade-off: the sweep's storms and the main storm of that size as the default point.
        let curve: Vec<&Figure> = r.figures.iter().filter(|f| f.id == "C2 curve").collect();
        assert_eq!(curve.len(), 3, "{:?}", r.figures);
        assert!(md.contains("| C2 curve | N=10, write backoff 100–2000 ms | 1.08 ×, 20.0 calls/host | ≤ 1.30 ×, ≤ 4.00 calls/host | NOT MET |"), "{md}");
        assert!(
            md.contains("| C2 curve | N=10, write backoff 500–8000 ms (agent default) | 1.17 ×, "),
            "{md}"
        );
        assert!(
            md.contains(
                "| C2 curve | N=10, write backoff 2000–30000 ms | > 3.17 ×, > 3.00 calls/host |"
            ),
            "{md}"
        );
        assert!(
            md.contains("## C2 trade-off: the agent's route-write backoff at N = 10"),
            "{md}"
        );
        assert!(md.contains("| 500–8000 ms (agent default) | 10 ("), "{md}");
        assert!(
            md.contains("| 2000–30000 ms | 10 (0) | > 38.0 (deadline) |"),
            "{md}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["c2_sweep"][0]["write_backoff_ms"], 100);
        assert_eq!(json["c2_sweep"][1]["write_backoff_max_ms"], 30000);
        assert_eq!(json["c2"][0]["write_backoff_ms"], 500);
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back.c2_sweep, r.c2_sweep);
        assert!(md.contains("- something"));
        assert!(md.contains("![c2-calls.png](c2-calls.png)"));
        assert!(
            md.contains("C1 | agent start"),
            "c1 was asked for and is reported as not measured: {md}"
        );
    }
}
