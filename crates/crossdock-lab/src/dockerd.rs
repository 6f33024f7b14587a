//! A real dockerd per simulated host, started inside that host's network namespace.
//!
//! crossdock's job is to work with Docker's own bridge, NAT and firewall rules, so the lab and the
//! integration tests run the real daemon, in both generations that matter: Debian 12's Docker 20.10 and a
//! Docker 28.x (28.2 added the raw-table drop of traffic to container IPs arriving from other interfaces).
//! Each daemon is isolated by directory: its own data root, exec root (hence its own managed containerd),
//! pid file, API socket, containerd namespaces and cgroup parent, all derived from `DIR`. That is what makes
//! clean-up precise: the processes it leaves behind are those whose command line names `DIR` or whose cgroup
//! is its cgroup parent, and its mounts are those under `DIR`.
//!
//! It is started with `nsenter --net=`, not `ip netns exec` (which remounts /sys and hides the cgroups).

use crate::http;
use crate::procs;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/install-deps` unpacks Docker 28.
pub const DOCKER28_ROOT: &str = "/var/cache/crossdock/docker28/root";
/// The busybox root filesystem `scripts/install-deps` builds.
pub const BUSYBOX_ROOTFS: &str = "/var/cache/crossdock/busybox-rootfs.tar";
/// The image the lab imports it as.
pub const BUSYBOX_IMAGE: &str = "busybox:lab";

/// How long a daemon may take to answer `/_ping` after starting (2 cores, several labs in parallel).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Which Docker engine to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum DockerVersion {
    /// Debian 12's docker.io (20.10.x), `/usr/sbin/dockerd`.
    #[default]
    #[serde(rename = "20")]
    V20,
    /// Debian sid's docker.io (28.x), unpacked by `scripts/install-deps`.
    #[serde(rename = "28")]
    V28,
}

impl DockerVersion {
    pub const ALL: [DockerVersion; 2] = [DockerVersion::V20, DockerVersion::V28];

    /// The dockerd binary.
    pub fn dockerd(self) -> PathBuf {
        match self {
            DockerVersion::V20 => PathBuf::from("/usr/sbin/dockerd"),
            DockerVersion::V28 => Path::new(DOCKER28_ROOT).join("usr/sbin/dockerd"),
        }
    }

    /// Directories put first on dockerd's PATH (docker-proxy, docker-init of the same release).
    pub fn path_prefix(self) -> Vec<PathBuf> {
        match self {
            DockerVersion::V20 => Vec::new(),
            DockerVersion::V28 => vec![
                Path::new(DOCKER28_ROOT).join("usr/sbin"),
                Path::new(DOCKER28_ROOT).join("usr/bin"),
            ],
        }
    }

    /// "20" or "28".
    pub fn as_str(self) -> &'static str {
        match self {
            DockerVersion::V20 => "20",
            DockerVersion::V28 => "28",
        }
    }

    /// Fails with the fix if this engine (or containerd/runc) is not installed.
    pub fn check_installed(self) -> Result<()> {
        let dockerd = self.dockerd();
        if !dockerd.is_file() {
            bail!(
                "Docker {} is not installed ({} is missing): run scripts/install-deps",
                self.as_str(),
                dockerd.display()
            );
        }
        for tool in ["/usr/bin/containerd", "/usr/sbin/runc"] {
            if !Path::new(tool).is_file()
                && which(tool.rsplit('/').next().unwrap_or(tool)).is_none()
            {
                bail!("{tool} is missing (Debian 12's containerd and runc run every lab dockerd): run scripts/install-deps");
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for DockerVersion {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "20" | "20.10" | "v20" | "V20" => Ok(DockerVersion::V20),
            "28" | "v28" | "V28" => Ok(DockerVersion::V28),
            other => bail!("unknown Docker version {other:?}: use 20 (Debian 12's 20.10) or 28 (28.x from scripts/install-deps)"),
        }
    }
}

impl std::fmt::Display for DockerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The docker CLI used to drive the lab's daemons (always with an explicit `-H`, never the system socket).
pub fn docker_cli() -> PathBuf {
    if let Some(cli) = std::env::var_os("CROSSDOCK_DOCKER_CLI") {
        return PathBuf::from(cli);
    }
    for candidate in ["/usr/bin/docker", "/usr/local/bin/docker"] {
        if Path::new(candidate).is_file() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("docker")
}

/// What to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerdSpec {
    /// The network namespace to run in (`/run/netns/NAME`).
    pub netns: PathBuf,
    /// The daemon's own directory: data, exec root, socket, pid file, log, daemon.json.
    pub dir: PathBuf,
    /// docker0's address and subnet, e.g. `10.0.0.1/24`; `None` = whatever the daemon.json already in
    /// the directory says (in fleet mode `crossdock init` wrote it there).
    pub bip: Option<String>,
    /// More daemon.json fields (they win over the defaults written here).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub version: DockerVersion,
}

impl DockerdSpec {
    pub fn new(
        netns: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        bip: &str,
        version: DockerVersion,
    ) -> Self {
        DockerdSpec {
            netns: netns.into(),
            dir: dir.into(),
            bip: Some(bip.to_string()),
            extra: serde_json::Map::new(),
            version,
        }
    }

    /// A daemon whose bridge subnet is not chosen here: the `bip` (and any other key) of the
    /// daemon.json already in `dir` is kept, as when `crossdock init` wrote it before Docker starts.
    pub fn keeping_daemon_json(
        netns: impl Into<PathBuf>,
        dir: impl Into<PathBuf>,
        version: DockerVersion,
    ) -> Self {
        DockerdSpec {
            bip: None,
            ..DockerdSpec::new(netns, dir, "", version)
        }
    }

    /// Adds a daemon.json field.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("docker.sock")
    }

    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("dockerd.pid")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// A name unique to this directory, for the containerd namespaces and the cgroup parent.
    pub fn unique_name(&self) -> String {
        unique_name_for(&self.dir)
    }

    /// The daemon.json content on a fresh directory: bip, a short shutdown timeout, the cgroup
    /// parent, then `extra`.
    pub fn daemon_json(&self) -> serde_json::Value {
        self.daemon_json_over(serde_json::Map::new())
    }

    /// The daemon.json content laid over what the file holds already (`existing`): every key of it
    /// stays unless this spec sets it (bip when given, shutdown timeout, cgroup parent, `extra`).
    pub fn daemon_json_over(
        &self,
        existing: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        let mut map = existing;
        if let Some(bip) = &self.bip {
            map.insert("bip".into(), bip.clone().into());
        }
        map.insert("shutdown-timeout".into(), 2.into());
        map.insert("cgroup-parent".into(), self.unique_name().into());
        for (k, v) in &self.extra {
            map.insert(k.clone(), v.clone());
        }
        serde_json::Value::Object(map)
    }
}

/// The JSON object in a daemon.json (empty when there is no file); anything else is an error naming it.
pub fn read_daemon_json(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(serde_json::Map::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    match serde_json::from_slice(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => bail!(
            "{} is not a JSON object (fix or remove it before Docker starts)",
            path.display()
        ),
    }
}

/// `cdk` + 12 hex digits of a stable (FNV-1a) hash of the directory path.
pub fn unique_name_for(dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.to_string_lossy().trim_end_matches('/').bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("cdk{:012x}", hash & 0xffff_ffff_ffff)
}

/// A container started by [`Dockerd::run_container`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerInfo {
    pub id: String,
    /// Its IPv4 address on its (first) network.
    pub ip: String,
    /// Its init process, for `nsenter -t PID -n`.
    pub pid: u32,
}

/// A running dockerd. Dropping it stops it (unless [`Dockerd::detach`]ed).
#[derive(Debug)]
pub struct Dockerd {
    spec: DockerdSpec,
    child: Option<Child>,
    pid: u32,
    version: String,
    armed: bool,
}

impl Dockerd {
    /// Starts dockerd in the spec's namespace and waits (bounded by [`START_TIMEOUT`]) until `/_ping`
    /// answers. On failure the half-started daemon is cleaned up and the error quotes its log.
    pub fn start(spec: DockerdSpec) -> Result<Dockerd> {
        spec.version.check_installed()?;
        if !spec.netns.exists() {
            bail!("network namespace {} does not exist", spec.netns.display());
        }
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("cannot create {}", spec.dir.display()))?;
        let dir = spec
            .dir
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", spec.dir.display()))?;
        let spec = DockerdSpec { dir, ..spec };
        if let Some(pid) = running_pid(&spec.dir) {
            bail!(
                "a dockerd (pid {pid}) already runs for {}; stop it first",
                spec.dir.display()
            );
        }
        let config = spec.dir.join("daemon.json");
        let merged = spec.daemon_json_over(read_daemon_json(&config)?);
        std::fs::write(&config, serde_json::to_vec_pretty(&merged)?)
            .with_context(|| format!("cannot write {}", config.display()))?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log_path())
            .with_context(|| format!("cannot open {}", spec.log_path().display()))?;
        let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut path_var = std::env::join_paths(spec.version.path_prefix())?;
        let system_path = std::env::var_os("PATH").unwrap_or_else(|| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        if path_var.is_empty() {
            path_var = system_path;
        } else {
            path_var.push(":");
            path_var.push(system_path);
        }
        let unique = spec.unique_name();
        let d = spec.dir.display().to_string();
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", spec.netns.display()))
            .arg("--")
            .arg(spec.version.dockerd())
            .arg(format!("--config-file={d}/daemon.json"))
            .arg(format!("--data-root={d}/data"))
            .arg(format!("--exec-root={d}/exec"))
            .arg(format!("--pidfile={}", spec.pidfile().display()))
            .arg(format!("--host=unix://{d}/docker.sock"))
            .arg(format!("--containerd-namespace={unique}"))
            .arg(format!("--containerd-plugins-namespace={unique}p"))
            .env("PATH", path_var)
            .env_remove("DOCKER_HOST")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C meant for the CLI that started a lab must not reach it.
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", spec.version.dockerd().display()))?;
        let pid = child.id();
        let mut daemon = Dockerd {
            spec,
            child: Some(child),
            pid,
            version: String::new(),
            armed: true,
        };
        match daemon.wait_ready(log_offset) {
            Ok(version)
                if daemon.spec.version == DockerVersion::V28 && !is_at_least_28_2(&version) =>
            {
                let _ = daemon.stop();
                bail!(
                    "{} is Docker {version}, older than 28.2 (the release with the raw-table drop the Docker 28 tests are about): run scripts/install-deps to fetch a newer one",
                    DockerVersion::V28.dockerd().display()
                )
            }
            Ok(version) => {
                daemon.version = version;
                Ok(daemon)
            }
            Err(e) => {
                let _ = daemon.stop();
                Err(e)
            }
        }
    }

    /// Takes over a dockerd started earlier (by another process) from its directory, e.g. to stop it.
    pub fn attach(spec: DockerdSpec) -> Result<Dockerd> {
        let dir = spec.dir.canonicalize().unwrap_or(spec.dir.clone());
        let spec = DockerdSpec { dir, ..spec };
        let Some(pid) = running_pid(&spec.dir) else {
            bail!("no dockerd is running for {}", spec.dir.display());
        };
        let version = version_of(&spec.socket_path()).unwrap_or_default();
        Ok(Dockerd {
            spec,
            child: None,
            pid,
            version,
            armed: true,
        })
    }

    fn wait_ready(&mut self, log_offset: u64) -> Result<String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let socket = self.socket_path();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "dockerd {} exited during start-up ({status}); its log {} says:\n{}",
                        self.spec.version,
                        self.spec.log_path().display(),
                        log_tail(&self.spec.log_path(), log_offset, 25)
                    );
                }
            }
            if socket.exists() {
                if let Ok(r) = http::get(&socket, "/_ping", Duration::from_secs(2)) {
                    if r.is_success() {
                        return version_of(&socket);
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "dockerd {} did not answer on {} within {:?}; its log {} says:\n{}",
                    self.spec.version,
                    socket.display(),
                    START_TIMEOUT,
                    self.spec.log_path().display(),
                    log_tail(&self.spec.log_path(), log_offset, 25)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn spec(&self) -> &DockerdSpec {
        &self.spec
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn socket_path(&self) -> PathBuf {
        self.spec.socket_path()
    }

    /// `unix:///.../docker.sock`, for DOCKER_HOST.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// The engine's version string as it reports it (`20.10.24+dfsg1`, `28.5.2+dfsg4`, ...).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn docker_version(&self) -> DockerVersion {
        self.spec.version
    }

    /// Leaves the daemon running when this handle is dropped (a lab that outlives the CLI). Returns the
    /// daemon's `Child` when this process started it, so the caller can reap it once it is stopped.
    pub fn detach(mut self) -> Option<Child> {
        self.armed = false;
        self.child.take()
    }

    /// Stops the daemon and starts it again with the same directory (and data), optionally with a new bip.
    pub fn restart(&mut self, new_bip: Option<&str>) -> Result<()> {
        self.stop()?;
        if let Some(bip) = new_bip {
            self.spec.bip = Some(bip.to_string());
        }
        let mut fresh = Dockerd::start(self.spec.clone())?;
        fresh.armed = false;
        self.child = fresh.child.take();
        self.pid = fresh.pid;
        self.version = std::mem::take(&mut fresh.version);
        Ok(())
    }

    /// Stops the daemon: SIGTERM, a bounded wait, SIGKILL; then every process it left (its containerd,
    /// shims, containers), every mount under its directory, and its cgroups. Idempotent.
    ///
    /// Containers are not given a graceful stop: while the daemon shuts down, the processes in its cgroup
    /// parent are killed, so shutdown takes a moment instead of each container's 10 s stop timeout (and a
    /// restart policy cannot bring one back meanwhile).
    pub fn stop(&mut self) -> Result<()> {
        let pid = self.pid;
        let unique = self.spec.unique_name();
        if procs::alive(pid) && self.is_ours(pid) {
            procs::signal(pid, "TERM");
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for p in procs::pids_in_cgroup_segment(&unique) {
                procs::signal(p, "KILL");
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => !procs::alive(pid),
            };
            if exited {
                break;
            }
            if Instant::now() >= deadline {
                procs::signal(pid, "KILL");
                if let Some(child) = self.child.as_mut() {
                    let _ = child.wait();
                } else {
                    procs::wait_gone(&[pid], Duration::from_secs(5));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = None;
        cleanup_dir(&self.spec.dir)
    }

    fn is_ours(&self, pid: u32) -> bool {
        self.child.is_some()
            || procs::cmdline(pid).is_some_and(|c| c.contains(&self.spec.dir.display().to_string()))
    }

    /// Runs the docker CLI against this daemon (in the root namespace: it only talks to the unix socket).
    pub fn docker(&self, args: &[&str]) -> Result<Output> {
        let output = self.docker_unchecked(args)?;
        if !output.status.success() {
            bail!(
                "`docker {}` against {} failed ({}): {}",
                args.join(" "),
                self.docker_host(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    /// Runs the docker CLI and returns its output whatever the exit status.
    pub fn docker_unchecked(&self, args: &[&str]) -> Result<Output> {
        docker_command(&self.docker_host())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run the docker CLI {}", docker_cli().display()))
    }

    /// Imports `busybox:lab` from the busybox root filesystem (once: a present image is kept).
    pub fn import_busybox(&self) -> Result<()> {
        import_busybox(&self.docker_host())
    }

    /// `docker run -d --name NAME ARGS...` (ARGS = options, image, command), then its id, IP and PID.
    pub fn run_container(&self, name: &str, args: &[&str]) -> Result<ContainerInfo> {
        let mut full = vec!["run", "-d", "--name", name];
        full.extend_from_slice(args);
        self.docker(&full)?;
        inspect_container(&self.docker_host(), name)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.stop();
        }
    }
}

/// A docker CLI command aimed at `docker_host` (a `unix://` URL).
pub fn docker_command(docker_host: &str) -> Command {
    let mut cmd = Command::new(docker_cli());
    cmd.arg("-H").arg(docker_host).env_remove("DOCKER_CONTEXT");
    cmd
}

/// [`Dockerd::import_busybox`] for a daemon known by its socket URL.
pub fn import_busybox(docker_host: &str) -> Result<()> {
    let present = docker_command(docker_host)
        .args(["image", "inspect", BUSYBOX_IMAGE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run the docker CLI")?;
    if present.success() {
        return Ok(());
    }
    if !Path::new(BUSYBOX_ROOTFS).is_file() {
        bail!("{BUSYBOX_ROOTFS} is missing: run scripts/install-deps");
    }
    let out = docker_command(docker_host)
        .args([
            "import",
            "--change",
            "CMD [\"sh\"]",
            BUSYBOX_ROOTFS,
            BUSYBOX_IMAGE,
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI")?;
    if !out.status.success() {
        bail!(
            "importing {BUSYBOX_ROOTFS} as {BUSYBOX_IMAGE} into {docker_host} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The id, first IPv4 address and init PID of a container.
pub fn inspect_container(docker_host: &str, name: &str) -> Result<ContainerInfo> {
    let out = docker_command(docker_host)
        .args([
            "inspect",
            "-f",
            "{{.Id}} {{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .context("cannot run the docker CLI")?;
    if !out.status.success() {
        bail!(
            "docker inspect {name} on {docker_host} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let id = fields.next().unwrap_or_default().to_string();
    let pid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let ip = fields.next().unwrap_or_default().to_string();
    if id.is_empty() || pid == 0 {
        bail!("container {name} on {docker_host} is not running (inspect said {text:?})");
    }
    Ok(ContainerInfo { id, ip, pid })
}

/// True for `28.2` and later (`28.5.2+dfsg4`, `29.0.0`, ...).
pub fn is_at_least_28_2(version: &str) -> bool {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= (28, 2)
}

/// The `Version` field of `GET /version`.
fn version_of(socket: &Path) -> Result<String> {
    let response = http::get(socket, "/version", Duration::from_secs(10))?;
    let value: serde_json::Value = serde_json::from_slice(&response.body).with_context(|| {
        format!(
            "dockerd at {} returned no JSON for /version",
            socket.display()
        )
    })?;
    Ok(value["Version"].as_str().unwrap_or_default().to_string())
}

/// The PID in DIR/dockerd.pid if that process is alive and is a dockerd of this directory.
pub fn running_pid(dir: &Path) -> Option<u32> {
    procs::pid_from_file(
        &dir.join("dockerd.pid"),
        &["dockerd", &dir.display().to_string()],
    )
}

/// Everything a dockerd of DIR may leave behind, also after a crash: the daemon itself (from its pid file),
/// processes naming its exec or data root under DIR (its containerd and shims), processes in its cgroup
/// parent (containers), mounts under DIR, its cgroups. Idempotent; only touches what DIR identifies.
pub fn cleanup_dir(dir: &Path) -> Result<()> {
    let dir = dir.canonicalize().unwrap_or(dir.to_path_buf());
    let unique = unique_name_for(&dir);
    if let Some(pid) = running_pid(&dir) {
        // As in `Dockerd::stop`: containers are killed while the daemon shuts down.
        procs::signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while procs::alive(pid) && Instant::now() < deadline {
            for p in procs::pids_in_cgroup_segment(&unique) {
                procs::signal(p, "KILL");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        procs::kill_now(&[pid]);
    }
    // The daemon's own processes name its exec or data root (dockerd's flags, containerd's config, the
    // shims' socket). Not DIR itself: other tenants of DIR (a lab host's agent, `--config DIR/agent.toml`)
    // must survive a daemon restart.
    let needles = daemon_cmdline_needles(&dir);
    for _ in 0..3 {
        let mut pids: Vec<u32> = needles
            .iter()
            .flat_map(|n| procs::pids_with_cmdline_containing(n))
            .collect();
        pids.extend(procs::pids_in_cgroup_segment(&unique));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        procs::kill_now(&pids);
    }
    let left = procs::unmount_under(&dir)?;
    procs::remove_cgroups(&unique);
    if !left.is_empty() {
        bail!(
            "cannot unmount under {}: {}",
            dir.display(),
            left.join(", ")
        );
    }
    Ok(())
}

/// Command-line fragments only the processes of the dockerd of DIR carry: dockerd itself
/// (`--exec-root=DIR/exec`, `--data-root=DIR/data`), its containerd (`--config DIR/exec/containerd/...`)
/// and shims (`-address DIR/exec/containerd/containerd.sock`).
pub fn daemon_cmdline_needles(dir: &Path) -> [String; 4] {
    let d = dir.display();
    [
        format!("{d}/exec/"),
        format!("{d}/data/"),
        format!("--exec-root={d}/exec"),
        format!("--data-root={d}/data"),
    ]
}

/// The last `lines` lines of the file at `path` from byte `from` on (what a failed start quotes).
pub(crate) fn log_tail(path: &Path, from: u64, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(from).unwrap_or(0).min(text.len());
    let text = String::from_utf8_lossy(&text[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_name_their_binaries() {
        assert_eq!("20".parse::<DockerVersion>().unwrap(), DockerVersion::V20);
        assert_eq!("28".parse::<DockerVersion>().unwrap(), DockerVersion::V28);
        assert!("27"
            .parse::<DockerVersion>()
            .unwrap_err()
            .to_string()
            .contains("use 20"));
        assert_eq!(
            DockerVersion::V20.dockerd(),
            PathBuf::from("/usr/sbin/dockerd")
        );
        assert!(DockerVersion::V28.dockerd().starts_with(DOCKER28_ROOT));
        assert_eq!(
            serde_json::to_string(&DockerVersion::V28).unwrap(),
            "\"28\""
        );
    }

    /// A process whose command line names `name` (as `$0` of a shell loop).
    fn process_named(name: &str) -> std::process::Child {
        Command::new("sh")
            .args(["-c", "while :; do sleep 0.1; done", name])
            .spawn()
            .unwrap()
    }

    #[test]
    fn clean_up_ends_the_daemons_processes_but_not_other_tenants_of_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let d = dir.display();
        let mut helper = process_named(&format!("{d}/exec/containerd/containerd.toml"));
        let mut daemon = process_named(&format!("--exec-root={d}/exec"));
        let mut agent = process_named(&format!("{d}/agent.toml"));
        let mut other = process_named(&format!("{d}x/exec/containerd/containerd.toml"));
        cleanup_dir(&dir).unwrap();
        assert!(
            helper.wait().is_ok_and(|s| !s.success()),
            "containerd/shim not ended"
        );
        assert!(
            daemon.wait().is_ok_and(|s| !s.success()),
            "dockerd not ended"
        );
        assert!(
            agent.try_wait().unwrap().is_none(),
            "the agent living in DIR was killed"
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "another directory's daemon was killed"
        );
        for mut c in [agent, other] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    #[test]
    fn docker_28_must_be_at_least_28_2() {
        assert!(is_at_least_28_2("28.5.2+dfsg4"));
        assert!(is_at_least_28_2("28.2.0"));
        assert!(is_at_least_28_2("29.0.1"));
        assert!(!is_at_least_28_2("28.1.1"));
        assert!(!is_at_least_28_2("20.10.24+dfsg1"));
        assert!(!is_at_least_28_2(""));
    }

    #[test]
    fn daemon_json_has_bip_and_extras_win() {
        let spec = DockerdSpec::new("/run/netns/x", "/tmp/d1", "10.0.0.1/24", DockerVersion::V20)
            .with("iptables", serde_json::json!(true))
            .with("shutdown-timeout", serde_json::json!(5));
        let json = spec.daemon_json();
        assert_eq!(json["bip"], "10.0.0.1/24");
        assert_eq!(json["iptables"], true);
        assert_eq!(json["shutdown-timeout"], 5);
        assert_eq!(json["cgroup-parent"], spec.unique_name());
    }

    #[test]
    fn a_spec_without_bip_keeps_what_the_file_says() {
        let spec = DockerdSpec::keeping_daemon_json("/run/netns/x", "/tmp/d1", DockerVersion::V20);
        let existing =
            serde_json::json!({"bip": "10.1.11.1/24", "log-level": "warn", "shutdown-timeout": 9});
        let json = spec.daemon_json_over(existing.as_object().unwrap().clone());
        assert_eq!(json["bip"], "10.1.11.1/24");
        assert_eq!(json["log-level"], "warn");
        assert_eq!(json["shutdown-timeout"], 2);
        let given = DockerdSpec::new("/run/netns/x", "/tmp/d1", "10.0.0.1/24", DockerVersion::V20);
        let json = given.daemon_json_over(existing.as_object().unwrap().clone());
        assert_eq!(json["bip"], "10.0.0.1/24");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.json");
        assert!(read_daemon_json(&path).unwrap().is_empty());
        std::fs::write(&path, "[1]").unwrap();
        assert!(read_daemon_json(&path)
            .unwrap_err()
            .to_string()
            .contains("not a JSON object"));
    }

    #[test]
    fn unique_names_differ_by_directory_and_are_stable() {
        let a = unique_name_for(Path::new("/var/lib/crossdock-lab/a/hosts/h1"));
        let b = unique_name_for(Path::new("/var/lib/crossdock-lab/a/hosts/h2"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            unique_name_for(Path::new("/var/lib/crossdock-lab/a/hosts/h1/"))
        );
        assert_eq!(a.len(), 15);
    }
}
