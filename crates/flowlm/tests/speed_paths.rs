//! Each speed path computes what the plain path computes: data-parallel gradients, the loss
//! that runs the output head only at scored slots, and top choices taken on the device.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use flowlm::canvas::Canvas;
use flowlm::corruption::{CleanBatch, Corruption, MaskCorruption, TimeSampling};
use flowlm::model::Denoiser;
use flowlm::model::{
    DenoiserInput, DiffusionTransformer, DiffusionTransformerConfig, ModelDenoiser, TopChoices,
    default_positions, seeded_init, stable_parameter_ids,
};
use flowlm::objective::{token_cross_entropy, weighted_cross_entropy};
use flowlm::random::rng_for;
use flowlm::trainer::batch_loss;
use flowlm::trainer::data_parallel::{rows_of, shard_rows, sharded_gradients};

const VOCAB: usize = 40;
const LENGTH: usize = 16;

fn config() -> DiffusionTransformerConfig {
    let mut config = DiffusionTransformerConfig::small(VOCAB, LENGTH);
    config.hidden_size = 32;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 2;
    config.intermediate_size = 48;
    config
}

fn model(device: &Device) -> DiffusionTransformer {
    stable_parameter_ids(seeded_init(config().init(device), 3, 0.02))
}

fn clean_batch(rows: usize) -> CleanBatch {
    let tokens = (0..rows * LENGTH)
        .map(|i| ((i * 7 + i / 5) % (VOCAB - 1)) as u32)
        .collect();
    CleanBatch::unconditional(tokens, rows, LENGTH)
}

fn corruption() -> MaskCorruption {
    MaskCorruption {
        mask_id: (VOCAB - 1) as u32,
        time: TimeSampling::Antithetic,
    }
}

/// Every gradient of `model` as one flat vector, parameter by parameter.
fn flatten(model: &DiffusionTransformer, mut gradients: GradientsParams) -> Vec<f32> {
    struct Collect<'a>(&'a mut GradientsParams, Vec<f32>);
    impl burn::module::ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let gradient = self
                .0
                .remove::<D>(param.id)
                .expect("every parameter has a gradient");
            let values = gradient
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32 gradient");
            self.1.extend(values);
        }
    }
    let mut collect = Collect(&mut gradients, Vec::new());
    model.visit(&mut collect);
    collect.1
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst <= tolerance, "{what}: largest difference {worst}");
}

#[test]
fn data_parallel_step_equals_the_single_replica_step() {
    let device = Device::flex().autodiff();
    let model = model(&device);
    let clean = clean_batch(6);
    let ranges = shard_rows(clean.batch, 3);
    assert_eq!(ranges, vec![0..2, 2..4, 4..6]);
    let corruption = corruption();
    let shard_loss = |replica: &DiffusionTransformer, shard: usize| {
        let rows = rows_of(&clean, ranges[shard].clone());
        let share = rows.batch as f64 / clean.batch as f64;
        let mut rng = rng_for(11, shard as u64);
        Ok(batch_loss(replica, &corruption, &rows, 0, &mut rng, &device)?.mul_scalar(share))
    };

    // One replica: the shards' losses summed into one graph, one backward pass.
    let total = (0..ranges.len())
        .map(|shard| shard_loss(&model, shard).unwrap())
        .reduce(|a, b| a + b)
        .expect("three shards");
    let single_value = total.clone().into_scalar::<f32>() as f64;
    let single = flatten(
        &model,
        GradientsParams::from_grads(total.backward(), &model),
    );

    for threads in [1, 3] {
        let (gradients, value) =
            sharded_gradients(&model, ranges.len(), threads, shard_loss).unwrap();
        assert!(
            (value - single_value).abs() < 1e-5,
            "loss {value} vs {single_value}"
        );
        assert_close(
            &flatten(&model, gradients),
            &single,
            1e-5,
            &format!("gradients with {threads} threads"),
        );
    }
}

#[test]
fn shards_never_empty_and_cover_the_batch() {
    assert_eq!(shard_rows(3, 8), vec![0..1, 1..2, 2..3]);
    assert_eq!(shard_rows(5, 2), vec![0..2, 2..5]);
    assert_eq!(shard_rows(4, 1), vec![0..4]);
}

#[test]
fn scored_slot_loss_equals_the_full_canvas_loss() {
    let device = Device::flex();
    let model = model(&device);
    let clean = clean_batch(4);
    let corrupted = corruption().corrupt(&clean, &mut rng_for(5, 0));
    let scored = corrupted.weights.iter().filter(|&&w| w != 0.0).count();
    assert!(
        scored > 0 && scored < corrupted.weights.len(),
        "the draw must leave some slots unscored for this test to mean anything"
    );

    let fast = token_cross_entropy(&model, &corrupted, 4, LENGTH, &device)
        .unwrap()
        .into_scalar::<f32>();

    let ids: Vec<i64> = corrupted.input.iter().map(|&t| t as i64).collect();
    let targets: Vec<i64> = corrupted.targets.iter().map(|&t| t as i64).collect();
    let logits = model.forward(
        DenoiserInput::Tokens(Tensor::<2, Int>::from_data(
            TensorData::new(ids, [4, LENGTH]),
            &device,
        )),
        default_positions(4, LENGTH, &device),
        None,
        None,
    );
    let full = weighted_cross_entropy(
        logits,
        Tensor::<2, Int>::from_data(TensorData::new(targets, [4, LENGTH]), &device),
        Tensor::<2>::from_data(
            TensorData::new(corrupted.weights.clone(), [4, LENGTH]),
            &device,
        ),
        corrupted.normalizer,
    )
    .into_scalar::<f32>();
    assert!(
        (fast - full).abs() <= 1e-5 * full.abs().max(1.0),
        "{fast} vs {full}"
    );
}

