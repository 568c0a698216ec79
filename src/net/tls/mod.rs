//! TLS over the network seam, with rustls (ring provider): the Kafka listener's server side
//! ([`TlsServer`]), the client side of replica fetchers and the controller RPC ([`TlsClient`]),
//! and [`TlsNetwork`], a [`Network`] that wraps another in TLS, so the code that connects and
//! listens does not change. Simulation tests keep the bare network: TLS is only ever a wrapper.
//!
//! Material is PEM: a certificate chain and its private key (one file or two), and a CA bundle
//! peers are verified against. Both sides re-read their files when one changes (checked at most
//! every [`RELOAD_CHECK_INTERVAL`] as connections are made): new connections get the new
//! certificate, established ones keep theirs. A change that does not load (a half-written
//! file, a key that does not match) is logged and the previous material stays in use.
//!
//! Every handshake has a deadline (`ssl.handshake.timeout.ms`).

mod dn;
mod principal;

pub use dn::{rfc2253, DnError};
pub use principal::{PrincipalMapper, PrincipalMappingError};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use prometheus::{IntCounterVec, Opts, Registry};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Acceptor, BoxConnection, BoxFuture, Network};

/// How often at most the files are checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{0}")]
    Settings(String),
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// A client may present a certificate; one it presents must verify.
    Requested,
    Required,
}

/// Where one side's TLS material is and how it checks its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first (may be the same file as `key`).
    pub certificate: Option<PathBuf>,
    /// PEM private key: PKCS#8, PKCS#1 or SEC1, or an encrypted PKCS#8 key
    /// (`ENCRYPTED PRIVATE KEY`, PBES2) with `key_password`.
    pub key: Option<PathBuf>,
    /// `ssl.key.password`: decrypts an encrypted PKCS#8 key.
    pub key_password: Option<KeyPassword>,
    /// PEM CA bundle that peers' certificates must chain to.
    pub truststore: Option<PathBuf>,
    /// Server side: whether clients must present a certificate.
    pub client_auth: ClientAuth,
    /// Client side: the server's certificate must name the host dialled.
    pub verify_hostname: bool,
    pub handshake_timeout: Duration,
    /// `ssl.enabled.protocols`: `TLSv1.2`, `TLSv1.3`; empty: both.
    pub enabled_protocols: Vec<String>,
    /// `ssl.cipher.suites`, by their IANA names (`TLS_AES_128_GCM_SHA256`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`, as Java names them); empty: every suite rustls
    /// offers.
    pub cipher_suites: Vec<String>,
}

/// A private key's password; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPassword(pub String);

impl std::fmt::Debug for KeyPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyPassword([hidden])")
    }
}

