//! The collector's frame reader over any byte stream: the hello, frame headers, counters
//! payloads, and each event payload through both the decoder and the one-pass transcoder,
//! which must agree wherever the transcoder answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_wire::frame::{self, FrameKind, HEADER_LEN};
use sentinel_wire::stats::HostStats;

fuzz_target!(|data: &[u8]| {
    let Some(hello) = data.get(..5) else { return };
    if frame::check_hello(hello.try_into().unwrap_or(&[0; 5])).is_err() {
        return;
    }
    let mut rest = &data[5..];
    while let Some(h) = rest.get(..HEADER_LEN) {
        let Ok(header) = frame::read_header(h.try_into().unwrap_or(&[0; HEADER_LEN])) else { return };
        let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + header.len) else { return };
        match header.kind {
            FrameKind::Stats => {
                let _ = HostStats::decode(payload);
            }
            FrameKind::Event => sentinel_fuzz_common::agree(payload),
            _ => {}
        }
        rest = &rest[HEADER_LEN + header.len..];
    }
});

mod sentinel_fuzz_common {
    include!("common.rs");
}
