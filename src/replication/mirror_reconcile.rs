//! Reconciling a reversed mirror partition (`strata mirror reverse`) with the new primary.
//!
//! The old source and the new primary hold the same batches up to the offset the link had
//! copied when the new primary was promoted: the link appends the source's batches unchanged
//! but for the partition leader epoch, which lies outside the CRC. Past that point each side
//! took its own writes, so the first offset whose batch differs (base offset, last offset,
//! CRC) is where they diverge. Epochs cannot tell it: each cluster stamps its own. The search
//! is a binary search over offsets ([`DivergenceSearch`], pure), each probe one local read and
//! one small source fetch; its first probe is the last offset both hold, so a partition that
//! has not diverged (a fetcher restarting) costs one probe.
//!
//! The divergent tail is written to a file (record batches in Kafka's log format) and fsynced,
//! reported to the controller (`decide_divergent_tail`), and only then truncated: a crash in
//! between leaves the report and the file, and the next fetcher of the partition, which checks
//! again, truncates the same tail.

use std::io::Write;
use std::path::PathBuf;

use super::{LinkFetcher, Stop};
use crate::client::KafkaClient;
use crate::controller::mirror::{decide_divergent_tail, DivergentTail};
use crate::model::Offset;

/// The directory, beside the partition directories of a log dir, where divergent tails are
/// kept (its name parses as no partition, so the log manager leaves it alone).
pub(super) const KEPT_DIR: &str = "mirror-divergent-tails";
/// Bytes asked of the source per probe: the first batch's header is all that is read.
const PROBE_MAX_BYTES: i32 = 1024 * 1024;

/// What identifies a batch across clusters: the link copies it unchanged within the CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BatchId {
    pub base: i64,
    pub last: i64,
    pub crc: u32,
}

impl BatchId {
    /// The first batch of a record set (base offset 0, length 8, CRC 17, last offset delta 23).
    pub(super) fn first_of(records: &[u8]) -> Option<BatchId> {
        let b = records.get(..27)?;
        let base = i64::from_be_bytes(b[0..8].try_into().ok()?);
        let crc = u32::from_be_bytes(b[17..21].try_into().ok()?);
        let delta = i32::from_be_bytes(b[23..27].try_into().ok()?);
        Some(BatchId {
            base,
            last: base + i64::from(delta),
            crc,
        })
    }
}

/// The first offset in `[start, min(local end, source end))` whose batch differs between the
/// local log and the source; the end of that range when none does. Everything below `lo`
/// matches; the first difference is below `hi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DivergenceSearch {
    lo: i64,
    hi: i64,
    probed: bool,
}

impl DivergenceSearch {
    pub(super) fn new(start: Offset, local_end: Offset, source_end: Offset) -> DivergenceSearch {
        let hi = local_end.0.min(source_end.0);
        DivergenceSearch {
            lo: start.0.min(hi),
            hi,
            probed: false,
        }
    }

    /// The next offset to compare, or `None` when the search is over.
    pub(super) fn probe(&self) -> Option<Offset> {
        if self.lo >= self.hi {
            return None;
        }
        // The last common offset first: when it matches, nothing diverged.
        Some(Offset(if self.probed {
            self.lo + (self.hi - self.lo) / 2
        } else {
            self.hi - 1
        }))
    }

    /// The batches containing `at` locally and at the source (`None`: the source sent none).
    pub(super) fn observe(&mut self, at: Offset, local: BatchId, source: Option<BatchId>) {
        self.probed = true;
        if source == Some(local) {
            self.lo = self.lo.max(local.last + 1).max(at.0 + 1);
        } else {
            // The whole local batch differs: no source batch equal to it can contain `at`.
            self.hi = local.base.min(at.0).max(self.lo);
        }
    }

    /// Where the local log stops matching (meaningful once `probe` is `None`).
    pub(super) fn divergence(&self) -> Offset {
        Offset(self.lo.min(self.hi))
    }
}

