//! Real servers for the sink tests and load runs, started on 127.0.0.1 from the binaries
//! `make servers` installs (scripts/fetch-servers.sh), each in its own scratch directory and
//! stopped when dropped.

use crate::relay::TcpRelay;
use crate::stack::{free_addr, wait_tcp, Paths};
use anyhow::{bail, Context};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills a child process when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Tansu broker (Kafka protocol, in-memory storage) behind a [`TcpRelay`], so a test can
/// cut the network between the collector and the broker without losing what it stored.
pub struct Tansu {
    /// What clients use (the relay; also the advertised listener).
    pub addr: String,
    pub relay: TcpRelay,
    bin: std::path::PathBuf,
    _child: Running,
}

impl Tansu {
    pub async fn start(paths: &Paths, dir: &Path) -> anyhow::Result<Tansu> {
        let bin = paths.server("tansu")?;
        let listen = free_addr()?;
        let relay = TcpRelay::start(&listen).await?;
        let log = std::fs::File::create(dir.join("tansu.log"))?;
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &format!("tcp://{listen}"), "--advertised-listener-url", &format!("tcp://{}", relay.addr)])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting tansu")?;
        let child = Running(child);
        wait_tcp(&listen, Duration::from_secs(10)).await.context("tansu never listened")?;
        Ok(Tansu { addr: relay.addr.clone(), relay, bin, _child: child })
    }

    /// Creates a topic with `partitions` partitions. A broker that listens may not answer yet
    /// (its first connections can end early): tried again for up to 10 s.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(&self.bin)
                .args(["topic", "create", "--broker", &format!("tcp://{}", self.addr), "--partitions", &partitions.to_string(), name])
                .output()
                .context("running tansu topic create")?;
            if out.status.success() {
                return Ok(());
            }
            let err = String::from_utf8_lossy(&out.stderr);
            // An earlier try that was cut after the broker acted on it.
            if err.contains("TopicAlreadyExists") {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline || !err.contains("early eof") {
                bail!("tansu topic create {name}: {err}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A ClickHouse server (Debian's, 18.16 on bookworm) with its data in a scratch directory.
pub struct ClickHouse {
    /// The HTTP interface, `127.0.0.1:port`.
    pub addr: String,
    _child: Running,
}

impl ClickHouse {
    pub async fn start(paths: &Paths, dir: &Path) -> anyhow::Result<ClickHouse> {
        let bin = paths.server("clickhouse-server")?;
        let data = dir.join("clickhouse");
        std::fs::create_dir_all(&data)?;
        let addr = free_addr()?;
        let http_port = addr.rsplit(':').next().unwrap_or_default().to_string();
        let tcp_port = free_addr()?.rsplit(':').next().unwrap_or_default().to_string();
        let d = data.display();
        let config = format!(
            "<yandex>\n  <logger><level>warning</level><console>1</console></logger>\n  <listen_host>127.0.0.1</listen_host>\n  <http_port>{http_port}</http_port>\n  <tcp_port>{tcp_port}</tcp_port>\n  <path>{d}/</path>\n  <tmp_path>{d}/tmp/</tmp_path>\n  <user_files_path>{d}/user_files/</user_files_path>\n  <format_schema_path>{d}/format_schemas/</format_schema_path>\n  <users_config>/etc/clickhouse-server/users.xml</users_config>\n  <default_profile>default</default_profile>\n  <default_database>default</default_database>\n  <timezone>UTC</timezone>\n  <mark_cache_size>5368709120</mark_cache_size>\n</yandex>\n"
        );
        let config_path = data.join("config.xml");
        std::fs::write(&config_path, config)?;
        let log = std::fs::File::create(dir.join("clickhouse.log"))?;
        let child = Command::new(&bin)
            .arg(format!("--config-file={}", config_path.display()))
            .current_dir(&data)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting clickhouse-server")?;
        let child = Running(child);
        crate::stack::wait_http_ok(&addr, "/ping", Duration::from_secs(20)).await.context("clickhouse-server never answered /ping")?;
        Ok(ClickHouse { addr, _child: child })
    }

    /// The URL to configure in the sink.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs a query over HTTP and returns its text (TabSeparated unless the query says).
    pub async fn query(&self, sql: &str) -> anyhow::Result<String> {
        use http_body_util::{BodyExt, Full};
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let req = hyper::Request::post(format!("http://{}/", self.addr)).body(Full::new(bytes::Bytes::from(sql.to_string())))?;
        let resp = client.request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            bail!("ClickHouse answered {status} to {sql:?}: {text}");
        }
        Ok(text)
    }
}

/// A SeaweedFS `weed mini` (S3 API) with bucket `telemetry`, every port on loopback, auth off.
pub struct SeaweedFs {
    /// The S3 endpoint, `http://127.0.0.1:port`.
    pub endpoint: String,
    _child: Running,
}

impl SeaweedFs {
    pub async fn start(paths: &Paths, dir: &Path) -> anyhow::Result<SeaweedFs> {
        let bin = paths.server("weed")?;
        let data = dir.join("seaweedfs");
        std::fs::create_dir_all(&data)?;
        let port = || -> anyhow::Result<String> { Ok(free_addr()?.rsplit(':').next().unwrap_or_default().to_string()) };
        let s3 = port()?;
        let log = std::fs::File::create(dir.join("seaweedfs.log"))?;
        let child = Command::new(&bin)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false", "-master.telemetry=false", "-bucket=telemetry"])
            .arg(format!("-s3.port={s3}"))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-master.port={}", port()?))
            .arg(format!("-filer.port={}", port()?))
            .arg(format!("-volume.port={}", port()?))
            .arg(format!("-admin.port={}", port()?))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting weed mini")?;
        let child = Running(child);
        wait_tcp(&format!("127.0.0.1:{s3}"), Duration::from_secs(30)).await.context("SeaweedFS S3 never listened")?;
        Ok(SeaweedFs { endpoint: format!("http://127.0.0.1:{s3}"), _child: child })
    }
}
