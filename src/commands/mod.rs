//! Subcommands of the `mqemu` binary: each in its own module, which owns its clap arguments and
//! runs them.

pub mod admin;
pub mod capture;
pub mod cluster;
pub mod cluster_worker;
pub mod crash_worker;
pub mod netbench;
pub mod ocf;
pub mod recovery;
pub mod runtime;
pub mod serve;
pub mod transfer_worker;
pub mod triggers;
