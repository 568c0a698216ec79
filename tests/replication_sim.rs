//! Deterministic simulation of ISR replication: three replicas of one partition, each a real
//! `Partition` over a real log in a temp dir, driven step by step from a seed. Followers copy
//! from the leader through the same code a follower's fetcher runs (`fetch_for_follower` on the
//! leader, `apply_fetched` on the follower); the controller's decisions are the real pure
//! functions (`decide_broker_liveness` for fencing and elections, `decide_alter_partition` for
//! ISR changes). Each step is one of: a producer append with acks=all to a broker that believes
//! it leads (possibly a stale leader), one follower fetch, a broker learning the latest image
//! (images reach brokers late and in any order between brokers), an ISR check on a leader, a
//! crash (the process dies; its files stay), a restart, a network cut or heal between two
//! brokers, a high-watermark checkpoint, and time passing.
//!
//! Checked after every step:
//! - every record acknowledged with acks=all (the leader's high watermark passed it while it
//!   still led at that epoch with at least min.insync.replicas in its ISR) is on every replica
//!   whose high watermark has passed it, at the same offset;
//! - any two replicas hold the same records below the smaller of their high watermarks.
//! At the end every fault heals, and every replica holds every acknowledged record.
//!
//! `STRATA_SIM_SEEDS=N` runs N seeds (default 20); `STRATA_SIM_SEED=S` runs one. A failure names
//! its seed, and the seed replays it exactly: one thread, a manual clock, no timers.

mod common;
#[path = "common/seeds.rs"]
mod seeds;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{EpochEndOffset, PartitionData};
use kafka_protocol::records::Compression;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{batch, decode};
use strata::clock::{ManualClock, SharedClock};
use strata::controller::elections::{decide_broker_liveness, Liveness};
use strata::controller::isr::{decide_alter_partition, AlterPartition};
use strata::controller::{MetadataImage, MetadataRecord};
use strata::handlers::errors::partition_error_code;
use strata::log::{FlushPolicy, LogConfig, UnifiedLog};
use strata::model::{BrokerId, LeaderEpoch, Offset, PartitionIndex, TopicId, TopicPartition};
use strata::replication::fetcher::apply_fetched;
use strata::replication::{Partition, PartitionState};

const BROKERS: [i32; 3] = [1, 2, 3];
const MIN_ISR: usize = 2;
const LAG_MAX_MS: i64 = 3_000;
const STEPS: usize = 600;

struct Sim {
    seed: u64,
    rng: StdRng,
    clock: Arc<ManualClock>,
    rt: tokio::runtime::Runtime,
    topic_id: TopicId,
    tp: TopicPartition,
    /// Every image the controller has committed, oldest first.
    images: Vec<MetadataImage>,
    dirs: HashMap<i32, tempfile::TempDir>,
    /// Live brokers: their replica, and the index of the image they last applied.
    live: BTreeMap<i32, (Arc<Partition>, usize)>,
    /// Cut links, as (smaller id, larger id).
    cut: BTreeSet<(i32, i32)>,
    /// Appends waiting for acks=all: (leader, its epoch, end offset, records by offset).
    pending: Vec<(i32, LeaderEpoch, Offset, Vec<(i64, String)>)>,
    acked: BTreeMap<i64, String>,
    next_value: u64,
    trace: Vec<String>,
}

