mod common;

use burn::tensor::Device;
use flowlm::canvas::Canvas;
use flowlm::model::SavedModel;
use flowlm::model::saved::WeightPrecision;
use flowlm::random::rng_for;
use flowlm::recipe::Recipe;
use flowlm::sampler::{GreedySampler, Sampler};
use flowlm::trainer::{TrainOptions, train};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const LINE: &str = "the quick brown fox jumps over the lazy dog.\n";

fn tiny_recipe(data: &Path, steps: usize, extra: &str) -> Recipe {
    let text = format!(
        r#"
[data]
path = "{}"
sequence_length = 32
validation_fraction = 0.1
cache = false
[tokenizer]
kind = "char"
[model]
hidden_size = 64
num_hidden_layers = 2
num_attention_heads = 2
intermediate_size = 128
[training]
seed = 7
batch_size = 16
max_steps = {steps}
learning_rate = 3e-3
warmup_steps = 20
eval_every = 50
eval_batches = 2
sample_every = 0
checkpoint_every = 0
log_every = 10
{extra}
"#,
        data.display()
    );
    Recipe::parse(&text, Path::new("test.toml"), &[]).unwrap()
}

fn options(run: &Path, resume: bool) -> TrainOptions {
    TrainOptions {
        run_dir: run.to_path_buf(),
        resume,
        force: false,
        device: Device::flex(),
        show_progress: false,
        interrupt: Arc::new(AtomicBool::new(false)),
        init: None,
    }
}

#[test]
fn a_tiny_model_memorizes_a_line_and_regenerates_it_greedily() {
    let dir = common::scratch("memorize");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(400)).unwrap();
    let recipe = tiny_recipe(
        &dir.join("corpus.txt"),
        600,
        "random_length_probability = 0.0",
    );
    let outcome = train(&recipe, &options(&dir.join("run"), false), &mut |_| {}).unwrap();
    let validation = outcome.state.validation_losses.last().unwrap().1;
    let first = outcome.state.train_losses[0].1;
    assert!(
        validation < 0.5,
        "validation NELBO per token {validation} (started at {first})"
    );

    let device = Device::flex();
    let saved = SavedModel::load(&outcome.checkpoint, &device).unwrap();
    let prompt = saved.tokenizer.encode("the quick brown fox").unwrap();
    let special = saved.tokenizer.special();
    let mut canvas = Canvas::new(&[prompt], 13, special.mask, special.pad).unwrap();
    GreedySampler
        .run(
            &saved.denoiser(&device),
            &mut canvas,
            &mut rng_for(0, 0),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(
        saved.tokenizer.decode(canvas.response(0)).unwrap(),
        " jumps over t"
    );

    // A half-precision export loads back (into f32) and decodes the same answer.
    let half = dir.join("half");
    saved.export(&half, WeightPrecision::F16).unwrap();
    let full_size = std::fs::metadata(outcome.checkpoint.join("model.safetensors"))
        .unwrap()
        .len();
    let half_size = std::fs::metadata(half.join("model.safetensors"))
        .unwrap()
        .len();
    assert!(
        half_size * 10 < full_size * 6,
        "f16 weights take {half_size} bytes, f32 {full_size}"
    );
    let reloaded = SavedModel::load(&half, &device).unwrap();
    let mut canvas = Canvas::new(
        &[saved.tokenizer.encode("the quick brown fox").unwrap()],
        13,
        special.mask,
        special.pad,
    )
    .unwrap();
    GreedySampler
        .run(
            &reloaded.denoiser(&device),
            &mut canvas,
            &mut rng_for(0, 0),
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(
        reloaded.tokenizer.decode(canvas.response(0)).unwrap(),
        " jumps over t"
    );
    // Exporting never replaces a directory.
    let error = saved.export(&half, WeightPrecision::F16).unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
}

#[test]
fn resume_continues_exactly() {
    let dir = common::scratch("resume");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(100)).unwrap();
    let straight = tiny_recipe(&dir.join("corpus.txt"), 12, "");
    let full = train(
        &straight,
        &options(&dir.join("straight"), false),
        &mut |_| {},
    )
    .unwrap();

    let first_half = tiny_recipe(&dir.join("corpus.txt"), 12, "");
    let interrupted = options(&dir.join("resumed"), false);
    // Stop after 6 steps the way Ctrl-C does: the flag is raised and the loop checkpoints.
    let flag = interrupted.interrupt.clone();
    let mut steps_seen = 0;
    let partial = train(&first_half, &interrupted, &mut |line| {
        if line.starts_with("step ") && line.contains(" loss ") {
            steps_seen += 1;
            if steps_seen == 1 {
                // log_every = 10: raise the flag after the first log line (step 10).
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    })
    .unwrap();
    assert!(partial.interrupted);
    assert_eq!(partial.state.step, 10);
    let resumed = train(
        &first_half,
        &options(&dir.join("resumed"), true),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.state.step, 12);
    // Equal up to the last bits: the CPU backend's parallel reductions are not bitwise
    // reproducible between two processes' thread schedules, so 1e-5 relative is the bar; an
    // optimizer state or data order that was not restored moves step 12 by far more.
    assert_eq!(
        resumed.state.train_losses.len(),
        full.state.train_losses.len()
    );
    for ((step, a), (_, b)) in resumed
        .state
        .train_losses
        .iter()
        .zip(&full.state.train_losses)
    {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "step {step}: resumed loss {a} vs uninterrupted {b}"
        );
    }
}

#[test]
fn resume_without_a_checkpoint_is_a_clear_error() {
    let dir = common::scratch("no-checkpoint");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(20)).unwrap();
    let recipe = tiny_recipe(&dir.join("corpus.txt"), 2, "");
    let error = train(&recipe, &options(&dir.join("empty"), true), &mut |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no checkpoint"), "{error}");
}

/// One training per run directory: a live owner's lock stops a second run before it writes,
/// a dead owner's lock (after kill -9) is taken over, and the lock goes when the run ends.
#[test]
fn a_run_directory_is_locked_while_it_is_written() {
    let dir = common::scratch("lock");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(20)).unwrap();
    let recipe = tiny_recipe(&dir.join("corpus.txt"), 2, "");
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join(".lock"), format!("{}\n", std::process::id())).unwrap();
    let error = train(&recipe, &options(&run, false), &mut |_| {})
        .expect_err("a locked run directory is refused")
        .to_string();
    assert!(error.contains("another training"), "{error}");
    assert!(!run.join("recipe.toml").exists());

    // No process has this id (above the kernel's pid_max).
    std::fs::write(run.join(".lock"), "4294967295\n").unwrap();
    train(&recipe, &options(&run, false), &mut |_| {}).unwrap();
    assert!(!run.join(".lock").exists(), "the lock outlived the run");

    // The finished run is not replaced without `force`, and is with it.
    let error = train(&recipe, &options(&run, false), &mut |_| {})
        .expect_err("an existing run is refused")
        .to_string();
    assert!(error.contains("--force"), "{error}");
    let forced = TrainOptions {
        force: true,
        ..options(&run, false)
    };
    train(&recipe, &forced, &mut |_| {}).unwrap();
}

