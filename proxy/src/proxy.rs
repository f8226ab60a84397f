//! The Pingora `ProxyHttp` implementation: forwards every request to one upstream and stamps the
//! times and facts telemetry needs (Pingora does not keep them) in the per-request context.

use crate::exchange;
use crate::policy::{PathPolicy, Verdict};
use async_trait::async_trait;
use bytes::Bytes;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::Digest;
use pingora::upstreams::peer::Peer;
use pingora::http::ResponseHeader;
use sentinel_host::TelemetryHost;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct ReferenceProxy {
    upstream: String,
    telemetry: Option<TelemetryHost>,
    policy: PathPolicy,
}

impl ReferenceProxy {
    pub fn new(upstream: String, telemetry: Option<TelemetryHost>, policy: PathPolicy) -> Self {
        ReferenceProxy { upstream, telemetry, policy }
    }

    /// Body bytes to capture per direction: what the active filter keeps (0 without telemetry).
    fn body_capture_bytes(&self) -> usize {
        self.telemetry.as_ref().map_or(0, TelemetryHost::body_capture_bytes)
    }
}

/// What one request has seen so far.
pub struct RequestContext {
    /// The request's UUIDv7 in its 32-hex-digit form, kept inline (no allocation per request);
    /// empty when telemetry is off.
    pub request_id: RequestId,
    pub start_ns: u64,
    pub start: Instant,
    pub upstream_start: Option<Instant>,
    pub upstream_connect: Option<Duration>,
    pub upstream_ttfb: Option<Duration>,
    pub upstream_end: Option<Duration>,
    /// Where the request went (kept as an address; its text is written only into the head).
    pub upstream_address: Option<SocketAddr>,
    pub upstream_attempts: u32,
    pub upstream_status: Option<u16>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    /// What the access policy decided, when one is configured.
    pub verdict: Option<Verdict>,
}

fn capture(into: &mut Vec<u8>, body: &Option<Bytes>, cap: usize) {
    if let Some(b) = body {
        let room = cap.saturating_sub(into.len());
        into.extend_from_slice(&b[..b.len().min(room)]);
    }
}

/// A request id's text, held in the request's context.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestId(Option<[u8; uuid::fmt::Simple::LENGTH]>);

impl RequestId {
    /// A new UUIDv7 id. Its random part comes from a thread-local generator (uuid's
    /// `fast-rng`), not a `getrandom` syscall per request.
    fn new() -> RequestId {
        let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
        uuid::Uuid::now_v7().simple().encode_lower(&mut buf);
        RequestId(Some(buf))
    }

    /// The id's text; empty for none.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], |b| &b[..])
    }
}

#[async_trait]
impl ProxyHttp for ReferenceProxy {
    type CTX = RequestContext;

    fn new_ctx(&self) -> RequestContext {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        RequestContext {
            // Only telemetry needs the id: a proxy without it should not pay for one.
            request_id: if self.telemetry.is_some() { RequestId::new() } else { RequestId::default() },
            start_ns: now.as_nanos() as u64,
            start: Instant::now(),
            upstream_start: None,
            upstream_connect: None,
            upstream_ttfb: None,
            upstream_end: None,
            upstream_address: None,
            upstream_attempts: 0,
            upstream_status: None,
            request_body: Vec::new(),
            response_body: Vec::new(),
            verdict: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        ctx.verdict = self.policy.check(session.req_header().uri.path());
        if ctx.verdict.as_ref().is_some_and(|v| v.decision == "block") {
            session.respond_error(403).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestContext) -> Result<Box<HttpPeer>> {
        ctx.upstream_attempts += 1;
        ctx.upstream_start = Some(Instant::now());
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        _fd: std::os::unix::io::RawFd,
        _digest: Option<&Digest>,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        if !reused {
            ctx.upstream_connect = ctx.upstream_start.map(|s| s.elapsed());
        }
        if self.telemetry.is_some() && ctx.upstream_address.is_none() {
            ctx.upstream_address = Some(peer.address().clone());
        }
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end: bool,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        let cap = self.body_capture_bytes();
        if cap > 0 {
            capture(&mut ctx.request_body, body, cap);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        ctx.upstream_ttfb = Some(ctx.start.elapsed());
        ctx.upstream_status = Some(resp.status.as_u16());
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestContext,
    ) -> Result<Option<Duration>> {
        let cap = self.body_capture_bytes();
        if cap > 0 {
            capture(&mut ctx.response_body, body, cap);
        }
        if end_of_stream {
            ctx.upstream_end = ctx.upstream_start.map(|s| s.elapsed());
        }
        Ok(None)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestContext) {
        if let Some(host) = &self.telemetry {
            host.on_request(exchange::from_session(host, session, ctx));
        }
    }
}
