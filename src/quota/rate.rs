//! Kafka's sampled rate (`org.apache.kafka.common.metrics.stats.Rate` over a `SampledStat`),
//! and the throttle time a rate over its bound earns (`QuotaUtils.throttleTime`).
//!
//! A rate is kept as at most `quota.window.num` samples, each covering up to
//! `quota.window.size.seconds`; a new sample starts at the first value recorded after the
//! current one is complete. Samples older than the whole window are dropped before measuring.
//! The rate is the sum of the samples over the time since the oldest one began, padded to at
//! least `num - 1` full windows: a client that just arrived is measured over the full window,
//! not over its first millisecond, so its first burst does not count as a huge rate.

use std::collections::VecDeque;

/// The window a rate is measured over: `num` samples of `size_ms` each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindow {
    pub num: u32,
    pub size_ms: u64,
}

impl QuotaWindow {
    /// The whole window; also the longest throttle a client is given (Kafka's
    /// `maxThrottleTimeMs`).
    pub fn total_ms(&self) -> u64 {
        self.size_ms * u64::from(self.num)
    }
}

impl Default for QuotaWindow {
    /// Kafka's defaults: 11 samples of one second.
    fn default() -> Self {
        QuotaWindow {
            num: 11,
            size_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: i64,
    total: f64,
}

/// A rate per second over sampled windows. Holds at most `QuotaWindow::num` samples.
#[derive(Debug, Clone, Default)]
pub struct SampledRate {
    samples: VecDeque<Sample>,
}

impl SampledRate {
    /// Adds `value` at `now_ms`.
    pub fn record(&mut self, value: f64, now_ms: i64, window: &QuotaWindow) {
        let complete = self
            .samples
            .back()
            .is_none_or(|s| now_ms - s.start_ms >= window.size_ms as i64);
        if complete {
            self.samples.push_back(Sample {
                start_ms: now_ms,
                total: 0.0,
            });
            while self.samples.len() > window.num.max(1) as usize {
                self.samples.pop_front();
            }
        }
        if let Some(s) = self.samples.back_mut() {
            s.total += value;
        }
    }

    /// Drops samples that began a whole window or more before `now_ms`.
    fn purge(&mut self, now_ms: i64, window: &QuotaWindow) {
        let expire = window.total_ms() as i64;
        self.samples.retain(|s| now_ms - s.start_ms < expire);
    }

    /// The time the rate is measured over at `now_ms`, in ms: since the oldest sample began,
    /// at least `num - 1` full windows, at least 1.
    pub fn window_ms(&mut self, now_ms: i64, window: &QuotaWindow) -> u64 {
        self.purge(now_ms, window);
        let oldest = self.samples.front().map_or(now_ms, |s| s.start_ms);
        let mut elapsed = (now_ms - oldest).max(0) as u64;
        let full_windows = elapsed / window.size_ms.max(1);
        let min_full_windows = u64::from(window.num.saturating_sub(1));
        if full_windows < min_full_windows {
            elapsed += (min_full_windows - full_windows) * window.size_ms;
        }
        elapsed.max(1)
    }

    /// Units per second at `now_ms`.
    pub fn rate(&mut self, now_ms: i64, window: &QuotaWindow) -> f64 {
        let window_ms = self.window_ms(now_ms, window);
        let total: f64 = self.samples.iter().map(|s| s.total).sum();
        total / (window_ms as f64 / 1000.0)
    }

    /// Whether every sample has aged out: the rate is zero and the state can be dropped.
    pub fn is_idle(&mut self, now_ms: i64, window: &QuotaWindow) -> bool {
        self.purge(now_ms, window);
        self.samples.is_empty()
    }
}

/// How long a client measured at `rate` over `window_ms` waits so that its rate falls back to
/// `bound`: the excess over the bound, as a share of the bound, of the measured window. Zero
/// when within the bound; at most the whole window (`max_ms`).
pub fn throttle_time_ms(rate: f64, bound: f64, window_ms: u64, max_ms: u64) -> u64 {
    if rate <= bound || bound <= 0.0 {
        return 0;
    }
    let ms = ((rate - bound) / bound * window_ms as f64).round();
    (ms as u64).min(max_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: QuotaWindow = QuotaWindow {
        num: 11,
        size_ms: 1000,
    };

    #[test]
    fn a_new_client_is_measured_over_the_padded_window() {
        let mut r = SampledRate::default();
        r.record(10_000.0, 0, &W);
        // One sample, begun now: padded to 10 full windows of a second.
        assert_eq!(r.window_ms(0, &W), 10_000);
        assert_eq!(r.rate(0, &W), 1_000.0);
        // 2.5 s later, still under 10 full windows: still 10 s (+ the 500 ms past the 2 full).
        assert_eq!(r.window_ms(2_500, &W), 10_500);
    }

    #[test]
    fn samples_roll_and_age_out() {
        let mut r = SampledRate::default();
        for t in 0..20 {
            r.record(100.0, t * 1000, &W);
        }
        // Eleven samples kept: t = 9..=19 s, 1100 units over 19 - 9 = 10 s.
        assert_eq!(r.samples.len(), 11);
        assert_eq!(r.window_ms(19_000, &W), 10_000);
        assert!((r.rate(19_000, &W) - 110.0).abs() < 1e-9);
        // Values within one window share a sample.
        r.record(50.0, 19_999, &W);
        assert_eq!(r.samples.len(), 11);
        assert_eq!(r.samples.back().map(|s| s.total), Some(150.0));
        // After a whole window of silence nothing is left.
        assert!(!r.is_idle(29_999, &W));
        assert!(r.is_idle(30_000, &W));
        assert_eq!(r.rate(30_000, &W), 0.0);
    }

    #[test]
    fn throttle_time_pays_back_the_excess() {
        // 2000 units/s measured over 10 s against a bound of 1000: the 10 000 units of excess
        // take 10 s at the bound.
        assert_eq!(throttle_time_ms(2000.0, 1000.0, 10_000, 11_000), 10_000);
        assert_eq!(throttle_time_ms(1500.0, 1000.0, 10_000, 11_000), 5_000);
        assert_eq!(throttle_time_ms(1000.0, 1000.0, 10_000, 11_000), 0);
        assert_eq!(throttle_time_ms(999.0, 1000.0, 10_000, 11_000), 0);
        // Capped at the whole window.
        assert_eq!(throttle_time_ms(1e9, 1000.0, 10_000, 11_000), 11_000);
    }

    #[test]
    fn a_steady_client_at_its_bound_is_not_throttled_and_above_it_is() {
        let bound = 1000.0;
        // Throttles of a client sending `value` every 100 ms for 30 s.
        let throttles = |value: f64| {
            let mut r = SampledRate::default();
            (0..300)
                .map(|i| {
                    let now = i * 100;
                    r.record(value, now, &W);
                    let window_ms = r.window_ms(now, &W);
                    throttle_time_ms(r.rate(now, &W), bound, window_ms, W.total_ms())
                })
                .collect::<Vec<u64>>()
        };
        // Below the bound: never.
        assert!(throttles(90.0).iter().all(|t| *t == 0));
        // At the bound: a value is counted the moment it arrives, before the time it is worth
        // has passed, so each is held back by at most its own worth (100 ms), as in Kafka.
        assert!(throttles(100.0).iter().all(|t| *t <= 100));
        let mut r = SampledRate::default();
        for i in 0..300 {
            r.record(200.0, i * 100, &W);
        }
        let now = 29_900;
        let t = throttle_time_ms(r.rate(now, &W), bound, r.window_ms(now, &W), W.total_ms());
        // Twice the bound over ~10 s: about 10 s to pay back.
        assert!((9_000..=11_000).contains(&t), "{t}");
    }
}
