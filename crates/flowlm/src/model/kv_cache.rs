//! Fast-dLLM's key/value cache for block decoding (ALGORITHMS.md, "Fast-dLLM caching").
//!
//! A masked diffusion model attends in both directions, so no slot's keys and values are final
//! until the whole answer is. Fast-dLLM's approximation: at the start of a block, run the whole
//! canvas once and keep every layer's keys and values ([`CachePass::Record`]); the steps inside
//! the block then compute only a window of columns ([`CachePass::Reuse`]) — the block and what
//! follows it (prefix cache) or the block alone (dual cache) — attending to the window's fresh
//! keys and values spliced into the cached ones everywhere else. Each row reads only its own
//! keys, so a padded batch computes what each row computes alone.

use burn::tensor::Tensor;
use std::ops::Range;

/// Which columns a cached step recomputes (the rest come from the cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Every step runs the whole canvas (LLaDA's reference sampler).
    #[default]
    None,
    /// Keys/values before the block are cached; steps run the block and everything after it.
    Prefix,
    /// Keys/values before and after the block are cached; steps run the block alone.
    Dual,
}

impl CacheMode {
    pub const NAMES: [&'static str; 3] = ["none", "prefix", "dual"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "prefix" => Some(Self::Prefix),
            "dual" => Some(Self::Dual),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Prefix => "prefix",
            Self::Dual => "dual",
        }
    }

    /// The columns a cached step of `block` recomputes on a canvas `width` columns wide.
    pub fn window(self, block: Range<usize>, width: usize) -> Range<usize> {
        match self {
            Self::None => 0..width,
            Self::Prefix => block.start..width,
            Self::Dual => block,
        }
    }
}

/// One layer's keys and values, `[B, heads, L, size]` each (after rotary, before any
/// grouped-query repetition).
#[derive(Clone, Debug)]
pub struct KvPair {
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
}

impl KvPair {
    /// These keys/values with the `window` columns replaced by `fresh` (which spans the window).
    fn splice(&self, fresh: KvPair, window: &Range<usize>) -> KvPair {
        let splice_one = |cached: &Tensor<4>, fresh: Tensor<4>| {
            let [batch, heads, length, size] = cached.dims();
            let mut parts = Vec::with_capacity(3);
            if window.start > 0 {
                parts.push(
                    cached
                        .clone()
                        .slice([0..batch, 0..heads, 0..window.start, 0..size]),
                );
            }
            parts.push(fresh);
            if window.end < length {
                parts.push(
                    cached
                        .clone()
                        .slice([0..batch, 0..heads, window.end..length, 0..size]),
                );
            }
            Tensor::cat(parts, 2)
        };
        KvPair {
            keys: splice_one(&self.keys, fresh.keys),
            values: splice_one(&self.values, fresh.values),
        }
    }
}

/// Every layer's keys and values for a whole canvas.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    pub layers: Vec<KvPair>,
}

/// Runs `layers` in order on `x`: `layer` gets each one with the pass and its index and returns
/// its output and the keys/values it attended to, which are kept when the pass records. Every
/// network's layer loop, FlowLM's and the pretrained families'.
pub fn run_layers<L>(
    layers: &[L],
    mut x: Tensor<3>,
    pass: Option<&CachePass>,
    mut layer: impl FnMut(&L, Tensor<3>, Option<(&CachePass, usize)>) -> (Tensor<3>, KvPair),
) -> (Tensor<3>, KvCache) {
    let mut cache = KvCache::default();
    for (index, block) in layers.iter().enumerate() {
        let (next, attended) = layer(block, x, pass.map(|p| (p, index)));
        x = next;
        if matches!(pass, Some(CachePass::Record)) {
            cache.layers.push(attended);
        }
    }
    (x, cache)
}

/// How a forward pass meets the cache.
#[derive(Clone, Debug)]
pub enum CachePass<'a> {
    /// Run every column and keep each layer's keys/values.
    Record,
    /// Run only `window`; every other column's keys/values come from `cache`.
    Reuse {
        cache: &'a KvCache,
        window: Range<usize>,
    },
}

impl CachePass<'_> {
    /// The columns this pass computes on a canvas `width` columns wide.
    pub fn columns(&self, width: usize) -> Range<usize> {
        match self {
            CachePass::Record => 0..width,
            CachePass::Reuse { window, .. } => window.clone(),
        }
    }

    /// How many keys each query sees when the pass computes `computed` columns.
    pub fn key_length(&self, computed: usize) -> usize {
        match self {
            CachePass::Record => computed,
            CachePass::Reuse { cache, .. } => cache
                .layers
                .first()
                .map_or(computed, |layer| layer.keys.dims()[2]),
        }
    }

    /// The keys/values layer `layer` attends to, given the ones it computed for its columns.
    pub fn attended(&self, layer: usize, fresh: KvPair) -> KvPair {
        match self {
            CachePass::Record => fresh,
            CachePass::Reuse { cache, window } => cache.layers[layer].splice(fresh, window),
        }
    }

    /// The same pass with its window widened to start at `start` (a family whose logits at a
    /// column are read from the previous one needs that column computed too).
    pub fn starting_at(&self, start: usize) -> Self {
        match self {
            CachePass::Record => CachePass::Record,
            CachePass::Reuse { cache, window } => CachePass::Reuse {
                cache,
                window: start.min(window.start)..window.end,
            },
        }
    }
}
