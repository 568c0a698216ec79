//! The session cache as a pure state machine: which requests open, continue or fail a session,
//! what an incremental response carries, and which session is evicted for which.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;

use super::*;
use crate::model::{LeaderEpoch, Offset};

fn key(topic: &str, p: i32) -> FetchKey {
    FetchKey {
        topic: TopicRef::Name(topic.into()),
        partition: PartitionIndex(p),
    }
}

fn at(offset: i64) -> PartitionFetch {
    PartitionFetch {
        fetch_offset: Offset(offset),
        log_start_offset: Offset(-1),
        max_bytes: 1 << 20,
        current_leader_epoch: LeaderEpoch(0),
        last_fetched_epoch: LeaderEpoch(-1),
    }
}

/// A partition's read: `records` bytes of records, the high watermark (also the LSO).
fn data(hw: i64, records: usize) -> PartitionData {
    PartitionData::default()
        .with_high_watermark(hw)
        .with_last_stable_offset(hw)
        .with_log_start_offset(0)
        .with_records(Some(Bytes::from(vec![0u8; records])))
}

fn meta(session_id: i32, epoch: i32) -> FetchMetadata {
    FetchMetadata { session_id, epoch }
}

const CONFIG: FetchSessionCacheConfig = FetchSessionCacheConfig {
    max_slots: 2,
    eviction_ms: 1000,
};

/// Opens a session of `partitions` (t0..) with a full request at `now`; returns its id (0: none).
fn open(s: &mut Sessions, privileged: bool, partitions: usize, now: u64) -> i32 {
    let fetch: Vec<_> = (0..partitions)
        .map(|p| (key("t", p as i32), at(0)))
        .collect();
    let ctx = s.new_context(FetchMetadata::INITIAL, privileged, false, &fetch, &[], now);
    assert!(matches!(ctx, FetchContext::Full { .. }), "{ctx:?}");
    let answers: Vec<_> = fetch.iter().map(|_| data(10, 0)).collect();
    let read: Vec<_> = fetch
        .iter()
        .zip(&answers)
        .map(|((k, f), d)| (k, f, d))
        .collect();
    s.select(&ctx, &read, true, now).session_id
}

/// Continues session `id` at `epoch` with no changes at `now`.
fn use_session(s: &mut Sessions, id: i32, epoch: i32, now: u64) {
    let ctx = s.new_context(meta(id, epoch), false, false, &[], &[], now);
    assert!(matches!(ctx, FetchContext::Incremental { .. }), "{ctx:?}");
}

/// Runs an incremental context's read with `answers` per session partition, committing.
fn answer(s: &mut Sessions, ctx: &FetchContext, answers: &[PartitionData]) -> Selection {
    let FetchContext::Incremental { partitions, .. } = ctx else {
        panic!("{ctx:?}")
    };
    let read: Vec<_> = partitions
        .iter()
        .zip(answers)
        .map(|((k, f), d)| (k, f, d))
        .collect();
    s.select(ctx, &read, true, 0)
}

#[test]
fn a_full_request_opens_a_session_and_a_sessionless_one_does_not() {
    let mut s = Sessions::new(FetchSessionCacheConfig::default());
    let id = open(&mut s, false, 3, 0);
    assert!(id > 0);
    let session = s.get(id).expect("session");
    assert_eq!(
        (session.epoch, session.len(), session.privileged),
        (1, 3, false)
    );
    assert_eq!(s.num_partitions(), 3);

    let fetch = vec![(key("t", 0), at(0))];
    let ctx = s.new_context(meta(0, -1), false, false, &fetch, &[], 0);
    assert!(matches!(ctx, FetchContext::Sessionless));
    let d = data(10, 0);
    let sel = s.select(&ctx, &[(&fetch[0].0, &fetch[0].1, &d)], true, 0);
    assert_eq!(
        sel,
        Selection {
            session_id: 0,
            include: vec![true]
        }
    );
    assert_eq!(s.len(), 1);

    // A full request naming the session closes it; epoch -1 then opens none.
    assert!(matches!(
        s.new_context(meta(id, -1), false, false, &fetch, &[], 0),
        FetchContext::Sessionless
    ));
    assert!(s.is_empty());
    assert_eq!(s.num_partitions(), 0);
    // An empty full request gets no session.
    assert_eq!(open(&mut s, false, 0, 0), 0);
}

