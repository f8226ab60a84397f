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

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) -> anyhow::Result<()> {
        let out = Command::new(&self.bin)
            .args(["topic", "create", "--broker", &format!("tcp://{}", self.addr), "--partitions", &partitions.to_string(), name])
            .output()
            .context("running tansu topic create")?;
        if !out.status.success() {
            bail!("tansu topic create {name}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}
