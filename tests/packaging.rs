//! Tests of what ships: the systemd unit, the Debian package, the cloud-init user data, the RAM policy
//! and the default configuration file.
//!
//! Why these and not just "the files exist": each artefact makes a promise that only a tool or a real
//! run can check. The unit promises a hardening score (`systemd-analyze security`), a clean
//! `systemd-analyze verify`, and a sandbox that still lets the agent work; the package promises to
//! install without starting anything, keep an edited configuration across an upgrade and leave nothing
//! behind when purged; the user data must pass `cloud-init schema`; the RAM policy must name exactly
//! the API actions the code calls.
//!
//! The package tests run `scripts/package --profile dev` once (the same script as a release, with
//! the debug build so the suite stays fast), then `tests/packaging/throwaway-root.sh`, which installs,
//! verifies, upgrades, boots (systemd-nspawn) and purges the package in an overlay of this machine's
//! root inside a private mount namespace; the host is not changed. It runs twice: once around
//! `tests/packaging/sandbox-probe.py` (what the sandbox allows and denies), once with the real agent
//! next to Debian's dockerd inside the booted root (`tests/packaging/agent-check.sh`: the two paired
//! through their whole life cycle). Those need root and report a skip otherwise; a test whose tool is
//! missing reports a skip naming the Debian package `scripts/install-deps` installs for it. Every
//! skip goes through `crossdock_lab::testing::skip`, whose one marker fails `scripts/test`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const UNIT: &str = "systemd/crossdock-agent.service";
const INIT_UNIT: &str = "systemd/crossdock-init.service";
const MAX_EXPOSURE: f64 = 3.5;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Whether `tool` can be run; if not, reports why the calling test is skipped.
fn have(tool: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        crossdock_lab::testing::skip(&format!(
            "`{tool}` is not installed (Debian package {package}; scripts/install-deps installs it)"
        ));
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// systemd unit
// ---------------------------------------------------------------------------------------------

/// The overall exposure from `systemd-analyze security --offline=true <unit file>`.
fn exposure(unit_file: &Path) -> f64 {
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_file));
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| {
            panic!(
                "no overall exposure in systemd-analyze output:\n{stdout}\n{}",
                text(&out.stderr)
            )
        });
    line.rsplit_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure from {line:?}"))
}

#[test]
fn unit_exposure_is_at_most_3_5() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    // A unit with no hardening at all, measured the same way: the scale and the parsing are real.
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("bare.service");
    std::fs::write(&bare, "[Service]\nExecStart=/usr/bin/crossdock agent\n").unwrap();
    let bare_score = exposure(&bare);
    assert!(
        bare_score > 9.0,
        "a bare unit should score above 9, got {bare_score}"
    );

    let score = exposure(&repo().join(UNIT));
    eprintln!("exposure: crossdock-agent.service {score}, bare unit {bare_score}");
    assert!(
        score <= MAX_EXPOSURE,
        "crossdock-agent.service exposure {score} is above {MAX_EXPOSURE}: see `systemd-analyze security --offline=true {UNIT}`"
    );
}

#[test]
fn init_unit_exposure_is_at_most_3_5() {
    if !have("systemd-analyze", "systemd") {
        return;
    }
    let score = exposure(&repo().join(INIT_UNIT));
    eprintln!("exposure: crossdock-init.service {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "crossdock-init.service exposure {score} is above {MAX_EXPOSURE}: see `systemd-analyze security --offline=true {INIT_UNIT}`"
    );
}

/// `key -> every value`, per section, in file order (later assignments of list settings add up).
fn unit_settings(unit: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut section = String::new();
    let mut map: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a setting: {line:?}"));
        map.entry((section.clone(), k.trim().to_string()))
            .or_default()
            .push(v.trim().to_string());
    }
    map
}

