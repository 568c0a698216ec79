//! One client connection: a reader task turns bytes into frames, the connection task decodes,
//! dispatches, and writes responses in request order.
//!
//! Throttling (KIP-219): a response that carries a quota's `throttle_time_ms` mutes the
//! connection for that long: neither task reads another request until then, while responses
//! already due are still written. Clients too old to wait by themselves (Produce < v6,
//! Fetch < v8) also get their throttled response only once the time has passed.
//!
//! The request-time quota (`request_percentage`) is measured here, around the handler call and
//! every poll of its response future (see `handlers::throttle` for what that time is).

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::frame::{self, Frame, FrameWriter};
use super::sasl::{SaslClose, SaslConnection, SaslOutcome};
use super::ServerLimits;
use super::ServerMetrics;
use crate::config::ListenerInfo;
use crate::handlers::{
    self, throttle, KafkaApis, KafkaPrincipal, Reply, RequestContext, ResponseFuture,
};
use crate::net::{BoxReadHalf, BoxWriteHalf};
use crate::protocol::{decode_request, Decoded};
use crate::quota::QuotaKind;

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

const READ_BUFFER_BYTES: usize = 64 * 1024;

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let size = match reader.read_i32().await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    };
    if size < 0 {
        return Err(FrameError::Negative(size));
    }
    // Checked before allocating, so a hostile size costs nothing.
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    // Received straight into uninitialised capacity: zero-filling a megabyte produce request
    // first cost as much CPU as receiving it (profile in docs/BENCHMARKS.md).
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = size - buf.len();
        if reader.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    Ok(buf.freeze())
}

/// A response being produced, in request order.
enum Pending {
    Ready {
        bytes: Frame,
        timer: RequestTimer,
        /// A throttled response to a client that does not wait by itself is held until then.
        not_before: Option<tokio::time::Instant>,
    },
    Waiting {
        future: ResponseFuture,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        timer: RequestTimer,
    },
    /// A Strata admin request whose response body (JSON) is still being produced; it goes
    /// out after a response header v0.
    WaitingStrata {
        future: Pin<Box<dyn Future<Output = Bytes> + Send>>,
        correlation_id: i32,
        timer: RequestTimer,
    },
}

/// Size prefix, response header v0 (the correlation id) and a Strata admin response body.
fn strata_frame(correlation_id: i32, body: &[u8]) -> Frame {
    let mut buf = BytesMut::with_capacity(8 + body.len());
    buf.put_i32((4 + body.len()) as i32);
    buf.put_i32(correlation_id);
    buf.put_slice(body);
    Frame::from(buf.freeze())
}

/// Measures one request from read to response, and counts it as waiting while it waits.
struct RequestTimer {
    api: &'static str,
    started: Instant,
    metrics: Arc<ServerMetrics>,
    waiting: bool,
}

impl RequestTimer {
    fn start(metrics: &Arc<ServerMetrics>, api_key: ApiKey) -> RequestTimer {
        RequestTimer::start_api(metrics, api_name(api_key))
    }

    fn start_api(metrics: &Arc<ServerMetrics>, api: &'static str) -> RequestTimer {
        metrics.requests.with_label_values(&[api]).inc();
        RequestTimer {
            api,
            started: Instant::now(),
            metrics: metrics.clone(),
            waiting: false,
        }
    }

    fn waiting(mut self) -> RequestTimer {
        self.metrics
            .requests_waiting
            .with_label_values(&[self.api])
            .inc();
        self.waiting = true;
        self
    }

    fn finish(self, bytes_sent: usize) {
        self.metrics.bytes_sent.inc_by(bytes_sent as u64);
        self.metrics
            .request_latency
            .with_label_values(&[self.api])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        if self.waiting {
            self.metrics
                .requests_waiting
                .with_label_values(&[self.api])
                .dec();
        }
    }
}

/// A fixed label per API, so the label set stays bounded.
fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::DescribeClientQuotas => "DescribeClientQuotas",
        ApiKey::AlterClientQuotas => "AlterClientQuotas",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        _ => "other",
    }
}

/// When the connection may read again; shared with the reader task.
struct Mute {
    until: Option<tokio::time::Instant>,
    tx: watch::Sender<Option<tokio::time::Instant>>,
}

impl Mute {
    /// Mutes reads for `throttle` from now (never shortening a longer mute); returns its end.
    fn extend(&mut self, throttle: Duration) -> tokio::time::Instant {
        let until = tokio::time::Instant::now() + throttle;
        if self.until.is_none_or(|u| u < until) {
            self.until = Some(until);
            self.tx.send_replace(Some(until));
        }
        until
    }