impl LinkFetcher {
    /// Finds, keeps, reports and truncates this partition's divergent tail.
    pub(super) async fn reconcile_with_source(
        &mut self,
        client: &mut KafkaClient,
    ) -> Result<(), Stop> {
        let log = self.partition.log().clone();
        let local_end = log.log_end_offset();
        let source_start = self.list_offset(client, -2).await?;
        let source_end = self.list_offset(client, -1).await?;
        let start = log.local_log_start_offset().max(source_start);
        let mut search = DivergenceSearch::new(start, local_end, source_end);
        while let Some(at) = search.probe() {
            let read = log
                .read(at, 1, Offset(i64::MAX), true)
                .map_err(|e| Stop::Retry(format!("local read at {at} failed: {e}")))?;
            let local = BatchId::first_of(&read.records)
                .ok_or_else(|| Stop::Retry(format!("no local batch at {at}")))?;
            let source = self.source_batch(client, at).await?;
            search.observe(at, local, source);
        }
        let from = search.divergence();
        let kept = if from < local_end {
            let (log, tp) = (log.clone(), self.tp().clone());
            tokio::task::spawn_blocking(move || keep_tail(&log, &tp, from, local_end))
                .await
                .map_err(|e| Stop::Retry(e.to_string()))?
                .map_err(|e| Stop::Retry(format!("cannot keep the divergent tail: {e}")))?
                .display()
                .to_string()
        } else {
            String::new()
        };
        let tail = DivergentTail {
            from_offset: from.0,
            end_offset: local_end.0,
            broker: self.partition.state().leader.0,
            kept,
        };
        let (topic, partition) = (self.tp().topic.clone(), self.tp().partition.0);
        let report = tail.clone();
        self.manager
            .controller
            .commit(|image| Ok(((), decide_divergent_tail(image, &topic, partition, &report))))
            .await
            .map_err(|e| Stop::Retry(format!("cannot report the divergent tail: {e}")))?;
        if from < local_end {
            let p = self.partition.clone();
            tokio::task::spawn_blocking(move || p.truncate_to(from))
                .await
                .map_err(|e| Stop::Retry(e.to_string()))?
                .map_err(|e| Stop::Retry(format!("truncation failed: {e}")))?;
            let [link, topic, partition] = self.labels();
            self.manager
                .metrics
                .divergent_records
                .with_label_values(&[&link, &topic, &partition])
                .inc_by(tail.records() as u64);
            tracing::warn!(%link, partition = %self.tp(), from = %from, end = %local_end, records = tail.records(), kept = %tail.kept, "divergent tail removed: the new primary never had these records; they are kept in the file");
        } else {
            tracing::info!(link = %self.link.name, partition = %self.tp(), end = %local_end, "no divergent tail: this partition matches the new primary");
        }
        Ok(())
    }

    /// The source's batch containing `at`.
    async fn source_batch(
        &self,
        client: &mut KafkaClient,
        at: Offset,
    ) -> Result<Option<BatchId>, Stop> {
        let data = self
            .fetch_one(client, at, std::time::Duration::ZERO, PROBE_MAX_BYTES)
            .await?;
        if data.error_code != 0 {
            return Err(Stop::Retry(format!(
                "the source answered error {} at {at}",
                data.error_code
            )));
        }
        Ok(data.records.as_ref().and_then(|r| BatchId::first_of(r)))
    }
}

