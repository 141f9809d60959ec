//! LLaDA's temperature sampling, x0 = argmax_v(l_v / T + G_v) with Gumbel noise G drawn in
//! float64 (ALGORITHMS.md), without the `[batch, columns, vocab]` logits leaving the device.
//!
//! Gumbel-max over a vocabulary splits exactly into the K most likely tokens and the rest: the
//! largest Gumbel-perturbed value over a set of tokens is itself Gumbel-distributed, located at
//! the set's log-sum-exp of l / T, and the token attaining it is drawn from the set in
//! proportion to exp(l / T), independently of that value. So per slot the device computes the
//! K candidates' logits, the rest's log-partition and one token of the rest (inverse CDF at a
//! uniform the caller drew), and the host draws K + 1 Gumbels in float64 and takes the largest:
//! the same distribution as K = vocabulary, from `[batch, columns, K]` values.

use super::Logits;
use crate::error::Result;
use crate::random::StdRng;
use burn::tensor::{Int, Tensor, TensorData};

/// Candidates per slot. Any number is exact (the rest is drawn exactly when it wins); more
/// candidates leave less to the rest's single-precision inverse CDF but cost a pass over the
/// vocabulary each.
pub const CANDIDATES: usize = 4;

/// What a step needs to draw x0 at each slot of `length` columns starting at `first_column`.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledChoices {
    pub length: usize,
    pub first_column: usize,
    /// Candidates per slot.
    k: usize,
    temperature: f64,
    /// `[B * L * k]`: the candidates, most likely first, and their (untempered) logits.
    tokens: Vec<u32>,
    logits: Vec<f64>,
    /// `[B * L]`: log sum over the other tokens of exp(l / T) (-inf when there are none), the
    /// token drawn from them and its logit, and log sum_v exp(l_v) (for the confidence).
    rest_log_partition: Vec<f64>,
    rest_token: Vec<u32>,
    rest_logit: Vec<f64>,
    log_partition: Vec<f64>,
}

impl SampledChoices {
    /// From device logits `[B, L, V]` of the columns starting at `first_column`, `forbidden`
    /// never chosen; `uniforms` (one per slot, row-major, in (0, 1)) pick the rest's token.
    pub fn on_device(
        logits: Tensor<3>,
        forbidden: u32,
        first_column: usize,
        temperature: f64,
        uniforms: &[f64],
    ) -> Result<Self> {
        let [batch, length, vocab] = logits.dims();
        let device = logits.device();
        super::check_uniforms(uniforms, batch * length)?;
        let k = CANDIDATES.min(vocab);
        let logits = super::forbidding(logits, forbidden);
        let log_partition = super::log_sum_exp(logits.clone());
        // The candidates by repeated maximum (a full sort per slot would cost far more over a
        // real vocabulary); each found token is set to -inf in `rest`, which ends as the rest.
        let mut rest = logits.clone();
        let (mut top, mut top_index) = (Vec::with_capacity(k), Vec::with_capacity(k));
        for _ in 0..k {
            let (value, index) = rest.clone().max_dim_with_indices(2);
            rest = rest.scatter(
                2,
                index.clone(),
                Tensor::<3>::full([batch, length, 1], f32::NEG_INFINITY, &device),
                burn::tensor::IndexingUpdateOp::Assign,
            );
            top.push(value);
            top_index.push(index);
        }
        let (top, top_index) = (Tensor::cat(top, 2), Tensor::cat(top_index, 2));
        let scaled = rest.div_scalar(temperature);
        let (rest_max, _) = scaled.clone().max_dim_with_indices(2);
        // With no rest left (a vocabulary of at most k tokens), the max is -inf; 0 then keeps
        // the arithmetic finite and the weights all zero.
        let finite_max = rest_max.clone().clamp_min(-1e30);
        let weights = (scaled - finite_max.clone()).exp();
        let cumulative = weights.clone().cumsum(2);
        let total = weights.sum_dim(2);
        let u = Tensor::<3>::from_data(
            TensorData::new(
                uniforms.iter().map(|&u| u as f32).collect::<Vec<_>>(),
                [batch, length, 1],
            ),
            &device,
        );
        // Inverse CDF: the first token whose cumulative weight exceeds u * total.
        let threshold = (total.clone() * u.mul_scalar(1.0 - 1e-6)).expand([batch, length, vocab]);
        let rest_index = cumulative
            .lower_equal(threshold)
            .int()
            .sum_dim(2)
            .clamp_max(vocab as i64 - 1);
        let rest_logit = logits.gather(2, rest_index.clone());
        let rest_log_partition = total.log() + finite_max;
        let rest_log_partition =
            rest_log_partition.mask_fill(rest_max.equal_elem(f32::NEG_INFINITY), f32::NEG_INFINITY);
        let ints = |what: &str, t: Tensor<3, Int>| -> Result<Vec<u32>> {
            Ok(super::host_values(what, t.into_data())?
                .iter()
                .map(|&v| v as u32)
                .collect())
        };
        Ok(Self {
            length,
            first_column,
            k,
            temperature,
            tokens: ints("candidate tokens", top_index)?,
            logits: super::host_values("candidate logits", top.into_data())?,
            rest_log_partition: super::host_values(
                "rest partition",
                rest_log_partition.into_data(),
            )?,
            rest_token: ints("rest token", rest_index)?,
            rest_logit: super::host_values("rest logit", rest_logit.into_data())?,
            log_partition: super::host_values("partition", log_partition.into_data())?,
        })
    }

