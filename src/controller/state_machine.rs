//! The state machine of the metadata quorum: folds committed entries into the
//! [`MetadataImage`] and publishes each new image; builds and installs snapshots.
//!
//! A snapshot is `magic "SMS1" | crc32 (crc32fast) of the body: u32 BE | body`, the body the
//! zstd-compressed JSON of the snapshot's meta and image. The latest one is kept at
//! `{dir}/snapshot` (replaced atomically) and restored at startup; openraft then replays the
//! committed log after it. The same bytes are what a lagging node is sent.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::image::MetadataImage;
use super::quorum::{LogId, MetadataWrite, NodeId, StorageError, TypeConfig, WriteOutcome};

const MAGIC: &[u8; 4] = b"SMS1";
const ZSTD_LEVEL: i32 = 3;

/// Called with every applied entry's log id, write and outcome (the simulator's history check).
pub type ApplyObserver = Arc<dyn Fn(LogId, Option<&MetadataWrite>, WriteOutcome) + Send + Sync>;

#[derive(Clone)]
pub struct MetadataStateMachine {
    // Short sections that never await.
    inner: Arc<Mutex<SmState>>,
    observer: Option<ApplyObserver>,
}

impl std::fmt::Debug for MetadataStateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataStateMachine")
            .finish_non_exhaustive()
    }
}

struct SmState {
    dir: PathBuf,
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
    snapshot_seq: u64,
    image_tx: watch::Sender<Arc<MetadataImage>>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: MetadataImage,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(&std::io::Error::other(e.to_string())).into()
}

/// Encodes a snapshot file.
pub fn encode_snapshot(
    meta: &SnapshotMeta<NodeId, BasicNode>,
    image: &MetadataImage,
) -> std::io::Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Ref<'a> {
        meta: &'a SnapshotMeta<NodeId, BasicNode>,
        image: &'a MetadataImage,
    }
    let json = serde_json::to_vec(&Ref { meta, image }).map_err(std::io::Error::other)?;
    let body = zstd::bulk::compress(&json, ZSTD_LEVEL)?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a snapshot file, checking its magic and CRC.
pub fn decode_snapshot(
    bytes: &[u8],
) -> std::io::Result<(SnapshotMeta<NodeId, BasicNode>, MetadataImage)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(bad("not a metadata snapshot"));
    }
    let crc = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let body = &bytes[8..];
    if crc32fast::hash(body) != crc {
        return Err(bad("metadata snapshot checksum mismatch"));
    }
    let mut json = Vec::new();
    zstd::stream::copy_decode(body, &mut json)?;
    let b: SnapshotBody = serde_json::from_slice(&json).map_err(std::io::Error::other)?;
    Ok((b.meta, b.image))
}

impl MetadataStateMachine {
    /// Restores the latest snapshot under `dir`, if any.
    pub fn open(
        dir: &Path,
        observer: Option<ApplyObserver>,
    ) -> std::io::Result<(MetadataStateMachine, watch::Receiver<Arc<MetadataImage>>)> {
        crate::log::checkpoint::create_dir_all_durable(dir)?;
        let (mut image, mut last_applied, mut membership, mut snapshot) = (
            MetadataImage::default(),
            None,
            StoredMembership::default(),
            None,
        );
        match std::fs::read(dir.join("snapshot")) {
            Ok(bytes) => {
                let (meta, img) = decode_snapshot(&bytes)?;
                image = img;
                last_applied = meta.last_log_id;
                membership = meta.last_membership.clone();
                snapshot = Some((meta, bytes));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let image = Arc::new(image);
        let (image_tx, image_rx) = watch::channel(image.clone());
        Ok((
            MetadataStateMachine {
                inner: Arc::new(Mutex::new(SmState {
                    dir: dir.to_path_buf(),
                    image,
                    last_applied,
                    membership,
                    snapshot,
                    snapshot_seq: 0,
                    image_tx,
                })),
                observer,
            },
            image_rx,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, SmState> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SmState {
    fn persist_snapshot(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join("snapshot.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join("snapshot"))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MetadataStateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (image, meta) = {
            let mut s = self.lock();
            s.snapshot_seq += 1;
            let id = match s.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, s.snapshot_seq),
                None => format!("0-0-{}", s.snapshot_seq),
            };
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: id,
            };
            (s.image.clone(), meta)
        };
        // Encoded outside the lock: the image is an immutable Arc.
        let bytes = encode_snapshot(&meta, &image).map_err(sm_err)?;
        let mut s = self.lock();
        s.persist_snapshot(&bytes).map_err(sm_err)?;
        s.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for MetadataStateMachine {
    type SnapshotBuilder = MetadataStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let s = self.lock();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<WriteOutcome>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.lock();
        // One copy of the image per batch of entries, not per record.
        let mut next: Option<MetadataImage> = None;
        let mut out = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            let current = next.as_ref().map(|i| i.offset).unwrap_or(s.image.offset);
            let outcome = match &entry.payload {
                EntryPayload::Blank => WriteOutcome::Applied { offset: current },
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    WriteOutcome::Applied { offset: current }
                }
                EntryPayload::Normal(write) => {
                    if write.expected_offset.is_some_and(|e| e != current) {
                        WriteOutcome::Conflict { offset: current }
                    } else {
                        let img = next.get_or_insert_with(|| (*s.image).clone());
                        for record in &write.records {
                            img.apply(entry.log_id.index, record);
                        }
                        WriteOutcome::Applied {
                            offset: entry.log_id.index,
                        }
                    }
                }
            };
            if let Some(obs) = &self.observer {
                let w = match &entry.payload {
                    EntryPayload::Normal(w) => Some(w),
                    _ => None,
                };
                obs(entry.log_id, w, outcome);
            }
            out.push(outcome);
        }
        if let Some(next) = next {
            let next = Arc::new(next);
            s.image = next.clone();
            s.image_tx.send_replace(next);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let (_, image) = decode_snapshot(&bytes).map_err(sm_err)?;
        // Re-encode with the meta openraft gives, so the stored file names this snapshot.
        let bytes = encode_snapshot(meta, &image).map_err(sm_err)?;
        let mut s = self.lock();
        s.persist_snapshot(&bytes).map_err(sm_err)?;
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        let image = Arc::new(image);
        s.image = image.clone();
        s.image_tx.send_replace(image);
        s.snapshot = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let s = self.lock();
        Ok(s.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
