//! `crossdock init`'s flow without a cloud: the private IP in the file, the host ranges explicit, no
//! Docker socket, so nothing but the configuration and a scratch daemon.json is involved. Exit codes,
//! what is written and what is left alone. The metadata service and a running Docker are covered in
//! the lab (tests/init.rs at the workspace root).

use crossdock_init::cli::{run, InitArgs};
use std::path::{Path, PathBuf};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A derived-mode file: 192.168.1.10 in 192.168.0.0/16 → 10.1.10.0/24; no Docker, no metadata.
    fn config(&self, extra: &str) -> PathBuf {
        let text = format!(
            "cluster_cidrs = [\"10.0.0.0/8\"]\n{extra}\n[docker]\nhost = \"unix://{}\"\n[subnet]\nmode = \"derived\"\nhost_ranges = [\"192.168.0.0/16\"]\n[cloud]\nprivate_ip = \"192.168.1.10\"\nmetadata_url = \"http://127.0.0.1:9\"\n",
            self.path("no-docker.sock").display()
        );
        self.write_config(&text)
    }

    fn write_config(&self, text: &str) -> PathBuf {
        let p = self.path("agent.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, config: &Path, dry_run: bool) -> u8 {
        run(InitArgs {
            config: config.to_path_buf(),
            daemon_json: self.path("daemon.json"),
            dry_run,
            metadata_wait: 1,
        })
    }

    fn daemon_json(&self) -> Option<String> {
        std::fs::read_to_string(self.path("daemon.json")).ok()
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

#[test]
fn writes_the_derived_bip_once_and_then_leaves_the_file_alone() {
    let c = Case::new();
    let config = c.config("");
    assert_eq!(c.run(&config, true), 0, "dry run");
    assert_eq!(c.daemon_json(), None, "--dry-run wrote the file");
    assert_eq!(c.run(&config, false), 0);
    assert_eq!(
        c.daemon_json().as_deref(),
        Some("{\n  \"bip\": \"10.1.10.1/24\"\n}\n")
    );
    // A new file: no backup.
    assert_eq!(c.files(), ["agent.toml", "daemon.json"]);
    let mtime = std::fs::metadata(c.path("daemon.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(c.run(&config, false), 0);
    assert_eq!(
        std::fs::metadata(c.path("daemon.json"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime,
        "an unchanged file was written again"
    );
    // The same bip written compactly by someone else also counts as "already right".
    std::fs::write(
        c.path("daemon.json"),
        "{\"debug\":true,\"bip\":\"10.1.10.1/24\"}",
    )
    .unwrap();
    assert_eq!(c.run(&config, false), 0);
    assert_eq!(
        c.daemon_json().as_deref(),
        Some("{\"debug\":true,\"bip\":\"10.1.10.1/24\"}")
    );
}

#[test]
fn refusals_exit_2_and_change_nothing() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        // (what, configuration edit, existing daemon.json)
        ("not JSON", "", Some("{\"bip\": ")),
        ("not an object", "", Some("[\"bip\"]")),
        ("a bridge of its own", "", Some("{\"bridge\": \"br0\"}")),
        (
            "fixed-cidr outside",
            "",
            Some("{\"fixed-cidr\": \"172.17.0.0/24\"}"),
        ),
    ];
    for (what, extra, existing) in cases {
        let c = Case::new();
        let config = c.config(extra);
        if let Some(text) = existing {
            std::fs::write(c.path("daemon.json"), text).unwrap();
        }
        for dry_run in [true, false] {
            assert_eq!(c.run(&config, dry_run), 2, "{what} (dry run: {dry_run})");
        }
        assert_eq!(
            c.daemon_json().as_deref(),
            *existing,
            "{what}: the file changed"
        );
        assert_eq!(
            c.files().len(),
            1 + usize::from(existing.is_some()),
            "{what}: {:?}",
            c.files()
        );
    }
}

#[test]
fn configurations_init_cannot_serve_exit_2() {
    let sock = "unix:///nonexistent/docker.sock";
    let texts = [
        // per-host mode: nothing to derive
        format!("cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"{sock}\"\n"),
        // a user-defined network: bip would not reach it
        format!("cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"{sock}\"\nnetwork = \"cluster\"\n[subnet]\nmode = \"derived\"\n"),
        // the private IP lies in no host range
        format!("cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"{sock}\"\n[subnet]\nmode = \"derived\"\nhost_ranges = [\"192.168.2.0/24\"]\n[cloud]\nprivate_ip = \"192.168.1.10\"\n"),
        // the mapping does not fit (refused by the parser already)
        "cluster_cidrs = [\"10.0.0.0/16\"]\n[subnet]\nmode = \"derived\"\nhost_ranges = [\"192.168.0.0/16\"]\n".to_string(),
        // no way to learn the private IP
        format!("cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"{sock}\"\n[subnet]\nmode = \"derived\"\n[cloud]\nmetadata_url = \"\"\n"),
    ];
    for text in texts {
        let c = Case::new();
        let config = c.write_config(&text);
        assert_eq!(c.run(&config, false), 2, "{text}");
        assert_eq!(c.daemon_json(), None, "{text}");
    }
}

#[test]
fn an_unreachable_metadata_service_exits_1() {
    let c = Case::new();
    // Empty host_ranges: the VPC CIDR must come from the metadata service, which is a closed port.
    let text = format!(
        "cluster_cidrs = [\"10.0.0.0/8\"]\n[docker]\nhost = \"unix://{}\"\n[subnet]\nmode = \"derived\"\n[cloud]\nmetadata_url = \"http://127.0.0.1:9\"\n",
        c.path("no-docker.sock").display()
    );
    let config = c.write_config(&text);
    assert_eq!(c.run(&config, false), 1);
    assert_eq!(c.daemon_json(), None);
}
