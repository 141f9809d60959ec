use burn::tensor::Device;
use flowlm::canvas::Canvas;
use flowlm::model::{DiffusionTransformerConfig, ModelDenoiser, seeded_init, stable_parameter_ids};
use flowlm::random::rng_for;
use flowlm::sampler::{GreedySampler, LladaSampler, ParallelRule, Sampler};

fn tiny_model() -> ModelDenoiser {
    let device = Device::flex();
    let mut config = DiffusionTransformerConfig::small(40, 64);
    config.hidden_size = 32;
    config.num_attention_heads = 2;
    config.num_hidden_layers = 2;
    config.intermediate_size = 64;
    // A large init spread makes confident, well-separated logits (no argmax near-ties).
    let model = stable_parameter_ids(seeded_init(config.init(&device), 5, 1.0));
    ModelDenoiser { model, device }
}

#[test]
fn a_padded_batch_gives_each_row_what_it_gives_alone() {
    let denoiser = tiny_model();
    let prompts = vec![vec![3, 4, 5, 6, 7, 8], vec![9, 10], vec![11, 12, 13, 14]];
    let samplers: Vec<Box<dyn Sampler>> = vec![
        Box::new(GreedySampler),
        Box::new(LladaSampler {
            steps: 8,
            block_length: 4,
            ..Default::default()
        }),
        // Fast-dLLM's rules and early stop decide per row: a batch must not change them.
        Box::new(LladaSampler {
            steps: 8,
            block_length: 4,
            parallel: ParallelRule::Threshold(0.5),
            end_tokens: vec![2],
            ..Default::default()
        }),
        Box::new(LladaSampler {
            steps: 8,
            block_length: 4,
            parallel: ParallelRule::Factor(1.0),
            ..Default::default()
        }),
    ];
    for sampler in &samplers {
        let mut batch = Canvas::new(&prompts, 8, 0, 1).unwrap();
        sampler
            .run(&denoiser, &mut batch, &mut rng_for(0, 0), &mut |_, _| {})
            .unwrap();
        for (row, prompt) in prompts.iter().enumerate() {
            let mut alone = Canvas::new(std::slice::from_ref(prompt), 8, 0, 1).unwrap();
            sampler
                .run(&denoiser, &mut alone, &mut rng_for(0, 0), &mut |_, _| {})
                .unwrap();
            assert_eq!(
                batch.response(row),
                alone.response(0),
                "{}: row {row}",
                sampler.name()
            );
        }
    }
}

#[test]
fn the_same_weights_come_from_the_same_seed() {
    use flowlm::model::Denoiser;
    let a = tiny_model();
    let b = tiny_model();
    let canvas = Canvas::new(&[vec![3, 4, 5]], 4, 0, 1).unwrap();
    assert_eq!(
        a.logits(&canvas, None).unwrap(),
        b.logits(&canvas, None).unwrap()
    );
}

/// LLaDA's rows advance on their own (`step_rows`), each with its own random stream: a row
/// that joins a decode between steps, as a server's continuous batching does, ends with what it
/// gets alone, and so does the row already running, sampling included.
#[test]
fn a_row_that_joins_between_steps_gets_what_it_gets_alone() {
    use flowlm::random::split;
    use flowlm::sampler::{Remasking, RowProgress};
    let denoiser = tiny_model();
    let prompts = vec![vec![3, 4, 5, 6, 7, 8], vec![9, 10]];
    let stream = || split(&mut rng_for(7, 0), 1).remove(0);
    for (parallel, remasking, temperature) in [
        (ParallelRule::Schedule, Remasking::LowConfidence, 0.0),
        (ParallelRule::Threshold(0.5), Remasking::LowConfidence, 0.0),
        (ParallelRule::Schedule, Remasking::Random, 1.0),
    ] {
        let sampler = LladaSampler {
            steps: 8,
            block_length: 4,
            parallel,
            remasking,
            temperature,
            ..Default::default()
        };
        let alone: Vec<Vec<u32>> = prompts
            .iter()
            .map(|prompt| {
                let mut canvas = Canvas::new(std::slice::from_ref(prompt), 8, 0, 1).unwrap();
                sampler
                    .run(&denoiser, &mut canvas, &mut rng_for(7, 0), &mut |_, _| {})
                    .unwrap();
                canvas.response(0).to_vec()
            })
            .collect();
        let mut canvas = Canvas::new(&prompts, 8, 0, 1).unwrap();
        let mut rows: Vec<Option<RowProgress>> =
            vec![Some(sampler.start_row(&canvas, 0, stream()).unwrap()), None];
        let mut step = 0;
        // The first row runs alone for a step, then the second joins.
        while step <= 1 || rows.iter().any(Option::is_some) {
            if step == 1 {
                rows[1] = Some(sampler.start_row(&canvas, 1, stream()).unwrap());
            }
            sampler
                .step_rows(&denoiser, &mut canvas, &mut rows, step)
                .unwrap();
            step += 1;
        }
        let case = format!("{parallel:?} {remasking:?} T={temperature}");
        assert_eq!(canvas.response(0), alone[0].as_slice(), "{case}: first row");
        assert_eq!(
            canvas.response(1),
            alone[1].as_slice(),
            "{case}: joining row"
        );
    }
}
