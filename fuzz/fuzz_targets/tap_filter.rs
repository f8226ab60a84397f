//! The tap's filter language and query string over any text, evaluated on an event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_collector::tap::{self, filter::Filter};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let event = serde_json::json!({
        "http": {"request": {"method": "GET"}, "response": {"status_code": 503}},
        "url": {"path": "/api/x", "query": "a=1"},
        "client": {"address": "203.0.113.7"},
        "timing": {"total_ms": 1.5},
        "threat": {"tor_exit": true}
    });
    if let Ok(f) = Filter::parse(text) {
        let _ = f.matches(&event);
    }
    let _ = tap::parse_query(text);
});
