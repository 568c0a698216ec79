//! `--command-config FILE`: Kafka client properties for the `strata` tools, as Kafka's own tools
//! take them: `security.protocol`, `sasl.mechanism`, `sasl.jaas.config` (PlainLoginModule or
//! ScramLoginModule with `username` and `password`) or librdkafka's `sasl.username` /
//! `sasl.password`, and `ssl.truststore.location` / `ssl.ca.location` (PEM).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::client::SaslCredentials;
use crate::config::SecurityProtocol;
use crate::net::tls::{ClientAuth, TlsClient, TlsNetwork, TlsSettings};
use crate::net::Network;
use crate::sasl::{jaas_option, SaslMechanism};

/// How the tools connect.
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslCredentials>,
    pub truststore: Option<PathBuf>,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            security_protocol: SecurityProtocol::Plaintext,
            sasl: None,
            truststore: None,
        }
    }
}

/// Set once per process from `--command-config`, before the first connection.
static SETTINGS: OnceLock<ConnectSettings> = OnceLock::new();

/// Reads `--command-config` (if given) for every connection the tool makes from now on.
pub fn load(path: Option<&Path>) -> anyhow::Result<()> {
    let settings = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading --command-config {}", p.display()))?;
            parse(&text).with_context(|| format!("--command-config {}", p.display()))?
        }
        None => ConnectSettings::default(),
    };
    let _ = SETTINGS.set(settings);
    Ok(())
}

pub fn settings() -> ConnectSettings {
    SETTINGS.get().cloned().unwrap_or_default()
}

/// The `key=value` properties of a Java properties file (no continuation lines).
fn properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            l.split_once(['=', ':'])
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

pub fn parse(text: &str) -> anyhow::Result<ConnectSettings> {
    let props = properties(text);
    let get = |k: &str| {
        props
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let protocol_name = get("security.protocol").unwrap_or("PLAINTEXT");
    let security_protocol = SecurityProtocol::parse(protocol_name).with_context(|| {
        format!("security.protocol {protocol_name}: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    })?;
    let sasl = if security_protocol.uses_sasl() {
        let name = get("sasl.mechanism")
            .unwrap_or("GSSAPI")
            .to_ascii_uppercase();
        let mechanism = match SaslMechanism::parse(&name) {
            Some(m @ (SaslMechanism::Plain | SaslMechanism::Scram(_))) => m,
            _ => bail!(
                "sasl.mechanism {name}: the tools speak PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512"
            ),
        };
        let jaas = get("sasl.jaas.config");
        let username = get("sasl.username")
            .map(String::from)
            .or_else(|| jaas.and_then(|j| jaas_option(j, "username")));
        let password = get("sasl.password")
            .map(String::from)
            .or_else(|| jaas.and_then(|j| jaas_option(j, "password")));
        let (Some(username), Some(password)) = (username, password) else {
            bail!("SASL needs a username and password: sasl.jaas.config with username=\"...\" password=\"...\", or sasl.username and sasl.password");
        };
        Some(SaslCredentials {
            mechanism,
            username,
            password,
        })
    } else {
        None
    };
    let truststore = get("ssl.truststore.location")
        .or_else(|| get("ssl.ca.location"))
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    Ok(ConnectSettings {
        security_protocol,
        sasl,
        truststore,
    })
}

/// The network the tools dial through: TLS for SSL and SASL_SSL.
pub fn network(settings: &ConnectSettings) -> anyhow::Result<Arc<dyn Network>> {
    if !settings.security_protocol.uses_tls() {
        return Ok(crate::net::tokio_network());
    }
    let client = TlsClient::new(TlsSettings {
        certificate: None,
        key: None,
        key_password: None,
        truststore: settings.truststore.clone(),
        client_auth: ClientAuth::None,
        verify_hostname: true,
        handshake_timeout: Duration::from_secs(10),
        enabled_protocols: Vec::new(),
        cipher_suites: Vec::new(),
    })
    .context("TLS settings of --command-config")?;
    Ok(Arc::new(TlsNetwork {
        inner: crate::net::tokio_network(),
        client: Some(Arc::new(client)),
        server: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::ScramMechanism;

    #[test]
    fn kafka_and_librdkafka_properties() {
        let s = parse(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n# comment\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"s e;cret\";\nssl.truststore.location=/ca.pem\n",
        )
        .unwrap();
        assert_eq!(s.security_protocol, SecurityProtocol::SaslSsl);
        let c = s.sasl.unwrap();
        assert_eq!(
            (c.mechanism, c.username.as_str(), c.password.as_str()),
            (
                SaslMechanism::Scram(ScramMechanism::Sha512),
                "admin",
                "s e;cret"
            )
        );
        assert_eq!(s.truststore, Some(PathBuf::from("/ca.pem")));
        let s = parse("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\nsasl.username=u\nsasl.password=p\n").unwrap();
        assert_eq!(s.sasl.unwrap().password, "p");
        assert!(parse("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n").is_err());
        assert!(parse("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=GSSAPI\nsasl.username=u\nsasl.password=p").is_err());
        assert!(parse("security.protocol=BOGUS").is_err());
        assert_eq!(
            parse("").unwrap().security_protocol,
            SecurityProtocol::Plaintext
        );
    }
}
