use super::*;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;

/// An enriched event with every kind of column: lists, optional numbers, flags, timestamps.
const FULL: &str = r#"{"schema_version":"1","event":{"id":"0192-full","start_ns":1795000000123456789,"end_ns":1795000000130000000},"http":{"request":{"method":"POST","header":{"user-agent":"curl/8","x-request-id":"r1"},"body":{"size":12,"content":"{\"a\":1}","truncated":true}},"response":{"status_code":503,"body":{"size":0}},"route":"/api"},"url":{"scheme":"https","domain":"example.com","path":"/api/x","query":"q=1"},"client":{"address":"203.0.113.7","port":5555},"upstream":{"address":"10.0.0.2:80","attempts":2,"status_code":503},"timing":{"ttfb_ms":1.5,"total_ms":6.5},"sentinel":{"decision":"allow","risk_score":0.25,"rules":["r1","r2"],"agents":[{"name":"waf","verdict":"allow","duration_ms":0.4}]},"geo":{"country":{"iso_code":"SE","name":"Sweden"},"location":{"lat":59.3,"lon":18.1}},"asn":{"number":64500,"organization":"Example Net"},"threat":{"known_bad":true,"tor_exit":false,"proxy":false,"hosting":true,"lists":["spamhaus"],"score":80},"sampling":{"rate":1.0,"reason":"error"},"filter":{"version":"0.1.0"},"collector":{"host":"c1"}}"#;

/// The least an event can hold.
const BARE: &str = r#"{"schema_version":"1","event":{"id":"0192-bare","start_ns":5,"end_ns":6},"http":{"request":{"method":"GET"},"response":{"status_code":200}},"url":{"path":"/"},"client":{"address":"198.51.100.1"},"timing":{"total_ms":0.1},"sampling":{"rate":0.5,"reason":"rate"},"filter":{"version":"0.1.0"}}"#;

fn read_back(bytes: Vec<u8>) -> Vec<Value> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_json_value()).collect()
}

#[test]
fn every_column_reads_back_with_its_value() {
    let lines = format!("{FULL}\n{BARE}\n");
    let bytes = encode(lines.as_bytes().split(|b| *b == b'\n').filter(|l| !l.is_empty()), "test").unwrap();
    let rows = read_back(bytes);
    assert_eq!(rows.len(), 2);
    let (full, bare) = (&rows[0], &rows[1]);
    assert_eq!(full["event_id"], "0192-full");
    assert_eq!(full["http_request_method"], "POST");
    assert_eq!(full["http_request_header_names"], serde_json::json!(["user-agent", "x-request-id"]));
    assert_eq!(full["http_request_header_values"], serde_json::json!(["curl/8", "r1"]));
    assert_eq!(full["http_request_body_truncated"], true);
    assert_eq!(full["http_response_status_code"], 503);
    assert_eq!(full["upstream_status_code"], 503);
    assert_eq!(full["timing_ttfb_ms"], 1.5);
    assert_eq!(full["sentinel_rules"], serde_json::json!(["r1", "r2"]));
    assert_eq!(full["sentinel_agent_duration_ms"], serde_json::json!([0.4]));
    assert_eq!(full["geo_country_iso_code"], "SE");
    assert_eq!(full["geo_location_lat"], 59.3);
    assert_eq!(full["asn_number"], 64500);
    assert_eq!(full["threat_known_bad"], true);
    assert_eq!(full["threat_hosting"], true);
    assert_eq!(full["threat_lists"], serde_json::json!(["spamhaus"]));
    assert_eq!(full["collector_host"], "c1");
    // Absent values stay absent (null), empty lists stay empty, required text is "".
    assert_eq!(bare["upstream_status_code"], Value::Null);
    assert_eq!(bare["geo_location_lat"], Value::Null);
    assert_eq!(bare["asn_number"], Value::Null);
    assert_eq!(bare["http_request_header_names"], serde_json::json!([]));
    assert_eq!(bare["sentinel_rules"], serde_json::json!([]));
    assert_eq!(bare["geo_country_iso_code"], "");
    assert_eq!(bare["sampling_rate"], 0.5);
    assert_eq!(bare["threat_known_bad"], false);
}

#[test]
fn columns_carry_their_logical_types() {
    let bytes = encode([FULL.as_bytes()].into_iter(), "test").unwrap();
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    let row = reader.get_row_iter(None).unwrap().next().unwrap().unwrap();
    let field = |name: &str| row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| f.clone()).unwrap();
    assert_eq!(field("event_start_ns"), Field::Long(1_795_000_000_123_456_789));
    let descr = reader.metadata().file_metadata().schema_descr();
    let start = descr.columns().iter().find(|c| c.name() == "event_start_ns").unwrap();
    let logical = format!("{:?}", start.self_type().get_basic_info().logical_type_ref());
    assert!(logical.contains("Timestamp") && logical.contains("NANOS") && logical.contains("true"), "{logical}");
    assert_eq!(field("event_date"), Field::Date(1_795_000_000 / 86_400));
    assert_eq!(field("http_response_status_code"), Field::UShort(503));
    assert_eq!(field("http_request_body_size"), Field::ULong(12));
    assert_eq!(field("asn_number"), Field::UInt(64500));
    assert_eq!(field("sentinel_risk_score"), Field::Float(0.25));
    let meta = reader.metadata();
    let col = meta.row_group(0).column(0);
    assert!(matches!(col.compression(), parquet::basic::Compression::ZSTD(_)));
}

#[test]
fn each_call_is_one_row_group_and_the_footer_counts_them_all() {
    let mut w = ParquetWriter::new(Vec::new()).unwrap();
    assert_eq!(w.write_lines([FULL.as_bytes(), BARE.as_bytes()].into_iter(), "test").unwrap(), 2);
    assert_eq!(w.write_lines([BARE.as_bytes()].into_iter(), "test").unwrap(), 1);
    // A line that is not an event is skipped, the rest written.
    assert_eq!(w.write_lines([b"{not json".as_slice(), FULL.as_bytes()].into_iter(), "test").unwrap(), 1);
    assert_eq!(w.rows(), 4);
    let bytes = w.finish().unwrap();
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
    assert_eq!(reader.metadata().num_row_groups(), 3);
    assert_eq!(reader.metadata().file_metadata().num_rows(), 4);
}

#[test]
fn the_schema_and_the_row_agree_column_by_column() {
    let schema = SchemaDescriptor::new(schema().unwrap());
    let names: Vec<String> = schema.columns().iter().map(|c| c.path().parts()[0].clone()).collect();
    let event: sentinel_wire::event::Event<'_> = serde_json::from_str(FULL).unwrap();
    let row = serde_json::to_value(EventRow::from_event(&event)).unwrap();
    let fields: Vec<String> = row.as_object().unwrap().keys().cloned().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, fields, "schema.txt and EventRow must list the same columns");
}

#[test]
fn a_row_that_does_not_fit_is_an_error_not_a_panic() {
    #[derive(serde::Serialize)]
    struct Wrong {
        event_date: &'static str,
    }
    let mut cols = Columns::new(&SchemaDescriptor::new(schema().unwrap()));
    let err = cols.push(&Wrong { event_date: "x" }).unwrap_err();
    assert!(err.to_string().contains("fields"), "{err}");
}
