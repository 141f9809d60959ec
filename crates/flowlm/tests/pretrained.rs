//! Pretrained families load checkpoints as the Hub ships them and compute what the reference
//! implementation computes. The reference figures come from transformers' `BertForMaskedLM` on
//! the same checkpoint (`benches/pretrained_reference.py` prints them).

mod common;

use burn::tensor::Device;
use flowlm::canvas::Canvas;
use flowlm::model::Denoiser;
use flowlm::model::open::OpenedModel;
use std::path::PathBuf;

fn bert_tiny() -> PathBuf {
    let dir = common::shared()
        .expect("../shared is missing: these tests need ../shared/models/bert-tiny-mlm")
        .join("models/bert-tiny-mlm");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

#[test]
fn bert_masked_lm_logits_match_transformers() {
    let model = OpenedModel::open(&bert_tiny(), &Device::flex()).unwrap();
    let special = model.tokenizer.special();
    assert_eq!(special.mask, 103, "[MASK]");
    assert_eq!(model.prompt_prefix, vec![101], "[CLS] starts a prompt");
    assert_eq!(model.context_length, 512);
    // "[CLS] paris is the [MASK] of france . [SEP]"
    let mut canvas = Canvas::new(&[vec![101, 3000, 2003, 1996]], 5, 103, 0).unwrap();
    canvas.rows[0][5..].copy_from_slice(&[1997, 2605, 1012, 102]);
    let logits = model.denoiser.logits(&canvas, None).unwrap();
    let row = logits.at(0, 4);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let reference = [(2103, 1.78675), (4020, 1.09662), (2605, 0.75561)];
    for (rank, (id, value)) in reference.into_iter().enumerate() {
        assert_eq!(order[rank], id, "rank {rank}");
        assert!(
            (row[id] - value).abs() < 1e-3,
            "logit of {id}: {} vs transformers {value}",
            row[id]
        );
    }
}

/// Copies the checkpoint's files into a scratch directory, minus `leave_out`.
fn checkpoint_copy(name: &str, leave_out: &str) -> PathBuf {
    let dir = common::scratch(name);
    for entry in std::fs::read_dir(bert_tiny()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap();
        if file != leave_out {
            std::fs::copy(&path, dir.join(file)).unwrap();
        }
    }
    dir
}

fn open_error(dir: &std::path::Path) -> String {
    match OpenedModel::open(dir, &Device::flex()) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn broken_checkpoints_are_named() {
    let dir = checkpoint_copy("no-tokenizer", "tokenizer.json");
    assert!(open_error(&dir).contains("tokenizer.json"));

    let dir = checkpoint_copy("no-weights", "model.safetensors");
    assert!(open_error(&dir).contains("model.safetensors"));

    let dir = checkpoint_copy("unknown-family", "");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt9\""),
    )
    .unwrap();
    let error = open_error(&dir);
    assert!(error.contains("gpt9") && error.contains("bert"), "{error}");

    let dir = checkpoint_copy("wrong-shape", "");
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 512", "\"intermediate_size\": 256"),
    )
    .unwrap();
    let error = open_error(&dir);
    assert!(
        error.contains("intermediate.dense.weight") && error.contains("[512, 128]"),
        "{error}"
    );

    let dir = checkpoint_copy("sharded", "model.safetensors");
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"cls.predictions.bias": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    assert!(open_error(&dir).contains("model-00001-of-00002.safetensors"));
}

