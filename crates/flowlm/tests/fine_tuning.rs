//! Fine-tuning pretrained checkpoints (`flowlm train --init`): the real BERT checkpoint in
//! `../shared/models/bert-tiny-mlm` learns, its checkpoint is the family's own directory, resume
//! is exact, and FlowLM's own models continue from `--init` too.

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use flowlm::canvas::Canvas;
use flowlm::model::LossModel;
use flowlm::model::families::FamilyParameters;
use flowlm::model::open::OpenedModel;
use flowlm::random::rng_for;
use flowlm::recipe::Recipe;
use flowlm::sampler::{GreedySampler, Sampler};
use flowlm::trainer::{TrainOptions, train};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const LINE: &str = "the quick brown fox jumps over the lazy dog.\n";

fn bert() -> PathBuf {
    common::shared()
        .expect("../shared (with models/bert-tiny-mlm) must sit beside the repository")
        .join("models/bert-tiny-mlm")
}

fn recipe(data: &Path, steps: usize, corruption: &str) -> Recipe {
    let text = format!(
        r#"
[data]
path = "{}"
sequence_length = 24
validation_fraction = 0.1
cache = false
[corruption]
kind = "{corruption}"
[training]
seed = 3
batch_size = 8
max_steps = {steps}
learning_rate = 1e-3
warmup_steps = 2
eval_every = 0
eval_batches = 1
sample_every = 0
checkpoint_every = 0
log_every = 1
random_length_probability = 0.0
data_parallel_shards = 1
"#,
        data.display()
    );
    Recipe::parse(&text, Path::new("fine-tune.toml"), &[]).unwrap()
}

fn options(run: &Path, init: Option<&Path>, resume: bool) -> TrainOptions {
    TrainOptions {
        run_dir: run.to_path_buf(),
        resume,
        force: false,
        device: Device::flex(),
        show_progress: false,
        interrupt: Arc::new(AtomicBool::new(false)),
        init: init.map(Path::to_path_buf),
    }
}

/// The `length` tokens greedy decoding writes after `prompt` ids.
fn greedy_answer(model: &OpenedModel, prompt: &[u32], length: usize) -> Vec<u32> {
    let special = &model.metadata;
    let mut canvas = Canvas::new(
        &[prompt.to_vec()],
        length,
        special.mask_token_id,
        special.pad_token_id,
    )
    .unwrap();
    GreedySampler
        .run(
            model.denoiser.as_ref(),
            &mut canvas,
            &mut rng_for(0, 0),
            &mut |_, _| {},
        )
        .unwrap();
    canvas.response(0).to_vec()
}

/// How many of the 20 tokens after the first 4 of the corpus's token stream a greedy fill of
/// a training-sized canvas (24 tokens, as the rows were) writes exactly.
fn continuation_hits(model: &OpenedModel) -> usize {
    let stream = model.tokenizer.encode(&LINE.repeat(4)).unwrap();
    greedy_answer(model, &stream[..4], 20)
        .iter()
        .zip(&stream[4..24])
        .filter(|(a, b)| a == b)
        .count()
}

/// The corpus file beside a run directory.
fn dir_of_corpus(run: &Path) -> PathBuf {
    run.parent().unwrap().join("corpus.txt")
}

