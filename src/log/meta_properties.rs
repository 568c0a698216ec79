//! `meta.properties`: which cluster and node a log directory belongs to.
//!
//! Format (Kafka's, version 1): `key=value` lines `version=1`, `cluster.id=<id>`,
//! `node.id=<id>`. Written once, when a directory is first used or formatted, through a
//! temporary file that is synced and renamed, and the directory synced, so that a power cut
//! leaves either no file or the whole file. A directory whose file names another node or
//! cluster is refused: its data belongs elsewhere.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::model::BrokerId;

pub const FILE_NAME: &str = "meta.properties";

#[derive(Debug, thiserror::Error)]
pub enum MetaPropertiesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} belongs to {found}; refusing to start (this node is {expected})")]
    ForeignData {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// Checks `meta.properties` in `dir` against this node, writing it on first use. Returns the
/// cluster id: the file's, or `configured_cluster`, or a new one when neither exists.
pub fn check_or_write(
    dir: &Path,
    node_id: BrokerId,
    configured_cluster: &str,
) -> Result<String, MetaPropertiesError> {
    let path = dir.join(FILE_NAME);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MetaPropertiesError::Io { path, source }
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let get = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                    .map(str::trim)
                    .unwrap_or("")
            };
            let found_node = get("node.id");
            if found_node != node_id.to_string() {
                return Err(MetaPropertiesError::ForeignData {
                    path,
                    found: format!("node.id {found_node}"),
                    expected: format!("node.id {node_id}"),
                });
            }
            let found_cluster = get("cluster.id");
            if !configured_cluster.is_empty() && found_cluster != configured_cluster {
                return Err(MetaPropertiesError::ForeignData {
                    path,
                    found: format!("cluster {found_cluster}"),
                    expected: format!("cluster {configured_cluster}"),
                });
            }
            Ok(found_cluster.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cluster_id = if configured_cluster.is_empty() {
                uuid::Uuid::new_v4().simple().to_string()
            } else {
                configured_cluster.to_string()
            };
            let tmp = dir.join("meta.properties.tmp");
            let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            file.write_all(
                format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n").as_bytes(),
            )
            .and_then(|()| file.sync_all())
            .map_err(io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
            Ok(cluster_id)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_then_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = check_or_write(dir.path(), BrokerId(3), "").expect("first use");
        assert_eq!(cluster.len(), 32, "a new cluster id");
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("written");
        assert_eq!(
            text,
            format!("version=1\ncluster.id={cluster}\nnode.id=3\n")
        );
        assert_eq!(
            check_or_write(dir.path(), BrokerId(3), "").expect("again"),
            cluster
        );
        assert_eq!(
            check_or_write(dir.path(), BrokerId(3), &cluster).expect("configured"),
            cluster
        );
        assert!(matches!(
            check_or_write(dir.path(), BrokerId(4), ""),
            Err(MetaPropertiesError::ForeignData { .. })
        ));
        assert!(matches!(
            check_or_write(dir.path(), BrokerId(3), "another"),
            Err(MetaPropertiesError::ForeignData { .. })
        ));
        assert!(!dir.path().join("meta.properties.tmp").exists());
    }
}
