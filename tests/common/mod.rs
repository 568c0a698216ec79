//! Shared helpers for integration tests: an in-process broker on a free port, record batches,
//! the Kafka requests the tests send ([`kafka`]), and waiting for what a test expects to happen
//! ([`wait`]).
#![allow(dead_code, unreachable_pub)]

pub mod files;
pub mod kafka;
pub mod records;
pub mod skip;
pub mod wait;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, TimestampType};
use tokio_util::sync::CancellationToken;

use strata::broker::Broker;
use strata::config::NodeConfig;
use strata::metrics::Metrics;
use strata::server::{serve, ServerLimits};

pub struct TestBroker {
    pub broker: Arc<Broker>,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl TestBroker {
    /// Starts a broker in a temporary directory with `sets` applied over the defaults.
    pub async fn start(sets: &[(&str, &str)]) -> TestBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, sets).await
    }

    pub async fn start_in(dir: tempfile::TempDir, sets: &[(&str, &str)]) -> TestBroker {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut all: Vec<(String, String)> = vec![
            (
                "log.dirs".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("listeners".into(), format!("PLAINTEXT://{addr}")),
            ("http.listener".into(), String::new()),
        ];
        // The broker measures its disk's real use: near-full marks keep a test machine with a
        // well-used disk from refusing produce or dropping local segments.
        all.extend(
            [
                ("strata.log.dir.disk.low.watermark.ratio", "0.98"),
                ("strata.log.dir.disk.high.watermark.ratio", "0.99"),
                ("strata.log.dir.disk.refuse.ratio", "0.995"),
            ]
            .map(|(key, ratio)| (key.to_string(), ratio.to_string())),
        );
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
        let server = tokio::spawn(serve(
            strata::net::tokio_acceptor(listener),
            broker.apis.clone(),
            broker.metrics.server.clone(),
            ServerLimits::from_config(&node),
            shutdown.clone(),
        ));
        TestBroker {
            broker,
            addr,
            shutdown,
            dir,
            server,
        }
    }

    /// Stops the broker cleanly and returns its directory, for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        let _ = self.server.await;
        self.broker.close().expect("close");
        self.dir
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// A client connected to this broker as `client_id` (which client quotas match).
    pub async fn client(&self, client_id: &'static str) -> strata::client::KafkaClient {
        strata::client::KafkaClient::connect(
            &strata::net::TokioNetwork,
            &self.bootstrap(),
            client_id,
            std::time::Duration::from_secs(10),
        )
        .await
        .expect("connect")
    }
}

/// One record: key, value, headers.
pub type TestRecord = (
    Option<&'static str>,
    Option<String>,
    Vec<(&'static str, &'static str)>,
);

/// Encodes records as one magic-2 batch.
pub fn batch(records: &[TestRecord], compression: Compression) -> Bytes {
    idempotent_batch(records, compression, -1, -1, -1)
}

/// Encodes records as one magic-2 batch of an idempotent producer (`producer_id` -1: none).
pub fn idempotent_batch(
    records: &[TestRecord],
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Bytes {
    idempotent_batch_at(
        records,
        compression,
        producer_id,
        producer_epoch,
        base_sequence,
        1_700_000_000_000,
    )
}

/// [`idempotent_batch`] whose records carry timestamps `base_timestamp_ms + i`.
pub fn idempotent_batch_at(
    records: &[TestRecord],
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    base_timestamp_ms: i64,
) -> Bytes {
    let base_sequence = if producer_id < 0 { -1 } else { base_sequence };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v, h))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever offset - sequence changes; -1 (no
            // sequence) is where a non-idempotent batch starts.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: base_timestamp_ms + i as i64,
            key: k.map(|k| Bytes::from(k.as_bytes().to_vec())),
            value: v.as_ref().map(|v| Bytes::from(v.clone().into_bytes())),
            headers: h
                .iter()
                .map(|(k, v)| ((*k).into(), Some(Bytes::from(v.as_bytes().to_vec()))))
                .collect(),
        })
        .collect();
    records::encode(&records, compression)
}

/// Decodes every record in `bytes` (one or more batches).
pub fn decode(mut bytes: Bytes) -> Vec<Record> {
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}