#[test]
fn bert_fine_tunes_into_a_checkpoint_of_its_own_family() {
    let dir = common::scratch("fine-tune-bert");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(200)).unwrap();
    let device = Device::flex();
    let original = OpenedModel::open(&bert(), &device).unwrap();
    let before = continuation_hits(&original);

    let run = dir.join("run");
    let outcome = train(
        &recipe(&dir.join("corpus.txt"), 160, "mask"),
        &options(&run, Some(&bert()), false),
        &mut |_| {},
    )
    .unwrap();
    let losses: Vec<f64> = outcome.state.train_losses.iter().map(|l| l.1).collect();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len() as f64;
    let (first, last) = (mean(&losses[..5]), mean(&losses[losses.len() - 5..]));
    assert!(
        last < 0.5 * first,
        "the masked loss fell from {first:.3} to only {last:.3}"
    );
    // Held-out rows are scored before the first step and after the last.
    let validation = &outcome.state.validation_losses;
    assert_eq!(validation.first().map(|v| v.0), Some(0));
    assert_eq!(validation.last().map(|v| v.0), Some(160));
    assert!(
        validation[validation.len() - 1].1 < 0.5 * validation[0].1,
        "{validation:?}"
    );

    // The checkpoint is a BERT directory: config, tokenizer files and f32 weights under
    // transformers' names, and nothing of the training state's own files in place of them.
    let checkpoint = &outcome.checkpoint;
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        assert_eq!(
            std::fs::read(checkpoint.join(file)).unwrap(),
            std::fs::read(bert().join(file)).unwrap(),
            "{file} is carried over unchanged"
        );
    }
    assert!(!checkpoint.join("LICENSE").exists());
    let tuned = OpenedModel::open(checkpoint, &device).unwrap();
    assert_eq!(tuned.context_length, original.context_length);
    // `flowlm eval`'s likelihood scores pretrained checkpoints too: the corpus is far more
    // likely under the tuned model.
    let nelbo = |dir: &Path| {
        let mut scored = flowlm::model::open::ScoredModel::open(dir, &device).unwrap();
        scored.metadata.sequence_length = 24;
        let (documents, _) =
            flowlm::data::tokenize_cached(&dir_of_corpus(&run), &[], &scored.tokenizer, None, None)
                .unwrap();
        flowlm::eval::likelihood(
            scored.model.as_ref(),
            &scored.metadata,
            &documents,
            LINE.len() * 200,
            1,
            8,
            0,
            &device,
            || {},
        )
        .unwrap()
        .nelbo_per_token
    };
    let (original_nelbo, tuned_nelbo) = (nelbo(&bert()), nelbo(checkpoint));
    assert!(
        tuned_nelbo < 0.5 * original_nelbo,
        "NELBO per token {original_nelbo} before, {tuned_nelbo} after"
    );
    let after = continuation_hits(&tuned);
    assert!(
        after >= 18 && before < 10,
        "the memorised line's continuation: {before}/20 tokens before fine-tuning, {after}/20 after"
    );
}

#[test]
fn a_fine_tuning_run_resumes_exactly() {
    let dir = common::scratch("fine-tune-resume");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(60)).unwrap();
    let corpus = dir.join("corpus.txt");
    let straight = train(
        &recipe(&corpus, 6, "mask_and_substitute"),
        &options(&dir.join("straight"), Some(&bert()), false),
        &mut |_| {},
    )
    .unwrap();

    let interrupted = options(&dir.join("resumed"), Some(&bert()), false);
    let flag = interrupted.interrupt.clone();
    let mut steps_seen = 0;
    let partial = train(
        &recipe(&corpus, 6, "mask_and_substitute"),
        &interrupted,
        &mut |line| {
            if line.starts_with("step ") && line.contains(" loss ") && !line.contains("validation")
            {
                steps_seen += 1;
                if steps_seen == 3 {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        },
    )
    .unwrap();
    assert!(partial.interrupted);
    assert_eq!(partial.state.step, 3);
    let resumed = train(
        &recipe(&corpus, 6, "mask_and_substitute"),
        &options(&dir.join("resumed"), None, true),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(resumed.state.step, 6);
    for ((step, a), (_, b)) in resumed
        .state
        .train_losses
        .iter()
        .zip(&straight.state.train_losses)
    {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "step {step}: resumed loss {a} vs uninterrupted {b}"
        );
    }
}

/// The trainable copy computes what the file-loaded network computes, and the loss's gradient
/// reaches the parameters through the family's own loading code.
#[test]
fn trainable_parameters_compute_the_checkpoint_and_receive_gradients() {
    let device = Device::flex();
    let opened = OpenedModel::open(&bert(), &device).unwrap();
    let ids = opened
        .tokenizer
        .encode("the quick brown fox jumps")
        .unwrap();
    let length = ids.len();
    let ids_tensor = |device: &Device| {
        Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, length]),
            device,
        )
    };
    let every = |device: &Device| {
        Tensor::<1, Int>::from_data(
            TensorData::new((0..length as i64).collect(), [length]),
            device,
        )
    };
    // A canvas holding exactly `ids` (no masks): the first id as prompt, the rest written in.
    let mut canvas = Canvas::new(
        &[ids[..1].to_vec()],
        length - 1,
        opened.metadata.mask_token_id,
        opened.metadata.pad_token_id,
    )
    .unwrap();
    canvas.rows[0] = ids.clone();
    let reference = opened.denoiser.logits(&canvas, None).unwrap();

    let train_device = device.clone().autodiff();
    let parameters = FamilyParameters::open(&bert(), &train_device).unwrap();
    assert_eq!(parameters.vocab_size(), reference.vocab);
    let time = Tensor::<1>::zeros([1], &train_device);
    let logits = parameters
        .scored_logits(ids_tensor(&train_device), time, every(&train_device))
        .unwrap();
    let values: Vec<f32> = logits
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let largest = values
        .iter()
        .zip(&reference.values)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(largest < 1e-4, "trainable logits differ by {largest}");

    let gradients = logits.powi_scalar(2).mean().backward();
    let gradients = burn::optim::GradientsParams::from_grads(gradients, &parameters);
    let reached = tensors_with_gradient(&parameters, &gradients);
    // Every tensor BERT reads takes part in the logits (the tied decoder included).
    assert!(reached >= 30, "only {reached} tensors received a gradient");
}

