//! One event frame's payload through the decoder and the one-pass transcoder: no panic, and
//! the same line from both wherever the transcoder answers.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod common {
    include!("common.rs");
}

fuzz_target!(|data: &[u8]| {
    common::agree(data);
});
