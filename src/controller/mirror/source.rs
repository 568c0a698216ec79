//! Talking to a link's source cluster: connecting with the link's security settings (the
//! secret read from its reference at each connection) and reading its topic metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{DescribeConfigsRequest, MetadataRequest, MetadataResponse};

use super::{MirrorLinkSpec, SourceTopic};
use crate::client::{KafkaClient, SaslCredentials};
use crate::net::tls::{ClientAuth, TlsClient, TlsNetwork, TlsSettings};
use crate::net::Network;
use crate::protocol::str_bytes;
use crate::sasl::SaslMechanism;

/// How long connecting to a source broker may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The network towards the source: `net` itself, or TLS over it (SSL, SASL_SSL) with the
/// link's truststore and client certificate, read from their files at each connection so
/// that a renewed certificate is picked up.
fn network(net: &Arc<dyn Network>, spec: &MirrorLinkSpec) -> Result<Arc<dyn Network>, String> {
    let s = &spec.security;
    if !matches!(s.security_protocol.as_str(), "SSL" | "SASL_SSL") {
        return Ok(net.clone());
    }
    let keystore = s.ssl_keystore_location.as_ref().map(PathBuf::from);
    let client = TlsClient::new(TlsSettings {
        certificate: keystore.clone(),
        key: keystore,
        // The link's client key is unencrypted PEM; its protocols and suites are rustls's.
        key_password: None,
        enabled_protocols: Vec::new(),
        cipher_suites: Vec::new(),
        truststore: s.ssl_truststore_location.as_ref().map(PathBuf::from),
        client_auth: ClientAuth::None,
        verify_hostname: true,
        handshake_timeout: CONNECT_TIMEOUT,
    })
    .map_err(|e| format!("the link's TLS settings: {e}"))?;
    Ok(Arc::new(TlsNetwork {
        inner: net.clone(),
        client: Some(Arc::new(client)),
        server: None,
    }))
}

/// Connects to `addr` as `spec` says (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL).
pub async fn connect(
    net: &Arc<dyn Network>,
    spec: &MirrorLinkSpec,
    addr: &str,
) -> Result<KafkaClient, String> {
    let net = network(net, spec)?;
    let mut client = KafkaClient::connect(net.as_ref(), addr, "strata-mirror", CONNECT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if spec.security.security_protocol.starts_with("SASL_") {
        let mechanism = spec
            .security
            .sasl_mechanism
            .as_deref()
            .and_then(SaslMechanism::parse)
            .ok_or("the link's sasl.mechanism is not supported")?;
        let password = spec
            .security
            .credential
            .as_ref()
            .ok_or("the link names no credential")?
            .read()?;
        let creds = SaslCredentials {
            mechanism,
            username: spec.security.sasl_username.clone().unwrap_or_default(),
            password,
        };
        client
            .authenticate(&creds)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(client)
}

/// Connects to the first bootstrap server that answers.
pub async fn connect_any(
    net: &Arc<dyn Network>,
    spec: &MirrorLinkSpec,
) -> Result<KafkaClient, String> {
    let mut last = String::from("no bootstrap servers");
    for addr in spec
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        match connect(net, spec, addr).await {
            Ok(c) => return Ok(c),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The source's Metadata for all topics (or the named ones).
pub async fn metadata(
    client: &mut KafkaClient,
    topics: Option<&[String]>,
) -> Result<MetadataResponse, String> {
    let req = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(topics.map(|names| {
            names
                .iter()
                .map(|n| {
                    kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                        .with_name(Some(crate::protocol::topic_name(n.clone())))
                })
                .collect()
        }));
    client.send(&req, 12).await.map_err(|e| e.to_string())
}

/// The source's cluster id and topics (with their config overrides when `with_configs`).
pub async fn list_topics(
    client: &mut KafkaClient,
    with_configs: bool,
) -> Result<(String, Vec<SourceTopic>), String> {
    let resp = metadata(client, None).await?;
    let cluster_id = resp.cluster_id.map(|c| c.to_string()).unwrap_or_default();
    let mut topics: Vec<SourceTopic> = resp
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && !t.is_internal)
        .filter_map(|t| {
            Some(SourceTopic {
                name: t.name.as_ref()?.0.to_string(),
                partitions: t.partitions.len() as i32,
                configs: vec![],
            })
        })
        .collect();
    if with_configs && !topics.is_empty() {
        let req = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(str_bytes(t.name.clone()))
                })
                .collect(),
        );
        let resp = client.send(&req, 4).await.map_err(|e| e.to_string())?;
        let mut by_name: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for r in resp.results.iter().filter(|r| r.error_code == 0) {
            let overrides = r
                .configs
                .iter()
                // Source 1 is DYNAMIC_TOPIC_CONFIG: the topic's own overrides.
                .filter(|c| c.config_source == 1)
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            by_name.insert(r.resource_name.to_string(), overrides);
        }
        for t in &mut topics {
            t.configs = by_name.remove(&t.name).unwrap_or_default();
        }
    }
    Ok((cluster_id, topics))
}
