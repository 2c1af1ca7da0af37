//! The feed page parser: any body a 200 reply may carry (truncated JSON, HTML, odd records).
//! Besides not panicking, a page it accepts must hold only records with a non-empty id whose
//! kept body is a JSON object, and a `next` that is not blank.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigsci_export::fuzzing::parse_feed_page;

fuzz_target!(|data: &[u8]| {
    if let Ok(page) = parse_feed_page(data) {
        for ev in &page.events {
            assert!(!ev.id.is_empty(), "accepted a record without an id");
            // IgnoredAny checks the syntax only: JSON allows numbers beyond an f64 (`1e999`),
            // which `serde_json::Value` refuses, and the kept text is the record's exact JSON.
            serde_json::from_str::<serde::de::IgnoredAny>(&ev.body)
                .expect("a kept body is the record's exact JSON");
            assert!(
                ev.body.trim_start().starts_with('{'),
                "accepted a record that is not an object"
            );
        }
        if let Some(next) = &page.next {
            assert!(!next.trim().is_empty(), "a blank next means the last page");
        }
    }
});
