//! SASL on a connection of a SASL_PLAINTEXT or SASL_SSL listener (Kafka's
//! `SaslServerAuthenticator`).
//!
//! Before authentication only ApiVersions, SaslHandshake and SaslAuthenticate are accepted;
//! anything else closes the connection. SaslHandshake v1 is followed by SaslAuthenticate
//! requests (KIP-152); v0 by the mechanism's raw tokens, size-prefixed without a Kafka header,
//! as older clients send them. A failed exchange is answered SASL_AUTHENTICATION_FAILED (raw
//! tokens: no answer) and the connection is closed.
//!
//! Re-authentication (KIP-368): with `connections.max.reauth.ms` set, the SaslAuthenticate
//! answer carries `session_lifetime_ms` (no longer than an OAUTHBEARER token lives); the client
//! re-authenticates with the same mechanism and principal before then, on the same connection.
//! A request arriving after the session ended closes the connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};

use crate::config::NodeConfig;
use crate::handlers::KafkaPrincipal;
use crate::protocol::str_bytes;
use crate::sasl::oauthbearer::{JwksError, JwksSource, OAuthBearerSettings, OAuthBearerValidator};
use crate::sasl::{CredentialStore, SaslError, SaslMechanism, SaslServer, SaslStep, ScramServer};

/// A SASL listener's settings, shared by its connections.
#[derive(Debug)]
pub struct ListenerSasl {
    pub mechanisms: Vec<SaslMechanism>,
    /// `connections.max.reauth.ms`; 0: sessions do not expire.
    pub reauth_ms: i64,
    /// `sasl.server.max.receive.size`: the largest token taken before authentication.
    pub max_receive_bytes: usize,
    pub oauth: Option<OAuthBearer>,
}

/// OAUTHBEARER's settings and key set.
#[derive(Debug)]
pub struct OAuthBearer {
    pub settings: Arc<OAuthBearerSettings>,
    pub jwks: Arc<JwksSource>,
}

impl ListenerSasl {
    /// The SASL settings of `listener`; loads the JWKS once if OAUTHBEARER is enabled and keeps
    /// it fresh every `sasl.oauthbearer.jwks.endpoint.refresh.ms`.
    pub async fn from_config(
        node: &NodeConfig,
        listener: &str,
    ) -> Result<ListenerSasl, super::ServerError> {
        let mechanisms = node.sasl_mechanisms(listener)?;
        let oauth = if mechanisms.contains(&SaslMechanism::OAuthBearer) {
            let url = node.get("sasl.oauthbearer.jwks.endpoint.url");
            let jwks = Arc::new(JwksSource::open(url).await.map_err(|source| {
                super::ServerError::Jwks {
                    listener: listener.to_string(),
                    source,
                }
            })?);
            let refresh = Duration::from_millis(
                node.get_i64("sasl.oauthbearer.jwks.endpoint.refresh.ms")
                    .max(1000) as u64,
            );
            spawn_jwks_refresh(Arc::downgrade(&jwks), refresh);
            Some(OAuthBearer {
                settings: Arc::new(node.oauthbearer_settings()),
                jwks,
            })
        } else {
            None
        };
        Ok(ListenerSasl {
            mechanisms,
            reauth_ms: node.get_i64("connections.max.reauth.ms").max(0),
            max_receive_bytes: node.get_i32("sasl.server.max.receive.size").max(1024) as usize,
            oauth,
        })
    }

    fn server(&self, mechanism: SaslMechanism) -> Option<SaslServer> {
        if !self.mechanisms.contains(&mechanism) {
            return None;
        }
        Some(match mechanism {
            SaslMechanism::Plain => SaslServer::Plain,
            SaslMechanism::Scram(m) => SaslServer::Scram(Box::new(ScramServer::new(m))),
            SaslMechanism::OAuthBearer => {
                let oauth = self.oauth.as_ref()?;
                SaslServer::OAuthBearer(OAuthBearerValidator {
                    settings: oauth.settings.clone(),
                    keys: oauth.jwks.keys(),
                })
            }
        })
    }
}