impl TlsSettings {
    fn files(&self) -> Vec<PathBuf> {
        [&self.certificate, &self.key, &self.truststore]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// The IANA name of a suite: rustls prefixes TLS 1.3 suites with `TLS13_`, Java and OpenSSL's
/// IANA names do not.
fn suite_name(suite: &rustls::SupportedCipherSuite) -> String {
    let name = format!("{:?}", suite.suite());
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}

/// The ring provider, restricted to `ssl.cipher.suites` when it names any, with its suites in
/// the broker's order of preference: the operator's order when `ssl.cipher.suites` is set,
/// otherwise AES-128-GCM first. The server's order decides (see `build_server_config`), and
/// the suite chosen sets the cost on both ends: OpenSSL clients (librdkafka, and so
/// confluent-kafka and kcat) list AES-256-GCM first, whose 14 rounds per block against
/// AES-128's 10 cost CPU on both ends of every connection (docs/BENCHMARKS.md, "Produce
/// throughput over TLS").
fn provider(s: &TlsSettings) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if s.cipher_suites.is_empty() {
        provider
            .cipher_suites
            .sort_by_key(|c| !suite_name(c).contains("AES_128_GCM"));
        return Ok(Arc::new(provider));
    }
    let known: Vec<String> = provider.cipher_suites.iter().map(suite_name).collect();
    let rank = |c: &rustls::SupportedCipherSuite| {
        s.cipher_suites
            .iter()
            .position(|w| suite_name(c).eq_ignore_ascii_case(w.trim()))
    };
    for wanted in &s.cipher_suites {
        if !known.iter().any(|k| k.eq_ignore_ascii_case(wanted.trim())) {
            return Err(TlsError::Settings(format!(
                "ssl.cipher.suites: {wanted} is not a suite this broker offers ({})",
                known.join(", ")
            )));
        }
    }
    provider.cipher_suites.retain(|c| rank(c).is_some());
    provider.cipher_suites.sort_by_key(|c| rank(c));
    Ok(Arc::new(provider))
}

/// `ssl.enabled.protocols` as rustls versions.
fn protocol_versions(
    s: &TlsSettings,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    if s.enabled_protocols.is_empty() {
        return Ok(rustls::DEFAULT_VERSIONS.to_vec());
    }
    s.enabled_protocols
        .iter()
        .map(|p| match p.trim() {
            "TLSv1.2" => Ok(&rustls::version::TLS12),
            "TLSv1.3" => Ok(&rustls::version::TLS13),
            other => Err(TlsError::Settings(format!(
                "ssl.enabled.protocols: {other} is not served (TLSv1.2, TLSv1.3)"
            ))),
        })
        .collect()
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.into(),
            source,
        },
        other => TlsError::Pem {
            path: path.into(),
            reason: other.to_string(),
        },
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.into(),
            reason: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

const ENCRYPTED_BEGIN: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const ENCRYPTED_END: &str = "-----END ENCRYPTED PRIVATE KEY-----";

/// The key of `path`: an encrypted PKCS#8 block decrypted with `password` (the file may hold
/// the certificate chain too, as a keystore does), else an unencrypted key.
fn load_key(
    path: &Path,
    password: Option<&KeyPassword>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.into(),
        source,
    })?;
    let bad = |reason: String| TlsError::Pem {
        path: path.into(),
        reason,
    };
    if let Some(start) = text.find(ENCRYPTED_BEGIN) {
        let end = text[start..]
            .find(ENCRYPTED_END)
            .map(|e| start + e + ENCRYPTED_END.len())
            .ok_or_else(|| bad("an ENCRYPTED PRIVATE KEY block without its end".into()))?;
        let password = password
            .ok_or_else(|| bad("the private key is encrypted: set ssl.key.password".into()))?;
        let (_, document) = pkcs8::Document::from_pem(&text[start..end])
            .map_err(|e| bad(format!("the encrypted private key: {e}")))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|e| bad(format!("the encrypted private key: {e}")))?;
        let key = encrypted.decrypt(password.0.as_bytes()).map_err(|e| {
            bad(format!(
                "the private key does not decrypt with ssl.key.password: {e}"
            ))
        })?;
        return Ok(PrivateKeyDer::Pkcs8(key.as_bytes().to_vec().into()));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.into(),
            reason: "no unencrypted PRIVATE KEY in the file (PKCS#8, PKCS#1 or SEC1)".into(),
        },
        e => pem_error(path, e),
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::Rustls {
            what: "adding a CA certificate",
            source,
        })?;
    }
    Ok(roots)
}

fn identity(
    s: &TlsSettings,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
    match (&s.certificate, &s.key) {
        (Some(c), Some(k)) => Ok(Some((
            load_certs(c)?,
            load_key(k, s.key_password.as_ref())?,
        ))),
        (None, None) => Ok(None),
        _ => Err(TlsError::Settings(
            "a certificate needs its key: set ssl.keystore.location, or both ssl.certificate.location and ssl.key.location".into(),
        )),
    }
}

fn build_server_config(s: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let provider = provider(s)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&protocol_versions(s)?)
        .map_err(|source| TlsError::Rustls {
            what: "ssl.enabled.protocols with ssl.cipher.suites",
            source,
        })?;
    let builder = match s.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let path = s.truststore.as_ref().ok_or_else(|| {
                TlsError::Settings(
                    "ssl.client.auth needs a CA bundle: set ssl.truststore.location or ssl.ca.location".into(),
                )
            })?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(path)?), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?,
            )
        }
    };
    let (chain, key) = identity(s)?.ok_or_else(|| {
        TlsError::Settings(
            "a TLS listener needs a certificate: set ssl.keystore.location, or ssl.certificate.location and ssl.key.location".into(),
        )
    })?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "the certificate and key",
            source,
        })?;
    config.ignore_client_order = true;
    Ok(config)
}

