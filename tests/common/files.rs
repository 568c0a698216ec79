//! Log files on disk, for tests that damage them.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The `.log` segment files of a partition dir, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// XORs the byte at `at` of `path` with `mask`, in place: a bit flipped on the disk.
pub fn flip_byte(path: &Path, at: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= mask;
    f.write_all_at(&b, at).expect("write");
}
