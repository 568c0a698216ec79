use super::*;

const T0: i64 = 1_000_000;

fn shard() -> TxnShard {
    TxnShard::new(TxnConfig {
        max_timeout_ms: 60_000,
        id_expiration_ms: 3_600_000,
    })
}

fn init(s: &mut TxnShard, id: &str, fresh: i64, now: i64) -> Decision {
    s.handle(
        1,
        TxnRequest::InitProducerId {
            transactional_id: id.into(),
            timeout_ms: 10_000,
            producer_id: -1,
            producer_epoch: -1,
            fresh_producer_id: fresh,
        },
        now,
    )
}

fn add(
    s: &mut TxnShard,
    id: &str,
    pid: i64,
    epoch: i16,
    parts: &[(&str, i32)],
    now: i64,
) -> Decision {
    s.handle(
        2,
        TxnRequest::AddPartitions {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            partitions: parts
                .iter()
                .map(|(t, p)| TopicPartition::new(*t, *p))
                .collect(),
            verify_only: false,
            client_version: 0,
        },
        now,
    )
}

fn end(s: &mut TxnShard, id: &str, pid: i64, epoch: i16, commit: bool, now: i64) -> Decision {
    s.handle(
        3,
        TxnRequest::EndTxn {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
            commit,
            bump_epoch: false,
            fresh_producer_id: -1,
        },
        now,
    )
}

fn markers_written(s: &mut TxnShard, id: &str, pid: i64, epoch: i16, now: i64) -> Decision {
    s.handle(
        4,
        TxnRequest::MarkersWritten {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: epoch,
        },
        now,
    )
}

fn state(s: &TxnShard, id: &str) -> TxnState {
    s.txns[id].state
}

#[test]
fn a_new_id_gets_the_fresh_producer_id_at_epoch_zero() {
    let mut s = shard();
    let d = init(&mut s, "t", 500, T0);
    assert_eq!(
        d.replies,
        vec![(1, TxnResponse::InitProducerId(Ok((500, 0))))]
    );
    assert_eq!(d.records.len(), 1);
    assert_eq!(d.records[0].value.as_ref().unwrap().state, TxnState::Empty);
    // Initialising again bumps the epoch and keeps the id; the fresh one is not used.
    let d = init(&mut s, "t", 501, T0 + 1);
    assert_eq!(
        d.replies,
        vec![(1, TxnResponse::InitProducerId(Ok((500, 1))))]
    );
}

#[test]
fn a_timeout_above_the_maximum_is_refused() {
    let mut s = shard();
    let d = s.handle(
        1,
        TxnRequest::InitProducerId {
            transactional_id: "t".into(),
            timeout_ms: 60_001,
            producer_id: -1,
            producer_epoch: -1,
            fresh_producer_id: 1,
        },
        T0,
    );
    assert_eq!(
        d.replies,
        vec![(
            1,
            TxnResponse::InitProducerId(Err(TxnError::InvalidTransactionTimeout))
        )]
    );
    assert!(d.records.is_empty());
    assert!(s.txns.is_empty());
}

