//! Blocking work from async code, on whichever tokio runtime runs it: the multi-threaded one of
//! `strata serve`, or a current-thread one (each host of a `turmoil` simulation, `#[tokio::test]`).

use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks (file I/O, fsync), from async code without stalling other tasks where
/// that is possible. On the multi-threaded runtime this is `tokio::task::block_in_place`: the
/// worker hands its other tasks to another worker while `f` runs. A current-thread runtime has
/// no other worker (and `block_in_place` panics there), so `f` runs inline and the runtime's
/// other tasks wait for it; under simulation that is what keeps a run replayable. Outside any
/// runtime `f` simply runs.
pub fn block_in_place<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_inline_on_a_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(rt.block_on(async { block_in_place(|| 7) }), 7);
    }

    #[test]
    fn blocks_in_place_on_the_multi_threaded_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        assert_eq!(rt.block_on(async { block_in_place(|| 7) }), 7);
    }

    #[test]
    fn runs_outside_a_runtime() {
        assert_eq!(block_in_place(|| 7), 7);
    }
}
