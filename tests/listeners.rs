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
        key_password: None,
        truststore: Some(dir.join("ca.pem")),
        client_auth: auth,
        verify_hostname: true,
        handshake_timeout: Duration::from_secs(5),
        enabled_protocols: Vec::new(),
        cipher_suites: Vec::new(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabled_protocols_and_cipher_suites_bound_the_handshake() {
    let Some(dir) = certs() else { return };
    let dir = dir.path();
    let with = |cert: Option<&str>, auth: ClientAuth, protocols: &[&str], suites: &[&str]| {
        let mut s = settings(dir, cert, auth);
        s.enabled_protocols = protocols.iter().map(|p| p.to_string()).collect();
        s.cipher_suites = suites.iter().map(|p| p.to_string()).collect();
        s
    };
    // What a handshake settles on: (protocol, suite), or the server's error.
    let handshake = |server: TlsSettings, client: TlsSettings| async move {
        let server = TlsServer::new(server).expect("server");
        let client = TlsClient::new(client).expect("client");
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (s, c) = tokio::join!(server.accept(a), client.connect(b, "localhost"));
        drop(c);
        s.map(|(stream, _)| {
            let conn = stream.get_ref().1;
            (
                format!("{:?}", conn.protocol_version().expect("version")),
                format!(
                    "{:?}",
                    conn.negotiated_cipher_suite().expect("suite").suite()
                ),
            )
        })
        .map_err(|e| e.to_string())
    };
    let tls12_only = with(Some("server"), ClientAuth::None, &["TLSv1.2"], &[]);
    let any_client = with(None, ClientAuth::None, &[], &[]);
    assert_eq!(
        handshake(tls12_only.clone(), any_client.clone())
            .await
            .expect("TLS 1.2")
            .0,
        "TLSv1_2"
    );
    let tls13_client = with(None, ClientAuth::None, &["TLSv1.3"], &[]);
    let refused = handshake(tls12_only.clone(), tls13_client)
        .await
        .expect_err("no common version");
    assert!(refused.contains("TLS handshake failed"), "{refused}");
    // One suite, by its IANA name: that is what is negotiated.
    let one_suite = with(
        Some("server"),
        ClientAuth::None,
        &[],
        &["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
    );
    assert_eq!(
        handshake(one_suite, any_client.clone()).await.expect("ok"),
        (
            "TLSv1_2".to_string(),
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".to_string()
        )
    );
    let tls13_suite = with(
        Some("server"),
        ClientAuth::None,
        &[],
        &["TLS_CHACHA20_POLY1305_SHA256"],
    );
    assert_eq!(
        handshake(tls13_suite, any_client.clone())
            .await
            .expect("ok"),
        (
            "TLSv1_3".to_string(),
            "TLS13_CHACHA20_POLY1305_SHA256".to_string()
        )
    );
    // The server's order decides: AES-128-GCM by default, even for a client (like OpenSSL's)
    // that lists AES-256-GCM first; the operator's `ssl.cipher.suites` order otherwise.
    let aes256_first = with(
        None,
        ClientAuth::None,
        &[],
        &["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"],
    );
    assert_eq!(
        handshake(
            with(Some("server"), ClientAuth::None, &[], &[]),
            aes256_first.clone()
        )
        .await
        .expect("ok"),
        (
            "TLSv1_3".to_string(),
            "TLS13_AES_128_GCM_SHA256".to_string()
        )
    );
    let server_aes256_first = with(
        Some("server"),
        ClientAuth::None,
        &[],
        &["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"],
    );
    let aes128_first = with(
        None,
        ClientAuth::None,
        &[],
        &["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"],
    );
    assert_eq!(
        handshake(server_aes256_first, aes128_first)
            .await
            .expect("ok"),
        (
            "TLSv1_3".to_string(),
            "TLS13_AES_256_GCM_SHA384".to_string()
        )
    );
    // A client whose only suite the server refuses gets no session.
    let refused = handshake(
        with(
            Some("server"),
            ClientAuth::None,
            &[],
            &["TLS_AES_128_GCM_SHA256"],
        ),
        with(None, ClientAuth::None, &[], &["TLS_AES_256_GCM_SHA384"]),
    )
    .await
    .expect_err("no common suite");
    assert!(refused.contains("TLS handshake failed"), "{refused}");
    // Names rustls does not serve stop the start, naming the key.
    for (protocols, suites, expect) in [
        (&["TLSv1.1"][..], &[][..], "ssl.enabled.protocols: TLSv1.1"),
        (
            &[][..],
            &["TLS_RSA_WITH_RC4_128_SHA"][..],
            "ssl.cipher.suites",
        ),
    ] {
        let err = TlsServer::new(with(Some("server"), ClientAuth::None, protocols, suites))
            .expect_err("refused");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_key_loads_with_ssl_key_password() {
    let Some(dir) = certs() else { return };
    let dir = dir.path();
    let with_key = |cert: &str, key: &str, password: Option<&str>| {
        let mut s = settings(dir, Some("server"), ClientAuth::None);
        s.certificate = Some(dir.join(cert));
        s.key = Some(dir.join(key));
        s.key_password = password.map(|p| strata::net::tls::KeyPassword(p.to_string()));
        s
    };
    let client = TlsClient::new(settings(dir, None, ClientAuth::None)).expect("client");
    // Two files, and the keystore form (encrypted key and chain in one file).
    for (cert, key) in [
        ("server.pem", "server-encrypted.key"),
        (
            "server-encrypted-keystore.pem",
            "server-encrypted-keystore.pem",
        ),
    ] {
        let server = TlsServer::new(with_key(cert, key, Some("strata-key-pw"))).expect("decrypts");
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (s, c) = tokio::join!(server.accept(a), client.connect(b, "localhost"));
        assert!(c.is_ok(), "{key}: {:?}", c.err());
        assert!(s.is_ok(), "{key}: {:?}", s.err());
    }
    for (password, expect) in [
        (None, "the private key is encrypted: set ssl.key.password"),
        (
            Some("wrong"),
            "the private key does not decrypt with ssl.key.password",
        ),
    ] {
        let err = TlsServer::new(with_key("server.pem", "server-encrypted.key", password))
            .expect_err("refused");
        assert!(err.to_string().contains(expect), "{err}");
        assert!(
            err.to_string().contains("server-encrypted.key"),
            "names the file: {err}"
        );
    }
    // An unencrypted key ignores a password it does not need.
    assert!(TlsServer::new(with_key("server.pem", "server.key", Some("unused"))).is_ok());
    // The password is never printed.
    let debug = format!(
        "{:?}",
        with_key("server.pem", "server-encrypted.key", Some("strata-key-pw"))
    );
    assert!(!debug.contains("strata-key-pw"), "{debug}");
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

// ---- connection quotas ----------------------------------------------------------------------

/// Sends Metadata on `c`; whether the broker answered.
async fn served(c: &mut KafkaClient) -> bool {
    c.send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await
        .is_ok()
}

async fn plain_client(addr: SocketAddr) -> KafkaClient {
    KafkaClient::connect(
        &TokioNetwork,
        &addr.to_string(),
        "q",
        Duration::from_secs(10),
    )
    .await
    .expect("tcp connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_limit_are_closed_and_fast_ones_wait() {
    let b = ListenerBroker::start(
        &["PLAINTEXT"],
        &[
            ("max.connections.per.ip", "1"),
            ("max.connections.per.ip.overrides", "127.0.0.1:2"),
            ("max.connection.creation.rate", "5"),
        ],
    )
    .await;
    let addr = b.addr("PLAINTEXT");
    let mut first = plain_client(addr).await;
    let mut second = plain_client(addr).await;
    let mut third = plain_client(addr).await;
    assert!(served(&mut first).await && served(&mut second).await);
    assert!(
        !served(&mut third).await,
        "a third connection from 127.0.0.1 was served"
    );
    drop(first);
    // The closed connection's place is given back once the broker sees it close.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = plain_client(addr).await;
        if served(&mut again).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = b.broker.render_metrics();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("strata_server_connections_rejected_per_ip_total ")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    drop(second);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_faster_than_the_creation_rate_wait_to_be_accepted() {
    let b = ListenerBroker::start(&["PLAINTEXT"], &[("max.connection.creation.rate", "5")]).await;
    let addr = b.addr("PLAINTEXT");
    let started = std::time::Instant::now();
    // A burst of one second's worth (5) goes at once; the next 5 are spaced 200 ms apart.
    for _ in 0..10 {
        let mut c = plain_client(addr).await;
        assert!(served(&mut c).await);
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "10 connections at 5/s took {took:?}"
    );
    let throttled = b
        .broker
        .render_metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix("strata_server_connections_throttled_total ")
                .map(str::to_string)
        })
        .expect("metric");
    assert!(
        throttled.parse::<f64>().expect("number") >= 4.0,
        "{throttled}"
    );
    b.stop().await;
}
