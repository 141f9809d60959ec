//! Seed 004's sampling (temperature, then top-k, then top-p; ALGORITHMS.md) without the
//! `[batch, columns, vocab]` logits leaving the device.
//!
//! The filtered distribution lives among the most likely tokens, and a draw walks it from the
//! most probable token. So a slot's choice needs only a prefix of its tokens ranked by
//! probability ([`Filter::decide`]):
//! - with top-k, the top k tokens (the whole support);
//! - without it, under top-p, a prefix holding `top_p` of the mass (the nucleus);
//! - with no filter, a prefix holding more mass than the uniform (where the walk ends).
//!
//! The device ranks the M most likely tokens of each slot (M = top-k, or
//! [`CANDIDATES_WITHOUT_TOP_K`]) and makes the reductions the host cannot make from them
//! (log-partitions; the entropy when nothing is filtered out). Only a slot whose M candidates do
//! not decide its draw (a flat distribution) has its row of logits copied to the host, which
//! ranks a longer prefix. Either way the result is the one the definition
//! ([`Filter::distribution`], then [`pick`]) gives with the same uniform.

use super::{Logits, softmax};
use crate::error::{FlowError, Result};
use burn::tensor::{Int, Tensor, TensorData};

/// Candidates per slot without top-k: enough to hold the usual top-p mass of a trained model.
pub const CANDIDATES_WITHOUT_TOP_K: usize = 64;

/// Seed 004's filters. `top_k = 0` and `top_p >= 1` switch a filter off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Filter {
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
}

impl Filter {
    /// softmax(l / T) restricted to the top-k tokens, then to the smallest set whose mass
    /// reaches top-p, renormalised: (token, probability) pairs, most probable first (lower
    /// index first on ties).
    pub fn distribution(&self, logits: &[f32]) -> Vec<(usize, f64)> {
        let scaled: Vec<f32> = logits.iter().map(|&l| self.scale(l)).collect();
        let mut ranked: Vec<(usize, f64)> = softmax(&scaled).into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        self.truncate(ranked)
    }

    /// A logit divided by the temperature, in the precision the distribution is built from.
    fn scale(&self, logit: f32) -> f32 {
        (logit as f64 / self.divisor()) as f32
    }

    /// The temperature, kept off 0 (where the distribution tends to the argmax).
    fn divisor(&self) -> f64 {
        self.temperature.max(1e-6)
    }

    /// The top-k and top-p cuts of `ranked` (probabilities, most probable first), renormalised.
    fn truncate(&self, mut ranked: Vec<(usize, f64)>) -> Vec<(usize, f64)> {
        if self.top_k > 0 {
            ranked.truncate(self.top_k);
        }
        let total: f64 = ranked.iter().map(|p| p.1).sum();
        if let Some(keep) = self.nucleus(&ranked, total) {
            ranked.truncate(keep);
        }
        renormalised(ranked)
    }

    /// How many of `ranked` the top-p cut keeps: the first prefix whose share of `total`
    /// reaches top-p (at least one); `None` when top-p is off or no prefix reaches it.
    fn nucleus(&self, ranked: &[(usize, f64)], total: f64) -> Option<usize> {
        if self.top_p >= 1.0 {
            return None;
        }
        let mut cumulative = 0.0;
        for (i, (_, p)) in ranked.iter().enumerate() {
            cumulative += p / total;
            if cumulative >= self.top_p {
                return Some(i + 1);
            }
        }
        None
    }

    /// The distribution a uniform `u` picks from, from a prefix of the tempered distribution's
    /// tokens ranked most probable first (`ranked`, probabilities relative to the whole
    /// vocabulary); `complete` when the prefix is the whole vocabulary. `None` when only a
    /// longer prefix can decide.
    fn decide(
        &self,
        mut ranked: Vec<(usize, f64)>,
        complete: bool,
        u: f64,
    ) -> Option<Vec<(usize, f64)>> {
        if self.top_k > 0 {
            if !complete && ranked.len() < self.top_k {
                return None;
            }
            return Some(self.truncate(ranked));
        }
        if complete {
            return Some(self.truncate(ranked));
        }
        if self.top_p < 1.0 {
            let keep = self.nucleus(&ranked, 1.0)?;
            ranked.truncate(keep);
            return Some(renormalised(ranked));
        }
        // Unfiltered: the walk from the most probable ends inside the prefix.
        (u < ranked.iter().map(|p| p.1).sum::<f64>()).then_some(ranked)
    }