/// Verifies the chain but not the name, for `ssl.endpoint.identification.algorithm=` (empty).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn build_client_config(s: &TlsSettings) -> Result<ClientConfig, TlsError> {
    let provider = provider(s)?;
    let path = s.truststore.as_ref().ok_or_else(|| {
        TlsError::Settings(
            "connecting over TLS needs a CA bundle: set ssl.truststore.location or ssl.ca.location"
                .into(),
        )
    })?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(load_roots(path)?), provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if s.verify_hostname {
        verifier
    } else {
        Arc::new(ChainOnly(verifier))
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&protocol_versions(s)?)
        .map_err(|source| TlsError::Rustls {
            what: "ssl.enabled.protocols with ssl.cipher.suites",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity(s)? {
        Some((chain, key)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    what: "the certificate and key",
                    source,
                })
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A config built from files, rebuilt when they change.
struct Reloading<C> {
    settings: TlsSettings,
    build: fn(&TlsSettings) -> Result<C, TlsError>,
    // Held for a stat of each file, and a rebuild only when one changed; never across an await.
    state: Mutex<ReloadState<C>>,
}

struct ReloadState<C> {
    current: Arc<C>,
    stamps: Vec<Option<(SystemTime, u64)>>,
    checked: Instant,
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

impl<C> Reloading<C> {
    fn new(
        settings: TlsSettings,
        build: fn(&TlsSettings) -> Result<C, TlsError>,
    ) -> Result<Self, TlsError> {
        let stamps = stamps(&settings.files());
        let current = Arc::new(build(&settings)?);
        Ok(Reloading {
            settings,
            build,
            state: Mutex::new(ReloadState {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<C> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let now = stamps(&self.settings.files());
            if now != state.stamps {
                // Recorded even when the build fails: the next write to a file changes its
                // stamp again and is tried then, without a warning every second meanwhile.
                state.stamps = now;
                match (self.build)(&self.settings) {
                    Ok(c) => {
                        tracing::info!(files = ?self.settings.files(), "TLS material reloaded");
                        reloads().with_label_values(&["success"]).inc();
                        state.current = Arc::new(c);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS material changed but does not load; keeping the previous one");
                        reloads().with_label_values(&["failure"]).inc();
                    }
                }
            }
        }
        state.current.clone()
    }
}

/// `strata_tls_certificate_reloads_total{result}`. One counter for the process: TLS material
/// is loaded by listeners, replica fetchers and the controller RPC alike, none of which own
/// the broker's metric structs; [`register_metrics`] adds it to the broker's registry.
fn reloads() -> &'static IntCounterVec {
    static RELOADS: OnceLock<IntCounterVec> = OnceLock::new();
    RELOADS.get_or_init(|| {
        let c = IntCounterVec::new(
            Opts::new(
                "strata_tls_certificate_reloads_total",
                "TLS material (certificate, key, CA bundle) re-read after a file changed, by result (success; failure: the previous material stays in use).",
            ),
            &["result"],
        )
        .expect("metric definition is valid");
        for result in ["success", "failure"] {
            c.with_label_values(&[result]);
        }
        c
    })
}

/// Registers the TLS counters in `r` (once per registry).
pub fn register_metrics(r: &Registry) {
    let _ = r.register(Box::new(reloads().clone()));
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Subject(#[from] DnError),
}

impl HandshakeError {
    /// A fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout => "timeout",
            HandshakeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => "eof",
            HandshakeError::Io(e) => {
                match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) => "bad_certificate",
                    Some(rustls::Error::NoCertificatesPresented) => "no_certificate",
                    Some(_) => "protocol",
                    None => "io",
                }
            }
            HandshakeError::Subject(_) => "bad_certificate",
        }
    }
}

/// A listener's TLS: its certificate, and how clients are checked.
pub struct TlsServer {
    config: Reloading<ServerConfig>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("settings", &self.config.settings)
            .finish()
    }
}

/// A server-side TLS stream.
pub type ServerStream<IO> = tokio_rustls::server::TlsStream<IO>;

impl TlsServer {
    /// Loads the material now, so a bad file stops the start with its name.
    pub fn new(settings: TlsSettings) -> Result<TlsServer, TlsError> {
        Ok(TlsServer {
            handshake_timeout: settings.handshake_timeout,
            config: Reloading::new(settings, build_server_config)?,
        })
    }

    /// Runs the server handshake on `io` (bounded by the handshake timeout); returns the stream
    /// and the client certificate's subject DN (RFC 2253), if it sent one.
    pub async fn accept<IO>(
        &self,
        io: IO,
    ) -> Result<(ServerStream<IO>, Option<String>), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.current());
        let stream = tokio::time::timeout(self.handshake_timeout, acceptor.accept(io))
            .await
            .map_err(|_| HandshakeError::Timeout)??;
        let subject = match stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            Some(leaf) => {
                let cert = webpki::EndEntityCert::try_from(leaf)
                    .map_err(|_| DnError::invalid_certificate())?;
                Some(rfc2253(cert.subject())?)
            }
            None => None,
        };
        Ok((stream, subject))
    }
}

