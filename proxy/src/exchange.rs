//! Builds the filter's input from what Pingora and the request context know. An integrator's
//! proxy writes the same function over its own request state.

use crate::proxy::RequestContext;
use pingora::http::Version;
use http::header::HOST;
use pingora::proxy::Session;
use sentinel_host::{Exchange, Tag, TelemetryHost};
use std::time::{SystemTime, UNIX_EPOCH};

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "",
    }
}

/// One finished request as the filter sees it.
pub fn from_session(host: &TelemetryHost, session: &Session, ctx: &mut RequestContext) -> Exchange {
    let end_ns = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(ctx.start_ns);
    let req = session.req_header();
    let mut head = host.head_writer();
    head.field(Tag::RequestId, ctx.request_id.as_bytes())
        .field(Tag::Method, req.method.as_str().as_bytes())
        .field(Tag::Scheme, b"http")
        .field(Tag::Path, req.uri.path().as_bytes())
        .field(Tag::Query, req.uri.query().unwrap_or("").as_bytes())
        .field(Tag::Protocol, protocol(req.version).as_bytes());
    let authority = req.uri.authority().map(|a| a.as_str().as_bytes()).or_else(|| req.headers.get(HOST).map(|h| h.as_bytes()));
    head.field(Tag::Authority, authority.unwrap_or(b""));
    let mut client_port = 0;
    if let Some(addr) = session.client_addr().and_then(|a| a.as_inet()) {
        head.address(Tag::ClientAddress, addr.ip(), None);
        client_port = addr.port();
    }
    if let Some(up) = &ctx.upstream_address {
        match up.as_inet() {
            Some(inet) => head.address(Tag::UpstreamAddress, inet.ip(), Some(inet.port())),
            None => head.field(Tag::UpstreamAddress, up.to_string().as_bytes()),
        };
    }
    if let Some(v) = &ctx.verdict {
        head.field(Tag::Decision, v.decision.as_bytes());
        if let Some(rule) = &v.rule {
            head.field(Tag::Rule, rule.as_bytes());
        }
        head.agent(crate::policy::AGENT_NAME.as_bytes(), v.decision.as_bytes(), v.duration_us);
    }
    for (name, value) in req.headers.iter() {
        head.header(false, name.as_str().as_bytes(), value.as_bytes());
    }
    let mut status = 0;
    if let Some(resp) = session.response_written() {
        status = resp.status.as_u16();
        for (name, value) in resp.headers.iter() {
            head.header(true, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    let us = |d: std::time::Duration| d.as_micros() as u64;
    Exchange {
        head: head.into_bytes(),
        start_ns: ctx.start_ns,
        end_ns,
        status,
        client_port,
        request_body_size: session.body_bytes_read() as u64,
        response_body_size: session.body_bytes_sent() as u64,
        ttfb_us: ctx.upstream_ttfb.map(us),
        upstream_us: ctx.upstream_end.map(us),
        upstream_connect_us: ctx.upstream_connect.map(us),
        upstream_attempts: ctx.upstream_attempts,
        upstream_status: ctx.upstream_status,
        risk_score: ctx.verdict.as_ref().map(|v| v.risk_score),
        request_body: std::mem::take(&mut ctx.request_body),
        response_body: std::mem::take(&mut ctx.response_body),
    }
}
