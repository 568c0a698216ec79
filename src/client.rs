//! A minimal Kafka-protocol client: one connection, one request at a time. Followers fetch
//! from their leaders with it, and the `strata topics` / `strata groups` tools use it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::net::{BoxConnection, Network};
use crate::protocol::str_bytes;
use crate::sasl::{plain, SaslMechanism, ScramClient};

/// The largest response accepted; a longer frame means a confused peer.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out talking to {addr}")]
    Timeout { addr: String },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad response from {addr}: {reason}")]
    Protocol { addr: String, reason: String },
}

/// How a broker reaches the other brokers of its own cluster on the inter-broker listener: the
/// network (TLS when the listener uses it) and the credentials (when it uses SASL).
#[derive(Clone)]
pub struct InterBrokerNet {
    pub net: Arc<dyn Network>,
    pub sasl: Option<SaslCredentials>,
}

impl std::fmt::Debug for InterBrokerNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterBrokerNet")
            .field("sasl", &self.sasl.as_ref().map(|c| c.mechanism))
            .finish()
    }
}

impl InterBrokerNet {
    /// An authenticated connection to the broker at `addr`.
    pub async fn connect(
        &self,
        addr: &str,
        client_id: &'static str,
        timeout: Duration,
    ) -> Result<KafkaClient, ClientError> {
        KafkaClient::connect_authenticated(&*self.net, addr, client_id, timeout, self.sasl.as_ref())
            .await
    }
}

pub struct KafkaClient {
    addr: String,
    conn: BoxConnection,
    client_id: &'static str,
    correlation_id: i32,
    /// The frame sizes of the last request sent and response read, headers included.
    last_request_bytes: usize,
    last_response_bytes: usize,
    /// The credentials this connection authenticated with, and when its SASL session must be
    /// renewed (KIP-368), if the broker bounds it.
    sasl: Option<(SaslCredentials, Option<Instant>)>,
}

impl KafkaClient {
    /// Connects to `addr` through `net`, giving up after `timeout`.
    pub async fn connect(
        net: &dyn Network,
        addr: &str,
        client_id: &'static str,
        timeout: Duration,
    ) -> Result<KafkaClient, ClientError> {
        let conn = tokio::time::timeout(timeout, net.connect(addr.to_string()))
            .await
            .map_err(|_| ClientError::Timeout { addr: addr.into() })?
            .map_err(|source| ClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        Ok(KafkaClient {
            addr: addr.to_string(),
            conn,
            client_id,
            correlation_id: 0,
            last_request_bytes: 0,
            last_response_bytes: 0,
            sasl: None,
        })
    }

    /// [`connect`](Self::connect), then, when the listener wants SASL (`sasl` set: the
    /// inter-broker credentials), authentication; the session is renewed by [`send`](Self::send).
    pub async fn connect_authenticated(
        net: &dyn Network,
        addr: &str,
        client_id: &'static str,
        timeout: Duration,
        sasl: Option<&SaslCredentials>,
    ) -> Result<KafkaClient, ClientError> {
        let mut client = KafkaClient::connect(net, addr, client_id, timeout).await?;
        if let Some(creds) = sasl {
            client.authenticate(creds).await?;
        }
        Ok(client)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The size on the wire of the last request [`send`](Self::send) wrote (what fetchers
    /// count as request bytes).
    pub fn last_request_bytes(&self) -> usize {
        self.last_request_bytes
    }

    /// The size on the wire of the last response [`send`](Self::send) read.
    pub fn last_response_bytes(&self) -> usize {
        self.last_response_bytes
    }

    /// Sends `req` at `version` and reads its response, re-authenticating first if the
    /// connection's SASL session is due for renewal.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        if let Some((creds, Some(at))) = &self.sasl {
            if Instant::now() >= *at {
                let creds = creds.clone();
                self.authenticate(&creds).await?;
            }
        }
        self.exchange(req, version).await
    }

    async fn exchange<R: Request>(
        &mut self,
        req: &R,
        version: i16,
    ) -> Result<R::Response, ClientError> {
        let protocol = |reason: String| ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(str_bytes(self.client_id)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, R::header_version(version))
            .map_err(|e| protocol(format!("encoding the request header: {e}")))?;
        req.encode(&mut buf, version)
            .map_err(|e| protocol(format!("encoding the request: {e}")))?;
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let io = |source| ClientError::Io {
            addr: self.addr.clone(),
            source,
        };
        self.last_request_bytes = buf.len();
        self.last_response_bytes = 0;
        self.conn.write_all(&buf).await.map_err(io)?;
        let size = self.conn.read_i32().await.map_err(io)?;
        if size < 0 || size as usize > MAX_RESPONSE_BYTES {
            return Err(protocol(format!("implausible response size {size}")));
        }
        self.last_response_bytes = 4 + size as usize;
        let mut body = BytesMut::zeroed(size as usize);
        self.conn.read_exact(&mut body).await.map_err(io)?;
        let mut body = body.freeze();
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| protocol(format!("decoding the response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(protocol(format!(
                "response correlation id {} != request {}",
                header.correlation_id, self.correlation_id
            )));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| protocol(format!("decoding the response: {e}")))
    }
}

