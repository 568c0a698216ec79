//! The Raft log of the metadata quorum: `{log.dir}/__cluster_metadata/raft/`.
//!
//! - `log`: append-only entries, each `length: u32 BE | crc32: u32 BE | payload`, the payload
//!   the JSON of an openraft `Entry` and the CRC (`crc32fast`) over the payload. Entries are
//!   consecutive by index. A truncation (a new leader overwrote an uncommitted suffix) cuts the
//!   file at the first removed entry. On open a torn or corrupt tail is cut at the last whole
//!   entry: such an entry was never acknowledged.
//! - `vote`, `purged`, `committed`: small JSON files replaced atomically (write, fsync, rename).
//!
//! # To ensure correctness
//! - An append or a vote is acknowledged to openraft only after fsync, so a vote is never
//!   forgotten and an acknowledged entry never lost (Raft's persistence rule).
//! - Writes are serialised by one mutex; nothing runs between the write and its fsync.
//! - The file may still hold entries at or below `purged` (they are dropped from memory and
//!   skipped on open); it is rewritten once they are most of it.
//!
//! The conformance test (`openraft::testing::Suite`) runs against this store in tests/controller.rs.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, OptionalSend, RaftLogId, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::quorum::{LogId, StorageError, TypeConfig, Vote};

const HEADER_BYTES: usize = 8;
/// Far above any real entry; a length past it is corruption.
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;
/// Rewrite the file once this many purged entries sit at its front (and they are most of it).
const REWRITE_PURGED_ENTRIES: u64 = 4096;

#[derive(Debug, Clone)]
pub struct MetadataLogStore {
    // Short sections that never await: every operation is one synchronous write and fsync.
    inner: Arc<Mutex<LogFiles>>,
}

#[derive(Debug)]
struct LogFiles {
    dir: PathBuf,
    file: File,
    /// index -> (file position, entry)
    entries: BTreeMap<u64, (u64, Entry<TypeConfig>)>,
    end_pos: u64,
    /// Entries in the file that are at or below `purged`.
    purged_in_file: u64,
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

fn io_err(e: &std::io::Error) -> StorageError {
    StorageIOError::write_logs(e).into()
}

fn read_json<T: DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces `path` atomically; with `durable`, fsyncs the file and the directory too.
fn write_json<T: Serialize>(path: &Path, value: &T, durable: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut f = File::create(&tmp)?;
    f.write_all(&bytes)?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if durable {
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
    }
    Ok(())
}

fn encode(entry: &Entry<TypeConfig>, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let payload = serde_json::to_vec(entry)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

impl MetadataLogStore {
    pub fn open(dir: &Path) -> std::io::Result<MetadataLogStore> {
        crate::log::checkpoint::create_dir_all_durable(dir)?;
        let path = dir.join("log");
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if created {
            // The entries' fsyncs make their bytes durable, not the file's name.
            File::open(dir)?.sync_all()?;
        }
        let vote: Option<Vote> = read_json(&dir.join("vote"))?;
        // `committed` is replaced without fsync (see `save_committed`), so a power cut can
        // leave the new name with no data yet: empty or torn. It is only a hint, so such a
        // file reads as absent rather than keeping the node from starting.
        let committed: Option<LogId> = match read_json(&dir.join("committed")) {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(dir = %dir.display(), error = %e, "unreadable committed index after a crash; replaying from the snapshot");
                None
            }
            other => other?,
        };
        let purged: Option<LogId> = read_json(&dir.join("purged"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let mut entries = BTreeMap::new();
        let mut purged_in_file = 0;
        let mut pos = 0usize;
        while pos + HEADER_BYTES <= bytes.len() {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_be_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            let end = pos + HEADER_BYTES + len;
            if len > MAX_ENTRY_BYTES || end > bytes.len() {
                break;
            }
            let payload = &bytes[pos + HEADER_BYTES..end];
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(entry) = serde_json::from_slice::<Entry<TypeConfig>>(payload) else {
                break;
            };
            let index = entry.get_log_id().index;
            if purged.is_some_and(|p| index <= p.index) {
                purged_in_file += 1;
            } else {
                entries.insert(index, (pos as u64, entry));
            }
            pos = end;
        }
        if pos < bytes.len() {
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = bytes.len(), "truncating torn tail of the metadata log");
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(pos as u64))?;
        Ok(MetadataLogStore {
            inner: Arc::new(Mutex::new(LogFiles {
                dir: dir.to_path_buf(),
                file,
                entries,
                end_pos: pos as u64,
                purged_in_file,
                vote,
                committed,
                purged,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogFiles> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl LogFiles {
    fn truncate_from(&mut self, index: u64) -> std::io::Result<()> {
        let Some((&first, &(pos, _))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        self.file.set_len(pos)?;
        self.file.sync_data()?;
        self.file.seek(SeekFrom::Start(pos))?;
        self.end_pos = pos;
        self.entries.split_off(&first);
        Ok(())
    }

    /// Writes the live entries to a new file and swaps it in.
    fn rewrite(&mut self) -> std::io::Result<()> {
        let path = self.dir.join("log");
        let tmp = self.dir.join("log.rewrite");
        let mut buf = Vec::new();
        let mut positions = Vec::with_capacity(self.entries.len());
        for (index, (_, entry)) in &self.entries {
            positions.push((*index, buf.len() as u64));
            encode(entry, &mut buf)?;
        }
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        file.seek(SeekFrom::End(0))?;
        self.file = file;
        self.end_pos = buf.len() as u64;
        for (index, pos) in positions {
            if let Some(e) = self.entries.get_mut(&index) {
                e.0 = pos;
            }
        }
        self.purged_in_file = 0;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for MetadataLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let inner = self.lock();
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for MetadataLogStore {
    type LogReader = MetadataLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(_, e)| *e.get_log_id())
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir.join("vote"), vote, true)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        // Not fsynced: a lost `committed` only means replaying less at startup until the
        // leader says more; it never claims more than this node's durable log holds.
        write_json(&inner.dir.join("committed"), &committed, false).map_err(|e| io_err(&e))?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut buf = Vec::new();
        let mut placed = Vec::new();
        for entry in entries {
            let pos = inner.end_pos + buf.len() as u64;
            encode(&entry, &mut buf).map_err(|e| io_err(&e))?;
            placed.push((pos, entry));
        }
        let end = inner.end_pos;
        let result = inner
            .file
            .write_all(&buf)
            .and_then(|()| inner.file.sync_data());
        if let Err(e) = result {
            // Leave no partial entry behind: the next append must start on a boundary.
            let _ = inner.file.set_len(end);
            let _ = inner.file.seek(SeekFrom::Start(end));
            callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
            return Err(io_err(&e));
        }
        inner.end_pos += buf.len() as u64;
        for (pos, entry) in placed {
            inner.entries.insert(entry.get_log_id().index, (pos, entry));
        }
        drop(inner);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock()
            .truncate_from(log_id.index)
            .map_err(|e| io_err(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir.join("purged"), &log_id, true).map_err(|e| io_err(&e))?;
        inner.purged = Some(log_id);
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.purged_in_file += inner.entries.len() as u64;
        inner.entries = keep;
        if inner.purged_in_file >= REWRITE_PURGED_ENTRIES
            && inner.purged_in_file as usize > inner.entries.len()
        {
            inner.rewrite().map_err(|e| io_err(&e))?;
        }
        Ok(())
    }
}
