//! Configurations as users write them: the product page's block, the shipped example, every
//! example in docs/configuration.md, and a table of broken files with the error each must give.

use sentinel_config::{parse, parse_with_env, EventKind, FailureMode, LogFormat, SinkKind};
use std::time::Duration;

fn repo(path: &str) -> String {
    std::fs::read_to_string(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

#[test]
fn the_product_page_block_is_refused_with_the_fix_for_each_list() {
    let seed = repo("config/tests/data/product-page.kdl");
    let err = parse("product-page.kdl", &seed).unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.errors.len(), 2, "{shown}");
    let events_line = seed.lines().position(|l| l.contains("events [")).unwrap() + 1;
    assert_eq!((err.errors[0].line, err.errors[0].column), (events_line, 12), "{shown}");
    assert!(shown.contains("help: give the values one after another: `events \"request_headers\" \"response_headers\"`"), "{shown}");
    assert!(shown.contains("`brokers \"kafka:9092\"`"), "{shown}");
    assert!(shown.starts_with(&format!("product-page.kdl:{events_line}:12: KDL has no lists")), "{shown}");
}

#[test]
fn the_product_page_block_with_its_lists_fixed_reads_as_kdl_v1() {
    let seed = repo("config/tests/data/product-page.kdl")
        .replace("events [\"request_headers\" \"response_headers\"]", "events \"request_headers\" \"response_headers\"")
        .replace("brokers [\"kafka:9092\"]", "brokers \"kafka:9092\"");
    let c = parse("fixed.kdl", &seed).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.name, "telemetry");
    assert_eq!(c.transport.socket_path.to_str(), Some("/var/run/sentinel/telemetry.sock"));
    assert_eq!(c.events, vec![EventKind::RequestHeaders, EventKind::ResponseHeaders]);
    assert_eq!(c.timeout, Duration::from_millis(10));
    assert_eq!(c.failure_mode, FailureMode::Open);
    assert!(c.enrichment.geoip.is_some() && c.enrichment.asn.is_some() && c.enrichment.device_detection.is_some() && c.enrichment.threat_intel.is_some());
    assert_eq!(c.sampling.rate, 0.1);
    assert!(c.sampling.always_sample_errors);
    let SinkKind::Kafka(k) = &c.sinks[0].kind else { panic!("{:?}", c.sinks) };
    assert_eq!((k.brokers.as_slice(), k.topic.as_str(), c.sinks[0].delivery.batch_size), (&["kafka:9092".to_string()][..], "sentinel-telemetry", 1000));
    assert_eq!(c.sinks[0].delivery.flush_interval, Duration::from_secs(5));
    assert_eq!(k.key, "event.id", "messages are keyed by event id unless told otherwise");
}

#[test]
fn the_shipped_example_and_every_docs_example_parse() {
    let env = |k: &str| match k {
        "KAFKA_PASSWORD" => Some("from-env".to_string()),
        "REDACTION_KEY" => Some("a-key-of-sixteen-or-more".to_string()),
        "INGEST_TOKEN" | "INGEST_HMAC_KEY" | "SENTINEL_TAP_TOKEN" => Some("from-env".to_string()),
        _ => None,
    };
    let example = repo("examples/telemetry.kdl");
    let c = parse_with_env("examples/telemetry.kdl", &example, &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.log.format, LogFormat::Json);
    let kafka = c.sinks.iter().find_map(|s| match &s.kind {
        SinkKind::Kafka(k) => Some(k),
        _ => None,
    });
    assert_eq!(kafka.and_then(|k| k.password.as_ref()).map(|p| p.expose()), Some("from-env"));
    assert!(!format!("{c:?}").contains("from-env"), "a secret was printed");

    let docs = repo("docs/configuration.md");
    let blocks: Vec<&str> = docs.split("```kdl\n").skip(1).map(|b| b.split("```").next().unwrap_or("")).collect();
    assert!(blocks.len() >= 5, "docs lost their examples");
    for (i, b) in blocks.iter().enumerate() {
        parse_with_env(&format!("docs example {}", i + 1), b, &env).unwrap_or_else(|e| panic!("docs example {}:\n{b}\n{e}", i + 1));
    }
}

