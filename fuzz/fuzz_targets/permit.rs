//! Any text given as a permit: parsing and validation return an error or a permit, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ehds_prep::permit::Permit::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