    /// Whether the whole distribution's entropy is the filtered one's (nothing filtered out).
    fn unfiltered(&self) -> bool {
        self.top_k == 0 && self.top_p >= 1.0
    }
}

fn renormalised(mut distribution: Vec<(usize, f64)>) -> Vec<(usize, f64)> {
    let total: f64 = distribution.iter().map(|p| p.1).sum();
    distribution.iter_mut().for_each(|p| p.1 /= total);
    distribution
}

/// The entry of `distribution` a uniform `u` in [0, 1) picks (walking from the most probable;
/// the last one when rounding leaves `u` past the end).
pub fn pick(distribution: &[(usize, f64)], mut u: f64) -> usize {
    for (index, &(_, p)) in distribution.iter().enumerate() {
        if u < p {
            return index;
        }
        u -= p;
    }
    distribution.len().saturating_sub(1)
}

/// One slot's draw and what the samplers rank it by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilteredChoice {
    pub token: u32,
    /// softmax(l)[token] over the whole vocabulary, untempered (seed 004's confidence).
    pub probability: f64,
    /// The token's probability in the filtered distribution (Dream's `maskgit_plus`).
    pub filtered_probability: f64,
    /// Top-1 minus top-2 probability of the filtered distribution (Dream's `topk_margin`).
    pub margin: f64,
    /// sum p ln(p + 1e-10) over the filtered distribution (Dream's `entropy`).
    pub negative_entropy: f64,
}

impl FilteredChoice {
    /// The choice `u` makes from a filtered `distribution`; `log_partition` is log sum_v exp(l_v)
    /// of the slot, `logit` reads a token's logit.
    fn from_distribution(
        distribution: &[(usize, f64)],
        u: f64,
        logit: impl Fn(usize) -> f64,
        log_partition: f64,
        negative_entropy: Option<f64>,
    ) -> Self {
        let (token, filtered_probability) = distribution[pick(distribution, u)];
        let second = distribution.get(1).map_or(0.0, |p| p.1);
        Self {
            token: token as u32,
            probability: (logit(token) - log_partition).exp(),
            filtered_probability,
            margin: distribution[0].1 - second,
            negative_entropy: negative_entropy.unwrap_or_else(|| {
                distribution
                    .iter()
                    .map(|&(_, p)| p * (p + 1e-10).ln())
                    .sum()
            }),
        }
    }

    /// The host path for one slot's logits (the forbidden token already at -inf): the tokens
    /// ranked by a partial selection, a prefix four times longer each time it does not decide.
    fn from_row(row: &[f32], filter: &Filter, u: f64) -> Self {
        let scaled: Vec<f32> = row.iter().map(|&l| filter.scale(l)).collect();
        let probabilities = softmax(&scaled);
        let whole_entropy = filter.unfiltered().then(|| {
            probabilities
                .iter()
                .map(|&p| p * (p + 1e-10).ln())
                .sum::<f64>()
        });
        let mut ranked: Vec<(usize, f64)> = probabilities.into_iter().enumerate().collect();
        let order = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let mut prefix = CANDIDATES_WITHOUT_TOP_K.max(filter.top_k);
        let distribution = loop {
            prefix = prefix.min(ranked.len());
            if prefix < ranked.len() {
                ranked.select_nth_unstable_by(prefix, order);
            }
            ranked[..prefix].sort_by(order);
            let complete = prefix == ranked.len();
            if let Some(d) = filter.decide(ranked[..prefix].to_vec(), complete, u) {
                break d;
            }
            prefix *= 4;
        };
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let log_partition = row
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        Self::from_distribution(
            &distribution,
            u,
            |v| row[v] as f64,
            log_partition,
            whole_entropy,
        )
    }
}

/// Per slot of `length` columns starting at `first_column`, `[batch, length]` row-major: the
/// token drawn from the filtered distribution and its confidences.
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredChoices {
    pub length: usize,
    pub first_column: usize,
    choices: Vec<FilteredChoice>,
    /// Slots whose logits row had to be copied to the host (see the module documentation).
    pub rows_copied: usize,
}

impl FilteredChoices {
    /// The choice at `row`, canvas `column`.
    pub fn at(&self, row: usize, column: usize) -> FilteredChoice {
        self.choices[row * self.length + column - self.first_column]
    }

