//! libFuzzer's entry for the `request` target; the check itself is `mqemu_fuzz::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::request(data));
