//! The per-host agent: host and route reconcilers, health socket, metrics, signals.
pub mod cli;
