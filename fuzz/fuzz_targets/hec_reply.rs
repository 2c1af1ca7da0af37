//! HEC reply classification: any status with any body, for a request of 1..=64 events. A
//! per-event answer must have exactly one outcome per event sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigsci_export::fuzzing::{classify_hec_health, classify_hec_reply};

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
});