/// F32, F16 and BF16 tensors read back as f32; other dtypes and wrong shapes are refused by name.
#[test]
fn weights_widen_half_precision_and_name_what_they_refuse() {
    use flowlm::model::weights::Weights;
    use safetensors::{Dtype, tensor::TensorView};
    let dir = common::scratch("weights");
    let f16: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0.25f32, 3.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let f32s: Vec<u8> = [7.0f32, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ints: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("a", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        ("b", TensorView::new(Dtype::BF16, vec![2], &bf16).unwrap()),
        ("c", TensorView::new(Dtype::F32, vec![1, 2], &f32s).unwrap()),
        ("d", TensorView::new(Dtype::I64, vec![2], &ints).unwrap()),
    ];
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let weights = Weights::open(&dir).unwrap();
    let device = Device::flex();
    let read = |name: &str| -> Vec<f32> {
        weights
            .tensor(name, [2], &device)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(read("a"), vec![1.5, -2.0]);
    assert_eq!(read("b"), vec![0.25, 3.0]);
    let c: Vec<f32> = weights
        .tensor("c", [1, 2], &device)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(c, vec![7.0, 8.0]);
    let error = weights.tensor("c", [2], &device).unwrap_err().to_string();
    assert!(error.contains("`c`") && error.contains("[1, 2]"), "{error}");
    let error = weights.tensor("d", [2], &device).unwrap_err().to_string();
    assert!(error.contains("`d`") && error.contains("I64"), "{error}");
    let error = weights.tensor("e", [2], &device).unwrap_err().to_string();
    assert!(error.contains("no tensor `e`"), "{error}");
}

/// `models/default` written under LLaDA's names and layout (`[out, in]` linear weights,
/// `model.transformer.*`): FlowLM's own network has LLaDA's architecture (pre-norm RMSNorm,
/// rotate-half rotary, SwiGLU, bidirectional attention, tied head), so the LLaDA family must
/// give the same logits as FlowLM's model on every slot, padded rows included.
#[test]
fn llada_family_reproduces_the_same_network_under_llada_names() {
    use flowlm::model::SavedModel;
    let root = common::default_model_dir();
    let dir = common::llada_checkpoint("llada");
    let device = Device::flex();
    let llada = OpenedModel::open(&dir, &device).unwrap();
    let ours = SavedModel::load(&root, &device).unwrap();
    assert_eq!(llada.metadata.mask_token_id, 1, "mask id from config.json");
    let short = ours.tokenizer.encode("ROMEO:").unwrap();
    let long = ours.tokenizer.encode("JULIET. O Romeo, Romeo").unwrap();
    let canvas = Canvas::new(&[short, long], 8, 1, ours.metadata.pad_token_id).unwrap();
    let expected = ours.denoiser(&device).logits(&canvas, None).unwrap();
    let actual = llada.denoiser.logits(&canvas, None).unwrap();
    for row in 0..canvas.batch() {
        for slot in canvas.padding[row]..canvas.width() {
            for (a, e) in actual.at(row, slot).iter().zip(expected.at(row, slot)) {
                assert!(
                    (a - e).abs() <= 1e-3 * (1.0 + e.abs()),
                    "row {row} slot {slot}: {a} vs {e}"
                );
            }
        }
    }
}

/// A scratch copy of `tests/fixtures/NAME` (a small random checkpoint transformers saved, by
/// `benches/*_fixture*.py`) with `edit` applied to its `config.json`.
fn fixture_copy(name: &str, edit: impl Fn(String) -> String) -> (PathBuf, PathBuf) {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = common::scratch(name);
    std::fs::copy(
        fixture.join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let config = std::fs::read_to_string(fixture.join("config.json")).unwrap();
    std::fs::write(dir.join("config.json"), edit(config)).unwrap();
    // Any tokenizer whose mask id is inside the 128-token vocabulary serves for logits.
    std::fs::copy(
        bert_tiny().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    (fixture, dir)
}

/// The largest deviation `|a - e| / (1 + |e|)` of a family's logits from those transformers
/// computed for the fixture's left-padded batch, with `edit` applied to the config first.
fn fixture_deviation(name: &str, edit: impl Fn(String) -> String) -> f32 {
    let (fixture, dir) = fixture_copy(name, edit);
    let model = OpenedModel::open(&dir, &Device::flex()).unwrap();
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture.join("expected_logits.json")).unwrap(),
    )
    .unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(expected["ids"].clone()).unwrap();
    let padding: Vec<usize> = serde_json::from_value(expected["padding"].clone()).unwrap();
    let logits: Vec<Vec<Vec<f32>>> = serde_json::from_value(expected["logits"].clone()).unwrap();
    let width = ids[0].len();
    let prompts: Vec<Vec<u32>> = ids
        .iter()
        .zip(&padding)
        .map(|(row, &pad)| row[pad..width - 1].to_vec())
        .collect();
    // A canvas has at least one answer slot: the last column, set to its id below.
    let mut canvas = Canvas::new(&prompts, 1, 103, 0).unwrap();
    assert_eq!(canvas.width(), width);
    assert_eq!(canvas.padding, padding);
    for (row, ids) in ids.iter().enumerate() {
        canvas.rows[row][width - 1] = ids[width - 1];
    }
    // Time-conditioned fixtures record each row's time.
    let time: Option<Vec<f32>> = serde_json::from_value(expected["time"].clone()).unwrap();
    let actual = model.denoiser.logits(&canvas, time.as_deref()).unwrap();
    let mut worst = 0f32;
    for (row, &pad) in padding.iter().enumerate() {
        for (slot, reference) in logits[row].iter().enumerate().skip(pad) {
            for (a, e) in actual.at(row, slot).iter().zip(reference) {
                worst = worst.max((a - e).abs() / (1.0 + e.abs()));
            }
        }
    }
    worst
}

/// Checks a family against the logits transformers computed on its fixture.
fn check_fixture(name: &str) {
    let deviation = fixture_deviation(name, |config| config);
    assert!(
        deviation <= 1e-3,
        "{name}: logits {deviation} from transformers'"
    );
}

/// ModernBERT: 4 layers (full, sliding, sliding, full) and a window of +-4, so the sliding
/// layers matter on 16 slots.
#[test]
fn modernbert_logits_match_transformers() {
    check_fixture("modernbert-tiny");
}

/// Dream: its published `modeling_dream.py` (Fast-dLLM's copy), logits shifted right by one
/// slot as its `generation_utils.py` reads them.
#[test]
fn dream_logits_match_the_published_modeling_file() {
    check_fixture("dream-tiny");
}

/// A fixture's recorded reference runs (`expected_samples.json`, written by its script) and the
/// model they ran on, opened by FlowLM.
struct RecordedSamples {
    model: OpenedModel,
    expected: serde_json::Value,
    prompt: Vec<u32>,
}

impl RecordedSamples {
    fn open(name: &str) -> Self {
        let (fixture, dir) = fixture_copy(name, |config| config);
        let model = OpenedModel::open(&dir, &Device::flex()).unwrap();
        let expected: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture.join("expected_samples.json")).unwrap(),
        )
        .unwrap();
        let prompt = serde_json::from_value(expected["prompt"].clone()).unwrap();
        let recorded = Self {
            model,
            expected,
            prompt,
        };
        assert_eq!(
            recorded.model.metadata.mask_token_id as usize,
            recorded.number("mask")
        );
        recorded
    }

    fn number(&self, key: &str) -> usize {
        self.expected[key].as_u64().unwrap() as usize
    }

    fn samples(&self) -> &[serde_json::Value] {
        self.expected["samples"].as_array().unwrap()
    }

    /// FlowLM's answer to the recorded prompt under `sampler`, and its forward passes.
    fn run(&self, sampler: &dyn flowlm::sampler::Sampler) -> (Vec<u32>, usize) {
        let metadata = &self.model.metadata;
        let mut canvas = Canvas::new(
            std::slice::from_ref(&self.prompt),
            self.number("gen_length"),
            metadata.mask_token_id,
            metadata.pad_token_id,
        )
        .unwrap();
        let report = sampler
            .run(
                &*self.model.denoiser,
                &mut canvas,
                &mut flowlm::random::rng_for(0, 0),
                &mut |_, _| {},
            )
            .unwrap();
        (
            canvas.rows[0][self.prompt.len()..].to_vec(),
            report.forward_passes,
        )
    }
}

