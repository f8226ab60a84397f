//! The output side of the document: `sink "<kind>" { … }` blocks (each with its kind's settings
//! and the delivery settings every sink shares) and the `buffer { … }` block of the
//! write-ahead log in front of them.

use super::Reader;
use crate::env::Secret;
use crate::model::*;
use kdl::KdlNode;
use std::time::Duration;

const SINK_KINDS: &[&str] = &["file", "kafka", "clickhouse", "s3", "http"];
/// Settings every sink takes.
const DELIVERY: &[&str] = &[
    "batch-size", "batch-bytes", "flush-interval-ms", "retry-initial-ms", "retry-max-ms", "circuit-breaker-failures", "circuit-breaker-cooldown-ms",
];
const FILE: &[&str] = &["path", "format", "rotate-bytes", "rotate-secs", "keep-files", "page-cache"];
const KAFKA: &[&str] = &["brokers", "topic", "key", "format", "compression", "username", "password", "option"];
const CLICKHOUSE: &[&str] = &["url", "database", "table", "username", "password", "create-table"];
const S3: &[&str] = &["bucket", "prefix", "region", "endpoint", "format", "access-key-id", "secret-access-key", "multipart-bytes"];
const HTTP: &[&str] = &["url", "header", "gzip", "hmac-key", "signature-header", "timeout-ms"];
const BUFFER: &[&str] = &["path", "max-bytes", "segment-bytes", "when-full", "fsync", "fsync-interval-ms", "page-cache"];