#[test]
fn unit_keeps_the_agent_contract() {
    let unit = read(UNIT);
    let s = unit_settings(&unit);
    let one = |sec: &str, key: &str| -> String {
        let v = s
            .get(&(sec.to_string(), key.to_string()))
            .unwrap_or_else(|| panic!("[{sec}] {key}= is missing from {UNIT}"));
        assert_eq!(v.len(), 1, "[{sec}] {key}= is set more than once: {v:?}");
        v[0].clone()
    };
    let words = |sec: &str, key: &str| -> BTreeSet<String> {
        s.get(&(sec.to_string(), key.to_string()))
            .map(|vs| {
                vs.iter()
                    .flat_map(|v| v.split_whitespace().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();

    // How systemd and the agent talk.
    assert_eq!(one("Service", "Type"), "notify");
    assert_eq!(one("Service", "NotifyAccess"), "main");
    assert_eq!(one("Service", "WatchdogSec"), "30");
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert_eq!(
        one("Service", "ExecStart"),
        "/usr/bin/crossdock agent --config /etc/crossdock/agent.toml"
    );
    assert_eq!(one("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(
        one("Service", "RestartPreventExitStatus"),
        "2",
        "exit 2 = bad configuration (docs/CONTRACTS.md)"
    );
    // Ordered after Docker, but must survive Docker restarts: no hard dependency on it.
    assert!(words("Unit", "After").contains("docker.service"));
    assert!(words("Unit", "Wants").contains("docker.service"));
    for hard in ["Requires", "BindsTo", "Requisite", "PartOf"] {
        assert!(
            !words("Unit", hard).contains("docker.service"),
            "{hard}=docker.service would stop the agent whenever Docker restarts"
        );
    }
    // Exactly the privileges the agent needs.
    assert_eq!(
        words("Service", "CapabilityBoundingSet"),
        set(&["CAP_NET_ADMIN", "CAP_NET_RAW"])
    );
    assert_eq!(
        words("Service", "RestrictAddressFamilies"),
        set(&["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"])
    );
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    assert_eq!(one("Service", "ProtectKernelTunables"), "yes");
    assert_eq!(
        words("Service", "ReadWritePaths"),
        set(&["/proc/sys/net", "-/run/xtables.lock"]),
        "the only writable paths besides the runtime directory"
    );
    assert_eq!(
        one("Service", "RuntimeDirectory"),
        "crossdock",
        "the health socket's directory"
    );
    assert_eq!(one("Service", "RuntimeDirectoryMode"), "0750");
    assert_eq!(one("Service", "NoNewPrivileges"), "yes");
    assert_eq!(one("Install", "WantedBy"), "multi-user.target");
}

#[test]
fn init_unit_runs_once_before_docker_and_writes_only_etc_docker() {
    let s = unit_settings(&read(INIT_UNIT));
    let one = |sec: &str, key: &str| -> String {
        let v = s
            .get(&(sec.to_string(), key.to_string()))
            .unwrap_or_else(|| panic!("[{sec}] {key}= is missing from {INIT_UNIT}"));
        assert_eq!(v.len(), 1, "[{sec}] {key}= is set more than once: {v:?}");
        v[0].clone()
    };
    let words = |sec: &str, key: &str| -> BTreeSet<String> {
        s.get(&(sec.to_string(), key.to_string()))
            .map(|vs| {
                vs.iter()
                    .flat_map(|v| v.split_whitespace().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let set = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();

    assert_eq!(one("Service", "Type"), "oneshot");
    assert_eq!(one("Service", "RemainAfterExit"), "yes");
    assert_eq!(one("Service", "ExecStart"), "/usr/bin/crossdock init");
    // After the network (the metadata service), before Docker (which reads daemon.json at start).
    assert!(words("Unit", "After").contains("network-online.target"));
    assert!(words("Unit", "Wants").contains("network-online.target"));
    assert!(words("Unit", "Before").contains("docker.service"));
    assert!(!words("Unit", "After").contains("docker.service"));
    for hard in ["Requires", "BindsTo", "Requisite", "PartOf", "RequiredBy"] {
        assert!(
            !words("Unit", hard).contains("docker.service")
                && !words("Install", hard).contains("docker.service"),
            "{hard}=docker.service: a failed init must not keep Docker from starting"
        );
    }
    assert_eq!(
        words("Install", "WantedBy"),
        set(&["multi-user.target", "docker.service"])
    );
    // No capabilities; the file system read-only except /etc/docker.
    assert_eq!(words("Service", "CapabilityBoundingSet"), BTreeSet::new());
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    assert_eq!(one("Service", "ConfigurationDirectory"), "docker");
    assert_eq!(one("Service", "ConfigurationDirectoryMode"), "0755");
    assert!(
        !s.contains_key(&("Service".to_string(), "ReadWritePaths".to_string())),
        "no writable path besides /etc/docker"
    );
    assert_eq!(
        words("Service", "RestrictAddressFamilies"),
        set(&["AF_UNIX", "AF_INET", "AF_INET6"])
    );
    assert_eq!(one("Service", "NoNewPrivileges"), "yes");
}

// ---------------------------------------------------------------------------------------------
// The Debian package, installed, booted and removed in a throwaway root
// ---------------------------------------------------------------------------------------------

/// Builds the package once per test run: `scripts/package --profile dev --no-build`, around the binary
/// `cargo test` has just built (no nested cargo build), which prints the package's path.
fn deb() -> &'static Path {
    static DEB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = DEB.get_or_init(|| {
        let started = Instant::now();
        let out = Command::new(repo().join("scripts/package"))
            .args(["--profile", "dev", "--no-build"])
            .current_dir(repo())
            .output()
            .map_err(|e| format!("cannot run scripts/package: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/package --profile dev --no-build failed ({}):\n{}",
                out.status,
                text(&out.stderr)
            ));
        }
        let path = PathBuf::from(text(&out.stdout).trim());
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "package: {} ({size} bytes, debug build) in {:.1}s",
            path.display(),
            started.elapsed().as_secs_f64()
        );
        Ok(path)
    });
    match built {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// What `tests/packaging/throwaway-root.sh` recorded: file name -> contents.
#[derive(Debug)]
struct Recorded(BTreeMap<String, String>);

impl Recorded {
    fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "throwaway-root.sh recorded no `{name}`; it recorded: {:?}",
                self.0.keys().collect::<Vec<_>>()
            )
        })
    }
    /// A step's output and exit status.
    fn step(&self, name: &str) -> (&str, i32) {
        let rc = self.get(&format!("{name}.rc")).trim().parse().unwrap_or(-1);
        (self.get(&format!("{name}.out")), rc)
    }
    fn ok(&self, name: &str) -> &str {
        let (out, rc) = self.step(name);
        assert_eq!(rc, 0, "step `{name}` exited {rc}:\n{out}");
        out
    }
}

/// Runs `tests/packaging/throwaway-root.sh <deb> <results> <mode>` and reads what it recorded.
fn run_throwaway_root(mode: &str) -> Result<Recorded, String> {
    let deb = deb();
    let results = tempfile::Builder::new()
        .prefix("crossdock-packaging-")
        .tempdir()
        .map_err(|e| format!("cannot create a results directory: {e}"))?;
    let started = Instant::now();
    // The script's own output (set -x style traces, errors) goes to a file, not a pipe nobody drains.
    let log =
        std::fs::File::create(results.path().join("script.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(repo().join("tests/packaging/throwaway-root.sh"))
        .arg(deb)
        .arg(results.path())
        .arg(mode)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run tests/packaging/throwaway-root.sh: {e}"))?;
    // The script bounds its container with `timeout`; this is the outer bound, by polling.
    let deadline = Instant::now() + Duration::from_secs(480);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            // Our own process group: the script, dpkg, systemd-nspawn and its container.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            return Err("tests/packaging/throwaway-root.sh did not finish within 480 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(results.path()).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let contents = std::fs::read(entry.path()).map_err(|e| e.to_string())?;
        files.insert(
            entry.file_name().to_string_lossy().into_owned(),
            text(&contents),
        );
    }
    // `results` is removed here; everything the tests need is in memory.
    if !status.success() || !files.contains_key("finished") {
        return Err(format!(
            "tests/packaging/throwaway-root.sh ({mode}) failed ({status}):\n{}",
            files.get("script.log").map(String::as_str).unwrap_or("")
        ));
    }
    eprintln!(
        "throwaway root ({mode}): install, verify, upgrade, boot, purge in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(Recorded(files))
}

/// Whether this machine can run the throwaway root; if not, reports why the test is skipped.
fn can_run_throwaway_root() -> bool {
    if !is_root() {
        crossdock_lab::testing::skip("needs root");
        return false;
    }
    [
        ("dpkg", "dpkg"),
        ("unshare", "util-linux"),
        ("systemd-analyze", "systemd"),
    ]
    .iter()
    .all(|(tool, package)| have(tool, package))
}

/// Runs the throwaway-root scenario with the probe once per test run (root only); `None` = skipped.
fn throwaway_root() -> Option<&'static Recorded> {
    if !can_run_throwaway_root() {
        return None;
    }
    static RUN: OnceLock<Result<Recorded, String>> = OnceLock::new();
    let recorded = RUN.get_or_init(|| run_throwaway_root("probe"));
    match recorded {
        Ok(r) => Some(r),
        Err(e) => panic!("{e}"),
    }
}

const EXPECTED_FILES: &[&str] = &[
    "/usr/bin/crossdock",
    "/etc/crossdock/agent.toml",
    "/usr/lib/systemd/system/crossdock-agent.service",
    "/usr/lib/systemd/system/crossdock-init.service",
    "/usr/lib/sysusers.d/crossdock.conf",
    "/usr/lib/tmpfiles.d/crossdock-agent.conf",
    "/usr/share/man/man1/crossdock.1.gz",
    "/usr/share/bash-completion/completions/crossdock",
    "/usr/share/zsh/vendor-completions/_crossdock",
    "/usr/share/fish/vendor_completions.d/crossdock.fish",
    "/usr/share/doc/crossdock/README.md",
    "/usr/share/doc/crossdock/operations.md",
    "/usr/share/doc/crossdock/copyright",
    "/usr/share/doc/crossdock/examples/README.md",
    "/usr/share/doc/crossdock/examples/ram-policy.json",
    "/usr/share/doc/crossdock/examples/cloud-init-user-data.yaml",
    "/usr/share/doc/crossdock/examples/cloud-init-user-data-per-host.yaml",
    "/usr/share/doc/crossdock/examples/prometheus/crossdock-alerts.yml",
    "/usr/share/doc/crossdock/examples/prometheus/crossdock-alerts.test.yml",
    "/usr/share/doc/crossdock/examples/grafana/crossdock-fleet.json",
];

#[test]
fn package_contents_and_metadata() {
    if !have("dpkg-deb", "dpkg") {
        return;
    }
    let deb = deb();
    let info = text(&run(Command::new("dpkg-deb").arg("-I").arg(deb)).stdout);
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in the control file:\n{info}"))
            .to_string()
    };
    assert_eq!(field("Package"), "crossdock");
    assert_eq!(field("Architecture"), "amd64");
    let depends = field("Depends");
    for dep in ["iptables", "systemd", "libc6"] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    // The maintainer scripts are the generated ones: group, tmpfiles, never a start on install.
    let control = tempfile::tempdir().unwrap();
    assert!(run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(control.path()))
    .status
    .success());
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    assert_eq!(conffiles.trim(), "/etc/crossdock/agent.toml");
    let postinst = std::fs::read_to_string(control.path().join("postinst")).unwrap();
    assert!(
        postinst.contains("systemd-sysusers") && postinst.contains("crossdock.conf"),
        "{postinst}"
    );
    assert!(
        postinst.contains("try-restart crossdock-agent.service"),
        "{postinst}"
    );
    assert!(
        !postinst.contains("deb-systemd-invoke start") && !postinst.contains("_dh_action=start"),
        "the package must not start the agent on a fresh install:\n{postinst}"
    );
    // crossdock-init is shipped but never started or re-run by the package, and enabled only again
    // on an upgrade where the operator had enabled it (the `was-enabled` guard): it rewrites Docker's
    // configuration, which only cloud-init or the operator may decide to do.
    for line in postinst.lines().filter(|l| l.contains("crossdock-init")) {
        assert!(
            !line.contains("deb-systemd-invoke") && !line.contains("systemctl"),
            "postinst starts or restarts crossdock-init: {line}\n{postinst}"
        );
    }
    assert!(
        postinst.contains("if deb-systemd-helper --quiet was-enabled crossdock-init.service; then"),
        "crossdock-init must be enabled only where it was enabled before:\n{postinst}"
    );

    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(deb)).stdout);
    let paths: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    for f in EXPECTED_FILES {
        assert!(paths.contains(*f), "{f} is not in the package:\n{listing}");
    }
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw------- 0/0") && l.ends_with("./etc/crossdock/agent.toml")),
        "the configuration (which may hold a secret) must be 0600 root:\n{listing}"
    );

    // The generated assets are real: a man page with the subcommands, completions that know them.
    let root = tempfile::tempdir().unwrap();
    assert!(
        run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root.path()))
            .status
            .success()
    );
    let man = run(Command::new("gzip")
        .arg("-dc")
        .arg(root.path().join("usr/share/man/man1/crossdock.1.gz")));
    let man = text(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH crossdock"),
        "not a man page:\n{man}"
    );
    for sub in ["agent", "status", "deregister", "doctor", "init"] {
        assert!(man.contains(sub), "man page does not mention {sub}");
    }
    let bash = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/crossdock"),
    )
    .unwrap();
    assert!(
        bash.contains("deregister") && bash.contains("complete"),
        "bash completion looks wrong"
    );
    let size = std::fs::metadata(deb).unwrap().len();
    eprintln!("package size: {size} bytes ({} files)", paths.len());
}

