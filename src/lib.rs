//! mqemu: an MSMQ-compatible message queue that runs anywhere Rust does.
//!
//! This facade re-exports the engine ([`mqcore`]), the network layer as [`net`] ([`mqnet`]), and
//! adds [`testing`], the kit for using mqemu as a test double for code that talks to MSMQ.

pub use mqcore::*;

pub mod config;
pub mod testing;

/// The network layer: server, clients, protocol ([`mqnet`]).
pub use mqnet as net;

/// Failover clusters of nodes hosting virtual servers ([`mqcluster`]).
pub use mqcluster as cluster;

/// The README's examples, compiled and run as doctests so the README stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
