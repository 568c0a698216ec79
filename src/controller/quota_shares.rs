//! Cluster-wide quotas, the active controller's side: each broker reports with its heartbeat
//! the rate it observed for every tenant and topic under a cluster-wide limit
//! ([`QuotaUsage`]); the controller divides each limit among the brokers by demand
//! ([`decide_quota_share`]) and answers each heartbeat with that broker's share, raised only as
//! far as the others have given room back ([`decide_handout`]), so the shares in force never
//! sum past the limit.
//!
//! Shares live in the active controller's memory only, never in the metadata log: they change
//! with traffic every heartbeat, and a log entry per broker per heartbeat would cost more than
//! all other metadata together while being worthless a second later. What must survive a
//! failover survives without the log: brokers keep their last shares until a new controller
//! answers, and a new controller answers with shares only once every live broker has had a
//! heartbeat interval or two to report ([`QuotaShareBook::settled`]).
//!
//! A broker that stops reporting (dead, partitioned) is left out once its last report is older
//! than `broker.session.timeout.ms`: its share returns to the others.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use crate::model::BrokerId;
use crate::quota::{QuotaShare, QuotaUsage, SharedQuotaKey};

/// Part of every limit given to every reporting broker whatever its demand, split evenly, so
/// a broker with no recent traffic can start serving a tenant at once.
pub const FLOOR_FRACTION: f64 = 0.1;
/// A broker measured at this fraction of its last share or more is taken to want more than it
/// got: its clients are being throttled.
pub const SATURATED_FRACTION: f64 = 0.8;
/// An unsaturated broker gets this much more than it uses, so its share follows its traffic up
/// without it being throttled first, and a measured rate that wobbles (a sampled rate over a
/// short window does, by a fifth either way) does not flip it between saturated and not.
pub const HEADROOM: f64 = 1.5;

/// One broker's observed demand for one limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerDemand {
    pub broker: BrokerId,
    /// Bytes/s measured over the quota window (0: no recent traffic).
    pub rate: f64,
    /// The share it was last given, if any.
    pub last_share: Option<f64>,
}

