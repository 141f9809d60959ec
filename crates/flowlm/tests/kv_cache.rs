//! Fast-dLLM's key/value cache: cached steps against full passes, for FlowLM's transformer and
//! the pretrained families, and the cached samplers against the uncached one.

mod common;

use burn::tensor::Device;
use flowlm::canvas::Canvas;
use flowlm::model::open::OpenedModel;
use flowlm::model::{
    CacheMode, Denoiser, DiffusionTransformerConfig, ModelDenoiser, TopChoices, seeded_init,
    stable_parameter_ids,
};
use flowlm::random::rng_for;
use flowlm::sampler::{LladaSampler, ParallelRule, Sampler};

const MASK: u32 = 0;
const PAD: u32 = 1;

fn model(layers: usize) -> ModelDenoiser {
    let device = Device::flex();
    let mut config = DiffusionTransformerConfig::small(40, 64);
    config.hidden_size = 32;
    config.num_attention_heads = 2;
    config.num_hidden_layers = layers;
    config.intermediate_size = 64;
    let model = stable_parameter_ids(seeded_init(config.init(&device), 5, 1.0));
    ModelDenoiser { model, device }
}

/// Two left-padded prompts and 12 masked answer slots (blocks of 4 from column 6).
fn canvas() -> Canvas {
    Canvas::new(&[vec![3, 4, 5, 6, 7, 8], vec![9, 10]], 12, MASK, PAD).unwrap()
}

/// The canvas after some steps: tokens written in the second block (columns 10..14).
fn edited(mut canvas: Canvas) -> Canvas {
    for (row, tokens) in [(0, [11, 12]), (1, [13, 14])] {
        canvas.rows[row][10] = tokens[0];
        canvas.rows[row][12] = tokens[1];
    }
    canvas
}

/// Largest |p_cached - p_full| over the block's columns of every row (padding excluded), after
/// checking that the top tokens agree.
fn largest_difference(
    cached: &TopChoices,
    full: &TopChoices,
    canvas: &Canvas,
    block: std::ops::Range<usize>,
) -> f64 {
    let mut largest: f64 = 0.0;
    for row in 0..canvas.batch() {
        for column in block.clone() {
            let (token, p) = cached.at(row, column);
            let (expected_token, expected_p) = full.at(row, column);
            if (p - expected_p).abs() < 1e-3 {
                assert_eq!(token, expected_token, "row {row} column {column}");
            }
            largest = largest.max((p - expected_p).abs());
        }
    }
    largest
}

/// Records the cache on `recorded_on`, then runs a cached step on `stepped` for `mode`; returns
/// the largest difference from a full pass on `stepped`.
fn cached_vs_full(
    denoiser: &dyn Denoiser,
    recorded_on: &Canvas,
    stepped: &Canvas,
    mode: CacheMode,
    block: std::ops::Range<usize>,
) -> f64 {
    let width = recorded_on.width();
    let (first, cache) = denoiser
        .cached_top_choices(recorded_on, None, 0..width, block.clone(), MASK)
        .unwrap();
    let cache = cache.expect("the first pass records");
    // The recording pass is a full pass.
    let full = denoiser.top_choices(recorded_on, None, MASK).unwrap();
    assert!(largest_difference(&first, &full, recorded_on, block.clone()) < 1e-5);
    let window = mode.window(block.clone(), width);
    let (choices, none) = denoiser
        .cached_top_choices(stepped, Some(&cache), window, block.clone(), MASK)
        .unwrap();
    assert!(none.is_none(), "a cached step records nothing");
    let full = denoiser.top_choices(stepped, None, MASK).unwrap();
    largest_difference(&choices, &full, stepped, block)
}

#[test]
fn a_cached_step_on_the_recorded_canvas_equals_a_full_pass() {
    let denoiser = model(3);
    let block = 10..14;
    for mode in [CacheMode::Prefix, CacheMode::Dual] {
        let difference = cached_vs_full(&denoiser, &canvas(), &canvas(), mode, block.clone());
        assert!(difference < 1e-5, "{mode:?}: {difference}");
    }
}

/// With one layer, a column's keys/values depend on its own token only, so the cache is exact
/// however the window's tokens change; with more layers it is Fast-dLLM's approximation.
#[test]
fn one_layer_caches_are_exact_after_the_block_changes_and_deeper_ones_are_not() {
    let block = 10..14;
    for mode in [CacheMode::Prefix, CacheMode::Dual] {
        let exact = cached_vs_full(&model(1), &canvas(), &edited(canvas()), mode, block.clone());
        assert!(exact < 1e-5, "{mode:?}, one layer: {exact}");
        let approximate =
            cached_vs_full(&model(3), &canvas(), &edited(canvas()), mode, block.clone());
        assert!(
            approximate > 1e-4,
            "{mode:?}, three layers: the cached step must read stale keys ({approximate})"
        );
    }
}

