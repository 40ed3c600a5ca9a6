//! Integration tests across the workspace, as one test binary (one link, one run).

mod cli;
mod crash;
mod loom_models;
mod net;
mod testing_kit;
