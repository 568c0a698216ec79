//! Reading a coordinator's partition (`__consumer_offsets`, `__transaction_state`) from its
//! start when the coordinator loads it, on a blocking thread. With
//! `strata.remote.storage.internal.topics.enable` these topics are tiered, and the part of the
//! log below the local log start is read from the remote log (compacted there as any tiered
//! compacted topic).

use std::time::Duration;

use super::partition::{Partition, PartitionError};
use crate::log::FetchDataInfo;
use crate::log::PartitionLogError;
use crate::model::Offset;

/// A load that could not read its partition.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorLoadError {
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error("reading the remote part: {0}")]
    Remote(#[source] PartitionLogError),
}

/// Attempts of a remote read before the load fails (the store may be briefly unreachable).
const REMOTE_READ_ATTEMPTS: u32 = 5;

/// Whether `p`'s log is tiered here, so a load starts in the remote part.
fn tiered(p: &Partition) -> bool {
    p.log_view().has_remote_storage() && p.log().config().remote_storage_enable
}

/// The first offset a load reads: the start of the whole log, remote part included. Must be
/// called on a blocking thread of the runtime (it may wait for the remote manifest).
pub fn load_start_offset(p: &Partition) -> Result<Offset, CoordinatorLoadError> {
    if !tiered(p) {
        return Ok(p.log().local_log_start_offset());
    }
    let handle = tokio::runtime::Handle::current();
    handle
        .block_on(p.log_view().load_log_start_offset())
        .map_err(|e| CoordinatorLoadError::Remote(e.into()))
}

/// Reads committed batches at `offset` for a load, from the remote part below the local log
/// start. The answer's `local_log_start_offset` is where reading may go on when `offset` is in
/// no part (a gap): the local log start, or for a remote read the whole log's start, so that a
/// load walks the remote part to its end before it reaches the local one. Must be called on a
/// blocking thread of the runtime.
pub fn read_for_load(
    p: &Partition,
    offset: Offset,
    max_bytes: usize,
) -> Result<FetchDataInfo, CoordinatorLoadError> {
    if !tiered(p) || !p.log_view().reads_remote(offset) {
        return Ok(p.read_committed(offset, max_bytes, true)?);
    }
    let handle = tokio::runtime::Handle::current();
    let mut attempt = 0;
    loop {
        let read = handle.block_on(
            p.log_view()
                .read(offset, max_bytes, p.high_watermark(), true),
        );
        match read {
            Ok(info) => {
                return Ok(FetchDataInfo {
                    records: info.records,
                    local_log_start_offset: info.log_start_offset,
                    log_end_offset: info.log_end_offset,
                })
            }
            Err(PartitionLogError::Local(e)) => return Err(PartitionError::Log(e).into()),
            Err(e) if attempt + 1 >= REMOTE_READ_ATTEMPTS => {
                return Err(CoordinatorLoadError::Remote(e))
            }
            Err(e) => {
                tracing::warn!(partition = %p.tp, %offset, error = %e, "remote read for a coordinator load failed; retrying");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(200 << attempt));
            }
        }
    }
}
