//! A simulated VPC on one machine: network namespaces, a real dockerd per host, the emulator, the agents.
pub mod cli;
