//! How full a log dir's filesystem is: the seam disk pressure reads through.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// A filesystem's size and the bytes this broker may still write to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// What an unprivileged writer can still use (statvfs `f_bavail`): the blocks reserved for
    /// root count as used, since the broker cannot write them.
    pub available_bytes: u64,
}

impl DiskUsage {
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.available_bytes)
    }

    /// Used / total; a filesystem that reports no size counts as full.
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        self.used_bytes() as f64 / self.total_bytes as f64
    }
}

/// Where disk pressure learns each dir's usage.
///
/// To ensure correctness an implementation answers for the filesystem holding `dir` as it is
/// now (no caching across calls: the duty reads again after deleting segments), and fails
/// rather than guessing; a dir whose usage cannot be read keeps its state.
pub trait DiskUsageSource: Send + Sync + Debug {
    fn usage(&self, dir: &Path) -> std::io::Result<DiskUsage>;
}

/// The real filesystem, through statvfs(2).
#[derive(Debug, Default)]
pub struct StatvfsUsage;

impl DiskUsageSource for StatvfsUsage {
    fn usage(&self, dir: &Path) -> std::io::Result<DiskUsage> {
        let st = rustix::fs::statvfs(dir)?;
        Ok(DiskUsage {
            total_bytes: st.f_blocks.saturating_mul(st.f_frsize),
            available_bytes: st.f_bavail.saturating_mul(st.f_frsize),
        })
    }
}

/// For tests only (`strata.test.log.dir.disk.usage.file`): every dir's used ratio is the
/// number written in `path` (0 to 1), over the real size of its filesystem; without the file,
/// the real usage. Lets a test push a broker over its marks without filling a disk.
#[derive(Debug)]
pub struct UsageFromFile {
    pub path: PathBuf,
}

impl DiskUsageSource for UsageFromFile {
    fn usage(&self, dir: &Path) -> std::io::Result<DiskUsage> {
        let real = StatvfsUsage.usage(dir)?;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(real),
            Err(e) => return Err(e),
        };
        let ratio: f64 = text.trim().parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: not a ratio: {:?}", self.path.display(), text.trim()),
            )
        })?;
        let used = (real.total_bytes as f64 * ratio.clamp(0.0, 1.0)) as u64;
        Ok(DiskUsage {
            total_bytes: real.total_bytes,
            available_bytes: real.total_bytes.saturating_sub(used),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_reads_a_real_filesystem_and_the_file_overrides_its_ratio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = StatvfsUsage.usage(dir.path()).expect("statvfs");
        assert!(real.total_bytes > 0 && real.available_bytes <= real.total_bytes);
        let file = dir.path().join("usage");
        let fake = UsageFromFile { path: file.clone() };
        assert_eq!(
            fake.usage(dir.path()).expect("no file").total_bytes,
            real.total_bytes
        );
        std::fs::write(&file, "0.97\n").expect("write");
        let u = fake.usage(dir.path()).expect("file");
        assert!((u.used_ratio() - 0.97).abs() < 1e-6, "{}", u.used_ratio());
        std::fs::write(&file, "lots").expect("write");
        assert!(fake.usage(dir.path()).is_err());
        assert_eq!(
            DiskUsage {
                total_bytes: 0,
                available_bytes: 0
            }
            .used_ratio(),
            1.0
        );
    }
}
