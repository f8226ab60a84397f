//! The collector's HTTP endpoint: `/metrics` (Prometheus text), `/health/live`, `/health/ready`,
//! and `/tap` (a live NDJSON stream of matching events, see [`crate::tap`]).

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

fn route(state: &AdminState, path: &str, query: Option<&str>) -> Response<BoxBody<Bytes, Infallible>> {
    if path != "/tap" {
        return respond(state, path).map(|b| b.boxed());
    }
    match tap::parse_query(query.unwrap_or("")) {
        Ok(req) => {
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
                let resp = route(&state, req.uri().path(), req.uri().query());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
