//! Test helpers: a `moto_server` (S3-compatible) process on a free port. `moto_server` is
//! required, not optional: `scripts/install-test-deps.sh` installs it, and a test that skipped
//! itself without it would pass while testing nothing.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use object_store::client::{HttpClient, HttpConnector};
use strata_tiering::{ObjectStorage, S3Config, StorageConfig};

pub struct MotoServer {
    child: Child,
    pub port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl MotoServer {
    /// Starts `moto_server`; panics, saying how to install it, when it is not on the `PATH`.
    pub fn start() -> MotoServer {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start moto_server ({e}): the S3 tests need it on the PATH; \
                     install it with scripts/install-test-deps.sh \
                     (python3 -m pip install 'moto[server]>=5,<6')"
                )
            });
        let server = MotoServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        // SAFETY-free: these tests only ever set the same values.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (PUT /bucket); an existing one is fine.
    pub fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("create bucket");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlready"),
            "{resp}"
        );
    }

    /// Creates `bucket` and returns a store on it, configured as an operator would: the
    /// endpoint set, the addressing style left to its default (path style).
    pub fn storage(&self, bucket: &str, prefix: &str) -> ObjectStorage {
        self.create_bucket(bucket);
        self.storage_without_creating(bucket, prefix)
    }

    /// A store on `bucket` as [`Self::storage`] configures it, without creating the bucket.
    pub fn storage_without_creating(&self, bucket: &str, prefix: &str) -> ObjectStorage {
        let config = StorageConfig::parse(
            &format!("s3://{bucket}/{prefix}"),
            std::path::Path::new("/unused"),
            &self.endpoint(),
            "us-east-1",
            None,
        )
        .expect("config");
        let StorageConfig::S3(c) = &config else {
            panic!("{config:?}")
        };
        assert!(c.path_style, "a custom endpoint defaults to path style");
        config.build().expect("s3 store")
    }

    /// Creates `bucket` and returns a store addressing it virtual-hosted
    /// (`http://{bucket}.localhost:{port}/key`, which moto serves from the `Host` header).
    /// `*.localhost` is not resolvable everywhere (glibc without `nss-myhostname` does not),
    /// so the store's HTTP client resolves the bucket's host name to moto's address itself.
    pub fn virtual_hosted_storage(&self, bucket: &str, prefix: &str) -> ObjectStorage {
        self.create_bucket(bucket);
        let c = S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: format!("http://localhost:{}", self.port),
            region: "us-east-1".into(),
            path_style: false,
        };
        let connector = ResolveTo {
            host: format!("{bucket}.localhost"),
            addr: SocketAddr::from(([127, 0, 0, 1], self.port)),
        };
        ObjectStorage::s3_with_http_connector(&c, connector).expect("s3 store")
    }
}

/// An HTTP client that resolves one host name to a fixed address.
#[derive(Debug)]
struct ResolveTo {
    host: String,
    addr: SocketAddr,
}

impl HttpConnector for ResolveTo {
    fn connect(&self, _: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .resolve(&self.host, self.addr)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
