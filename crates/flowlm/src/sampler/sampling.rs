//! Token choice from one row of logits: Gumbel-max in float64 (LLaDA) and temperature / top-k /
//! top-p sampling (seed 004).

use crate::model::{argmax, softmax};
use crate::random::{StdRng, open_unit};
use rand::Rng;

/// LLaDA's candidate: argmax(exp(l) / (-log U)^T), i.e. argmax(l - T log(-log U)), in f64.
/// T = 0 is the plain argmax.
pub fn gumbel_argmax(logits: &[f32], temperature: f64, rng: &mut StdRng) -> usize {
    if temperature <= 0.0 {
        return argmax(logits).0;
    }
    let mut best = (0, f64::NEG_INFINITY);
    for (i, &l) in logits.iter().enumerate() {
        let u = open_unit(rng);
        let score = l as f64 - temperature * (-u.ln()).ln();
        if score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

/// The distribution seed 004 samples from: softmax(l / T) restricted to the top-k tokens, then
/// to the smallest set whose mass reaches top-p, renormalised. Returns (token, probability)
/// pairs, most probable first. `top_k = 0` and `top_p >= 1` switch a filter off.
pub fn filtered_distribution(
    logits: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
) -> Vec<(usize, f64)> {
    let scaled: Vec<f32> = logits
        .iter()
        .map(|&l| (l as f64 / temperature.max(1e-6)) as f32)
        .collect();
    let probs = softmax(&scaled);
    let mut ranked: Vec<(usize, f64)> = probs.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if top_k > 0 {
        ranked.truncate(top_k);
    }
    if top_p < 1.0 {
        let total: f64 = ranked.iter().map(|p| p.1).sum();
        let mut cumulative = 0.0;
        let mut keep = ranked.len();
        for (i, (_, p)) in ranked.iter().enumerate() {
            cumulative += p / total;
            if cumulative >= top_p {
                keep = i + 1;
                break;
            }
        }
        ranked.truncate(keep.max(1));
    }
    let total: f64 = ranked.iter().map(|p| p.1).sum();
    ranked.iter_mut().for_each(|p| p.1 /= total);
    ranked
}

/// Samples from `filtered_distribution`; temperature 0 takes the argmax.
pub fn sample_filtered(
    logits: &[f32],
    temperature: f64,
    top_k: usize,
    top_p: f64,
    rng: &mut StdRng,
) -> usize {
    if temperature <= 0.0 {
        return argmax(logits).0;
    }
    let distribution = filtered_distribution(logits, temperature, top_k, top_p);
    distribution[draw(&distribution, rng)].0
}

/// The index of one `(token, probability)` entry drawn by its probability (the last one when
/// rounding leaves the draw past the end).
pub fn draw(distribution: &[(usize, f64)], rng: &mut StdRng) -> usize {
    let mut u: f64 = rng.random();
    for (index, &(_, p)) in distribution.iter().enumerate() {
        if u < p {
            return index;
        }
        u -= p;
    }
    distribution.len().saturating_sub(1)
}
