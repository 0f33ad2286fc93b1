//! Redis's INFO text, as the redis probe and the flush runbook parse it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields = lookout::probe::redis::parse_info(&text);
    assert!(fields.keys().all(|k| k.trim() == k), "a key kept its padding");
});
