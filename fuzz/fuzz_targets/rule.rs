//! libFuzzer's entry for the `rule` target; the check itself is `mqemu_fuzz::rule`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::rule(data));
