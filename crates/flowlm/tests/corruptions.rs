//! Corruptions of the self-correction issue: statistics and invariants that fail if the
//! semantics are wrong.

use flowlm::corruption::{
    CleanBatch, Corruption, CorruptionConfig, GaussianParameterization, MaskAndBlend,
    MaskAndSubstitute, NextToken, TemperatureAnnealing, TimeSampling, UniformCorruption,
    effective_clean_probability,
};
use flowlm::random::rng_for;
use flowlm::schedule::Schedule;
use flowlm::vocabulary::Vocabulary;
use rand::Rng;

const MASK: u32 = 0;
const EOS: u32 = 1;
const VOCAB: usize = 40;

fn vocabulary() -> Vocabulary {
    Vocabulary::new(VOCAB, MASK, &[EOS])
}

/// Rows of ordinary tokens with an EOS every 10th position.
fn clean(batch: usize, length: usize) -> CleanBatch {
    let tokens = (0..batch * length)
        .map(|i| {
            if i % 10 == 9 {
                EOS
            } else {
                2 + (i * 7 % (VOCAB - 2)) as u32
            }
        })
        .collect();
    CleanBatch::unconditional(tokens, batch, length)
}

#[test]
fn substitution_rate_matches_the_configuration() {
    let corruption = MaskAndSubstitute {
        vocabulary: vocabulary(),
        time: TimeSampling::Fixed { rate: 0.3 },
        corruption_rate: 0.15,
        score_all: false,
    };
    let batch = clean(64, 500);
    let out = corruption.corrupt(&batch, &mut rng_for(1, 0));
    let ordinary: Vec<usize> = (0..batch.tokens.len())
        .filter(|&i| batch.tokens[i] != EOS)
        .collect();
    let masked = ordinary.iter().filter(|&&i| out.masked[i]).count() as f64;
    let visible = ordinary.len() as f64 - masked;
    let substituted = ordinary.iter().filter(|&&i| out.substituted[i]).count() as f64;
    assert!(
        (masked / ordinary.len() as f64 - 0.3).abs() < 0.01,
        "mask share {masked}"
    );
    assert!(
        (substituted / visible - 0.15).abs() < 0.01,
        "substitution share {}",
        substituted / visible
    );
    for &i in &ordinary {
        if out.substituted[i] {
            assert_ne!(
                out.input[i], batch.tokens[i],
                "a substitution must change the token"
            );
            assert!(!vocabulary().is_special(out.input[i]));
            assert!(out.weights[i] > 0.0, "substituted positions are scored");
        } else if !out.masked[i] {
            assert_eq!(out.input[i], batch.tokens[i]);
            assert_eq!(
                out.weights[i], 0.0,
                "untouched positions are not scored by default"
            );
        }
    }
}

#[test]
fn substitutions_never_touch_masks_special_tokens_or_the_prompt() {
    let corruption = MaskAndSubstitute {
        vocabulary: vocabulary(),
        time: TimeSampling::Range { min: 0.1, max: 0.9 },
        corruption_rate: 0.5,
        score_all: true,
    };
    let mut batch = clean(16, 100);
    // The first 20 positions of each row are a prompt.
    for (i, e) in batch.eligible.iter_mut().enumerate() {
        *e = i % 100 >= 20;
    }
    for seed in 0..5 {
        let out = corruption.corrupt(&batch, &mut rng_for(seed, 0));
        for i in 0..batch.tokens.len() {
            assert!(
                !(out.masked[i] && out.substituted[i]),
                "a slot is masked or substituted, not both"
            );
            if !batch.eligible[i] || batch.tokens[i] == EOS {
                assert_eq!(
                    out.input[i], batch.tokens[i],
                    "position {i} must stay clean"
                );
                assert!(!out.masked[i] && !out.substituted[i]);
            }
            if !batch.eligible[i] {
                assert_eq!(out.weights[i], 0.0, "the prompt is never scored");
            }
        }
    }
}