#[test]
fn commit_writes_prepare_then_markers_then_complete() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    let d = add(&mut s, "t", 7, 0, &[("a", 0), ("b", 1)], T0 + 10);
    assert_eq!(d.replies, vec![(2, TxnResponse::AddPartitions(Ok(())))]);
    assert_eq!(state(&s, "t"), TxnState::Ongoing);
    assert_eq!(s.txns["t"].start_ms, T0 + 10);
    // Adding partitions already in the transaction writes nothing.
    assert!(add(&mut s, "t", 7, 0, &[("a", 0)], T0 + 11)
        .records
        .is_empty());
    let d = end(&mut s, "t", 7, 0, true, T0 + 20);
    assert_eq!(d.replies, vec![(3, TxnResponse::EndTxn(Ok((7, 0))))]);
    assert_eq!(
        d.records[0].value.as_ref().unwrap().state,
        TxnState::PrepareCommit
    );
    assert_eq!(
        d.markers,
        vec![MarkerJob {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: 0,
            commit: true,
            partitions: vec![TopicPartition::new("a", 0), TopicPartition::new("b", 1)],
        }]
    );
    // While markers are in flight, an EndTxn is told to retry (an AddPartitionsToTxn is held:
    // see an_add_during_markers_waits_for_the_previous_transaction).
    assert_eq!(
        end(&mut s, "t", 7, 0, true, T0 + 21).replies,
        vec![(
            3,
            TxnResponse::EndTxn(Err(TxnError::ConcurrentTransactions))
        )]
    );
    let d = markers_written(&mut s, "t", 7, 0, T0 + 30);
    assert_eq!(d.committed, 1);
    let v = d.records[0].value.as_ref().unwrap();
    assert_eq!(v.state, TxnState::CompleteCommit);
    assert!(v.partitions.is_empty());
    // A retried commit succeeds; an abort of a committed transaction is refused.
    assert_eq!(
        end(&mut s, "t", 7, 0, true, T0 + 31).replies,
        vec![(3, TxnResponse::EndTxn(Ok((7, 0))))]
    );
    assert_eq!(
        end(&mut s, "t", 7, 0, false, T0 + 31).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::InvalidTxnState)))]
    );
    // The next transaction starts from Complete with a new start time.
    add(&mut s, "t", 7, 0, &[("c", 0)], T0 + 40);
    assert_eq!(s.txns["t"].partitions.len(), 1);
    assert_eq!(s.txns["t"].start_ms, T0 + 40);
}

#[test]
fn ending_an_empty_transaction_is_an_invalid_state() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    assert_eq!(
        end(&mut s, "t", 7, 0, true, T0).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::InvalidTxnState)))]
    );
}

#[test]
fn a_second_producer_fences_the_first_and_aborts_its_transaction() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0 + 1);
    // The new producer's InitProducerId: the open transaction is aborted with epoch 1.
    let d = init(&mut s, "t", 8, T0 + 2);
    assert_eq!(
        d.replies,
        vec![(
            1,
            TxnResponse::InitProducerId(Err(TxnError::ConcurrentTransactions))
        )]
    );
    assert_eq!(
        d.records[0].value.as_ref().unwrap().state,
        TxnState::PrepareAbort
    );
    assert_eq!(d.markers.len(), 1);
    assert!(!d.markers[0].commit);
    assert_eq!(d.markers[0].producer_epoch, 1);
    // The old producer is fenced from here on.
    assert_eq!(
        add(&mut s, "t", 7, 0, &[("b", 0)], T0 + 3).replies,
        vec![(2, TxnResponse::AddPartitions(Err(TxnError::ProducerFenced)))]
    );
    assert_eq!(
        end(&mut s, "t", 7, 0, true, T0 + 3).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::ProducerFenced)))]
    );
    // The retry waits until the abort is complete, then gets epoch 2.
    assert_eq!(
        init(&mut s, "t", 9, T0 + 4).replies,
        vec![(
            1,
            TxnResponse::InitProducerId(Err(TxnError::ConcurrentTransactions))
        )]
    );
    let d = markers_written(&mut s, "t", 7, 1, T0 + 5);
    assert_eq!(d.aborted, 1);
    assert_eq!(state(&s, "t"), TxnState::CompleteAbort);
    assert_eq!(
        init(&mut s, "t", 9, T0 + 6).replies,
        vec![(1, TxnResponse::InitProducerId(Ok((7, 2))))]
    );
    assert_eq!(
        end(&mut s, "t", 7, 1, false, T0 + 7).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::ProducerFenced)))]
    );
}

#[test]
fn kip_360_bumps_only_the_current_epoch_and_recognises_a_retry() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    let bump = |s: &mut TxnShard, epoch| {
        s.handle(
            1,
            TxnRequest::InitProducerId {
                transactional_id: "t".into(),
                timeout_ms: 1000,
                producer_id: 7,
                producer_epoch: epoch,
                fresh_producer_id: 99,
            },
            T0,
        )
        .replies
    };
    assert_eq!(
        bump(&mut s, 0),
        vec![(1, TxnResponse::InitProducerId(Ok((7, 1))))]
    );
    assert_eq!(
        bump(&mut s, 0),
        vec![(1, TxnResponse::InitProducerId(Ok((7, 1))))]
    );
    assert_eq!(
        bump(&mut s, 5),
        vec![(
            1,
            TxnResponse::InitProducerId(Err(TxnError::ProducerFenced))
        )]
    );
}

