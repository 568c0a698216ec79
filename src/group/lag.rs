//! Consumer lag, decided purely: from the groups' committed offsets and the high watermarks of
//! the partitions this broker leads, to the series `/metrics` exports.
//!
//! Lag is the high watermark (the end of what consumers can read, as Fetch serves it) minus
//! the committed offset, never below zero. A partition is measured only if the broker leads
//! it: a follower's high watermark trails the leader's, and a broker that holds no replica
//! knows nothing. Groups without a committed offset for a partition are not measured there.
//!
//! The per-partition series are bounded by `metrics.group.lag.max.series`: the first that many
//! in (group, topic, partition) order are kept, so the kept set does not churn as lags move;
//! the rest are counted in `dropped`. The per-group sums always cover every measured partition.

use std::collections::BTreeMap;

use super::state::GroupSummary;
use crate::model::{Offset, TopicPartition};

/// The lag of one group on one partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PartitionLag {
    pub group: String,
    pub tp: TopicPartition,
    pub lag_records: i64,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConsumerLag {
    /// At most `max_series` partitions, in (group, topic, partition) order.
    pub partitions: Vec<PartitionLag>,
    /// Per group with at least one measured partition: the sum over all of them.
    pub group_sums_records: BTreeMap<String, i64>,
    /// Measured partitions left out of `partitions` by the cap.
    pub dropped: usize,
}

/// Measures every committed offset of `groups` against `high_watermark`, which answers for the
/// partitions this broker leads and `None` for the others.
pub fn consumer_lag<'a>(
    groups: impl IntoIterator<Item = &'a GroupSummary>,
    mut high_watermark: impl FnMut(&TopicPartition) -> Option<Offset>,
    max_series: usize,
) -> ConsumerLag {
    let mut partitions = Vec::new();
    let mut group_sums_records = BTreeMap::new();
    for g in groups {
        for (tp, committed) in &g.offsets {
            // A negative committed offset means "none" to Kafka clients.
            if committed.0 < 0 {
                continue;
            }
            let Some(hw) = high_watermark(tp) else {
                continue;
            };
            let lag_records = (hw.0 - committed.0).max(0);
            *group_sums_records.entry(g.group_id.clone()).or_insert(0) += lag_records;
            partitions.push(PartitionLag {
                group: g.group_id.clone(),
                tp: tp.clone(),
                lag_records,
            });
        }
    }
    partitions.sort_unstable();
    let dropped = partitions.len().saturating_sub(max_series);
    partitions.truncate(max_series);
    ConsumerLag {
        partitions,
        group_sums_records,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::GroupState;

    fn group(id: &str, offsets: &[(&str, i32, i64)]) -> GroupSummary {
        GroupSummary {
            group_id: id.to_string(),
            state: GroupState::Stable,
            members: 1,
            offsets: offsets
                .iter()
                .map(|(t, p, o)| (TopicPartition::new(*t, *p), Offset(*o)))
                .collect(),
        }
    }

    /// Leads t-0 (hw 100), t-1 (hw 50) and u-0 (hw 10); t-2 is led elsewhere.
    fn hw(tp: &TopicPartition) -> Option<Offset> {
        match (tp.topic.as_str(), tp.partition.0) {
            ("t", 0) => Some(Offset(100)),
            ("t", 1) => Some(Offset(50)),
            ("u", 0) => Some(Offset(10)),
            _ => None,
        }
    }

    fn lag(group: &str, topic: &str, partition: i32, lag_records: i64) -> PartitionLag {
        PartitionLag {
            group: group.into(),
            tp: TopicPartition::new(topic, partition),
            lag_records,
        }
    }

    #[test]
    fn lag_is_high_watermark_minus_committed_on_led_partitions_only() {
        let groups = [
            group("b", &[("t", 0, 40), ("t", 2, 0), ("u", 0, 12)]),
            group("a", &[("t", 1, 50), ("t", 0, -1)]),
            group("elsewhere", &[("t", 2, 5)]),
        ];
        let got = consumer_lag(&groups, hw, 1000);
        assert_eq!(
            got.partitions,
            vec![
                lag("a", "t", 1, 0),
                lag("b", "t", 0, 60),
                // Committed past the high watermark (a truncated log): no negative lag.
                lag("b", "u", 0, 0),
            ]
        );
        assert_eq!(
            got.group_sums_records,
            BTreeMap::from([("a".to_string(), 0), ("b".to_string(), 60)]),
            "a group with no measured partition has no sum"
        );
        assert_eq!(got.dropped, 0);
    }

    #[test]
    fn the_cap_bounds_partition_series_but_not_the_sums() {
        let groups = [
            group("b", &[("t", 0, 0), ("t", 1, 0)]),
            group("a", &[("u", 0, 0), ("t", 0, 90)]),
        ];
        let got = consumer_lag(&groups, hw, 3);
        assert_eq!(
            got.partitions,
            vec![
                lag("a", "t", 0, 10),
                lag("a", "u", 0, 10),
                lag("b", "t", 0, 100)
            ]
        );
        assert_eq!(got.dropped, 1);
        assert_eq!(got.group_sums_records["a"], 20);
        assert_eq!(
            got.group_sums_records["b"], 150,
            "b-t-1 left out, still summed"
        );

        let none = consumer_lag(&groups, hw, 0);
        assert!(none.partitions.is_empty());
        assert_eq!(none.dropped, 4);
        assert_eq!(none.group_sums_records.len(), 2);
    }
}