/// A recorded sample's answer.
fn recorded_answer(sample: &serde_json::Value) -> Vec<u32> {
    serde_json::from_value(sample["answer"].clone()).unwrap()
}

/// The `dream` sampler writes what Dream's own `diffusion_generate` wrote at temperature 0 on
/// the same weights, with each of its confidence algorithms, token for token.
#[test]
fn dream_sampler_matches_dream_diffusion_generate() {
    use flowlm::sampler::{DreamConfidence, DreamSampler};
    let recorded = RecordedSamples::open("dream-tiny");
    assert_eq!(recorded.samples().len(), 3, "every confidence algorithm");
    for sample in recorded.samples() {
        let alg = sample["alg"].as_str().unwrap();
        let sampler = DreamSampler {
            steps: recorded.number("steps"),
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            confidence: DreamConfidence::parse(alg).unwrap(),
        };
        let (answer, passes) = recorded.run(&sampler);
        assert_eq!(
            answer,
            recorded_answer(sample),
            "{alg}: FlowLM's answer differs from Dream's"
        );
        assert_eq!(passes, recorded.number("steps"), "{alg}");
    }
}

/// A2D Llama: head_dim 12 (not hidden / heads), attention and MLP biases, tied head, llama3 RoPE
/// scaling.
#[test]
fn a2d_llama_logits_match_transformers() {
    check_fixture("a2d-llama-tiny");
    // The fixture's positions reach the scaled frequencies: without the rule the logits differ.
    let unscaled = fixture_deviation("a2d-llama-tiny", |config| {
        config.replace("\"llama3\"", "\"default\"")
    });
    assert!(
        unscaled > 1e-2,
        "llama3 scaling left the logits unchanged ({unscaled})"
    );
}

