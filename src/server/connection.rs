//! One client connection: a reader task turns bytes into frames, the connection task decodes,
//! dispatches, and writes responses in request order.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ServerLimits;
use crate::broker::Broker;
use crate::handlers::{self, Reply, RequestContext, ResponseFuture};

/// Why a connection ended; only logged.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("request frame of {size} bytes exceeds socket.request.max.bytes {max}")]
    TooLarge { size: i64, max: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error("connection closed")]
    Closed,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

async fn read_frame(reader: &mut OwnedReadHalf, max: usize) -> Result<Bytes, FrameError> {
    let size = match reader.read_i32().await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    };
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    // Checked before allocating, so a hostile size costs nothing.
    if size as usize > max {
        return Err(FrameError::TooLarge {
            size: size.into(),
            max,
        });
    }
    let mut buf = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// A response being produced, in request order.
enum Pending {
    Ready(Bytes),
    Waiting {
        future: ResponseFuture,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
}

pub(super) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(limits.max_in_flight);
    let reader_task = tokio::spawn(async move {
        loop {
            match read_frame(&mut reader, limits.max_request_bytes).await {
                Ok(frame) => {
                    if frames_tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Err(FrameError::Closed) => return,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    return;
                }
            }
        }
    });

    let mut pending: VecDeque<Pending> = VecDeque::new();
    let idle = limits.idle_timeout;
    loop {
        // Write out every response that is ready at the head of the queue.
        while let Some(Pending::Ready(_)) = pending.front() {
            if let Some(Pending::Ready(bytes)) = pending.pop_front() {
                if let Err(e) = writer.write_all(&bytes).await {
                    tracing::debug!(%peer, error = %e, "write failed; closing connection");
                    reader_task.abort();
                    return;
                }
            }
        }
        let can_read = pending.len() < limits.max_in_flight;
        tokio::select! {
            biased;
            done = wait_head(&mut pending), if !pending.is_empty() => {
                if let Some(bytes) = done {
                    pending[0] = Pending::Ready(bytes);
                } else {
                    // The response could not be encoded: a bug, already logged. Close rather
                    // than send responses out of order.
                    break;
                }
            }
            frame = frames_rx.recv(), if can_read => {
                let Some(frame) = frame else { break };
                match handle_frame(&broker, frame, peer) {
                    Ok(Some(p)) => pending.push_back(p),
                    Ok(None) => {}
                    Err(reason) => {
                        tracing::warn!(%peer, %reason, "closing connection");
                        break;
                    }
                }
            }
            () = tokio::time::sleep(idle), if pending.is_empty() => {
                tracing::debug!(%peer, "closing idle connection");
                break;
            }
            () = shutdown.cancelled(), if pending.is_empty() => break,
        }
    }
    // Finish what was accepted before closing (graceful shutdown).
    while let Some(p) = pending.pop_front() {
        let bytes = match p {
            Pending::Ready(b) => Some(b),
            Pending::Waiting {
                future,
                api_key,
                version,
                correlation_id,
            } => encode_response(api_key, version, correlation_id, &future.await),
        };
        match bytes {
            Some(b) if writer.write_all(&b).await.is_ok() => {}
            _ => break,
        }
    }
    reader_task.abort();
    let _ = close(writer).await;
}

async fn close(mut writer: OwnedWriteHalf) -> std::io::Result<()> {
    writer.shutdown().await
}

async fn wait_head(pending: &mut VecDeque<Pending>) -> Option<Bytes> {
    match pending.front_mut() {
        Some(Pending::Waiting {
            future,
            api_key,
            version,
            correlation_id,
        }) => {
            let response = future.await;
            encode_response(*api_key, *version, *correlation_id, &response)
        }
        // Ready entries are drained before the select; nothing to wait for.
        _ => std::future::pending().await,
    }
}

/// Decodes one frame and dispatches it. `Err` closes the connection.
fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    peer: SocketAddr,
) -> Result<Option<Pending>, String> {
    if frame.len() < 8 {
        return Err(format!(
            "request frame of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key =
        ApiKey::try_from(api_key_raw).map_err(|_| format!("unknown api key {api_key_raw}"))?;
    let Some(range) = handlers::supported_versions(api_key) else {
        return Err(format!("unsupported api {api_key:?} v{version}"));
    };
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer at v0 with UNSUPPORTED_VERSION and our table, so the client can
            // retry with a version we have.
            let resp = handlers::api_versions::response(
                kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
            );
            return encode_response(api_key, 0, correlation_id, &ResponseKind::ApiVersions(resp))
                .map(|b| Some(Pending::Ready(b)))
                .ok_or_else(|| "could not encode ApiVersions".to_string());
        }
        return Err(format!(
            "unsupported version {version} of {api_key:?} (supported {}..={})",
            range.min, range.max
        ));
    }
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| format!("malformed {api_key:?} v{version} header: {e}"))?;
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("malformed {api_key:?} v{version} request: {e}"))?;
    if frame.has_remaining() {
        tracing::debug!(%peer, ?api_key, trailing = frame.remaining(), "ignoring trailing bytes after request");
    }
    let ctx = RequestContext {
        broker: broker.clone(),
        header,
    };
    let reply =
        handlers::dispatch(ctx, request).ok_or_else(|| format!("no handler for {api_key:?}"))?;
    Ok(match reply {
        Reply::Nothing => None,
        Reply::Now(resp) => Some(Pending::Ready(
            encode_response(api_key, version, correlation_id, &resp)
                .ok_or_else(|| format!("could not encode {api_key:?} response"))?,
        )),
        Reply::Later(future) => Some(Pending::Waiting {
            future,
            api_key,
            version,
            correlation_id,
        }),
    })
}

/// Size prefix, response header, body.
fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Option<Bytes> {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let encoded = header
        .encode(&mut buf, api_key.response_header_version(version))
        .and_then(|()| response.encode(&mut buf, version));
    if let Err(e) = encoded {
        tracing::error!(?api_key, version, error = %e, "failed to encode response");
        return None;
    }
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Some(buf.freeze())
}
