//! The HTTP sink: batches of NDJSON POSTed to the user's endpoint, gzip-compressed, signed with
//! HMAC-SHA256 over the body as sent, retried on 5xx, 408 and 429 (honouring Retry-After) and
//! never on other 4xx, which drop the batch with a count and the response's first bytes logged.

mod config;
mod service;

pub use config::HttpSettings;
pub use service::HttpService;
