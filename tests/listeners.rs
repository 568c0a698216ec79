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
            let info = configs
                .iter()
                .find(|c| c.info.name == name)
                .expect("configured")
                .info
                .clone();
            listeners.push(KafkaListener {
                info,
                acceptor: strata::net::tokio_acceptor(socket),
            });
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
