//! Elasticsearch `_bulk` and `GET /` reply classification: any status with any body, for a
//! request of 0..=255 documents. An accepted reply must have exactly one outcome per document.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigsci_export::fuzzing::{classify_es_bulk_reply, classify_es_root};

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // Statuses 200 and 201 are the interesting ones (the per-item parser): one byte picks
    // between them and any other status.
    let status = match data[0] % 4 {
        0 => 200,
        1 => 201,
        _ => 100 + u16::from(data[1]) * 2 % 600,
    };
    let n = usize::from(data[2]);
    let body = &data[3..];
    if let Ok(ack) = classify_es_bulk_reply(status, body, n) {
        assert_eq!(ack.items.len(), n, "one outcome per document");
    }
    let _ = classify_es_root(status, body);
});