/// A2D Qwen2: query/key/value biases, untied head.
#[test]
fn a2d_qwen2_logits_match_transformers() {
    check_fixture("a2d-qwen2-tiny");
}

/// A2D Qwen3: per-head query/key RMSNorms, head_dim 12, tied head.
#[test]
fn a2d_qwen3_logits_match_transformers() {
    check_fixture("a2d-qwen3-tiny");
}

/// RoPE rules FlowLM does not run, and activations other than SiLU, are refused by name.
#[test]
fn unsupported_decoder_settings_are_named() {
    let open = |edit: &dyn Fn(String) -> String| {
        let (_, dir) = fixture_copy("a2d-llama-tiny", edit);
        open_error(&dir)
    };
    let error = open(&|config| config.replace("\"llama3\"", "\"yarn\""));
    assert!(
        error.contains("rope_type") && error.contains("yarn"),
        "{error}"
    );
    let error = open(&|config| config.replace("\"low_freq_factor\"", "\"unknown\""));
    assert!(error.contains("low_freq_factor"), "{error}");
    let error = open(&|config| config.replace("\"silu\"", "\"gelu\""));
    assert!(
        error.contains("hidden_act") && error.contains("gelu"),
        "{error}"
    );
}

/// MDLM: the DiT of the MDLM repository (adaLN blocks, packed q/k/v, tanh GELU, modulated output
/// layer), at sigma = 0 as its published checkpoints run, and time-conditioned at the noise
/// level of each row's time.
#[test]
fn mdlm_logits_match_the_reference_dit() {
    check_fixture("mdlm-tiny");
    check_fixture("mdlm-timed-tiny");
    // The times matter, and a sampler without them gives each row its masked share of the answer.
    let (_, dir) = fixture_copy("mdlm-timed-tiny", |config| config);
    let model = OpenedModel::open(&dir, &Device::flex()).unwrap();
    let canvas = Canvas::new(&[vec![5, 17, 9], vec![7]], 4, 127, 0).unwrap();
    let at = |time: Option<&[f32]>| model.denoiser.logits(&canvas, time).unwrap().values;
    let differs = |a: &[f32], b: &[f32]| a.iter().zip(b).any(|(x, y)| (x - y).abs() > 1e-3);
    assert!(differs(&at(Some(&[0.3, 0.3])), &at(Some(&[0.9, 0.9]))));
    // (All 4 answer slots are masked here.)
    assert!(!differs(&at(None), &at(Some(&[1.0, 1.0]))));
    assert!(differs(&at(None), &at(Some(&[0.5, 0.5]))));
}

