//! The validated configuration: what every part of the agent reads. Defaults live here, so a
//! missing node and an absent block mean the same thing everywhere.

use crate::env::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole agent configuration (one `agent "telemetry" { … }` block).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The block's name (`agent "telemetry"`), used in logs and metrics labels.
    pub name: String,
    pub transport: Transport,
    /// Which parts of an exchange the proxy hands over.
    pub events: Vec<EventKind>,
    /// The proxy's budget for one call to the filter.
    pub timeout: Duration,
    pub failure_mode: FailureMode,
    pub filter: FilterPart,
    pub sampling: Sampling,
    pub enrichment: Enrichment,
    /// PII redaction in the collector; on unless `redaction #false`.
    pub redaction: Option<Redaction>,
    pub sinks: Vec<Sink>,
    pub buffer: Buffer,
    pub metrics: Metrics,
    pub log: Logging,
}

/// Where proxies reach the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    pub socket_path: PathBuf,
    /// Largest frame accepted; larger ones are counted and skipped.
    pub max_frame_bytes: usize,
    /// How long the proxy's sender gathers events between socket writes (sooner when a batch is
    /// full): each write wakes the collector's whole chain, so fewer writes cost both sides less.
    pub write_interval: Duration,
    /// Peers allowed to connect, by the uid or gid the kernel reports for them (SO_PEERCRED);
    /// both empty: any peer the socket's mode (0660) lets in.
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
}

impl Transport {
    /// `write-interval-ms` when not given; the host's channel starts from it too.
    pub const DEFAULT_WRITE_INTERVAL: Duration = Duration::from_millis(50);
}

/// Parts of an exchange the proxy hands to the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    RequestHeaders,
    ResponseHeaders,
    RequestBody,
    ResponseBody,
}

impl EventKind {
    pub const ALL: [(&'static str, EventKind); 4] = [
        ("request_headers", EventKind::RequestHeaders),
        ("response_headers", EventKind::ResponseHeaders),
        ("request_body", EventKind::RequestBody),
        ("response_body", EventKind::ResponseBody),
    ];
}

/// What the proxy does when the agent cannot take an event: `open` lets the request go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    Open,
    Closed,
}

/// What the filter does inside the proxy: handed to it by the host.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPart {
    /// Headers kept (empty: the filter's defaults).
    pub header_allowlist: Vec<String>,
    /// Headers masked besides the built-in credential headers.
    pub masked_headers: Vec<String>,
    /// Body bytes captured per direction (0: none). Needs the matching `events`.
    pub body_capture_bytes: u32,
    /// Threads running the filter in the proxy, one instance each (read at start).
    pub threads: usize,
}

/// Sampling: the fixed rate and error rules apply in the filter (head sampling) and again in
/// the collector, consistently by request id, so an event kept at the edge is never dropped
/// again for rate; the dynamic sampler runs in the collector only.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub rate: f64,
    /// Keep every 5xx whatever the rate.
    pub always_sample_errors: bool,
    /// Keep every 4xx too.
    pub always_sample_client_errors: bool,
    pub dynamic: Option<DynamicSampling>,
}

/// The collector's dynamic sampler: per key, aiming at a total rate of events while keeping
/// rare keys whole.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicSampling {
    /// Events a second the sampler aims to keep, over all keys.
    pub target_events_per_sec: f64,
    /// The fields whose values make a key (see [`DynamicSampling::KEY_FIELDS`]).
    pub key: Vec<String>,
    /// How often the per-key rates are recomputed from the traffic seen.
    pub adjust_interval: Duration,
}

impl DynamicSampling {
    /// Fields a key can be made of; `status_class` is `2xx`, `4xx`, `5xx`…
    pub const KEY_FIELDS: &'static [&'static str] =
        &["http.route", "http.request.method", "status_class", "http.response.status_code", "url.domain", "url.path"];
    pub const DEFAULT_KEY: &'static [&'static str] = &["http.route", "http.request.method", "status_class"];
}

/// Which enrichers run in the collector, and the data each reads. An enricher that is off is
/// `None`; each data file is checked at start and reloaded when it changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    pub geoip: Option<GeoIp>,
    pub asn: Option<AsnData>,
    pub device_detection: Option<DeviceDetection>,
    pub threat_intel: Option<ThreatIntel>,
    pub client_ip: ClientIp,
    /// Distinct client addresses whose geo/asn/threat answers each pipeline worker remembers.
    pub address_cache_size: usize,
    /// How often data files are checked for changes.
    pub reload_interval: Duration,
}

/// `geo.*` from MaxMind DB files (tried in order: DB-IP ships IPv4 and IPv6 apart).
#[derive(Debug, Clone, PartialEq)]
pub struct GeoIp {
    pub databases: Vec<PathBuf>,
    pub layout: GeoLayout,
    /// For the flat layout: schema field (`geo.country.iso_code`) ← record key (`country_code`).
    pub fields: Vec<(String, String)>,
}