/// Reloads the key set until the listener is gone. A failed reload keeps the previous set.
fn spawn_jwks_refresh(jwks: std::sync::Weak<JwksSource>, every: Duration) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(source) = jwks.upgrade() else { return };
            if let Err(e) = source.refresh().await {
                let e: JwksError = e;
                tracing::warn!(error = %e, "reloading the OAUTHBEARER JWKS failed; keeping the previous keys");
            }
        }
    });
}

/// An authenticated session.
struct Authenticated {
    mechanism: SaslMechanism,
    principal: KafkaPrincipal,
    /// When the session ends (KIP-368); `None`: never.
    expires_at: Option<Instant>,
}

/// An exchange in progress.
struct Exchange {
    server: SaslServer,
    /// After SaslHandshake v0: raw tokens instead of SaslAuthenticate requests.
    raw: bool,
}

/// What the connection does with a request, as SASL decides.
pub(super) enum SaslOutcome {
    /// Hand the request to its handler, as the session's principal.
    Dispatch(KafkaPrincipal),
    /// Answer with this, and go on.
    Respond(ResponseKind),
    /// Answer with this, then close (one log line with the reason).
    RespondAndClose(ResponseKind, SaslClose),
    /// Close without answering.
    Close(SaslClose),
}

/// Why a SASL connection is closed: a fixed label (`strata_server_sasl_authentication_failures_total`,
/// one of `server::metrics::SASL_FAILURE_REASONS`) and the message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SaslClose {
    pub(super) reason: &'static str,
    pub(super) message: String,
}

fn close(reason: &'static str, message: impl Into<String>) -> SaslClose {
    SaslClose {
        reason,
        message: message.into(),
    }
}

impl std::fmt::Display for SaslClose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One connection's SASL state.
pub(super) struct SaslConnection {
    listener: Arc<ListenerSasl>,
    session: Option<Authenticated>,
    exchange: Option<Exchange>,
    /// An exchange completed since [`take_authenticated`](Self::take_authenticated) was last
    /// asked (for the count of authentications).
    completed: bool,
}

fn handshake_response(error: Option<ResponseError>, mechanisms: &[SaslMechanism]) -> ResponseKind {
    ResponseKind::SaslHandshake(
        SaslHandshakeResponse::default()
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_mechanisms(
                mechanisms
                    .iter()
                    .map(|m| str_bytes(m.name().to_string()))
                    .collect(),
            ),
    )
}

fn authenticate_error(error: ResponseError, message: String) -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message))),
    )
}

impl SaslConnection {
    pub(super) fn new(listener: Arc<ListenerSasl>) -> SaslConnection {
        SaslConnection {
            listener,
            session: None,
            exchange: None,
            completed: false,
        }
    }

    /// Whether an exchange completed (a session started or was renewed) since the last call.
    pub(super) fn take_authenticated(&mut self) -> bool {
        std::mem::take(&mut self.completed)
    }

    /// The next frame is a raw token, not a Kafka request.
    pub(super) fn expects_raw_token(&self) -> bool {
        self.exchange.as_ref().is_some_and(|e| e.raw)
    }