    /// The end of the mute, if it is still on.
    fn active(&self) -> Option<tokio::time::Instant> {
        self.until.filter(|u| *u > tokio::time::Instant::now())
    }

    /// Applies a response's throttle; returns when the response may be written, for clients
    /// that do not wait by themselves.
    fn apply(&mut self, throttle: Option<(Duration, bool)>) -> Option<tokio::time::Instant> {
        let (duration, hold) = throttle?;
        let until = self.extend(duration);
        hold.then_some(until)
    }
}

/// A response's quota throttle: how long, and whether the response itself waits too (for
/// clients older than KIP-219, which do not back off by themselves). Responses other than
/// Produce and Fetch carry a throttle only for the request-time quota.
fn response_throttle(version: i16, response: &mut ResponseKind) -> Option<(Duration, bool)> {
    let (ms, kind) = match response {
        ResponseKind::Produce(r) => (r.throttle_time_ms, QuotaKind::Produce),
        ResponseKind::Fetch(r) => (r.throttle_time_ms, QuotaKind::Fetch),
        other => (throttle::throttle_time_ms(other), QuotaKind::Request),
    };
    (ms > 0).then(|| {
        (
            Duration::from_millis(ms as u64),
            !kind.client_throttles(version),
        )
    })
}

/// Who is on the other end of a connection, and on which listener it arrived.
pub(super) struct Session {
    pub(super) peer: SocketAddr,
    pub(super) listener: ListenerInfo,
    /// The authenticated principal (a TLS client certificate's mapped name), else anonymous.
    /// On a SASL listener, SASL's principal replaces it.
    pub(super) principal: KafkaPrincipal,
    /// SASL_PLAINTEXT and SASL_SSL: where the connection is in its SASL life.
    pub(super) sasl: Option<SaslConnection>,
    /// Answer what is in flight, then close (a failed authentication).
    pub(super) closing: bool,
}

