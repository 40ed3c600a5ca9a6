//! libFuzzer's entry for the `frame` target; the check itself is `mqemu_fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::frame(data));
