//! Listeners: a broker with several listeners answers each client with the addresses of the
//! listener it connected on.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    DescribeClusterRequest, FindCoordinatorRequest, MetadataRequest, MetadataResponse,
};
use tokio_util::sync::CancellationToken;

use strata::broker::Broker;
use strata::client::KafkaClient;
use strata::config::NodeConfig;
use strata::metrics::Metrics;
use strata::net::TokioNetwork;
use strata::server::{serve_listeners, KafkaListener, ServerLimits};

/// A broker serving every client listener of its config, each bound on a free port.
struct ListenerBroker {
    broker: Arc<Broker>,
    /// Listener name -> bound address.
    addrs: Vec<(String, SocketAddr)>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl ListenerBroker {
    /// `names` are the client listeners (each on a free port of 127.0.0.1); `sets` apply on top.
    async fn start(names: &[&str], sets: &[(&str, &str)]) -> ListenerBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bound = Vec::new();
        for name in names {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            bound.push((name.to_string(), l));
        }
        let listeners = bound
            .iter()
            .map(|(n, l)| format!("{n}://{}", l.local_addr().expect("addr")))
            .collect::<Vec<_>>()
            .join(",");
        let mut all: Vec<(String, String)> = vec![
            (
                "log.dirs".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("listeners".into(), listeners),
            ("http.listener".into(), String::new()),
        ];
        all.extend(sets.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let node = NodeConfig::load(None, &[], &all).expect("config");
        let shutdown = CancellationToken::new();
        let broker = Broker::start(
            node.clone(),
            strata::clock::system(),
            Arc::new(Metrics::new()),
            shutdown.clone(),
        )
        .await
        .expect("broker starts");
        let configs = node.kafka_listeners().expect("listeners");
        let mut addrs = Vec::new();
        let mut listeners = Vec::new();
        for (name, socket) in bound {
            addrs.push((name.clone(), socket.local_addr().expect("addr")));
            let config = configs
                .iter()
                .find(|c| c.info.name == name)
                .expect("configured");
            listeners.push(
                KafkaListener::new(&node, config, strata::net::tokio_acceptor(socket))
                    .expect("listener"),
            );
        }
        let server = tokio::spawn(serve_listeners(
            listeners,
            broker.apis.clone(),
            broker.metrics.server.clone(),
            ServerLimits::from_config(&node),
            shutdown.clone(),
        ));
        ListenerBroker {
            broker,
            addrs,
            shutdown,
            server,
            _dir: dir,
        }
    }

    fn addr(&self, name: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(n, _)| n == name)
            .expect("listener")
            .1
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.broker.close().expect("close");
    }
}

async fn metadata(addr: SocketAddr) -> MetadataResponse {
    let mut c = KafkaClient::connect(
        &TokioNetwork,
        &addr.to_string(),
        "listeners-test",
        Duration::from_secs(10),
    )
    .await
    .expect("connect");
    c.send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await
        .expect("metadata")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_advertises_its_own_address() {
    let b = ListenerBroker::start(
        &["PLAINTEXT", "INTERNAL"],
        &[
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ],
    )
    .await;
    for name in ["PLAINTEXT", "INTERNAL"] {
        let addr = b.addr(name);
        let m = metadata(addr).await;
        let brokers: Vec<_> = m
            .brokers
            .iter()
            .map(|br| (br.node_id.0, br.host.to_string(), br.port))
            .collect();
        assert_eq!(
            brokers,
            vec![(1, "127.0.0.1".to_string(), i32::from(addr.port()))],
            "{name}"
        );

        let mut c = KafkaClient::connect(
            &TokioNetwork,
            &addr.to_string(),
            "t",
            Duration::from_secs(10),
        )
        .await
        .expect("connect");
        let d = c
            .send(&DescribeClusterRequest::default().with_endpoint_type(1), 1)
            .await
            .expect("describe cluster");
        assert_eq!(d.brokers.len(), 1, "{name}");
        assert_eq!(d.brokers[0].port, i32::from(addr.port()), "{name}");
        let f = c
            .send(
                &FindCoordinatorRequest::default()
                    .with_key_type(0)
                    .with_coordinator_keys(vec!["g".into()]),
                4,
            )
            .await
            .expect("find coordinator");
        assert_eq!(f.coordinators[0].error_code, 0, "{name}: {f:?}");
        assert_eq!(f.coordinators[0].port, i32::from(addr.port()), "{name}");
    }
    // The registration carries every listener, and host:port is the inter-broker one.
    let image = b.broker.image();
    let reg = image.brokers.values().next().expect("registered");
    assert_eq!(reg.port, b.addr("INTERNAL").port());
    let mut names: Vec<_> = reg.endpoints.iter().map(|e| e.listener.as_str()).collect();
    names.sort();
    assert_eq!(names, ["INTERNAL", "PLAINTEXT"]);
    b.stop().await;
}

// ---- TLS ----------------------------------------------------------------------------------

use std::path::{Path, PathBuf};

use kafka_protocol::records::Compression;
use strata::net::tls::{
    rfc2253, ClientAuth, PrincipalMapper, TlsClient, TlsNetwork, TlsServer, TlsSettings,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Fresh test certificates (scripts/gen-test-certs.sh); `None` (skipped) without openssl.
fn certs() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-test-certs.sh");
    match std::process::Command::new("bash")
        .arg(script)
        .arg(dir.path())
        .status()
    {
        Ok(s) if s.success() => Some(dir),
        other => {
            common::skip::unavailable(&format!("cannot generate test certificates: {other:?}"));
            None
        }
    }
}

fn settings(dir: &Path, cert: Option<&str>, auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        certificate: cert.map(|c| dir.join(format!("{c}.pem"))),
        key: cert.map(|c| dir.join(format!("{c}.key"))),
        truststore: Some(dir.join("ca.pem")),
        client_auth: auth,
        verify_hostname: true,
        handshake_timeout: Duration::from_secs(5),
    }
}

fn p(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// A client network over TLS presenting `cert` (None: no client certificate).
fn tls_net(dir: &Path, cert: Option<&str>) -> TlsNetwork {
    TlsNetwork {
        inner: strata::net::tokio_network(),
        client: Some(Arc::new(
            TlsClient::new(settings(dir, cert, ClientAuth::None)).expect("client tls"),
        )),
        server: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_yields_the_client_certificates_subject_and_principal() {
    let Some(dir) = certs() else { return };
    let dir = dir.path();
    let handshake = |server_auth: ClientAuth, client_cert: Option<&'static str>| {
        let server = TlsServer::new(settings(dir, Some("server"), server_auth)).expect("server");
        let client = TlsClient::new(settings(dir, client_cert, ClientAuth::None)).expect("client");
        async move {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let (s, c) = tokio::join!(server.accept(a), client.connect(b, "localhost"));
            drop(c);
            s.map(|(_, subject)| subject)
        }
    };
    let subject = handshake(ClientAuth::Required, Some("client"))
        .await
        .expect("handshake");
    assert_eq!(
        subject.as_deref(),
        Some("CN=alice,OU=clients,O=Strata,C=US")
    );
    let mapper =
        PrincipalMapper::parse("RULE:^CN=([^,]*),OU=clients,.*$/$1/U,DEFAULT").expect("rules");
    assert_eq!(
        mapper.map(subject.as_deref().unwrap_or("")).expect("maps"),
        "ALICE"
    );
    // Requested: a client without a certificate is let in, with no subject.
    assert_eq!(
        handshake(ClientAuth::Requested, None)
            .await
            .expect("handshake"),
        None
    );
    // Required: refused without one; expired and untrusted ones are refused in any mode.
    let e = handshake(ClientAuth::Required, None)
        .await
        .expect_err("must fail");
    assert_eq!(e.reason(), "no_certificate", "{e}");
    for cert in ["expired", "untrusted"] {
        let e = handshake(ClientAuth::Requested, Some(cert))
            .await
            .expect_err("must fail");
        assert_eq!(e.reason(), "bad_certificate", "{cert}: {e}");
    }
    // The same subject through the certificate parser and the openssl CLI.
    let pem = std::fs::read(dir.join("client.pem")).expect("read");
    let der = rustls_pki_types_der(&pem);
    let cert = webpki::EndEntityCert::try_from(&der).expect("cert");
    assert_eq!(
        rfc2253(cert.subject()).expect("dn"),
        "CN=alice,OU=clients,O=Strata,C=US"
    );
}

fn rustls_pki_types_der(pem: &[u8]) -> rustls::pki_types::CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem).expect("pem")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_listener_serves_clients_maps_principals_and_shrugs_off_bad_ones() {
    let Some(certs) = certs() else { return };
    let dir = certs.path();
    let b = ListenerBroker::start(
        &["PLAINTEXT", "SSL"],
        &[
            ("ssl.keystore.location", &p(dir, "server-keystore.pem")),
            ("ssl.truststore.location", &p(dir, "ca.pem")),
            ("listener.name.ssl.ssl.client.auth", "requested"),
            (
                "listener.name.ssl.ssl.principal.mapping.rules",
                "RULE:^CN=([^,]*),OU=clients,.*$/$1/,DEFAULT",
            ),
            ("ssl.handshake.timeout.ms", "2000"),
            ("quota.window.num", "2"),
        ],
    )
    .await;
    let ssl = b.addr("SSL").to_string();
    let connect = |cert: Option<&'static str>| {
        let net = tls_net(dir, cert);
        let ssl = ssl.clone();
        async move { KafkaClient::connect(&net, &ssl, "tls-test", Duration::from_secs(10)).await }
    };

    // Garbage on the TLS port, a client that never speaks, an expired and an untrusted
    // certificate: each connection is closed, and nothing else is disturbed.
    let mut garbage = tokio::net::TcpStream::connect(&ssl).await.expect("tcp");
    garbage
        .write_all(b"\x00\x00\x00\x10this is not TLS at all")
        .await
        .expect("write");
    let mut silent = tokio::net::TcpStream::connect(&ssl).await.expect("tcp");
    for bad in ["expired", "untrusted"] {
        // Under TLS 1.3 the server judges the client's certificate after the client thinks the
        // handshake is done, so the refusal may show on the first request instead.
        let refused = match connect(Some(bad)).await {
            Err(_) => true,
            Ok(mut c) => c
                .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
                .await
                .is_err(),
        };
        assert!(refused, "{bad} certificate accepted");
    }
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match garbage.read(&mut buf).await {
                Ok(0) | Err(_) => return 0,
                // A TLS alert may come first; then the close.
                Ok(_) => continue,
            }
        }
    })
    .await
    .expect("garbage connection closed");
    assert_eq!(n, 0);
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the handshake timeout closes a silent client");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    // A good client produces and reads back over TLS.
    let mut alice = connect(Some("client")).await.expect("mTLS connect");
    common::kafka::create_topic(&mut alice, "secure", 1, &[]).await;
    let records: Vec<common::TestRecord> = (0..5)
        .map(|i| (Some("k"), Some(format!("secret-{i}")), vec![]))
        .collect();
    let (code, base) = common::kafka::produce(
        &mut alice,
        "secure",
        0,
        common::batch(&records, Compression::None),
        -1,
    )
    .await;
    assert_eq!((code, base), (0, 0));
    let fetched = common::kafka::records_of(
        &common::kafka::fetch(
            &mut alice,
            &common::kafka::fetch_request("secure", 0, 0, 100, 1, 1 << 20),
        )
        .await,
    );
    let values: Vec<_> = fetched
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        values,
        (0..5).map(|i| format!("secret-{i}")).collect::<Vec<_>>()
    );
    // Metadata over SSL names the SSL port.
    let m = alice
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await
        .expect("metadata");
    assert_eq!(m.brokers[0].port, i32::from(b.addr("SSL").port()));

    let failures = b.broker.render_metrics();
    for reason in ["bad_certificate", "timeout"] {
        assert!(
            failures.lines().any(|l| l.starts_with(&format!(
                "strata_server_tls_handshake_failures_total{{listener=\"SSL\",reason=\"{reason}\"}}"
            ))),
            "no {reason} failure counted:\n{}",
            failures
                .lines()
                .filter(|l| l.contains("tls_handshake"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // The mapped principal is the user that quotas match: a producer quota for user "alice"
    // throttles the certificate's connection and not an anonymous one.
    let quota = kafka_protocol::messages::AlterClientQuotasRequest::default().with_entries(vec![
        kafka_protocol::messages::alter_client_quotas_request::EntryData::default()
            .with_entity(vec![
                kafka_protocol::messages::alter_client_quotas_request::EntityData::default()
                    .with_entity_type(strata::protocol::str_bytes("user"))
                    .with_entity_name(Some(strata::protocol::str_bytes("alice"))),
            ])
            .with_ops(vec![
                kafka_protocol::messages::alter_client_quotas_request::OpData::default()
                    .with_key(strata::protocol::str_bytes("producer_byte_rate"))
                    .with_value(1000.0),
            ]),
    ]);
    let r = alice.send(&quota, 1).await.expect("alter quotas");
    assert_eq!(r.entries[0].error_code, 0);
    let big: Vec<common::TestRecord> = (0..20)
        .map(|_| (None, Some("x".repeat(1000)), vec![]))
        .collect();
    let mut anonymous = connect(None)
        .await
        .expect("TLS without a client certificate");
    for (client, throttled) in [(&mut anonymous, false), (&mut alice, true)] {
        let resp = common::kafka::produce_response(
            client,
            "secure",
            0,
            common::batch(&big, Compression::None),
            1,
        )
        .await;
        assert_eq!(
            resp.throttle_time_ms > 0,
            throttled,
            "throttle {} (alice's connection: {throttled})",
            resp.throttle_time_ms
        );
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_certificate_is_served_to_new_connections() {
    let Some(certs) = certs() else { return };
    let dir = certs.path();
    let live: PathBuf = dir.join("live");
    std::fs::create_dir(&live).expect("mkdir");
    std::fs::copy(dir.join("server.pem"), live.join("cert.pem")).expect("copy");
    std::fs::copy(dir.join("server.key"), live.join("key.pem")).expect("copy");
    let b = ListenerBroker::start(
        &["SSL"],
        &[
            ("ssl.certificate.location", &p(&live, "cert.pem")),
            ("ssl.key.location", &p(&live, "key.pem")),
            ("ssl.ca.location", &p(dir, "ca.pem")),
        ],
    )
    .await;
    let addr = b.addr("SSL");
    let client = TlsClient::new(settings(dir, None, ClientAuth::None)).expect("client");
    let served_cn = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let tls = client.connect(tcp, "127.0.0.1").await.expect("handshake");
        let leaf = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
        let cert = webpki::EndEntityCert::try_from(&leaf).expect("cert");
        rfc2253(cert.subject()).expect("dn")
    };
    assert_eq!(served_cn().await, "CN=strata-broker");
    let net = tls_net(dir, None);
    let mut old = KafkaClient::connect(&net, &addr.to_string(), "old", Duration::from_secs(10))
        .await
        .expect("connect");

    std::fs::copy(dir.join("server2.pem"), live.join("cert.pem")).expect("copy");
    std::fs::copy(dir.join("server2.key"), live.join("key.pem")).expect("copy");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let cn = served_cn().await;
        if cn == "CN=strata-broker-2" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still serving {cn}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The connection made before keeps working.
    let m = old
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await
        .expect("old connection still served");
    assert_eq!(m.brokers.len(), 1);
    b.stop().await;
}
