//! libFuzzer's entry for the `cluster_config` target; the check itself is `mqemu_fuzz::cluster_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mqemu_fuzz::cluster_config(data));
