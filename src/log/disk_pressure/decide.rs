//! The pure decisions of disk pressure: a dir's state from its usage and the marks, how many
//! bytes a dir under pressure should free, and which uploaded segments free them.

use crate::model::Offset;

/// The three marks of a log dir, as fractions of its filesystem's size (used / total, where
/// "used" counts everything this broker's user cannot write: the root-reserved blocks too).
///
/// To ensure correctness an instance holds `0 < low_watermark_ratio < high_watermark_ratio <=
/// refuse_ratio <= 1` (checked where the configs are read).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskPressureMarks {
    /// `strata.log.dir.disk.low.watermark.ratio`: below it a dir under pressure is normal again.
    pub low_watermark_ratio: f64,
    /// `strata.log.dir.disk.high.watermark.ratio`: from it, uploaded local segments go.
    pub high_watermark_ratio: f64,
    /// `strata.log.dir.disk.refuse.ratio`: from it, produce to the dir's partitions is refused.
    pub refuse_ratio: f64,
}

impl Default for DiskPressureMarks {
    fn default() -> Self {
        DiskPressureMarks {
            low_watermark_ratio: 0.80,
            high_watermark_ratio: 0.90,
            refuse_ratio: 0.95,
        }
    }
}

/// A log dir's pressure state; the value of `strata_log_dir_disk_pressure_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PressureState {
    /// Below the high watermark (or back below the low one): nothing to do.
    Normal = 0,
    /// Passed the high watermark: local copies of uploaded segments are deleted, oldest first,
    /// until the dir is below the low watermark. Produce is served.
    High = 1,
    /// Passed the refuse mark: as `High`, and produce to the dir's partitions is refused until
    /// the dir is below the low watermark.
    Refusing = 2,
}

impl PressureState {
    pub fn from_u8(v: u8) -> PressureState {
        match v {
            1 => PressureState::High,
            2 => PressureState::Refusing,
            _ => PressureState::Normal,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PressureState::Normal => "normal",
            PressureState::High => "high",
            PressureState::Refusing => "refusing",
        }
    }
}

/// The next state of a dir in `state` whose usage is `used_ratio`. Leaving a state takes the
/// low watermark, entering one its own mark: the gap between them keeps a dir that hovers
/// around one mark from flapping (and produce from being refused and served in turn).
pub fn decide_pressure(
    state: PressureState,
    used_ratio: f64,
    marks: &DiskPressureMarks,
) -> PressureState {
    if used_ratio >= marks.refuse_ratio {
        return PressureState::Refusing;
    }
    match state {
        PressureState::Normal if used_ratio >= marks.high_watermark_ratio => PressureState::High,
        PressureState::Normal => PressureState::Normal,
        PressureState::High | PressureState::Refusing if used_ratio < marks.low_watermark_ratio => {
            PressureState::Normal
        }
        other => other,
    }
}

/// The bytes a dir in `state` should free: down to the low watermark while under pressure,
/// nothing otherwise.
pub fn bytes_to_free(
    state: PressureState,
    used_bytes: u64,
    total_bytes: u64,
    marks: &DiskPressureMarks,
) -> u64 {
    if state == PressureState::Normal {
        return 0;
    }
    let low_bytes = (total_bytes as f64 * marks.low_watermark_ratio) as u64;
    used_bytes.saturating_sub(low_bytes)
}

/// A closed local segment whose data is already in remote storage, so that deleting the local
/// copy loses nothing (reads below the local log start go to the remote part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadedSegment {
    pub base_offset: Offset,
    /// The offset after its last record: the local log start once it is deleted.
    pub next_offset: Offset,
    pub size_bytes: u64,
    pub max_timestamp_ms: i64,
}

/// What to delete in one log: its segments below `below` (all of them uploaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReclaimStep {
    /// The index of the log in the candidates given to [`plan_reclaim`].
    pub log: usize,
    pub below: Offset,
    pub segments: usize,
    pub bytes: u64,
}

