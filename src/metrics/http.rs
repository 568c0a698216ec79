//! A small HTTP/1.1 endpoint: `GET /metrics`, `/health` (the process is up) and `/ready` (the
//! broker has started and applied its metadata, and its tiered store passed its startup probe;
//! otherwise 503 with the reason on one line). One request per connection, bounded header
//! size, closed after the response; this serves scrapers and probes, not browsers.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const MAX_REQUEST_HEAD_BYTES: usize = 8192;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown`. `render_metrics` is called per scrape (it may refresh gauges);
/// `ready` per probe: `Ok`, or why the node is not ready (one line, the 503's body).
pub async fn serve_http<R, F, Fut>(
    listener: TcpListener,
    ready: R,
    render_metrics: F,
    shutdown: CancellationToken,
) where
    R: Fn() -> Result<(), String> + Clone + Send + Sync + 'static,
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = String> + Send,
{
    loop {
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let ready = ready.clone();
        let render = render_metrics.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, respond(stream, ready, render)).await;
        });
    }
}

async fn respond<R, F, Fut>(mut stream: TcpStream, ready: R, render: F) -> std::io::Result<()>
where
    R: Fn() -> Result<(), String>,
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD_BYTES {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
            )
            .await;
        }
    }
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return write(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n",
        )
        .await;
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => {
            let body = render().await;
            write(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        "/health" => write(&mut stream, "200 OK", "text/plain", "ok\n").await,
        "/ready" => match ready() {
            Ok(()) => write(&mut stream, "200 OK", "text/plain", "ready\n").await,
            Err(reason) => {
                let body = format!("{}\n", reason.trim_end());
                write(&mut stream, "503 Service Unavailable", "text/plain", &body).await
            }
        },
        _ => write(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
