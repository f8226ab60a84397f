//! The telemetry filter: runs inside the proxy as a WebAssembly component, once per finished
//! request. It keeps only what its config allows (header allowlist, masked credentials, capped
//! bodies, head sampling), encodes one MessagePack event and hands it to the host's queue.
//!
//! It must stay cheap and must never fail a request: no regexes, no per-header allocation beyond
//! what masking needs, one reused encode buffer, and any surprise in the input is skipped.

wit_bindgen::generate!({
    world: "filter",
    path: "../wit",
});

mod encode;
mod headers;
mod shape;

use std::cell::RefCell;

/// `filter.version` of this build; `SENTINEL_FILTER_VERSION` at build time overrides it.
pub const VERSION: &str = match option_env!("SENTINEL_FILTER_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

thread_local! {
    static STATE: RefCell<shape::Shaper> = RefCell::new(shape::Shaper::new(shape::Settings::default()));
}

struct Filter;

impl Guest for Filter {
    fn configure(config: FilterConfig) -> Result<(), String> {
        let settings = shape::Settings::from_config(
            config.header_allowlist,
            config.masked_headers,
            config.sample_rate,
            config.always_keep_server_errors,
            config.always_keep_client_errors,
            config.body_capture_bytes,
        )?;
        STATE.with(|s| *s.borrow_mut() = shape::Shaper::new(settings));
        Ok(())
    }

    fn version() -> String {
        VERSION.to_string()
    }

    fn on_request(ex: Exchange) -> Outcome {
        fault::inject();
        STATE.with(|s| {
            let mut shaper = s.borrow_mut();
            match shaper.shape(&ex, VERSION) {
                None => Outcome::SampledOut,
                Some(bytes) => {
                    if emit(bytes) {
                        Outcome::Emitted
                    } else {
                        Outcome::Dropped
                    }
                }
            }
        })
    }
}

/// Misbehaviour compiled in only by the `fault-*` features, for the host's containment tests.
mod fault {
    #[inline(always)]
    pub fn inject() {
        #[cfg(feature = "fault-loop")]
        loop {
            std::hint::black_box(());
        }
        #[cfg(feature = "fault-trap")]
        panic!("fault-trap build: trapping on purpose");
        #[cfg(feature = "fault-memory")]
        {
            let v = vec![1u8; 1 << 30];
            std::hint::black_box(&v);
        }
        #[cfg(feature = "fault-leak")]
        std::mem::forget(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

export!(Filter);