/// Which uploaded segments to delete to free `bytes`: `candidates[i]` are log `i`'s uploaded
/// segments, oldest first (a log only loses a prefix, so that it stays contiguous). The oldest
/// data of the dir goes first, whichever log holds it: at each step the head segment with the
/// oldest newest record, ties to the lower log index. Stops as soon as enough is freed, or
/// when nothing uploaded is left (the dir may then stay over its marks: only data in remote
/// storage is ever deleted for pressure).
pub fn plan_reclaim(candidates: &[Vec<UploadedSegment>], bytes: u64) -> Vec<ReclaimStep> {
    let mut next = vec![0usize; candidates.len()];
    let mut steps: Vec<ReclaimStep> = Vec::new();
    let mut freed = 0u64;
    while freed < bytes {
        let oldest = candidates
            .iter()
            .enumerate()
            .filter_map(|(i, segs)| segs.get(next[i]).map(|s| (s.max_timestamp_ms, i, *s)))
            .min_by_key(|&(ts, i, _)| (ts, i));
        let Some((_, log, seg)) = oldest else { break };
        next[log] += 1;
        freed += seg.size_bytes;
        match steps.iter_mut().find(|s| s.log == log) {
            Some(step) => {
                step.below = seg.next_offset;
                step.segments += 1;
                step.bytes += seg.size_bytes;
            }
            None => steps.push(ReclaimStep {
                log,
                below: seg.next_offset,
                segments: 1,
                bytes: seg.size_bytes,
            }),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use PressureState::*;

    const MARKS: DiskPressureMarks = DiskPressureMarks {
        low_watermark_ratio: 0.80,
        high_watermark_ratio: 0.90,
        refuse_ratio: 0.95,
    };

    #[test]
    fn states_enter_at_their_mark_and_leave_below_the_low_watermark() {
        let cases = [
            (Normal, 0.50, Normal),
            (Normal, 0.8999, Normal),
            (Normal, 0.90, High),
            (Normal, 0.95, Refusing),
            (Normal, 1.0, Refusing),
            (High, 0.94, High),
            (High, 0.85, High),
            (High, 0.80, High),
            (High, 0.7999, Normal),
            (High, 0.96, Refusing),
            // Refusing holds until the low watermark, not merely below the refuse mark.
            (Refusing, 0.94, Refusing),
            (Refusing, 0.85, Refusing),
            (Refusing, 0.80, Refusing),
            (Refusing, 0.79, Normal),
        ];
        for (from, used, to) in cases {
            assert_eq!(
                decide_pressure(from, used, &MARKS),
                to,
                "{from:?} at {used}"
            );
        }
    }

    #[test]
    fn a_dir_under_pressure_frees_down_to_the_low_watermark() {
        assert_eq!(bytes_to_free(Normal, 990, 1000, &MARKS), 0);
        assert_eq!(bytes_to_free(High, 920, 1000, &MARKS), 120);
        assert_eq!(bytes_to_free(Refusing, 970, 1000, &MARKS), 170);
        assert_eq!(bytes_to_free(High, 700, 1000, &MARKS), 0);
    }

    fn seg(base: i64, next: i64, size: u64, ts: i64) -> UploadedSegment {
        UploadedSegment {
            base_offset: Offset(base),
            next_offset: Offset(next),
            size_bytes: size,
            max_timestamp_ms: ts,
        }
    }

    #[test]
    fn reclaim_takes_the_dirs_oldest_data_first_and_stops_when_enough_is_freed() {
        let a = vec![
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 4_000),
            seg(20, 30, 100, 6_000),
        ];
        let b = vec![seg(0, 5, 100, 2_000), seg(5, 9, 100, 3_000)];
        let plan = plan_reclaim(&[a.clone(), b.clone()], 350);
        assert_eq!(
            plan,
            vec![
                ReclaimStep {
                    log: 0,
                    below: Offset(20),
                    segments: 2,
                    bytes: 200
                },
                ReclaimStep {
                    log: 1,
                    below: Offset(9),
                    segments: 2,
                    bytes: 200
                },
            ]
        );
        assert_eq!(plan_reclaim(&[a.clone(), b.clone()], 0), vec![]);
        assert_eq!(
            plan_reclaim(&[a.clone(), b], 100),
            vec![ReclaimStep {
                log: 0,
                below: Offset(10),
                segments: 1,
                bytes: 100
            }]
        );
        // Not enough uploaded: everything uploaded goes, nothing else.
        let all = plan_reclaim(&[a, vec![]], 10_000);
        assert_eq!(
            all,
            vec![ReclaimStep {
                log: 0,
                below: Offset(30),
                segments: 3,
                bytes: 300
            }]
        );
        assert_eq!(plan_reclaim(&[], 10_000), vec![]);
    }
}
