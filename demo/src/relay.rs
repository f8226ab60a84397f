//! A TCP relay on loopback that can cut the line: clients talk to the relay, the relay to the
//! server. Cutting closes every connection and refuses new ones until resumed: a network
//! outage between a sink and its server, with the server (and what it stored) untouched.

use crate::switch::Switch;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A running relay.
pub struct TcpRelay {
    pub addr: String,
    switch: Switch,
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
        let target: Arc<str> = target.into();
        let switch = Switch::start(move |l| serve(l, target.clone())).await?;
        Ok(TcpRelay { addr: switch.addr.clone(), switch })
    }

    /// Closes every connection and stops accepting.
    pub fn cut(&self) {
        self.switch.off();
    }

    /// Accepts again on the same port.
    pub async fn resume(&self) -> anyhow::Result<()> {
        self.switch.on().await
    }
}