/// Copies `[from, end)` of the local log to `<log dir>/mirror-divergent-tails/<topic>-<p>/
/// <from>-<end>.log` and fsyncs it. Rewriting the same tail gives the same file.
fn keep_tail(
    log: &crate::log::UnifiedLog,
    tp: &crate::model::TopicPartition,
    from: Offset,
    end: Offset,
) -> std::io::Result<PathBuf> {
    let root = log
        .dir()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let dir = root
        .join(KEPT_DIR)
        .join(format!("{}-{}", tp.topic, tp.partition.0));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{:020}-{:020}.log", from.0, end.0));
    let mut file = std::fs::File::create(&path)?;
    let mut at = from;
    while at < end {
        let read = log
            .read(at, 1024 * 1024, end, true)
            .map_err(std::io::Error::other)?;
        if read.records.is_empty() {
            break;
        }
        let mut last = at.0;
        let mut pos = 0;
        while let Some(b) = read.records.get(pos..).and_then(BatchId::first_of) {
            let len = i32::from_be_bytes(
                read.records[pos + 8..pos + 12]
                    .try_into()
                    .unwrap_or_default(),
            );
            pos += 12 + len.max(0) as usize;
            last = b.last;
        }
        file.write_all(&read.records)?;
        at = Offset(last + 1);
    }
    file.sync_all()?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(base: i64, last: i64, crc: u32) -> BatchId {
        BatchId { base, last, crc }
    }

    /// Drives the search against two logs given as batch lists.
    fn search(local: &[BatchId], source: &[BatchId], start: i64) -> (Offset, usize) {
        let end = |l: &[BatchId]| Offset(l.last().map_or(0, |b| b.last + 1));
        let containing =
            |l: &[BatchId], at: i64| l.iter().copied().find(|b| b.base <= at && at <= b.last);
        let mut s = DivergenceSearch::new(Offset(start), end(local), end(source));
        let mut probes = 0;
        while let Some(at) = s.probe() {
            probes += 1;
            assert!(probes < 64, "the search must end");
            let l = containing(local, at.0).expect("probes stay in the local log");
            s.observe(at, l, containing(source, at.0));
        }
        (s.divergence(), probes)
    }

    /// Batches of 3 offsets from 0, with crcs from `crc`.
    fn batches(n: i64, crc: impl Fn(i64) -> u32) -> Vec<BatchId> {
        (0..n).map(|i| id(i * 3, i * 3 + 2, crc(i))).collect()
    }

    #[test]
    fn finds_where_the_old_source_and_the_new_primary_part() {
        // Common until batch 40 (offset 120); then each took its own writes.
        let local = batches(50, |i| i as u32);
        let source = batches(60, |i| if i < 40 { i as u32 } else { 1000 + i as u32 });
        let (from, probes) = search(&local, &source, 0);
        assert_eq!(from, Offset(120));
        assert!(probes <= 10, "a binary search, not a scan: {probes}");

        // The new primary took no writes: the local tail past its end diverges.
        let (from, _) = search(&local, &batches(45, |i| i as u32), 0);
        assert_eq!(from, Offset(135));

        // Diverged from the first batch on.
        let (from, _) = search(&local, &batches(10, |i| 7000 + i as u32), 0);
        assert_eq!(from, Offset(0));
    }

    #[test]
    fn an_unchanged_partition_costs_one_probe() {
        let local = batches(50, |i| i as u32);
        assert_eq!(search(&local, &local, 0), (Offset(150), 1));
        // Behind the new primary (it kept writing): nothing to remove.
        let source = batches(70, |i| i as u32);
        assert_eq!(search(&local, &source, 0), (Offset(150), 1));
        assert_eq!(search(&[], &source, 0), (Offset(0), 0));
        // The search starts at the later log start.
        let (from, _) = search(&local, &batches(50, |i| 5 + i as u32), 30);
        assert_eq!(from, Offset(30));
    }

    #[test]
    fn reads_the_first_batch_header() {
        let mut b = vec![0u8; 61];
        b[0..8].copy_from_slice(&100i64.to_be_bytes());
        b[17..21].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        b[23..27].copy_from_slice(&4i32.to_be_bytes());
        assert_eq!(BatchId::first_of(&b), Some(id(100, 104, 0xdead_beef)));
        assert_eq!(BatchId::first_of(&b[..20]), None);
    }
}
