//! Property test: random sequences of append, read, roll, truncate, retention, delete_records
//! and reopen (clean or crash) agree with a simple in-memory model of the log.

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use strata::clock::{Clock, ManualClock, SharedClock};
use strata::log::{LogConfig, UnifiedLog};
use strata::model::{LeaderEpoch, Offset};
use strata::protocol::record_batch::{
    build_batch, set_base_offset, set_partition_leader_epoch, BatchIter,
};

const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        len: usize,
        epoch_bump: bool,
    },
    Read {
        at: u16,
        max_bytes: u16,
    },
    Roll,
    Truncate {
        at: u16,
    },
    DeleteRecords {
        at: u16,
    },
    Retention {
        advance_ms: u32,
    },
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, 1usize..400, proptest::bool::weighted(0.1))
            .prop_map(|(records, len, epoch_bump)| Op::Append { records, len, epoch_bump }),
        3 => (any::<u16>(), 50u16..3000).prop_map(|(at, max_bytes)| Op::Read { at, max_bytes }),
        1 => Just(Op::Roll),
        1 => any::<u16>().prop_map(|at| Op::Truncate { at }),
        1 => any::<u16>().prop_map(|at| Op::DeleteRecords { at }),
        1 => (0u32..20_000).prop_map(|advance_ms| Op::Retention { advance_ms }),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

#[derive(Debug, Clone)]
struct ModelBatch {
    base: i64,
    bytes: Vec<u8>,
    records: i64,
}

impl ModelBatch {
    fn next(&self) -> i64 {
        self.base + self.records
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 300,
        segment_index_bytes: 1024,
        retention_bytes: 6000,
        retention_ms: 10_000,
        ..LogConfig::default()
    }
}

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Arc<UnifiedLog> {
    let c: SharedClock = clock.clone();
    UnifiedLog::open(dir.to_path_buf(), config(), c).expect("open")
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let mut log = open(dir.path(), &clock);
    let mut model: Vec<ModelBatch> = Vec::new();
    let mut lso = 0i64;
    let mut leo = 0i64;
    let mut epoch = 0i32;
    let mut counter = 0u8;
    for op in ops {
        match op {
            Op::Append {
                records,
                len,
                epoch_bump,
            } => {
                if epoch_bump {
                    epoch += 1;
                }
                counter = counter.wrapping_add(1);
                let v = vec![counter; len];
                let recs = vec![(None, Some(&v[..])); records];
                let b = build_batch(0, clock.now_ms(), None, &recs);
                let info = log
                    .append_as_leader(Bytes::from(b.clone()), LeaderEpoch(epoch))
                    .expect("append");
                prop_assert_eq!(info.first_offset, Offset(leo));
                let mut expect = b;
                set_base_offset(&mut expect, leo);
                set_partition_leader_epoch(&mut expect, epoch);
                model.push(ModelBatch {
                    base: leo,
                    bytes: expect,
                    records: records as i64,
                });
                leo += records as i64;
                clock.advance_ms(100);
            }
            Op::Read { at, max_bytes } => {
                let span = (leo - lso + 1).max(1);
                let o = lso + at as i64 % span;
                let r = log
                    .read(Offset(o), max_bytes as usize, Offset(i64::MAX), true)
                    .expect("read");
                prop_assert_eq!(r.log_end_offset, Offset(leo));
                prop_assert_eq!(r.local_log_start_offset, Offset(lso));
                if o == leo {
                    prop_assert!(r.records.is_empty());
                    continue;
                }
                let first = model
                    .iter()
                    .position(|b| b.base <= o && o < b.next())
                    .expect("model has the offset");
                prop_assert!(!r.records.is_empty());
                let mut i = first;
                for item in BatchIter::new(&r.records) {
                    let (pos, h) = item.expect("whole batch");
                    let got = &r.records[pos..pos + h.total_size()];
                    prop_assert_eq!(got, &model[i].bytes[..], "batch {} differs", i);
                    i += 1;
                }
                prop_assert!(i == first + 1 || r.records.len() <= max_bytes as usize);
            }
            Op::Roll => log.roll().expect("roll"),
            Op::Truncate { at } => {
                // Replication truncates at batch boundaries at or above the log start.
                let bounds: Vec<i64> = model
                    .iter()
                    .map(|b| b.base)
                    .filter(|&b| b >= lso)
                    .chain(std::iter::once(leo))
                    .collect();
                let o = bounds[at as usize % bounds.len()];
                log.truncate_to(Offset(o)).expect("truncate");
                model.retain(|b| b.base < o);
                leo = o;
            }
            Op::DeleteRecords { at } => {
                let o = lso + at as i64 % (leo - lso + 1);
                let new = log.delete_records(Offset(o)).expect("delete records");
                lso = lso.max(o);
                prop_assert_eq!(new, Offset(lso));
                model.retain(|b| b.next() > lso);
            }
            Op::Retention { advance_ms } => {
                clock.advance_ms(advance_ms as i64);
                log.delete_old_segments().expect("retention");
                let new = log.local_log_start_offset().0;
                prop_assert!(new >= lso && new <= leo);
                prop_assert!(new == lso || new == leo || model.iter().any(|b| b.base == new));
                lso = new;
                model.retain(|b| b.next() > lso);
            }
            Op::Reopen { crash } => {
                if crash {
                    drop(log);
                    let _ =
                        std::fs::remove_file(dir.path().join("recovery-point-offset-checkpoint"));
                } else {
                    log.close().expect("close");
                    drop(log);
                }
                log = open(dir.path(), &clock);
            }
        }
        prop_assert_eq!(log.log_end_offset(), Offset(leo));
        prop_assert_eq!(log.local_log_start_offset(), Offset(lso));
    }
    // Everything readable, in order, equal to the model.
    let mut next = lso;
    let mut i = model
        .iter()
        .position(|b| b.next() > lso)
        .unwrap_or(model.len());
    while next < leo {
        let r = log
            .read(Offset(next), 1 << 20, Offset(i64::MAX), true)
            .expect("read");
        prop_assert!(!r.records.is_empty());
        for item in BatchIter::new(&r.records) {
            let (pos, h) = item.expect("whole batch");
            prop_assert_eq!(&r.records[pos..pos + h.total_size()], &model[i].bytes[..]);
            next = h.next_offset();
            i += 1;
        }
    }
    prop_assert_eq!(i, model.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_agrees_with_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
