//! What a test does when the machine lacks something it needs (a device, a tool).
//!
//! libtest has no skip: a test that returns early passes, and a pass that tested nothing looks
//! like any other. So it says so on stderr, `SKIPPED: <reason>`, where `--nocapture` and a
//! failing neighbour's output show it. Under CI (`CI` set) it fails instead: CI installs every
//! tool first (`scripts/install-test-deps.sh`), so there a missing one is a broken setup that a
//! green run would hide.

/// Reports that the calling test cannot run here because of `reason`; the caller returns right
/// after. Panics when `CI` is set.
pub(crate) fn unavailable(reason: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{reason}; CI must provide it (scripts/install-test-deps.sh)");
    }
    eprintln!("SKIPPED: {reason}");
}