impl KafkaClient {
    /// Sends a Strata admin request (`api_key` outside Kafka's range, request header v1, the
    /// given body) and returns its response body (after a response header v0).
    pub async fn send_strata(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<bytes::Bytes, ClientError> {
        let protocol = |addr: &str, reason: String| ClientError::Protocol {
            addr: addr.to_string(),
            reason,
        };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api_key)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(str_bytes(self.client_id)));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header
            .encode(&mut buf, 1)
            .map_err(|e| protocol(&self.addr, format!("encoding the request header: {e}")))?;
        buf.put_slice(body);
        let size = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        let addr = self.addr.clone();
        let io = |source| ClientError::Io {
            addr: addr.clone(),
            source,
        };
        self.conn.write_all(&buf).await.map_err(io)?;
        let size = self.conn.read_i32().await.map_err(io)?;
        if !(4..=MAX_RESPONSE_BYTES as i32).contains(&size) {
            return Err(protocol(
                &self.addr,
                format!("implausible response size {size}"),
            ));
        }
        let mut frame = BytesMut::zeroed(size as usize);
        self.conn.read_exact(&mut frame).await.map_err(io)?;
        let correlation_id = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if correlation_id != self.correlation_id {
            return Err(protocol(
                &self.addr,
                format!(
                    "response correlation id {correlation_id} != request {}",
                    self.correlation_id
                ),
            ));
        }
        Ok(frame.freeze().slice(4..))
    }
}

/// What the client authenticates with on a SASL listener: PLAIN or SCRAM with a user name and
/// password (the `strata` tools' `--command-config`).
#[derive(Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, not even in a debug log.
        f.debug_struct("SaslCredentials")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// Authenticates the connection (SaslHandshake v1, then SaslAuthenticate v2 until done).
    /// When the broker bounds the session (`connections.max.reauth.ms`), [`send`](Self::send)
    /// authenticates again at 85% of its lifetime, as Kafka's clients do (KIP-368), so the
    /// broker never closes the connection for an expired session.
    pub async fn authenticate(&mut self, creds: &SaslCredentials) -> Result<(), ClientError> {
        let started = Instant::now();
        let lifetime_ms = self.exchange_sasl(creds).await?;
        let renew_at = (lifetime_ms > 0)
            .then(|| started + Duration::from_millis(lifetime_ms as u64 * 85 / 100));
        self.sasl = Some((creds.clone(), renew_at));
        Ok(())
    }

    /// One SASL exchange; returns the session lifetime the broker granted (0: unbounded).
    async fn exchange_sasl(&mut self, creds: &SaslCredentials) -> Result<i64, ClientError> {
        let failed = |addr: &str, reason: String| ClientError::Protocol {
            addr: addr.to_string(),
            reason,
        };
        let handshake = self
            .exchange(
                &SaslHandshakeRequest::default().with_mechanism(str_bytes(creds.mechanism.name())),
                1,
            )
            .await?;
        if handshake.error_code != 0 {
            let enabled: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(failed(
                &self.addr,
                format!(
                    "SASL mechanism {} refused (error {}; enabled: {enabled:?})",
                    creds.mechanism, handshake.error_code
                ),
            ));
        }
        let mut scram = match creds.mechanism {
            SaslMechanism::Plain => None,
            SaslMechanism::Scram(m) => Some(ScramClient::new(m, &creds.username, &creds.password)),
            SaslMechanism::OAuthBearer => {
                return Err(failed(
                    &self.addr,
                    "OAUTHBEARER is not supported by this client".into(),
                ))
            }
        };
        let mut token = match &mut scram {
            None => plain::client_message(&creds.username, &creds.password),
            Some(s) => s.first_message(),
        };
        loop {
            let resp = self
                .exchange(
                    &SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
                    2,
                )
                .await?;
            if resp.error_code != 0 {
                let message = resp
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_default();
                return Err(failed(
                    &self.addr,
                    format!(
                        "SASL authentication failed (error {}): {message}",
                        resp.error_code
                    ),
                ));
            }
            match &mut scram {
                None => return Ok(resp.session_lifetime_ms),
                Some(s) => match s
                    .step(&resp.auth_bytes)
                    .map_err(|e| failed(&self.addr, e.to_string()))?
                {
                    Some(next) => token = next,
                    None => return Ok(resp.session_lifetime_ms),
                },
            }
        }
    }
}
