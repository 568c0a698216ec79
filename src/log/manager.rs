//! `LogManager`: every partition log under the configured log dirs. (Contract stub.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{LogConfig, Result, UnifiedLog};
use crate::clock::SharedClock;
use crate::model::TopicPartition;

/// Owns the partition logs of this node and their background work (retention, interval
/// flushes, compaction).
#[derive(Debug)]
pub struct LogManager {
    #[allow(dead_code)]
    log_dirs: Vec<PathBuf>,
    #[allow(dead_code)]
    clock: SharedClock,
    // Short critical sections only (lookups and inserts), never held across I/O or `.await`.
    #[allow(dead_code)]
    logs: Mutex<HashMap<TopicPartition, Arc<UnifiedLog>>>,
}

#[allow(unused_variables)]
impl LogManager {
    /// Opens every partition directory found under `log_dirs`, recovering each;
    /// `config_for` gives the config of a topic by name.
    pub fn open(
        log_dirs: Vec<PathBuf>,
        clock: SharedClock,
        config_for: &dyn Fn(&str) -> LogConfig,
    ) -> Result<LogManager> {
        todo!()
    }

    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<UnifiedLog>> {
        todo!()
    }

    /// Returns the log of `tp`, creating an empty one if absent.
    pub fn get_or_create(&self, tp: &TopicPartition, config: LogConfig) -> Result<Arc<UnifiedLog>> {
        todo!()
    }

    /// Every partition log present.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<UnifiedLog>)> {
        todo!()
    }

    /// Closes the log of `tp` and removes its data from disk.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        todo!()
    }

    /// Spawns retention, interval-flush and cleaner tasks on the current tokio runtime; they stop
    /// when `shutdown` is cancelled.
    pub fn start_background(self: &Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        todo!()
    }

    /// Closes every log (flush and checkpoints).
    pub fn shutdown(&self) -> Result<()> {
        todo!()
    }
}