/// A pretrained checkpoint directory: `fixture`'s config and weights with bert-tiny's tokenizer
/// (its ids fit every fixture's vocabulary), opened.
fn pretrained(name: &str, fixture: &std::path::Path) -> OpenedModel {
    let bert_tiny = common::shared()
        .expect("../shared is missing: this test needs ../shared/models/bert-tiny-mlm")
        .join("models/bert-tiny-mlm");
    let dir = common::scratch(name);
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
    }
    std::fs::copy(bert_tiny.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    OpenedModel::open(&dir, &Device::flex()).unwrap()
}

#[test]
fn every_pretrained_family_caches_as_flowlm_does() {
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let bert_tiny = common::shared()
        .expect("../shared is missing: this test needs ../shared/models/bert-tiny-mlm")
        .join("models/bert-tiny-mlm");
    let models = [
        (
            "llada",
            OpenedModel::open(&common::llada_checkpoint("llada-cache"), &Device::flex()).unwrap(),
        ),
        (
            "dream",
            pretrained("dream-cache", &fixtures.join("dream-tiny")),
        ),
        // Qwen3's query/key norms and a head_dim apart from hidden / heads.
        (
            "a2d-qwen3",
            pretrained("a2d-qwen3-cache", &fixtures.join("a2d-qwen3-tiny")),
        ),
        // adaLN blocks with one packed query/key/value matrix.
        (
            "mdlm",
            pretrained("mdlm-cache", &fixtures.join("mdlm-tiny")),
        ),
        // Sliding-window layers of +-4 columns: the window pass must place its queries.
        (
            "modernbert",
            pretrained("modernbert-cache", &fixtures.join("modernbert-tiny")),
        ),
        ("bert", pretrained("bert-cache", &bert_tiny)),
    ];
    for (name, model) in &models {
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let difference = cached_vs_full(&*model.denoiser, &canvas(), &canvas(), mode, 10..14);
            assert!(difference < 1e-5, "{name} {mode:?}: {difference}");
        }
    }
}

fn sampler(cache: CacheMode, parallel: ParallelRule) -> LladaSampler {
    LladaSampler {
        steps: 12,
        block_length: 4,
        parallel,
        cache,
        ..Default::default()
    }
}

fn run(sampler: &LladaSampler, denoiser: &dyn Denoiser, prompts: &[Vec<u32>]) -> (Canvas, usize) {
    let mut canvas = Canvas::new(prompts, 12, MASK, PAD).unwrap();
    let report = sampler
        .run(denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})
        .unwrap();
    (canvas, report.forward_passes)
}

#[test]
fn refreshed_every_step_the_cached_samplers_equal_the_uncached_one() {
    let denoiser = model(3);
    let prompts = [vec![3, 4, 5, 6, 7, 8], vec![9, 10]];
    for parallel in [ParallelRule::Schedule, ParallelRule::Threshold(0.5)] {
        let (expected, _) = run(&sampler(CacheMode::None, parallel), &denoiser, &prompts);
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let mut cached = sampler(mode, parallel);
            cached.cache_refresh = 1;
            let (actual, _) = run(&cached, &denoiser, &prompts);
            assert_eq!(actual.rows, expected.rows, "{mode:?} {parallel:?}");
        }
    }
}

/// Without refreshes the cache is recorded once per block: the answers may differ from the
/// uncached sampler's (the approximation), but every slot is filled and each step still counts
/// one forward pass.
#[test]
fn a_cached_sampler_fills_every_slot() {
    let denoiser = model(3);
    let prompts = [vec![3, 4, 5, 6, 7, 8], vec![9, 10]];
    for mode in [CacheMode::Prefix, CacheMode::Dual] {
        let (canvas, passes) = run(&sampler(mode, ParallelRule::Schedule), &denoiser, &prompts);
        assert_eq!(passes, 12);
        for row in 0..canvas.batch() {
            assert_eq!(canvas.masked_count(row), 0, "{mode:?} row {row}");
        }
    }
}

#[test]
fn every_cache_mode_and_rule_gives_a_padded_row_what_it_gives_alone() {
    let denoiser = model(2);
    let prompts = vec![vec![3, 4, 5, 6, 7, 8], vec![9, 10], vec![11, 12, 13, 14]];
    for mode in [CacheMode::None, CacheMode::Prefix, CacheMode::Dual] {
        for parallel in [
            ParallelRule::Schedule,
            ParallelRule::Threshold(0.5),
            ParallelRule::Factor(1.0),
        ] {
            let mut sampler = sampler(mode, parallel);
            sampler.end_tokens = vec![2];
            let (batch, _) = run(&sampler, &denoiser, &prompts);
            for (row, prompt) in prompts.iter().enumerate() {
                let (alone, _) = run(&sampler, &denoiser, std::slice::from_ref(prompt));
                assert_eq!(
                    batch.response(row),
                    alone.response(0),
                    "{mode:?} {parallel:?} row {row}"
                );
            }
        }
    }
}

