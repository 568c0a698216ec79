//! The log dirs at startup: each is created if needed and its `meta.properties` checked.

use std::path::{Path, PathBuf};

use super::BrokerError;
use crate::config::NodeConfig;
use crate::log::meta_properties::{check_or_write, MetaPropertiesError};

/// Prepares every log dir; returns the cluster id (the dirs', the configured one, or a new
/// one). A dir beside the first (which holds the metadata log) that fails an I/O is left for
/// `LogManager::open` to start offline, as Kafka does; the first one failing stops the broker.
pub(super) fn prepare(log_dirs: &[PathBuf], node: &NodeConfig) -> Result<String, BrokerError> {
    let mut cluster_id = node.get("cluster.id").to_string();
    for (i, dir) in log_dirs.iter().enumerate() {
        match prepare_one(dir, node, &cluster_id) {
            Ok(id) => cluster_id = id,
            Err(
                e @ (BrokerError::Io { .. }
                | BrokerError::MetaProperties(MetaPropertiesError::Io { .. })),
            ) if i > 0 => {
                tracing::error!(log_dir = %dir.display(), error = %e, "log dir unusable at startup");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cluster_id)
}

/// A multi-voter cluster's dirs must have been formatted (`strata format`).
fn prepare_one(dir: &Path, node: &NodeConfig, cluster_id: &str) -> Result<String, BrokerError> {
    crate::log::checkpoint::create_dir_all_durable(dir).map_err(|source| BrokerError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let voters = node
        .get("controller.quorum.voters")
        .split(',')
        .filter(|v| !v.trim().is_empty())
        .count();
    if cluster_id.is_empty() && !dir.join("meta.properties").exists() && voters > 1 {
        return Err(BrokerError::Unformatted {
            path: dir.to_path_buf(),
        });
    }
    Ok(check_or_write(dir, node.node_id(), cluster_id)?)
}