#[test]
fn package_installs_into_a_throwaway_root_without_starting_anything() {
    let Some(r) = throwaway_root() else { return };
    let out = r.ok("install");
    assert!(out.contains("Setting up crossdock"), "{out}");
    assert!(
        r.ok("installed-status").starts_with("ii "),
        "{}",
        r.get("installed-status.out")
    );
    let files: BTreeSet<&str> = r.ok("installed-files").lines().collect();
    for f in EXPECTED_FILES {
        assert!(files.contains(f), "dpkg -L does not list {f}: {files:?}");
    }
    assert!(r
        .ok("installed-conffiles")
        .contains("/etc/crossdock/agent.toml"));
    assert!(
        r.ok("installed-group").starts_with("crossdock:x:"),
        "the crossdock group was not created"
    );
    assert_eq!(r.ok("installed-config-mode").trim(), "600 root root");
    // Not enabled (no symlinks under /etc/systemd/system) and not started (no runtime directory).
    assert_eq!(
        r.ok("installed-enablement").trim(),
        "",
        "the package enabled the unit"
    );
    let (_, rc) = r.step("installed-runtime-dir");
    assert_ne!(
        rc, 0,
        "/run/crossdock exists after install: something started the agent"
    );
}

#[test]
fn unit_verify_is_clean_in_the_installed_root() {
    let Some(r) = throwaway_root() else { return };
    for (step, unit) in [
        ("verify", "crossdock-agent.service"),
        ("verify-init", "crossdock-init.service"),
    ] {
        let (out, rc) = r.step(step);
        eprintln!("systemd-analyze verify {unit}: exit {rc}, output {out:?}");
        assert_eq!(rc, 0, "systemd-analyze verify {unit} failed:\n{out}");
        assert_eq!(
            out.trim(),
            "",
            "systemd-analyze verify {unit} printed warnings:\n{out}"
        );
    }
}