/// How a database's records are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoLayout {
    /// MaxMind GeoIP2 / GeoLite2 City and Country.
    GeoIp2,
    /// One flat map per network (DB-IP lite and other generic databases), read through `fields`.
    Flat,
}

impl GeoLayout {
    /// The `fields` of DB-IP's lite city databases, used by `layout "dbip"`.
    pub const DBIP_FIELDS: &'static [(&'static str, &'static str)] = &[
        ("geo.country.iso_code", "country_code"),
        ("geo.region.name", "state1"),
        ("geo.locality.name", "city"),
        ("geo.postal_code", "postcode"),
        ("geo.timezone", "timezone"),
        ("geo.location.lat", "latitude"),
        ("geo.location.lon", "longitude"),
    ];
    /// The schema fields a flat mapping may fill.
    pub const TARGETS: &'static [&'static str] = &[
        "geo.continent.code",
        "geo.country.iso_code",
        "geo.country.name",
        "geo.region.iso_code",
        "geo.region.name",
        "geo.locality.name",
        "geo.postal_code",
        "geo.timezone",
        "geo.location.lat",
        "geo.location.lon",
    ];
}

/// `asn.*` from MaxMind DB files (GeoLite2-ASN, GeoIP2-ISP) and/or CSV range files
/// (`start,end,asn,organization`).
#[derive(Debug, Clone, PartialEq)]
pub struct AsnData {
    pub databases: Vec<PathBuf>,
    pub csv: Vec<PathBuf>,
}

/// `device.*`, `user_agent.*`, `os.*` from the User-Agent header with uap-core's regexes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceDetection {
    pub regexes: PathBuf,
    /// Distinct user agents remembered per worker (parsing costs ~20 µs; a hit ~50 ns).
    pub cache_size: usize,
}

/// `threat.*` from IP lists and databases.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreatIntel {
    pub lists: Vec<ThreatList>,
    /// GeoIP2 Anonymous-IP databases (Tor exits, proxies, VPNs, hosting).
    pub anonymous_ip: Vec<PathBuf>,
    /// Files of AS numbers (one a line) whose addresses count as hosting.
    pub hosting_asns: Vec<PathBuf>,
    /// Files of AS numbers whose addresses count as proxies (VPN and proxy providers).
    pub proxy_asns: Vec<PathBuf>,
    pub weights: ThreatWeights,
}

/// A named list file: one IP, CIDR or `first-last` range a line, `#`/`;` comments; the Tor
/// bulk exit list and the older `ExitAddress` format too.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreatList {
    pub name: String,
    pub path: PathBuf,
    pub kind: ThreatKind,
}

/// Which `threat.*` flag a list sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreatKind {
    KnownBad,
    TorExit,
    Proxy,
    Hosting,
}

impl ThreatKind {
    pub const ALL: [(&'static str, ThreatKind); 4] =
        [("known-bad", ThreatKind::KnownBad), ("tor-exit", ThreatKind::TorExit), ("proxy", ThreatKind::Proxy), ("hosting", ThreatKind::Hosting)];
}

/// Points each flag adds to `threat.score` (the sum is capped at 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreatWeights {
    pub known_bad: u32,
    pub tor_exit: u32,
    pub proxy: u32,
    pub hosting: u32,
}

/// Where the client address comes from. By default it is the proxy's peer and
/// `X-Forwarded-For` is never trusted; with trusted proxies, the chain is walked from the right
/// past every trusted hop.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientIp {
    /// Addresses and CIDR blocks of proxies in front of this one.
    pub trusted_proxies: Vec<String>,
    /// The header carrying the chain (lower case).
    pub header: String,
}

/// What the collector removes before any sink sees an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Redaction {
    /// Content detectors that run (names of [`Redaction::DETECTORS`]).
    pub detectors: Vec<String>,
    /// What replaces a finding unless its detector says otherwise.
    pub mode: RedactionMode,
    /// Per-detector modes.
    pub detector_modes: Vec<(String, RedactionMode)>,
    /// Query parameters whose values are always replaced (case-insensitive).
    pub query_params: Vec<String>,
    /// Headers whose values are always replaced (lower case).
    pub headers: Vec<String>,
    /// The key of `hash` mode (HMAC-SHA256).
    pub hash_key: Option<Secret>,
    /// Truncate `client.address` (and forwarded hops) to /24 or /48 after enrichment.
    pub anonymize_client_ip: bool,
}

/// How a finding is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedactionMode {
    /// `[REDACTED:kind]`.
    Mask,
    /// Nothing.
    Remove,
    /// `hmac:` and 16 hex digits of HMAC-SHA256 with the configured key: joins still work.
    Hash,
}

