//! The S3 sink against a real S3-compatible store (SeaweedFS) on loopback, read back with a
//! real S3 client: gzip NDJSON or Parquet objects under `dt=…/hour=…/` partitions of each
//! event's start time, every event once, large objects uploaded in parts.

use flate2::read::GzDecoder;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use sentinel_demo::servers::SeaweedFs;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use std::collections::HashSet;
use std::io::Read;
use std::time::Duration;

/// One SeaweedFS at a time: `weed mini` opens more ports than it lets us choose.
static ONE_STORE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `requests` through the proxy to an S3 sink writing `format`; returns how many were
/// sent and every object written, with its bytes.
async fn deliver(format: &str, requests: u64) -> anyhow::Result<(u64, Vec<(String, bytes::Bytes)>)> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let s3 = SeaweedFs::start(&paths, dir.path()).await?;
    let mut cfg = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    // 5 MiB parts and a body cap that makes the biggest batch a multipart upload.
    cfg.collector_blocks = Some(format!(
        "    sink \"s3\" {{\n        bucket \"telemetry\"\n        prefix \"proxy-events\"\n        endpoint {:?}\n        format {format:?}\n        access-key-id \"test\"\n        secret-access-key \"test-secret\"\n        multipart-bytes 5242880\n        batch-size 20000\n        flush-interval-ms 500\n        retry-initial-ms 100\n        retry-max-ms 500\n    }}\n",
        s3.endpoint
    ));
    let stack = Stack::start(paths, cfg).await?;
    let report = traffic::run(&stack.proxy_addr, 101, requests, 4, |_| {}).await;
    stack.settle(Duration::from_secs(60)).await?;
    assert_eq!(report.failed, 0);

    let store = client(&s3.endpoint)?;
    let listed = store.list_with_delimiter(Some(&ObjectPath::from("proxy-events"))).await?;
    assert!(listed.common_prefixes.iter().all(|p| p.as_ref().starts_with("proxy-events/dt=")), "{:?}", listed.common_prefixes);
    let keys: Vec<ObjectPath> = store.list(Some(&ObjectPath::from("proxy-events"))).map(|m| m.map(|m| m.location)).collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
    assert!(!keys.is_empty());
    let mut objects = Vec::new();
    for key in keys {
        let bytes = store.get(&key).await?.bytes().await?;
        objects.push((key.to_string(), bytes));
    }
    Ok((report.sent, objects))
}

