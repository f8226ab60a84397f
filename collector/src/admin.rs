//! The collector's HTTP endpoint: `/metrics` (Prometheus text), `/health/live`, `/health/ready`,
//! and `/tap` (a live NDJSON stream of matching events, see [`crate::tap`]). The tap shows event
//! contents, so it is off unless a bearer token is configured, answers only requests that carry
//! it, and serves the stages before redaction only when the configuration says so.

use crate::metrics::Metrics;
use crate::tap::{self, TapHub};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    /// True once listeners are bound and the sink is open.
    pub ready: Arc<AtomicBool>,
    pub taps: TapHub,
    pub tap: TapAccess,
}

/// Who may tap, and what.
#[derive(Debug, Clone, Default)]
pub struct TapAccess {
    /// The bearer token `/tap` requires (`metrics { tap-token … }`); `None`: the tap is off.
    pub token: Option<sentinel_config::Secret>,
    /// `decoded` and `enriched` (before redaction) may be watched.
    pub unredacted: bool,
}

impl TapAccess {
    /// Why a tap request is refused (status and reason), if it is.
    fn refuse(&self, authorization: Option<&[u8]>, stage: tap::Stage) -> Option<(u16, String)> {
        let Some(token) = &self.token else {
            return Some((403, "the tap is off: set `metrics { tap-token \"…\" }` in the collector's configuration".into()));
        };
        let given = authorization.and_then(|a| a.strip_prefix(b"Bearer ").or_else(|| a.strip_prefix(b"bearer ")));
        if !given.is_some_and(|g| same(g, token.expose().as_bytes())) {
            return Some((401, "the tap needs the configured token: `Authorization: Bearer <tap-token>` (sentinel-collector tap --token)".into()));
        }
        if stage != tap::Stage::Processed && !self.unredacted {
            return Some((403, "the decoded and enriched stages hold events before redaction; allow them with `metrics { tap-unredacted #true }`".into()));
        }
        None
    }
}

/// Compares in time that depends on the lengths only, not on where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A response body fed by a tap session.
struct TapBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

fn route(state: &AdminState, path: &str, query: Option<&str>, authorization: Option<&[u8]>) -> Response<BoxBody<Bytes, Infallible>> {
    if path != "/tap" {
        return respond(state, path).map(|b| b.boxed());
    }
    let text = |status: u16, body: String| {
        let mut resp = Response::new(Full::new(Bytes::from(body + "\n")).boxed());
        *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::FORBIDDEN);
        if status == 401 {
            resp.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static("Bearer"));
        }
        resp
    };
    match tap::parse_query(query.unwrap_or("")) {
        Ok(req) => {
            if let Some((status, why)) = state.tap.refuse(authorization, req.stage) {
                return text(status, why);
            }
            let lines = state.taps.open(req, state.metrics.clone());
            let mut resp = Response::new(TapBody(lines).boxed());
            resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/x-ndjson"));
            resp
        }
        Err(e) => {
            let mut resp = Response::new(Full::new(Bytes::from(e + "\n")).boxed());
            *resp.status_mut() = hyper::StatusCode::BAD_REQUEST;
            resp
        }
    }
}

fn respond(state: &AdminState, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (200, state.metrics.render_prometheus()),
        "/health/live" => (200, "live\n".to_string()),
        "/health/ready" if state.ready.load(Relaxed) => (200, "ready\n".to_string()),
        "/health/ready" => (503, "not ready\n".to_string()),
        _ => (404, "not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}

/// Serves until `shutdown` turns true.
pub async fn serve(listener: TcpListener, state: AdminState, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let auth = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
                let resp = route(&state, req.uri().path(), req.uri().query(), auth);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
