//! The host's settings: where the filter is, what it is told, and the limits it runs under.

use crate::channel::ChannelConfig;
use std::path::PathBuf;
use std::time::Duration;

/// What the filter is configured with (handed to its `configure` export once per instance).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterSettings {
    /// Header names kept in events; empty means the filter's default allowlist.
    pub header_allowlist: Vec<String>,
    /// Extra header names whose values are masked (the credential defaults always are).
    pub masked_headers: Vec<String>,
    /// Head-sampling rate in [0, 1].
    pub sample_rate: f64,
    pub always_keep_server_errors: bool,
    pub always_keep_client_errors: bool,
    /// Most body bytes captured into an event; 0 disables body capture.
    pub body_capture_bytes: u32,
}

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            header_allowlist: Vec::new(),
            masked_headers: Vec::new(),
            sample_rate: 1.0,
            always_keep_server_errors: true,
            always_keep_client_errors: false,
            body_capture_bytes: 0,
        }
    }
}

impl FilterSettings {
    /// The filter's part of the agent's configuration file: the `filter` block and `sampling`.
    pub fn from_agent_config(c: &sentinel_config::Config) -> Self {
        FilterSettings {
            header_allowlist: c.filter.header_allowlist.clone(),
            masked_headers: c.filter.masked_headers.clone(),
            sample_rate: c.sampling.rate,
            always_keep_server_errors: c.sampling.always_sample_errors,
            always_keep_client_errors: c.sampling.always_sample_client_errors,
            body_capture_bytes: c.filter.body_capture_bytes,
        }
    }
}

/// Everything [`crate::TelemetryHost::start`] needs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The filter component (`.wasm`). Watched for changes when `watch_interval` is set.
    pub filter_path: PathBuf,
    /// Where precompiled components are cached; `None` compiles on every start.
    pub cache_dir: Option<PathBuf>,
    pub filter: FilterSettings,
    /// Time a single filter call may run before it is interrupted (epoch ticks of 1 ms). Time the
    /// thread spends preempted is given back, up to four times this in wall-clock time.
    pub call_deadline: Duration,
    /// Linear-memory cap of one filter instance.
    pub memory_limit_bytes: usize,
    /// How often the filter file is checked for changes; `None` disables watching.
    pub watch_interval: Option<Duration>,
    /// An instance is rebuilt after this many calls, so guest heap fragmentation cannot build up.
    pub recycle_after_calls: u64,
    /// An instance is rebuilt once its memory has grown this much past its size after configure.
    pub recycle_after_growth_bytes: usize,
    /// Consecutive faults after which calls are skipped for a while (doubling up to 30 s).
    pub fault_backoff_after: u32,
    /// Threads that run the filter (one instance each). One runs ~300k calls a second; add one
    /// per ~150k requests a second the proxy serves at peak.
    pub filter_threads: usize,
    /// Finished requests that may wait for a filter thread; past this they are dropped and
    /// counted (`filter_backlog`). At 20k requests a second the default holds ~0.4 s.
    pub handoff_capacity: usize,
    pub channel: ChannelConfig,
}

impl HostConfig {
    /// Settings from the agent's configuration file (socket, call budget, filter part), with
    /// production defaults for the rest.
    pub fn from_agent_config(filter_path: impl Into<PathBuf>, c: &sentinel_config::Config) -> Self {
        let mut h = HostConfig::new(filter_path, &c.transport.socket_path);
        h.call_deadline = c.timeout;
        h.channel.max_frame_bytes = c.transport.max_frame_bytes;
        h.channel.write_interval = c.transport.write_interval;
        h.filter = FilterSettings::from_agent_config(c);
        h.filter_threads = c.filter.threads;
        h
    }

    /// Settings with production defaults for a filter file and a collector socket.
    pub fn new(filter_path: impl Into<PathBuf>, socket_path: impl Into<PathBuf>) -> Self {
        HostConfig {
            filter_path: filter_path.into(),
            cache_dir: None,
            filter: FilterSettings::default(),
            call_deadline: Duration::from_millis(10),
            memory_limit_bytes: 16 << 20,
            watch_interval: Some(Duration::from_millis(100)),
            recycle_after_calls: 1_000_000,
            recycle_after_growth_bytes: 4 << 20,
            fault_backoff_after: 5,
            filter_threads: 1,
            handoff_capacity: 8192,
            channel: ChannelConfig::new(socket_path),
        }
    }
}
