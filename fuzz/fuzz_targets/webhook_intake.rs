//! A webhook body as `/webhook` receives it. The promise checked: whatever
//! intake accepts (answered 200, stored) the delivery's full parse accepts
//! too, with the same de-duplication identity; nothing panics either way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lookout::relay::payload::{Envelope, Payload};

fuzz_target!(|body: &[u8]| {
    let Ok(envelope) = Envelope::parse(body) else {
        assert!(Payload::parse(body).is_err(), "delivery parses a body intake refused");
        return;
    };
    let payload = match Payload::parse(body) {
        Ok(p) => p,
        Err(e) => panic!("intake accepted a body delivery cannot parse: {}", e.0),
    };
    assert_eq!(
        envelope.dedup_key(),
        payload.dedup_key(),
        "intake and delivery disagree on identity"
    );
    let _ = payload.subject();
});
