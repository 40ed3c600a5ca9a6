//! libFuzzer's entry for the `mqqb` target; the check itself is `mqemu_fuzz::mqqb`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::mqqb(data));
