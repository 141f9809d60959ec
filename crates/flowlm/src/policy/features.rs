//! The 8 per-token inputs of the step policy:
//! `[p1, p2, p3, p4, H_4, p1 − p2, t_i, step / (T − 1)]`.
//!
//! `p1..p4` are the token's four largest softmax probabilities (descending) and `H_4` is the
//! entropy of those four renormalised to sum to one, divided by ln 4 so it lies in [0, 1].

/// Number of inputs the policy network takes.
pub const FEATURE_COUNT: usize = 8;

/// One token's policy inputs.
pub type StepFeatures = [f64; FEATURE_COUNT];

/// The four largest entries of `probabilities`, descending, in one pass over the row (vocabulary
/// rows are large, so a full sort would be wasteful). Rows shorter than 4 are padded with zeros.
pub fn top4(probabilities: &[f32]) -> [f64; 4] {
    top4_of(probabilities)
}

/// [`top4`] for any float row (samplers keep their probabilities in f64).
pub fn top4_of<P: Copy + Into<f64>>(probabilities: &[P]) -> [f64; 4] {
    let mut best = [f64::NEG_INFINITY; 4];
    for &probability in probabilities {
        let value: f64 = probability.into();
        if value.is_nan() || value <= best[3] {
            continue;
        }
        // Insertion into the sorted 4-slot buffer.
        let mut slot = 3;
        while slot > 0 && value > best[slot - 1] {
            best[slot] = best[slot - 1];
            slot -= 1;
        }
        best[slot] = value;
    }
    best.map(|value| if value.is_finite() { value } else { 0.0 })
}

/// Entropy of the renormalised top 4 divided by ln 4: 1 when all four are equal, 0 when one
/// holds all the mass. A row with no mass at all carries no information and is reported as 1.
pub fn normalized_top4_entropy(top4_probabilities: [f64; 4]) -> f64 {
    let total: f64 = top4_probabilities.iter().map(|p| p.max(0.0)).sum();
    if total <= 0.0 {
        return 1.0;
    }
    let entropy: f64 = top4_probabilities
        .iter()
        .map(|p| p.max(0.0) / total)
        .filter(|&q| q > 0.0)
        .map(|q| -q * q.ln())
        .sum();
    (entropy / 4f64.ln()).clamp(0.0, 1.0)
}

/// The policy inputs for one token from its sorted top-4 probabilities, its progress `t_i` and
/// the decoding step `step` of `total_steps` (the step fraction is 0 when `total_steps <= 1`).
pub fn step_features(
    top4_probabilities: [f64; 4],
    progress: f64,
    step: usize,
    total_steps: usize,
) -> StepFeatures {
    let [p1, p2, p3, p4] = top4_probabilities;
    let step_fraction = if total_steps > 1 {
        step as f64 / (total_steps - 1) as f64
    } else {
        0.0
    };
    [
        p1,
        p2,
        p3,
        p4,
        normalized_top4_entropy(top4_probabilities),
        p1 - p2,
        progress,
        step_fraction,
    ]
}

/// `step_features` from a token's full probability row.
pub fn step_features_from_row(
    probabilities: &[f32],
    progress: f64,
    step: usize,
    total_steps: usize,
) -> StepFeatures {
    step_features(top4(probabilities), progress, step, total_steps)
}
