//! libFuzzer's entry for the `wal` target; the check itself is `mqemu_fuzz::wal`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::wal(data));