/// (config, line, column, text in the message, text in the help)
const BROKEN: &[(&str, usize, usize, &str, &str)] = &[
    ("agent \"t\" {\n  sampling {\n    rate 1.5\n  }\n}\n", 3, 10, "`rate`: expected a number from 0 to 1, got a number `1.5`", ""),
    ("agent \"t\" {\n  samplng { rate 0.5; }\n}\n", 2, 3, "unknown node `samplng` in `agent`", "did you mean `sampling`?"),
    ("agent \"t\" {\n  timeout-ms \"10\"\n}\n", 2, 14, "`timeout-ms`: expected an integer from 1 to 60000, got a string `\"10\"`", "write numbers without quotes"),
    ("agent \"t\" {\n  transport \"unix_socket\" {\n    allowed-uids 998 \"proxy\"\n  }\n}\n", 3, 22, "`allowed-uids`: expected an integer id from 0 to 4294967295, got a string `proxy`", "write numbers without quotes"),
    ("agent \"t\" {\n  transport \"unix_socket\" {\n    write-interval-ms 0\n  }\n}\n", 3, 23, "`write-interval-ms`: expected an integer from 1 to 1000, got an integer `0`", ""),
    ("agent \"t\" {\n  failure-mode \"opne\"\n}\n", 2, 16, "`failure-mode`: unknown value \"opne\"", "did you mean \"open\"?"),
    ("agent \"t\" {\n  events \"request_header\"\n}\n", 2, 10, "`events`: unknown value \"request_header\"", "did you mean \"request_headers\"?"),
    ("agent \"t\" {\n  enrichment {\n    geoip \"true\"\n  }\n}\n", 3, 11, "expected a boolean, got the string \"true\"", "write #true (or true in KDL v1)"),
    ("agent \"t\" {\n  sink \"kafak\" { topic \"x\"; }\n}\n", 2, 8, "`sink`: unknown value \"kafak\"", "did you mean \"kafka\"?"),
    ("agent \"t\" {\n  sink \"file\" {\n    rotate-bytes 9999\n  }\n}\n", 2, 3, "`sink \"file\"` needs `path`", "add `path"),
    ("agent \"t\" {\n  sink \"file\" {\n    path \"/a\"\n    page-cache \"kep\"\n  }\n}\n", 4, 16, "`page-cache`: unknown value \"kep\"", "did you mean \"keep\"?"),
    ("agent \"t\" {\n  buffer {\n    when-full \"drop_newest\"\n  }\n}\n", 3, 15, "`when-full`: unknown value \"drop_newest\"", "did you mean \"drop_oldest\"?"),
    ("agent \"t\" {\n  buffer {\n    page-cache \"bypas\"\n  }\n}\n", 3, 16, "`page-cache`: unknown value \"bypas\"", "did you mean \"bypass\"?"),
    ("agent \"t\" {\n  buffer {\n    max-bytes 1048576\n  }\n}\n", 2, 3, "`max-bytes` (1048576) must hold at least two segments", "raise `max-bytes`"),
    ("agent \"t\" {\n  buffer {\n    fsync-interval-ms 100\n  }\n}\n", 2, 3, "`fsync-interval-ms` is only used with `fsync \"interval\"`", "fsync \"interval\""),
    ("agent \"t\" {\n  sink \"http\" {\n    url \"collector:80\"\n  }\n}\n", 3, 9, "`url`: \"collector:80\" is not an http:// or https:// address", "http://"),
    ("agent \"t\" {\n  sink \"s3\" {\n    bucket \"b\"\n    secret-access-key \"x\"\n  }\n}\n", 2, 3, "`access-key-id` and `secret-access-key` go together", "AWS_ACCESS_KEY_ID"),
    ("agent \"t\" {\n  sink \"kafka\" {\n    brokers \"k:9092\"\n    topic \"t\"\n    retry-initial-ms 500\n    retry-max-ms 100\n  }\n}\n", 2, 3, "`retry-max-ms` is shorter than `retry-initial-ms`", ""),
    ("agent \"t\" {\n  sink \"kafka\" {\n    brokers \"k:9092\"\n    topic \"t\"\n    compression \"lz5\"\n  }\n}\n", 5, 17, "`compression`: unknown value \"lz5\"", "did you mean \"lz4\"?"),
    ("agent \"t\" {\n  sink \"clickhouse\" {\n    table \"t\"\n  }\n}\n", 2, 3, "`sink \"clickhouse\"` needs `url`", "add `url"),
    ("agent \"t\" {\n  sink \"file\" { path \"/a\"; }\n  sink \"file\" { path \"/b\"; }\n}\n", 3, 3, "two sinks are both called `file`", "id="),
    ("agent \"t\" {\n  sink \"kafka\" {\n    brokers \"k:9092\"\n    topic \"t\"\n    password \"${NOT_SET_ANYWHERE}\"\n  }\n}\n", 5, 14, "environment variable `NOT_SET_ANYWHERE` is not set", "export NOT_SET_ANYWHERE"),
    ("agent \"t\" {\n  metrics { listen \"localhost\"; }\n}\n", 2, 20, "`listen`: \"localhost\" is not an address", "127.0.0.1:9464"),
    ("agent \"t\" {\n  transport \"tcp\" { path \"/x\"; }\n}\n", 2, 13, "`transport`: unknown value \"tcp\"", "unix_socket"),
    ("agent \"t\" {\n  timeout-ms 5\n  timeout-ms 6\n}\n", 3, 3, "`timeout-ms` is given twice", "keep one"),
    ("agent \"t\" {\n  filter { threads 0; }\n}\n", 2, 20, "expected an integer from 1 to 64", ""),
    ("agent \"t\" {\n  filter { body-capture-bytes 64; }\n}\n", 1, 1, "captures body bytes but `events` asks for no body", "request_body"),
    ("agent \"t\" {\n  enrichment {\n    geoip { field \"geo.country.isocode\" \"cc\"; }\n  }\n}\n", 3, 19, "`field`: \"geo.country.isocode\" is not a geo field", "did you mean \"geo.country.iso_code\"?"),
    ("agent \"t\" {\n  enrichment {\n    geoip { layout \"flat\"; }\n  }\n}\n", 3, 5, "needs at least one `field`", "layout \"dbip\""),
    ("agent \"t\" {\n  enrichment {\n    client-ip { trusted-proxies \"10.0.0.0/33\"; }\n  }\n}\n", 3, 33, "`trusted-proxies`: \"10.0.0.0/33\": prefix length must be 0 to 32", "CIDR"),
    ("agent \"t\" {\n  enrichment {\n    threat-intel {\n      weights tor-exit=400\n    }\n  }\n}\n", 4, 15, "expected an integer from 0 to 100", ""),
    ("agent \"t\" {\n  enrichment {\n    threat-intel { list \"tor\" \"/x\" kind=\"tor\"; }\n  }\n}\n", 3, 36, "`list`: unknown value \"tor\"", "tor-exit"),
    ("agent \"t\" {\n  enrichment {\n    device-detecton\n  }\n}\n", 3, 5, "unknown node `device-detecton` in `enrichment`", "did you mean `device-detection`?"),
    ("agent \"t\" {\n  sampling {\n    dynamic { target-events-per-sec 10; key \"http.rout\"; }\n  }\n}\n", 3, 45, "`key`: \"http.rout\" cannot be part of a sampling key", "did you mean \"http.route\"?"),
    ("agent \"t\" {\n  sampling {\n    dynamic { key \"url.path\"; }\n  }\n}\n", 3, 5, "`dynamic` needs `target-events-per-sec`", "target-events-per-sec 1000"),
    ("agent \"t\" {\n  redaction { mode \"hash\"; }\n}\n", 2, 3, "`hash` mode needs a `hash-key` of at least 16 characters", "REDACTION_KEY"),
    ("agent \"t\" {\n  redaction { detectors \"emial\"; }\n}\n", 2, 25, "`detectors`: unknown value \"emial\"", "did you mean \"email\"?"),
    ("agent \"t\" {\n  timeout-ms\n}\n", 2, 3, "`timeout-ms` needs a value: an integer from 1 to 60000", "for example `timeout-ms 1`"),
    ("agnet \"t\" {\n}\n", 1, 1, "unknown node `agnet` at the top level", "did you mean `agent`?"),
    ("agent \"t\" {\n  sink \"file\" bogus=1 { path \"/a\"; }\n}\n", 2, 15, "`sink` takes no property `bogus`", ""),
    ("agent \"t\" {\n  log { level \"info\" \n", 1, 11, "invalid KDL: No closing '}' for child block", ""),
];