    /// Decides what happens to a request of `api_key`.
    pub(super) fn on_request(
        &mut self,
        api_key: ApiKey,
        version: i16,
        request: &RequestKind,
        store: &dyn CredentialStore,
        now_ms: i64,
    ) -> SaslOutcome {
        match request {
            RequestKind::SaslHandshake(r) => self.on_handshake(version, r.mechanism.as_str()),
            RequestKind::SaslAuthenticate(r) => {
                if self.exchange.is_none() {
                    let message = match self.session {
                        Some(_) => "SaslAuthenticate request received after successful authentication",
                        None => "SaslAuthenticate request received before SaslHandshake",
                    };
                    return SaslOutcome::RespondAndClose(authenticate_error(ResponseError::IllegalSaslState, message.into()), close("illegal_state", message));
                }
                if r.auth_bytes.len() > self.listener.max_receive_bytes {
                    return SaslOutcome::Close(close("token_too_large", format!("SASL token of {} bytes exceeds sasl.server.max.receive.size", r.auth_bytes.len())));
                }
                match self.step(&r.auth_bytes, store, now_ms) {
                    Ok((token, lifetime_ms)) => {
                        let mut resp = SaslAuthenticateResponse::default().with_auth_bytes(token.into());
                        if version >= 1 {
                            resp = resp.with_session_lifetime_ms(lifetime_ms);
                        }
                        SaslOutcome::Respond(ResponseKind::SaslAuthenticate(resp))
                    }
                    Err(e) => SaslOutcome::RespondAndClose(authenticate_error(ResponseError::SaslAuthenticationFailed, e.to_string()), close("bad_credentials", e.to_string())),
                }
            }
            _ => match &self.session {
                None if api_key == ApiKey::ApiVersions => SaslOutcome::Dispatch(KafkaPrincipal::anonymous()),
                None => SaslOutcome::Close(close("unauthenticated_request", format!("{api_key:?} request before SASL authentication completed"))),
                Some(s) if s.expires_at.is_some_and(|t| t <= Instant::now()) && api_key != ApiKey::ApiVersions => {
                    SaslOutcome::Close(close("session_expired", format!("SASL session of {} expired without re-authentication ({api_key:?} request)", s.principal)))
                }
                Some(s) => SaslOutcome::Dispatch(s.principal.clone()),
            },
        }
    }

    /// The principal of an authenticated, unexpired session: for Strata's own APIs, which are
    /// not in the Kafka request table that [`on_request`](Self::on_request) reads.
    pub(super) fn authenticated_principal(&self) -> Result<KafkaPrincipal, String> {
        match &self.session {
            Some(s) if s.expires_at.is_some_and(|t| t <= Instant::now()) => Err(format!(
                "SASL session of {} expired without re-authentication",
                s.principal
            )),
            Some(s) => Ok(s.principal.clone()),
            None => Err("Strata admin request before SASL authentication completed".into()),
        }
    }

    fn on_handshake(&mut self, version: i16, name: &str) -> SaslOutcome {
        let enabled = &self.listener.mechanisms;
        if self.exchange.is_some() {
            return SaslOutcome::RespondAndClose(
                handshake_response(Some(ResponseError::IllegalSaslState), enabled),
                close("illegal_state", "SaslHandshake during a SASL exchange"),
            );
        }
        let Some(server) = SaslMechanism::parse(name).and_then(|m| self.listener.server(m)) else {
            return SaslOutcome::RespondAndClose(
                handshake_response(Some(ResponseError::UnsupportedSaslMechanism), enabled),
                close(
                    "unsupported_mechanism",
                    format!(
                        "unsupported SASL mechanism {name:?} (enabled: {})",
                        names(enabled)
                    ),
                ),
            );
        };
        if let Some(s) = &self.session {
            if s.mechanism != server.mechanism() {
                return SaslOutcome::RespondAndClose(
                    handshake_response(Some(ResponseError::IllegalSaslState), enabled),
                    close(
                        "illegal_state",
                        format!("re-authentication with {name}, not {}", s.mechanism),
                    ),
                );
            }
        }
        self.exchange = Some(Exchange {
            server,
            raw: version == 0,
        });
        SaslOutcome::Respond(handshake_response(None, enabled))
    }

    /// A raw token (after SaslHandshake v0): the token to send back, or why to close.
    pub(super) fn on_raw_token(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
        now_ms: i64,
    ) -> Result<Vec<u8>, SaslClose> {
        if token.len() > self.listener.max_receive_bytes {
            return Err(close(
                "token_too_large",
                format!(
                    "SASL token of {} bytes exceeds sasl.server.max.receive.size",
                    token.len()
                ),
            ));
        }
        self.step(token, store, now_ms)
            .map(|(t, _)| t)
            .map_err(|e| close("bad_credentials", e.to_string()))
    }

