//! A configuration file's text through the whole loader (environment
//! expansion, YAML, every section's validation, located errors). Probe-file
//! globs are not expanded, so no input makes it read the machine.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("lookout.yaml");
    let env = |name: &str| (name == "FUZZ").then(|| "value".to_string());
    if let Err(e) = lookout::settings::from_text(path, text, &env) {
        // Errors are rendered for a person: that must not panic either.
        let _ = e.to_string();
    }
});
