//! Enrichment end to end: real proxy, real filter, collector with MaxMind's test databases,
//! uap-core's regexes, an ASN range file and a threat list. Every event gets the geo, ASN,
//! device and threat answers of its forwarded client address and user agent; the proxy's own
//! address is kept as `network.peer.address`; a changed list is picked up under traffic and a
//! corrupt one is refused while the old data keeps serving; taps see each stage.

use sentinel_demo::enrichment::data_dir;
use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn xff(e: &Value) -> &str {
    e["http"]["request"]["header"]["x-forwarded-for"].as_str().unwrap_or("")
}

/// Replaces a file the way list updaters do: write aside, rename over.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_geo_asn_device_and_threat_of_their_client() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let data = data_dir(&paths.bin_dir);
    let mm = |f: &str| format!("{:?}", data.join("maxmind-test").join(f).display().to_string());
    let asn_csv = dir.path().join("asn.csv");
    std::fs::write(&asn_csv, "81.2.69.0,81.2.69.255,20712,Andrews & Arnold Ltd\n1.1.1.0,1.1.1.255,13335,\"Cloudflare, Inc.\"\n2001:218::,2001:218:ffff:ffff:ffff:ffff:ffff:ffff,2914,NTT\n")?;
    let tor = dir.path().join("tor.txt");
    std::fs::write(&tor, "ExitAddress 185.220.101.4 2026-01-01 00:00:00\n")?;
    let bad = dir.path().join("bad.netset");
    std::fs::write(&bad, "# nothing yet\n")?;
    // AS lists: NTT's AS counts as hosting, Cloudflare's as a proxy provider.
    let (hosting, proxies) = (dir.path().join("hosting-asns.txt"), dir.path().join("proxy-asns.txt"));
    std::fs::write(&hosting, "AS2914\n")?;
    std::fs::write(&proxies, "# VPN\n13335\n")?;
    let mut config = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    config.tap_unredacted = true;
    config.collector_blocks = Some(format!(
        r#"    enrichment {{
        geoip {{ database {}; }}
        asn {{ csv {:?}; }}
        device-detection {{ regexes {:?}; }}
        threat-intel {{
            list "tor" {:?} kind="tor-exit"
            list "bad" {:?}
            anonymous-ip {}
            hosting-asns {:?}
            proxy-asns {:?}
        }}
        client-ip {{ trusted-proxies "127.0.0.1"; }}
        reload-interval-secs 1
    }}
