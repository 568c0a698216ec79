//! Seeds for the simulation tests: `STRATA_SIM_SEED=S` runs one seed, `STRATA_SIM_SEEDS=N`
//! runs seeds 1..=N, otherwise each test's default count.

pub(crate) fn seeds(default_count: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("STRATA_SIM_SEED") {
        return vec![s.parse().expect("STRATA_SIM_SEED: a number")];
    }
    let n: u64 = std::env::var("STRATA_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_count);
    (1..=n).collect()
}