/// LLaDA: the published `modeling_llada.py` (Fast-dLLM's copy) on a random checkpoint it saved.
#[test]
fn llada_logits_match_the_published_modeling_file() {
    check_fixture("llada-tiny");
}

/// The LLaDA sampler, with each cache mode and with the step schedule and the threshold rule,
/// writes the answers Fast-dLLM's `llada/generate.py` (`generate`, `generate_with_prefix_cache`,
/// `generate_with_dual_cache`) wrote at temperature 0 on the same weights, token for token. The
/// cached references run one more forward pass per block than FlowLM when a block's first step
/// fills it (their loop computes before it checks), so FlowLM's count is at most theirs and
/// equal without a cache.
#[test]
fn llada_sampler_matches_fast_dllm_generate_in_every_mode() {
    use flowlm::model::kv_cache::CacheMode;
    use flowlm::sampler::{LladaSampler, ParallelRule};
    let recorded = RecordedSamples::open("llada-tiny");
    assert_eq!(
        recorded.samples().len(),
        6,
        "every cache mode with and without the threshold"
    );
    for sample in recorded.samples() {
        let cache = match sample["cache"].as_str().unwrap() {
            "none" => CacheMode::None,
            "prefix" => CacheMode::Prefix,
            _ => CacheMode::Dual,
        };
        let parallel = sample["threshold"]
            .as_f64()
            .map_or(ParallelRule::Schedule, ParallelRule::Threshold);
        let sampler = LladaSampler {
            steps: recorded.number("steps"),
            block_length: recorded.number("block_length"),
            parallel,
            cache,
            ..Default::default()
        };
        let (answer, passes) = recorded.run(&sampler);
        let reference_passes = sample["forward_passes"].as_u64().unwrap() as usize;
        assert_eq!(
            answer,
            recorded_answer(sample),
            "{cache:?} {parallel:?}: FlowLM's answer differs from Fast-dLLM's"
        );
        assert!(
            passes <= reference_passes && (cache != CacheMode::None || passes == reference_passes),
            "{cache:?} {parallel:?}: {passes} forward passes, the reference {reference_passes}"
        );
    }
}

/// A LLaDA config whose architecture switches FlowLM does not implement is refused by name.
#[test]
fn llada_switches_flowlm_does_not_run_are_named() {
    for (from, to, key) in [
        (
            "\"block_type\": \"llama\"",
            "\"block_type\": \"sequential\"",
            "block_type",
        ),
        ("\"rope\": true", "\"rope\": false", "rope"),
        ("\"alibi\": false", "\"alibi\": true", "alibi"),
    ] {
        let (_, dir) = fixture_copy("llada-tiny", |config| {
            assert!(config.contains(from), "the fixture's config has {from}");
            config.replace(from, to)
        });
        let error = open_error(&dir);
        assert!(error.contains(key), "{key}: {error}");
    }
}

