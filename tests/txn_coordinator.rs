//! The transaction coordinator over a real broker: fencing, timeouts, and a restart that
//! reloads `__transaction_state`.

mod common;

use std::time::Duration;

use common::TestBroker;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};

const TOPIC: &str = "txn-data";
const SETS: &[(&str, &str)] = &[
    ("transaction.state.log.num.partitions", "3"),
    ("transaction.max.timeout.ms", "60000"),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "100",
    ),
];

fn tid(v: &str) -> TransactionalId {
    TransactionalId(str_bytes(v))
}

async fn create_topic(c: &mut KafkaClient) {
    let created = c
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(10_000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_num_partitions(2)
                    .with_replication_factor(1)]),
            7,
        )
        .await
        .expect("create");
    assert_eq!(created.topics[0].error_code, 0);
}

/// InitProducerId, retried while the coordinator is created, loaded or completing.
async fn init_as(c: &mut KafkaClient, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let mut last = None;
    for _ in 0..200 {
        let found = c
            .send(
                &FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_key(str_bytes(id)),
                3,
            )
            .await
            .expect("find coordinator");
        if found.error_code == 0 {
            let resp = c
                .send(
                    &InitProducerIdRequest::default()
                        .with_transactional_id(Some(tid(id)))
                        .with_transaction_timeout_ms(timeout_ms)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                    4,
                )
                .await
                .expect("init");
            let retriable = [
                E::CoordinatorLoadInProgress.code(),
                E::CoordinatorNotAvailable.code(),
                E::NotCoordinator.code(),
            ];
            if !retriable.contains(&resp.error_code) {
                return resp;
            }
            last = Some(resp.error_code);
        } else {
            last = Some(found.error_code);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("InitProducerId {id}: {last:?}");
}

async fn add(c: &mut KafkaClient, id: &str, pid: ProducerId, epoch: i16, partition: i32) -> i16 {
    let resp = c
        .send(
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid(id))
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![partition]),
                ]),
            3,
        )
        .await
        .expect("add partitions");
    resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end(c: &mut KafkaClient, id: &str, pid: ProducerId, epoch: i16, commit: bool) -> i16 {
    c.send(
        &EndTxnRequest::default()
            .with_transactional_id(tid(id))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_committed(commit),
        4,
    )
    .await
    .expect("end txn")
    .error_code
}

async fn describe(
    c: &mut KafkaClient,
    id: &str,
) -> describe_transactions_response::TransactionState {
    let resp = c
        .send(
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![tid(id)]),
            0,
        )
        .await
        .expect("describe");
    resp.transaction_states
        .into_iter()
        .next()
        .expect("one state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_fences_the_first() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("txn-test").await;
    create_topic(&mut c).await;
    let first = init_as(&mut c, "zombie", 30_000).await;
    assert_eq!(first.error_code, 0);
    let (pid, e0) = (first.producer_id, first.producer_epoch);
    let second = init_as(&mut c, "zombie", 30_000).await;
    assert_eq!(second.error_code, 0);
    assert_eq!((second.producer_id, second.producer_epoch), (pid, e0 + 1));
    assert_eq!(
        add(&mut c, "zombie", pid, e0, 0).await,
        E::ProducerFenced.code()
    );
    assert_eq!(
        end(&mut c, "zombie", pid, e0, true).await,
        E::ProducerFenced.code()
    );
    // The new producer works; a wrong producer id is not a mapping of this id.
    assert_eq!(add(&mut c, "zombie", pid, e0 + 1, 0).await, 0);
    assert_eq!(
        add(&mut c, "zombie", ProducerId(pid.0 + 1), e0 + 1, 0).await,
        E::InvalidProducerIdMapping.code()
    );
    // A third producer while a transaction is open: the open one is aborted with a bumped
    // epoch first, and the caller is told to retry.
    let third = c
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(tid("zombie")))
                .with_transaction_timeout_ms(30_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .expect("init");
    assert_eq!(third.error_code, E::ConcurrentTransactions.code());
    let s = describe(&mut c, "zombie").await;
    assert!(
        ["PrepareAbort", "CompleteAbort"].contains(&s.transaction_state.as_str()),
        "{s:?}"
    );
    assert_eq!(s.producer_epoch, e0 + 2);
    assert_eq!(
        add(&mut c, "zombie", pid, e0 + 1, 0).await,
        E::ProducerFenced.code()
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_above_the_maximum_is_refused() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("txn-test").await;
    let resp = init_as(&mut c, "too-long", 60_001).await;
    assert_eq!(resp.error_code, E::InvalidTransactionTimeout.code());
    assert_eq!(resp.producer_id, ProducerId(-1));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("txn-test").await;
    create_topic(&mut c).await;
    let init = init_as(&mut c, "slow", 300).await;
    assert_eq!(init.error_code, 0);
    let (pid, e0) = (init.producer_id, init.producer_epoch);
    assert_eq!(add(&mut c, "slow", pid, e0, 1).await, 0);
    let mut s = describe(&mut c, "slow").await;
    // Aborted with the producer fenced, then completed once the marker is written.
    for _ in 0..50 {
        if s.transaction_state.as_str() == "CompleteAbort" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = describe(&mut c, "slow").await;
    }
    assert_eq!(s.transaction_state.as_str(), "CompleteAbort", "{s:?}");
    assert!(s.topics.is_empty(), "{s:?}");
    assert_eq!(s.producer_epoch, e0 + 1, "the abort fences the producer");
    assert_eq!(
        end(&mut c, "slow", pid, e0, true).await,
        E::ProducerFenced.code()
    );
    let metrics = broker.broker.render_metrics();
    assert!(
        metrics.contains("strata_txn_timed_out_total 1\n"),
        "{metrics}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_reloads_its_transactions() {
    let broker = TestBroker::start(SETS).await;
    let mut c = broker.client("txn-test").await;
    create_topic(&mut c).await;
    let init = init_as(&mut c, "durable", 30_000).await;
    let (pid, e0) = (init.producer_id, init.producer_epoch);
    assert_eq!(add(&mut c, "durable", pid, e0, 0).await, 0);
    assert_eq!(add(&mut c, "durable", pid, e0, 1).await, 0);
    let dir = broker.stop().await;

    let broker = TestBroker::start_in(dir, SETS).await;
    let mut c = broker.client("txn-test").await;
    let mut s = describe(&mut c, "durable").await;
    for _ in 0..100 {
        if s.error_code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s = describe(&mut c, "durable").await;
    }
    assert_eq!(s.error_code, 0, "{s:?}");
    assert_eq!(s.transaction_state.as_str(), "Ongoing");
    assert_eq!((s.producer_id, s.producer_epoch), (pid, e0));
    assert_eq!(s.transaction_timeout_ms, 30_000);
    assert_eq!(s.topics.len(), 1);
    assert_eq!(s.topics[0].partitions, vec![0, 1]);
    // The reloaded producer is still the current one, and its transaction counts as open.
    assert_eq!(add(&mut c, "durable", pid, e0, 1).await, 0);
    let open = tokio::time::timeout(Duration::from_secs(10), async {
        while !broker
            .broker
            .render_metrics()
            .contains("strata_txn_open_transactions 1\n")
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(open.is_ok(), "strata_txn_open_transactions never reached 1");
    assert_eq!(end(&mut c, "durable", pid, e0, false).await, 0);
    broker.stop().await;
}
