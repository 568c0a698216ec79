//! Authentication by SASL: the mechanisms as pure state machines (server and client sides)
//! and the SCRAM credential they verify against. Nothing here touches a socket:
//! `server::sasl` feeds a mechanism the client's tokens, `client` drives the client side,
//! `controller` stores [`ScramCredential`]s in the metadata image; the one piece of I/O is
//! loading an OAUTHBEARER key set ([`oauthbearer::JwksSource`]), done by the broker.
//!
//! SASL mechanisms (Kafka's `sasl.enabled.mechanisms`): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
//! and OAUTHBEARER.
//!
//! A server-side mechanism is a [`SaslServer`]: fed the client's tokens one by one, it answers
//! with a challenge, with the final token and the authenticated principal, or with a
//! [`SaslError`]. PLAIN and SCRAM verify against one credential store, the SCRAM credentials of
//! the metadata image (PLAIN recomputes the salted password with the stored salt and
//! iterations), so a user has one password whatever the mechanism.

pub mod bootstrap;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

pub use scram::{ScramClient, ScramCredential, ScramMechanism, ScramServer};

/// A mechanism's name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::Scram(ScramMechanism::Sha256),
        SaslMechanism::Scram(ScramMechanism::Sha512),
        SaslMechanism::OAuthBearer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::Scram(m) => m.name(),
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    pub fn parse(name: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `name="value"` (or `name=value`) in a JAAS line such as
/// `org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";`,
/// as Kafka's `sasl.jaas.config` carries a client's credentials.
pub fn jaas_option(jaas: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(at) = jaas[from..].find(&format!("{name}=")) {
        let start = from + at;
        from = start + name.len() + 1;
        // `username=` must not match inside `xusername=`.
        if jaas[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &jaas[from..];
        return match rest.strip_prefix('"') {
            Some(quoted) => quoted.find('"').map(|end| quoted[..end].to_string()),
            None => Some(rest.split([' ', ';']).next().unwrap_or("").to_string()),
        };
    }
    None
}

/// Why an exchange failed. Every kind ends the connection after the client is told (Kafka's
/// SASL_AUTHENTICATION_FAILED carries the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Wrong password, unknown user, an invalid token: said without telling which.
    #[error("Authentication failed: {0}")]
    AuthenticationFailed(String),
    /// The client's token does not parse as the mechanism's message.
    #[error("Authentication failed: malformed {mechanism} message: {reason}")]
    Malformed {
        mechanism: &'static str,
        reason: String,
    },
    /// A token after the exchange finished, or a server message the client cannot accept.
    #[error("Authentication failed: unexpected {mechanism} message in state {state}")]
    IllegalState {
        mechanism: &'static str,
        state: &'static str,
    },
}

/// Where the SCRAM credentials are kept (the metadata image). Lookups never block.
pub trait CredentialStore {
    fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential>;
}

/// One step of an exchange, server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaslStep {
    /// Send this challenge and wait for the client's next token.
    Challenge(Vec<u8>),
    /// Authenticated: send this last token (may be empty).
    Complete {
        token: Vec<u8>,
        /// The user principal's name.
        principal: String,
        /// When the credential itself expires (an OAUTHBEARER token's `exp`), in ms since the
        /// epoch; the session must not outlive it (KIP-368).
        credential_expires_ms: Option<i64>,
    },
}

/// A server-side mechanism in progress.
pub enum SaslServer {
    Plain,
    Scram(Box<ScramServer>),
    OAuthBearer(oauthbearer::OAuthBearerValidator),
}

impl SaslServer {
    pub fn mechanism(&self) -> SaslMechanism {
        match self {
            SaslServer::Plain => SaslMechanism::Plain,
            SaslServer::Scram(s) => SaslMechanism::Scram(s.mechanism()),
            SaslServer::OAuthBearer(_) => SaslMechanism::OAuthBearer,
        }
    }

    /// Feeds the client's next token. `now_ms` is the wall clock (token expiry).
    pub fn step(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
        now_ms: i64,
    ) -> Result<SaslStep, SaslError> {
        match self {
            SaslServer::Plain => plain::authenticate(token, store),
            SaslServer::Scram(s) => s.step(token, store),
            SaslServer::OAuthBearer(v) => v.authenticate(token, now_ms),
        }
    }
}

/// Constant-time equality, so a comparison of keys does not leak how much matched.
pub(crate) fn keys_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
