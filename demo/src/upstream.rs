//! A small HTTP upstream for the demo, the tests and load runs: `/status/<code>` answers with
//! that code, `/bytes/<n>` with n bytes, anything else with a short 200. Request bodies are read.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let _ = req.into_body().collect().await;
    let (status, body) = if let Some(code) = path.strip_prefix("/status/") {
        let code = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
        (code, Bytes::from(format!("{}\n", code.as_u16())))
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        let n = n.parse::<usize>().unwrap_or(0).min(1 << 20);
        (StatusCode::OK, Bytes::from(vec![b'x'; n]))
    } else {
        (StatusCode::OK, Bytes::from_static(b"{\"ok\":true}\n"))
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    resp.headers_mut().insert("set-cookie", hyper::header::HeaderValue::from_static("upstream_session=UPSTREAM-SECRET-COOKIE"));
    Ok(resp)
}

/// Serves forever on `listener` (HTTP/1.1 with keep-alive).
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), hyper::service::service_fn(answer))
                .await;
        });
    }
}