impl Reader<'_> {
    pub(super) fn sink(&mut self, n: &KdlNode) -> Option<Sink> {
        let args = self.args(n, &["id"]);
        let [kind_entry] = args.as_slice() else {
            self.error(n.span().offset(), "`sink` needs its kind").help = Some(format!("one of: {}", SINK_KINDS.join(", ")));
            return None;
        };
        let options: Vec<(&str, &str)> = SINK_KINDS.iter().map(|k| (*k, *k)).collect();
        let kind = self.choice(n, kind_entry, &options)?;
        let id = match n.entry("id") {
            Some(e) => self.string_of(n, e)?,
            None => kind.to_string(),
        };
        let own = match kind {
            "file" => FILE,
            "kafka" => KAFKA,
            "clickhouse" => CLICKHOUSE,
            "s3" => S3,
            _ => HTTP,
        };
        let known: Vec<&str> = own.iter().chain(DELIVERY).copied().collect();
        let children = self.children(n, &known, &["header", "option"]);
        let mut delivery = Delivery::defaults_for(kind);
        let mut rest = Vec::new();
        for c in children {
            if !self.delivery(c, &mut delivery) {
                rest.push(c);
            }
        }
        if delivery.retry_max < delivery.retry_initial {
            self.error(n.span().offset(), "`retry-max-ms` is shorter than `retry-initial-ms`").help = Some("make the longest wait at least the first".into());
        }
        let kind = match kind {
            "file" => SinkKind::File(self.file(n, &rest)),
            "kafka" => SinkKind::Kafka(self.kafka(n, &rest)),
            "clickhouse" => SinkKind::ClickHouse(self.clickhouse(n, &rest)),
            "s3" => SinkKind::S3(self.s3(n, &rest)),
            _ => SinkKind::Http(self.http(n, &rest)),
        };
        Some(Sink { id, kind, delivery })
    }

    /// Reads one delivery setting; false when `c` is not one.
    fn delivery(&mut self, c: &KdlNode, d: &mut Delivery) -> bool {
        let ms = |v: u64| Duration::from_millis(v);
        match c.name().value() {
            "batch-size" => d.batch_size = self.integer(c, 1, 10_000_000).map_or(d.batch_size, |v| v as usize),
            "batch-bytes" => d.batch_bytes = self.integer(c, 1024, 1 << 32).map_or(d.batch_bytes, |v| v as usize),
            "flush-interval-ms" => d.flush_interval = self.integer(c, 0, 3_600_000).map_or(d.flush_interval, ms),
            "retry-initial-ms" => d.retry_initial = self.integer(c, 1, 3_600_000).map_or(d.retry_initial, ms),
            "retry-max-ms" => d.retry_max = self.integer(c, 1, 3_600_000).map_or(d.retry_max, ms),
            "circuit-breaker-failures" => d.breaker_failures = self.integer(c, 1, 1_000_000).map_or(d.breaker_failures, |v| v as u32),
            "circuit-breaker-cooldown-ms" => d.breaker_cooldown = self.integer(c, 1, 3_600_000).map_or(d.breaker_cooldown, ms),
            _ => return false,
        }
        true
    }

    /// Reports a required setting that is missing.
    fn required(&mut self, n: &KdlNode, missing: bool, what: &str, example: &str) {
        if missing {
            let kind = n.entries().first().and_then(|e| e.value().as_string()).unwrap_or_default().to_string();
            self.error(n.span().offset(), format!("`sink \"{kind}\"` needs `{what}`")).help = Some(format!("add `{example}` inside the block"));
        }
    }

    /// A node of two strings (`header "Name" "value"`).
    fn pair(&mut self, c: &KdlNode) -> Option<(String, String)> {
        self.no_children(c);
        let args = self.args(c, &[]);
        let [k, v] = args.as_slice() else {
            self.error(c.span().offset(), format!("`{}` takes a name and a value", c.name().value())).help =
                Some(format!("e.g. `{} \"name\" \"value\"`", c.name().value()));
            return None;
        };
        Some((self.string_of(c, k)?, self.string_of(c, v)?))
    }

    fn format<T: Copy>(&mut self, c: &KdlNode, options: &[(&str, T)]) -> Option<T> {
        self.one_of(c, "a format", options)
    }

    /// One string value out of `options`, `what` naming it in errors.
    fn one_of<T: Copy>(&mut self, c: &KdlNode, what: &str, options: &[(&str, T)]) -> Option<T> {
        let e = self.one(c, what, &format!("\"{}\"", options[0].0))?;
        self.choice(c, e, options)
    }

    fn file(&mut self, n: &KdlNode, children: &[&KdlNode]) -> FileSink {
        let mut f = FileSink::new("");
        for &c in children {
            match c.name().value() {
                "path" => f.dir = self.string(c).unwrap_or_default().into(),
                "format" => f.format = self.format(c, &[("ndjson", FileFormat::Ndjson), ("parquet", FileFormat::Parquet)]).unwrap_or(f.format),
                "rotate-bytes" => f.rotate_bytes = self.integer(c, 4096, u64::MAX >> 1).unwrap_or(f.rotate_bytes),
                "rotate-secs" => f.rotate_after = self.integer(c, 1, 86_400 * 366).map_or(f.rotate_after, Duration::from_secs),
                "page-cache" => f.drop_pages = self.one_of(c, "\"drop\" or \"keep\"", &[("drop", true), ("keep", false)]).unwrap_or(f.drop_pages),
                _ => f.keep_files = self.integer(c, 0, 1_000_000).map_or(f.keep_files, |v| v as usize),
            }
        }
        let missing = f.dir.as_os_str().is_empty();
        self.required(n, missing, "path", "path \"/var/lib/sentinel/events\"");
        f
    }

    fn kafka(&mut self, n: &KdlNode, children: &[&KdlNode]) -> KafkaSink {
        let mut k = KafkaSink {
            brokers: Vec::new(),
            topic: String::new(),
            key: "event.id".into(),
            format: ValueFormat::Json,
            compression: "lz4".into(),
            username: None,
            password: None,
            options: Vec::new(),
        };
        for &c in children {
            match c.name().value() {
                "brokers" => k.brokers = self.strings(c),
                "topic" => k.topic = self.string(c).unwrap_or_default(),
                "key" => k.key = self.string(c).unwrap_or(k.key),
                "format" => k.format = self.format(c, &[("json", ValueFormat::Json), ("msgpack", ValueFormat::MessagePack)]).unwrap_or(k.format),
                "compression" => {
                    let codecs = [("none", "none"), ("gzip", "gzip"), ("snappy", "snappy"), ("lz4", "lz4"), ("zstd", "zstd")];
                    if let Some(v) = self.format(c, &codecs) {
                        k.compression = v.into();
                    }
                }
                "username" => k.username = self.string(c),
                "password" => k.password = self.string(c).map(Secret::new),
                _ => k.options.extend(self.pair(c)),
            }
        }
        let (no_brokers, no_topic) = (k.brokers.is_empty(), k.topic.is_empty());
        self.required(n, no_brokers, "brokers", "brokers \"kafka:9092\"");
        self.required(n, no_topic, "topic", "topic \"sentinel-telemetry\"");
        k
    }

    fn clickhouse(&mut self, n: &KdlNode, children: &[&KdlNode]) -> ClickHouseSink {
        let mut ch = ClickHouseSink {
            url: String::new(),
            database: "default".into(),
            table: "sentinel_events".into(),
            username: None,
            password: None,
            create_table: false,
        };
        let mut url_given = false;
        for &c in children {
            match c.name().value() {
                "url" => {
                    url_given = true;
                    ch.url = self.url(c).unwrap_or_default();
                }
                "database" => ch.database = self.string(c).unwrap_or(ch.database),
                "table" => ch.table = self.string(c).unwrap_or(ch.table),
                "username" => ch.username = self.string(c),
                "password" => ch.password = self.string(c).map(Secret::new),
                _ => ch.create_table = self.boolean(c).unwrap_or(false),
            }
        }
        let missing = !url_given;
        self.required(n, missing, "url", "url \"http://clickhouse:8123\"");
        ch
    }

    fn s3(&mut self, n: &KdlNode, children: &[&KdlNode]) -> S3Sink {
        let mut s = S3Sink {
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            format: ObjectFormat::NdjsonGzip,
            access_key_id: None,
            secret_access_key: None,
            multipart_bytes: 16 << 20,
        };
        for &c in children {
            match c.name().value() {
                "bucket" => s.bucket = self.string(c).unwrap_or_default(),
                "prefix" => s.prefix = self.string(c).unwrap_or_default().trim_matches('/').to_string(),
                "region" => s.region = self.string(c).unwrap_or(s.region),
                "endpoint" => s.endpoint = self.url(c),
                "format" => s.format = self.format(c, &[("ndjson", ObjectFormat::NdjsonGzip), ("parquet", ObjectFormat::Parquet)]).unwrap_or(s.format),
                "access-key-id" => s.access_key_id = self.string(c),
                "secret-access-key" => s.secret_access_key = self.string(c).map(Secret::new),
                _ => s.multipart_bytes = self.integer(c, 5 << 20, 5 << 30).map_or(s.multipart_bytes, |v| v as usize),
            }
        }
        let missing = s.bucket.is_empty();
        self.required(n, missing, "bucket", "bucket \"telemetry\"");
        if s.access_key_id.is_some() != s.secret_access_key.is_some() {
            self.error(n.span().offset(), "`access-key-id` and `secret-access-key` go together").help =
                Some("give both, or neither to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into());
        }
        s
    }

    fn http(&mut self, n: &KdlNode, children: &[&KdlNode]) -> HttpSink {
        let mut h = HttpSink {
            url: String::new(),
            headers: Vec::new(),
            gzip: true,
            hmac_key: None,
            signature_header: "x-sentinel-signature".into(),
            timeout: Duration::from_secs(10),
        };
        let mut url_given = false;
        for &c in children {
            match c.name().value() {
                "url" => {
                    url_given = true;
                    h.url = self.url(c).unwrap_or_default();
                }
                "header" => h.headers.extend(self.pair(c).map(|(k, v)| (k, Secret::new(v)))),
                "gzip" => h.gzip = self.boolean(c).unwrap_or(h.gzip),
                "hmac-key" => h.hmac_key = self.string(c).map(Secret::new),
                "signature-header" => h.signature_header = self.string(c).unwrap_or(h.signature_header),
                _ => h.timeout = self.integer(c, 1, 600_000).map_or(h.timeout, Duration::from_millis),
            }
        }
        let missing = !url_given;
        self.required(n, missing, "url", "url \"https://collector.example.com/events\"");
        h
    }

    /// An `http://` or `https://` address.
    fn url(&mut self, c: &KdlNode) -> Option<String> {
        let v = self.string(c)?;
        if v.starts_with("http://") || v.starts_with("https://") {
            return Some(v);
        }
        let at = c.entries().first().map_or(c.span().offset(), |e| e.span().offset());
        self.error(at, format!("`{}`: \"{v}\" is not an http:// or https:// address", c.name().value())).help =
            Some("e.g. \"http://127.0.0.1:8123\"".into());
        None
    }

    pub(super) fn buffer(&mut self, n: &KdlNode, b: &mut Buffer) {
        self.args(n, &[]);
        let mut interval = Duration::from_secs(1);
        let mut interval_given = false;
        let mut page_cache_given = false;
        for c in self.children(n, BUFFER, &[]) {
            match c.name().value() {
                "path" => b.dir = self.string(c).map_or(b.dir.clone(), Into::into),
                "max-bytes" => b.max_bytes = self.integer(c, 1 << 20, u64::MAX >> 1).unwrap_or(b.max_bytes),
                "segment-bytes" => b.segment_bytes = self.integer(c, 64 << 10, 1 << 32).unwrap_or(b.segment_bytes),
                "when-full" => {
                    let options = [("block", WhenFull::Block), ("drop_oldest", WhenFull::DropOldest), ("drop-oldest", WhenFull::DropOldest)];
                    if let Some(e) = self.one(c, "\"block\" or \"drop_oldest\"", "\"block\"") {
                        b.when_full = self.choice(c, e, &options).unwrap_or(b.when_full);
                    }
                }
                "fsync" => {
                    if let Some(e) = self.one(c, "\"batch\" or \"interval\"", "\"batch\"") {
                        b.fsync = self.choice(c, e, &[("batch", FsyncPolicy::Batch), ("interval", FsyncPolicy::Interval(Duration::ZERO))]).unwrap_or(b.fsync);
                    }
                }
                "page-cache" => {
                    page_cache_given = true;
                    b.direct_io = self.one_of(c, "\"bypass\" or \"keep\"", &[("bypass", true), ("keep", false)]).unwrap_or(b.direct_io);
                }
                _ => {
                    interval_given = true;
                    interval = self.integer(c, 1, 60_000).map_or(interval, Duration::from_millis);
                }
            }
        }
        match b.fsync {
            FsyncPolicy::Interval(_) => b.fsync = FsyncPolicy::Interval(interval),
            FsyncPolicy::Batch if interval_given => {
                self.error(n.span().offset(), "`fsync-interval-ms` is only used with `fsync \"interval\"`").help =
                    Some("add `fsync \"interval\"`, or remove `fsync-interval-ms`".into());
            }
            FsyncPolicy::Batch => {}
        }
        if !page_cache_given {
            // Direct writes wait for the device: free when every group is synced anyway, a cost
            // a log synced on an interval was configured to avoid.
            b.direct_io = b.fsync == FsyncPolicy::Batch;
        }
        if b.max_bytes < 2 * b.segment_bytes {
            self.error(n.span().offset(), format!("`max-bytes` ({}) must hold at least two segments of `segment-bytes` ({})", b.max_bytes, b.segment_bytes)).help =
                Some("raise `max-bytes` or lower `segment-bytes`".into());
        }
    }
}
