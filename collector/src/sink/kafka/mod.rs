//! The Kafka sink: one message per event through librdkafka's idempotent producer (acks from
//! all in-sync replicas, ordered, no duplicates from its own retries), keyed by an event field
//! (`event.id` by default, so partitioning is stable and duplicates are recognisable), valued as
//! JSON or MessagePack. A batch counts as delivered only once the broker acknowledged every one
//! of its messages; a missing topic is named in the error and retried (it may yet be created).

mod config;
mod service;

pub use config::KafkaSettings;
pub use service::KafkaService;
