//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka speaks them, both sides.
//!
//! The exchange: client-first `n,,n=<user>,r=<cnonce>[,<ext>=<value>]*`, server-first
//! `r=<cnonce><snonce>,s=<salt>,i=<iterations>`, client-final `c=biws,r=<nonce>,p=<proof>`,
//! server-final `v=<signature>`. Kafka's extensions ride in the client-first message; the only
//! one Kafka gives meaning to, `tokenauth=true` (delegation tokens), is refused because
//! delegation tokens are not served. Channel binding is not supported (`n` or `y` only).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

use super::{keys_equal, CredentialStore, SaslError, SaslStep};

/// Kafka's bounds on a credential's iteration count (`ScramMechanism.minIterations` and the
/// AlterUserScramCredentials limit).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    Sha256,
    #[serde(rename = "SCRAM-SHA-512")]
    Sha512,
}

impl ScramMechanism {
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(name: &str) -> Option<ScramMechanism> {
        [ScramMechanism::Sha256, ScramMechanism::Sha512]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// The mechanism's number in DescribeUserScramCredentials and AlterUserScramCredentials.
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_type_id(id: i8) -> Option<ScramMechanism> {
        match id {
            1 => Some(ScramMechanism::Sha256),
            2 => Some(ScramMechanism::Sha512),
            _ => None,
        }
    }

    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            ScramMechanism::Sha256 => hmac::HMAC_SHA256,
            ScramMechanism::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(self.hmac_algorithm(), key);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            ScramMechanism::Sha256 => &digest::SHA256,
            ScramMechanism::Sha512 => &digest::SHA512,
        };
        digest::digest(algorithm, data).as_ref().to_vec()
    }

    /// `Hi(password, salt, i)`: PBKDF2 with this mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let (algorithm, len) = match self {
            ScramMechanism::Sha256 => (pbkdf2::PBKDF2_HMAC_SHA256, 32),
            ScramMechanism::Sha512 => (pbkdf2::PBKDF2_HMAC_SHA512, 64),
        };
        let mut out = vec![0u8; len];
        let iterations =
            std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(algorithm, iterations, salt, password, &mut out);
        out
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server keeps of a SCRAM password (RFC 5802 §3): never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential of `password` under `salt` and `iterations`.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let salted = mechanism.salted_password(password, salt, iterations);
        ScramCredential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// Kafka's AlterUserScramCredentials sends the salted password, not the password.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted, b"Client Key");
        ScramCredential {
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
            iterations,
        }
    }

    /// A fresh random salt, as long as the mechanism's hash.
    pub fn random_salt(mechanism: ScramMechanism) -> Vec<u8> {
        let len = match mechanism {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        };
        (0..len).map(|_| rand::random::<u8>()).collect()
    }

    /// Whether `password` is this credential's password (PLAIN).
    pub fn verifies(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        let other =
            ScramCredential::from_password(mechanism, password, &self.salt, self.iterations);
        keys_equal(&other.stored_key, &self.stored_key)
    }
}

/// A random printable nonce (RFC 5802: any printable ASCII but ',').
pub fn random_nonce() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

fn malformed(mechanism: ScramMechanism, reason: impl Into<String>) -> SaslError {
    SaslError::Malformed {
        mechanism: mechanism.name(),
        reason: reason.into(),
    }
}

/// `saslname` decoding: `=2C` is ',' and `=3D` is '='; any other '=' is invalid.
fn decode_saslname(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

pub use super::bootstrap::BootstrapCredential;

pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// The attributes `k=v` of a message, in order.
fn attributes(message: &str) -> Vec<(&str, &str)> {
    message
        .split(',')
        .map(|part| part.split_once('=').unwrap_or((part, "")))
        .collect()
}

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal {
        user: String,
        credential: ScramCredential,
        nonce: String,
        client_first_bare: String,
        server_first: String,
        gs2_header: String,
    },
    Done,
}

