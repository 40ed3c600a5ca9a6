//! libFuzzer's entry for the `name` target; the check itself is `mqemu_fuzz::name`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::name(data));
