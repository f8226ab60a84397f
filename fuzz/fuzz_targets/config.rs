//! The KDL configuration loader over any text: an error that names the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |k: &str| (k.len() < 8).then(|| "v".to_string());
    if let Err(e) = sentinel_config::parse_with_env("fuzz.kdl", text, &env) {
        // Rendering the errors (with their source excerpts) must not panic either.
        let _ = e.to_string();
    }
});