    /// The host path: every slot's distribution from its full row of logits (the forbidden
    /// token already at -inf), `uniforms` one per slot, row-major.
    pub fn from_logits(logits: &Logits, filter: &Filter, uniforms: &[f64]) -> Result<Self> {
        super::check_uniforms(uniforms, logits.batch * logits.length)?;
        let choices = logits
            .values
            .chunks(logits.vocab)
            .zip(uniforms)
            .map(|(row, &u)| FilteredChoice::from_row(row, filter, u))
            .collect();
        Ok(Self {
            length: logits.length,
            first_column: 0,
            choices,
            rows_copied: logits.batch * logits.length,
        })
    }

    /// From device logits `[B, L, V]` of the columns starting at `first_column`, `forbidden`
    /// never chosen: `[B, L, M]` candidates reach the host, and a slot's full row only when
    /// they do not decide its draw.
    pub fn on_device(
        logits: Tensor<3>,
        forbidden: u32,
        first_column: usize,
        filter: &Filter,
        uniforms: &[f64],
    ) -> Result<Self> {
        let [batch, length, vocab] = logits.dims();
        super::check_uniforms(uniforms, batch * length)?;
        let logits = super::forbidding(logits, forbidden);
        let host = Candidates::compute(logits.clone(), filter)?;
        let mut choices: Vec<Option<FilteredChoice>> = (0..batch * length)
            .map(|slot| host.choice(slot, filter, uniforms[slot]))
            .collect();
        let undecided: Vec<usize> = (0..choices.len())
            .filter(|&slot| choices[slot].is_none())
            .collect();
        if !undecided.is_empty() {
            let rows = copy_rows(logits.reshape([batch * length, vocab]), &undecided)?;
            for (&slot, row) in undecided.iter().zip(rows.chunks(vocab)) {
                choices[slot] = Some(FilteredChoice::from_row(row, filter, uniforms[slot]));
            }
        }
        Ok(Self {
            length,
            first_column,
            choices: choices.into_iter().flatten().collect(),
            rows_copied: undecided.len(),
        })
    }
}

impl From<super::RankedChoices> for FilteredChoices {
    /// The choices at temperature 0: the argmax, ranked on the untempered distribution.
    fn from(ranked: super::RankedChoices) -> Self {
        let (length, first_column) = (ranked.top.length, ranked.top.first_column);
        let slots = ranked.top.tokens.len();
        let choices = (0..slots)
            .map(|slot| {
                let (token, probability, second, negative_entropy) =
                    ranked.at(slot / length, first_column + slot % length);
                FilteredChoice {
                    token,
                    probability,
                    filtered_probability: probability,
                    margin: probability - second,
                    negative_entropy,
                }
            })
            .collect();
        Self {
            length,
            first_column,
            choices,
            rows_copied: 0,
        }
    }
}

/// What the device computed for every slot, on the host.
struct Candidates {
    count: usize,
    vocab: usize,
    /// `[slots * count]`, most likely first.
    tokens: Vec<f64>,
    logits: Vec<f64>,
    /// `[slots]`: log sum_v exp(l_v); with top-k off, log sum_v exp(l_v / T); with no filter,
    /// the whole tempered distribution's negative entropy.
    log_partition: Vec<f64>,
    tempered_partition: Option<Vec<f64>>,
    negative_entropy: Option<Vec<f64>>,
}

impl Candidates {
    /// The device's work for `logits` `[B, L, V]` (the forbidden token already at -inf).
    fn compute(logits: Tensor<3>, filter: &Filter) -> Result<Self> {
        let vocab = logits.dims()[2];
        let count = match filter.top_k {
            0 => CANDIDATES_WITHOUT_TOP_K,
            k => k,
        }
        .min(vocab);
        let (top_logits, top_tokens) = top_candidates(logits.clone(), count);
        let log_partition = super::log_sum_exp(logits.clone());
        // Without top-k the candidates' tempered probabilities need the whole vocabulary's
        // partition, and with no filter at all the entropy is the whole distribution's.
        let (tempered_partition, entropy) = if filter.top_k == 0 {
            let untempered = filter.divisor() == 1.0;
            let scaled = if untempered {
                logits
            } else {
                logits.div_scalar(filter.divisor())
            };
            let partition = if untempered {
                log_partition.clone()
            } else {
                super::log_sum_exp(scaled.clone())
            };
            let entropy = filter
                .unfiltered()
                .then(|| negative_entropy(scaled, partition.clone()));
            (Some(partition), entropy)
        } else {
            (None, None)
        };
        let values = |what, t: Option<Tensor<2>>| -> Result<Option<Vec<f64>>> {
            t.map(|t| super::host_values(what, t.into_data()))
                .transpose()
        };
        Ok(Self {
            count,
            vocab,
            tokens: super::host_values("candidate tokens", top_tokens.into_data())?,
            logits: super::host_values("candidate logits", top_logits.into_data())?,
            log_partition: super::host_values("partition", log_partition.into_data())?,
            tempered_partition: values("tempered partition", tempered_partition)?,
            negative_entropy: values("entropy", entropy)?,
        })
    }