/// The server side: two tokens in, two out.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    state: ServerState,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer::with_nonce(mechanism, random_nonce())
    }

    /// With a fixed server nonce, for the RFC test vectors.
    pub fn with_nonce(mechanism: ScramMechanism, server_nonce: String) -> ScramServer {
        ScramServer {
            mechanism,
            server_nonce,
            state: ServerState::AwaitingClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    pub fn step(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
    ) -> Result<SaslStep, SaslError> {
        let m = self.mechanism;
        let text = std::str::from_utf8(token).map_err(|_| malformed(m, "not UTF-8"))?;
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::AwaitingClientFirst => {
                let (gs2, bare) =
                    split_gs2_header(text).ok_or_else(|| malformed(m, "no GS2 header"))?;
                let attrs = attributes(bare);
                let user = match attrs.first() {
                    Some(("n", name)) => decode_saslname(name)
                        .ok_or_else(|| malformed(m, "invalid user name encoding"))?,
                    _ => return Err(malformed(m, "client-first message has no user name")),
                };
                let client_nonce = match attrs.get(1) {
                    Some(("r", nonce)) if !nonce.is_empty() => *nonce,
                    _ => return Err(malformed(m, "client-first message has no nonce")),
                };
                if attrs
                    .iter()
                    .skip(2)
                    .any(|(k, v)| *k == "tokenauth" && v.eq_ignore_ascii_case("true"))
                {
                    return Err(SaslError::AuthenticationFailed(
                        "delegation tokens are not supported".into(),
                    ));
                }
                if let Some(authzid) = gs2.authzid {
                    if authzid != user {
                        return Err(SaslError::AuthenticationFailed(
                            "Client requested an authorization id that is different from username"
                                .into(),
                        ));
                    }
                }
                let credential = store.scram_credential(&user, m).ok_or_else(|| {
                    SaslError::AuthenticationFailed(format!(
                        "Invalid user credentials with SASL mechanism {m}"
                    ))
                })?;
                let nonce = format!("{client_nonce}{}", self.server_nonce);
                let server_first = format!(
                    "r={nonce},s={},i={}",
                    B64.encode(&credential.salt),
                    credential.iterations
                );
                self.state = ServerState::AwaitingClientFinal {
                    user,
                    credential,
                    nonce,
                    client_first_bare: bare.to_string(),
                    server_first: server_first.clone(),
                    gs2_header: gs2.header.to_string(),
                };
                Ok(SaslStep::Challenge(server_first.into_bytes()))
            }
            ServerState::AwaitingClientFinal {
                user,
                credential,
                nonce,
                client_first_bare,
                server_first,
                gs2_header,
            } => {
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or_else(|| malformed(m, "client-final message has no proof"))?;
                let attrs = attributes(without_proof);
                match attrs.first() {
                    Some(("c", binding))
                        if B64.decode(binding).ok().as_deref() == Some(gs2_header.as_bytes()) => {}
                    _ => {
                        return Err(malformed(
                            m,
                            "channel binding does not match the GS2 header",
                        ))
                    }
                }
                match attrs.get(1) {
                    // Kafka checks that the nonce ends with the server-first nonce, not that it
                    // equals it: librdkafka before 2.x sends its own nonce in front again.
                    Some(("r", r)) if r.ends_with(nonce.as_str()) => {}
                    _ => return Err(SaslError::AuthenticationFailed("nonce mismatch".into())),
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| malformed(m, "proof is not base64"))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
                if proof.len() != client_signature.len() {
                    return Err(invalid_credentials(m));
                }
                let client_key: Vec<u8> = proof
                    .iter()
                    .zip(&client_signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                if !keys_equal(&m.hash(&client_key), &credential.stored_key) {
                    return Err(invalid_credentials(m));
                }
                let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
                Ok(SaslStep::Complete {
                    token: format!("v={}", B64.encode(server_signature)).into_bytes(),
                    principal: user,
                    credential_expires_ms: None,
                })
            }
            ServerState::Done => Err(SaslError::IllegalState {
                mechanism: m.name(),
                state: "complete",
            }),
        }
    }
}

fn invalid_credentials(m: ScramMechanism) -> SaslError {
    SaslError::AuthenticationFailed(format!("Invalid credentials with SASL mechanism {m}"))
}

struct Gs2Header<'a> {
    /// `n,,` or `y,,` or `n,a=<authzid>,`.
    header: &'a str,
    authzid: Option<String>,
}

/// Splits `gs2-header` from `client-first-message-bare`.
fn split_gs2_header(message: &str) -> Option<(Gs2Header<'_>, &str)> {
    let mut parts = message.splitn(3, ',');
    let flag = parts.next()?;
    let authz = parts.next()?;
    let bare = parts.next()?;
    if flag != "n" && flag != "y" {
        return None; // `p=...`: channel binding, not supported
    }
    let authzid = match authz {
        "" => None,
        a => Some(decode_saslname(a.strip_prefix("a=")?)?),
    };
    let header = &message[..flag.len() + authz.len() + 2];
    Some((Gs2Header { header, authzid }, bare))
}

/// The client side, for `client` (inter-broker connections, the `strata` tools).
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_nonce: String,
    state: ClientState,
}

enum ClientState {
    Initial,
    SentFirst { client_first_bare: String },
    SentFinal { expected_signature: Vec<u8> },
    Done,
}