#[test]
fn an_exhausted_epoch_takes_the_fresh_producer_id() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    s.txns.get_mut("t").unwrap().producer_epoch = i16::MAX - 1;
    assert_eq!(
        init(&mut s, "t", 42, T0).replies,
        vec![(1, TxnResponse::InitProducerId(Ok((42, 0))))]
    );
}

#[test]
fn a_wrong_producer_id_is_an_invalid_mapping() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    assert_eq!(
        add(&mut s, "t", 8, 0, &[("a", 0)], T0).replies,
        vec![(
            2,
            TxnResponse::AddPartitions(Err(TxnError::InvalidProducerIdMapping))
        )]
    );
    assert_eq!(
        add(&mut s, "unknown", 7, 0, &[("a", 0)], T0).replies,
        vec![(
            2,
            TxnResponse::AddPartitions(Err(TxnError::InvalidProducerIdMapping))
        )]
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0);
    assert_eq!(s.next_deadline_ms(), Some(T0 + 10_001));
    assert!(s.tick(T0 + 10_000).records.is_empty());
    let d = s.tick(T0 + 10_001);
    assert_eq!(d.timed_out, 1);
    assert_eq!(d.markers[0].producer_epoch, 1);
    assert_eq!(state(&s, "t"), TxnState::PrepareAbort);
    assert_eq!(
        end(&mut s, "t", 7, 0, true, T0 + 10_002).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::ProducerFenced)))]
    );
    let d = markers_written(&mut s, "t", 7, 1, T0 + 10_003);
    assert_eq!(d.aborted, 1);
}

#[test]
fn idle_ids_expire_with_a_tombstone() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    assert!(s.tick(T0 + 3_600_000).records.is_empty());
    let d = s.tick(T0 + 3_600_001);
    assert_eq!(
        d.records,
        vec![TxnLogRecord {
            transactional_id: "t".into(),
            value: None
        }]
    );
    assert!(s.txns.is_empty());
}

#[test]
fn a_load_resends_the_markers_of_prepared_transactions() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    init(&mut s, "u", 8, T0);
    let mut log: Vec<TxnLogRecord> = Vec::new();
    log.extend(add(&mut s, "t", 7, 0, &[("a", 0)], T0).records);
    log.extend(end(&mut s, "t", 7, 0, false, T0).records);
    log.extend(add(&mut s, "u", 8, 0, &[("b", 3)], T0).records);
    // A new leader replays the log: "t" is prepared, "u" still open.
    let mut loaded = shard();
    for r in log {
        loaded.replay(r);
    }
    let d = loaded.recover();
    assert_eq!(d.markers.len(), 1);
    assert_eq!(d.markers[0].partitions, vec![TopicPartition::new("a", 0)]);
    assert!(!d.markers[0].commit);
    assert_eq!(state(&loaded, "u"), TxnState::Ongoing);
    assert_eq!(loaded.open_summary(), (2, Some(T0)));
    markers_written(&mut loaded, "t", 7, 0, T0 + 1);
    assert_eq!(state(&loaded, "t"), TxnState::CompleteAbort);
    // The open one still times out after the failover.
    assert_eq!(loaded.tick(T0 + 10_001).timed_out, 1);
}

#[test]
fn verification_reports_membership_without_changing_anything() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0);
    let d = s.handle(
        5,
        TxnRequest::AddPartitions {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: 0,
            partitions: vec![TopicPartition::new("a", 0), TopicPartition::new("a", 1)],
            verify_only: true,
            client_version: 0,
        },
        T0,
    );
    assert!(d.records.is_empty());
    assert_eq!(
        d.replies,
        vec![(
            5,
            TxnResponse::Verify(Ok(vec![
                (TopicPartition::new("a", 0), true),
                (TopicPartition::new("a", 1), false)
            ]))
        )]
    );
}

