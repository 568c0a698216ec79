//! The node configs of the log dirs' disk pressure, read into the log's settings.

use std::path::PathBuf;

use super::{ConfigError, NodeConfig};
use crate::log::disk_pressure::{DiskPressureConfig, DiskPressureMarks};

const LOW: &str = "strata.log.dir.disk.low.watermark.ratio";
const HIGH: &str = "strata.log.dir.disk.high.watermark.ratio";
const REFUSE: &str = "strata.log.dir.disk.refuse.ratio";

impl NodeConfig {
    /// `strata.log.dir.disk.*`: the marks must be ordered `0 < low < high <= refuse <= 1`.
    pub fn disk_pressure(&self) -> Result<DiskPressureConfig, ConfigError> {
        let ratio = |key: &str| self.get(key).parse::<f64>().unwrap_or_default();
        let marks = DiskPressureMarks {
            low_watermark_ratio: ratio(LOW),
            high_watermark_ratio: ratio(HIGH),
            refuse_ratio: ratio(REFUSE),
        };
        let invalid = |key: &str, reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: self.get(key).into(),
            reason: reason.into(),
        };
        for (key, r) in [
            (LOW, marks.low_watermark_ratio),
            (HIGH, marks.high_watermark_ratio),
            (REFUSE, marks.refuse_ratio),
        ] {
            if r.is_nan() {
                return Err(invalid(key, "Not a number"));
            }
        }
        if marks.low_watermark_ratio <= 0.0 {
            return Err(invalid(LOW, "Value must be more than 0"));
        }
        if marks.high_watermark_ratio <= marks.low_watermark_ratio {
            return Err(invalid(HIGH, &format!("Value must be more than {LOW}")));
        }
        if marks.refuse_ratio < marks.high_watermark_ratio {
            return Err(invalid(REFUSE, &format!("Value must be at least {HIGH}")));
        }
        if marks.refuse_ratio > 1.0 {
            return Err(invalid(REFUSE, "Value must be no more than 1"));
        }
        let file = self.get("strata.test.log.dir.disk.usage.file");
        Ok(DiskPressureConfig {
            marks,
            check_interval_ms: self.get_i64("strata.log.dir.disk.check.interval.ms").max(1) as u64,
            usage_file: (!file.is_empty()).then(|| PathBuf::from(file)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigSource;

    #[test]
    fn defaults_and_ordering_of_the_marks() {
        let mut node = NodeConfig::defaults();
        let c = node.disk_pressure().expect("defaults");
        assert_eq!(c.marks, DiskPressureMarks::default());
        assert_eq!((c.check_interval_ms, c.usage_file), (5000, None));
        for (key, value, bad) in [
            (HIGH, "0.7", HIGH),
            (REFUSE, "0.85", REFUSE),
            (REFUSE, "1.5", REFUSE),
            (LOW, "0", LOW),
            (HIGH, "NaN", HIGH),
        ] {
            let mut n = NodeConfig::defaults();
            n.set(key, value, ConfigSource::File).expect("a number");
            match n.disk_pressure() {
                Err(ConfigError::InvalidValue { key, .. }) => assert_eq!(key, bad),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
        node.set(REFUSE, "0.9", ConfigSource::File).expect("set");
        assert_eq!(
            node.disk_pressure()
                .expect("refuse = high")
                .marks
                .refuse_ratio,
            0.9
        );
    }
}