#[test]
fn incremental_requests_need_the_session_and_its_epoch() {
    let mut s = Sessions::new(FetchSessionCacheConfig::default());
    let id = open(&mut s, false, 2, 0);
    let err = |ctx: FetchContext| match ctx {
        FetchContext::Error(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        err(s.new_context(meta(id + 1, 1), false, false, &[], &[], 0)),
        FetchSessionError::IdNotFound { session_id: id + 1 }
    );
    assert_eq!(
        err(s.new_context(meta(id, 2), false, false, &[], &[], 0)),
        FetchSessionError::InvalidEpoch {
            session_id: id,
            expected: 1,
            got: 2
        }
    );
    assert_eq!(
        err(s.new_context(meta(id, 1), false, true, &[], &[], 0)),
        FetchSessionError::TopicIdMismatch {
            session_id: id,
            uses_topic_ids: false
        }
    );
    // None of those moved the epoch; the right one does, and only once.
    use_session(&mut s, id, 1, 0);
    assert_eq!(s.get(id).map(|s| s.epoch), Some(2));
    assert!(matches!(
        s.new_context(meta(id, 1), false, false, &[], &[], 0),
        FetchContext::Error(FetchSessionError::InvalidEpoch {
            expected: 2,
            got: 1,
            ..
        })
    ));
    // A full request at epoch 0 naming the session replaces it with a new one.
    let fetch = vec![(key("u", 0), at(5))];
    let ctx = s.new_context(meta(id, 0), false, false, &fetch, &[], 0);
    assert!(s.get(id).is_none());
    let d = data(10, 0);
    let new_id = s
        .select(&ctx, &[(&fetch[0].0, &fetch[0].1, &d)], true, 0)
        .session_id;
    assert!(new_id > 0 && new_id != id);
}

#[test]
fn incremental_requests_add_change_and_forget_partitions() {
    let mut s = Sessions::new(FetchSessionCacheConfig::default());
    let id = open(&mut s, false, 3, 0);
    let fetch = vec![(key("t", 1), at(7)), (key("u", 0), at(3))];
    let ctx = s.new_context(
        meta(id, 1),
        false,
        false,
        &fetch,
        &[key("t", 0), key("x", 9)],
        5,
    );
    let FetchContext::Incremental {
        session_id,
        partitions,
    } = &ctx
    else {
        panic!("{ctx:?}")
    };
    assert_eq!(*session_id, id);
    let got: Vec<_> = partitions
        .iter()
        .map(|(k, f)| (k.clone(), f.fetch_offset.0))
        .collect();
    assert_eq!(
        got,
        vec![(key("t", 1), 7), (key("t", 2), 0), (key("u", 0), 3)]
    );
    assert_eq!(s.num_partitions(), 3);

    let mut session = s.get(id).cloned().expect("session");
    assert_eq!(
        session.update(&[(key("t", 2), at(1))], &[key("t", 1), key("u", 0)]),
        SessionUpdate {
            added: 0,
            updated: 1,
            removed: 2
        }
    );
    // A partition both sent and forgotten in one request is gone (Kafka's order).
    assert_eq!(
        session.update(&[(key("v", 0), at(0))], &[key("v", 0)]),
        SessionUpdate {
            added: 1,
            updated: 0,
            removed: 1
        }
    );
    assert_eq!(
        session
            .partitions()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        vec![key("t", 2)]
    );

    // Forgetting every partition closes the session: the request is served sessionless.
    let all = [key("t", 1), key("t", 2), key("u", 0)];
    assert!(matches!(
        s.new_context(meta(id, 2), false, false, &[], &all, 0),
        FetchContext::Sessionless
    ));
    assert!(s.get(id).is_none());
    assert_eq!(s.num_partitions(), 0);
}

#[test]
fn an_incremental_response_carries_only_what_changed() {
    let mut s = Sessions::new(FetchSessionCacheConfig::default());
    // The session was opened with high watermark 10 and log start 0 for t-0..t-3.
    let id = open(&mut s, false, 4, 0);
    let ctx = s.new_context(meta(id, 1), false, false, &[], &[], 0);
    let error = PartitionData::default()
        .with_error_code(6)
        .with_high_watermark(-1);
    let mut moved_start = data(10, 0);
    moved_start.log_start_offset = 4;
    let sel = answer(
        &mut s,
        &ctx,
        &[data(10, 0), data(12, 100), moved_start.clone(), error],
    );
    assert_eq!(
        sel,
        Selection {
            session_id: id,
            include: vec![false, true, true, true]
        }
    );
    // t-1 got records and went last.
    let order: Vec<_> = s
        .get(id)
        .expect("session")
        .partitions()
        .map(|(k, _)| k.partition.0)
        .collect();
    assert_eq!(order, vec![0, 2, 3, 1]);

    // Nothing changed: nothing sent, except t-3, whose error is sent every time.
    let ctx = s.new_context(meta(id, 2), false, false, &[], &[], 0);
    let error = PartitionData::default()
        .with_error_code(6)
        .with_high_watermark(-1);
    let sel = answer(
        &mut s,
        &ctx,
        &[data(10, 0), moved_start.clone(), error, data(12, 0)],
    );
    assert_eq!(sel.include, vec![false, false, true, false]);

    // t-3 recovers at the high watermark it had before the error: sent, since the error
    // erased what the fetcher knew.
    let ctx = s.new_context(meta(id, 3), false, false, &[], &[], 0);
    let sel = answer(
        &mut s,
        &ctx,
        &[data(10, 0), moved_start.clone(), data(10, 0), data(12, 0)],
    );
    assert_eq!(sel.include, vec![false, false, true, false]);

    // A diverging epoch or a preferred read replica is always sent.
    let ctx = s.new_context(meta(id, 4), false, false, &[], &[], 0);
    let mut diverging = data(10, 0);
    diverging.diverging_epoch.epoch = 3;
    diverging.diverging_epoch.end_offset = 8;
    let mut preferred = data(12, 0);
    preferred.preferred_read_replica = 2.into();
    let sel = answer(
        &mut s,
        &ctx,
        &[diverging, moved_start, data(10, 0), preferred],
    );
    assert_eq!(sel.include, vec![true, false, false, true]);
}

#[test]
fn a_preview_changes_nothing() {
    let mut s = Sessions::new(FetchSessionCacheConfig::default());
    let id = open(&mut s, false, 2, 0);
    let ctx = s.new_context(meta(id, 1), false, false, &[], &[], 0);
    let FetchContext::Incremental { partitions, .. } = &ctx else {
        panic!("{ctx:?}")
    };
    let answers = [data(11, 5), data(10, 0)];
    let read: Vec<_> = partitions
        .iter()
        .zip(&answers)
        .map(|((k, f), d)| (k, f, d))
        .collect();
    for _ in 0..2 {
        assert_eq!(s.select(&ctx, &read, false, 0).include, vec![true, false]);
    }
    let order: Vec<_> = s
        .get(id)
        .expect("session")
        .partitions()
        .map(|(k, _)| k.partition.0)
        .collect();
    assert_eq!(order, vec![0, 1]);
    // A full request previewed opens no session.
    let fetch = vec![(key("t", 0), at(0))];
    let full = s.new_context(FetchMetadata::INITIAL, false, false, &fetch, &[], 0);
    let d = data(1, 0);
    assert_eq!(
        s.select(&full, &[(&fetch[0].0, &fetch[0].1, &d)], false, 0)
            .session_id,
        0
    );
    assert_eq!(s.len(), 1);
}

#[test]
fn eviction_follows_kafkas_rules() {
    let mut s = Sessions::new(CONFIG);
    // Two consumer sessions, both older than the eviction time at their last use.
    let small = open(&mut s, false, 1, 0);
    let big = open(&mut s, false, 3, 0);
    use_session(&mut s, small, 1, 1500);
    use_session(&mut s, big, 1, 1500);

    // Full: a larger session evicts the smallest evictable one.
    let two = open(&mut s, false, 2, 1600);
    assert!(two > 0);
    assert!(s.get(small).is_none() && s.get(big).is_some());
    assert_eq!(s.evictions(), 1);

    // A smaller one cannot evict a larger, nor a session younger than the eviction time.
    assert_eq!(open(&mut s, false, 1, 1700), 0);
    assert_eq!(s.evictions(), 1);

    // A follower evicts a young consumer session: the least valuable one, `two`.
    let follower = open(&mut s, true, 1, 1700);
    assert!(follower > 0 && s.get(two).is_none() && s.get(big).is_some());
    assert_eq!(s.evictions(), 2);

    // A consumer cannot evict the young follower, even a much larger consumer; it evicts the
    // old consumer session instead, and then finds nothing it may evict.
    let large = open(&mut s, false, 100, 1800);
    assert!(large > 0 && s.get(big).is_none() && s.get(follower).is_some());
    assert_eq!(open(&mut s, false, 100, 1800), 0);
    assert_eq!(s.evictions(), 3);

    // Once the least recently used session is stale, it goes, whatever it is worth.
    use_session(&mut s, large, 1, 2000);
    let stale_at = 1700 + CONFIG.eviction_ms + 1;
    let newcomer = open(&mut s, false, 1, stale_at);
    assert!(newcomer > 0 && s.get(follower).is_none() && s.get(large).is_some());
    assert_eq!(s.evictions(), 4);
    assert_eq!(s.num_partitions(), 101);
}

#[test]
fn no_slots_means_no_sessions() {
    let mut s = Sessions::new(FetchSessionCacheConfig {
        max_slots: 0,
        eviction_ms: 0,
    });
    assert_eq!(open(&mut s, true, 5, 0), 0);
    assert!(s.is_empty());
}