#[test]
fn device_top_choices_equal_host_choices() {
    let device = Device::flex();
    let denoiser = ModelDenoiser {
        model: model(&device),
        device: device.clone(),
    };
    let mask = (VOCAB - 1) as u32;
    // Two prompts of different lengths: the batch is left-padded.
    let canvas = Canvas::new(&[vec![3, 4, 5], vec![7]], 8, mask, 0).expect("canvas");
    let on_device = denoiser
        .top_choices(&canvas, None, mask)
        .expect("device choices");
    let mut logits = denoiser.logits(&canvas, None).expect("logits");
    logits.forbid(mask);
    let on_host = TopChoices::from_logits(&logits);
    assert_eq!(on_device.tokens, on_host.tokens);
    assert!(on_device.tokens.iter().all(|&t| t != mask));
    for (d, h) in on_device.probabilities.iter().zip(&on_host.probabilities) {
        assert!((d - h).abs() < 1e-5, "probability {d} vs {h}");
    }
}

/// Top choices of a block of columns (the output head on those columns only) equal the whole
/// canvas's at those columns, for a padded batch.
#[test]
fn top_choices_of_some_columns_equal_those_of_the_whole_canvas() {
    let device = Device::flex();
    let denoiser = ModelDenoiser {
        model: model(&device),
        device: device.clone(),
    };
    let mask = (VOCAB - 1) as u32;
    let canvas = Canvas::new(&[vec![3, 4, 5], vec![7]], 8, mask, 0).expect("canvas");
    let whole = denoiser.top_choices(&canvas, None, mask).expect("whole");
    let block = 5..9;
    let part = denoiser
        .top_choices_in(&canvas, block.clone(), mask)
        .expect("block");
    assert_eq!((part.length, part.first_column), (4, 5));
    for row in 0..canvas.batch() {
        for column in block.clone() {
            let (token, p) = part.at(row, column);
            let (expected_token, expected_p) = whole.at(row, column);
            assert_eq!(token, expected_token, "row {row} column {column}");
            assert!((p - expected_p).abs() < 1e-5, "row {row} column {column}");
        }
    }
    assert!(denoiser.top_choices_in(&canvas, 9..12, mask).is_err());
}

/// The model through `logits` alone, so the trait's host-side choices run.
struct HostOnly(ModelDenoiser);

impl Denoiser for HostOnly {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn logits(
        &self,
        canvas: &Canvas,
        time: Option<&[f32]>,
    ) -> flowlm::Result<flowlm::model::Logits> {
        self.0.logits(canvas, time)
    }
}

#[test]
fn samplers_write_the_same_tokens_with_device_choices() {
    use flowlm::sampler::{
        DreamConfidence, DreamSampler, GreedySampler, LladaSampler, RemaskSampler, Sampler,
    };
    let device = Device::flex();
    let on_device = ModelDenoiser {
        model: model(&device),
        device: device.clone(),
    };
    let on_host = HostOnly(on_device.clone());
    let mask = (VOCAB - 1) as u32;
    let prompts = [vec![3, 4, 5], vec![7]];
    let llada = LladaSampler {
        steps: 8,
        block_length: 4,
        ..Default::default()
    };
    let remask = RemaskSampler {
        steps: 4,
        temperature: 0.8,
        top_k: 5,
        top_p: 0.9,
        ..Default::default()
    };
    let dream = |temperature, top_k, top_p, confidence| DreamSampler {
        steps: 4,
        temperature,
        top_k,
        top_p,
        confidence,
    };
    let dream_nucleus = dream(0.5, 0, 0.95, DreamConfidence::NegativeEntropy);
    let dream_unfiltered = dream(1.0, 0, 1.0, DreamConfidence::NegativeEntropy);
    let dream_margin = dream(0.0, 0, 1.0, DreamConfidence::Margin);
    let samplers: [&dyn Sampler; 6] = [
        &llada,
        &GreedySampler,
        &remask,
        &dream_nucleus,
        &dream_unfiltered,
        &dream_margin,
    ];
    for sampler in samplers {
        let run = |denoiser: &dyn Denoiser| {
            let mut canvas = Canvas::new(&prompts, 8, mask, 0).expect("canvas");
            sampler
                .run(denoiser, &mut canvas, &mut rng_for(1, 0), &mut |_, _| {})
                .expect("sampling");
            canvas.rows
        };
        assert_eq!(run(&on_device), run(&on_host), "{}", sampler.name());
    }
}

#[test]
fn fused_attention_forward_equals_the_training_forward() {
    // Without autodiff the attention is burn-flex's fused kernel; with it, plain operators.
    let plain = Device::flex();
    let training = plain.clone().autodiff();
    let canvas =
        Canvas::new(&[vec![3, 4, 5, 6], vec![7]], 6, (VOCAB - 1) as u32, 0).expect("canvas");
    let (ids, positions, padding) = flowlm::model::saved::canvas_tensors(&canvas, &plain);
    assert!(
        padding.is_some(),
        "the batch must be padded to test the mask"
    );
    let fused = model(&plain)
        .forward(DenoiserInput::Tokens(ids), positions, None, padding)
        .into_data()
        .try_to_vec::<f32>()
        .expect("logits");
    let (ids, positions, padding) = flowlm::model::saved::canvas_tensors(&canvas, &training);
    let decomposed = model(&training)
        .forward(DenoiserInput::Tokens(ids), positions, None, padding)
        .into_data()
        .try_to_vec::<f32>()
        .expect("logits");
    assert_close(&fused, &decomposed, 1e-5, "logits");
}
