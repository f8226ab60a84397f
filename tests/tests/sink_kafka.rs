//! The Kafka sink against a real Kafka-protocol broker (Tansu) on loopback, read back with a
//! real consumer: every event arrives once, keyed by its id, as JSON or MessagePack; a network
//! outage to the broker delays delivery but loses nothing and never pauses the file sink; a
//! missing topic is named in the log and delivery starts once it exists.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sentinel_demo::servers::Tansu;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Reads every message of `topic` from the beginning (partitions assigned, no group join)
/// until `want` arrived or `timeout` passed: (key, value) pairs.
fn consume(brokers: &str, topic: &str, want: usize, timeout: Duration) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sentinel-tests")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            out.push((key, m.payload().unwrap_or_default().to_vec()));
        }
    }
    // Anything more would be a duplicate: give it a moment to show.
    let quiet = Instant::now() + Duration::from_millis(500);
    while Instant::now() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((m.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    Ok(out)
}

fn kafka_block(id: &str, brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        "    sink \"kafka\" id={id:?} {{\n        brokers {brokers:?}\n        topic {topic:?}\n        batch-size 500\n        flush-interval-ms 50\n        option \"reconnect.backoff.max.ms\" \"500\"\n{extra}    }}\n"
    )
}

async fn stack_with(paths: Paths, dir: &std::path::Path, blocks: String) -> anyhow::Result<Stack> {
    let mut cfg = StackConfig::new(dir, paths.filter("sentinel_filter.wasm"));
    cfg.collector_blocks = Some(blocks);
    Stack::start(paths, cfg).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_keyed_by_its_id_as_json_and_msgpack() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let tansu = Tansu::start(&paths, dir.path()).await?;
    tansu.create_topic("events-json", 3)?;
    tansu.create_topic("events-msgpack", 3)?;
    let blocks = kafka_block("json", &tansu.addr, "events-json", "") + &kafka_block("msgpack", &tansu.addr, "events-msgpack", "        format \"msgpack\"\n        compression \"zstd\"\n");
    let stack = stack_with(paths, dir.path(), blocks).await?;
    let report = traffic::run(&stack.proxy_addr, 51, 2000, 4, |_| {}).await;
    stack.settle(Duration::from_secs(30)).await?;
    assert_eq!(report.failed, 0);

    let file: Vec<serde_json::Value> = stack.events()?;
    let by_id = |events: &[serde_json::Value]| -> std::collections::HashMap<String, serde_json::Value> {
        events.iter().map(|e| (e["event"]["id"].as_str().unwrap_or_default().to_string(), e.clone())).collect()
    };
    let expected = by_id(&file);
    assert_eq!(expected.len() as u64, report.sent);

    let json = consume(&tansu.addr, "events-json", file.len(), Duration::from_secs(30))?;
    assert_eq!(json.len(), file.len(), "one message per event, none twice");
    for (key, value) in &json {
        let e: serde_json::Value = serde_json::from_slice(value)?;
        assert_eq!(e["event"]["id"].as_str(), Some(key.as_str()), "messages are keyed by event.id");
        assert_eq!(Some(&e), expected.get(key), "the message is the event, field for field");
    }
    let packed = consume(&tansu.addr, "events-msgpack", file.len(), Duration::from_secs(30))?;
    assert_eq!(packed.len(), file.len());
    for (key, value) in &packed {
        let e: serde_json::Value = rmp_serde_decode(value)?;
        assert_eq!(Some(&e), expected.get(key), "MessagePack carries the same event");
    }
    Ok(())
}

/// MessagePack to a JSON value, through serde.
fn rmp_serde_decode(bytes: &[u8]) -> anyhow::Result<serde_json::Value> {
    Ok(rmp_serde::from_slice(bytes)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_outage_to_the_broker_loses_nothing_and_never_pauses_the_file_sink() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let tansu = Tansu::start(&paths, dir.path()).await?;
    tansu.create_topic("events", 3)?;
    let stack = stack_with(paths, dir.path(), kafka_block("kafka", &tansu.addr, "events", "")).await?;
    let before = traffic::run(&stack.proxy_addr, 61, 500, 4, |_| {}).await;
    stack.settle(Duration::from_secs(30)).await?;

    tansu.relay.cut();
    let cut_at = Instant::now();
    let during = traffic::run(&stack.proxy_addr, 62, 2500, 4, |_| {}).await;
    let written = |m: &sentinel_demo::metrics::Samples, sink: &str| m.get(&format!("sentinel_collector_events_written_total{{sink=\"{sink}\"}}")) as u64;
    let m = stack
        .wait_until(false, "the file sink writing everything while Kafka is cut off", Duration::from_secs(10), |m| written(m, "file") == before.sent + during.sent)
        .await?;
    assert_eq!(written(&m, "kafka"), before.sent, "nothing was delivered through the cut line");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(cut_at.elapsed())).await;
    tansu.relay.resume().await?;
    stack.settle(Duration::from_secs(60)).await?;

    let sent = (before.sent + during.sent) as usize;
    let got = consume(&tansu.addr, "events", sent, Duration::from_secs(30))?;
    let ids: HashSet<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(ids.len(), sent, "every event reached the broker after the outage");
    assert!(got.len() - sent <= 500, "duplicates only within one batch: {} extra", got.len() - sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_is_named_and_delivery_starts_once_it_exists() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let tansu = Tansu::start(&paths, dir.path()).await?;
    let extra = "        retry-initial-ms 100\n        retry-max-ms 300\n        circuit-breaker-failures 1000\n";
    let stack = stack_with(paths, dir.path(), kafka_block("kafka", &tansu.addr, "not-yet", extra)).await?;
    let report = traffic::run(&stack.proxy_addr, 71, 300, 4, |_| {}).await;
    let waited = stack.wait_metric(false, "sentinel_collector_write_errors_total{sink=\"kafka\"}", 2.0, Duration::from_secs(20)).await;
    let log = std::fs::read_to_string(dir.path().join("collector.log"))?;
    assert!(waited.is_ok(), "{waited:?}; the collector's log:\n{log}");
    assert!(log.contains("topic `not-yet` does not exist"), "the log names the missing topic:\n{log}");
    tansu.create_topic("not-yet", 1)?;
    stack.settle(Duration::from_secs(30)).await?;
    let got = consume(&tansu.addr, "not-yet", report.sent as usize, Duration::from_secs(30))?;
    assert_eq!(got.len() as u64, report.sent, "everything waiting in the log was delivered once the topic appeared");
    Ok(())
}