#[test]
fn the_training_sample_follows_the_recipes_sampler_section() {
    let dir = common::scratch("training-sample");
    // No newline in the corpus: the logged sample then has one character per token.
    std::fs::write(dir.join("corpus.txt"), LINE.trim_end().repeat(300)).unwrap();
    let mut recipe = tiny_recipe(&dir.join("corpus.txt"), 3, "sample_prompt = \"the\"");
    recipe.sampler.sampler = "greedy".into();
    recipe.sampler.gen_length = 5;
    recipe.sampler.steps = 5;
    recipe.sampler.block_length = 5;
    let mut samples = Vec::new();
    train(&recipe, &options(&dir.join("run"), false), &mut |line| {
        if let Some(text) = line.strip_prefix("sample @ 3: ") {
            samples.push(text.to_string());
        }
    })
    .unwrap();
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!(samples[0].starts_with("the"), "{samples:?}");
    assert_eq!(samples[0].chars().count(), 3 + 5, "{samples:?}");
}

#[test]
fn a_recipe_without_a_sampler_section_samples_with_its_corruptions_sampler() {
    let parse = |text: &str| Recipe::parse(text, Path::new("r.toml"), &[]).unwrap();
    let uniform = parse("[corruption]\nkind = \"uniform\"\n");
    assert_eq!(uniform.sampler.sampler, "uniform");
    assert_eq!(parse("").sampler.sampler, "llada");
    let named = parse("[corruption]\nkind = \"uniform\"\n[sampler]\nsampler = \"greedy\"\n");
    assert_eq!(named.sampler.sampler, "greedy");
}

/// A model continued with `--init` records where it started, and that model's own record, so
/// its `flowlm.json` accounts for every step it was trained on.
#[test]
fn a_continued_model_records_the_training_it_started_from() {
    let dir = common::scratch("lineage");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(100)).unwrap();
    let recipe = tiny_recipe(&dir.join("corpus.txt"), 12, "");
    train(&recipe, &options(&dir.join("first"), false), &mut |_| {}).unwrap();
    let first = dir.join("first").join("checkpoint");
    let continued = TrainOptions {
        init: Some(first.clone()),
        ..options(&dir.join("second"), false)
    };
    let recipe = tiny_recipe(&dir.join("corpus.txt"), 5, "");
    train(&recipe, &continued, &mut |_| {}).unwrap();
    let saved = SavedModel::load(&dir.join("second").join("checkpoint"), &Device::flex()).unwrap();
    let training = &saved.metadata.training;
    assert_eq!(training["steps"], 5);
    assert_eq!(training["init"]["steps"], 12);
    assert_eq!(
        training["init"]["model"],
        first.display().to_string(),
        "{training}"
    );
    assert!(training["init"]["tokens_seen"].as_u64().unwrap() > 0);
}
