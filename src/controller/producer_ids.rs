//! [`ProducerIdManager`]: producer ids handed out from blocks the controller allocates.

use std::sync::{Arc, Mutex};

use super::{Controller, ControllerError};
use crate::model::BrokerId;

/// How many producer ids a broker takes from the controller at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// Producer ids unique in the cluster: each broker takes a block of ids from the controller
/// (a committed metadata record, so no block is handed out twice) and gives them out one by one
/// (Kafka's `RPCProducerIdManager`).
#[derive(Debug)]
pub struct ProducerIdManager {
    controller: Arc<Controller>,
    node_id: BrokerId,
    // Short section: hand out the next id of the current block, `(next, end)`.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub fn new(controller: Arc<Controller>, node_id: BrokerId) -> ProducerIdManager {
        ProducerIdManager {
            controller,
            node_id,
            block: Mutex::new((0, 0)),
        }
    }

    /// A producer id unique in the cluster, from this broker's current block. Ids that mirror
    /// links reserved (they appear in mirrored data) are skipped, even in a block taken
    /// before they were reserved.
    pub async fn next_producer_id(&self) -> Result<i64, ControllerError> {
        let reserved_below = self.controller.image().mirrors.producer_ids_below;
        if let Some(id) = self.take(reserved_below) {
            return Ok(id);
        }
        let first = self
            .controller
            .allocate_producer_ids(self.node_id, PRODUCER_ID_BLOCK)
            .await?;
        if let Ok(mut block) = self.block.lock() {
            *block = (first + 1, first + PRODUCER_ID_BLOCK);
        }
        Ok(first)
    }

    fn take(&self, reserved_below: i64) -> Option<i64> {
        let mut block = self.block.lock().ok()?;
        block.0 = block.0.max(reserved_below);
        if block.0 < block.1 {
            block.0 += 1;
            Some(block.0 - 1)
        } else {
            None
        }
    }
}