impl ScramClient {
    pub fn new(mechanism: ScramMechanism, user: &str, password: &str) -> ScramClient {
        ScramClient::with_nonce(mechanism, user, password, random_nonce())
    }

    pub fn with_nonce(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: String,
    ) -> ScramClient {
        ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_nonce,
            state: ClientState::Initial,
        }
    }

    /// The first token.
    pub fn first_message(&mut self) -> Vec<u8> {
        let bare = format!("n={},r={}", encode_saslname(&self.user), self.client_nonce);
        let message = format!("n,,{bare}");
        self.state = ClientState::SentFirst {
            client_first_bare: bare,
        };
        message.into_bytes()
    }

    /// Answers the server's challenge: `Some(token)` to send, `None` when the server's final
    /// message verified and the exchange is complete.
    pub fn step(&mut self, challenge: &[u8]) -> Result<Option<Vec<u8>>, SaslError> {
        let m = self.mechanism;
        let text = std::str::from_utf8(challenge)
            .map_err(|_| malformed(m, "server message is not UTF-8"))?;
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::SentFirst { client_first_bare } => {
                let attrs = attributes(text);
                let (mut nonce, mut salt, mut iterations) = (None, None, None);
                for (k, v) in &attrs {
                    match *k {
                        "r" => nonce = Some(*v),
                        "s" => salt = B64.decode(v).ok(),
                        "i" => iterations = v.parse::<u32>().ok(),
                        "e" => return Err(SaslError::AuthenticationFailed(v.to_string())),
                        _ => {}
                    }
                }
                let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
                    return Err(malformed(m, "server-first message lacks r, s or i"));
                };
                if !nonce.starts_with(&self.client_nonce) || iterations == 0 {
                    return Err(malformed(m, "server nonce does not extend the client's"));
                }
                let without_proof = format!("c=biws,r={nonce}");
                let auth_message = format!("{client_first_bare},{text},{without_proof}");
                let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
                let client_key = m.hmac(&salted, b"Client Key");
                let stored_key = m.hash(&client_key);
                let signature = m.hmac(&stored_key, auth_message.as_bytes());
                let proof: Vec<u8> = client_key
                    .iter()
                    .zip(&signature)
                    .map(|(a, b)| a ^ b)
                    .collect();
                let server_key = m.hmac(&salted, b"Server Key");
                self.state = ClientState::SentFinal {
                    expected_signature: m.hmac(&server_key, auth_message.as_bytes()),
                };
                Ok(Some(
                    format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
                ))
            }
            ClientState::SentFinal { expected_signature } => {
                if let Some(e) = text.strip_prefix("e=") {
                    return Err(SaslError::AuthenticationFailed(e.to_string()));
                }
                let signature = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok());
                match signature {
                    Some(s) if keys_equal(&s, &expected_signature) => Ok(None),
                    _ => Err(SaslError::AuthenticationFailed(
                        "the server's signature does not verify".into(),
                    )),
                }
            }
            ClientState::Initial | ClientState::Done => Err(SaslError::IllegalState {
                mechanism: m.name(),
                state: "not awaiting a server message",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Store(HashMap<(String, ScramMechanism), ScramCredential>);
    impl CredentialStore for Store {
        fn scram_credential(&self, user: &str, m: ScramMechanism) -> Option<ScramCredential> {
            self.0.get(&(user.to_string(), m)).cloned()
        }
    }

    fn store(m: ScramMechanism, user: &str, password: &str, salt: &[u8], iterations: u32) -> Store {
        let c = ScramCredential::from_password(m, password.as_bytes(), salt, iterations);
        Store(HashMap::from([((user.to_string(), m), c)]))
    }

    /// RFC 7677 §3: the SCRAM-SHA-256 example exchange, byte for byte.
    #[test]
    fn rfc7677_sha256_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let s = store(ScramMechanism::Sha256, "user", "pencil", &salt, 4096);
        let mut server = ScramServer::with_nonce(
            ScramMechanism::Sha256,
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        );
        let first = server
            .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &s)
            .unwrap();
        assert_eq!(
            first,
            SaslStep::Challenge(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".to_vec())
        );
        let last = server
            .step(
                b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                &s,
            )
            .unwrap();
        assert_eq!(
            last,
            SaslStep::Complete {
                token: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
                principal: "user".into(),
                credential_expires_ms: None,
            }
        );
        // The client side produces the same messages.
        let mut client = ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(client.first_message(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let final_msg = client
            .step(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .unwrap()
            .unwrap();
        assert_eq!(
            final_msg,
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".to_vec()
        );
        assert_eq!(
            client
                .step(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .unwrap(),
            None
        );
    }

    fn exchange(
        m: ScramMechanism,
        s: &Store,
        user: &str,
        password: &str,
    ) -> Result<String, SaslError> {
        let mut client = ScramClient::new(m, user, password);
        let mut server = ScramServer::new(m);
        let SaslStep::Challenge(c) = server.step(&client.first_message(), s)? else {
            panic!("challenge expected")
        };
        let final_msg = client.step(&c)?.expect("client-final");
        match server.step(&final_msg, s)? {
            SaslStep::Complete {
                token, principal, ..
            } => {
                assert_eq!(client.step(&token)?, None);
                Ok(principal)
            }
            SaslStep::Challenge(_) => panic!("complete expected"),
        }
    }

    /// librdkafka 2.0 puts its own nonce in front of the server-first nonce again in its
    /// client-final message; Kafka accepts that (the nonce ends with the server's), so do we.
    #[test]
    fn librdkafka_repeated_client_nonce_is_accepted() {
        let m = ScramMechanism::Sha256;
        let s = store(m, "u", "pw", b"salt", 4096);
        let mut server = ScramServer::with_nonce(m, "SNONCE".into());
        let SaslStep::Challenge(first) = server.step(b"n,,n=u,r=CNONCE", &s).unwrap() else {
            panic!()
        };
        let first = String::from_utf8(first).unwrap();
        let without_proof = "c=biws,r=CNONCECNONCESNONCE";
        let auth_message = format!("n=u,r=CNONCE,{first},{without_proof}");
        let salted = m.salted_password(b"pw", b"salt", 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let signature = m.hmac(&m.hash(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let last = server.step(
            format!("{without_proof},p={}", B64.encode(proof)).as_bytes(),
            &s,
        );
        assert!(matches!(last, Ok(SaslStep::Complete { .. })), "{last:?}");
        // A nonce that does not end with the server's is refused.
        let mut server = ScramServer::with_nonce(m, "SNONCE".into());
        server.step(b"n,,n=u,r=CNONCE", &s).unwrap();
        assert!(server.step(b"c=biws,r=CNONCESNONCEX,p=AAAA", &s).is_err());
    }

    #[test]
    fn sha512_round_trip_and_wrong_password() {
        let m = ScramMechanism::Sha512;
        let s = store(m, "alice", "secret", b"salt-of-alice", 4096);
        assert_eq!(exchange(m, &s, "alice", "secret").unwrap(), "alice");
        assert!(matches!(
            exchange(m, &s, "alice", "wrong"),
            Err(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            exchange(m, &s, "bob", "secret"),
            Err(SaslError::AuthenticationFailed(_))
        ));
        // A SHA-256 exchange does not find the SHA-512 credential.
        assert!(exchange(ScramMechanism::Sha256, &s, "alice", "secret").is_err());
    }

    #[test]
    fn names_with_commas_and_equals_round_trip() {
        let m = ScramMechanism::Sha256;
        let s = store(m, "a=b,c", "pw", b"salt", 4096);
        assert_eq!(exchange(m, &s, "a=b,c", "pw").unwrap(), "a=b,c");
    }

    #[test]
    fn garbage_and_refused_extensions_are_errors() {
        let m = ScramMechanism::Sha256;
        let s = store(m, "u", "pw", b"salt", 4096);
        for bad in [
            &b"\xff\xfe"[..],
            b"",
            b"garbage",
            b"p=tls-unique,,n=u,r=x",
            b"n,,r=x",
            b"n,,n=u",
            b"n,,n=u=zz,r=x",
        ] {
            assert!(
                matches!(
                    ScramServer::new(m).step(bad, &s),
                    Err(SaslError::Malformed { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            ScramServer::new(m).step(b"n,,n=u,r=abc,tokenauth=true", &s),
            Err(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            ScramServer::new(m).step(b"n,a=other,n=u,r=abc", &s),
            Err(SaslError::AuthenticationFailed(_))
        ));
        // Unknown extensions are ignored, as Kafka does.
        assert!(matches!(
            ScramServer::new(m).step(b"n,,n=u,r=abc,foo=bar", &s),
            Ok(SaslStep::Challenge(_))
        ));
        // A tampered final message fails.
        let mut server = ScramServer::new(m);
        server.step(b"n,,n=u,r=abc", &s).unwrap();
        assert!(server.step(b"c=biws,r=abcWRONG,p=AAAA", &s).is_err());
    }

    #[test]
    fn plain_verification_uses_the_scram_credential() {
        let c = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt", 4096);
        assert!(c.verifies(ScramMechanism::Sha256, b"pw"));
        assert!(!c.verifies(ScramMechanism::Sha256, b"pW"));
    }
}
