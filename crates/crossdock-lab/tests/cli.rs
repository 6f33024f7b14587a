//! Root-gated: the `crossdock lab` command line end to end — up, status --json (the scripting contract),
//! exec with the host's environment, faults reaching the emulated API, down (twice).

use crossdock_lab::lab;
use crossdock_lab::netns::Netns;
use crossdock_lab::testing::{crossdock_bin, root_or_skip, unique_lab_name};
use std::process::{Command, Output};

fn crossdock(args: &[&str]) -> Output {
    Command::new(crossdock_bin().expect("the crossdock binary"))
        .args(args)
        .output()
        .expect("crossdock runs")
}

fn ok(args: &[&str]) -> String {
    let out = crossdock(args);
    assert!(
        out.status.success(),
        "crossdock {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_lab_command_line_from_up_to_down() {
    if !root_or_skip() {
        return;
    }
    let name = unique_lab_name();
    let n = name.as_str();
    // Bad input is exit code 2 and names the problem.
    let bad = crossdock(&["lab", "up", "--name", "Bad_Name"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lab name"));

    let up = ok(&["lab", "up", "--name", n, "--hosts", "2", "--no-agents"]);
    assert!(
        up.contains(&format!("lab {n} is up")) && up.contains("h2"),
        "{up}"
    );
    let result = std::panic::catch_unwind(|| {
        let status: serde_json::Value =
            serde_json::from_str(&ok(&["lab", "status", "--name", n, "--json"])).unwrap();
        for key in [
            "name",
            "api_endpoint",
            "region_id",
            "vpc_id",
            "admin_access_key_id",
            "admin_access_key_secret",
        ] {
            assert!(
                status[key].as_str().is_some_and(|v| !v.is_empty()),
                "{key} in {status}"
            );
        }
        assert_eq!(status["api_endpoint"], "http://100.100.100.201");
        let hosts = status["hosts"].as_array().unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0]["netns"], format!("cdl-{n}-h1"));
        assert_eq!(hosts[0]["private_ip"], "192.168.1.11");
        assert_eq!(hosts[1]["subnet"], "10.1.0.0/24");
        assert_eq!(hosts[0]["agent"], "stopped");
        assert!(hosts[0]["instance_id"].as_str().unwrap().starts_with("i-"));

        // exec: the host's namespace, its dockerd, its agent socket and config.
        let env = ok(&[
            "lab",
            "exec",
            "--name",
            n,
            "h2",
            "--",
            "sh",
            "-c",
            "echo $DOCKER_HOST $CROSSDOCK_SOCKET $CROSSDOCK_CONFIG; ip -4 -o addr show eth0",
        ]);
        assert!(
            env.contains(hosts[1]["docker_host"].as_str().unwrap()),
            "{env}"
        );
        assert!(
            env.contains("/hosts/h2/agent.sock") && env.contains("/hosts/h2/agent.toml"),
            "{env}"
        );
        assert!(env.contains("192.168.1.12/24"), "{env}");
        let docker = ok(&[
            "lab",
            "exec",
            "--name",
            n,
            "h1",
            "--",
            "docker",
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ]);
        assert!(docker.contains("busybox:lab"), "{docker}");
        // The exit status of the command is passed through.
        assert_eq!(
            crossdock(&["lab", "exec", "--name", n, "h1", "--", "sh", "-c", "exit 7"])
                .status
                .code(),
            Some(7)
        );
        assert_eq!(
            crossdock(&["lab", "exec", "--name", n, "h9", "--", "true"])
                .status
                .code(),
            Some(2)
        );

        // A fault reaches what a host sees, and goes away again.
        let url = "http://100.100.100.201/?Action=DescribeRegions";
        ok(&["lab", "fault", "--name", n, "api", "down"]);
        let down = ok(&[
            "lab", "exec", "--name", n, "h1", "--", "curl", "-s", "-m", "5", url,
        ]);
        assert!(down.contains("ServiceUnavailable"), "{down}");
        ok(&["lab", "fault", "--name", n, "api", "up"]);
        let up = ok(&[
            "lab", "exec", "--name", n, "h1", "--", "curl", "-s", "-m", "5", url,
        ]);
        assert!(!up.contains("ServiceUnavailable"), "{up}");
        ok(&["lab", "fault", "--name", n, "metadata", "down"]);
        let md = ok(&[
            "lab",
            "exec",
            "--name",
            n,
            "h1",
            "--",
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-m",
            "5",
            "http://100.100.100.200/latest/meta-data/instance-id",
        ]);
        assert_eq!(md.trim(), "503");
        ok(&["lab", "fault", "--name", n, "reset"]);

        let list = ok(&["lab", "list"]);
        assert!(
            list.lines().any(|l| l.starts_with(&format!("{n}\t"))),
            "{list}"
        );
    });
    let down = ok(&["lab", "down", "--name", n]);
    assert!(down.contains("removed"));
    ok(&["lab", "down", "--name", n]);
    assert!(Netns::list_with_prefix(&format!("cdl-{n}-")).is_empty());
    assert!(!lab::lab_dir(n).exists());
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