/// Divides `limit` among the brokers of `demands`; the shares sum to `limit`.
///
/// Every broker gets a floor (`FLOOR_FRACTION` of the limit, split evenly). The rest is
/// water-filled (max-min fair): a broker that used less than [`SATURATED_FRACTION`] of its last
/// share (or of an even part, without one) wants its rate plus [`HEADROOM`]; one that used more
/// wants without bound. Brokers are filled in order of want, each up to an even part of what
/// remains, so the saturated ones split what the others leave. What nobody wants goes to the
/// brokers with traffic in proportion to it (evenly when there is none).
pub fn decide_quota_share(limit: f64, demands: &[BrokerDemand]) -> Vec<(BrokerId, f64)> {
    let n = demands.len();
    if n == 0 {
        return Vec::new();
    }
    let limit = limit.max(0.0);
    let floor = limit * FLOOR_FRACTION / n as f64;
    let even = limit / n as f64;
    let wants: Vec<f64> = demands
        .iter()
        .map(|d| {
            let had = d.last_share.unwrap_or(even);
            if d.rate >= SATURATED_FRACTION * had {
                f64::INFINITY
            } else {
                (d.rate * HEADROOM - floor).max(0.0)
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| wants[*a].total_cmp(&wants[*b]));
    let mut given = vec![0.0; n];
    let mut remaining = limit - floor * n as f64;
    for (k, &i) in order.iter().enumerate() {
        let fair = remaining / (n - k) as f64;
        given[i] = wants[i].min(fair);
        remaining -= given[i];
    }
    if remaining > 0.0 {
        let total_rate: f64 = demands.iter().map(|d| d.rate.max(0.0)).sum();
        for (i, d) in demands.iter().enumerate() {
            given[i] += if total_rate > 0.0 {
                remaining * d.rate.max(0.0) / total_rate
            } else {
                remaining / n as f64
            };
        }
    }
    demands
        .iter()
        .zip(given)
        .map(|(d, g)| (d.broker, floor + g))
        .collect()
}

/// What `broker` may be handed of a limit now: its target, but no more than the others do not
/// hold. Each broker hears its share only at its own heartbeat, so a share raised before the
/// others' have come down would let the brokers together exceed the limit; this way the shares
/// held at any moment sum to at most the limit, and a raise lands one heartbeat after the
/// others gave the room back.
pub fn decide_handout(target: f64, limit: f64, held_by_others: f64) -> f64 {
    target.min(limit - held_by_others).max(0.0)
}

/// One broker's last report.
#[derive(Debug, Clone)]
pub struct BrokerReport {
    pub at: Instant,
    pub usage: Vec<QuotaUsage>,
}

/// Every limit's shares, from the reports younger than `timeout` at `now`. A limit is the
/// smallest any fresh report carries (brokers whose image is behind a change may still report
/// the old one); brokers that reported without the key take part with no demand.
pub fn decide_quota_shares(
    reports: &BTreeMap<BrokerId, BrokerReport>,
    previous: &HashMap<SharedQuotaKey, BTreeMap<BrokerId, f64>>,
    now: Instant,
    timeout: Duration,
) -> HashMap<SharedQuotaKey, BTreeMap<BrokerId, f64>> {
    let fresh: Vec<(BrokerId, &BrokerReport)> = reports
        .iter()
        .filter(|(_, r)| now.saturating_duration_since(r.at) < timeout)
        .map(|(b, r)| (*b, r))
        .collect();
    let mut limits: HashMap<&SharedQuotaKey, f64> = HashMap::new();
    let mut rates: HashMap<(&SharedQuotaKey, BrokerId), f64> = HashMap::new();
    for (broker, report) in &fresh {
        for u in &report.usage {
            limits
                .entry(&u.key)
                .and_modify(|l| *l = l.min(u.limit))
                .or_insert(u.limit);
            rates.insert((&u.key, *broker), u.rate);
        }
    }
    limits
        .into_iter()
        .map(|(key, limit)| {
            let last = previous.get(key);
            let demands: Vec<BrokerDemand> = fresh
                .iter()
                .map(|(broker, _)| BrokerDemand {
                    broker: *broker,
                    rate: rates.get(&(key, *broker)).copied().unwrap_or(0.0),
                    last_share: last.and_then(|l| l.get(broker)).copied(),
                })
                .collect();
            let shares = decide_quota_share(limit, &demands).into_iter().collect();
            (key.clone(), shares)
        })
        .collect()
}

/// The active controller's memory of the brokers' reports and the shares it gave, for one
/// term: a new term starts empty.
#[derive(Debug, Default)]
pub(super) struct QuotaShareBook {
    term: Option<u64>,
    term_began: Option<Instant>,
    reports: BTreeMap<BrokerId, BrokerReport>,
    /// The share each broker was last handed, per limit: what it enforces now.
    held: HashMap<SharedQuotaKey, BTreeMap<BrokerId, f64>>,
}

impl QuotaShareBook {
    /// Records `broker`'s report at `now` in `term` and returns its shares, or `None` while a
    /// new term has not settled (the broker keeps the shares it has).
    pub(super) fn report(
        &mut self,
        term: u64,
        broker: BrokerId,
        usage: Vec<QuotaUsage>,
        now: Instant,
        heartbeat_interval: Duration,
        timeout: Duration,
    ) -> Option<Vec<QuotaShare>> {
        if self.term != Some(term) {
            *self = QuotaShareBook {
                term: Some(term),
                term_began: Some(now),
                ..QuotaShareBook::default()
            };
        }
        self.reports.insert(broker, BrokerReport { at: now, usage });
        self.reports
            .retain(|_, r| now.saturating_duration_since(r.at) < timeout);
        if !self.settled(now, heartbeat_interval) {
            return None;
        }
        let targets = decide_quota_shares(&self.reports, &self.held, now, timeout);
        // Shares of brokers that stopped reporting, and of limits nobody reports, are free.
        self.held.retain(|key, _| targets.contains_key(key));
        for (key, held) in self.held.iter_mut() {
            held.retain(|b, _| targets[key].contains_key(b));
        }
        let mut out = Vec::new();
        for (key, by_broker) in &targets {
            let Some(target) = by_broker.get(&broker) else {
                continue;
            };
            let limit: f64 = by_broker.values().sum();
            let held = self.held.entry(key.clone()).or_default();
            let others: f64 = held
                .iter()
                .filter(|(b, _)| **b != broker)
                .map(|(_, s)| *s)
                .sum();
            let share = decide_handout(*target, limit, others);
            held.insert(broker, share);
            out.push(QuotaShare {
                key: key.clone(),
                share,
            });
        }
        Some(out)
    }

    /// Whether the term is old enough (two heartbeat intervals) that every live broker has
    /// reported to it; before that, shares from a partial view would hand one broker the whole
    /// limit.
    fn settled(&self, now: Instant, heartbeat_interval: Duration) -> bool {
        self.term_began
            .is_some_and(|t| now.saturating_duration_since(t) >= heartbeat_interval * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{SharedDirection, SharedEntity};

    fn d(broker: i32, rate: f64, last_share: Option<f64>) -> BrokerDemand {
        BrokerDemand {
            broker: BrokerId(broker),
            rate,
            last_share,
        }
    }

    fn sum(shares: &[(BrokerId, f64)]) -> f64 {
        shares.iter().map(|s| s.1).sum()
    }

    fn of(shares: &[(BrokerId, f64)], broker: i32) -> f64 {
        shares
            .iter()
            .find(|s| s.0 == BrokerId(broker))
            .map(|s| s.1)
            .expect("broker has a share")
    }

    const LIMIT: f64 = 10_000_000.0;

    #[test]
    fn shares_always_sum_to_the_limit() {
        let cases: Vec<Vec<BrokerDemand>> = vec![
            vec![d(1, 0.0, None)],
            vec![d(1, 0.0, None), d(2, 0.0, None), d(3, 0.0, None)],
            vec![
                d(1, 9e6, Some(3.3e6)),
                d(2, 3.3e6, Some(3.3e6)),
                d(3, 0.0, None),
            ],
            vec![d(1, 1e3, Some(5e6)), d(2, 2e3, Some(5e6))],
            vec![
                d(1, 5e7, None),
                d(2, 5e7, None),
                d(3, 5e7, None),
                d(4, 1.0, Some(1.0)),
            ],
        ];
        for demands in cases {
            let shares = decide_quota_share(LIMIT, &demands);
            assert_eq!(shares.len(), demands.len());
            assert!(
                (sum(&shares) - LIMIT).abs() < 1e-3,
                "{demands:?} -> {shares:?}"
            );
            assert!(shares.iter().all(|s| s.1 > 0.0), "{shares:?}");
        }
        assert!(decide_quota_share(LIMIT, &[]).is_empty());
    }

    #[test]
    fn brokers_that_all_want_more_split_evenly() {
        let s = decide_quota_share(
            LIMIT,
            &[d(1, 3.3e6, None), d(2, 3.4e6, None), d(3, 3.3e6, None)],
        );
        for b in 1..=3 {
            assert!((of(&s, b) - LIMIT / 3.0).abs() < 1.0, "{s:?}");
        }
    }

    #[test]
    fn shares_follow_demand_and_unused_share_moves_to_busy_brokers() {
        // Broker 1 is throttled at its even part; 2 uses a little; 3 is idle.
        let third = LIMIT / 3.0;
        let s = decide_quota_share(
            LIMIT,
            &[
                d(1, third, Some(third)),
                d(2, 1e6, Some(third)),
                d(3, 0.0, Some(third)),
            ],
        );
        let floor = LIMIT * FLOOR_FRACTION / 3.0;
        // The idle one keeps its floor; the light one its use plus headroom; the busy one the rest.
        assert!((of(&s, 3) - floor).abs() < 1.0, "{s:?}");
        assert!((of(&s, 2) - 1e6 * HEADROOM).abs() < 1.0, "{s:?}");
        assert!(
            (of(&s, 1) - (LIMIT - floor - 1e6 * HEADROOM)).abs() < 1.0,
            "{s:?}"
        );
        // Next round broker 1 uses its larger share: it is still the one that gets it, and the
        // light broker is not mistaken for a saturated one (headroom).
        let s2 = decide_quota_share(
            LIMIT,
            &[
                d(1, of(&s, 1), Some(of(&s, 1))),
                d(2, 1e6, Some(of(&s, 2))),
                d(3, 0.0, Some(of(&s, 3))),
            ],
        );
        for b in 1..=3 {
            assert!(
                (of(&s2, b) - of(&s, b)).abs() < 1.0,
                "stable: {s:?} then {s2:?}"
            );
        }
        // When nobody is throttled, what is left goes by traffic.
        let s3 = decide_quota_share(LIMIT, &[d(1, 2e6, Some(5e6)), d(2, 1e6, Some(5e6))]);
        assert!(of(&s3, 1) > of(&s3, 2), "{s3:?}");
        assert!((sum(&s3) - LIMIT).abs() < 1e-3);
    }

    #[test]
    fn a_raise_waits_for_the_room_the_others_give_back() {
        assert_eq!(decide_handout(6.0, 10.0, 3.0), 6.0);
        assert_eq!(decide_handout(6.0, 10.0, 6.0), 4.0);
        assert_eq!(decide_handout(6.0, 10.0, 12.0), 0.0);
    }

    #[test]
    fn an_idle_broker_keeps_a_floor() {
        let s = decide_quota_share(LIMIT, &[d(1, 5e7, Some(9e6)), d(2, 0.0, Some(1e6))]);
        assert!(
            (of(&s, 2) - LIMIT * FLOOR_FRACTION / 2.0).abs() < 1.0,
            "{s:?}"
        );
        assert!(of(&s, 1) > 0.9 * LIMIT, "{s:?}");
    }

    fn key() -> SharedQuotaKey {
        SharedQuotaKey {
            direction: SharedDirection::Produce,
            entity: SharedEntity::Topic("t".into()),
        }
    }

    fn report(at: Instant, rate: f64, limit: f64) -> BrokerReport {
        BrokerReport {
            at,
            usage: vec![QuotaUsage {
                key: key(),
                limit,
                rate,
            }],
        }
    }

    #[test]
    fn a_broker_that_stops_reporting_gives_its_share_back() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(4);
        let third = LIMIT / 3.0;
        let mut reports = BTreeMap::new();
        for b in 1..=3 {
            reports.insert(BrokerId(b), report(t0, third, LIMIT));
        }
        let shares = decide_quota_shares(&reports, &HashMap::new(), t0, timeout);
        assert_eq!(shares[&key()].len(), 3);
        // Broker 3 goes silent; 1 and 2 keep reporting at their shares.
        let t1 = t0 + Duration::from_secs(5);
        for b in 1..=2 {
            reports.insert(BrokerId(b), report(t1, third, LIMIT));
        }
        let shares = decide_quota_shares(&reports, &shares, t1, timeout);
        let by_broker = &shares[&key()];
        assert_eq!(by_broker.len(), 2, "{by_broker:?}");
        for b in 1..=2 {
            assert!(
                (by_broker[&BrokerId(b)] - LIMIT / 2.0).abs() < 1.0,
                "{by_broker:?}"
            );
        }
        // A broker whose image lags a lowered limit does not raise it.
        reports.insert(BrokerId(2), report(t1, third, LIMIT / 2.0));
        let shares = decide_quota_shares(&reports, &HashMap::new(), t1, timeout);
        let total: f64 = shares[&key()].values().sum();
        assert!((total - LIMIT / 2.0).abs() < 1e-3);
    }

    #[test]
    fn a_new_term_answers_only_once_settled_and_forgets_the_old_term() {
        let t0 = Instant::now();
        let beat = Duration::from_millis(500);
        let timeout = Duration::from_secs(4);
        let mut book = QuotaShareBook::default();
        let usage = |rate| {
            vec![QuotaUsage {
                key: key(),
                limit: LIMIT,
                rate,
            }]
        };
        // A new active controller has heard from one broker only: it gives nothing yet.
        assert_eq!(
            book.report(7, BrokerId(1), usage(5e6), t0, beat, timeout),
            None
        );
        let t1 = t0 + beat * 2;
        assert!(book
            .report(7, BrokerId(2), usage(5e6), t1, beat, timeout)
            .is_some());
        let s = book
            .report(7, BrokerId(1), usage(5e6), t1, beat, timeout)
            .expect("settled");
        assert_eq!(s.len(), 1);
        assert!((s[0].share - LIMIT / 2.0).abs() < 1.0, "{s:?}");
        // Broker 2 goes idle: broker 1's raise waits until broker 2 has handed its share back,
        // so the shares held never sum past the limit.
        let t2 = t1 + beat;
        let s = book
            .report(7, BrokerId(1), usage(5e6), t2, beat, timeout)
            .expect("settled");
        assert!((s[0].share - LIMIT / 2.0).abs() < 1.0, "{s:?}");
        let s2 = book
            .report(7, BrokerId(2), usage(0.0), t2, beat, timeout)
            .expect("settled");
        let s1 = book
            .report(7, BrokerId(1), usage(5e6), t2 + beat, beat, timeout)
            .expect("settled");
        assert!(
            (s2[0].share - LIMIT * FLOOR_FRACTION / 2.0).abs() < 1.0,
            "{s2:?}"
        );
        assert!(
            (s1[0].share + s2[0].share - LIMIT).abs() < 1.0,
            "{s1:?} {s2:?}"
        );
        // Another term: the book starts over.
        assert_eq!(
            book.report(8, BrokerId(1), usage(5e6), t1, beat, timeout),
            None
        );
        assert_eq!(book.reports.len(), 1);
    }
}
