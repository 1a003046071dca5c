//! The configuration file, whatever a careless edit leaves in it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use netwatch::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text, Path::new("netwatch.toml"));
    }
});