#[test]
fn package_upgrade_keeps_the_edited_configuration() {
    let Some(r) = throwaway_root() else { return };
    let out = r.ok("upgrade");
    assert!(
        out.contains("over (0.1.0-1)") || out.contains("over ("),
        "not an upgrade:\n{out}"
    );
    assert!(
        r.ok("upgraded-status").contains("+upgradetest"),
        "{}",
        r.get("upgraded-status.out")
    );
    assert_eq!(
        r.ok("upgraded-config").trim(),
        "# local edit made by the packaging test",
        "the upgrade replaced the edited /etc/crossdock/agent.toml"
    );
}

#[test]
fn package_removes_and_purges_cleanly() {
    let Some(r) = throwaway_root() else { return };
    r.ok("remove");
    assert!(
        r.ok("removed-status").starts_with("rc "),
        "after remove: {}",
        r.get("removed-status.out")
    );
    r.ok("removed-config"); // the conffile stays until purge
    assert_ne!(
        r.step("removed-binary").1,
        0,
        "/usr/bin/crossdock is still there after remove"
    );
    r.ok("purge");
    let (out, rc) = r.step("purged-status");
    assert!(
        rc != 0 && out.contains("no packages found"),
        "after purge: {out}"
    );
    assert_eq!(
        r.ok("leftovers").trim(),
        "",
        "files left behind after purge"
    );
}

/// The names of the checks the probe must report `ok` (tests/packaging/sandbox-probe.py).
const PROBE_CHECKS: &[&str] = &[
    "capabilities are exactly CAP_NET_ADMIN CAP_NET_RAW, no new privileges, seccomp",
    "sysctl net.ipv4.ip_forward is writable",
    "sysctl net.ipv4.conf.lo.forwarding is writable",
    "sysctl kernel.* is read-only",
    "iptables (nft backend) edits raw, nat and filter",
    "iptables-legacy takes /run/xtables.lock and edits filter",
    "netlink: address and route changes",
    "health socket bound in /run/crossdock, mode 0660, group crossdock",
    "Docker socket reachable",
    "outbound TCP over IPv4",
    "outbound TCP over IPv6",
    "/etc is read-only",
    "/usr is read-only",
    "/var is read-only",
    "/home is inaccessible",
    "/tmp is private and writable",
    "no raw devices",
    "packet sockets are refused",
    "namespaces cannot be created",
    "watchdog interval is 30 s",
];

#[test]
fn hardened_unit_lets_the_agent_work_and_takes_the_rest() {
    let Some(r) = throwaway_root() else { return };
    if let Some(why) = r.0.get("boot.skipped") {
        crossdock_lab::testing::skip(&format!("{}; scripts/install-deps installs it", why.trim()));
        return;
    }
    let (boot, rc) = r.step("boot");
    let probe = r.get("probe.log");
    assert_eq!(
        rc, 0,
        "the container did not exit cleanly ({rc}):\n{boot}\nprobe:\n{probe}"
    );
    let failed: Vec<&str> = probe.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed.is_empty(),
        "the sandbox is wrong:\n{}\n\nfull probe log:\n{probe}",
        failed.join("\n")
    );
    for check in PROBE_CHECKS {
        assert!(
            probe.lines().any(|l| l == format!("ok {check}")),
            "probe did not report `ok {check}`:\n{probe}"
        );
    }
    // /proc/sys was one writable mount before the unit started (nspawn's split undone); inside the
    // unit it is read-only with /proc/sys/net writable again: the unit's own doing.
    let unsplit = r.get("proc-sys-mounts-unsplit");
    assert!(
        !unsplit.contains(" /proc/sys/net "),
        "nspawn's /proc/sys/net mount was not undone:\n{unsplit}"
    );
    assert!(probe.contains("mount /proc/sys ro,"), "{probe}");
    assert!(probe.contains("mount /proc/sys/net rw,"), "{probe}");

    // What systemd saw: READY from the main process, the watchdog armed, no restarts.
    let started = r.get("state-started");
    for want in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogUSec=30s",
        "ActiveState=active",
        "SubState=running",
        "NRestarts=0",
    ] {
        assert!(
            started.lines().any(|l| l == want),
            "after start, want {want}:\n{started}"
        );
    }
    // What the kernel saw, from outside the sandbox: the rules and the sysctl are really there.
    let saved = r.get("iptables-save");
    assert!(
        saved.contains(
            "-s 10.250.0.0/16 -d 10.250.1.0/24 -m comment --comment crossdock-probe -j ACCEPT"
        ),
        "{saved}"
    );
    assert_eq!(r.get("ip-forward").trim(), "1");
    let sock = r.get("socket-stat");
    assert!(
        sock.contains("/run/crossdock 750 root crossdock directory"),
        "{sock}"
    );
    assert!(
        sock.contains("/run/crossdock/agent.sock 660 root crossdock socket"),
        "{sock}"
    );
    // Reload is SIGHUP to the main process; stop is a clean exit.
    assert_eq!(r.get("reload.rc").trim(), "0");
    assert!(probe.contains("reloaded on SIGHUP"), "{probe}");
    assert!(r.get("state-reloaded").contains("ActiveState=active"));
    let stopped = r.get("state-stopped");
    assert!(
        stopped.contains("ActiveState=inactive") && stopped.contains("Result=success"),
        "{stopped}"
    );
}

/// `systemctl show` output as `property -> value`.
fn show(text: &str) -> BTreeMap<&str, &str> {
    text.lines().filter_map(|l| l.split_once('=')).collect()
}

/// The lines of an `iptables-save` dump that belong to crossdock (its chains, rules and jumps).
fn crossdock_lines(saved: &str) -> BTreeSet<&str> {
    saved
        .lines()
        .filter(|l| l.contains("crossdock") || l.contains("CROSSDOCK"))
        .collect()
}