#[test]
fn broken_configs_name_the_line_the_column_and_the_fix() {
    for (text, line, column, message, help) in BROKEN {
        let err = match parse("broken.kdl", text) {
            Ok(c) => panic!("accepted:\n{text}\n{c:?}"),
            Err(e) => e,
        };
        let e = &err.errors[0];
        assert!(e.message.contains(message), "message {:?} lacks {message:?} for\n{text}", e.message);
        assert_eq!((e.line, e.column), (*line, *column), "position of {:?} in\n{text}", e.message);
        if !help.is_empty() {
            assert!(e.help.as_deref().unwrap_or("").contains(help), "help {:?} lacks {help:?} for\n{text}", e.help);
        }
    }
}

#[test]
fn kdl_v2_booleans_and_bare_flags_read_as_true() {
    let c = parse("v2.kdl", "agent \"t\" {\n  enrichment {\n    geoip #true\n    asn\n    threat-intel #false\n  }\n}\n").unwrap();
    assert!(c.enrichment.geoip.is_some() && c.enrichment.asn.is_some() && c.enrichment.threat_intel.is_none());
}

#[test]
fn the_file_sink_drops_written_pages_unless_told_to_keep_them() {
    let file = |extra: &str| {
        let c = parse("f.kdl", &format!("agent \"t\" {{\n  sink \"file\" {{\n    path \"/a\"\n{extra}  }}\n}}\n")).unwrap_or_else(|e| panic!("{e}"));
        match &c.sinks[0].kind {
            SinkKind::File(f) => f.drop_pages,
            other => panic!("{other:?}"),
        }
    };
    assert!(file(""));
    assert!(!file("    page-cache \"keep\"\n"));
    assert!(file("    page-cache \"drop\"\n"));
}

#[test]
fn the_buffer_bypasses_the_page_cache_when_synced_per_batch_unless_told_otherwise() {
    let direct = |extra: &str| parse("b.kdl", &format!("agent \"t\" {{\n  buffer {{\n{extra}  }}\n}}\n")).unwrap_or_else(|e| panic!("{e}")).buffer.direct_io;
    assert!(direct(""));
    assert!(!direct("    page-cache \"keep\"\n"));
    assert!(direct("    page-cache \"bypass\"\n"));
    assert!(!direct("    fsync \"interval\"\n"), "a log synced on an interval keeps its writes unwaited");
    assert!(direct("    fsync \"interval\"\n    page-cache \"bypass\"\n"));
}