    /// The slot's choice when its candidates decide it, `None` when only its full row can.
    fn choice(&self, slot: usize, filter: &Filter, u: f64) -> Option<FilteredChoice> {
        let span = slot * self.count..(slot + 1) * self.count;
        let (tokens, logits) = (&self.tokens[span.clone()], &self.logits[span]);
        let scaled = |i: usize| filter.scale(logits[i] as f32) as f64;
        // Probabilities relative to the whole vocabulary without top-k; under it only the
        // candidates' shares matter (they are the whole support), relative to their largest.
        let partition = match &self.tempered_partition {
            Some(partition) => partition[slot],
            None => scaled(0),
        };
        let ranked: Vec<(usize, f64)> = (0..self.count)
            .map(|i| (tokens[i] as usize, (scaled(i) - partition).exp()))
            .collect();
        let distribution = filter.decide(ranked, self.count == self.vocab, u)?;
        let logit_of = |token: usize| {
            tokens
                .iter()
                .position(|&t| t as usize == token)
                .map_or(f64::NEG_INFINITY, |i| logits[i])
        };
        let entropy = self.negative_entropy.as_ref().map(|e| e[slot]);
        Some(FilteredChoice::from_distribution(
            &distribution,
            u,
            logit_of,
            self.log_partition[slot],
            entropy,
        ))
    }
}

/// sum p ln(p + 1e-10) of p = softmax(x) over the last axis, from x's `log_partition`: `[B, L]`.
fn negative_entropy(x: Tensor<3>, log_partition: Tensor<2>) -> Tensor<2> {
    let probabilities = (x - log_partition.unsqueeze_dim(2)).exp();
    (probabilities.clone() * (probabilities + 1e-10).log())
        .sum_dim(2)
        .squeeze_dim(2)
}

/// Vocabularies up to this size are ranked in one sort per slot.
const ONE_SORT_VOCABULARY: usize = 8192;
/// Tokens per group of the two-stage ranking.
const GROUP: usize = 256;

/// The `m` largest logits of each slot and their tokens, largest first. Over a large
/// vocabulary, a full sort per slot would cost several forward passes' worth of work on a CPU;
/// instead the vocabulary is cut into groups of [`GROUP`], and the top m tokens all lie in the
/// m groups with the largest maxima (a group holding one of them has a maximum at least that
/// large, and fewer than m groups hold larger tokens), so only those m groups are sorted.
fn top_candidates(logits: Tensor<3>, m: usize) -> (Tensor<3>, Tensor<3, Int>) {
    let [batch, length, vocab] = logits.dims();
    let groups = vocab.div_ceil(GROUP);
    if vocab <= ONE_SORT_VOCABULARY || m >= groups {
        return logits.topk_with_indices(m, 2);
    }
    let device = logits.device();
    let padded = match groups * GROUP - vocab {
        0 => logits,
        pad => Tensor::cat(
            vec![
                logits,
                Tensor::full([batch, length, pad], f32::NEG_INFINITY, &device),
            ],
            2,
        ),
    };
    let group_max = padded
        .clone()
        .reshape([batch, length, groups, GROUP])
        .max_dim(3)
        .reshape([batch, length, groups]);
    let (_, top_groups) = group_max.topk_with_indices(m, 2);
    let offsets = Tensor::<1, Int>::arange(0..GROUP as i64, &device).reshape([1, 1, 1, GROUP]);
    let members = (top_groups.reshape([batch, length, m, 1]) * GROUP as i64 + offsets).reshape([
        batch,
        length,
        m * GROUP,
    ]);
    let (values, within) = padded.gather(2, members.clone()).topk_with_indices(m, 2);
    (values, members.gather(2, within))
}