fn config() -> LogConfig {
    LogConfig {
        // Small segments, so truncation and reads cross segment boundaries.
        segment_bytes: 2048,
        flush_policy: FlushPolicy::Interval {
            messages: u64::MAX,
            ms: u64::MAX / 2,
        },
        ..LogConfig::default()
    }
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let clock = ManualClock::new(1_700_000_000_000);
        let topic_id = TopicId::random();
        let mut image = MetadataImage::default();
        let mut offset = 0;
        let mut apply = |image: &mut MetadataImage, r: MetadataRecord| {
            offset += 1;
            image.apply(offset, &r);
        };
        for b in BROKERS {
            apply(
                &mut image,
                MetadataRecord::RegisterBroker {
                    broker_id: BrokerId(b),
                    incarnation: uuid::Uuid::nil(),
                    host: "sim".into(),
                    port: b as u16,
                    rack: None,
                    endpoints: vec![],
                },
            );
        }
        apply(
            &mut image,
            MetadataRecord::Topic {
                name: "sim".into(),
                topic_id,
            },
        );
        apply(
            &mut image,
            MetadataRecord::Partition {
                topic_id,
                partition: PartitionIndex(0),
                replicas: BROKERS.iter().map(|b| BrokerId(*b)).collect(),
                isr: BROKERS.iter().map(|b| BrokerId(*b)).collect(),
                leader: BrokerId(1),
                leader_epoch: LeaderEpoch(0),
                partition_epoch: 0,
                adding_replicas: vec![],
                removing_replicas: vec![],
            },
        );
        let mut sim = Sim {
            seed,
            rng: StdRng::seed_from_u64(seed),
            clock,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            topic_id,
            tp: TopicPartition::new("sim", 0),
            images: vec![image],
            dirs: BROKERS
                .iter()
                .map(|b| (*b, tempfile::tempdir().expect("tempdir")))
                .collect(),
            live: BTreeMap::new(),
            cut: BTreeSet::new(),
            pending: Vec::new(),
            acked: BTreeMap::new(),
            next_value: 0,
            trace: Vec::new(),
        };
        for b in BROKERS {
            sim.open(b);
        }
        sim
    }

    fn image(&self) -> &MetadataImage {
        self.images.last().expect("an image")
    }

    fn state_in(&self, image: &MetadataImage) -> PartitionState {
        let reg = &image.topic(&self.topic_id).expect("topic").partitions[&PartitionIndex(0)];
        PartitionState::from(reg)
    }

    /// Starts broker `b` on its data dir with the latest image, as a restarted broker does.
    fn open(&mut self, b: i32) {
        let dir = self.dirs[&b].path().join("sim-0");
        let clock: SharedClock = self.clock.clone();
        let log = UnifiedLog::open(dir, config(), clock.clone()).expect("open log");
        let state = self.state_in(self.image());
        let p = Arc::new(Partition::new(
            self.tp.clone(),
            self.topic_id,
            log,
            BrokerId(b),
            state,
            MIN_ISR,
            clock,
        ));
        self.live.insert(b, (p, self.images.len() - 1));
    }

    /// The controller commits `records` (if any) as a new image.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        let mut image = self.image().clone();
        for r in &records {
            let offset = image.offset + 1;
            image.apply(offset, r);
        }
        self.trace.push(format!("commit {records:?}"));
        self.images.push(image);
    }

    fn linked(&self, a: i32, b: i32) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn step(&mut self) {
        let roll = self.rng.gen_range(0..100);
        match roll {
            0..=29 => self.produce(),
            30..=59 => self.fetch(),
            60..=71 => self.learn_image(),
            72..=79 => self.isr_check(),
            80..=83 => self.crash(),
            84..=88 => self.restart(),
            89..=91 => self.cut_or_heal(),
            92..=93 => {
                for (p, _) in self.live.values() {
                    p.checkpoint_high_watermark().expect("checkpoint");
                }
            }
            _ => {
                let ms = self.rng.gen_range(10..1_500);
                self.clock.advance_ms(ms);
            }
        }
        self.settle_acks();
        self.check();
    }

    fn pick_live(&mut self) -> Option<i32> {
        let ids: Vec<i32> = self.live.keys().copied().collect();
        (!ids.is_empty()).then(|| ids[self.rng.gen_range(0..ids.len())])
    }

    fn produce(&mut self) {
        // The producer reaches a broker that believes it leads; it may be a stale leader.
        let leaders: Vec<i32> = self
            .live
            .iter()
            .filter(|(_, (p, _))| p.is_leader())
            .map(|(b, _)| *b)
            .collect();
        if leaders.is_empty() {
            return;
        }
        let b = leaders[self.rng.gen_range(0..leaders.len())];
        let n = self.rng.gen_range(1..4);
        let values: Vec<String> = (0..n)
            .map(|_| {
                self.next_value += 1;
                format!("v{}", self.next_value)
            })
            .collect();
        let records: Vec<common::TestRecord> = values
            .iter()
            .map(|v| (None, Some(v.clone()), vec![]))
            .collect();
        let p = self.live[&b].0.clone();
        match p.append_as_leader(batch(&records, Compression::None), -1) {
            Ok((info, epoch)) => {
                let recs = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| (info.first_offset.0 + i as i64, v))
                    .collect();
                self.trace.push(format!(
                    "produce to {b} at epoch {epoch}: {}..={}",
                    info.first_offset, info.last_offset
                ));
                self.pending.push((b, epoch, info.last_offset.next(), recs));
            }
            Err(e) => self.trace.push(format!("produce to {b} refused: {e}")),
        }
    }

    fn fetch(&mut self) {
        let Some(f) = self.pick_live() else { return };
        let follower = self.live[&f].0.clone();
        let state = follower.state();
        let leader = state.leader.0;
        if leader == f || leader < 0 || !self.linked(f, leader) {
            return;
        }
        let Some((lp, _)) = self.live.get(&leader) else {
            return;
        };
        let lp = lp.clone();
        let log = follower.log();
        let fetch_offset = log.log_end_offset();
        let last_epoch = log.latest_epoch();
        let data = PartitionData::default().with_partition_index(0);
        let data = match lp.fetch_for_follower(
            BrokerId(f),
            fetch_offset,
            state.leader_epoch,
            last_epoch,
            1024,
        ) {
            Ok(ff) => {
                let data = data
                    .with_high_watermark(ff.high_watermark.0)
                    .with_log_start_offset(ff.local_log_start_offset.0)
                    .with_records(Some(ff.records));
                match ff.diverging {
                    Some((e, end)) => data.with_diverging_epoch(
                        EpochEndOffset::default()
                            .with_epoch(e.0)
                            .with_end_offset(end.0),
                    ),
                    None => data,
                }
            }
            Err(e) => data
                .with_error_code(partition_error_code(&e))
                .with_high_watermark(lp.high_watermark().0)
                .with_log_start_offset(lp.log().local_log_start_offset().0),
        };
        let r = self.rt.block_on(apply_fetched(&follower, &data));
        self.trace.push(format!(
            "{f} fetched from {leader} at {fetch_offset} (last epoch {last_epoch:?}): error {} diverging {:?} -> end {} hw {} {r:?}",
            data.error_code,
            (data.diverging_epoch.epoch, data.diverging_epoch.end_offset),
            follower.log().log_end_offset(),
            follower.high_watermark()
        ));
    }

    fn learn_image(&mut self) {
        let Some(b) = self.pick_live() else { return };
        let latest = self.images.len() - 1;
        let seen = self.live[&b].1;
        if seen == latest {
            return;
        }
        // Images arrive in order, possibly several at once.
        let to = self.rng.gen_range(seen + 1..=latest);
        let state = self.state_in(&self.images[to]);
        let (p, idx) = self.live.get_mut(&b).expect("live");
        p.update_state(state.clone(), MIN_ISR);
        *idx = to;
        self.trace
            .push(format!("{b} applies image {to}: {state:?}"));
    }

    fn isr_check(&mut self) {
        let Some(b) = self.pick_live() else { return };
        let p = self.live[&b].0.clone();
        let Some(proposal) = p.propose_isr_change(LAG_MAX_MS) else {
            return;
        };
        let req = AlterPartition {
            topic_id: proposal.topic_id,
            partition: PartitionIndex(0),
            leader: BrokerId(b),
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal.new_isr.clone(),
        };
        match decide_alter_partition(self.image(), &req) {
            Ok(records) => {
                self.trace
                    .push(format!("{b} alters ISR to {:?}", req.new_isr));
                self.commit(records);
            }
            Err(e) => {
                self.trace
                    .push(format!("{b} ISR change {:?} refused: {e}", req.new_isr));
                p.isr_proposal_failed();
            }
        }
    }

    fn crash(&mut self) {
        if self.live.len() < 2 {
            return;
        }
        // Half the time the leader: that is where acknowledged records are at risk.
        let leader = self.state_in(self.image()).leader.0;
        let b = if self.rng.gen_bool(0.5) && self.live.contains_key(&leader) {
            leader
        } else {
            match self.pick_live() {
                Some(b) => b,
                None => return,
            }
        };
        self.live.remove(&b);
        self.trace.push(format!("{b} crashes"));
        // The controller notices the missed heartbeats: fence, and elect from the ISR.
        let observed = Liveness {
            fence: [BrokerId(b)].into(),
            ..Default::default()
        };
        let records = decide_broker_liveness(self.image(), &observed, false);
        self.commit(records);
    }

    fn restart(&mut self) {
        let dead: Vec<i32> = BROKERS
            .iter()
            .copied()
            .filter(|b| !self.live.contains_key(b))
            .collect();
        if dead.is_empty() {
            return;
        }
        let b = dead[self.rng.gen_range(0..dead.len())];
        self.open(b);
        self.trace.push(format!("{b} restarts"));
        let observed = Liveness {
            unfence: [BrokerId(b)].into(),
            ..Default::default()
        };
        let records = decide_broker_liveness(self.image(), &observed, false);
        self.commit(records);
    }

    fn cut_or_heal(&mut self) {
        let a = BROKERS[self.rng.gen_range(0..3)];
        let b = BROKERS[self.rng.gen_range(0..3)];
        if a == b {
            return;
        }
        let link = (a.min(b), a.max(b));
        if !self.cut.remove(&link) {
            self.cut.insert(link);
        }
        self.trace
            .push(format!("link {link:?} cut: {}", self.cut.contains(&link)));
    }

    /// What `Partition::wait_committed` decides for acks=all, for each pending append.
    fn settle_acks(&mut self) {
        let mut still = Vec::new();
        for (b, epoch, end, recs) in std::mem::take(&mut self.pending) {
            let Some((p, _)) = self.live.get(&b) else {
                continue;
            };
            let state = p.state();
            if state.leader != BrokerId(b) || state.leader_epoch != epoch {
                continue;
            }
            if p.high_watermark() >= end {
                if state.isr.len() >= MIN_ISR {
                    for (o, v) in recs {
                        self.trace.push(format!("acked {o} = {v} by {b}"));
                        self.acked.insert(o, v);
                    }
                }
                continue;
            }
            still.push((b, epoch, end, recs));
        }
        self.pending = still;
    }

    fn fail(&self, what: String) -> ! {
        let tail: Vec<&String> = self.trace.iter().rev().take(60).collect();
        let tail: Vec<&&String> = tail.iter().rev().collect();
        panic!(
            "seed {}: {what}\nlast steps:\n{}",
            self.seed,
            tail.iter()
                .map(|s| format!("  {s}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn check(&self) {
        let views: Vec<(i32, Offset, BTreeMap<i64, String>)> = self
            .live
            .iter()
            .map(|(b, (p, _))| (*b, p.high_watermark(), records_below(p, p.high_watermark())))
            .collect();
        for (b, hw, recs) in &views {
            for (o, v) in self.acked.range(..hw.0) {
                if recs.get(o) != Some(v) {
                    self.fail(format!(
                        "broker {b} (hw {hw}) lost acknowledged record {o} = {v}: has {:?}",
                        recs.get(o)
                    ));
                }
            }
        }
        for (i, (a, hwa, ra)) in views.iter().enumerate() {
            for (b, hwb, rb) in &views[i + 1..] {
                let below = hwa.0.min(hwb.0);
                let x: Vec<_> = ra.range(..below).collect();
                let y: Vec<_> = rb.range(..below).collect();
                if x != y {
                    self.fail(format!("brokers {a} and {b} disagree below {below}"));
                }
            }
        }
    }

    /// Heals every fault and runs until the replicas converge; then every acknowledged record
    /// must be on every replica.
    fn finish(&mut self) {
        self.cut.clear();
        for b in BROKERS {
            if !self.live.contains_key(&b) {
                self.open(b);
                let observed = Liveness {
                    unfence: [BrokerId(b)].into(),
                    ..Default::default()
                };
                let records = decide_broker_liveness(self.image(), &observed, false);
                self.commit(records);
            }
        }
        for _ in 0..400 {
            let latest = self.images.len() - 1;
            for b in BROKERS {
                let state = self.state_in(&self.images[latest]);
                let (p, idx) = self.live.get_mut(&b).expect("live");
                p.update_state(state, MIN_ISR);
                *idx = latest;
            }
            for _ in 0..3 {
                self.fetch();
            }
            self.clock.advance_ms(100);
            self.isr_check();
            self.settle_acks();
            self.check();
        }
        let leader = self.state_in(self.image()).leader.0;
        if leader < 0 {
            self.fail("no leader after healing".into());
        }
        let end = self.live[&leader].0.log().log_end_offset();
        for (b, (p, _)) in &self.live {
            if p.log().log_end_offset() != end {
                self.fail(format!(
                    "broker {b} did not catch up: end {} vs leader's {end}",
                    p.log().log_end_offset()
                ));
            }
            let recs = records_below(p, end);
            for (o, v) in &self.acked {
                if recs.get(o) != Some(v) {
                    self.fail(format!(
                        "after healing, broker {b} lacks acknowledged record {o} = {v}"
                    ));
                }
            }
        }
    }
}

/// The records of `p`'s log below `end`, by offset.
fn records_below(p: &Partition, end: Offset) -> BTreeMap<i64, String> {
    let log = p.log();
    let mut out = BTreeMap::new();
    let mut next = log.local_log_start_offset();
    while next < end {
        let info = match log.read(next, 1 << 20, end, true) {
            Ok(info) => info,
            Err(e) => panic!("read at {next}: {e}"),
        };
        if info.records.is_empty() {
            break;
        }
        let recs = decode(Bytes::clone(&info.records));
        let Some(last) = recs.last().map(|r| r.offset) else {
            break;
        };
        for r in recs {
            if r.offset >= next.0 && r.offset < end.0 {
                let v =
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                out.insert(r.offset, v);
            }
        }
        next = Offset(last + 1);
    }
    out
}

#[test]
fn acknowledged_records_survive_crashes_cuts_and_stale_leaders() {
    let mut total_acked = 0;
    let mut elections = 0;
    for seed in seeds::seeds(20) {
        let mut sim = Sim::new(seed);
        for _ in 0..STEPS {
            sim.step();
        }
        sim.finish();
        total_acked += sim.acked.len();
        elections += sim.state_in(sim.image()).leader_epoch.0;
    }
    // The schedule must exercise the protocol, not idle: writes were acknowledged and
    // leaderships changed.
    assert!(
        total_acked > 100,
        "only {total_acked} records acknowledged across seeds"
    );
    assert!(
        elections > 5,
        "only {elections} leader elections across seeds"
    );
}
