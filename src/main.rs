//! The `mqemu` command line.
fn main() {}
