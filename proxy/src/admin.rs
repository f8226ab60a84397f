//! The proxy's admin endpoint (`/metrics`, `/health`) and the hook that flushes telemetry on
//! shutdown.

use async_trait::async_trait;
use pingora::apps::http_app::{HttpServer, ServeHttp};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::listening::Service;
use sentinel_host::TelemetryHost;
use std::time::Duration;

pub struct Admin(Option<TelemetryHost>);

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let (status, ctype, body) = match session.req_header().uri.path() {
            "/metrics" => {
                let body = self.0.as_ref().map(|h| h.metrics_text()).unwrap_or_default();
                (200, "text/plain; version=0.0.4", body)
            }
            "/health" => (200, "text/plain", "ok\n".to_string()),
            _ => (404, "text/plain", "not found\n".to_string()),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body.into_bytes())
            .unwrap_or_default()
    }
}

/// The admin HTTP service on `addr`.
pub fn service(addr: &str, host: Option<TelemetryHost>) -> Service<HttpServer<Admin>> {
    let mut svc = Service::new("admin".to_string(), HttpServer::new_app(Admin(host)));
    svc.add_tcp(addr);
    svc
}

/// On shutdown, gives the channel a moment to send what is queued.
pub struct FlushOnShutdown(pub TelemetryHost);

#[async_trait]
impl BackgroundService for FlushOnShutdown {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let _ = shutdown.changed().await;
        let host = self.0.clone();
        let _ = tokio::task::spawn_blocking(move || host.shutdown(Duration::from_secs(2))).await;
    }
}
