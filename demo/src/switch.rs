//! A loopback server that can be switched off and on again on the same port: off drops the
//! listener and every open connection (the serving task owns them), so clients see the
//! server go away as they would in an outage. The HTTP receiver and the TCP relay are both one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Serve = Arc<dyn Fn(TcpListener) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The listener's task, and how to start it again.
pub struct Switch {
    pub addr: String,
    serve: Serve,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Switch {
    /// Binds a free loopback port and serves it with `serve`.
    pub async fn start<F, Fut>(serve: F) -> anyhow::Result<Switch>
    where
        F: Fn(TcpListener) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let serve: Serve = Arc::new(move |l| Box::pin(serve(l)));
        let task = tokio::spawn(serve(listener));
        Ok(Switch { addr, serve, task: Mutex::new(Some(task)) })
    }

    /// Stops listening and cuts every open connection.
    pub fn off(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn on(&self) -> anyhow::Result<()> {
        self.off();
        let listener = loop {
            match TcpListener::bind(&self.addr).await {
                Ok(l) => break l,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => return Err(e.into()),
            }
        };
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(tokio::spawn((self.serve)(listener)));
        Ok(())
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.off();
    }
}
