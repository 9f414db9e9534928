//! The config loader and validator, structure-aware: TOML documents made of the real
//! sections and keys (and made-up ones) with values of every type, so that field, camera
//! and region validation is reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamclassd_fuzz::{check_config, Doc};

fuzz_target!(|doc: Doc| {
    check_config(&doc.text());
});
