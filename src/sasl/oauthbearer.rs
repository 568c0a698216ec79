//! OAUTHBEARER (RFC 7628) with Kafka's unsecured-free JWT validation: the client's initial
//! response carries a bearer token, a JWT that must be signed by a key of the configured JWKS
//! (`sasl.oauthbearer.jwks.endpoint.url`), name the expected issuer and audience when those are
//! configured, and be within its `exp`/`nbf` window give or take the clock skew. The principal
//! is the `sub` claim, or the claim named by `sasl.oauthbearer.sub.claim.name`.
//!
//! Validation is a pure function of (key set, settings, token, now); loading the key set is
//! [`JwksSource`]'s job.

use std::sync::{Arc, Mutex};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{SaslError, SaslStep};

/// Kafka's OAUTHBEARER settings that the validator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthBearerSettings {
    /// `sasl.oauthbearer.expected.issuer`; unset accepts any issuer.
    pub expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience`: the token's `aud` must hold one of these.
    pub expected_audience: Vec<String>,
    /// `sasl.oauthbearer.sub.claim.name` (default `sub`).
    pub sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds` (default 30).
    pub clock_skew_s: i64,
}

impl Default for OAuthBearerSettings {
    fn default() -> Self {
        OAuthBearerSettings {
            expected_issuer: None,
            expected_audience: Vec::new(),
            sub_claim_name: "sub".into(),
            clock_skew_s: 30,
        }
    }
}

/// The signing algorithms accepted: asymmetric ones only, since the keys come from a JWKS.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The client's initial response: `gs2-header \x01 auth=Bearer <token> \x01 (key=value \x01)* \x01`.
pub fn client_message(token: &str) -> Vec<u8> {
    format!("n,,\x01auth=Bearer {token}\x01\x01").into_bytes()
}

fn malformed(reason: impl Into<String>) -> SaslError {
    SaslError::Malformed {
        mechanism: "OAUTHBEARER",
        reason: reason.into(),
    }
}

fn invalid(reason: impl std::fmt::Display) -> SaslError {
    SaslError::AuthenticationFailed(format!("invalid OAUTHBEARER token: {reason}"))
}

/// The bearer token of a client's initial response.
pub fn parse_client_message(message: &[u8]) -> Result<&str, SaslError> {
    let text = std::str::from_utf8(message).map_err(|_| malformed("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or_else(|| malformed("no key-value separator"))?;
    if !(gs2.starts_with("n,") || gs2.starts_with("y,")) || !gs2.ends_with(',') {
        return Err(malformed("bad GS2 header"));
    }
    let body = rest
        .strip_suffix("\x01\x01")
        .ok_or_else(|| malformed("not terminated by two separators"))?;
    let mut token = None;
    for kv in body.split('\x01') {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| malformed("a key without value"))?;
        if k == "auth" {
            let t = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| malformed("auth is not a Bearer token"))?;
            token = Some(t.trim());
        }
    }
    token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| malformed("no auth=Bearer token"))
}

/// A server-side OAUTHBEARER exchange: one token in, done.
pub struct OAuthBearerValidator {
    pub settings: Arc<OAuthBearerSettings>,
    pub keys: Arc<JwkSet>,
}

impl OAuthBearerValidator {
    pub fn authenticate(&self, message: &[u8], now_ms: i64) -> Result<SaslStep, SaslError> {
        let token = parse_client_message(message)?;
        let (principal, exp_s) = validate_jwt(token, &self.keys, &self.settings, now_ms / 1000)?;
        Ok(SaslStep::Complete {
            token: Vec::new(),
            principal,
            credential_expires_ms: Some(exp_s.saturating_mul(1000)),
        })
    }
}

/// Checks `token` and returns its principal and `exp` (seconds since the epoch).
pub fn validate_jwt(
    token: &str,
    keys: &JwkSet,
    settings: &OAuthBearerSettings,
    now_s: i64,
) -> Result<(String, i64), SaslError> {
    let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(invalid(format!(
            "algorithm {:?} is not accepted",
            header.alg
        )));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| invalid(format!("no key {:?} in the JWKS", header.kid)))?;
    let key = DecodingKey::from_jwk(jwk).map_err(invalid)?;
    let mut validation = Validation::new(header.alg);
    // Time is checked below against the injected clock.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let mut required = vec!["exp"];
    if let Some(iss) = &settings.expected_issuer {
        validation.set_issuer(&[iss]);
        required.push("iss");
    }
    if settings.expected_audience.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&settings.expected_audience);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map_err(invalid)?
        .claims;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_i64)
        .ok_or_else(|| invalid("exp is not a number"))?;
    if exp + settings.clock_skew_s < now_s {
        return Err(invalid(format!("expired at {exp} (now {now_s})")));
    }
    if let Some(nbf) = claims.get("nbf").and_then(serde_json::Value::as_i64) {
        if nbf - settings.clock_skew_s > now_s {
            return Err(invalid(format!("not valid before {nbf} (now {now_s})")));
        }
    }
    let principal = claims
        .get(&settings.sub_claim_name)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("no {} claim", settings.sub_claim_name)))?;
    Ok((principal.to_string(), exp))
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read the JWKS file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch the JWKS from {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("the JWKS at {url} does not parse: {source}")]
    Parse {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The key set behind `sasl.oauthbearer.jwks.endpoint.url` (`file://` or `http(s)://`), with the
/// last one loaded. The broker refreshes it every `sasl.oauthbearer.jwks.endpoint.refresh.ms`;
/// an exchange takes the current set.
#[derive(Debug)]
pub struct JwksSource {
    pub url: String,
    // Held only to swap or clone an Arc, never across an await.
    current: Mutex<Arc<JwkSet>>,
}

impl JwksSource {
    /// Loads the set once; fails if it cannot.
    pub async fn open(url: &str) -> Result<JwksSource, JwksError> {
        let keys = load(url).await?;
        Ok(JwksSource {
            url: url.to_string(),
            current: Mutex::new(Arc::new(keys)),
        })
    }

    pub fn keys(&self) -> Arc<JwkSet> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads the set again; on failure the previous one stays.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let keys = load(&self.url).await?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(())
    }
}

