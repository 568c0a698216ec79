//! The transactional APIs at every version: a transactional producer's InitProducerId, then
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, and the coordinator's DescribeTransactions and
//! ListTransactions, each answer checked.

use std::time::Duration;

use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::*;
use strata::client::KafkaClient;
use strata::protocol::{str_bytes, topic_name};

use super::{send, TOPIC};

fn tid(v: &str) -> TransactionalId {
    TransactionalId(str_bytes(v))
}

/// InitProducerId for `id`, waiting out the creation and load of `__transaction_state`.
pub(super) async fn init(c: &mut KafkaClient, id: &str) -> (ProducerId, i16) {
    let find = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_key(str_bytes(id));
    let mut last = None;
    for _ in 0..200 {
        let found = send(c, &find, 3).await;
        if found.error_code == 0 {
            let resp = send(
                c,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(tid(id)))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await;
            if resp.error_code == 0 {
                return (resp.producer_id, resp.producer_epoch);
            }
            last = Some(resp.error_code);
        } else {
            last = Some(found.error_code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("InitProducerId for {id}: last error {last:?}");
}

fn topics(partitions: &[i32]) -> Vec<add_partitions_to_txn_request::AddPartitionsToTxnTopic> {
    vec![
        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(partitions.to_vec()),
    ]
}

async fn add(c: &mut KafkaClient, id: &str, pid: ProducerId, epoch: i16) {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid(id))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(topics(&[0]));
    let resp = send(c, &req, 3).await;
    assert_eq!(
        resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
}

/// Exercises `key` at `v` if it is a transactional API; false otherwise.
pub(super) async fn exercise(c: &mut KafkaClient, key: ApiKey, v: i16) -> bool {
    match key {
        ApiKey::AddPartitionsToTxn if v <= 3 => {
            let id = format!("apt-v{v}");
            let (pid, epoch) = init(c, &id).await;
            let req = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid(&id))
                .with_v3_and_below_producer_id(pid)
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(topics(&[0]));
            let resp = send(c, &req, v).await;
            let t = &resp.results_by_topic_v3_and_below[0];
            assert_eq!(t.name, topic_name(TOPIC), "AddPartitionsToTxn v{v}");
            assert_eq!(
                t.results_by_partition[0].partition_error_code, 0,
                "AddPartitionsToTxn v{v}"
            );
            // A partition the topic lacks fails the request; the good one is not attempted.
            let resp = send(c, &req.clone().with_v3_and_below_topics(topics(&[0, 9])), v).await;
            let codes: Vec<(i32, i16)> = resp.results_by_topic_v3_and_below[0]
                .results_by_partition
                .iter()
                .map(|p| (p.partition_index, p.partition_error_code))
                .collect();
            assert_eq!(
                codes,
                vec![
                    (0, E::OperationNotAttempted.code()),
                    (9, E::UnknownTopicOrPartition.code())
                ],
                "AddPartitionsToTxn v{v}"
            );
            // A stale epoch is fenced (INVALID_PRODUCER_EPOCH before v2).
            let resp = send(c, &req.with_v3_and_below_producer_epoch(epoch + 7), v).await;
            let fenced = if v >= 2 {
                E::ProducerFenced
            } else {
                E::InvalidProducerEpoch
            };
            assert_eq!(
                resp.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
                fenced.code(),
                "AddPartitionsToTxn v{v}"
            );
        }
        ApiKey::AddPartitionsToTxn => {
            // A partition leader's verification (KIP-890): one transaction that includes the
            // partition, one that does not.
            let inside = format!("apt-v{v}-in");
            let outside = format!("apt-v{v}-out");
            let (pid_in, epoch_in) = init(c, &inside).await;
            add(c, &inside, pid_in, epoch_in).await;
            let (pid_out, epoch_out) = init(c, &outside).await;
            let txn = |id: &str, pid, epoch| {
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(tid(id))
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_verify_only(true)
                    .with_topics(topics(&[0]))
            };
            let req = AddPartitionsToTxnRequest::default().with_transactions(vec![
                txn(&inside, pid_in, epoch_in),
                txn(&outside, pid_out, epoch_out),
            ]);
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "AddPartitionsToTxn v{v}");
            let code = |i: usize| {
                resp.results_by_transaction[i].topic_results[0].results_by_partition[0]
                    .partition_error_code
            };
            let not_in = if v >= 5 {
                E::TransactionAbortable
            } else {
                E::InvalidTxnState
            };
            assert_eq!(
                (code(0), code(1)),
                (0, not_in.code()),
                "AddPartitionsToTxn v{v}: {resp:?}"
            );
            assert_eq!(
                resp.results_by_transaction[1].transactional_id,
                tid(&outside)
            );
        }
        ApiKey::AddOffsetsToTxn => {
            let id = format!("aot-v{v}");
            let (pid, epoch) = init(c, &id).await;
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid(&id))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(str_bytes("txn-group")));
            let mut resp = send(c, &req, v).await;
            // The first use creates and loads __consumer_offsets' coordinator.
            for _ in 0..100 {
                if resp.error_code == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                resp = send(c, &req, v).await;
            }
            assert_eq!(resp.error_code, 0, "AddOffsetsToTxn v{v}");
            let resp = send(c, &req.with_producer_id(ProducerId(pid.0 + 1)), v).await;
            assert_eq!(
                resp.error_code,
                E::InvalidProducerIdMapping.code(),
                "AddOffsetsToTxn v{v}"
            );
        }
        ApiKey::EndTxn => {
            let id = format!("end-v{v}");
            let (pid, epoch) = init(c, &id).await;
            let end = |commit| {
                EndTxnRequest::default()
                    .with_transactional_id(tid(&id))
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_committed(commit)
            };
            // Nothing to end yet.
            let resp = send(c, &end(true), v).await;
            assert_eq!(resp.error_code, E::InvalidTxnState.code(), "EndTxn v{v}");
            add(c, &id, pid, epoch).await;
            let resp = send(c, &end(true), v).await;
            assert_eq!(resp.error_code, 0, "EndTxn v{v}");
            if v >= 5 {
                // Transaction version 2: the epoch is bumped at the end and answered.
                assert_eq!((resp.producer_id, resp.producer_epoch), (pid, epoch + 1));
            } else {
                // Committing: an abort now is refused.
                let resp = send(c, &end(false), v).await;
                assert_eq!(resp.error_code, E::InvalidTxnState.code(), "EndTxn v{v}");
            }
        }
        ApiKey::DescribeTransactions => {
            let id = format!("dt-v{v}");
            let (pid, epoch) = init(c, &id).await;
            add(c, &id, pid, epoch).await;
            let req = DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![tid(&id), tid("dt-unknown")]);
            let resp = send(c, &req, v).await;
            let s = &resp.transaction_states[0];
            assert_eq!(s.error_code, 0, "DescribeTransactions v{v}");
            assert_eq!(s.transaction_state.as_str(), "Ongoing");
            assert_eq!((s.producer_id, s.producer_epoch), (pid, epoch));
            assert_eq!(s.transaction_timeout_ms, 60_000);
            assert!(s.transaction_start_time_ms > 0);
            assert_eq!(s.topics.len(), 1);
            assert_eq!(
                (s.topics[0].topic.clone(), s.topics[0].partitions.clone()),
                (topic_name(TOPIC), vec![0])
            );
            assert_eq!(
                resp.transaction_states[1].error_code,
                E::TransactionalIdNotFound.code(),
                "DescribeTransactions v{v}"
            );
        }
        ApiKey::ListTransactions => {
            let id = format!("lt-v{v}");
            let (pid, epoch) = init(c, &id).await;
            add(c, &id, pid, epoch).await;
            let req = ListTransactionsRequest::default()
                .with_state_filters(vec![str_bytes("Ongoing"), str_bytes("Bogus")])
                .with_duration_filter(-1);
            let req = if v >= 2 {
                req.with_transactional_id_pattern(Some(str_bytes("^lt-v2$")))
            } else {
                req
            };
            let resp = send(c, &req, v).await;
            assert_eq!(resp.error_code, 0, "ListTransactions v{v}");
            assert_eq!(resp.unknown_state_filters, vec![str_bytes("Bogus")]);
            let listed: Vec<String> = resp
                .transaction_states
                .iter()
                .map(|s| s.transactional_id.to_string())
                .collect();
            assert!(listed.contains(&id), "ListTransactions v{v}: {listed:?}");
            if v >= 2 {
                assert_eq!(listed, vec![id.clone()], "ListTransactions v{v}");
            }
            let mine = resp
                .transaction_states
                .iter()
                .find(|s| s.transactional_id.as_str() == id)
                .expect("listed");
            assert_eq!(
                (mine.producer_id, mine.transaction_state.as_str()),
                (pid, "Ongoing")
            );
        }
        ApiKey::TxnOffsetCommit => {
            let id = format!("toc-v{v}");
            let group = format!("toc-group-v{v}");
            let (pid, epoch) = init(c, &id).await;
            let add_offsets = AddOffsetsToTxnRequest::default()
                .with_transactional_id(tid(&id))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(str_bytes(&group)));
            let partition = |p: i32, offset: i64| {
                txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
            };
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(tid(&id))
                .with_group_id(GroupId(str_bytes(&group)))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name(TOPIC))
                        .with_partitions(vec![partition(0, 5), partition(3, 1)]),
                ]);
            let mut codes = Vec::new();
            for _ in 0..100 {
                assert_eq!(
                    send(c, &add_offsets, 3).await.error_code,
                    0,
                    "AddOffsetsToTxn"
                );
                let resp = send(c, &req, v).await;
                codes = resp.topics[0]
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code))
                    .collect::<Vec<_>>();
                codes.sort();
                if codes[0].1 != E::CoordinatorLoadInProgress.code() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                codes,
                vec![(0, 0), (3, E::UnknownTopicOrPartition.code())],
                "TxnOffsetCommit v{v}"
            );
            // Pending until the transaction's marker: not visible to OffsetFetch yet.
            let fetched = send(
                c,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ])),
                7,
            )
            .await;
            assert_eq!(
                fetched.topics[0].partitions[0].committed_offset, -1,
                "TxnOffsetCommit v{v}"
            );
            assert_eq!(fetched.topics[0].partitions[0].error_code, 0);
            // A read_committed consumer asking for stable offsets is told to retry (KIP-447).
            let stable = send(
                c,
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_require_stable(true)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ])),
                7,
            )
            .await;
            assert_eq!(
                stable.topics[0].partitions[0].error_code,
                E::UnstableOffsetCommit.code(),
                "TxnOffsetCommit v{v}"
            );
        }
        _ => return false,
    }
    true
}
