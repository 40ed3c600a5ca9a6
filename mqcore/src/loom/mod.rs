//! Switches the hot path between `std::sync` and `loom`'s model-checked twins.
//!
//! Production builds and ordinary tests use std; `RUSTFLAGS="--cfg loom" cargo test -p mqcore --lib
//! loom_` swaps in loom so every interleaving of the models in `queue/loom_tests.rs` is explored
//! (tokio's `cfg(all(test, loom))` idiom: dependents never see loom).

#![allow(unused)]

#[cfg(not(all(test, loom)))]
mod std;
#[cfg(not(all(test, loom)))]
pub(crate) use self::std::*;

#[cfg(all(test, loom))]
mod mocked;
#[cfg(all(test, loom))]
pub(crate) use self::mocked::*;
