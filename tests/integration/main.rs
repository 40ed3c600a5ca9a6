//! Integration tests across the workspace, as one test binary (one link, one run).

mod amqp;
mod amqp_amqprs;
mod amqp_mono;
mod cli;
mod cluster;
#[cfg(feature = "etcd")]
mod cluster_etcd;
mod cluster_kill;
mod console;
mod crash;
mod http;
mod loom_models;
mod mqqb;
mod net;
mod ocf;
mod pacemaker;
mod proxy;
mod srmp;
mod srmp_egress;
mod support;
mod testing_kit;
mod tls;
mod tls_transfer;
mod transfer;
mod transfer_kill;
