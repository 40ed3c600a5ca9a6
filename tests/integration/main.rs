//! Integration tests across the workspace, as one test binary (one link, one run).

mod cli;
mod loom_models;
mod testing_kit;