/// The flow-state blends: a `blend_rate` share of the masked slots reads (1 - s) m + s E[y] with
/// s spread over (0, 1], y the clean token except a `wrong_rate` share; every other slot reads
/// its own token, and every slot's weights sum to 1.
#[test]
fn blends_follow_their_rates() {
    let corruption = MaskAndBlend {
        vocabulary: vocabulary(),
        time: TimeSampling::Fixed { rate: 0.4 },
        blend_rate: 0.5,
        wrong_rate: 0.25,
        own_rate: 0.0,
    };
    let batch = clean(32, 500);
    let mut rng = rng_for(2, 0);
    let out = corruption.corrupt(&batch, &mut rng);
    let weights = corruption.input_weights(&out, None, &mut rng);
    let (mut masked, mut blended, mut wrong, mut mean_s) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (i, slot) in weights.chunks(VOCAB).enumerate() {
        assert!((slot.iter().sum::<f32>() - 1.0).abs() < 1e-5, "slot {i}");
        if !out.masked[i] {
            assert_eq!(slot[out.input[i] as usize], 1.0, "slot {i} reads its token");
            continue;
        }
        masked += 1.0;
        let s = 1.0 - slot[MASK as usize] as f64;
        if s == 0.0 {
            continue;
        }
        blended += 1.0;
        mean_s += s;
        if slot[batch.tokens[i] as usize] == 0.0 {
            wrong += 1.0;
        }
    }
    assert!(
        (blended / masked - 0.5).abs() < 0.02,
        "blend share {}",
        blended / masked
    );
    assert!(
        (wrong / blended - 0.25).abs() < 0.02,
        "wrong share {}",
        wrong / blended
    );
    assert!(
        (mean_s / blended - 0.5).abs() < 0.02,
        "mean s {}",
        mean_s / blended
    );
    // With the model's own predictions (here token 3 everywhere), an `own_rate` share of the
    // blends goes to them.
    let corruption = MaskAndBlend {
        own_rate: 0.3,
        ..corruption
    };
    let own = vec![3u32; out.input.len()];
    let weights = corruption.input_weights(&out, Some(&own), &mut rng);
    let (mut blended, mut towards_own) = (0.0f64, 0.0f64);
    for (i, slot) in weights.chunks(VOCAB).enumerate() {
        if out.masked[i] && slot[MASK as usize] < 1.0 {
            blended += 1.0;
            if batch.tokens[i] != 3 && slot[3] > 0.0 {
                towards_own += 1.0;
            }
        }
    }
    // Token 3 is also a random choice now and then: at most a point more.
    let share = towards_own / blended;
    assert!((0.28..0.32).contains(&share), "own share {share}");
}