pub(super) async fn run(
    reader: BoxReadHalf,
    mut writer: BoxWriteHalf,
    mut session: Session,
    apis: Arc<KafkaApis>,
    metrics: Arc<ServerMetrics>,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) {
    // Small requests arrive many to a read instead of costing a syscall for each size prefix;
    // large ones bypass the buffer.
    let peer = session.peer;
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let (max_request_bytes, max_in_flight) = (limits.max_request_bytes, limits.max_in_flight);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Bytes>(max_in_flight);
    let (mute_tx, mute_rx) = watch::channel(None);
    let mut mute = Mute {
        until: None,
        tx: mute_tx,
    };
    let reader_task = tokio::spawn(async move {
        loop {
            // A muted connection is not read from at all, so the client's requests wait in
            // its own socket buffer rather than in this broker's memory.
            let until = *mute_rx.borrow();
            if let Some(until) = until {
                tokio::time::sleep_until(until).await;
            }
            match read_frame(&mut reader, max_request_bytes).await {
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
        while let Some(Pending::Ready { not_before, .. }) = pending.front() {
            if not_before.is_some_and(|t| t > tokio::time::Instant::now()) {
                break;
            }
            if let Some(Pending::Ready { bytes, timer, .. }) = pending.pop_front() {
                timer.finish(bytes.len());
                if let Err(e) = bytes.write_to(&mut writer).await {
                    tracing::debug!(%peer, error = %e, "write failed; closing connection");
                    reader_task.abort();
                    return;
                }
            }
        }
        // Once shutdown begins, no new request is read: what is in flight is answered, then the
        // connection closes. A consumer that keeps polling cannot hold the broker open.
        let stopping = shutdown.is_cancelled() || session.closing;
        if stopping && pending.is_empty() {
            break;
        }
        let muted = mute.active();
        let held = match pending.front() {
            Some(Pending::Ready { not_before, .. }) => *not_before,
            _ => None,
        };
        let can_read = pending.len() < max_in_flight && !stopping && muted.is_none();
        tokio::select! {
            biased;
            done = wait_head(&mut pending), if !pending.is_empty() => {
                if let Some((bytes, throttle)) = done {
                    if let Some(Pending::Waiting { timer, .. } | Pending::WaitingStrata { timer, .. }) = pending.pop_front() {
                        let not_before = mute.apply(throttle);
                        pending.push_front(Pending::Ready { bytes, timer, not_before });
                    }
                } else {
                    // The response could not be encoded: a bug, already logged. Close rather
                    // than send responses out of order.
                    break;
                }
            }
            () = sleep_until_some(held), if held.is_some() => {}
            () = sleep_until_some(muted), if muted.is_some() && !stopping => {}
            frame = frames_rx.recv(), if can_read => {
                let Some(frame) = frame else { break };
                metrics.bytes_received.inc_by(frame.len() as u64 + 4);
                match handle_frame(&apis, &metrics, frame, &mut session, &mut mute) {
                    Ok(Some(p)) => pending.push_back(p),
                    Ok(None) => {}
                    Err(reason) => {
                        metrics.request_errors.with_label_values(&["malformed"]).inc();
                        tracing::warn!(%peer, %reason, "closing connection");
                        break;
                    }
                }
            }
            () = tokio::time::sleep(idle), if pending.is_empty() => {
                tracing::debug!(%peer, "closing idle connection");
                break;
            }
            () = shutdown.cancelled(), if !stopping => {}
        }
    }
    // Finish what was accepted before closing (graceful shutdown).
    while let Some(p) = pending.pop_front() {
        let bytes = match p {
            Pending::Ready { bytes, timer, .. } => {
                timer.finish(bytes.len());
                Some(bytes)
            }
            Pending::Waiting {
                future,
                api_key,
                version,
                correlation_id,
                timer,
            } => {
                let bytes = encode_response(api_key, version, correlation_id, &future.await);
                timer.finish(bytes.as_ref().map_or(0, Frame::len));
                bytes
            }
            Pending::WaitingStrata {
                future,
                correlation_id,
                timer,
            } => {
                let bytes = strata_frame(correlation_id, &future.await);
                timer.finish(bytes.len());
                Some(bytes)
            }
        };
        match bytes {
            Some(b) if b.write_to(&mut writer).await.is_ok() => {}
            _ => break,
        }
    }
    reader_task.abort();
    let _ = close(writer).await;
}

async fn close(mut writer: BoxWriteHalf) -> std::io::Result<()> {
    writer.shutdown().await
}

async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The encoded response at the head of the queue once it completes, with its quota throttle.
async fn wait_head(pending: &mut VecDeque<Pending>) -> Option<(Frame, Option<(Duration, bool)>)> {
    match pending.front_mut() {
        Some(Pending::Waiting {
            future,
            api_key,
            version,
            correlation_id,
            ..
        }) => {
            let mut response = future.await;
            let throttle = response_throttle(*version, &mut response);
            encode_response(*api_key, *version, *correlation_id, &response).map(|b| (b, throttle))
        }
        Some(Pending::WaitingStrata {
            future,
            correlation_id,
            ..
        }) => Some((strata_frame(*correlation_id, &future.await), None)),
        // Ready entries are drained before the select; nothing to wait for.
        _ => std::future::pending().await,
    }
}

/// Counts a SASL refusal that closes the connection without an answer; the message is what
/// the connection logs as it closes.
fn sasl_closed(metrics: &ServerMetrics, listener: &ListenerInfo, close: SaslClose) -> String {
    metrics
        .sasl_authentication_failures
        .with_label_values(&[listener.name.as_str(), close.reason])
        .inc();
    close.message
}

/// The context of a Strata-only request (mirror links, restore), with the session's principal
/// (refused until SASL has authenticated it).
fn strata_context(
    apis: &Arc<KafkaApis>,
    session: &Session,
    header: RequestHeader,
    request_bytes: usize,
) -> Result<RequestContext, String> {
    let principal = match session.sasl.as_ref() {
        Some(sasl) => sasl.authenticated_principal()?,
        None => session.principal.clone(),
    };
    Ok(RequestContext {
        apis: apis.clone(),
        header,
        peer: Some(session.peer),
        principal,
        request_bytes,
        listener: session.listener.clone(),
    })
}

/// Decodes one frame and dispatches it. `Err` closes the connection.
fn handle_frame(
    apis: &Arc<KafkaApis>,
    metrics: &Arc<ServerMetrics>,
    frame: Bytes,
    session: &mut Session,
    mute: &mut Mute,
) -> Result<Option<Pending>, String> {
    let peer = session.peer;
    let request_bytes = frame.len() + 4;
    if let Some(sasl) = session.sasl.as_mut().filter(|s| s.expects_raw_token()) {
        let token = sasl
            .on_raw_token(&frame, apis.image().as_ref(), apis.clock.now_ms())
            .map_err(|c| sasl_closed(metrics, &session.listener, c))?;
        if sasl.take_authenticated() {
            metrics
                .sasl_authentications
                .with_label_values(&[session.listener.name.as_str()])
                .inc();
        }
        return Ok(Some(raw_token_reply(metrics, &token)));
    }
    // Decoding counts towards the request-time quota, as a Kafka network thread's time does.
    let started = Instant::now();
    let (api_key, version, correlation_id) = match decode_request(
        frame,
        handlers::supported_versions,
    ) {
        Ok(Decoded::Request {
            header,
            request,
            trailing_bytes,
        }) => {
            if trailing_bytes > 0 {
                tracing::debug!(%peer, api_key = header.request_api_key, trailing_bytes, "ignoring trailing bytes after request");
            }
            let api_key = ApiKey::try_from(header.request_api_key)
                .map_err(|_| "unknown api key".to_string())?;
            let (version, correlation_id) = (header.request_api_version, header.correlation_id);
            let timer = RequestTimer::start(metrics, api_key);
            let mut principal = session.principal.clone();
            if let Some(sasl) = session.sasl.as_mut() {
                let image = apis.image();
                match sasl.on_request(
                    api_key,
                    version,
                    &request,
                    image.as_ref(),
                    apis.clock.now_ms(),
                ) {
                    SaslOutcome::Dispatch(p) => principal = p,
                    SaslOutcome::Respond(resp) => {
                        if sasl.take_authenticated() {
                            metrics
                                .sasl_authentications
                                .with_label_values(&[session.listener.name.as_str()])
                                .inc();
                        }
                        return ready(api_key, version, correlation_id, &resp, timer);
                    }
                    SaslOutcome::RespondAndClose(resp, reason) => {
                        metrics
                            .request_errors
                            .with_label_values(&["authentication"])
                            .inc();
                        metrics
                            .sasl_authentication_failures
                            .with_label_values(&[session.listener.name.as_str(), reason.reason])
                            .inc();
                        tracing::warn!(%peer, listener = %session.listener.name, %reason, "SASL authentication failed; closing connection");
                        session.closing = true;
                        return ready(api_key, version, correlation_id, &resp, timer);
                    }
                    SaslOutcome::Close(reason) => {
                        return Err(sasl_closed(metrics, &session.listener, reason))
                    }
                }
            }
            let ctx = RequestContext {
                apis: apis.clone(),
                header,
                peer: Some(session.peer),
                principal,
                request_bytes,
                listener: session.listener.clone(),
            };
            let request_quota =
                throttle::request_quota(apis, ctx.user(), ctx.client_id(), &request);
            let reply = handlers::dispatch(ctx, request)
                .ok_or_else(|| format!("no handler for {api_key:?}"))?;
            let spent = started.elapsed();
            // The request-time quota: counted now for a reply that is complete, when the
            // response is for one that waits (its polls count too).
            let request_throttle = |resp: Option<&mut ResponseKind>| {
                let ms = request_quota
                    .as_ref()
                    .map_or(0, |q| throttle::record_request_time(apis, q, spent));
                if let Some(resp) = resp {
                    throttle::raise_throttle_time(resp, ms);
                }
                Duration::from_millis(ms)
            };
            match reply {
                Reply::Nothing => {
                    let d = request_throttle(None);
                    if !d.is_zero() {
                        mute.extend(d);
                    }
                    return Ok(None);
                }
                Reply::Throttle(duration) => {
                    mute.extend(duration.max(request_throttle(None)));
                    return Ok(None);
                }
                Reply::Later(future) => {
                    let future = match request_quota {
                        Some(q) => throttle::timed(apis.clone(), q, spent, future),
                        None => future,
                    };
                    let timer = timer.waiting();
                    return Ok(Some(Pending::Waiting {
                        future,
                        api_key,
                        version,
                        correlation_id,
                        timer,
                    }));
                }
                Reply::Now(mut resp) => {
                    request_throttle(Some(&mut resp));
                    let not_before = mute.apply(response_throttle(version, &mut resp));
                    return encode_response(api_key, version, correlation_id, &resp)
                        .map(|bytes| {
                            Some(Pending::Ready {
                                bytes,
                                timer,
                                not_before,
                            })
                        })
                        .ok_or_else(|| format!("could not encode {api_key:?} response"));
                }
            }
        }
        Ok(Decoded::UnsupportedApiVersions { correlation_id }) => {
            (ApiKey::ApiVersions, 0i16, correlation_id)
        }
        Ok(Decoded::MirrorLinks { header, body }) => {
            let correlation_id = header.correlation_id;
            let ctx = strata_context(apis, session, header, request_bytes)?;
            return Ok(Some(Pending::WaitingStrata {
                future: handlers::mirror_links::handle(ctx, body),
                correlation_id,
                timer: RequestTimer::start_api(metrics, "StrataMirrorLinks").waiting(),
            }));
        }
        Ok(Decoded::RestoreTopics { header, body }) => {
            let correlation_id = header.correlation_id;
            let ctx = strata_context(apis, session, header, request_bytes)?;
            return Ok(Some(Pending::WaitingStrata {
                future: handlers::restore_topics::handle(ctx, body),
                correlation_id,
                timer: RequestTimer::start_api(metrics, "StrataRestoreTopics").waiting(),
            }));
        }
        Ok(Decoded::RetiredProduce { header, request }) => {
            let version = header.request_api_version;
            tracing::debug!(%peer, version, client_id = ?header.client_id, "refusing a retired Produce version");
            if request.acks == 0 {
                // No response is expected, so closing is the only way to tell the client, as
                // Kafka does for a failed acks=0 produce.
                return Err(format!("Produce v{version} with acks=0 is not supported"));
            }
            let timer = RequestTimer::start(metrics, ApiKey::Produce);
            let body = crate::protocol::retired_produce::refusal(
                version,
                &request,
                kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
            );
            let mut buf = BytesMut::with_capacity(8 + body.len());
            buf.put_i32((4 + body.len()) as i32);
            // Response header v0: the correlation id alone.
            buf.put_i32(header.correlation_id);
            buf.put_slice(&body);
            return Ok(Some(Pending::Ready {
                bytes: Frame::from(buf.freeze()),
                timer,
                not_before: None,
            }));
        }
        Err(e) => return Err(e.to_string()),
    };
    // KIP-511: answer at v0 with UNSUPPORTED_VERSION and our table, so the client can retry
    // with a version we have.
    let resp = handlers::api_versions::response(
        kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
    );
    let timer = RequestTimer::start(metrics, api_key);
    encode_response(
        api_key,
        version,
        correlation_id,
        &ResponseKind::ApiVersions(resp),
    )
    .map(|bytes| {
        Some(Pending::Ready {
            bytes,
            timer,
            not_before: None,
        })
    })
    .ok_or_else(|| "could not encode ApiVersions".to_string())
}

/// A response ready now.
fn ready(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &ResponseKind,
    timer: RequestTimer,
) -> Result<Option<Pending>, String> {
    encode_response(api_key, version, correlation_id, resp)
        .map(|bytes| {
            Some(Pending::Ready {
                bytes,
                timer,
                not_before: None,
            })
        })
        .ok_or_else(|| format!("could not encode {api_key:?} response"))
}

/// A raw SASL token (after SaslHandshake v0): size prefix and the token, no Kafka header.
fn raw_token_reply(metrics: &Arc<ServerMetrics>, token: &[u8]) -> Pending {
    let mut buf = BytesMut::with_capacity(4 + token.len());
    buf.put_i32(token.len() as i32);
    buf.put_slice(token);
    Pending::Ready {
        bytes: Frame::from(buf.freeze()),
        timer: RequestTimer::start(metrics, ApiKey::SaslAuthenticate),
        not_before: None,
    }
}

/// Size prefix, response header, body. A Fetch response's record sets stay in the buffers
/// the log read them into (see [`super::frame`]); every other response is one buffer.
fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Option<Frame> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = api_key.response_header_version(version);
    let encoded = match response {
        ResponseKind::Fetch(r) => {
            let shared: Vec<Bytes> = r
                .responses
                .iter()
                .flat_map(|t| t.partitions.iter())
                .filter_map(|p| p.records.clone())
                .filter(|b| b.len() >= frame::SHARED_MIN_BYTES)
                .collect();
            let mut buf = FrameWriter::new(&shared);
            buf.put_i32(0);
            header
                .encode(&mut buf, header_version)
                .and_then(|()| r.encode(&mut buf, version))
                .map(|()| buf.finish_with_size_prefix())
        }
        _ => {
            let mut buf = BytesMut::with_capacity(64);
            buf.put_i32(0);
            header
                .encode(&mut buf, header_version)
                .and_then(|()| response.encode(&mut buf, version))
                .map(|()| {
                    let size = (buf.len() - 4) as i32;
                    buf[..4].copy_from_slice(&size.to_be_bytes());
                    Frame::from(buf.freeze())
                })
        }
    };
    match encoded {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::error!(?api_key, version, error = %e, "failed to encode response");
            None
        }
    }
}