/// The hour partition an event of `start_ns` belongs in.
fn hour_of(start_ns: u64) -> String {
    format!("hour={:02}", start_ns / 1_000_000_000 % 86_400 / 3600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_once_in_partitioned_gzip_objects() -> anyhow::Result<()> {
    let _one = ONE_STORE.lock().await;
    let (sent, objects) = deliver("ndjson", 3000).await?;
    let mut ids = HashSet::new();
    let mut lines = 0;
    for (k, bytes) in &objects {
        assert!(k.contains("/hour=") && k.ends_with(".ndjson.gz"), "hive-style key: {k}");
        let mut text = String::new();
        GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
        for l in text.lines() {
            let e: serde_json::Value = serde_json::from_str(l)?;
            // The object's partition is the event's own hour.
            assert!(k.contains(&hour_of(e["event"]["start_ns"].as_u64().unwrap_or(0))), "{k} holds an event of another hour");
            ids.insert(e["event"]["id"].as_str().unwrap_or_default().to_string());
            lines += 1;
        }
    }
    assert_eq!(lines as u64, sent, "every event once");
    assert_eq!(ids.len() as u64, sent);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_land_once_as_rows_of_partitioned_parquet_objects() -> anyhow::Result<()> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let _one = ONE_STORE.lock().await;
    let (sent, objects) = deliver("parquet", 3000).await?;
    let mut ids = HashSet::new();
    let mut rows = 0;
    for (k, bytes) in objects {
        assert!(k.contains("/hour=") && k.ends_with(".parquet"), "hive-style key: {k}");
        let reader = SerializedFileReader::new(bytes).map_err(|e| anyhow::anyhow!("{k} is not Parquet: {e}"))?;
        for row in reader.get_row_iter(None)? {
            let r = row?.to_json_value();
            // Timestamps are typed; the raw nanoseconds still say which hour.
            let start = r["event_start_ns"].as_u64().or_else(|| r["event_start_ns"].as_i64().map(|n| n as u64)).unwrap_or(0);
            assert!(k.contains(&hour_of(start)), "{k} holds an event of another hour");
            assert!(r["url_path"].as_str().is_some_and(|p| p.starts_with('/')), "{r}");
            ids.insert(r["event_id"].as_str().unwrap_or_default().to_string());
            rows += 1;
        }
    }
    assert_eq!(rows as u64, sent, "every event once");
    assert_eq!(ids.len() as u64, sent);
    Ok(())
}

fn client(endpoint: &str) -> anyhow::Result<object_store::aws::AmazonS3> {
    Ok(AmazonS3Builder::new()
        .with_bucket_name("telemetry")
        .with_region("us-east-1")
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_access_key_id("test")
        .with_secret_access_key("test-secret")
        .build()?)
}

/// A batch whose object is larger than a part goes up as a multipart upload and reads back
/// whole (the service alone, on a batch larger than traffic makes in a test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_goes_up_in_parts_and_reads_back_whole() -> anyhow::Result<()> {
    use sentinel_collector::sink::driver::Service;
    use sentinel_collector::sink::s3::{S3Service, S3Settings};
    let _one = ONE_STORE.lock().await;
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let s3 = SeaweedFs::start(&paths, dir.path()).await?;
    let sink = sentinel_config::S3Sink {
        bucket: "telemetry".into(),
        prefix: "big".into(),
        region: "us-east-1".into(),
        endpoint: Some(s3.endpoint.clone()),
        format: sentinel_config::ObjectFormat::NdjsonGzip,
        access_key_id: Some("test".into()),
        secret_access_key: Some(sentinel_config::Secret::new("test-secret")),
        multipart_bytes: 5 << 20,
    };
    let mut service = S3Service::new(S3Settings::check(&sink).map_err(anyhow::Error::msg)?, "s3", "host").map_err(anyhow::Error::msg)?;
    // Lines that compress poorly (pseudo-random hex), about 14 MB: gzip leaves more than 5 MiB.
    let mut batch = sentinel_collector::wal::ReadBatch { first: 7, end: 8, records: 1, ..Default::default() };
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..30_000u64 {
        let mut noise = String::with_capacity(448);
        for _ in 0..28 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push_str(&format!("{x:016x}"));
        }
        batch.lines.extend_from_slice(format!("{{\"event\":{{\"id\":\"r-{i}\",\"start_ns\":1795000000000000000}},\"noise\":\"{noise}\"}}\n").as_bytes());
        batch.events += 1;
    }
    let started = std::time::Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        match service.send(&batch).await {
            Ok(_) => break,
            // The bucket is created while the server starts; give it a moment.
            Err(e) if tries < 50 => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => anyhow::bail!("{e:?}"),
        }
    }
    let store = client(&s3.endpoint)?;
    let key = ObjectPath::from("big/dt=2026-11-18/hour=11/host-s3-00000000000000000007-00000000000000000008.ndjson.gz");
    let meta = store.head(&key).await?;
    assert!(meta.size > 5 << 20, "the object ({} bytes) is larger than one part", meta.size);
    // A multipart object's ETag ends in -<parts>.
    assert!(meta.e_tag.as_deref().unwrap_or_default().trim_matches('"').ends_with("-2"), "uploaded in two parts: {:?}", meta.e_tag);
    let bytes = store.get(&key).await?.bytes().await?;
    let mut text = String::new();
    GzDecoder::new(&bytes[..]).read_to_string(&mut text)?;
    assert_eq!(text.lines().count(), 30_000);
    assert_eq!(text.as_bytes(), &batch.lines[..], "byte for byte");
    eprintln!("multipart upload of {} bytes in {:?}", meta.size, started.elapsed());
    Ok(())
}
