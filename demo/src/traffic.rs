//! Generated traffic that looks like a real site's: a mix of methods, paths, status codes, user
//! agents, client addresses (via X-Forwarded-For) and credentials (Authorization, Cookie), from a
//! seeded generator so a run can be repeated exactly.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Credentials the generator sends; none of them may appear in any telemetry output.
pub const SECRET_MARKERS: &[&str] = &["SECRETTOKEN", "SECRETCOOKIE", "SECRETAPIKEY", "c2VjcmV0OnBhc3N3b3Jk", "SECRETWORD"];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.31.0",
];

const CLIENT_IPS: &[&str] = &[
    "81.2.69.160", "8.8.8.8", "1.1.1.1", "89.160.20.112", "175.16.199.0", "216.160.83.56", "2.125.160.216",
    "67.43.156.0", "202.196.224.0", "2001:218::1", "2a02:cf40::1", "185.220.101.4",
];

/// One request the generator will send.
#[derive(Debug, Clone)]
pub struct Planned {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
    /// The status the upstream will answer with.
    pub expect_status: u16,
}

/// A small deterministic generator (xorshift64*), enough for traffic mixes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

/// Plans request number `i` of a run seeded with `seed`.
pub fn plan(seed: u64, i: u64) -> Planned {
    let mut r = Rng::new(seed ^ (i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ 0x5151);
    let roll = r.below(100);
    let (method, path, status): (&'static str, String, u16) = match roll {
        0..=29 => ("GET", "/".into(), 200),
        30..=44 => ("GET", format!("/api/users/{}", r.below(10_000)), 200),
        45..=54 => ("GET", format!("/api/orders?page={}&sort=desc", r.below(50)), 200),
        55..=62 => ("POST", "/login".into(), 200),
        63..=67 => ("PUT", format!("/api/cart/{}", r.below(500)), 200),
        68..=70 => ("DELETE", format!("/api/cart/{}", r.below(500)), 200),
        71..=75 => ("HEAD", "/static/app.js".into(), 200),
        76..=82 => ("GET", format!("/search?q=item{}&lang=en", r.below(100)), 200),
        83..=88 => ("GET", "/status/404".into(), 404),
        89..=91 => ("POST", "/status/401".into(), 401),
        92..=94 => ("GET", "/status/500".into(), 500),
        95..=97 => ("GET", "/status/503".into(), 503),
        _ => ("GET", "/status/502".into(), 502),
    };
    let mut headers = vec![
        ("user-agent", r.pick(USER_AGENTS).to_string()),
        ("x-forwarded-for", r.pick(CLIENT_IPS).to_string()),
        ("accept", "application/json".to_string()),
        ("x-internal-trace", format!("trace-{}", r.below(1 << 20))),
    ];
    match r.below(10) {
        0..=1 => headers.push(("authorization", format!("Bearer SECRETTOKEN{}", r.below(1 << 30)))),
        2 => headers.push(("authorization", "Basic c2VjcmV0OnBhc3N3b3Jk".to_string())),
        3 => headers.push(("x-api-key", format!("SECRETAPIKEY{}", r.below(1 << 30)))),
        // Credentials whose first word is no authentication scheme: all of it is secret.
        4 => headers.push(("authorization", format!("SECRETWORD{} SECRETTOKEN", r.below(1 << 30)))),
        5 => headers.push(("x-api-key", format!("SECRETWORD{} key SECRETAPIKEY", r.below(1 << 30)))),
        _ => {}
    }
    if r.below(4) == 0 {
        headers.push(("cookie", format!("session=SECRETCOOKIE{}; theme=dark", r.below(1 << 30))));
    }
    let body = matches!(method, "POST" | "PUT").then(|| format!("{{\"item\":{},\"qty\":{}}}", r.below(1000), 1 + r.below(5)));
    Planned { method, path, headers, body, expect_status: status }
}

/// What a traffic run saw from the client side.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sent: u64,
    /// Responses with the status the upstream was asked for.
    pub ok: u64,
    /// Transport errors or unexpected statuses.
    pub failed: u64,
    pub server_errors: u64,
    pub elapsed: Duration,
    /// Client-side latencies, sorted.
    pub latencies: Vec<Duration>,
}