#[test]
fn a_cache_with_sampling_temperature_is_refused_by_name() {
    let denoiser = model(1);
    let mut sampler = sampler(CacheMode::Dual, ParallelRule::Schedule);
    sampler.temperature = 1.0;
    let mut canvas = canvas();
    let error = sampler
        .run(&denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(error.contains("--cache"), "{error}");
}

/// `flowlm bench cache`'s comparison: six modes, the uncached one-token-per-step mode first
/// (speed-up 1, full agreement), one pass per token without a rule, never more with it.
#[test]
fn the_mode_comparison_measures_every_mode_against_the_uncached_sampler() {
    use flowlm::eval::decoding_modes::{DecodingMode, compare_speed};
    let denoiser = model(2);
    let modes = DecodingMode::grid(0.5);
    let mut rounds = 0;
    let rows = compare_speed(
        &denoiser,
        &[3, 4, 5],
        (MASK, PAD),
        8,
        4,
        &modes,
        2,
        &mut |_| rounds += 1,
    )
    .unwrap();
    assert_eq!(rounds, 2);
    assert_eq!(rows.len(), 6);
    assert_eq!(
        rows[0].mode,
        DecodingMode {
            cache: CacheMode::None,
            threshold: None
        }
    );
    assert_eq!((rows[0].speedup, rows[0].agreement), (1.0, 1.0));
    for row in &rows[..3] {
        assert_eq!(row.forward_passes, 8, "{:?}", row.mode);
    }
    for row in &rows[3..] {
        assert!(row.forward_passes <= 8, "{:?}", row.mode);
        assert!(row.tokens_per_second > 0.0);
    }
}

fn committed(name: &str) -> flowlm::model::SavedModel {
    flowlm::model::SavedModel::load(&common::committed_model_dir(name), &Device::flex())
        .unwrap_or_else(|e| panic!("models/{name}: {e}"))
}

/// The task column of `flowlm bench cache` at Fast-dLLM's lengths: the committed counting
/// model's 251-character answers (42 five-digit numbers) decoded into 256 slots in blocks of 32
/// (the end token fills the last five), from starts it never saw. The threshold rule, with and
/// without the dual cache, commits several tokens per pass and still counts right.
#[test]
fn the_threshold_rule_decodes_long_answers_in_few_passes() {
    use flowlm::eval::decoding_modes::{DecodingMode, compare_accuracy};
    use flowlm::tasks::{TaskParameters, generate_split, task_by_name};
    let saved = committed("counting42");
    let parameters = TaskParameters {
        count: 42,
        digits: 5,
        ..TaskParameters::default()
    };
    let task = task_by_name("counting", &parameters).unwrap();
    // The development split's seed (`flowlm data task counting ... --seed 5`).
    let (_, examples) = generate_split(task.as_ref(), 0, 16, 5).unwrap();
    let modes = [
        DecodingMode {
            cache: CacheMode::None,
            threshold: Some(0.9),
        },
        DecodingMode {
            cache: CacheMode::Dual,
            threshold: Some(0.9),
        },
    ];
    let figures = compare_accuracy(
        &saved,
        task.as_ref(),
        &examples,
        32,
        &modes,
        16,
        &Device::flex(),
        &mut |_, _| {},
    )
    .unwrap();
    for (mode, f) in modes.iter().zip(&figures) {
        // Measured: 10 of these 16 in 17 (no cache) and 24 (dual) passes; 76% on the README
        // table's 100 test examples. A broken rule or cache decodes next to none.
        assert!(
            f.correct >= 8,
            "{mode:?}: {}/{} counted",
            f.correct,
            f.total
        );
        assert!(
            f.passes_per_batch <= 64.0,
            "{mode:?}: {} passes",
            f.passes_per_batch
        );
    }
}

/// An answer that blocks do not divide is decoded into whole blocks (the end token fills the
/// rest) instead of being refused: Sudoku's 16 cells in blocks of 5 take 20 one-token steps.
#[test]
fn the_task_comparison_rounds_the_answer_up_to_whole_blocks() {
    use flowlm::eval::decoding_modes::{DecodingMode, compare_accuracy};
    use flowlm::tasks::{TaskParameters, generate_split, task_by_name};
    let saved = committed("sudoku4");
    let task = task_by_name("sudoku4", &TaskParameters::default()).unwrap();
    let (_, examples) = generate_split(task.as_ref(), 0, 2, 5).unwrap();
    let uncached = DecodingMode {
        cache: CacheMode::None,
        threshold: None,
    };
    let figures = compare_accuracy(
        &saved,
        task.as_ref(),
        &examples,
        5,
        &[uncached],
        2,
        &Device::flex(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(figures[0].passes_per_batch, 20.0);
}