    /// Feeds the exchange; on completion the session starts (or is renewed). Returns the token
    /// to send and the session lifetime (0 when sessions do not expire).
    fn step(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
        now_ms: i64,
    ) -> Result<(Vec<u8>, i64), SaslError> {
        let exchange = self.exchange.as_mut().ok_or(SaslError::IllegalState {
            mechanism: "SASL",
            state: "no exchange",
        })?;
        let mechanism = exchange.server.mechanism();
        let result = exchange.server.step(token, store, now_ms);
        let step = match result {
            Ok(step) => step,
            Err(e) => {
                self.exchange = None;
                return Err(e);
            }
        };
        match step {
            SaslStep::Challenge(c) => Ok((c, 0)),
            SaslStep::Complete {
                token,
                principal,
                credential_expires_ms,
            } => {
                self.exchange = None;
                let principal = KafkaPrincipal {
                    principal_type: "User".into(),
                    name: principal,
                };
                if let Some(previous) = &self.session {
                    if previous.principal != principal {
                        return Err(SaslError::AuthenticationFailed(format!(
                            "re-authenticated as {principal}, not {}",
                            previous.principal
                        )));
                    }
                }
                let lifetime_ms =
                    session_lifetime_ms(self.listener.reauth_ms, credential_expires_ms, now_ms);
                self.completed = true;
                self.session = Some(Authenticated {
                    mechanism,
                    principal,
                    expires_at: (lifetime_ms > 0)
                        .then(|| Instant::now() + Duration::from_millis(lifetime_ms as u64)),
                });
                Ok((token, lifetime_ms))
            }
        }
    }

    #[cfg(test)]
    fn principal(&self) -> Option<&KafkaPrincipal> {
        self.session.as_ref().map(|s| &s.principal)
    }
}

/// KIP-368: the session lasts `connections.max.reauth.ms`, and not past the credential's own
/// expiry; 0 (no re-authentication) when `connections.max.reauth.ms` is 0, as in Kafka.
fn session_lifetime_ms(reauth_ms: i64, credential_expires_ms: Option<i64>, now_ms: i64) -> i64 {
    if reauth_ms <= 0 {
        return 0;
    }
    match credential_expires_ms {
        Some(exp) => reauth_ms.min((exp - now_ms).max(1)),
        None => reauth_ms,
    }
}