impl Report {
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// Sends `n` planned requests to `addr` over `concurrency` keep-alive connections. `progress` is
/// called with the number done, at most about every 1%.
pub async fn run(addr: &str, seed: u64, n: u64, concurrency: usize, progress: impl Fn(u64) + Send + Sync + 'static) -> Report {
    run_until(addr, seed, n, None, concurrency, progress).await
}

/// As [`run`], but stops early at `deadline` if one is given (`sent` says how many went out).
pub async fn run_until(
    addr: &str,
    seed: u64,
    n: u64,
    deadline: Option<Instant>,
    concurrency: usize,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Report {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build_http();
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let server_errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(n.min(1 << 20) as usize)));
    let progress = Arc::new(progress);
    let step = (n / 100).max(1);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, next, done, ok, failed, server_errors, latencies, progress) = (
            client.clone(),
            next.clone(),
            done.clone(),
            ok.clone(),
            failed.clone(),
            server_errors.clone(),
            latencies.clone(),
            progress.clone(),
        );
        let addr = addr.to_string();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Relaxed);
                if i >= n {
                    break;
                }
                let p = plan(seed, i);
                let mut b = hyper::Request::builder().method(p.method).uri(format!("http://{addr}{}", p.path));
                for (k, v) in &p.headers {
                    b = b.header(*k, v);
                }
                let body = Full::new(Bytes::from(p.body.clone().unwrap_or_default()));
                let t = Instant::now();
                let result = match b.body(body) {
                    Ok(req) => match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                        Ok(Ok(resp)) => {
                            let status = resp.status().as_u16();
                            let _ = resp.into_body().collect().await;
                            Some(status)
                        }
                        _ => None,
                    },
                    Err(_) => None,
                };
                mine.push(t.elapsed());
                match result {
                    Some(s) if s == p.expect_status => {
                        ok.fetch_add(1, Relaxed);
                        if s >= 500 {
                            server_errors.fetch_add(1, Relaxed);
                        }
                    }
                    _ => {
                        failed.fetch_add(1, Relaxed);
                    }
                }
                let d = done.fetch_add(1, Relaxed) + 1;
                if d % step == 0 || d == n {
                    progress(d);
                }
            }
            if let Ok(mut l) = latencies.lock() {
                l.extend(mine);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut latencies = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    latencies.sort();
    Report {
        sent: done.load(Relaxed),
        ok: ok.load(Relaxed),
        failed: failed.load(Relaxed),
        server_errors: server_errors.load(Relaxed),
        elapsed: start.elapsed(),
        latencies,
    }
}

/// One `GET target` with extra headers on its own connection, as a client would send it by hand;
/// returns the status code (0 when the answer has no status line).
pub async fn get_once(addr: &str, target: &str, headers: &[(&str, &str)]) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let mut req = format!("GET {target} HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let line = String::from_utf8_lossy(&resp).lines().next().unwrap_or("").to_string();
    Ok(line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_are_repeatable_and_varied() {
        let a: Vec<_> = (0..500).map(|i| plan(7, i)).collect();
        let b: Vec<_> = (0..500).map(|i| plan(7, i)).collect();
        assert!(a.iter().zip(&b).all(|(x, y)| x.path == y.path && x.headers == y.headers));
        let methods: std::collections::BTreeSet<_> = a.iter().map(|p| p.method).collect();
        assert!(methods.len() >= 5, "{methods:?}");
        assert!(a.iter().any(|p| p.expect_status >= 500));
        assert!(a.iter().any(|p| p.headers.iter().any(|(k, _)| *k == "authorization")));
    }
}