async fn load(url: &str) -> Result<JwkSet, JwksError> {
    let body = if let Some(path) = url.strip_prefix("file://") {
        tokio::fs::read(path)
            .await
            .map_err(|source| JwksError::File {
                path: path.to_string(),
                source,
            })?
    } else {
        // reqwest is built without a default TLS provider; ring is the process's provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = |reason: String| JwksError::Http {
            url: url.to_string(),
            reason,
        };
        let response = reqwest::Client::new()
            .get(url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| http(e.to_string()))?;
        response
            .bytes()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_vec()
    };
    serde_json::from_slice(&body).map_err(|source| JwksError::Parse {
        url: url.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    use base64::Engine;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    /// An ES256 key made for the test, with its JWKS.
    fn key() -> (EcdsaKeyPair, JwkSet) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let public = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": B64URL.encode(&public[1..33]), "y": B64URL.encode(&public[33..65]),
        }]});
        (pair, serde_json::from_value(jwks).unwrap())
    }

    fn sign(pair: &EcdsaKeyPair, kid: &str, claims: serde_json::Value) -> String {
        let header = B64URL
            .encode(serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid}).to_string());
        let body = B64URL.encode(claims.to_string());
        let input = format!("{header}.{body}");
        let sig = pair
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", B64URL.encode(sig.as_ref()))
    }

    fn settings() -> OAuthBearerSettings {
        OAuthBearerSettings {
            expected_issuer: Some("https://issuer".into()),
            expected_audience: vec!["strata".into()],
            ..OAuthBearerSettings::default()
        }
    }

    #[test]
    fn valid_token_gives_its_subject() {
        let (pair, keys) = key();
        let now = 1_800_000_000;
        let token = sign(
            &pair,
            "k1",
            serde_json::json!({"sub": "alice", "iss": "https://issuer", "aud": ["x", "strata"], "exp": now + 60, "nbf": now - 1}),
        );
        let v = OAuthBearerValidator {
            settings: Arc::new(settings()),
            keys: Arc::new(keys),
        };
        match v.authenticate(&client_message(&token), now * 1000).unwrap() {
            SaslStep::Complete {
                principal,
                credential_expires_ms,
                ..
            } => {
                assert_eq!(principal, "alice");
                assert_eq!(credential_expires_ms, Some((now + 60) * 1000));
            }
            other => panic!("{other:?}"),
        }
        // Another claim as the principal.
        let s = OAuthBearerSettings {
            sub_claim_name: "client_id".into(),
            ..settings()
        };
        let token = sign(
            &pair,
            "k1",
            serde_json::json!({"client_id": "svc", "iss": "https://issuer", "aud": "strata", "exp": now + 60}),
        );
        assert_eq!(validate_jwt(&token, &v.keys, &s, now).unwrap().0, "svc");
    }

    #[test]
    fn bad_tokens_are_refused() {
        let (pair, keys) = key();
        let (other_pair, _) = key();
        let now = 1_800_000_000;
        let s = settings();
        let good = serde_json::json!({"sub": "alice", "iss": "https://issuer", "aud": "strata", "exp": now + 60});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            c
        };
        let cases = [
            sign(&pair, "k1", with("exp", (now - 31).into())),
            sign(&pair, "k1", with("nbf", (now + 31).into())),
            sign(&pair, "k1", with("iss", "https://evil".into())),
            sign(&pair, "k1", with("aud", "other".into())),
            sign(&pair, "k1", with("sub", "".into())),
            sign(&pair, "k2", good.clone()),
            sign(&other_pair, "k1", good.clone()),
            sign(
                &pair,
                "k1",
                serde_json::json!({"sub": "alice", "aud": "strata", "exp": now + 60}),
            ),
            "not.a.jwt".to_string(),
        ];
        for token in cases {
            assert!(
                matches!(
                    validate_jwt(&token, &keys, &s, now),
                    Err(SaslError::AuthenticationFailed(_))
                ),
                "{token}"
            );
        }
        // Within the clock skew is still valid.
        assert!(validate_jwt(
            &sign(&pair, "k1", with("exp", (now - 29).into())),
            &keys,
            &s,
            now
        )
        .is_ok());
    }

    #[test]
    fn client_message_parsing() {
        assert_eq!(
            parse_client_message(b"n,,\x01auth=Bearer abc\x01\x01").unwrap(),
            "abc"
        );
        assert_eq!(
            parse_client_message(b"n,a=u,\x01host=h\x01auth=Bearer abc\x01x=y\x01\x01").unwrap(),
            "abc"
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"n,,\x01auth=Bearer abc",
            b"n,,\x01auth=Basic abc\x01\x01",
            b"n,,\x01\x01",
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad:?}");
        }
    }
}
