//! Transactions on the partition side, through the wire against an in-process broker:
//! transactional batches of two producers, one committed and one aborted by WriteTxnMarkers;
//! read_committed and read_uncommitted fetches (records, the aborted list, the last stable
//! offset), ListOffsets by isolation level, and the same after a restart.
//!
//! The tests play the transaction coordinator's part (its markers) themselves, so their brokers
//! do not verify transactions with it ([`UNVERIFIED`]): it has never heard of these producers.

mod common;

use bytes::Bytes;
use common::kafka::{create_topic, fetch, fetch_request, produce_request};
use common::TestBroker;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    describe_producers_request, BrokerId, DescribeProducersRequest, FetchResponse,
    InitProducerIdRequest, ListOffsetsRequest, ProducerId, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::records::Record;
use strata::client::KafkaClient;
use strata::protocol::control::{build_marker_batch, EndTransactionMarker, TransactionResult};
use strata::protocol::record_batch::{build_batch, set_covered_fields, TRANSACTIONAL_BIT};
use strata::protocol::{str_bytes, topic_name};

const TOPIC: &str = "txn";
const UNVERIFIED: (&str, &str) = ("transaction.partition.verification.enable", "false");

/// Record timestamps: now, so that no segment rolls for time between the data and the markers
/// (a fetch reads one segment).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn init_producer(c: &mut KafkaClient) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = c.send(&req, 4).await.expect("init producer id");
    assert_eq!(resp.error_code, 0);
    (resp.producer_id.0, resp.producer_epoch)
}

/// One transactional batch of `values` from sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let recs: Vec<_> = values.iter().map(|v| (None, Some(v.as_bytes()))).collect();
    let ts = now_ms();
    let mut b = build_batch(0, ts, Some((pid, epoch, seq)), &recs);
    set_covered_fields(&mut b, TRANSACTIONAL_BIT, ts + values.len() as i64 - 1, seq);
    Bytes::from(b)
}

/// Produces with the request's transactional id set; (error code, base offset).
async fn produce_txn(
    c: &mut KafkaClient,
    records: Bytes,
    transactional_id: Option<&str>,
) -> (i16, i64) {
    let req = produce_request(TOPIC, 0, records, -1)
        .with_transactional_id(transactional_id.map(|t| TransactionalId(str_bytes(t))));
    let resp = c.send(&req, 9).await.expect("produce");
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// WriteTxnMarkers for one producer on partition 0 of [`TOPIC`] and partition 5 (absent),
/// from coordinator epoch 7.
async fn end_txn(c: &mut KafkaClient, pid: i64, epoch: i16, commit: bool) -> Vec<i16> {
    end_txn_from(c, pid, epoch, commit, 7).await
}

async fn end_txn_from(
    c: &mut KafkaClient,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
) -> Vec<i16> {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0, 5])])]);
    let resp = c.send(&req, 1).await.expect("write txn markers");
    assert_eq!(resp.markers[0].producer_id.0, pid);
    resp.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

