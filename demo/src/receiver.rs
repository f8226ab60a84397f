//! A local HTTP receiver, the far end of the HTTP sink in tests and load runs: it stores every
//! POSTed NDJSON line (gunzipped when the body says so), checks each body's HMAC-SHA256
//! signature, answers from a script when told to fail (any status, headers and body: a redirect,
//! a Retry-After, an endless error page), refuses bodies over a number of lines with 413 when
//! told to, and can go away (stop listening, cut its connections) and come back on the same port.

use bytes::Bytes;
use flate2::read::GzDecoder;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::Sha256;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use crate::switch::Switch;
use tokio::task::JoinSet;

/// What the receiver has seen.
#[derive(Default)]
struct State {
    lines: Mutex<Vec<String>>,
    /// Requests answered 2xx, and every request.
    accepted: AtomicU64,
    requests: AtomicU64,
    bad_signatures: AtomicU64,
    /// Answers to give next, in order.
    script: Mutex<VecDeque<Answer>>,
    /// Bodies of more lines (or more bytes, once decompressed) than this are answered 413.
    max_lines: AtomicU64,
    max_bytes: AtomicU64,
    /// Every request's method and path, in order.
    seen: Mutex<Vec<(String, String)>>,
    key: Option<Vec<u8>>,
    signature_header: String,
    /// When each request arrived.
    times: Mutex<Vec<std::time::Instant>>,
}

/// A body that never ends: what a broken endpoint can send with an error status.
struct Endless;

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 16384] = [b'x'; 16384];
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A scripted answer: a status, headers and a body of `body_bytes` bytes (`x` repeated;
/// `usize::MAX`: a body that never ends).
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_bytes: usize,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer { status, ..Answer::default() }
    }

    /// No forced answer: the request is taken (or refused) as usual.
    pub fn pass() -> Answer {
        Answer::default()
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A running receiver.
pub struct Receiver {
    pub addr: String,
    state: Arc<State>,
    switch: Switch,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn answer(state: Arc<State>, req: Request<hyper::body::Incoming>) -> Result<Response<Body>, Infallible> {
    state.requests.fetch_add(1, Relaxed);
    lock(&state.times).push(std::time::Instant::now());
    lock(&state.seen).push((req.method().to_string(), req.uri().path().to_string()));
    let gzip = req.headers().get("content-encoding").is_some_and(|v| v.as_bytes() == b"gzip");
    let signature = req.headers().get(state.signature_header.as_str()).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let reply = |status: StatusCode, retry_after: Option<u64>, text: &str| {
        let mut resp = Response::new(Full::new(Bytes::from(text.to_string())).boxed());
        *resp.status_mut() = status;
        if let Some(s) = retry_after {
            resp.headers_mut().insert("retry-after", s.into());
        }
        Ok(resp)
    };
    if let Some(key) = &state.key {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
        mac.update(&body);
        let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        if signature.as_deref() != Some(&format!("sha256={expected}")) {
            state.bad_signatures.fetch_add(1, Relaxed);
            return reply(StatusCode::UNAUTHORIZED, None, "bad signature");
        }
    }
    let scripted = lock(&state.script).pop_front().filter(|a| a.status != 0);
    if let Some(a) = scripted {
        let body = if a.body_bytes == usize::MAX { Endless.boxed() } else { Full::new(Bytes::from(vec![b'x'; a.body_bytes])).boxed() };
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in &a.headers {
            if let (Ok(k), Ok(v)) = (hyper::header::HeaderName::from_bytes(k.as_bytes()), hyper::header::HeaderValue::from_str(v)) {
                resp.headers_mut().append(k, v);
            }
        }
        return Ok(resp);
    }
    let mut text = String::new();
    let read = if gzip { GzDecoder::new(&body[..]).read_to_string(&mut text) } else { std::str::from_utf8(&body).map(|s| text.push_str(s)).map(|_| 0).map_err(std::io::Error::other) };
    if read.is_err() || body.is_empty() {
        return reply(StatusCode::BAD_REQUEST, None, "body is not (gzipped) UTF-8 NDJSON");
    }
    let max = state.max_lines.load(Relaxed);
    if max > 0 && text.lines().filter(|l| !l.is_empty()).count() as u64 > max {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, None, "too many lines");
    }
    let max = state.max_bytes.load(Relaxed);
    if max > 0 && text.len() as u64 > max {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, None, "too large");
    }
    lock(&state.lines).extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    state.accepted.fetch_add(1, Relaxed);
    reply(StatusCode::OK, None, "")
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    // Connections live in this set: dropping it (the task aborted) cuts them all.
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| answer(state.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
        while conns.try_join_next().is_some() {}
    }
}

impl Receiver {
    /// Listens on a free loopback port; with `key`, bodies must carry a valid signature in
    /// `x-sentinel-signature`.
    pub async fn start(key: Option<&str>) -> anyhow::Result<Receiver> {
        let state = Arc::new(State { key: key.map(|k| k.as_bytes().to_vec()), signature_header: "x-sentinel-signature".into(), ..State::default() });
        let s = state.clone();
        let switch = Switch::start(move |l| serve(l, s.clone())).await?;
        Ok(Receiver { addr: switch.addr.clone(), state, switch })
    }

    /// The URL to configure in the sink.
    pub fn url(&self) -> String {
        format!("http://{}/ingest", self.addr)
    }

    /// Every line stored so far, parsed.
    pub fn events(&self) -> Vec<serde_json::Value> {
        lock(&self.state.lines).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    pub fn accepted_requests(&self) -> u64 {
        self.state.accepted.load(Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Relaxed)
    }

    /// When each request arrived, in order.
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        lock(&self.state.times).clone()
    }

    pub fn bad_signatures(&self) -> u64 {
        self.state.bad_signatures.load(Relaxed)
    }

    /// The next requests get these answers (status, Retry-After seconds) instead of 200.
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        let answers = answers.iter().map(|&(status, after)| {
            let a = Answer { status, body_bytes: 0, headers: Vec::new() };
            match after {
                Some(s) => a.header("retry-after", &s.to_string()),
                None => a,
            }
        });
        lock(&self.state.script).extend(answers);
    }

    /// The next requests get these answers instead of 200.
    pub fn script_answers(&self, answers: &[Answer]) {
        lock(&self.state.script).extend(answers.iter().cloned());
    }

    /// From now on, bodies of more than `lines` lines are answered 413 (0: no limit).
    pub fn refuse_over(&self, lines: u64) {
        self.state.max_lines.store(lines, Relaxed);
    }

    /// From now on, bodies of more than `bytes` bytes (decompressed) are answered 413 (0: no
    /// limit).
    pub fn refuse_over_bytes(&self, bytes: u64) {
        self.state.max_bytes.store(bytes, Relaxed);
    }

    /// Every request's method and path, in order.
    pub fn seen(&self) -> Vec<(String, String)> {
        lock(&self.state.seen).clone()
    }

    /// Stops listening and cuts every open connection: the endpoint is down.
    pub fn stop(&self) {
        self.switch.off();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.switch.on().await
    }
}