/// The rows `slots` of `[slots, V]` logits, on the host.
fn copy_rows(logits: Tensor<2>, slots: &[usize]) -> Result<Vec<f32>> {
    let device = logits.device();
    let indices = Tensor::<1, Int>::from_data(
        TensorData::new(
            slots.iter().map(|&s| s as i64).collect::<Vec<_>>(),
            [slots.len()],
        ),
        &device,
    );
    let rows = logits.select(0, indices).into_data();
    rows.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| FlowError::Unsupported(format!("reading logits rows: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn device_tensor(logits: &Logits) -> Tensor<3> {
        Tensor::<3>::from_data(
            TensorData::new(
                logits.values.clone(),
                [logits.batch, logits.length, logits.vocab],
            ),
            &burn::tensor::Device::flex(),
        )
    }

    /// Random logits, every third slot flat and the others with a few likely tokens, as a
    /// trained model's are.
    fn random_logits(batch: usize, length: usize, vocab: usize, seed: u64) -> Logits {
        let mut rng = crate::random::StdRng::seed_from_u64(seed);
        let values = (0..batch * length)
            .flat_map(|slot| {
                let lift = [0.0, 8.0, 14.0][slot % 3];
                (0..vocab)
                    .map(|v| {
                        let likely = if v % 997 == slot { lift } else { 0.0 };
                        (rng.random::<f32>() - 0.5) * 4.0 + likely
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Logits {
            batch,
            length,
            vocab,
            values,
        }
    }

    /// The host and device paths draw what the definition draws with the same uniforms, for
    /// every kind of filter, over a vocabulary large enough for the two-stage ranking.
    #[test]
    fn the_device_draws_what_the_host_draws() {
        let (batch, length, vocab, forbidden) = (2, 9, 20_000, 7);
        let mut logits = random_logits(batch, length, vocab, 3);
        let tensor = device_tensor(&logits);
        logits.forbid(forbidden);
        let mut rng = crate::random::StdRng::seed_from_u64(9);
        let uniforms: Vec<f64> = (0..batch * length).map(|_| rng.random()).collect();
        let filters = [(1.0, 50, 1.0), (0.7, 0, 0.9), (1.0, 0, 1.0), (0.5, 3, 0.8)];
        let mut copied = Vec::new();
        for (temperature, top_k, top_p) in filters {
            let filter = Filter {
                temperature,
                top_k,
                top_p,
            };
            let host = FilteredChoices::from_logits(&logits, &filter, &uniforms).unwrap();
            let device =
                FilteredChoices::on_device(tensor.clone(), forbidden, 4, &filter, &uniforms)
                    .unwrap();
            for slot in 0..batch * length {
                let (row, column) = (slot / length, slot % length);
                let (h, d) = (host.at(row, column), device.at(row, 4 + column));
                let definition = filter.distribution(logits.at(row, column));
                let (token, p) = definition[pick(&definition, uniforms[slot])];
                assert_eq!(h.token as usize, token, "{filter:?} slot {slot}");
                assert!((h.filtered_probability - p).abs() < 1e-9);
                assert_eq!(h.token, d.token, "{filter:?} slot {slot}");
                assert_ne!(h.token, forbidden);
                for (a, b) in [
                    (h.probability, d.probability),
                    (h.filtered_probability, d.filtered_probability),
                    (h.margin, d.margin),
                    (h.negative_entropy, d.negative_entropy),
                ] {
                    assert!((a - b).abs() < 1e-4, "{filter:?} slot {slot}: {a} vs {b}");
                }
            }
            copied.push(device.rows_copied);
        }
        // Top-k never needs a row; the flat slots without top-k do.
        assert_eq!(copied[0], 0);
        assert_eq!(copied[3], 0);
        assert!(copied[1] > 0 && copied[1] < batch * length, "{copied:?}");
    }

    /// The two-stage ranking finds the same tokens as a full sort.
    #[test]
    fn candidates_are_the_largest_logits() {
        let logits = random_logits(1, 3, 10_000, 5);
        let tensor = device_tensor(&logits);
        let (values, tokens) = top_candidates(tensor.clone(), 40);
        let (expected_values, expected_tokens) = tensor.topk_with_indices(40, 2);
        assert_eq!(tokens.into_data(), expected_tokens.into_data());
        assert_eq!(values.into_data(), expected_values.into_data());
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus_and_top_k_its_count() {
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let filter = |top_k, top_p| Filter {
            temperature: 1.0,
            top_k,
            top_p,
        };
        // softmax = [.644, .237, .087, .032]: .644 < .7, so two tokens are kept.
        let d = filter(0, 0.7).distribution(&logits);
        assert_eq!(d.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1]);
        assert!((d.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-12);
        let d = filter(3, 1.0).distribution(&logits);
        assert_eq!(d.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(pick(&d, 0.0), 0);
        assert_eq!(pick(&d, 0.99), 2);
    }
}