/// The TLS of outgoing connections: the CA bundle, and this node's certificate to present.
pub struct TlsClient {
    config: Reloading<ClientConfig>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("settings", &self.config.settings)
            .finish()
    }
}

impl TlsClient {
    pub fn new(settings: TlsSettings) -> Result<TlsClient, TlsError> {
        Ok(TlsClient {
            handshake_timeout: settings.handshake_timeout,
            config: Reloading::new(settings, build_client_config)?,
        })
    }

    /// Runs the client handshake on `io` to `host` (bounded by the handshake timeout).
    pub async fn connect<IO>(
        &self,
        io: IO,
        host: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.current());
        tokio::time::timeout(self.handshake_timeout, connector.connect(name, io))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("TLS handshake with {host} timed out"),
                )
            })?
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// A [`Network`] whose connections run TLS over `inner`'s: outgoing ones as a client when
/// `client` is set, accepted ones as a server when `server` is set.
#[derive(Debug, Clone)]
pub struct TlsNetwork {
    pub inner: Arc<dyn Network>,
    pub client: Option<Arc<TlsClient>>,
    pub server: Option<Arc<TlsServer>>,
}

impl Network for TlsNetwork {
    fn connect(&self, addr: String) -> BoxFuture<'static, io::Result<BoxConnection>> {
        let (inner, client) = (self.inner.clone(), self.client.clone());
        Box::pin(async move {
            let conn = inner.connect(addr.clone()).await?;
            match client {
                Some(tls) => {
                    Ok(Box::new(tls.connect(conn, host_of(&addr)).await?) as BoxConnection)
                }
                None => Ok(conn),
            }
        })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Box<dyn Acceptor>>> {
        let (inner, server) = (self.inner.clone(), self.server.clone());
        Box::pin(async move {
            let acceptor = inner.bind(addr).await?;
            match server {
                Some(tls) => Ok(Box::new(TlsAcceptor::spawn(acceptor, tls)) as Box<dyn Acceptor>),
                None => Ok(acceptor),
            }
        })
    }
}

/// Handshakes run at once per listener, at most; more wait to be accepted.
const MAX_HANDSHAKES: usize = 64;

/// Accepts on an inner acceptor and hands out connections whose handshake finished, so a slow
/// or hostile client never holds up the accept loop of the listener it connected to.
struct TlsAcceptor {
    ready: tokio::sync::mpsc::Receiver<(BoxConnection, std::net::SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsAcceptor {
    fn spawn(mut inner: Box<dyn Acceptor>, tls: Arc<TlsServer>) -> TlsAcceptor {
        let (tx, ready) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = handshakes.clone().acquire_owned().await else {
                    return;
                };
                let (conn, peer) = tokio::select! {
                    a = inner.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tls.accept(conn).await {
                        Ok((stream, _)) => {
                            let _ = tx.send((Box::new(stream) as BoxConnection, peer)).await;
                        }
                        // A peer that hung up mid-handshake is routine (it gave up or died).
                        Err(e) if e.reason() == "eof" => {
                            tracing::debug!(%peer, error = %e, "peer closed during the TLS handshake")
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "TLS handshake failed; closing")
                        }
                    }
                    drop(permit);
                });
            }
        });
        TlsAcceptor { ready, task }
    }
}

impl Drop for TlsAcceptor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Acceptor for TlsAcceptor {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxConnection, std::net::SocketAddr)>> {
        Box::pin(async move {
            self.ready
                .recv()
                .await
                .ok_or_else(|| io::Error::other("TLS acceptor stopped"))
        })
    }
}
