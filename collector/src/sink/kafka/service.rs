//! The Kafka sink's I/O: every event of a batch handed to the producer, then every delivery
//! report awaited.

use super::KafkaSettings;
use crate::sink::driver::{Delivered, SendError, Service};
use crate::wal::ReadBatch;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sentinel_config::ValueFormat;
use std::time::Duration;

/// Produces to one topic.
pub struct KafkaService {
    settings: KafkaSettings,
    producer: FutureProducer,
    /// The topic was seen in the brokers' metadata.
    topic_seen: bool,
}

impl KafkaService {
    pub fn new(settings: KafkaSettings) -> Result<KafkaService, String> {
        let producer = settings.client_config().create::<FutureProducer>().map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        Ok(KafkaService { settings, producer, topic_seen: false })
    }

    /// Asks the brokers whether the topic exists (Kafka setups often refuse to auto-create).
    async fn check_topic(&mut self) -> Result<(), SendError> {
        let producer = self.producer.clone();
        let topic = self.settings.sink.topic.clone();
        let brokers = self.settings.sink.brokers.join(",");
        let found = tokio::task::spawn_blocking(move || {
            let md = producer.client().fetch_metadata(Some(&topic), Duration::from_secs(5))?;
            Ok::<bool, KafkaError>(md.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()))
        })
        .await
        .map_err(|e| SendError::retry(format!("metadata request failed: {e}")))?
        .map_err(|e| SendError::retry(format!("cannot reach the Kafka brokers {brokers}: {e}")))?;
        if !found {
            return Err(SendError::retry(format!(
                "topic `{}` does not exist on {brokers}; create it (e.g. `kafka-topics --create --topic {}`)",
                self.settings.sink.topic, self.settings.sink.topic
            )));
        }
        self.topic_seen = true;
        Ok(())
    }
}

/// The string value at a dotted path of a JSON document (numbers as their text).
fn key_of(doc: &serde_json::Value, path: &[String]) -> Option<String> {
    let v = path.iter().try_fold(doc, |v, p| v.get(p))?;
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Service for KafkaService {
    async fn send(&mut self, batch: &ReadBatch) -> Result<Delivered, SendError> {
        if !self.topic_seen {
            self.check_topic().await?;
        }
        let topic = self.settings.sink.topic.as_str();
        let mut pending = Vec::with_capacity(batch.events as usize);
        for line in batch.lines() {
            let needs_doc = !self.settings.key_path.is_empty() || self.settings.sink.format == ValueFormat::MessagePack;
            let doc: Option<serde_json::Value> = if needs_doc { serde_json::from_slice(line).ok() } else { None };
            let key = doc.as_ref().and_then(|d| key_of(d, &self.settings.key_path));
            let value: Vec<u8>;
            let payload: &[u8] = match (self.settings.sink.format, &doc) {
                (ValueFormat::MessagePack, Some(d)) => {
                    value = rmp_serde::to_vec_named(d).map_err(|e| SendError::Reject { reason: format!("MessagePack encoding failed: {e}") })?;
                    &value
                }
                _ => line,
            };
            let mut record = FutureRecord::to(topic).payload(payload);
            if let Some(k) = key.as_deref() {
                record = record.key(k);
            }
            // Hand it to the producer; when its queue is full, let deliveries drain and retry.
            let mut record = record;
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => return Err(SendError::retry(format!("producing to `{topic}` failed: {e}"))),
                }
            }
        }
        let mut failure = None;
        for delivery in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => failure = Some(e.to_string()),
                Err(_) => failure = Some("the producer went away".into()),
            }
        }
        match failure {
            None => Ok(Delivered::Durable),
            Some(e) => {
                if matches!(e.as_str(), s if s.contains("Unknown topic")) {
                    self.topic_seen = false;
                }
                Err(SendError::retry(format!("the brokers did not acknowledge every message of the batch ({e}); the batch is sent again")))
            }
        }
    }

    async fn close(&mut self) -> Result<Delivered, SendError> {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
        Ok(Delivered::Durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_dotted_paths() {
        let doc: serde_json::Value = serde_json::from_str(r#"{"event":{"id":"r-1"},"http":{"response":{"status_code":503}}}"#).unwrap();
        let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(key_of(&doc, &path("event.id")).as_deref(), Some("r-1"));
        assert_eq!(key_of(&doc, &path("http.response.status_code")).as_deref(), Some("503"));
        assert_eq!(key_of(&doc, &path("client.address")), None);
    }
}
