//! Waiting for something a test expects to happen, instead of sleeping and hoping it did.

use std::time::Duration;

use tokio::time::Instant;

/// How often [`until`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `done` until it returns true and returns how long that took; panics naming `what`
/// once `timeout` has passed without it.
pub(crate) async fn until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