/// A bf16 checkpoint's matrices stay bf16 in memory (half the bytes), and its logits equal,
/// bit for bit, those of an f32 checkpoint holding the same (bf16-rounded) values: widening is
/// exact, whether at load or at each product. Against the unrounded f32 checkpoint the bf16
/// logits stay within 15% of the slot's largest logit: the fixture's random weights (std 0.5)
/// magnify rounding, and PyTorch running `modeling_llada.py` with the same bf16-rounded weights
/// deviates as much (up to 12% on these slots).
#[test]
fn a_bf16_checkpoint_stays_16_bit_and_computes_what_its_widened_copy_computes() {
    use flowlm::model::weights::Weights;
    use safetensors::{Dtype, SafeTensors, tensor::TensorView};
    let (_, original) = fixture_copy("llada-tiny", |config| config);
    let bytes = std::fs::read(original.join("model.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&bytes).unwrap();
    // Every tensor rounded to bf16: once stored as bf16, once as f32.
    let mut rounded: Vec<(String, Vec<usize>, Vec<half::bf16>)> = Vec::new();
    for (name, view) in source.tensors() {
        assert_eq!(view.dtype(), Dtype::F32);
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| half::bf16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        rounded.push((name, view.shape().to_vec(), values));
    }
    let write = |dir: &std::path::Path, as_bf16: bool| {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = rounded
            .iter()
            .map(|(name, shape, values)| {
                let bytes = if as_bf16 {
                    values.iter().flat_map(|v| v.to_le_bytes()).collect()
                } else {
                    values
                        .iter()
                        .flat_map(|v| v.to_f32().to_le_bytes())
                        .collect()
                };
                (name.clone(), shape.clone(), bytes)
            })
            .collect();
        let dtype = if as_bf16 { Dtype::BF16 } else { Dtype::F32 };
        let views: Vec<(&str, TensorView)> = encoded
            .iter()
            .map(|(name, shape, bytes)| {
                (
                    name.as_str(),
                    TensorView::new(dtype, shape.clone(), bytes).unwrap(),
                )
            })
            .collect();
        std::fs::write(
            dir.join("model.safetensors"),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
    };
    let copy = |scratch: &str, as_bf16: bool| {
        let dir = common::scratch(scratch);
        for file in ["config.json", "tokenizer.json"] {
            std::fs::copy(original.join(file), dir.join(file)).unwrap();
        }
        write(&dir, as_bf16);
        dir
    };
    let bf16_dir = copy("llada-bf16", true);
    let widened_dir = copy("llada-bf16-widened", false);

    let device = Device::flex();
    let head = Weights::open(&bf16_dir)
        .unwrap()
        .matrix("model.transformer.ff_out.weight", [128, 64], &device)
        .unwrap();
    assert_eq!(head.dtype(), burn::tensor::DType::BF16, "kept 16-bit");

    let prompts = [vec![5, 17, 9, 33], vec![7, 19, 44, 3, 88, 21]];
    let canvas = Canvas::new(&prompts, 6, 127, 2).unwrap();
    let logits = |dir: &std::path::Path| {
        OpenedModel::open(dir, &device)
            .unwrap()
            .denoiser
            .logits(&canvas, None)
            .unwrap()
    };
    let (bf16, widened, full) = (logits(&bf16_dir), logits(&widened_dir), logits(&original));
    for row in 0..canvas.batch() {
        for slot in canvas.padding[row]..canvas.width() {
            assert_eq!(
                bf16.at(row, slot),
                widened.at(row, slot),
                "row {row} slot {slot}"
            );
            // bf16 keeps 8 bits of mantissa: errors scale with the slot's largest logit.
            let scale = full.at(row, slot).iter().fold(0f32, |m, e| m.max(e.abs()));
            for (a, e) in bf16.at(row, slot).iter().zip(full.at(row, slot)) {
                assert!(
                    (a - e).abs() <= 0.15 * scale,
                    "bf16 {a} vs f32 {e} (largest {scale}) at row {row} slot {slot}"
                );
            }
        }
    }
}

/// The same checkpoint split into two shards with `model.safetensors.index.json` gives the
/// logits of the single file, bit for bit.
#[test]
fn sharded_and_single_file_checkpoints_compute_the_same() {
    use safetensors::{SafeTensors, tensor::TensorView};
    let (_, single) = fixture_copy("llada-tiny", |config| config);
    let bytes = std::fs::read(single.join("model.safetensors")).unwrap();
    let source = SafeTensors::deserialize(&bytes).unwrap();
    let sharded = common::scratch("llada-sharded");
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(single.join(file), sharded.join(file)).unwrap();
    }
    let mut names: Vec<String> = source.names().into_iter().map(String::from).collect();
    names.sort();
    let halves = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (index, half) in [halves.0, halves.1].into_iter().enumerate() {
        let file = format!("model-{:05}-of-00002.safetensors", index + 1);
        let views: Vec<(String, TensorView)> = half
            .iter()
            .map(|name| (name.clone(), source.tensor(name).unwrap()))
            .collect();
        std::fs::write(
            sharded.join(&file),
            safetensors::serialize(views, None).unwrap(),
        )
        .unwrap();
        for name in half {
            weight_map.insert(name.clone(), file.clone().into());
        }
    }
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        serde_json::json!({ "metadata": {}, "weight_map": weight_map }).to_string(),
    )
    .unwrap();
    let canvas = Canvas::new(&[vec![5, 17, 9], vec![7, 19, 44, 3]], 5, 127, 2).unwrap();
    let logits = |dir: &std::path::Path| {
        OpenedModel::open(dir, &Device::flex())
            .unwrap()
            .denoiser
            .logits(&canvas, None)
            .unwrap()
    };
    let (one, two) = (logits(&single), logits(&sharded));
    for row in 0..canvas.batch() {
        for slot in canvas.padding[row]..canvas.width() {
            assert_eq!(
                one.at(row, slot),
                two.at(row, slot),
                "row {row} slot {slot}"
            );
        }
    }
}

/// Opening a checkpoint reports its tensor bytes as they are read: counts that only grow and
/// end at the size of every tensor in the file.
#[test]
fn loading_reports_progress_up_to_every_tensor_byte() {
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = reports.clone();
    flowlm::model::open::OpenedModel::open_with_progress(
        &bert_tiny(),
        &Device::flex(),
        move |read, total| sink.lock().unwrap().push((read, total)),
    )
    .unwrap();
    let reports = reports.lock().unwrap();
    let weights = std::fs::read(bert_tiny().join("model.safetensors")).unwrap();
    let header = u64::from_le_bytes(weights[..8].try_into().unwrap()) + 8;
    let data_bytes = weights.len() as u64 - header;
    assert!(reports.len() > 10, "{} reports", reports.len());
    assert!(reports.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(reports.iter().all(|&(_, total)| total == data_bytes));
    // BERT reads every tensor but the unused pooler (and reads the tied decoder once more).
    let (last, _) = *reports.last().unwrap();
    assert!(last > data_bytes * 9 / 10, "read {last} of {data_bytes}");
}

/// `bench generate --random-weights` presets: built in memory with 16-bit matrices and no file,
/// they run a forward pass of the preset's shapes; an unknown preset lists the known ones.
#[test]
fn random_weight_presets_build_in_memory_and_run() {
    use flowlm::model::families::{RANDOM_PRESETS, random_network};
    let device = Device::flex();
    let network = random_network("llada-46m", &device).unwrap();
    assert_eq!(
        (network.vocab_size(), network.context_length()),
        (4096, 4096)
    );
    let ids = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(vec![1i64, 2, 3, 4095], [1, 4]),
        &device,
    );
    let positions = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(vec![0i64, 1, 2, 3], [1, 4]),
        &device,
    );
    let time = burn::tensor::Tensor::<1>::zeros([1], &device);
    let (logits, _) = network.forward(ids, positions, None, time, None).unwrap();
    assert_eq!(logits.dims(), [1, 4, 4096]);
    let values: Vec<f32> = logits.into_data().try_to_vec().unwrap();
    assert!(values.iter().all(|v| v.is_finite()));
    assert!(
        values.iter().any(|&v| v != values[0]),
        "random weights give varied logits"
    );
    let error = random_network("gpt-5", &device).err().unwrap().to_string();
    for (name, _, _) in RANDOM_PRESETS {
        assert!(error.contains(name), "{error}");
    }
}
