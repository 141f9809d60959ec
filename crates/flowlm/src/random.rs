//! Seeded randomness. All sampling and corruption draws come from an explicit `StdRng`, so the
//! same seed gives the same result on every backend (tensor-side randomness is avoided on purpose).

pub use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A generator for `seed`, further keyed by `stream` so that independent uses (data order,
/// corruption at step k, sampling) never share draws; keyed streams make resume exact.
pub fn rng_for(seed: u64, stream: u64) -> StdRng {
    // SplitMix64 finaliser spreads (seed, stream) over the whole seed space.
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    StdRng::seed_from_u64(z)
}

/// `count` independent generators seeded by draws from `rng`: one per row of a batch, so that
/// a row's draws do not depend on which other rows share its batch (or when they joined).
pub fn split(rng: &mut StdRng, count: usize) -> Vec<StdRng> {
    (0..count)
        .map(|_| StdRng::seed_from_u64(rng.random()))
        .collect()
}

/// Uniform draw in the open interval (0, 1), safe to take the log of twice.
pub fn open_unit(rng: &mut StdRng) -> f64 {
    loop {
        let u: f64 = rng.random();
        if u > 0.0 && u < 1.0 {
            return u;
        }
    }
}

/// A Fisher-Yates shuffle of `0..n`.
pub fn permutation(n: usize, rng: &mut StdRng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}