async fn latest(c: &mut KafkaClient, isolation_level: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let resp = c.send(&req, 5).await.expect("list offsets");
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn fetch_from_zero(c: &mut KafkaClient, isolation_level: i8) -> FetchResponse {
    let req = fetch_request(TOPIC, 0, 0, 0, 1, 1 << 20).with_isolation_level(isolation_level);
    let resp = fetch(c, &req).await;
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    resp
}

fn records(resp: &FetchResponse) -> Vec<Record> {
    common::kafka::records_of(resp)
}

/// (producer id, first offset) of each aborted transaction in the answer; `None` when absent.
fn aborted(resp: &FetchResponse) -> Option<Vec<(i64, i64)>> {
    resp.responses[0].partitions[0]
        .aborted_transactions
        .as_ref()
        .map(|a| {
            a.iter()
                .map(|t| (t.producer_id.0, t.first_offset))
                .collect()
        })
}

/// What a read_committed consumer keeps: data records of transactions not listed as aborted
/// (a listed transaction's records run from its first offset to its producer's next marker).
fn committed_values(resp: &FetchResponse) -> Vec<String> {
    let mut open_aborts: Vec<(i64, i64)> = aborted(resp).unwrap_or_default();
    let mut aborting: Vec<i64> = Vec::new();
    let mut out = Vec::new();
    for r in records(resp) {
        open_aborts.retain(|&(pid, first)| {
            let starts = first <= r.offset;
            if starts {
                aborting.push(pid);
            }
            !starts
        });
        if r.control {
            aborting.retain(|&p| p != r.producer_id);
            continue;
        }
        if !aborting.contains(&r.producer_id) {
            out.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    out
}

fn values(resp: &FetchResponse) -> Vec<String> {
    records(resp)
        .iter()
        .filter(|r| !r.control)
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_and_aborted_transactions_read_by_isolation_level_and_survive_a_restart() {
    let b = TestBroker::start(&[UNVERIFIED]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, TOPIC, 1, &[]).await;
    let (a, ea) = init_producer(&mut c).await;
    let (bp, eb) = init_producer(&mut c).await;

    // A transactional batch without a transactional id in the request is refused.
    assert_eq!(
        produce_txn(&mut c, txn_batch(a, ea, 0, &["x"]), None)
            .await
            .0,
        ResponseError::TransactionalIdAuthorizationFailed.code()
    );
    assert_eq!(
        produce_txn(&mut c, txn_batch(a, ea, 0, &["a0", "a1", "a2"]), Some("ta")).await,
        (0, 0)
    );
    assert_eq!(
        produce_txn(&mut c, txn_batch(bp, eb, 0, &["b0", "b1"]), Some("tb")).await,
        (0, 3)
    );
    assert_eq!(
        produce_txn(&mut c, txn_batch(a, ea, 3, &["a3"]), Some("ta")).await,
        (0, 5)
    );

    // Both transactions are open: nothing is stable yet.
    let text = b.broker.render_metrics();
    assert!(
        text.contains("strata_log_open_transactions{topic=\"txn\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("strata_log_last_stable_offset_lag{topic=\"txn\"} 6"),
        "{text}"
    );
    let rc = fetch_from_zero(&mut c, 1).await;
    let p = &rc.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (6, 0));
    assert!(records(&rc).is_empty());
    assert_eq!((latest(&mut c, 1).await, latest(&mut c, 0).await), (0, 6));
    let ru = fetch_from_zero(&mut c, 0).await;
    assert_eq!(values(&ru), ["a0", "a1", "a2", "b0", "b1", "a3"]);
    assert_eq!(aborted(&ru), None);

    // A commits (marker at 6): B's transaction from 3 still holds the LSO.
    let not_here = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(end_txn(&mut c, a, ea, true).await, vec![0, not_here]);
    assert_eq!(latest(&mut c, 1).await, 3);
    let rc = fetch_from_zero(&mut c, 1).await;
    assert_eq!(rc.responses[0].partitions[0].last_stable_offset, 3);
    assert_eq!(values(&rc), ["a0", "a1", "a2"]);
    assert_eq!(aborted(&rc), Some(vec![]));

    // B aborts (marker at 7): everything is stable, and B's records are listed as aborted.
    assert_eq!(end_txn(&mut c, bp, eb, false).await, vec![0, not_here]);
    let check_final = |rc: &FetchResponse, ru: &FetchResponse, end: i64| {
        let p = &rc.responses[0].partitions[0];
        assert_eq!((p.high_watermark, p.last_stable_offset), (end, end));
        assert_eq!(aborted(rc), Some(vec![(bp, 3)]));
        assert_eq!(committed_values(rc), ["a0", "a1", "a2", "a3"]);
        let controls: Vec<(i64, i64)> = records(rc)
            .iter()
            .filter(|r| r.control)
            .map(|r| (r.offset, r.producer_id))
            .collect();
        assert_eq!(controls, vec![(6, a), (7, bp)]);
        assert_eq!(values(ru), ["a0", "a1", "a2", "b0", "b1", "a3"]);
        assert_eq!(aborted(ru), None);
    };
    let (rc, ru) = (
        fetch_from_zero(&mut c, 1).await,
        fetch_from_zero(&mut c, 0).await,
    );
    check_final(&rc, &ru, 8);
    // A read of the first batch alone (a 10-byte limit still returns one batch) lists only
    // the aborts overlapping it: none.
    let first_only = fetch(
        &mut c,
        &fetch_request(TOPIC, 0, 0, 0, 1, 10).with_isolation_level(1),
    )
    .await;
    assert_eq!(values(&first_only), ["a0", "a1", "a2"]);
    assert_eq!(aborted(&first_only), Some(vec![]));
    assert_eq!((latest(&mut c, 1).await, latest(&mut c, 0).await), (8, 8));
    let text = b.broker.render_metrics();
    for result in ["commit", "abort"] {
        let line = format!("strata_log_txn_markers_total{{result=\"{result}\",topic=\"txn\"}} 1");
        assert!(text.contains(&line), "{line} in {text}");
    }
    assert!(
        text.contains("strata_log_open_transactions{topic=\"txn\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("strata_log_last_stable_offset_lag{topic=\"txn\"} 0"),
        "{text}"
    );

    // Clients cannot write control batches; a producer inside a transaction cannot write
    // outside it.
    let marker = EndTransactionMarker {
        result: TransactionResult::Commit,
        coordinator_epoch: 7,
    };
    let forged = Bytes::from(build_marker_batch(a, ea, marker, now_ms()));
    assert_eq!(
        produce_txn(&mut c, forged, Some("ta")).await.0,
        ResponseError::InvalidRecord.code()
    );
    assert_eq!(
        produce_txn(&mut c, txn_batch(a, ea, 4, &["a4"]), Some("ta")).await,
        (0, 8)
    );
    let plain = Bytes::from(build_batch(
        0,
        now_ms(),
        Some((a, ea, 5)),
        &[(None, Some(&b"p"[..]))],
    ));
    assert_eq!(
        produce_txn(&mut c, plain, None).await.0,
        ResponseError::InvalidTxnState.code()
    );
    assert_eq!((latest(&mut c, 1).await, latest(&mut c, 0).await), (8, 9));
    // DescribeProducers shows where A's open transaction starts (B has none) and the
    // coordinator epoch of each one's last marker.
    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0]),
    ]);
    let resp = c.send(&req, 0).await.expect("describe producers");
    let mut starts: Vec<(i64, i64, i32)> = resp.topics[0].partitions[0]
        .active_producers
        .iter()
        .map(|p| {
            (
                p.producer_id.0,
                p.current_txn_start_offset,
                p.coordinator_epoch,
            )
        })
        .collect();
    starts.sort_unstable();
    let mut want = vec![(a, 8, 7), (bp, -1, 7)];
    want.sort_unstable();
    assert_eq!(starts, want);
    drop(c);

    // A restart keeps A's open transaction and B's abort.
    let dir = b.stop().await;
    let b = TestBroker::start_in(dir, &[UNVERIFIED]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let mut lso = 0;
    for _ in 0..100 {
        // The partition comes back once the broker has applied its metadata.
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(1)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]);
        let resp = c.send(&req, 5).await.expect("list offsets");
        let p = &resp.topics[0].partitions[0];
        if p.error_code == 0 && p.offset >= 0 {
            lso = p.offset;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(lso, 8);
    assert_eq!(latest(&mut c, 0).await, 9);
    let rc = fetch_from_zero(&mut c, 1).await;
    assert_eq!(aborted(&rc), Some(vec![(bp, 3)]));
    assert_eq!(committed_values(&rc), ["a0", "a1", "a2", "a3"]);
    // A marker from an older coordinator epoch is fenced, after the restart too, and writes
    // nothing.
    assert_eq!(
        end_txn_from(&mut c, a, ea, true, 6).await,
        vec![ResponseError::TransactionCoordinatorFenced.code(), not_here]
    );
    assert_eq!(latest(&mut c, 0).await, 9);
    // A aborts its second transaction (marker at 9): both aborts are listed.
    assert_eq!(end_txn(&mut c, a, ea, false).await, vec![0, not_here]);
    let rc = fetch_from_zero(&mut c, 1).await;
    assert_eq!(rc.responses[0].partitions[0].last_stable_offset, 10);
    assert_eq!(aborted(&rc), Some(vec![(bp, 3), (a, 8)]));
    assert_eq!(committed_values(&rc), ["a0", "a1", "a2", "a3"]);
    let ru = fetch_from_zero(&mut c, 0).await;
    assert_eq!(values(&ru), ["a0", "a1", "a2", "b0", "b1", "a3", "a4"]);
}

/// Transactions one after another through the wire: a transactional batch, then its marker
/// (commit and abort in turn), each marker answered after its fsync (the default flush
/// policy). Checks that read_committed sees exactly the committed half and lists every abort.
/// 20 transactions by default; `STRATA_SOAK=1` runs 2,000 and prints the time per
/// transaction (docs/BENCHMARKS.md, "Transaction markers").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_in_a_row_keep_read_committed_exact() {
    let n: i64 = if std::env::var("STRATA_SOAK").is_ok_and(|v| v == "1") {
        2_000
    } else {
        20
    };
    let b = TestBroker::start(&[UNVERIFIED]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    create_topic(&mut c, TOPIC, 1, &[]).await;
    let (pid, epoch) = init_producer(&mut c).await;
    let started = std::time::Instant::now();
    let mut marker_us: Vec<u128> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let v = format!("t{i}");
        assert_eq!(
            produce_txn(&mut c, txn_batch(pid, epoch, i as i32, &[&v]), Some("t")).await,
            (0, 2 * i)
        );
        let t = std::time::Instant::now();
        assert_eq!(
            end_txn(&mut c, pid, epoch, i % 2 == 0).await,
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        marker_us.push(t.elapsed().as_micros());
    }
    let elapsed = started.elapsed();
    assert_eq!(latest(&mut c, 1).await, 2 * n);
    // Read it all back read_committed, following the fetch across segments.
    let (mut offset, mut kept, mut aborts) = (0i64, Vec::new(), Vec::new());
    while offset < 2 * n {
        let req = fetch_request(TOPIC, 0, offset, 0, 1, 1 << 20).with_isolation_level(1);
        let resp = fetch(&mut c, &req).await;
        let got = records(&resp);
        offset = got.last().expect("records").offset + 1;
        aborts.extend(aborted(&resp).unwrap_or_default());
        kept.extend(committed_values(&resp));
    }
    aborts.sort_unstable();
    aborts.dedup();
    let want: Vec<String> = (0..n)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("t{i}"))
        .collect();
    assert_eq!(kept, want);
    let want_aborts: Vec<(i64, i64)> = (0..n)
        .filter(|i| i % 2 == 1)
        .map(|i| (pid, 2 * i))
        .collect();
    assert_eq!(aborts, want_aborts);
    marker_us.sort_unstable();
    let pct = |p: f64| marker_us[((marker_us.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    eprintln!(
        "{n} transactions in {:.2} s: {:.0} transactions/s; WriteTxnMarkers p50 {:.2} ms, p99 {:.2} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
}

/// Tiered storage: a transaction's data in one segment and its abort marker in the next, both
/// uploaded (with their `.txnindex`) and dropped from local disk. A read_committed fetch from
/// offset 0 is served from the bucket (local-files store) and lists the abort found in the
/// later segment's remote index, so the consumer skips the aborted records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_from_the_remote_log_skips_aborted_records() {
    let b = TestBroker::start(&[("remote.log.manager.task.interval.ms", "50"), UNVERIFIED]).await;
    let mut c = strata::admin::connect(&b.bootstrap())
        .await
        .expect("connect");
    let configs = [("local.retention.bytes", "0"), ("retention.ms", "-1")];
    create_topic(&mut c, TOPIC, 1, &configs).await;
    let (a, ea) = init_producer(&mut c).await;
    let (bp, eb) = init_producer(&mut c).await;
    let tp = strata::model::TopicPartition::new(TOPIC, 0);
    let log = b.broker.replicas.get(&tp).expect("partition").log().clone();
    assert_eq!(
        produce_txn(&mut c, txn_batch(a, ea, 0, &["a0", "a1"]), Some("ta")).await,
        (0, 0)
    );
    assert_eq!(
        produce_txn(&mut c, txn_batch(bp, eb, 0, &["b0"]), Some("tb")).await,
        (0, 2)
    );
    log.roll().expect("roll");
    assert_eq!(end_txn(&mut c, a, ea, false).await[0], 0); // 3
    assert_eq!(end_txn(&mut c, bp, eb, true).await[0], 0); // 4
    log.roll().expect("roll");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let uploaded = b.broker.remote.manifest(&tp).map(|m| {
            let with_index: Vec<(i64, bool)> = m
                .segments
                .iter()
                .map(|s| (s.base_offset, s.txn_index_bytes > 0))
                .collect();
            (m.end_offset(), with_index)
        });
        if uploaded == Some((Some(4), vec![(0, false), (3, true)]))
            && log.local_log_start_offset().0 == 5
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "segments not tiered: {uploaded:?}, local start {:?}",
            log.local_log_start_offset()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The local log no longer knows the abort: only the remote index can answer.
    assert!(log
        .collect_aborted_txns(strata::model::Offset(0), strata::model::Offset(5))
        .is_empty());
    let ru = fetch_from_zero(&mut c, 0).await;
    assert_eq!(values(&ru), ["a0", "a1", "b0"], "served from the bucket");
    let rc = fetch_from_zero(&mut c, 1).await;
    assert_eq!(rc.responses[0].partitions[0].last_stable_offset, 5);
    assert_eq!(aborted(&rc), Some(vec![(a, 0)]));
    assert_eq!(committed_values(&rc), ["b0"]);
    drop(c);
    b.stop().await;
}