/// The position of the first line of `saved` containing every one of `words`.
fn line_of(saved: &str, words: &[&str]) -> Option<usize> {
    saved
        .lines()
        .position(|l| words.iter().all(|w| l.contains(w)))
}

/// The installed package's own binary under the installed unit, next to Debian's dockerd started by
/// its own units inside the container (tests/packaging/agent-check.sh drives it): READY from the real
/// process, the health socket served to the crossdock group only, forwarding and the firewall rules
/// written from inside the sandbox, a reload that applies a new cluster range (and leaves the log
/// format for the restart), a Docker restart survived and repaired, a stop that keeps the rules, a
/// start that adopts them without a write, and `--cleanup`. Provider none: no cloud API is called,
/// so the route side and its credentials are not covered here (the lab end-to-end tests cover them).
#[test]
fn installed_agent_runs_under_the_hardened_unit() {
    if !can_run_throwaway_root()
        || !have("systemd-nspawn", "systemd-container")
        || !have("dockerd", "docker.io")
        || !have("curl", "curl")
    {
        return;
    }
    let r = run_throwaway_root("agent").unwrap_or_else(|e| panic!("{e}"));
    let journal = r.0.get("agent-journal").cloned().unwrap_or_default();
    let (boot, rc) = r.step("boot");
    assert_eq!(
        rc, 0,
        "the container did not exit cleanly ({rc}):\n{boot}\nagent journal:\n{journal}"
    );
    assert_eq!(
        r.get("check-done").trim(),
        "done",
        "the check did not finish:\n{}",
        r.0.get("check.log").map(String::as_str).unwrap_or("")
    );
    // Every wait of the check came true before its deadline.
    for wait in [
        "healthy-started",
        "reload-applied",
        "docker-reconnected",
        "healthy-after-docker",
        "healthy-restarted",
    ] {
        assert_eq!(
            r.get(&format!("{wait}.rc")).trim(),
            "0",
            "agent-check.sh waited in vain for {wait}\nagent journal:\n{journal}\nDocker:\n{}",
            r.0.get("docker-journal").map(String::as_str).unwrap_or("")
        );
    }
    let json = |name: &str| -> serde_json::Value {
        let out = r.ok(name);
        serde_json::from_str(out).unwrap_or_else(|e| panic!("{name} is not JSON ({e}):\n{out}"))
    };
    let no_errors = |name: &str, v: &serde_json::Value| {
        let c = &v["counters"];
        assert_eq!(c["reconcile_errors"], 0, "{name}: {c}\n{journal}");
        assert_eq!(c["errors"], serde_json::json!({}), "{name}: {c}\n{journal}");
    };

    // 1. Started: READY came from the agent (Type=notify is active only after READY=1), the watchdog
    //    is armed, the status line is the agent's own.
    let started = show(r.get("state-started"));
    for (k, v) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("WatchdogUSec", "30s"),
        ("ActiveState", "active"),
        ("SubState", "running"),
        ("NRestarts", "0"),
    ] {
        assert_eq!(
            started.get(k),
            Some(&v),
            "after start: {started:?}\n{journal}"
        );
    }
    // The agent's own line: READY=1 says the socket is bound, later passes say how it stands.
    assert!(
        ["health socket bound", "ready: ", "pending: "]
            .iter()
            .any(|p| started["StatusText"].starts_with(p)),
        "{started:?}"
    );
    let sock = r.get("socket-stat");
    assert!(
        sock.contains("/run/crossdock 750 root crossdock directory")
            && sock.contains("/run/crossdock/agent.sock 660 root crossdock socket"),
        "{sock}"
    );
    assert_eq!(r.ok("healthz").trim(), "ok\n\nHTTP 200");
    let status = json("status-started");
    for (cond, state) in [
        ("docker", "ready"),
        ("subnet", "ready"),
        ("forwarding", "ready"),
        ("firewall", "ready"),
        ("route", "disabled"),
        ("credentials", "disabled"),
    ] {
        assert_eq!(
            status["conditions"][cond]["state"], state,
            "{cond}: {}",
            status["conditions"][cond]
        );
    }
    assert_eq!(
        status["subnet"], "10.250.1.0/24",
        "learned from Docker's bip"
    );
    assert_eq!(status["bridge"], "docker0");
    assert_eq!(status["external_interface"], "eth0");
    assert!(status["docker_version"].is_string(), "{status}");
    no_errors("status-started", &status);
    // The check turned eth0's forwarding off after Docker started: the agent wrote it back.
    assert!(
        status["counters"]["sysctl_changes"].as_u64() >= Some(1),
        "{status}"
    );
    assert_eq!(
        r.get("forwarding-started").trim(),
        "1 1",
        "ip_forward, eth0 forwarding"
    );
    let saved = r.get("iptables-started");
    for rule in [
        "-A CROSSDOCK-FORWARD -s 10.250.0.0/16 -d 10.250.1.0/24 -o docker0",
        "-A CROSSDOCK-POSTROUTING -s 10.250.1.0/24 -d 10.250.0.0/16",
        "-A CROSSDOCK-PREROUTING -s 10.250.0.0/16 -d 10.250.1.0/24 ! -i docker0",
        "-A DOCKER-USER -m comment --comment \"crossdock:jump\" -j CROSSDOCK-FORWARD",
        "-A POSTROUTING -m comment --comment \"crossdock:jump\" -j CROSSDOCK-POSTROUTING",
        "-A PREROUTING -m comment --comment \"crossdock:jump\" -j CROSSDOCK-PREROUTING",
    ] {
        assert!(saved.contains(rule), "missing `{rule}`:\n{saved}");
    }
    let (out, rc) = r.step("status-member");
    assert_eq!(
        rc, 0,
        "`crossdock status` as a member of the crossdock group:\n{out}"
    );
    let (out, rc) = r.step("status-stranger");
    assert!(
        rc != 0 && out.contains("Permission denied"),
        "`crossdock status` as a user outside the crossdock group ({rc}):\n{out}"
    );

    // 2. Reload: the same process applies the new cluster range and names what waits for a restart.
    assert_eq!(r.ok("reload").trim(), "");
    let reloaded = show(r.get("state-reloaded"));
    assert_eq!(
        reloaded.get("MainPID"),
        started.get("MainPID"),
        "{reloaded:?}"
    );
    assert_eq!(reloaded.get("ActiveState"), Some(&"active"));
    assert_eq!(reloaded.get("NRestarts"), Some(&"0"));
    let status = json("status-reloaded");
    assert_eq!(status["counters"]["config_reloads"], 1, "{status}");
    assert_eq!(status["counters"]["config_reload_errors"], 0, "{status}");
    no_errors("status-reloaded", &status);
    let saved = r.get("iptables-reloaded");
    for rule in [
        "-A CROSSDOCK-FORWARD -s 10.251.0.0/16 -d 10.250.1.0/24 -o docker0",
        "-A CROSSDOCK-POSTROUTING -s 10.250.1.0/24 -d 10.251.0.0/16",
        "-A CROSSDOCK-PREROUTING -s 10.251.0.0/16 -d 10.250.1.0/24 ! -i docker0",
    ] {
        assert!(
            saved.contains(rule),
            "after reload, missing `{rule}`:\n{saved}"
        );
    }
    assert!(
        journal
            .lines()
            .any(|l| l.contains("takes effect when the agent restarts")
                && l.contains("log_format")),
        "the reload did not say that log_format waits for a restart:\n{journal}"
    );
    let rules = crossdock_lines(saved);

    // 3. Docker restarted under the agent: same process, and its jump back in front of the
    //    MASQUERADE rule Docker re-inserts at the top of nat POSTROUTING.
    r.ok("docker-restart");
    let after = show(r.get("state-after-docker"));
    assert_eq!(
        after.get("MainPID"),
        started.get("MainPID"),
        "a Docker restart restarted the agent: {after:?}\n{journal}"
    );
    assert_eq!(after.get("ActiveState"), Some(&"active"));
    let saved = r.get("iptables-after-docker");
    let jump = line_of(saved, &["-A POSTROUTING", "crossdock:jump"]);
    let masquerade = line_of(saved, &["-A POSTROUTING", "-j MASQUERADE"]);
    assert!(
        jump.is_some() && masquerade.is_some() && jump < masquerade,
        "after the Docker restart the NAT exemption is not in front of Docker's MASQUERADE:\n{saved}"
    );
    assert_eq!(crossdock_lines(saved), rules, "{saved}");

    // 4. Stopped: a clean exit, every rule and sysctl left in place.
    let stopped = show(r.get("state-stopped"));
    assert_eq!(stopped.get("ActiveState"), Some(&"inactive"), "{stopped:?}");
    assert_eq!(
        stopped.get("Result"),
        Some(&"success"),
        "{stopped:?}\n{journal}"
    );
    assert_eq!(
        crossdock_lines(r.get("iptables-stopped")),
        rules,
        "stopping the agent changed its rules"
    );
    assert_eq!(r.get("forwarding-stopped").trim(), "1 1");

    // 5. Started again: a new process finds everything in place and writes nothing; the log format
    //    changed in step 2 applies now.
    r.ok("start");
    let restarted = show(r.get("state-restarted"));
    assert_eq!(restarted.get("SubState"), Some(&"running"), "{restarted:?}");
    assert_ne!(restarted.get("MainPID"), started.get("MainPID"));
    assert_eq!(restarted.get("NRestarts"), Some(&"0"));
    let status = json("status-restarted");
    no_errors("status-restarted", &status);
    for counter in [
        "rules_added",
        "rules_removed",
        "chains_created",
        "chains_removed",
        "sysctl_changes",
    ] {
        assert_eq!(
            status["counters"][counter], 0,
            "a restart must adopt what is there: {counter} in {}",
            status["counters"]
        );
    }
    let lines: Vec<&str> = r
        .get("journal-restarted")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        !lines.is_empty() && lines.iter().all(|l| l.starts_with('{')),
        "after the restart the agent should log JSON (log_format = \"json\"):\n{}",
        lines.join("\n")
    );

    // 6. Decommission: stopped cleanly again, then --cleanup removes crossdock's rules and chains
    //    and nothing of Docker's.
    let stopped = show(r.get("state-stopped-again"));
    assert_eq!(stopped.get("Result"), Some(&"success"), "{stopped:?}");
    let out = r.ok("cleanup");
    assert!(out.contains("removed 9 rules and 3 chains"), "{out}");
    let cleaned = r.get("iptables-cleaned");
    assert!(
        crossdock_lines(cleaned).is_empty(),
        "--cleanup left:\n{cleaned}"
    );
    for docker in [":DOCKER-USER", "-A FORWARD -j DOCKER-USER", "-j MASQUERADE"] {
        assert!(
            cleaned.contains(docker),
            "--cleanup removed Docker's `{docker}`:\n{cleaned}"
        );
    }

    // Nothing failed along the way, and the package still leaves nothing behind.
    let errors: Vec<&str> = journal.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(
        errors.is_empty(),
        "errors in the agent's journal:\n{journal}"
    );
    assert_eq!(
        r.ok("leftovers").trim(),
        "",
        "files left behind after purge"
    );
    eprintln!(
        "agent under the unit: READY, reload, Docker restart, stop, adopting start, --cleanup: {} crossdock rules/chains",
        rules.len()
    );
}

