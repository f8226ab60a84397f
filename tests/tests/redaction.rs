//! PII sent through the real proxy never reaches the file sink: e-mails, card numbers, SSNs,
//! IBANs, tokens in paths, query strings and headers are replaced (by default, masked), each
//! event says which fields were touched, and what is not PII passes untouched. With client
//! address anonymization on, no full client address is written either.

use sentinel_demo::stack::{Paths, Stack, StackConfig};
use sentinel_demo::traffic::get_once;
use std::time::Duration;

/// The PII the requests carry, each in a different place.
const PII: &[&str] = &["jane.doe@example.com", "4111111111111111", "123-45-6789", "GB82WEST12345698765432", "AKIAIOSFODNN7EXAMPLE", "203.0.113.77"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_never_reaches_the_sink() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let paths = Paths::discover()?;
    let mut config = StackConfig::new(dir.path(), paths.filter("sentinel_filter.wasm"));
    config.proxy_args = ["--header-allow", "user-agent,referer,x-forwarded-for,x-note"].iter().map(|s| s.to_string()).collect();
    config.collector_blocks = Some(
        "    enrichment {\n        client-ip { trusted-proxies \"127.0.0.1\"; }\n    }\n    redaction {\n        anonymize-client-ip #true\n    }\n".into(),
    );
    let stack = Stack::start(paths, config).await?;
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    for i in 0..20 {
        let status = get_once(
            &stack.proxy_addr,
            &format!("/users/jane.doe@example.com/orders/ORD-2024-{i:06}?card=4111111111111111&access_token=tok{i}&page=2"),
            &[("user-agent", ua), ("referer", "https://shop.test/account?iban=GB82WEST12345698765432"), ("x-forwarded-for", "203.0.113.77"), ("x-note", "ssn 123-45-6789 key AKIAIOSFODNN7EXAMPLE")],
        )
        .await?;
        assert_eq!(status, 200);
    }
    stack.settle(Duration::from_secs(10)).await?;
    let raw = std::fs::read_to_string(stack.output_file())?;
    for secret in PII {
        assert!(!raw.contains(secret), "{secret} reached the sink");
    }
    assert!(!raw.contains("access_token=tok"), "a deny-listed query parameter reached the sink");
    let events = stack.events()?;
    assert_eq!(events.len(), 20);
    for e in &events {
        let path = e["url"]["path"].as_str().unwrap_or("");
        assert!(path.starts_with("/users/[REDACTED:email]/orders/ORD-2024-"), "order numbers survive: {path}");
        assert_eq!(e["url"]["query"].as_str().unwrap_or("").split('&').collect::<Vec<_>>(), ["card=[REDACTED:payment-card]", "access_token=[REDACTED:query-param]", "page=2"]);
        assert_eq!(e["http"]["request"]["header"]["user-agent"], ua, "version strings survive");
        assert_eq!(e["client"]["address"], "203.0.113.0");
        let fields: Vec<&str> = e["redaction"]["fields"].as_array().map(|a| a.iter().filter_map(|f| f.as_str()).collect()).unwrap_or_default();
        for f in ["url.path", "url.query", "http.request.header.referer", "http.request.header.x-note", "http.request.header.x-forwarded-for", "client.address"] {
            assert!(fields.contains(&f), "{f} not listed in {fields:?}");
        }
    }
    let m = stack.collector_metrics().await?;
    assert_eq!(m.get("sentinel_collector_events_redacted_total"), 20.0);
    Ok(())
}
