//! Diagnoses every step of direct routing on this host and in the VPC and names the fix.
pub mod cli;