impl RedactionMode {
    pub const ALL: [(&'static str, RedactionMode); 3] = [("mask", RedactionMode::Mask), ("remove", RedactionMode::Remove), ("hash", RedactionMode::Hash)];
}

impl Redaction {
    pub const DETECTORS: &'static [&'static str] =
        &["email", "payment-card", "jwt", "bearer-basic", "aws-access-key", "github-token", "slack-token", "stripe-key", "us-ssn", "iban", "phone", "google-api-key", "aws-secret-key", "private-key", "password"];
    pub const QUERY_PARAMS: &'static [&'static str] = &[
        "token", "access_token", "refresh_token", "id_token", "password", "passwd", "pwd", "secret", "client_secret", "api_key", "apikey",
        "key", "signature", "sig", "session", "session_id", "sessionid", "sid", "auth", "code", "private_key",
    ];
    pub const HEADERS: &'static [&'static str] =
        &["authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token", "x-csrf-token", "x-session-id"];
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            detectors: Redaction::DETECTORS.iter().map(|s| s.to_string()).collect(),
            mode: RedactionMode::Mask,
            detector_modes: Vec::new(),
            query_params: Redaction::QUERY_PARAMS.iter().map(|s| s.to_string()).collect(),
            headers: Redaction::HEADERS.iter().map(|s| s.to_string()).collect(),
            hash_key: None,
            anonymize_client_ip: false,
        }
    }
}

/// One output, named by its kind and an optional id (`sink "file" id="archive"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    /// Unique among sinks: the id, else the kind.
    pub id: String,
    pub kind: SinkKind,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    File(FileSink),
    Kafka(KafkaSink),
    ClickHouse(ClickHouseSink),
    S3(S3Sink),
    Http(HttpSink),
}

impl SinkKind {
    /// The kind's name as written in `sink "…"`.
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::ClickHouse(_) => "clickhouse",
            SinkKind::S3(_) => "s3",
            SinkKind::Http(_) => "http",
        }
    }
}

/// How a sink batches, retries and backs off; every sink has its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Most events in one batch, and most bytes (whichever comes first).
    pub batch_size: usize,
    pub batch_bytes: usize,
    /// A batch that has not filled up is sent this long after its first event (0: at once).
    pub flush_interval: Duration,
    /// First and longest wait between retries of a failed batch (exponential, with jitter).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// After this many failures in a row the circuit opens: no attempt for `breaker_cooldown`,
    /// then one trial batch decides.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Delivery {
    /// The defaults of a sink kind: local files write at once, remote stores batch.
    pub fn defaults_for(kind: &str) -> Delivery {
        let base = Delivery {
            batch_size: 10_000,
            batch_bytes: 8 << 20,
            flush_interval: Duration::from_secs(1),
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        };
        match kind {
            "file" => Delivery { flush_interval: Duration::ZERO, ..base },
            "kafka" => Delivery { batch_size: 1_000, flush_interval: Duration::from_millis(100), ..base },
            "clickhouse" => Delivery { batch_size: 50_000, batch_bytes: 32 << 20, ..base },
            "s3" => Delivery { batch_size: 500_000, batch_bytes: 128 << 20, flush_interval: Duration::from_secs(60), ..base },
            _ => Delivery { batch_size: 1_000, batch_bytes: 4 << 20, ..base },
        }
    }
}

/// Rotating files: NDJSON, or Parquet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    pub dir: PathBuf,
    pub format: FileFormat,
    pub rotate_bytes: u64,
    pub rotate_after: Duration,
    /// Rotated files kept (0: all).
    pub keep_files: usize,
    /// Written pages leave the page cache once on disk (`RWF_DONTCACHE`): the collector never
    /// reads its output back, so caching it only takes memory.
    pub drop_pages: bool,
}

/// How events are laid out in files and objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON document a line.
    Ndjson,
    /// Typed columns (dotted names flattened with `_`), zstd-compressed.
    Parquet,
}

/// A Kafka topic, written by an idempotent producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSink {
    pub brokers: Vec<String>,
    pub topic: String,
    /// The event field whose value keys each message (dotted path); empty: no key.
    pub key: String,
    pub format: ValueFormat,
    /// none, gzip, snappy, lz4 or zstd.
    pub compression: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// More librdkafka settings, passed as given (`option "linger.ms" "20"`).
    pub options: Vec<(String, String)>,
}

/// How a message value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueFormat {
    Json,
    MessagePack,
}

/// A ClickHouse table over HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseSink {
    pub url: String,
    pub database: String,
    pub table: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Create the table (the DDL shipped with the collector) if it is missing.
    pub create_table: bool,
}