#[test]
fn verification_while_the_transaction_ends_is_retriable_and_after_it_outside() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0);
    let verify = |s: &mut TxnShard| {
        let request = TxnRequest::AddPartitions {
            transactional_id: "t".into(),
            producer_id: 7,
            producer_epoch: 0,
            partitions: vec![TopicPartition::new("a", 0)],
            verify_only: true,
            client_version: 0,
        };
        s.handle(5, request, T0).replies
    };
    end(&mut s, "t", 7, 0, false, T0);
    // PrepareAbort: Kafka answers CONCURRENT_TRANSACTIONS, which the leader retries.
    assert_eq!(
        verify(&mut s),
        vec![(
            5,
            TxnResponse::Verify(Err(TxnError::ConcurrentTransactions))
        )]
    );
    markers_written(&mut s, "t", 7, 0, T0);
    // CompleteAbort: a late batch of the aborted transaction is outside any transaction.
    assert_eq!(
        verify(&mut s),
        vec![(
            5,
            TxnResponse::Verify(Ok(vec![(TopicPartition::new("a", 0), false)]))
        )]
    );
}

#[test]
fn list_filters_by_state_producer_duration_and_pattern() {
    let mut s = shard();
    init(&mut s, "app-1", 7, T0);
    init(&mut s, "other", 8, T0);
    add(&mut s, "app-1", 7, 0, &[("a", 0)], T0);
    let list =
        |s: &mut TxnShard, states: Vec<&str>, pids: Vec<i64>, dur: i64, pat: Option<&str>| match s
            .handle(
                6,
                TxnRequest::List {
                    states: states.into_iter().map(String::from).collect(),
                    producer_ids: pids,
                    min_duration_ms: dur,
                    pattern: pat.map(|p| regex::Regex::new(p).unwrap()),
                },
                T0 + 5000,
            )
            .replies
            .remove(0)
            .1
        {
            TxnResponse::List(l) => l
                .into_iter()
                .map(|m| m.transactional_id)
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
    assert_eq!(
        list(&mut s, vec![], vec![], -1, None),
        vec!["app-1", "other"]
    );
    assert_eq!(
        list(&mut s, vec!["Ongoing"], vec![], -1, None),
        vec!["app-1"]
    );
    assert_eq!(list(&mut s, vec![], vec![8], -1, None), vec!["other"]);
    // Kafka's duration filter compares the start of the current or last transaction in every
    // state; "other" has had none since InitProducerId (start -1), which always passes.
    assert_eq!(
        list(&mut s, vec![], vec![], 4000, None),
        vec!["app-1", "other"]
    );
    assert_eq!(list(&mut s, vec![], vec![], 6000, None), vec!["other"]);
    // A completed transaction is listed by when it started, as an open one.
    end(&mut s, "app-1", 7, 0, true, T0 + 100);
    markers_written(&mut s, "app-1", 7, 0, T0 + 200);
    assert_eq!(state(&s, "app-1"), TxnState::CompleteCommit);
    assert_eq!(
        list(&mut s, vec!["CompleteCommit"], vec![], 4000, None),
        vec!["app-1"]
    );
    assert!(list(&mut s, vec!["CompleteCommit"], vec![], 6000, None).is_empty());
    assert_eq!(
        list(&mut s, vec![], vec![], -1, Some("^oth")),
        vec!["other"]
    );
}

#[test]
fn an_add_during_markers_waits_for_the_previous_transaction() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0 + 1);
    end(&mut s, "t", 7, 0, true, T0 + 2);
    assert_eq!(state(&s, "t"), TxnState::PrepareCommit);
    // The next transaction's first AddPartitionsToTxn arrives before the markers are written:
    // no answer yet, nothing written, and the tick wakes at its deadline.
    let held = add(&mut s, "t", 7, 0, &[("b", 1)], T0 + 3);
    assert!(
        held.replies.is_empty() && held.records.is_empty(),
        "{held:?}"
    );
    assert_eq!(s.next_deadline_ms(), Some(T0 + 3 + 1_000));
    // The markers complete: CompleteCommit, then the held request starts the next transaction.
    let d = markers_written(&mut s, "t", 7, 0, T0 + 10);
    assert_eq!(d.committed, 1);
    let states: Vec<TxnState> = d
        .records
        .iter()
        .map(|r| r.value.as_ref().unwrap().state)
        .collect();
    assert_eq!(states, vec![TxnState::CompleteCommit, TxnState::Ongoing]);
    assert_eq!(
        d.replies,
        vec![
            (2, TxnResponse::AddPartitions(Ok(()))),
            (4, TxnResponse::Done)
        ]
    );
    assert_eq!(state(&s, "t"), TxnState::Ongoing);
    assert_eq!(
        s.txns["t"].partitions.iter().cloned().collect::<Vec<_>>(),
        vec![TopicPartition::new("b", 1)]
    );
    assert_eq!(s.txns["t"].start_ms, T0 + 10);
}

