//! The `tap` command's side: connects to a running collector's HTTP endpoint, asks for a tap
//! and prints what arrives, as JSON lines or as a compact table for a terminal.

use super::percent_encode;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::io::Write;
use std::net::SocketAddr;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table,
}

/// What to tap and how to show it.
#[derive(Debug, Clone)]
pub struct TapArgs {
    pub addr: SocketAddr,
    pub filter: String,
    pub stage: String,
    pub rate: u32,
    pub format: Format,
    /// Stop after this many events (0: run until interrupted).
    pub limit: u64,
    /// The collector's `tap-token`, sent as a bearer token.
    pub token: Option<String>,
}

/// Why a tap could not run.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot reach the collector at {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("the collector refused the tap: {0}")]
    Refused(String),
    #[error("the tap stream broke: {0}")]
    Stream(String),
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
}

/// Streams matching events to `out` until `limit` or the collector closes the stream; returns
/// how many were printed.
pub async fn run(args: &TapArgs, out: &mut dyn Write) -> Result<u64, TapError> {
    let stream = tokio::net::TcpStream::connect(args.addr).await.map_err(|e| TapError::Connect(args.addr, e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| TapError::Stream(e.to_string()))?;
    tokio::spawn(conn);
    let uri = format!("/tap?stage={}&rate={}&filter={}", percent_encode(&args.stage), args.rate, percent_encode(&args.filter));
    let mut req = hyper::Request::get(uri).header("host", args.addr.to_string());
    if let Some(t) = &args.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| TapError::Stream(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| TapError::Stream(e.to_string()))?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(TapError::Refused(String::from_utf8_lossy(&text).trim().to_string()));
    }
    if args.format == Format::Table {
        writeln!(out, "{:<24} {:>6} {:<7} {:>9}  {:<15} URL", "TIME (UTC)", "STATUS", "METHOD", "TOTAL MS", "CLIENT")?;
    }
    let mut printed = 0;
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| TapError::Stream(e.to_string()))?;
        let Some(data) = frame.data_ref() else { continue };
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            print_event(&line[..line.len() - 1], args.format, out)?;
            printed += 1;
            if args.limit > 0 && printed >= args.limit {
                return Ok(printed);
            }
        }
        out.flush()?;
    }
    Ok(printed)
}

fn print_event(line: &[u8], format: Format, out: &mut dyn Write) -> std::io::Result<()> {
    if format == Format::Json {
        out.write_all(line)?;
        return writeln!(out);
    }
    let e: serde_json::Value = serde_json::from_slice(line).unwrap_or_default();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let start_ns = e["event"]["start_ns"].as_u64().unwrap_or(0);
    let secs = start_ns / 1_000_000_000;
    let time = format!("{:02}:{:02}:{:02}.{:06}", secs / 3600 % 24, secs / 60 % 60, secs % 60, start_ns / 1000 % 1_000_000);
    let url = format!("{}{}", e["url"]["domain"].as_str().unwrap_or(""), s(&e["url"]["path"]));
    writeln!(
        out,
        "{:<24} {:>6} {:<7} {:>9.2}  {:<15} {}",
        time,
        e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
        s(&e["http"]["request"]["method"]),
        e["timing"]["total_ms"].as_f64().unwrap_or(0.0),
        s(&e["client"]["address"]),
        url
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_rows_keep_the_domain_as_it_is() {
        let line = br#"{"event":{"start_ns":3723000001000},"http":{"request":{"method":"GET"},"response":{"status_code":503}},"url":{"domain":"my-shop.example","path":"/a-b"},"client":{"address":"203.0.113.7"},"timing":{"total_ms":1.5}}"#;
        let mut out = Vec::new();
        print_event(line, Format::Table, &mut out).unwrap();
        let row = String::from_utf8(out).unwrap();
        assert!(row.starts_with("01:02:03.000001"), "{row}");
        assert!(row.contains(" 503 GET ") && row.contains("203.0.113.7") && row.trim_end().ends_with("my-shop.example/a-b"), "{row}");
    }
}