/// Objects in an S3 bucket (or any S3-compatible store), under hive-style partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Sink {
    pub bucket: String,
    /// Key prefix before `dt=YYYY-MM-DD/hour=HH/`.
    pub prefix: String,
    pub region: String,
    /// A custom endpoint (`http://127.0.0.1:8333`) for S3-compatible stores; path-style keys.
    pub endpoint: Option<String>,
    pub format: ObjectFormat,
    /// Credentials; when absent, the standard AWS environment variables are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// Objects larger than this are uploaded in parts of this size.
    pub multipart_bytes: usize,
}

/// How an S3 object holds its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    NdjsonGzip,
    Parquet,
}

/// Batched NDJSON POSTs to an HTTP endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSink {
    pub url: String,
    /// Extra request headers (values may come from the environment and are never logged).
    pub headers: Vec<(String, Secret)>,
    pub gzip: bool,
    /// Signs each body with HMAC-SHA256 under this key, in `signature_header`.
    pub hmac_key: Option<Secret>,
    pub signature_header: String,
    pub timeout: Duration,
}

/// The collector's write-ahead log: where accepted events wait for every sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
    /// Segments written and read around the page cache (direct I/O) where the file system
    /// allows it: the log is read once, soon after it is written, and never needs caching. By
    /// default with `fsync "batch"` only, since a direct write waits for the device.
    pub direct_io: bool,
}

/// What happens when the buffer is at `max-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Stop acknowledging until sinks catch up (proxies hold, then drop with a counter).
    Block,
    /// Delete the oldest segment, counting the events each sink loses.
    DropOldest,
}

/// When the buffer is forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before each group of batches is acknowledged.
    Batch,
    /// Every so often; acknowledged once written (survives the process, not the machine).
    Interval(Duration),
}

/// The agent's own HTTP endpoint: `/metrics`, `/health/live`, `/health/ready`, and `/tap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    pub listen: Option<SocketAddr>,
    /// The bearer token `/tap` requires; without one the tap is off.
    pub tap_token: Option<Secret>,
    /// Whether a tap may watch the `decoded` and `enriched` stages, which hold events before
    /// redaction (personal data included).
    pub tap_unredacted: bool,
}

/// The agent's own logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// A tracing filter (`info`, `sentinel_collector=debug`); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "telemetry".into(),
            transport: Transport {
                socket_path: "/run/sentinel/telemetry.sock".into(),
                max_frame_bytes: 1 << 20,
                write_interval: Transport::DEFAULT_WRITE_INTERVAL,
                allowed_uids: Vec::new(),
                allowed_gids: Vec::new(),
            },
            events: vec![EventKind::RequestHeaders, EventKind::ResponseHeaders],
            timeout: Duration::from_millis(10),
            failure_mode: FailureMode::Open,
            filter: FilterPart { header_allowlist: Vec::new(), masked_headers: Vec::new(), body_capture_bytes: 0, threads: 1 },
            sampling: Sampling { rate: 1.0, always_sample_errors: true, always_sample_client_errors: false, dynamic: None },
            enrichment: Enrichment {
                geoip: None,
                asn: None,
                device_detection: None,
                threat_intel: None,
                client_ip: ClientIp { trusted_proxies: Vec::new(), header: "x-forwarded-for".into() },
                address_cache_size: 10_000,
                reload_interval: Duration::from_secs(10),
            },
            redaction: Some(Redaction::default()),
            sinks: Vec::new(),
            buffer: Buffer {
                dir: "/var/lib/sentinel/buffer".into(),
                max_bytes: 1 << 30,
                segment_bytes: 64 << 20,
                when_full: WhenFull::Block,
                fsync: FsyncPolicy::Batch,
                direct_io: true,
            },
            metrics: Metrics { listen: None, tap_token: None, tap_unredacted: false },
            log: Logging { level: "info".into(), format: LogFormat::Text },
        }
    }
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSink { dir: dir.into(), format: FileFormat::Ndjson, rotate_bytes: 256 << 20, rotate_after: Duration::from_secs(3600), keep_files: 24, drop_pages: true }
    }
}

/// Where the usual tools install their data (geoipupdate on Debian; uap-core by hand).
pub mod default_paths {
    pub const GEOIP_CITY: &str = "/usr/share/GeoIP/GeoLite2-City.mmdb";
    pub const GEOIP_ASN: &str = "/usr/share/GeoIP/GeoLite2-ASN.mmdb";
    pub const UAP_REGEXES: &str = "/usr/share/uap-core/regexes.yaml";
    pub const TOR_EXITS: &str = "/var/lib/sentinel/tor-exits.txt";
    pub const KNOWN_BAD: &str = "/var/lib/sentinel/known-bad.netset";
}

impl Default for ThreatWeights {
    fn default() -> Self {
        ThreatWeights { known_bad: 60, tor_exit: 40, proxy: 25, hosting: 10 }
    }
}
