//! The redaction detectors and the redaction of each kind of text over any input: no panic,
//! spans sorted and inside the text, the output never longer than the input plus its masks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_collector::redact::detect::{self, Kind};
use sentinel_collector::redact::{Redactor, Scratch};
use sentinel_wire::event::transcode::Text;
use std::sync::OnceLock;

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(&Some(sentinel_config::Redaction::default())).expect("redaction on"))
}

/// The longest mask, `[REDACTED:google-api-key]` and the like, with room to spare.
const MASK: usize = 32;

fuzz_target!(|data: &[u8]| {
    let mut spans = Vec::new();
    detect::find(data, &Kind::ALL, &mut spans);
    let mut end = 0;
    for s in &spans {
        assert!(s.start >= end && s.start < s.end && s.end <= data.len(), "spans sorted, apart, inside the text");
        end = s.end;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut scratch = Scratch::default();
    let r = redactor();
    r.begin(&mut scratch);
    for at in [Text::Path, Text::Query, Text::RequestHeader("referer"), Text::RequestHeader("x-forwarded-for"), Text::RequestBody] {
        let Some(out) = r.text(at, text, &mut scratch) else { continue };
        let masks = out.matches("[REDACTED:").count();
        assert!(out.len() <= text.len() + masks * MASK, "{at:?}: {} bytes from {}", out.len(), text.len());
    }
});
