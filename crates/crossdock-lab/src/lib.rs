//! A simulated Alibaba VPC on one machine: network namespaces, a real dockerd per host, the emulator and
//! the agents. The building blocks (`netns`, `dockerd`) are also what every root-gated integration test
//! of the project uses to get a namespace or a real Docker engine.
pub mod cli;
pub mod demo;
pub mod dockerd;
pub mod http;
pub mod lab;
pub mod netns;
pub mod procs;
pub mod testing;
pub mod upstream_dns;

pub use dockerd::{ContainerInfo, DockerVersion, Dockerd, DockerdSpec};
pub use lab::{down, HostState, HostStatus, Lab, LabOptions, LabState, LabStatus};
pub use netns::{veth, Netns};

/// True when running as root (root-gated tests ask [`testing::root_or_skip`]).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
