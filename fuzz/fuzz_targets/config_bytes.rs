//! The config loader on raw bytes: whatever a file holds, `Config::parse` gives a valid
//! configuration or an error that names a field (or the TOML syntax), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        streamclassd_fuzz::check_config(text);
    }
});
