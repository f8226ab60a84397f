//! The Kafka sink's settings as librdkafka configuration.

use rdkafka::ClientConfig;
use sentinel_config::KafkaSink;

/// What the producer is built from.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub sink: KafkaSink,
    /// The key's field path, split on dots (empty: no key).
    pub key_path: Vec<String>,
}

impl KafkaSettings {
    /// Checks the settings librdkafka would refuse, by building a producer configuration.
    pub fn check(sink: &KafkaSink) -> Result<KafkaSettings, String> {
        let s = KafkaSettings { sink: sink.clone(), key_path: sink.key.split('.').filter(|p| !p.is_empty()).map(str::to_owned).collect() };
        s.client_config().create::<rdkafka::producer::BaseProducer>().map_err(|e| format!("Kafka producer settings: {e}"))?;
        Ok(s)
    }

    /// The producer's configuration: idempotent, acks=all, the chosen codec; user options last
    /// so they can override anything.
    pub fn client_config(&self) -> ClientConfig {
        let k = &self.sink;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", k.brokers.join(","))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &k.compression)
            .set("linger.ms", "5")
            // A delivery that cannot complete fails after this, and the sink retries the batch.
            .set("message.timeout.ms", "30000")
            .set("client.id", "sentinel-collector")
            // A missing topic is reported, not silently created with the broker's defaults.
            .set("allow.auto.create.topics", "false");
        if let (Some(user), Some(pass)) = (&k.username, &k.password) {
            c.set("security.protocol", "SASL_PLAINTEXT").set("sasl.mechanisms", "PLAIN").set("sasl.username", user).set("sasl.password", pass.expose());
        }
        for (key, value) in &k.options {
            c.set(key, value);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_config::ValueFormat;

    fn sink() -> KafkaSink {
        KafkaSink {
            brokers: vec!["127.0.0.1:1".into()],
            topic: "t".into(),
            key: "event.id".into(),
            format: ValueFormat::Json,
            compression: "zstd".into(),
            username: None,
            password: None,
            options: vec![],
        }
    }

    #[test]
    fn settings_librdkafka_refuses_are_named_before_start() {
        assert_eq!(KafkaSettings::check(&sink()).unwrap().key_path, vec!["event", "id"]);
        let mut bad = sink();
        bad.options.push(("linger.ms".into(), "soon".into()));
        let err = KafkaSettings::check(&bad).err().unwrap();
        assert!(err.contains("linger.ms"), "{err}");
    }
}
