//! Runs the whole stack on loopback, for `make demo` and for the end-to-end tests alike: a demo
//! upstream, the collector and the reference proxy (as real child processes, with the real filter
//! .wasm), varied generated traffic, and the scraping of each part's `/metrics`.

pub mod enrichment;
pub mod metrics;
pub mod pii;
pub mod receiver;
pub mod relay;
pub mod servers;
pub mod switch;
pub mod stack;
pub mod traffic;
pub mod upstream;
