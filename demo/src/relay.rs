//! A TCP relay on loopback that can cut the line: clients talk to the relay, the relay to the
//! server. Cutting closes every connection and refuses new ones until resumed: a network
//! outage between a sink and its server, with the server (and what it stored) untouched.

use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A running relay.
pub struct TcpRelay {
    pub addr: String,
    target: String,
    task: Mutex<Option<JoinHandle<()>>>,
}

async fn serve(listener: TcpListener, target: Arc<str>) {
    // Dropping this set (the task aborted) cuts every relayed connection.
    let mut conns = JoinSet::new();
    loop {
        let Ok((mut client, _)) = listener.accept().await else { continue };
        let target = target.clone();
        conns.spawn(async move {
            if let Ok(mut server) = TcpStream::connect(&*target).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

impl TcpRelay {
    /// Relays a free loopback port to `target`.
    pub async fn start(target: &str) -> anyhow::Result<TcpRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let task = tokio::spawn(serve(listener, target.into()));
        Ok(TcpRelay { addr, target: target.to_string(), task: Mutex::new(Some(task)) })
    }

    /// Closes every connection and stops accepting.
    pub fn cut(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Accepts again on the same port.
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.cut();
        let listener = loop {
            match TcpListener::bind(&self.addr).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => return Err(e.into()),
            }
        };
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::spawn(serve(listener, self.target.as_str().into())));
        Ok(())
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.cut();
    }
}
