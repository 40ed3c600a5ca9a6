//! libFuzzer's entry for the `serve_config` target; the check itself is `mqemu_fuzz::serve_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::serve_config(data));
