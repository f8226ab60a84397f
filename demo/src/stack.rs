//! Starts and stops the real parts as child processes on loopback: the collector and the
//! reference proxy with a filter, in front of the in-process demo upstream.

use crate::metrics::{scrape, Samples};
use anyhow::{bail, Context};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the built binaries and filter components are.
#[derive(Debug, Clone)]
pub struct Paths {
    pub bin_dir: PathBuf,
    pub filter_dir: PathBuf,
    /// Real servers for the sink tests (`scripts/fetch-servers.sh`): `target/servers/bin`.
    pub servers_dir: PathBuf,
}

impl Paths {
    /// `SENTINEL_BIN_DIR` / `SENTINEL_FILTER_DIR`, else next to the running executable
    /// (`target/<profile>/`) and `target/filters/`.
    pub fn discover() -> anyhow::Result<Paths> {
        let bin_dir = match std::env::var_os("SENTINEL_BIN_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                let exe = std::env::current_exe()?;
                let mut dir = exe.parent().context("executable has no directory")?.to_path_buf();
                if dir.ends_with("deps") {
                    dir.pop();
                }
                dir
            }
        };
        let filter_dir = match std::env::var_os("SENTINEL_FILTER_DIR") {
            Some(d) => PathBuf::from(d),
            None => bin_dir.parent().map(|p| p.join("filters")).unwrap_or_else(|| bin_dir.join("filters")),
        };
        let servers_dir = match std::env::var_os("SENTINEL_SERVERS_DIR") {
            Some(d) => PathBuf::from(d),
            None => bin_dir.parent().map(|p| p.join("servers/bin")).unwrap_or_else(|| bin_dir.join("servers")),
        };
        for b in ["sentinel-proxy", "sentinel-collector"] {
            if !bin_dir.join(b).exists() {
                bail!("{} not found in {}: run `make build` first", b, bin_dir.display());
            }
        }
        Ok(Paths { bin_dir, filter_dir, servers_dir })
    }

    /// A server binary installed by `make servers`.
    pub fn server(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.servers_dir.join(name);
        if !p.exists() {
            bail!("{name} not found in {}: run `make servers` first", self.servers_dir.display());
        }
        Ok(p)
    }

    /// A filter component by file name (e.g. `sentinel_filter.wasm`).
    pub fn filter(&self, name: &str) -> PathBuf {
        self.filter_dir.join(name)
    }
}

/// A free loopback port (bound then released).
///
/// A port is handed out once per process: tests run in parallel, and the kernel may give a
/// just-released port to the next `bind(0)` before its first taker binds it again (two proxies
/// binding one port with SO_REUSEPORT would share each other's connections).
pub fn free_addr() -> anyhow::Result<String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..64 {
        let l = StdListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return Ok(addr.to_string());
        }
    }
    bail!("no loopback port left that was not handed out already")
}

/// How to start the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Working directory: socket, output, logs, cache.
    pub dir: PathBuf,
    /// The filter the proxy loads; `None` runs the proxy with telemetry off.
    pub filter: Option<PathBuf>,
    /// Extra proxy arguments (e.g. `--sample-rate 0.25`).
    pub proxy_args: Vec<String>,
    /// Extra `collector run` arguments.
    pub collector_args: Vec<String>,
    pub proxy_threads: usize,
    /// The socket the proxy sends to, when it is not the collector's own (a relay in between).
    pub proxy_collector_socket: Option<PathBuf>,
    /// Configure the collector with a KDL file (written into `dir`) instead of flags.
    pub collector_config_file: bool,
    /// Configure the proxy's telemetry with this KDL text (written to `dir/proxy.kdl`) instead
    /// of flags; its transport path should be the stack's socket, `dir/telemetry.sock`.
    pub proxy_kdl: Option<String>,
    /// Blocks added to the collector's agent (`enrichment { … }`, `sampling { … }`); implies a
    /// config file.
    pub collector_blocks: Option<String>,
    /// The tap may watch the stages before redaction (`metrics { tap-unredacted #true }`).
    pub tap_unredacted: bool,
}

