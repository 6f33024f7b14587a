//! `crossdock doctor`: diagnoses every step of direct routing on this host and in the VPC, and names
//! the fix.
//!
//! The article this project grew from found its problem with tcpdump on two hosts and guesswork.
//! Doctor replaces that with one command: it gathers facts ([`facts`], through the crates that own
//! each side effect), judges them with pure checks ([`checks`], over the [`model`]), and prints a table
//! or JSON whose exit status scripts can use (0 all ok, 1 warnings, 2 failures). `--probe IP` sends
//! real traffic and shows how far it got on this host ([`probe`]).
// Runtime code reports errors instead of panicking (tests may unwrap: clippy.toml); casts that could
// truncate are written as checked conversions. Exceptions carry their reason where they stand.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

pub mod checks;
pub mod cli;
pub mod facts;
pub mod fleet;
pub mod fleet_checks;
pub mod gather;
pub mod iptables;
pub mod model;
pub mod names;
pub mod names_checks;
pub mod probe;
pub mod render;
pub mod table_checks;
