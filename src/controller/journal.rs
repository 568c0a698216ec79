//! The metadata log of a single-voter quorum: `{log.dir}/__cluster_metadata/records.log`.
//!
//! Each entry is `length: u32 BE | crc32: u32 BE | payload`, where the payload is the JSON of a
//! [`MetadataRecord`] and the CRC (`crc32fast`) covers the payload. An entry is acknowledged only
//! after fsync. On open the file is replayed; a torn or corrupt tail (a crash mid-append) is
//! truncated at the last whole entry, which was never acknowledged.
//!
//! The Raft quorum replaces this file with openraft's log store; the records stay the same.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::records::MetadataRecord;
use super::ControllerError;

const HEADER_BYTES: usize = 8;
/// Far above any real record; a length past it is corruption, not a huge record.
const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    file: File,
    next_offset: u64,
}

impl Journal {
    /// Opens the journal and returns it with every intact record, numbered from 1.
    pub(crate) fn open(
        dir: &Path,
    ) -> Result<(Journal, Vec<(u64, MetadataRecord)>), ControllerError> {
        std::fs::create_dir_all(dir).map_err(|source| ControllerError::Io {
            path: dir.into(),
            source,
        })?;
        let path = dir.join("records.log");
        let io = |source| ControllerError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut records = Vec::new();
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
            let Ok(record) = serde_json::from_slice::<MetadataRecord>(payload) else {
                break;
            };
            records.push((records.len() as u64 + 1, record));
            pos = end;
        }
        if pos < bytes.len() {
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = bytes.len(), "truncating torn tail of the metadata log");
            file.set_len(pos as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let next_offset = records.len() as u64 + 1;
        Ok((
            Journal {
                path,
                file,
                next_offset,
            },
            records,
        ))
    }

    /// Appends and fsyncs `records`; returns the offset of each.
    pub(crate) fn append(
        &mut self,
        records: &[MetadataRecord],
    ) -> Result<Vec<u64>, ControllerError> {
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(records.len());
        for r in records {
            let payload =
                serde_json::to_vec(r).map_err(|e| ControllerError::Encode(e.to_string()))?;
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_be_bytes());
            buf.extend_from_slice(&payload);
            offsets.push(self.next_offset + offsets.len() as u64);
        }
        let len_before = self.file.metadata().map(|m| m.len()).ok();
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            // Leave no partial entry behind: the next append must start on a boundary.
            if let Some(len) = len_before {
                let _ = self.file.set_len(len);
            }
            return Err(ControllerError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.next_offset += records.len() as u64;
        Ok(offsets)
    }
}
