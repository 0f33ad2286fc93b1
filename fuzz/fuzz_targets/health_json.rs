//! A health endpoint's answer, parsed as the probe parses it and read with
//! the documented field mapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::probe::http_health::{default_fields, extract};

fuzz_target!(|body: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    if let Ok(reading) = extract(&json, &default_fields()) {
        assert!(reading.values.values().all(|v| v.is_finite()), "a non-finite value was read");
    }
});
