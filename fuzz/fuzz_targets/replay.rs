//! libFuzzer's entry for the `replay` target; the check itself is `mqemu_fuzz::replay`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::replay(data));