#[test]
fn uniform_noise_rate_at_step_k_follows_the_cosine_schedule() {
    let schedule = Schedule::Cosine { steps: 1000 };
    // The schedule itself against the formula.
    for k in [0usize, 1, 250, 500, 999, 1000] {
        let angle = (k as f64 / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2;
        let expected = 1.0 - angle.cos().powi(2);
        assert!(
            (schedule.noise_at_step(k) - expected).abs() < 1e-12,
            "k = {k}"
        );
    }
    let corruption = UniformCorruption {
        vocabulary: vocabulary(),
        steps: 1000,
    };
    let length = 20_000;
    let batch = clean(8, length);
    let out = corruption.corrupt(&batch, &mut rng_for(3, 0));
    let tokens = vocabulary().regular_count() as f64;
    for row in 0..8 {
        let k = (out.time[row] as f64 * 1000.0).round() as usize;
        let noise = schedule.noise_at_step(k);
        let range = row * length..(row + 1) * length;
        let ordinary = range.clone().filter(|&i| batch.tokens[i] != EOS).count() as f64;
        let changed = range.filter(|&i| out.input[i] != batch.tokens[i]).count() as f64;
        // A replacement draws the original back with probability 1 / N.
        let expected = noise * (1.0 - 1.0 / tokens);
        assert!(
            (changed / ordinary - expected).abs() < 0.015,
            "row {row}, k {k}: changed {} expected {expected}",
            changed / ordinary
        );
    }
    assert!(
        out.weights.iter().all(|&w| w > 0.0),
        "x_0 is scored at every position"
    );
}

#[test]
fn temperature_follows_its_annealing_formula() {
    let tau = TemperatureAnnealing::default();
    let expect = |step: f64| (1e-3 * (1.0 - step / 5e5)).max(0.0) + 1e-8;
    for step in [0usize, 1, 1000, 250_000, 499_999, 500_000, 2_000_000] {
        assert!(
            (tau.at(step) - expect(step as f64)).abs() < 1e-15,
            "step {step}"
        );
    }
    assert!((tau.at(250_000) - 5.0001e-4).abs() < 1e-12);
}

#[test]
fn gaussian_argmax_keeps_the_token_as_often_as_the_formula_says() {
    let tokens = 30;
    let mut rng = rng_for(9, 0);
    for (clean, noise) in [(0.9, 0.43), (0.5, 0.87), (0.97, 0.24)] {
        let trials = 20_000;
        let mut kept = 0;
        for _ in 0..trials {
            let mut normal = || {
                let u: f64 = rng.random::<f64>().max(1e-300);
                let v: f64 = rng.random();
                (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            };
            let own = clean + noise * normal();
            kept += usize::from((1..tokens).all(|_| noise * normal() < own));
        }
        let alpha = effective_clean_probability(clean, noise, tokens);
        let predicted = alpha + (1.0 - alpha) / tokens as f64;
        let observed = kept as f64 / trials as f64;
        assert!(
            (observed - predicted).abs() < 0.015,
            "{observed} vs {predicted}"
        );
    }
    // Seed parameterization: t = 0 is clean, t = 1 is pure noise.
    let seed = GaussianParameterization::Seed {
        time_min: 0.0,
        time_max: 1.0,
    };
    assert_eq!(seed.scales(0.0), (1.0, 0.0));
    let (c, n) = seed.scales(1.0);
    assert!(c.abs() < 1e-12 && (n - 1.0).abs() < 1e-12);
}

#[test]
fn next_token_targets_are_shifted_by_one() {
    let batch = clean(2, 12);
    let out = NextToken.corrupt(&batch, &mut rng_for(0, 0));
    assert_eq!(out.input, batch.tokens);
    for row in 0..2 {
        for i in 0..11 {
            assert_eq!(out.targets[row * 12 + i], batch.tokens[row * 12 + i + 1]);
            assert!(out.weights[row * 12 + i] > 0.0);
        }
        assert_eq!(
            out.weights[row * 12 + 11],
            0.0,
            "the last position predicts nothing"
        );
    }
}

#[test]
fn each_corruption_names_the_samplers_that_drive_it() {
    let duo = CorruptionConfig::GaussianSoft {
        parameterization: GaussianParameterization::default(),
        temperature: TemperatureAnnealing::default(),
        view_scale: Default::default(),
        loss: Default::default(),
    };
    assert!(duo.supports_sampler("duo"));
    assert!(!duo.supports_sampler("llada"));
    let mask = CorruptionConfig::default();
    assert!(!mask.supports_sampler("duo"));
    assert!(!mask.supports_sampler("uniform"));
    let recipe: CorruptionConfig =
        toml::from_str("kind = \"mask_and_substitute\"\ncorruption_rate = 0.2").unwrap();
    assert_eq!(recipe.name(), "mask_and_substitute");
    assert!(toml::from_str::<CorruptionConfig>("kind = \"uniform\"\nstepz = 3").is_err());
}

/// Duo's rows are weighted by the configured view scale: with the default (the seed's intent)
/// the least noisy row weighs most, with the literal formula the noisiest row does.
#[test]
fn gaussian_soft_weights_rows_by_the_configured_view_scale() {
    use flowlm::objective::ViewScale;
    let weights_by_row = |view_scale| {
        let config = CorruptionConfig::GaussianSoft {
            parameterization: GaussianParameterization::Seed {
                time_min: 0.05,
                time_max: 0.95,
            },
            temperature: TemperatureAnnealing::default(),
            view_scale,
            loss: Default::default(),
        };
        let batch = clean(8, 10);
        let out = config
            .build(&vocabulary())
            .corrupt(&batch, &mut rng_for(3, 0));
        (0..8)
            .map(|row| (out.time[row] as f64, out.weights[row * 10] as f64))
            .collect::<Vec<_>>()
    };
    for (view_scale, lightest_is_noisiest) in
        [(ViewScale::Intent, true), (ViewScale::Literal, false)]
    {
        let rows = weights_by_row(view_scale);
        let noisiest = rows.iter().max_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        let quietest = rows.iter().min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
        assert_eq!(
            noisiest.1 < quietest.1,
            lightest_is_noisiest,
            "{view_scale:?}: {rows:?}"
        );
        for &(t, w) in &rows {
            let expected = view_scale.at(t, VOCAB) / 80.0;
            assert!(
                (w - expected).abs() < 1e-6 * expected.max(1e-9),
                "{view_scale:?} t {t}: {w} vs {expected}"
            );
        }
    }
}

/// The blend loss reads its blends: without any it is the masked model's loss on the same masks,
/// and with them it changes.
#[test]
fn the_blend_loss_is_the_mask_loss_until_slots_are_blended() {
    use flowlm::corruption::MaskCorruption;
    use flowlm::model::{DiffusionTransformerConfig, seeded_init};
    let device = burn::tensor::Device::flex();
    let mut config = DiffusionTransformerConfig::small(VOCAB, 20);
    config.hidden_size = 32;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 2;
    config.intermediate_size = 48;
    let model = seeded_init(config.init(&device), 3, 0.02);
    let batch = clean(4, 20);
    let time = TimeSampling::Fixed { rate: 0.5 };
    let loss = |corruption: &dyn Corruption| {
        let value = corruption
            .loss(&model, &batch, 0, &mut rng_for(5, 0), &device)
            .unwrap();
        value.into_scalar::<f32>()
    };
    let masks = loss(&MaskCorruption {
        mask_id: MASK,
        time,
    });
    let blends = |blend_rate| MaskAndBlend {
        vocabulary: vocabulary(),
        time,
        blend_rate,
        wrong_rate: 0.0,
        own_rate: 0.0,
    };
    assert!((loss(&blends(0.0)) - masks).abs() < 1e-4 * masks.abs());
    assert!((loss(&blends(1.0)) - masks).abs() > 1e-3 * masks.abs());
}
