//! [`MetadataClient`]: the controller as the rest of a broker uses it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{effective_node_config, ReplicaManager};
use crate::config::NodeConfig;
use crate::controller::{Controller, ControllerError, MetadataImage, MetadataRecord};

/// The metadata image, the node config with the image's dynamic broker configs laid over it,
/// and commits that return only once this broker's replicas reflect them (so that a partition
/// a request just created can be found by the next request). Handlers, the group coordinator
/// and the broker's own tasks share one; cloning it is cheap.
#[derive(Debug, Clone)]
pub struct MetadataClient {
    controller: Arc<Controller>,
    replicas: Arc<ReplicaManager>,
    /// The node config as started.
    node: NodeConfig,
    shutdown: CancellationToken,
}

impl MetadataClient {
    pub fn new(
        controller: Arc<Controller>,
        replicas: Arc<ReplicaManager>,
        node: NodeConfig,
        shutdown: CancellationToken,
    ) -> MetadataClient {
        MetadataClient {
            controller,
            replicas,
            node,
            shutdown,
        }
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    /// The node config with dynamic broker configs applied.
    pub fn node_config(&self) -> NodeConfig {
        effective_node_config(&self.node, &self.image())
    }

    /// The node config as started, without dynamic changes.
    pub fn static_node_config(&self) -> &NodeConfig {
        &self.node
    }

    /// Commits a decision and waits until this broker's replicas reflect it. `decide` may run
    /// more than once: again whenever the image moved before its records were committed.
    pub async fn commit<T>(
        &self,
        decide: impl FnMut(&MetadataImage) -> Result<(T, Vec<MetadataRecord>), ControllerError>,
    ) -> Result<T, ControllerError> {
        let (value, image) = self.controller.commit(decide).await?;
        // The task that applies images stops at shutdown; a request in flight then must not wait
        // for an apply that will never come (it would hold graceful shutdown for 30 s).
        tokio::select! {
            () = self.replicas.wait_applied(image.offset) => {}
            () = self.shutdown.cancelled() => {}
        }
        Ok(value)
    }
}