/// How many of the parameters' tensors received a gradient.
fn tensors_with_gradient(
    parameters: &FamilyParameters,
    gradients: &burn::optim::GradientsParams,
) -> usize {
    let mut reached = 0;
    burn::module::Module::visit(
        parameters,
        &mut CountGradients {
            gradients,
            reached: &mut reached,
        },
    );
    reached
}

struct CountGradients<'a> {
    gradients: &'a burn::optim::GradientsParams,
    reached: &'a mut usize,
}

impl burn::module::ModuleVisitor for CountGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Some(gradient) = self.gradients.get::<D>(param.id)
            && gradient.abs().sum().into_scalar::<f32>() > 0.0
        {
            *self.reached += 1;
        }
    }
}

#[test]
fn objectives_a_family_cannot_train_are_refused_before_any_work() {
    let dir = common::scratch("fine-tune-refused");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(60)).unwrap();
    let run = dir.join("run");
    let error = train(
        &recipe(&dir.join("corpus.txt"), 2, "autoregressive"),
        &options(&run, Some(&bert()), false),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("corruption.kind") && error.contains("autoregressive"),
        "{error}"
    );
    assert!(!run.join("checkpoint").exists());

    let error = train(
        &recipe(&dir.join("corpus.txt"), 2, "mask"),
        &options(&bert(), Some(&bert()), false),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("--init"), "{error}");
}

/// `--init` with one of FlowLM's own models continues it under the recipe's objective.
#[test]
fn a_flowlm_model_continues_from_init() {
    let dir = common::scratch("fine-tune-flowlm");
    std::fs::write(dir.join("corpus.txt"), LINE.repeat(200)).unwrap();
    let outcome = train(
        &recipe(&dir.join("corpus.txt"), 3, "mask_and_substitute"),
        &options(&dir.join("run"), Some(&common::default_model_dir()), false),
        &mut |_| {},
    )
    .unwrap();
    let saved = flowlm::model::SavedModel::load(&outcome.checkpoint, &Device::flex()).unwrap();
    let original =
        flowlm::model::SavedModel::load(&common::default_model_dir(), &Device::flex()).unwrap();
    assert_eq!(saved.config, original.config);
    assert_eq!(saved.metadata.corruption.name(), "mask_and_substitute");
    assert_eq!(
        saved.tokenizer.encode(LINE).unwrap(),
        original.tokenizer.encode(LINE).unwrap(),
        "the model's own tokenizer, not one the recipe builds"
    );
}

