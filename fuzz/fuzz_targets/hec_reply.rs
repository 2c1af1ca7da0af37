//! HEC reply classification: any status with any body, for a request of 1..=64 events (and
//! the same bytes as an `/ack` answer and as the health probe's answer). A per-event answer
//! must have exactly one outcome per event sent; a failure must say what happened.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigsci_export::fuzzing::{
    classify_hec_ack, classify_hec_health, classify_hec_probe, classify_hec_reply,
};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // Two bytes pick the status (100..=699), one the event count; the rest is the body.
    let status = 100 + u16::from_le_bytes([data[0], data[1]]) % 600;
    let n = 1 + usize::from(data[2] % 64);
    let body = &data[3..];
    if let Ok(Some(ack)) = classify_hec_reply(status, body, n) {
        assert_eq!(ack.items.len(), n, "one outcome per event");
    }
    let _ = classify_hec_health(status, body);
    if let Err((kind, message)) = classify_hec_ack(status, body) {
        assert!(
            !message.is_empty(),
            "an /ack failure ({kind}) says what happened"
        );
    }
    let index = (data[2] & 0x80 != 0).then_some("main");
    if let Err(e) = classify_hec_probe(status, body, index) {
        assert!(
            !e.to_string().is_empty(),
            "a probe failure says what happened"
        );
    }
});
