//! Checkpoint files: small text files of integer rows, written atomically and checksummed.
//!
//! Format (ASCII, `\n`-terminated lines):
//! ```text
//! 0                    version
//! N                    number of rows
//! a b ...              N rows of space-separated i64s
//! crc32 XXXXXXXX       crc32fast (IEEE) of every byte above, 8 lowercase hex digits
//! ```
//! Files: `log-start-offset-checkpoint` (one row: offset), `recovery-point-offset-checkpoint`
//! (one row: offset), `leader-epoch-checkpoint` (rows: epoch start_offset),
//! `cleaner-offset-checkpoint` (one row: offset).
//!
//! Crash consistency: written to `{name}.tmp`, fsynced, renamed over the old file and the
//! directory fsynced, so a reader sees the old or the new content, never a mix. A file that is
//! missing is `Ok(None)`; a file that fails to parse or whose CRC does not match is
//! `Err(Corrupt)`, and the caller falls back to a scan.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::{LogError, Result};

pub const LOG_START_OFFSET_FILE: &str = "log-start-offset-checkpoint";
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub const CLEANER_OFFSET_FILE: &str = "cleaner-offset-checkpoint";
/// The high watermark of a replicated partition, as of the last checkpoint (Kafka keeps one
/// `replication-offset-checkpoint` per log dir; here each partition keeps its own).
pub const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";

const VERSION: i64 = 0;
/// Bound on rows read back, so a corrupt count cannot make us allocate without limit.
const MAX_ROWS: usize = 1 << 20;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, reason: &str) -> LogError {
    LogError::CorruptSegment {
        path: path.to_path_buf(),
        position: 0,
        reason: format!("corrupt checkpoint: {reason}"),
    }
}

/// Renders rows in the checkpoint format (exposed for tests).
pub fn encode(rows: &[Vec<i64>]) -> String {
    let mut s = format!("{VERSION}\n{}\n", rows.len());
    for r in rows {
        let line: Vec<String> = r.iter().map(|v| v.to_string()).collect();
        s.push_str(&line.join(" "));
        s.push('\n');
    }
    let crc = crc32fast::hash(s.as_bytes());
    s.push_str(&format!("crc32 {crc:08x}\n"));
    s
}

/// Fsyncs a directory so a rename or create inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Creates `dir` and any missing parents so that they survive a power cut: each new
/// directory's entry is made durable by fsyncing its parent, top down (`create_dir_all` alone
/// leaves them in the page cache, and a power loss can take the whole tree, files fsynced
/// inside it included). An existing `dir` costs one `stat`.
pub fn create_dir_all_durable(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Atomically replaces `dir/name` with `rows`.
pub fn write(dir: &Path, name: &str, rows: &[Vec<i64>]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let text = encode(rows);
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                LogError::DiskFull { path: tmp.clone() }
            } else {
                LogError::Io {
                    path: tmp.clone(),
                    source: e,
                }
            }
        })?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Parses checkpoint text.
pub fn decode(path: &Path, text: &str) -> Result<Vec<Vec<i64>>> {
    let body_end = text
        .rfind("crc32 ")
        .ok_or_else(|| corrupt(path, "no crc line"))?;
    let (body, crc_line) = text.split_at(body_end);
    let stored = u32::from_str_radix(crc_line.trim_start_matches("crc32 ").trim(), 16)
        .map_err(|_| corrupt(path, "bad crc line"))?;
    if crc32fast::hash(body.as_bytes()) != stored {
        return Err(corrupt(path, "crc mismatch"));
    }
    let mut lines = body.lines();
    let version: i64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "bad version"))?;
    if version != VERSION {
        return Err(corrupt(path, "unknown version"));
    }
    let n: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt(path, "bad count"))?;
    if n > MAX_ROWS {
        return Err(corrupt(path, "too many rows"));
    }
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let line = lines.next().ok_or_else(|| corrupt(path, "missing row"))?;
        let row: std::result::Result<Vec<i64>, _> =
            line.split_whitespace().map(str::parse).collect();
        rows.push(row.map_err(|_| corrupt(path, "bad row"))?);
    }
    Ok(rows)
}

/// Reads `dir/name`: `Ok(None)` if absent, `Err` if corrupt or unreadable.
pub fn read(dir: &Path, name: &str) -> Result<Option<Vec<Vec<i64>>>> {
    let path = dir.join(name);
    match fs::read(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| corrupt(&path, "not utf-8"))?;
            decode(&path, &text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::Io { path, source: e }),
    }
}

/// Reads a one-value checkpoint, treating corruption as absence (with a warning): every
/// single-offset checkpoint has a safe fallback (scan from the start, first segment).
pub fn read_offset(dir: &Path, name: &str) -> Option<i64> {
    match read(dir, name) {
        Ok(Some(rows)) => rows.first().and_then(|r| r.first()).copied(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(path = %dir.join(name).display(), error = %e, "ignoring checkpoint");
            None
        }
    }
}

pub fn write_offset(dir: &Path, name: &str, offset: i64) -> Result<()> {
    write(dir, name, &[vec![offset]])
}

#[cfg(test)]
mod tests {
    use super::*;

    // That the parents are fsynced is shown under a power cut by tests/compat/test_power_loss.py
    // (powerfs drops directory entries whose directory was not fsynced).
    #[test]
    fn create_dir_all_durable_creates_missing_parents_and_accepts_existing_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep = dir.path().join("a/b/c");
        create_dir_all_durable(&deep).expect("create");
        assert!(deep.is_dir());
        create_dir_all_durable(&deep).expect("again");
        fs::write(dir.path().join("file"), b"x").expect("write");
        assert!(create_dir_all_durable(&dir.path().join("file/d")).is_err());
    }

    #[test]
    fn roundtrip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "x", &[vec![1, 2], vec![3, 4]]).expect("write");
        assert_eq!(
            read(dir.path(), "x").expect("read"),
            Some(vec![vec![1, 2], vec![3, 4]])
        );
        assert_eq!(read(dir.path(), "absent").expect("read"), None);
        let p = dir.path().join("x");
        let mut text = fs::read_to_string(&p).expect("read");
        text = text.replacen("3 4", "3 5", 1);
        fs::write(&p, text).expect("write");
        assert!(read(dir.path(), "x").is_err());
        assert_eq!(read_offset(dir.path(), "x"), None);
    }
}