#[test]
fn a_held_add_is_told_to_retry_at_its_deadline_and_a_fenced_one_is_fenced() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    add(&mut s, "t", 7, 0, &[("a", 0)], T0 + 1);
    end(&mut s, "t", 7, 0, false, T0 + 2);
    assert!(add(&mut s, "t", 7, 0, &[("b", 1)], T0 + 3)
        .replies
        .is_empty());
    // Markers slower than the hold: the producer is told to retry, as Kafka would at once.
    let d = s.tick(T0 + 3 + 1_000);
    assert_eq!(
        d.replies,
        vec![(
            2,
            TxnResponse::AddPartitions(Err(TxnError::ConcurrentTransactions))
        )]
    );
    // Nothing is held any more (and a prepared transaction has no deadline of its own).
    assert_eq!(s.next_deadline_ms(), None);
    // A request of an older epoch is refused at once, held or not.
    assert_eq!(
        add(&mut s, "t", 7, -1, &[("b", 1)], T0 + 4).replies,
        vec![(2, TxnResponse::AddPartitions(Err(TxnError::ProducerFenced)))]
    );
    let d = markers_written(&mut s, "t", 7, 0, T0 + 5);
    assert_eq!(d.aborted, 1);
    assert_eq!(d.replies, vec![(4, TxnResponse::Done)]);
    assert_eq!(state(&s, "t"), TxnState::CompleteAbort);
}

/// EndTxn v5 as a transaction version 2 producer sends it.
fn end_v2(s: &mut TxnShard, id: &str, pid: i64, epoch: i16, commit: bool, fresh: i64) -> Decision {
    let request = TxnRequest::EndTxn {
        transactional_id: id.into(),
        producer_id: pid,
        producer_epoch: epoch,
        commit,
        bump_epoch: true,
        fresh_producer_id: fresh,
    };
    s.handle(3, request, T0)
}

/// A partition leader adding a partition for a transaction version 2 producer.
fn leader_add(s: &mut TxnShard, id: &str, pid: i64, epoch: i16, partition: i32) -> Decision {
    let request = TxnRequest::AddPartitions {
        transactional_id: id.into(),
        producer_id: pid,
        producer_epoch: epoch,
        partitions: vec![TopicPartition::new("a", partition)],
        verify_only: false,
        client_version: TV2,
    };
    s.handle(2, request, T0)
}

#[test]
fn transaction_version_2_runs_transactions_on_successive_epochs() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    // The leader adds the partition; no AddPartitionsToTxn from the producer.
    let d = leader_add(&mut s, "t", 7, 0, 0);
    assert_eq!(d.replies, vec![(2, TxnResponse::AddPartitions(Ok(())))]);
    assert_eq!(s.txns["t"].client_version, TV2);
    let d = end_v2(&mut s, "t", 7, 0, true, -1);
    assert_eq!(d.replies, vec![(3, TxnResponse::EndTxn(Ok((7, 1))))]);
    assert_eq!(
        d.markers[0].producer_epoch, 1,
        "markers carry the bumped epoch"
    );
    // The record says which version ended it, so a reload keeps it.
    assert_eq!(d.records[0].value.as_ref().unwrap().client_version, TV2);
    // The next transaction at the new epoch waits for the markers, then starts.
    assert!(leader_add(&mut s, "t", 7, 1, 1).replies.is_empty());
    let d = markers_written(&mut s, "t", 7, 1, T0);
    assert_eq!(d.replies[0], (2, TxnResponse::AddPartitions(Ok(()))));
    assert_eq!(state(&s, "t"), TxnState::Ongoing);
    // The old epoch is fenced now that a transaction runs at the new one.
    assert_eq!(
        end_v2(&mut s, "t", 7, 0, true, -1).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::ProducerFenced)))]
    );
    let d = end_v2(&mut s, "t", 7, 1, false, -1);
    assert_eq!(d.replies, vec![(3, TxnResponse::EndTxn(Ok((7, 2))))]);
    assert_eq!(d.markers[0].partitions, vec![TopicPartition::new("a", 1)]);
}