// ---------------------------------------------------------------------------------------------
// cloud-init user data
// ---------------------------------------------------------------------------------------------

/// The one user data for every host of a fleet (no per-host value).
const USER_DATA: &str = "deploy/cloud-init/user-data.yaml";
/// The per-host variant: the operator renders each host's `bip`.
const USER_DATA_PER_HOST: &str = "deploy/cloud-init/user-data-per-host.yaml";

fn cloud_init_schema(file: &Path) -> (bool, String) {
    let out = run(Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file));
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn cloud_init_user_data_passes_the_schema_and_a_broken_copy_does_not() {
    if !have("cloud-init", "cloud-init") {
        return;
    }
    for file in [USER_DATA, USER_DATA_PER_HOST] {
        let (ok, out) = cloud_init_schema(&repo().join(file));
        assert!(ok, "cloud-init schema refused {file}:\n{out}");
    }

    let original = read(USER_DATA);
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        // A write_files entry without its path.
        (
            "missing path",
            original.replacen(
                "  - path: /etc/crossdock/agent.toml",
                "  - paht: /etc/crossdock/agent.toml",
                1,
            ),
        ),
        // A file mode as a YAML integer, which cloud-init would misread as decimal.
        (
            "integer permissions",
            original.replacen("permissions: '0600'", "permissions: 600", 1),
        ),
    ];
    for (what, text) in broken {
        assert_ne!(
            text, original,
            "the {what} mutation did not apply: {USER_DATA} changed shape"
        );
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, text).unwrap();
        let (ok, out) = cloud_init_schema(&path);
        assert!(!ok, "cloud-init schema accepted a copy with {what}:\n{out}");
    }
}