/// SFT on chat rows: the checkpoint's `chat_template` renders each conversation (the prompt
/// with the assistant turn opened, the answer the rest), only the answer is scored, and the
/// tuned model answers the same rendered prompts.
#[test]
fn bert_learns_chat_rows_rendered_with_its_chat_template() {
    use flowlm::tokenizer::chat::{ChatTemplate, Message};
    let dir = common::scratch("fine-tune-chat");
    // The BERT checkpoint with a chat template added (the real one ships none).
    let model = dir.join("bert-chat");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(bert().join(file), model.join(file)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bert().join("tokenizer_config.json")).unwrap())
            .unwrap();
    config["chat_template"] = "{% for m in messages %}{{ m.role }} says {{ m.content }} . {% endfor %}{% if add_generation_prompt %}assistant says{% endif %}".into();
    std::fs::write(
        model.join("tokenizer_config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let template = ChatTemplate::find(&model).unwrap().unwrap();

    let pairs = [
        ("what color is the sky", "blue"),
        ("what do cows drink", "water"),
        ("name a large animal", "elephant"),
    ];
    let conversation = |question: &str, answer: &str| {
        vec![
            Message {
                role: "user".into(),
                content: question.into(),
            },
            Message {
                role: "assistant".into(),
                content: answer.into(),
            },
        ]
    };
    let rows: String = (0..40)
        .flat_map(|_| pairs)
        .map(|(q, a)| {
            let messages = conversation(q, a);
            format!("{}\n", serde_json::json!({ "messages": messages }))
        })
        .collect();
    std::fs::write(dir.join("chat.jsonl"), rows).unwrap();

    // The rendering the trainer uses: prompt = turns before the answer with the assistant turn
    // opened, body = what the whole conversation adds to it.
    let document = flowlm::data::Document::Chat(conversation("what do cows drink", "water"));
    let (prompt, body) = document.prompt_and_body(Some(&template)).unwrap();
    assert_eq!(prompt, "user says what do cows drink . assistant says");
    assert_eq!(body, " water . ");

    let mut sft = recipe(&dir.join("chat.jsonl"), 60, "mask");
    sft.data.sequence_length = 16;
    let outcome = train(
        &sft,
        &options(&dir.join("run"), Some(&model), false),
        &mut |_| {},
    )
    .unwrap();
    let tuned = OpenedModel::open(&outcome.checkpoint, &Device::flex()).unwrap();
    for (question, answer) in pairs {
        let rendered = template
            .render(&conversation(question, answer)[..1], true)
            .unwrap();
        let ids = tuned.tokenizer.encode(&rendered).unwrap();
        let answer_ids = greedy_answer(&tuned, &ids, 16 - ids.len());
        let reply = tuned.tokenizer.decode(&answer_ids).unwrap();
        assert!(
            reply.trim_start().starts_with(answer),
            "{question:?} -> {reply:?}"
        );
    }
}

/// Every family fine-tunes through its own loading code: on each fixture checkpoint the
/// gradient of a loss on the trainable copy reaches every parameter the checkpoint stores, and
/// one AdamW step lowers that loss.
#[test]
fn every_family_takes_a_training_step() {
    use burn::optim::{AdamWConfig, GradientsParams};
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    for family in [
        "llada-tiny",
        "dream-tiny",
        "a2d-llama-tiny",
        "a2d-qwen2-tiny",
        "a2d-qwen3-tiny",
        "mdlm-tiny",
        "modernbert-tiny",
    ] {
        let dir = fixtures.join(family);
        let parameters =
            FamilyParameters::open(&dir, &train_device).unwrap_or_else(|e| panic!("{family}: {e}"));
        let ids: Vec<i64> = (0..12).map(|i| (i * 37 + 5) % 120).collect();
        let ids = |device: &Device| {
            Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, 12]), device)
        };
        let every = |device: &Device| {
            Tensor::<1, Int>::from_data(TensorData::new((0..12i64).collect(), [12]), device)
        };
        let targets =
            Tensor::<2, Int>::from_data(TensorData::new(vec![7i64; 12], [12, 1]), &train_device);
        let loss = |model: &FamilyParameters| {
            let logits = model
                .scored_logits(
                    ids(&train_device),
                    Tensor::zeros([1], &train_device),
                    every(&train_device),
                )
                .unwrap();
            burn::tensor::activation::log_softmax(logits, 1)
                .gather(1, targets.clone())
                .neg()
                .mean()
        };
        let before = loss(&parameters);
        let value = before.clone().into_scalar::<f32>();
        let gradients = GradientsParams::from_grads(before.backward(), &parameters);
        let reached = tensors_with_gradient(&parameters, &gradients);
        // Every stored float tensor but MDLM's rotary buffer (`inv_freq`, recomputed from the
        // config, never read) takes part.
        let tensors = flowlm::model::weights::Weights::open(&dir)
            .unwrap()
            .float_names()
            .iter()
            .filter(|name| !name.ends_with("inv_freq"))
            .count();
        assert_eq!(reached, tensors, "{family}: tensors that got a gradient");
        let mut optimizer = AdamWConfig::new().init();
        let stepped = optimizer.step(1e-2, parameters, gradients);
        let after = loss(&stepped).into_scalar::<f32>();
        assert!(after < value, "{family}: loss {value} -> {after}");
    }
}