/// The `tap-token` every stack's collector is configured with.
pub const TAP_TOKEN: &str = "stack-tap-token";

impl StackConfig {
    pub fn new(dir: impl Into<PathBuf>, filter: impl Into<PathBuf>) -> Self {
        StackConfig { dir: dir.into(), filter: Some(filter.into()), proxy_args: vec![], collector_args: vec![], proxy_threads: 2, proxy_collector_socket: None, collector_config_file: false, proxy_kdl: None, collector_blocks: None, tap_unredacted: false }
    }
}

/// A running stack. Children are killed when it is dropped.
pub struct Stack {
    pub paths: Paths,
    pub config: StackConfig,
    pub upstream_addr: String,
    pub proxy_addr: String,
    pub proxy_admin: String,
    pub collector_admin: String,
    pub socket: PathBuf,
    pub output_dir: PathBuf,
    proxy: Option<Child>,
    collector: Option<Child>,
    upstream: tokio::task::JoinHandle<()>,
}

impl Stack {
    /// Starts upstream, collector and proxy and waits until each is ready.
    pub async fn start(paths: Paths, config: StackConfig) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&config.dir)?;
        let upstream_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream_addr = upstream_listener.local_addr()?.to_string();
        let upstream = tokio::spawn(crate::upstream::serve(upstream_listener));
        let mut stack = Stack {
            socket: config.dir.join("telemetry.sock"),
            output_dir: config.dir.join("events"),
            proxy_addr: free_addr()?,
            proxy_admin: free_addr()?,
            collector_admin: free_addr()?,
            upstream_addr,
            paths,
            config,
            proxy: None,
            collector: None,
            upstream,
        };
        stack.start_collector().await?;
        stack.start_proxy().await?;
        Ok(stack)
    }

    fn log(&self, name: &str) -> anyhow::Result<Stdio> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(self.config.dir.join(name))?;
        Ok(Stdio::from(f))
    }

    /// Starts (or restarts) the collector and waits for `/health/ready`.
    pub async fn start_collector(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.paths.bin_dir.join("sentinel-collector"));
        cmd.arg("run");
        if self.config.collector_config_file || self.config.collector_blocks.is_some() {
            let path = self.config.dir.join("collector.kdl");
            std::fs::write(&path, self.collector_kdl())?;
            cmd.arg("--config").arg(path);
        } else {
            cmd.arg("--socket")
                .arg(&self.socket)
                .arg("--output-dir")
                .arg(&self.output_dir)
                .arg("--buffer-dir")
                .arg(self.buffer_dir())
                .arg("--metrics-listen")
                .arg(&self.collector_admin);
        }
        let child = cmd
            .args(&self.config.collector_args)
            .stdout(Stdio::piped())
            .stderr(self.log("collector.log")?)
            .spawn()
            .context("starting sentinel-collector")?;
        self.collector = Some(child);
        wait_http_ok(&self.collector_admin, "/health/ready", Duration::from_secs(15)).await.context("collector never became ready")
    }

    /// The collector's write-ahead log directory (unless the blocks configure their own).
    pub fn buffer_dir(&self) -> PathBuf {
        self.config.dir.join("buffer")
    }

    /// The collector's configuration file for this stack's socket, output, buffer and admin
    /// address, with the extra blocks.
    pub fn collector_kdl(&self) -> String {
        let blocks = self.config.collector_blocks.as_deref().unwrap_or("");
        let buffer = if blocks.contains("buffer {") { String::new() } else { format!("    buffer {{\n        path {:?}\n    }}\n", self.buffer_dir().display().to_string()) };
        format!(
            "agent \"telemetry\" {{\n    transport \"unix_socket\" {{\n        path {:?}\n    }}\n    sink \"file\" {{\n        path {:?}\n    }}\n{buffer}    metrics {{\n        listen {:?}\n        tap-token {TAP_TOKEN:?}\n        tap-unredacted #{}\n    }}\n{blocks}}}\n",
            self.socket.display().to_string(),
            self.output_dir.display().to_string(),
            self.collector_admin,
            self.config.tap_unredacted,
        )
    }

    async fn start_proxy(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.paths.bin_dir.join("sentinel-proxy"));
        cmd.args(["--listen", &self.proxy_addr, "--upstream", &self.upstream_addr, "--admin-listen", &self.proxy_admin]);
        match &self.config.proxy_kdl {
            Some(kdl) => {
                let path = self.config.dir.join("proxy.kdl");
                std::fs::write(&path, kdl)?;
                cmd.arg("--config").arg(path)
            }
            None => cmd.arg("--collector").arg(self.config.proxy_collector_socket.as_ref().unwrap_or(&self.socket)),
        }
        .arg("--runtime-dir")
            .arg(&self.config.dir)
            .arg("--cache-dir")
            .arg(self.config.dir.join("filter-cache"))
            .args(["--threads", &self.config.proxy_threads.to_string()])
            .args(&self.config.proxy_args);
        if let Some(f) = &self.config.filter {
            cmd.arg("--filter").arg(f);
        }
        let child = cmd.stdout(Stdio::null()).stderr(self.log("proxy.log")?).spawn().context("starting sentinel-proxy")?;
        self.proxy = Some(child);
        wait_http_ok(&self.proxy_admin, "/health", Duration::from_secs(30)).await.context("proxy admin never answered")?;
        // A TCP connect, not a request: a request would become an event of its own.
        wait_tcp(&self.proxy_addr, Duration::from_secs(10)).await.context("proxy never accepted connections")
    }

    /// The collector's process id, while it runs.
    pub fn collector_pid(&self) -> Option<u32> {
        self.collector.as_ref().map(|c| c.id())
    }

    pub async fn proxy_metrics(&self) -> anyhow::Result<Samples> {
        scrape(&self.proxy_admin).await
    }

    pub async fn collector_metrics(&self) -> anyhow::Result<Samples> {
        scrape(&self.collector_admin).await
    }

    /// Polls the collector's (or, with `proxy`, the proxy's) `/metrics` until `ready` holds,
    /// for at most `timeout`, and returns the samples that satisfied it; on timeout the error
    /// names `what` was awaited.
    pub async fn wait_until(&self, proxy: bool, what: &str, timeout: Duration, ready: impl Fn(&Samples) -> bool) -> anyhow::Result<Samples> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = if proxy { self.proxy_metrics().await? } else { self.collector_metrics().await? };
            if ready(&m) {
                return Ok(m);
            }
            if Instant::now() >= deadline {
                bail!("{what}: not within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `series` on the collector's (or, with `proxy`, the proxy's) `/metrics`
    /// reaches `at_least`, for at most `timeout`.
    pub async fn wait_metric(&self, proxy: bool, series: &str, at_least: f64, timeout: Duration) -> anyhow::Result<()> {
        self.wait_until(proxy, &format!("{series} reaching {at_least}"), timeout, |m| m.get(series) >= at_least).await.map(drop)
    }

    /// Stops the collector with SIGSTOP, as a hung process would: it keeps its socket open but
    /// reads, logs and acknowledges nothing until it is killed.
    pub fn freeze_collector(&self) -> anyhow::Result<()> {
        let Some(pid) = self.collector_pid() else { bail!("collector is not running") };
        // SAFETY: sending a signal to our own child process id.
        if unsafe { libc::kill(pid as i32, libc::SIGSTOP) } != 0 {
            return Err(std::io::Error::last_os_error()).context("stopping the collector");
        }
        Ok(())
    }

    /// Kills the collector with SIGKILL, as a crash would: nothing is drained or synced.
    pub async fn kill_collector(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.collector.take() else { bail!("collector is not running") };
        tokio::task::spawn_blocking(move || {
            child.kill()?;
            child.wait()
        })
        .await??;
        Ok(())
    }

    /// Stops the collector with SIGTERM and returns its summary line (JSON).
    pub async fn stop_collector(&mut self) -> anyhow::Result<serde_json::Value> {
        let Some(child) = self.collector.take() else { bail!("collector is not running") };
        let out = tokio::task::spawn_blocking(move || terminate(child, Duration::from_secs(20))).await??;
        let line = out.lines().rev().find(|l| l.starts_with('{')).context("collector printed no summary")?;
        Ok(serde_json::from_str(line)?)
    }

    /// Waits until the proxy's queue is empty (every frame acknowledged, so durable), every
    /// sink has delivered everything in the collector's log, and every frame the collector read
    /// is accounted for, with the counters steady for a few polls, or until `timeout`.
    pub async fn settle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = (f64::NAN, f64::NAN);
        let mut steady = 0;
        while Instant::now() < deadline {
            let p = self.proxy_metrics().await?;
            let c = self.collector_metrics().await.unwrap_or_default();
            let sent = p.get("sentinel_channel_sent_frames_total");
            // Every event received is in the log and every sink is at the log's end; every
            // event frame the collector read is logged, refused or sampled out (none is still
            // in the pipeline's queue or workers).
            let written = c.max("sentinel_collector_events_written_total");
            let received = c.get("sentinel_collector_events_received_total");
            let logged = c.get("sentinel_collector_buffer_events_total");
            let lag = c.max("sentinel_collector_sink_lag_records");
            let read = c.get("sentinel_collector_frames_received_total");
            let accounted = received
                + c.get("sentinel_collector_malformed_total{reason=\"bad_event\"}")
                + c.get("sentinel_collector_oversized_frames_total")
                + c.sum("sentinel_collector_sampled_out_total");
            let idle = p.get("sentinel_channel_queue_frames") == 0.0 && logged >= received && lag == 0.0 && accounted >= read;
            if idle && (sent, written) == last {
                steady += 1;
                if steady >= 3 {
                    return Ok(());
                }
            } else {
                steady = 0;
            }
            last = (sent, written);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("stack did not settle within {timeout:?}")
    }

    /// Every event the file sink has written, oldest file first.
    pub fn events(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        read_events(&self.output_dir)
    }

    /// The active NDJSON file.
    pub fn output_file(&self) -> PathBuf {
        self.output_dir.join("events.ndjson")
    }

    /// Stops the proxy and the collector (SIGTERM) and returns the collector's summary.
    pub async fn shutdown(mut self) -> anyhow::Result<serde_json::Value> {
        if let Some(p) = self.proxy.take() {
            tokio::task::spawn_blocking(move || terminate(p, Duration::from_secs(10))).await??;
        }
        self.stop_collector().await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for c in [self.proxy.take(), self.collector.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        self.upstream.abort();
    }
}

/// SIGTERM, then wait (SIGKILL after `grace`); returns what the child printed on stdout.
fn terminate(mut child: Child, grace: Duration) -> anyhow::Result<String> {
    // SAFETY: sending a signal to our own child process id.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reads every `*.ndjson` in `dir` (rotated files first, by name; the active file last).
pub fn read_events(dir: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    files.sort_by_key(|p| (p.file_name().is_some_and(|n| n == "events.ndjson"), p.clone()));
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
            let shown: String = line.chars().take(600).collect();
            out.push(serde_json::from_str(line).with_context(|| format!("bad line {} in {}: {shown}", i + 1, f.display()))?);
        }
    }
    Ok(out)
}

/// Polls until `addr` accepts a TCP connection.
pub async fn wait_tcp(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("{addr} did not accept connections within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Polls `http://addr{path}` until it answers 2xx.
pub async fn wait_http_ok(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<()> {
    use bytes::Bytes;
    use http_body_util::Empty;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let deadline = Instant::now() + timeout;
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    loop {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(1), client.get(uri.clone())).await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("http://{addr}{path} did not answer 2xx within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
