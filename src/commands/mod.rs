//! Subcommands of the `mqemu` binary that are more than a few lines: each in its own file.

pub mod admin;
pub mod crash_worker;
pub mod netbench;
pub mod recovery;
pub mod runtime;
pub mod serve;
pub mod triggers;