"#,
        mm("GeoIP2-City-Test.mmdb"),
        asn_csv.display().to_string(),
        data.join("uap-core/regexes.yaml").display().to_string(),
        tor.display().to_string(),
        bad.display().to_string(),
        mm("GeoIP2-Anonymous-IP-Test.mmdb"),
        hosting.display().to_string(),
        proxies.display().to_string(),
    ));
    let stack = Stack::start(paths.clone(), config).await?;
    let tap = |stage: &str| {
        Command::new(paths.bin_dir.join("sentinel-collector"))
            .args(["tap", "--addr", &stack.collector_admin, "--token", sentinel_demo::stack::TAP_TOKEN, "--stage", stage, "--limit", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    };
    let (decoded, enriched) = (tap("decoded")?, tap("enriched")?);
    stack.wait_metric(false, "sentinel_collector_tap_sessions", 2.0, Duration::from_secs(15)).await?;

    let report = traffic::run(&stack.proxy_addr, 7, 2000, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    assert_eq!(events.len(), 2000);
    for e in &events {
        let client = xff(e);
        assert_eq!(e["client"]["address"], client, "the trusted proxy's forwarded address is the client");
        assert_eq!(e["network"]["peer"]["address"], "127.0.0.1");
        assert!(e["user_agent"]["original"].is_string() && e["device"]["type"].is_string(), "{e}");
        // Tor exits: the list's address, and MaxMind's anonymous-IP test block 81.2.69.0/24.
        assert_eq!(e["threat"]["tor_exit"], client == "185.220.101.4" || client.starts_with("81.2.69."), "{e}");
        match client {
            "81.2.69.160" => {
                assert_eq!(e["geo"]["country"]["iso_code"], "GB");
                assert_eq!(e["geo"]["locality"]["name"], "London");
                assert_eq!(e["asn"]["number"], 20712);
                // MaxMind's anonymous-IP test data flags 81.2.69.0/24 as everything.
                assert_eq!((e["threat"]["proxy"].clone(), e["threat"]["hosting"].clone()), (Value::Bool(true), Value::Bool(true)));
                assert_eq!(e["threat"]["score"], 75);
            }
            "2001:218::1" => {
                assert_eq!(e["geo"]["country"]["iso_code"], "JP");
                assert_eq!(e["asn"]["number"], 2914);
                assert_eq!((e["threat"]["hosting"].clone(), e["threat"]["proxy"].clone(), e["threat"]["score"].clone()), (Value::Bool(true), Value::Bool(false), 10.into()), "{e}");
            }
            "1.1.1.1" => {
                assert_eq!(e["asn"]["organization"], "Cloudflare, Inc.");
                assert_eq!((e["threat"]["proxy"].clone(), e["threat"]["hosting"].clone(), e["threat"]["score"].clone()), (Value::Bool(true), Value::Bool(false), 25.into()), "{e}");
            }
            "185.220.101.4" => {
                assert_eq!(e["threat"]["lists"], serde_json::json!(["tor"]));
                assert_eq!(e["threat"]["score"], 40);
            }
            _ => {}
        }
        let ua = e["user_agent"]["original"].as_str().unwrap_or("");
        assert_eq!(e["user_agent"]["is_bot"], ua.contains("Googlebot"), "{ua}");
        if ua.contains("iPhone") {
            assert_eq!((e["device"]["type"].as_str(), e["os"]["name"].as_str()), (Some("mobile"), Some("iOS")));
        }
        if ua.contains("iPad") {
            assert_eq!(e["device"]["type"], "tablet");
        }
        if ua.contains("Windows NT") {
            assert_eq!((e["device"]["type"].as_str(), e["user_agent"]["name"].as_str()), (Some("desktop"), Some("Chrome")));
        }
    }
    for ip in ["81.2.69.160", "2001:218::1", "1.1.1.1", "185.220.101.4"] {
        assert!(events.iter().any(|e| xff(e) == ip), "the traffic plan lost {ip}");
    }

    // Taps: the decoded stage is what the proxy sent, the enriched stage has the answers.
    let out = tokio::task::spawn_blocking(move || decoded.wait_with_output()).await??;
    let lines: Vec<Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|e| e.get("geo").is_none() && e["client"]["address"] == "127.0.0.1"));
    let out = tokio::task::spawn_blocking(move || enriched.wait_with_output()).await??;
    let lines: Vec<Value> = String::from_utf8(out.stdout)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|e| e["client"]["address"] != "127.0.0.1" && e["device"]["type"].is_string()));

    let m = stack.collector_metrics().await?;
    let geo_hits = m.get("sentinel_collector_enrich_lookups_total{enricher=\"geo\",result=\"hit\"}");
    let geo_misses = m.get("sentinel_collector_enrich_lookups_total{enricher=\"geo\",result=\"miss\"}");
    assert_eq!(geo_hits + geo_misses, 2000.0, "one geo lookup per event");
    assert_eq!(geo_hits as usize, events.iter().filter(|e| e.get("geo").is_some()).count());
    let cache = |c: &str, r: &str| m.get(&format!("sentinel_collector_enrich_cache_total{{cache=\"{c}\",result=\"{r}\"}}"));
    let (hits, misses) = (cache("user_agent", "hit"), cache("user_agent", "miss"));
    assert!(misses <= 9.0 * 2.0 && hits + misses == 2000.0, "nine user agents, two workers: {hits} hits, {misses} misses");
    let (hits, misses) = (cache("address", "hit"), cache("address", "miss"));
    assert!(misses <= 12.0 * 2.0 && hits + misses == 2000.0, "twelve client addresses, two workers: {hits} hits, {misses} misses");

    // A list update under traffic: 8.8.8.8 becomes known-bad once the new file is loaded.
    replace(&bad, "8.8.8.0/24\n")?;
    stack.wait_metric(false, "sentinel_collector_enrich_data_reloads_total{result=\"ok\"}", 1.0, Duration::from_secs(15)).await?;
    let reloaded_at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    // A corrupt update is refused; the list loaded before keeps answering.
    replace(&bad, "8.8.8.0/24\n300.1.1.1\n")?;
    stack.wait_metric(false, "sentinel_collector_enrich_data_reloads_total{result=\"failed\"}", 1.0, Duration::from_secs(15)).await?;
    let report = traffic::run(&stack.proxy_addr, 8, 2000, 8, |_| {}).await;
    assert_eq!(report.failed, 0);
    stack.settle(Duration::from_secs(10)).await?;
    let events = stack.events()?;
    assert_eq!(events.len(), 4000, "no event lost across the reloads");
    let (before, after): (Vec<&Value>, Vec<&Value>) =
        events.iter().filter(|e| xff(e) == "8.8.8.8").partition(|e| e["event"]["start_ns"].as_u64().unwrap_or(0) < reloaded_at);
    assert!(!before.is_empty() && !after.is_empty());
    assert!(before.iter().all(|e| e["threat"]["known_bad"] == false));
    assert!(after.iter().all(|e| e["threat"]["known_bad"] == true && e["threat"]["lists"] == serde_json::json!(["bad"])));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_stops_the_start_with_the_file_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let config = dir.path().join("c.kdl");
    std::fs::write(
        &config,
        format!(
            "agent \"t\" {{\n  transport \"unix_socket\" {{ path {:?}; }}\n  sink \"file\" {{ path {:?}; }}\n  enrichment {{\n    geoip {{ database \"/nonexistent/GeoLite2-City.mmdb\"; }}\n  }}\n}}\n",
            dir.path().join("s.sock").display().to_string(),
            dir.path().join("out").display().to_string()
        ),
    )?;
    let out = Command::new(paths.bin_dir.join("sentinel-collector")).arg("run").arg("--config").arg(&config).output()?;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr)?;
    assert!(err.contains("/nonexistent/GeoLite2-City.mmdb: cannot read"), "{err}");
    let out = Command::new(paths.bin_dir.join("sentinel-collector")).arg("validate").arg(&config).output()?;
    assert_eq!(out.status.code(), Some(1), "validate checks the data files too");
    assert!(String::from_utf8(out.stderr)?.contains("/nonexistent/GeoLite2-City.mmdb"));
    Ok(())
}