/// A user data file as JSON, read with the YAML library cloud-init itself uses; `None` (the test
/// is skipped) without python3-yaml.
fn user_data_doc(file: &str) -> Option<serde_json::Value> {
    if !have(
        "/usr/bin/python3",
        "python3-yaml (a dependency of cloud-init)",
    ) {
        return None;
    }
    let out = run(Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(repo().join(file)));
    assert!(
        out.status.success(),
        "cannot read {file} as YAML: {}",
        text(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// The content of the file `path` that the user data `doc` writes.
fn written(doc: &serde_json::Value, file: &str, path: &str) -> Option<String> {
    doc["write_files"]
        .as_array()
        .unwrap_or_else(|| panic!("{file} has no write_files"))
        .iter()
        .find(|f| f["path"] == path)
        .and_then(|f| f["content"].as_str())
        .map(String::from)
}

#[test]
fn cloud_init_user_data_is_one_fleet_configuration_for_every_host() {
    let Some(doc) = user_data_doc(USER_DATA) else {
        return;
    };
    let toml = written(&doc, USER_DATA, "/etc/crossdock/agent.toml")
        .unwrap_or_else(|| panic!("{USER_DATA} does not write /etc/crossdock/agent.toml"));
    // The workspace's own reader (used by the lab's fleet test) reads the same text.
    let raw = read(USER_DATA);
    assert_eq!(
        crossdock_init::userdata::write_files_content(&raw, "/etc/crossdock/agent.toml").as_deref(),
        Some(toml.as_str()),
        "crossdock_init::userdata and cloud-init's YAML library disagree about {USER_DATA}"
    );
    let config = crossdock_config::parse(&toml).unwrap_or_else(|e| {
        panic!("the agent.toml written by {USER_DATA} is refused by the agent: {e}")
    });
    assert_eq!(config.cloud.provider, crossdock_config::Provider::Alibaba);
    assert_eq!(config.subnet.mode, crossdock_config::SubnetMode::Derived);
    assert_eq!(
        config
            .fleet
            .tag
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("crossdock-cluster=prod")
    );
    // No per-host value: Docker's subnet is not in the file, crossdock init derives it.
    assert_eq!(
        written(&doc, USER_DATA, "/etc/docker/daemon.json"),
        None,
        "{USER_DATA} must not write a per-host daemon.json"
    );
    assert!(
        !doc.to_string().contains("\"bip\""),
        "{USER_DATA} sets a bip"
    );
    // The example of its comment holds: a 192.168.0.0/16 VPC, 192.168.1.10 -> 10.1.10.0/24.
    let subnet = config
        .derived_subnet(
            "192.168.1.10".parse().unwrap(),
            Some("192.168.0.0/16".parse().unwrap()),
        )
        .unwrap();
    assert_eq!(subnet.to_string(), "10.1.10.0/24");
    assert!(
        raw.contains("192.168.1.10 gets 10.1.10.0/24"),
        "the comment's example changed"
    );

    // runcmd: install (keeping the configuration), init before Docker restarts, then the agent.
    let steps: Vec<String> = doc["runcmd"]
        .as_array()
        .expect("runcmd")
        .iter()
        .map(ToString::to_string)
        .collect();
    let at = |what: &[&str]| -> usize {
        steps
            .iter()
            .position(|s| what.iter().all(|w| s.contains(w)))
            .unwrap_or_else(|| panic!("runcmd has no step with {what:?}: {steps:#?}"))
    };
    let install = at(&["--force-confold"]);
    let init = at(&["enable", "--now", "crossdock-init.service"]);
    let docker = at(&["restart", "docker.service"]);
    let agent = at(&["enable", "--now", "crossdock-agent.service"]);
    assert!(
        install < init && init < docker && docker < agent,
        "runcmd order must be install, crossdock-init, Docker restart, agent: {steps:#?}"
    );
}

#[test]
fn cloud_init_per_host_user_data_writes_a_consistent_configuration() {
    let Some(doc) = user_data_doc(USER_DATA_PER_HOST) else {
        return;
    };
    let content = |path: &str| -> String {
        written(&doc, USER_DATA_PER_HOST, path)
            .unwrap_or_else(|| panic!("{USER_DATA_PER_HOST} does not write {path}"))
    };
    let config =
        crossdock_config::parse(&content("/etc/crossdock/agent.toml")).unwrap_or_else(|e| {
            panic!("the agent.toml written by {USER_DATA_PER_HOST} is refused by the agent: {e}")
        });
    assert_eq!(config.cloud.provider, crossdock_config::Provider::Alibaba);
    assert_eq!(config.subnet.mode, crossdock_config::SubnetMode::Docker);

    let daemon: serde_json::Value = serde_json::from_str(&content("/etc/docker/daemon.json"))
        .unwrap_or_else(|e| panic!("daemon.json in {USER_DATA_PER_HOST} is not JSON: {e}"));
    assert!(
        daemon.get("allow-direct-routing").is_none(),
        "the agent's raw-table ACCEPT makes allow-direct-routing unnecessary"
    );
    let bip = daemon["bip"].as_str().expect("daemon.json sets bip");
    // The bridge's subnet (bip with the host bits cleared) must lie inside cluster_cidrs.
    let (addr, len) = bip.split_once('/').expect("bip is address/prefix");
    let (addr, len): (std::net::Ipv4Addr, u32) = (addr.parse().unwrap(), len.parse().unwrap());
    let net =
        std::net::Ipv4Addr::from(u32::from(addr) & (!0u32).checked_shl(32 - len).unwrap_or(0));
    crossdock_config::check_subnet(format!("{net}/{len}").parse().unwrap(), &config)
        .unwrap_or_else(|e| panic!("bip {bip} does not fit the cluster range: {e}"));

    let runcmd = doc["runcmd"].to_string();
    for want in [
        "--force-confold",
        "crossdock-agent.service",
        "enable",
        "restart",
    ] {
        assert!(runcmd.contains(want), "runcmd lacks {want}: {runcmd}");
    }
}

// ---------------------------------------------------------------------------------------------
// RAM policy
// ---------------------------------------------------------------------------------------------

/// Every `Product::Vpc|Ecs, "<Action>"` call site in the non-test code of the workspace's crates
/// (the emulator excluded: it serves actions, it does not call them), as `vpc:<Action>`.
fn actions_called_by_the_code() -> BTreeSet<String> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(&p, files);
            } else if p.extension().is_some_and(|e| e == "rs") {
                files.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for krate in std::fs::read_dir(repo().join("crates")).unwrap().flatten() {
        if krate.file_name() != "crossdock-vpcsim" && krate.path().join("src").is_dir() {
            walk(&krate.path().join("src"), &mut files);
        }
    }
    let mut actions = BTreeSet::new();
    for file in files {
        let src = std::fs::read_to_string(&file).unwrap();
        let code = src.split("#[cfg(test)]").next().unwrap_or("");
        for (marker, prefix) in [("Product::Vpc", "vpc"), ("Product::Ecs", "ecs")] {
            for (i, _) in code.match_indices(marker) {
                let rest = code[i + marker.len()..].trim_start();
                let Some(rest) = rest.strip_prefix(',') else {
                    continue;
                };
                let Some(rest) = rest.trim_start().strip_prefix('"') else {
                    continue;
                };
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if rest[name.len()..].starts_with('"')
                    && name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                {
                    actions.insert(format!("{prefix}:{name}"));
                }
            }
        }
    }
    actions
}

#[test]
fn ram_policy_allows_exactly_the_actions_crossdock_calls() {
    let policy: serde_json::Value = serde_json::from_str(&read("deploy/ram-policy.json"))
        .unwrap_or_else(|e| panic!("deploy/ram-policy.json is not JSON: {e}"));
    assert_eq!(policy["Version"], "1");
    let mut granted = BTreeSet::new();
    for st in policy["Statement"].as_array().expect("Statement is a list") {
        assert_eq!(st["Effect"], "Allow", "{st}");
        for action in st["Action"].as_array().expect("Action is a list") {
            let a = action.as_str().unwrap().to_string();
            assert!(!a.contains('*'), "wildcard action {a}");
            assert!(granted.insert(a.clone()), "{a} is listed twice");
        }
    }
    let called = actions_called_by_the_code();
    assert!(
        called.len() >= 4,
        "found only {called:?} in crates/*/src: the call sites no longer look like `Product::Vpc, \"Action\"`; update actions_called_by_the_code"
    );
    assert_eq!(
        granted, called,
        "deploy/ram-policy.json must grant exactly the actions the code calls (left: policy, right: code)"
    );
    eprintln!(
        "RAM policy: {} actions, all called: {called:?}",
        granted.len()
    );
}

// ---------------------------------------------------------------------------------------------
// The default configuration file
// ---------------------------------------------------------------------------------------------

/// `section -> keys` of a TOML text of the agent's simple shape (`key = value` lines, `[section]`).
fn keys(toml: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut out = BTreeSet::new();
    for line in toml.lines().map(str::trim) {
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = format!("{s}.");
        } else if let Some((k, _)) = line.split_once(" = ") {
            if !k.starts_with('#') {
                out.insert(format!("{section}{k}"));
            }
        }
    }
    out
}

#[test]
fn default_config_documents_every_setting_commented_out() {
    let shipped = read("packaging/agent.toml");
    // As shipped: nothing set, so the agent refuses to start until cluster_cidrs is chosen.
    let parsed =
        crossdock_config::parse_unvalidated(&shipped).expect("packaging/agent.toml is valid TOML");
    assert_eq!(
        parsed,
        crossdock_config::Config::default(),
        "a setting is not commented out"
    );
    let err =
        crossdock_config::parse(&shipped).expect_err("the shipped file must not be runnable as is");
    assert_eq!(err.field, "cluster_cidrs", "{err}");
    assert_eq!(
        parsed.cloud.provider,
        crossdock_config::Provider::None,
        "safe default: no cloud API"
    );

    // Uncommented (`#key = value` -> `key = value`): every setting, with its documented value.
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let full = crossdock_config::parse(&uncommented).unwrap_or_else(|e| {
        panic!("packaging/agent.toml with every setting uncommented is refused: {e}")
    });
    let expected = crossdock_config::Config {
        cluster_cidrs: full.cluster_cidrs.clone(),
        ..Default::default()
    };
    assert_eq!(
        full, expected,
        "a documented value differs from the agent's default"
    );
    let documented = keys(&uncommented);
    let all = keys(&crossdock_config::Config::default().to_toml());
    let missing: Vec<_> = all.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "packaging/agent.toml does not document {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// what the packaged binary links
// ---------------------------------------------------------------------------------------------

/// The binary installed on every host is the agent's: the lab and the VPC/STS emulator sit behind the
/// root package's `lab` feature, which scripts/package (and `cargo deb`) leave off. Checked on the
/// dependency graph cargo resolves for that configuration, so no second build is needed here
/// (scripts/test lints the configuration: `cargo clippy -p crossdock --no-default-features`).
#[test]
fn the_packaged_build_leaves_the_lab_and_the_emulator_out() {
    let tree = |extra: &[&str]| -> BTreeSet<String> {
        let out = run(Command::new(env!("CARGO"))
            .args([
                "tree",
                "-p",
                "crossdock",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .args(["--format", "{p}", "--offline"])
            .args(extra)
            .current_dir(repo()));
        assert!(out.status.success(), "cargo tree: {}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|c| c.starts_with("crossdock"))
            .map(String::from)
            .collect()
    };
    let shipped = tree(&["--no-default-features"]);
    for c in [
        "crossdock-agent",
        "crossdock-doctor",
        "crossdock-init",
        "crossdock-alibaba",
    ] {
        assert!(shipped.contains(c), "{c} missing from {shipped:?}");
    }
    for c in ["crossdock-lab", "crossdock-vpcsim", "crossdock-bench"] {
        assert!(!shipped.contains(c), "the packaged binary links {c}");
    }
    // The development build keeps the lab, so `crossdock lab` and the tests work from a clone.
    assert!(tree(&[]).contains("crossdock-lab"));
    // scripts/package builds exactly that configuration, and `cargo deb` on its own would too.
    assert!(read("scripts/package").contains("--no-default-features"));
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    assert_eq!(
        manifest["package"]["metadata"]["deb"]["default-features"].as_bool(),
        Some(false)
    );
}
