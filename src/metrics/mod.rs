//! Prometheus metrics and the HTTP endpoint that serves them (`/metrics`, `/health`, `/ready`).
//!
//! One registry per process; each subsystem defines a struct of its metrics next to its code
//! and registers it once, with the helpers here.
//! Names follow `strata_<subsystem>_<what>_<unit>`, counters end in `_total`. Labels are bounded:
//! API names are a fixed set; per-topic series are created only for topics that exist.

mod http;

use prometheus::{
    Encoder, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub use http::serve_http;

pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

/// A gauge of a fractional quantity, such as seconds (Prometheus's base unit for time).
pub fn float_gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Gauge {
    let g = prometheus::Gauge::new(name, help).expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

pub fn float_gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::GaugeVec {
    let g = prometheus::GaugeVec::new(Opts::new(name, help), labels)
        .expect("metric definition is valid");
    registry
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("metric definition is valid");
    registry
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

/// Latency buckets from 100 µs to 10 s.
pub fn latency_buckets() -> Vec<f64> {
    vec![
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
}

/// The process's registry, with what belongs to no one subsystem (process CPU, memory and
/// files; log flush latency). Each subsystem defines and registers its own metrics into it
/// (`ServerMetrics` in `server`, `ReplicationMetrics` in `replication`, ...); the broker
/// creates them once at startup.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub flush_latency: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // CPU, memory, open files of this process, from /proc.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let flush_latency = crate::log::metrics().flush_latency.clone();
        registry
            .register(Box::new(flush_latency.clone()))
            .expect("metric registered once");
        let log = crate::log::metrics();
        registry
            .register(Box::new(log.log_dirs_offline.clone()))
            .expect("metric registered once");
        registry
            .register(Box::new(log.storage_errors.clone()))
            .expect("metric registered once");
        let pressure = crate::log::disk_pressure::metrics();
        for c in [
            Box::new(pressure.usage_ratio.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(pressure.state.clone()),
            Box::new(pressure.produce_refused.clone()),
            Box::new(pressure.deleted_segments.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        // Exported at zero from the start, so alerts see every series on a healthy broker.
        for kind in crate::log::dir_failure::StorageErrorKind::ALL {
            log.storage_errors.with_label_values(&[kind.label()]);
        }
        registry
            .register(Box::new(log.corrupt_ranges_repaired.clone()))
            .expect("metric registered once");
        for source in crate::log::repair::REPAIR_SOURCES {
            log.corrupt_ranges_repaired.with_label_values(&[source]);
        }
        for c in [
            Box::new(log.log_dir_moves.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(log.log_dir_move_bytes.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        for outcome in crate::log::alter_log_dirs::MOVE_OUTCOMES {
            log.log_dir_moves.with_label_values(&[outcome]);
        }
        Metrics {
            flush_latency,
            registry,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        let mut out = Vec::new();
        // Encoding text into a Vec cannot fail for well-formed families.
        let _ = prometheus::TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