#[test]
fn a_retried_v2_end_gets_the_same_answer_and_a_mismatched_one_is_refused() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    leader_add(&mut s, "t", 7, 0, 0);
    end_v2(&mut s, "t", 7, 0, true, -1);
    // While the markers are written: the retry is told to wait.
    assert_eq!(
        end_v2(&mut s, "t", 7, 0, true, -1).replies,
        vec![(
            3,
            TxnResponse::EndTxn(Err(TxnError::ConcurrentTransactions))
        )]
    );
    markers_written(&mut s, "t", 7, 1, T0);
    let retry = end_v2(&mut s, "t", 7, 0, true, -1);
    assert!(retry.records.is_empty());
    assert_eq!(retry.replies, vec![(3, TxnResponse::EndTxn(Ok((7, 1))))]);
    // An abort retried as a commit, and a commit with nothing open, are invalid.
    assert_eq!(
        end_v2(&mut s, "t", 7, 0, false, -1).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::InvalidTxnState)))]
    );
    assert_eq!(
        end_v2(&mut s, "t", 7, 1, true, -1).replies,
        vec![(3, TxnResponse::EndTxn(Err(TxnError::InvalidTxnState)))]
    );
}

#[test]
fn a_v2_abort_with_nothing_added_bumps_the_epoch_and_completes_at_once() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    let d = end_v2(&mut s, "t", 7, 0, false, -1);
    assert_eq!(d.replies, vec![(3, TxnResponse::EndTxn(Ok((7, 1))))]);
    assert!(d.markers.is_empty());
    let states: Vec<TxnState> = d
        .records
        .iter()
        .map(|r| r.value.as_ref().unwrap().state)
        .collect();
    assert_eq!(
        states,
        vec![TxnState::PrepareAbort, TxnState::CompleteAbort]
    );
    assert_eq!(d.aborted, 1);
    assert_eq!(state(&s, "t"), TxnState::CompleteAbort);
}

#[test]
fn the_last_v2_epoch_moves_the_producer_to_a_new_id_after_the_markers() {
    let mut s = shard();
    init(&mut s, "t", 7, T0);
    s.txns.get_mut("t").unwrap().producer_epoch = i16::MAX - 1;
    leader_add(&mut s, "t", 7, i16::MAX - 1, 0);
    // Without a fresh id the producer is told to retry; the handler takes one next time.
    assert_eq!(
        end_v2(&mut s, "t", 7, i16::MAX - 1, true, -1).replies,
        vec![(
            3,
            TxnResponse::EndTxn(Err(TxnError::ConcurrentTransactions))
        )]
    );
    let d = end_v2(&mut s, "t", 7, i16::MAX - 1, true, 8);
    assert_eq!(d.replies, vec![(3, TxnResponse::EndTxn(Ok((8, 0))))]);
    // The markers fence the old id with its last epoch.
    assert_eq!(
        (d.markers[0].producer_id, d.markers[0].producer_epoch),
        (7, i16::MAX)
    );
    assert_eq!(d.records[0].value.as_ref().unwrap().next_producer_id, 8);
    // A reload in between keeps the pending move.
    let mut loaded = shard();
    for r in d.records.clone() {
        loaded.replay(r);
    }
    for s in [&mut s, &mut loaded] {
        let done = markers_written(s, "t", 7, i16::MAX, T0);
        let m = &s.txns["t"];
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.previous_producer_id),
            (8, 0, 7)
        );
        assert_eq!(m.state, TxnState::CompleteCommit);
        assert_eq!(done.records.len(), 1);
        // A retry from before the move gets the new id, and the new id runs on.
        assert_eq!(
            end_v2(s, "t", 7, i16::MAX - 1, true, -1).replies,
            vec![(3, TxnResponse::EndTxn(Ok((8, 0))))]
        );
        assert_eq!(
            leader_add(s, "t", 8, 0, 1).replies,
            vec![(2, TxnResponse::AddPartitions(Ok(())))]
        );
    }
}