    /// The same figures from host logits (the forbidden token already at -inf), in float64.
    pub fn from_logits(logits: &Logits, temperature: f64, uniforms: &[f64]) -> Result<Self> {
        let slots = logits.batch * logits.length;
        super::check_uniforms(uniforms, slots)?;
        let k = CANDIDATES.min(logits.vocab);
        let mut out = Self {
            length: logits.length,
            first_column: 0,
            k,
            temperature,
            tokens: Vec::with_capacity(slots * k),
            logits: Vec::with_capacity(slots * k),
            rest_log_partition: Vec::with_capacity(slots),
            rest_token: Vec::with_capacity(slots),
            rest_logit: Vec::with_capacity(slots),
            log_partition: Vec::with_capacity(slots),
        };
        for (slot, &u) in logits.values.chunks(logits.vocab).zip(uniforms) {
            let mut order: Vec<usize> = (0..slot.len()).collect();
            // Largest first, lower index first on ties.
            order.sort_by(|&a, &b| slot[b].total_cmp(&slot[a]).then(a.cmp(&b)));
            let (top, rest) = order.split_at(k);
            out.tokens.extend(top.iter().map(|&v| v as u32));
            out.logits.extend(top.iter().map(|&v| slot[v] as f64));
            let max = slot[order[0]] as f64;
            let sum: f64 = slot.iter().map(|&l| (l as f64 - max).exp()).sum();
            out.log_partition.push(sum.ln() + max);
            // The rest in index order, as the device's cumulative sum runs.
            let mut rest = rest.to_vec();
            rest.sort_unstable();
            let scaled: Vec<f64> = rest.iter().map(|&v| slot[v] as f64 / temperature).collect();
            let rest_max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if rest_max == f64::NEG_INFINITY {
                out.rest_log_partition.push(f64::NEG_INFINITY);
                out.rest_token.push(top[0] as u32);
                out.rest_logit.push(f64::NEG_INFINITY);
                continue;
            }
            let weights: Vec<f64> = scaled.iter().map(|&s| (s - rest_max).exp()).collect();
            let total: f64 = weights.iter().sum();
            out.rest_log_partition.push(total.ln() + rest_max);
            let threshold = total * u;
            let mut cumulative = 0.0;
            let mut chosen = *rest.last().unwrap_or(&top[0]);
            for (&token, &w) in rest.iter().zip(&weights) {
                cumulative += w;
                if cumulative > threshold && w > 0.0 {
                    chosen = token;
                    break;
                }
            }
            out.rest_token.push(chosen as u32);
            out.rest_logit.push(slot[chosen] as f64);
        }
        Ok(out)
    }

    /// x0 at `row`, canvas `column` and its untempered probability softmax(l)[x0]: K + 1
    /// float64 Gumbels from `rng`, the largest perturbed value wins.
    pub fn draw(&self, row: usize, column: usize, rng: &mut StdRng) -> (u32, f64) {
        let slot = row * self.length + column - self.first_column;
        let span = slot * self.k..(slot + 1) * self.k;
        let mut best = (
            self.tokens[span.start],
            self.logits[span.start],
            f64::NEG_INFINITY,
        );
        for (&token, &logit) in self.tokens[span.clone()].iter().zip(&self.logits[span]) {
            let value = logit / self.temperature + gumbel(rng);
            if value > best.2 {
                best = (token, logit, value);
            }
        }
        let rest = self.rest_log_partition[slot];
        if rest > f64::NEG_INFINITY && rest + gumbel(rng) > best.2 {
            best = (self.rest_token[slot], self.rest_logit[slot], 0.0);
        }
        (best.0, (best.1 - self.log_partition[slot]).exp())
    }
}

/// A standard Gumbel draw, -ln(-ln U), in float64.
fn gumbel(rng: &mut StdRng) -> f64 {
    -(-crate::random::open_unit(rng).ln()).ln()
}
