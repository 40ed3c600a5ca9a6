//! libFuzzer's entry for the `catalog` target; the check itself is `mqemu_fuzz::catalog`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::catalog(data));