fn names(mechanisms: &[SaslMechanism]) -> String {
    mechanisms
        .iter()
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::{plain, ScramCredential, ScramMechanism};
    use kafka_protocol::messages::{
        MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
    };

    struct Store;
    impl CredentialStore for Store {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            (user == "alice").then(|| ScramCredential::from_password(m, b"pw", b"salt", 4096))
        }
    }

    fn listener(reauth_ms: i64) -> Arc<ListenerSasl> {
        Arc::new(ListenerSasl {
            mechanisms: vec![
                SaslMechanism::Plain,
                SaslMechanism::Scram(ScramMechanism::Sha256),
            ],
            reauth_ms,
            max_receive_bytes: 1024,
            oauth: None,
        })
    }

    fn handshake(c: &mut SaslConnection, v: i16, m: &str) -> SaslOutcome {
        let r = RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(str_bytes(m.to_string())),
        );
        c.on_request(ApiKey::SaslHandshake, v, &r, &Store, 0)
    }

    fn authenticate(c: &mut SaslConnection, token: Vec<u8>) -> SaslOutcome {
        let r = RequestKind::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(token.into()),
        );
        c.on_request(ApiKey::SaslAuthenticate, 2, &r, &Store, 0)
    }

    fn metadata(c: &mut SaslConnection) -> SaslOutcome {
        c.on_request(
            ApiKey::Metadata,
            12,
            &RequestKind::Metadata(MetadataRequest::default()),
            &Store,
            0,
        )
    }

    #[test]
    fn requests_before_authentication_close_and_after_it_dispatch() {
        let mut c = SaslConnection::new(listener(0));
        assert!(matches!(metadata(&mut c), SaslOutcome::Close(_)));
        assert!(matches!(
            handshake(&mut c, 1, "PLAIN"),
            SaslOutcome::Respond(_)
        ));
        match authenticate(&mut c, plain::client_message("alice", "pw")) {
            SaslOutcome::Respond(ResponseKind::SaslAuthenticate(r)) => {
                assert_eq!((r.error_code, r.session_lifetime_ms), (0, 0));
            }
            _ => panic!("expected a response"),
        }
        match metadata(&mut c) {
            SaslOutcome::Dispatch(p) => assert_eq!(p.to_string(), "User:alice"),
            _ => panic!("expected dispatch"),
        }
    }

    #[test]
    fn failures_answer_then_close() {
        let mut c = SaslConnection::new(listener(0));
        match handshake(&mut c, 1, "GSSAPI") {
            SaslOutcome::RespondAndClose(ResponseKind::SaslHandshake(r), _) => {
                assert_eq!(r.error_code, ResponseError::UnsupportedSaslMechanism.code());
                assert_eq!(r.mechanisms.len(), 2);
            }
            _ => panic!("expected refusal"),
        }
        let mut c = SaslConnection::new(listener(0));
        handshake(&mut c, 1, "PLAIN");
        match authenticate(&mut c, plain::client_message("alice", "wrong")) {
            SaslOutcome::RespondAndClose(ResponseKind::SaslAuthenticate(r), _) => {
                assert_eq!(r.error_code, ResponseError::SaslAuthenticationFailed.code());
                assert!(r
                    .error_message
                    .unwrap()
                    .contains("Invalid username or password"));
            }
            _ => panic!("expected failure"),
        }
        let mut c = SaslConnection::new(listener(0));
        assert!(matches!(
            authenticate(&mut c, b"x".to_vec()),
            SaslOutcome::RespondAndClose(..)
        ));
    }

    #[test]
    fn sessions_expire_and_renew_with_the_same_principal() {
        let mut c = SaslConnection::new(listener(1));
        handshake(&mut c, 1, "PLAIN");
        match authenticate(&mut c, plain::client_message("alice", "pw")) {
            SaslOutcome::Respond(ResponseKind::SaslAuthenticate(r)) => {
                assert_eq!(r.session_lifetime_ms, 1)
            }
            _ => panic!("expected a response"),
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(metadata(&mut c), SaslOutcome::Close(_)));
        // Re-authentication renews it; another mechanism is refused.
        assert!(matches!(
            handshake(&mut c, 1, "SCRAM-SHA-256"),
            SaslOutcome::RespondAndClose(..)
        ));
        let mut c = SaslConnection::new(listener(60_000));
        handshake(&mut c, 1, "PLAIN");
        authenticate(&mut c, plain::client_message("alice", "pw"));
        handshake(&mut c, 1, "PLAIN");
        assert!(matches!(
            authenticate(&mut c, plain::client_message("alice", "pw")),
            SaslOutcome::Respond(_)
        ));
        assert!(matches!(metadata(&mut c), SaslOutcome::Dispatch(_)));
        assert_eq!(session_lifetime_ms(60_000, Some(10_000), 4_000), 6_000);
        assert_eq!(session_lifetime_ms(0, Some(10_000), 4_000), 0);
    }

    #[test]
    fn legacy_handshake_takes_raw_tokens() {
        let mut c = SaslConnection::new(listener(0));
        handshake(&mut c, 0, "PLAIN");
        assert!(c.expects_raw_token());
        assert_eq!(
            c.on_raw_token(&plain::client_message("alice", "pw"), &Store, 0),
            Ok(Vec::new())
        );
        assert!(!c.expects_raw_token());
        assert_eq!(c.principal().map(|p| p.name.as_str()), Some("alice"));
    }
}
