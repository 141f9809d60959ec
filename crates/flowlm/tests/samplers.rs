mod common;

use common::FixedDenoiser;
use flowlm::canvas::Canvas;
use flowlm::model::filtered::Filter;
use flowlm::random::rng_for;
use flowlm::sampler::llada_commit_schedule;
use flowlm::sampler::{
    ChangeKind, GreedySampler, LladaSampler, ParallelRule, RemaskSampler, Remasking, Sampler,
    StepEvent,
};

const MASK: u32 = 0;
const VOCAB: usize = 12;

fn run(
    sampler: &dyn Sampler,
    denoiser: &FixedDenoiser,
    prompts: &[Vec<u32>],
    gen_length: usize,
    seed: u64,
) -> (Canvas, Vec<StepEvent>) {
    let mut canvas = Canvas::new(prompts, gen_length, MASK, VOCAB as u32 - 1).unwrap();
    let mut events = Vec::new();
    sampler
        .run(denoiser, &mut canvas, &mut rng_for(seed, 0), &mut |e, _| {
            events.push(e.clone())
        })
        .unwrap();
    (canvas, events)
}

#[test]
fn commit_schedule_matches_the_formula() {
    for (m, s) in [
        (32, 32),
        (32, 8),
        (10, 3),
        (7, 7),
        (5, 8),
        (128, 10),
        (0, 4),
    ] {
        let schedule = llada_commit_schedule(m, s);
        assert_eq!(schedule.len(), s);
        assert_eq!(schedule.iter().sum::<usize>(), m, "(M, s) = ({m}, {s})");
        for (i, &n) in schedule.iter().enumerate() {
            assert_eq!(
                n,
                m / s + usize::from(i < m % s),
                "(M, s) = ({m}, {s}), step {i}"
            );
        }
    }
}

#[test]
fn llada_commits_the_scheduled_count_per_step_and_stays_in_its_block() {
    for (gen_length, block_length, steps) in [(16, 16, 16), (16, 8, 4), (12, 4, 9), (10, 5, 6)] {
        let denoiser = FixedDenoiser::descending(VOCAB, gen_length);
        let sampler = LladaSampler {
            steps,
            block_length,
            ..Default::default()
        };
        let (canvas, events) = run(&sampler, &denoiser, &[vec![5, 6, 7]], gen_length, 1);
        let steps_per_block = steps / (gen_length / block_length);
        assert_eq!(events.len(), steps);
        for (i, event) in events.iter().enumerate() {
            let block = i / steps_per_block;
            let expected =
                llada_commit_schedule(block_length, steps_per_block)[i % steps_per_block];
            assert_eq!(
                event.count(ChangeKind::Filled),
                expected,
                "step {i} of ({gen_length}, {block_length}, {steps})"
            );
            for change in &event.changes {
                assert_eq!(
                    change.position / block_length,
                    block,
                    "step {i} committed outside block {block}"
                );
            }
        }
        assert_eq!(canvas.masked_count(0), 0);
    }
}

#[test]
fn llada_low_confidence_commits_the_most_confident_first() {
    let denoiser = FixedDenoiser::descending(VOCAB, 8);
    let sampler = LladaSampler {
        steps: 8,
        block_length: 8,
        ..Default::default()
    };
    let (_, events) = run(&sampler, &denoiser, &[vec![3]], 8, 0);
    let order: Vec<usize> = events.iter().map(|e| e.changes[0].position).collect();
    assert_eq!(order, (0..8).collect::<Vec<_>>());
}

#[test]
fn llada_suppressed_tokens_are_committed_last() {
    let mut denoiser = FixedDenoiser::descending(VOCAB, 4);
    // Position 0 is the most confident but predicts token 1, which we suppress.
    let sampler = LladaSampler {
        steps: 4,
        block_length: 4,
        suppress_tokens: vec![1],
        ..Default::default()
    };
    denoiser.table[0] = {
        let mut r = vec![0.0; VOCAB];
        r[1] = 20.0;
        r
    };
    let (_, events) = run(&sampler, &denoiser, &[vec![3]], 4, 0);
    assert_eq!(events.last().unwrap().changes[0].position, 0);
}

#[test]
fn llada_rejects_steps_that_do_not_divide() {
    let denoiser = FixedDenoiser::descending(VOCAB, 8);
    let mut canvas = Canvas::new(&[vec![1]], 8, MASK, 11).unwrap();
    for sampler in [
        LladaSampler {
            steps: 3,
            block_length: 4,
            ..Default::default()
        },
        LladaSampler {
            steps: 4,
            block_length: 3,
            ..Default::default()
        },
    ] {
        let error = sampler
            .run(&denoiser, &mut canvas, &mut rng_for(0, 0), &mut |_, _| {})
            .unwrap_err();
        assert!(error.to_string().contains("multiple"), "{error}");
    }
    assert!(Canvas::new(&[vec![1]], 0, MASK, 11).is_err());
}

#[test]
fn greedy_commits_exactly_one_token_per_step() {
    let denoiser = FixedDenoiser::descending(VOCAB, 10);
    let (canvas, events) = run(&GreedySampler, &denoiser, &[vec![4, 4], vec![2]], 10, 0);
    assert_eq!(events.len(), 10);
    for event in &events {
        assert_eq!(event.count(ChangeKind::Filled), 2, "one per row");
        assert_eq!(event.changes.len(), 2);
    }
    assert_eq!(canvas.masked_count(0) + canvas.masked_count(1), 0);
    assert_eq!(canvas.response(0), canvas.response(1));
}

#[test]
fn remask_never_samples_outside_the_top_k() {
    // Flat-ish logits so that sampling would wander if top-k were ignored.
    let table: Vec<Vec<f32>> = (0..6)
        .map(|i| {
            (0..VOCAB)
                .map(|v| ((v * 7 + i) % VOCAB) as f32 * 0.1)
                .collect()
        })
        .collect();
    let denoiser = FixedDenoiser::new(VOCAB, table.clone());
    let sampler = RemaskSampler {
        steps: 6,
        remask_ratio: 0.5,
        temperature: 5.0,
        top_k: 3,
        top_p: 1.0,
        ..Default::default()
    };
    for seed in 0..20 {
        let (_, events) = run(&sampler, &denoiser, &[vec![1]], 6, seed);
        for change in events
            .iter()
            .flat_map(|e| &e.changes)
            .filter(|c| c.kind != ChangeKind::Remasked)
        {
            let filter = Filter {
                temperature: 5.0,
                top_k: 3,
                top_p: 1.0,
            };
            let allowed: Vec<usize> = filter
                .distribution(&table[change.position])
                .iter()
                .map(|p| p.0)
                .collect();
            assert_eq!(allowed.len(), 3);
            assert!(
                allowed.contains(&(change.token as usize)),
                "token {} outside top-3 {allowed:?}",
                change.token
            );
        }
    }
}

#[test]
fn remask_remasks_the_ratio_on_all_rounds_but_the_last() {
    let denoiser = FixedDenoiser::descending(VOCAB, 10);
    let sampler = RemaskSampler {
        steps: 4,
        remask_ratio: 0.3,
        temperature: 1.0,
        ..Default::default()
    };
    let (canvas, events) = run(&sampler, &denoiser, &[vec![1]], 10, 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.count(ChangeKind::Remasked), if i < 3 { 3 } else { 0 });
    }
    assert_eq!(canvas.masked_count(0), 0);
}

#[test]
fn samplers_are_deterministic_under_a_seed() {
    let table: Vec<Vec<f32>> = (0..8)
        .map(|i| {
            (0..VOCAB)
                .map(|v| ((v * 5 + i * 3) % VOCAB) as f32 * 0.3)
                .collect()
        })
        .collect();
    let denoiser = FixedDenoiser::new(VOCAB, table);
    let samplers: Vec<Box<dyn Sampler>> = vec![
        Box::new(LladaSampler {
            steps: 8,
            block_length: 4,
            temperature: 1.0,
            remasking: Remasking::Random,
            ..Default::default()
        }),
        Box::new(RemaskSampler {
            steps: 4,
            temperature: 1.5,
            ..Default::default()
        }),
    ];
    for sampler in &samplers {
        let a = run(sampler.as_ref(), &denoiser, &[vec![2]], 8, 7).0;
        let b = run(sampler.as_ref(), &denoiser, &[vec![2]], 8, 7).0;
        let outputs: Vec<Vec<u32>> = (0..6)
            .map(|s| run(sampler.as_ref(), &denoiser, &[vec![2]], 8, s).0.rows[0].clone())
            .collect();
        assert_eq!(a, b, "{}", sampler.name());
        assert!(
            outputs.iter().any(|o| o != &outputs[0]),
            "{}: the seed changes nothing",
            sampler.name()
        );
    }
}

#[test]
fn cfg_calls_the_model_twice_per_step() {
    let denoiser = FixedDenoiser::descending(VOCAB, 4);
    let sampler = LladaSampler {
        steps: 4,
        block_length: 4,
        cfg_scale: 1.0,
        ..Default::default()
    };
    let (_, events) = run(&sampler, &denoiser, &[vec![2]], 4, 0);
    assert_eq!(events.len(), 4);
    assert_eq!(denoiser.calls.get(), 8);
}

#[test]
fn samplers_never_write_the_mask_token() {
    // A model that loves the mask token (id 0) most of all.
    let table: Vec<Vec<f32>> = (0..6)
        .map(|i| {
            let mut r = vec![0.0; VOCAB];
            r[0] = 50.0;
            r[i + 1] = 5.0;
            r
        })
        .collect();
    let denoiser = FixedDenoiser::new(VOCAB, table);
    let samplers: Vec<Box<dyn Sampler>> = vec![
        Box::new(GreedySampler),
        Box::new(LladaSampler {
            steps: 6,
            block_length: 6,
            ..Default::default()
        }),
        Box::new(RemaskSampler {
            steps: 3,
            ..Default::default()
        }),
    ];
    for sampler in &samplers {
        let (canvas, _) = run(sampler.as_ref(), &denoiser, &[vec![2]], 6, 0);
        assert_eq!(canvas.masked_count(0), 0, "{}", sampler.name());
    }
}

#[test]
fn sampler_defaults_carry_the_remasking_order() {
    use flowlm::model::saved_defaults::SamplerDefaults;
    let random: SamplerDefaults =
        serde_json::from_str(r#"{"sampler": "llada", "remasking": "random"}"#).expect("parses");
    assert_eq!(random.remasking, Remasking::Random);
    let older: SamplerDefaults =
        serde_json::from_str(r#"{"sampler": "llada", "temperature": 0.8}"#).expect("parses");
    assert_eq!(older.remasking, Remasking::LowConfidence);
    assert!(serde_json::from_str::<SamplerDefaults>(r#"{"remasking": "sometimes"}"#).is_err());
}

/// ALGORITHMS.md, Fast-dLLM: threshold commits every confidence >= tau and at least the top one;
/// factor accepts c_k while c_k >= 1 - f / (k + 1), c_1 always.
#[test]
fn parallel_rules_accept_what_the_formulas_say() {
    let threshold = ParallelRule::Threshold(0.9);
    assert_eq!(threshold.accepted(&[0.95, 0.92, 0.5]), 2);
    assert_eq!(threshold.accepted(&[0.5, 0.4]), 1, "at least the top one");
    assert_eq!(threshold.accepted(&[]), 0);
    let factor = ParallelRule::Factor(1.0);
    // k = 2: 0.8 >= 1 - 1/3; k = 3: 0.7 < 1 - 1/4.
    assert_eq!(factor.accepted(&[0.9, 0.8, 0.7]), 2);
    assert_eq!(factor.accepted(&[0.1, 0.05]), 1, "c_1 always");
    // f = 3: bars 0, 0.25, 0.4 for k = 2, 3, 4.
    assert_eq!(ParallelRule::Factor(3.0).accepted(&[0.9, 0.8, 0.7, 0.1]), 3);
    assert_eq!(ParallelRule::Factor(3.0).accepted(&[0.9, 0.8, 0.7, 0.4]), 4);
}

/// Confident predictions (the double's are all above 0.99): the threshold rule fills each
/// block in one step, with the tokens LLaDA's one-per-step schedule writes.
#[test]
fn the_threshold_rule_commits_whole_confident_blocks_per_step() {
    let denoiser = FixedDenoiser::descending(VOCAB, 16);
    let schedule = LladaSampler {
        steps: 16,
        block_length: 8,
        ..Default::default()
    };
    let (reference, reference_events) = run(&schedule, &denoiser, &[vec![3]], 16, 0);
    assert_eq!(reference_events.len(), 16);
    let parallel = LladaSampler {
        parallel: ParallelRule::Threshold(0.9),
        ..schedule.clone()
    };
    let (canvas, events) = run(&parallel, &denoiser, &[vec![3]], 16, 0);
    assert_eq!(events.len(), 2, "one step per block");
    assert_eq!(events[0].changes.len(), 8);
    assert_eq!(canvas.response(0), reference.response(0));
    // Nothing reaches a threshold above every confidence: one commit per step.
    let strict = LladaSampler {
        parallel: ParallelRule::Threshold(1.0),
        ..schedule.clone()
    };
    let (canvas, events) = run(&strict, &denoiser, &[vec![3]], 16, 0);
    assert_eq!(events.len(), 16);
    assert_eq!(canvas.response(0), reference.response(0));
}

/// Early stop: a block that decodes to end tokens only ends the answer; the next block is
/// filled with the end token and never computed.
#[test]
fn early_stop_ends_the_answer_after_an_all_end_block() {
    const END: u32 = 5;
    let mut table = vec![vec![0.0; VOCAB]; 8];
    for (i, row) in table.iter_mut().enumerate() {
        row[if i < 4 { END as usize } else { 7 }] = 10.0;
    }
    let denoiser = FixedDenoiser::new(VOCAB, table);
    let sampler = LladaSampler {
        steps: 8,
        block_length: 4,
        end_tokens: vec![END],
        ..Default::default()
    };
    let (canvas, events) = run(&sampler, &denoiser, &[vec![3]], 8, 0);
    assert_eq!(canvas.response(0), &[END; 8]);
    assert_eq!(events.len(), 4, "the second block ran no step");
    assert_eq!(denoiser.calls.get(), 4);
    let without = LladaSampler {
        end_tokens: Vec::new(),
        ..sampler
    };
    let (canvas, _) = run(
        &without,
        &FixedDenoiser::new(VOCAB, denoiser.table.clone()),
        &[vec![3]],
        8,
        0,
    );
    assert_eq!(canvas.response(0), &[END, END, END, END, 7, 7, 7, 7]);
}

/// Logits `[2, 3, 40]` with a broad tail (so that the tokens outside the candidates often win
/// at a high temperature), the mask id 0 at the top so forbidding it matters.
fn broad_logits() -> flowlm::model::Logits {
    let (batch, length, vocab) = (2, 3, 40);
    let values = (0..batch * length * vocab)
        .map(|i| {
            let (slot, v) = (i / vocab, i % vocab);
            if v == 0 {
                9.0
            } else {
                ((v * 7 + slot * 11) % vocab) as f32 * 0.05 + (v as f32 * 0.37).sin()
            }
        })
        .collect();
    flowlm::model::Logits {
        batch,
        length,
        vocab,
        values,
    }
}

/// What LLaDA's temperature sampling chooses from the candidates computed on the device equals
/// what it chooses from the same figures computed on the host, draw for draw.
#[test]
fn device_and_host_gumbel_candidates_choose_the_same_tokens() {
    use flowlm::model::sampled::SampledChoices;
    let logits = broad_logits();
    let device = burn::tensor::Device::flex();
    let tensor = burn::tensor::Tensor::<3>::from_data(
        burn::tensor::TensorData::new(logits.values.clone(), [2, 3, 40]),
        &device,
    );
    let uniforms = [0.03, 0.31, 0.52, 0.77, 0.91, 0.45];
    for temperature in [0.5, 1.0, 5.0] {
        let on_device =
            SampledChoices::on_device(tensor.clone(), 0, 0, temperature, &uniforms).unwrap();
        let mut forbidden = logits.clone();
        forbidden.forbid(0);
        let on_host = SampledChoices::from_logits(&forbidden, temperature, &uniforms).unwrap();
        for seed in 0..200 {
            for (row, column) in [(0, 0), (0, 2), (1, 1), (1, 2)] {
                let a = on_device.draw(row, column, &mut rng_for(seed, 1));
                let b = on_host.draw(row, column, &mut rng_for(seed, 1));
                assert_eq!(
                    a.0, b.0,
                    "T {temperature}, seed {seed}, slot {row},{column}"
                );
                assert!((a.1 - b.1).abs() < 1e-5, "{a:?} vs {b:?}");
                assert_ne!(a.0, 0, "the mask token is never drawn");
            }
        }
    }
}

/// Candidates plus the rest's Gumbel draw exactly from softmax(l / T) over the whole
/// vocabulary (the tail included): frequencies over 60,000 draws within 5 standard errors.
#[test]
fn gumbel_candidates_sample_the_whole_tempered_softmax() {
    use flowlm::model::sampled::SampledChoices;
    let mut logits = broad_logits();
    logits.forbid(0);
    let one_slot = logits.columns(1..2).unwrap();
    let one_slot = flowlm::model::Logits {
        batch: 1,
        values: one_slot.values[..40].to_vec(),
        ..one_slot
    };
    let temperature = 2.0;
    let scaled: Vec<f32> = one_slot
        .values
        .iter()
        .map(|&l| l / temperature as f32)
        .collect();
    let expected = flowlm::model::softmax(&scaled);
    let draws = 60_000;
    let mut counts = vec![0usize; 40];
    let mut rng = rng_for(5, 0);
    let mut tail = 0;
    for _ in 0..draws {
        let u = flowlm::random::open_unit(&mut rng);
        let choices = SampledChoices::from_logits(&one_slot, temperature, &[u]).unwrap();
        let (token, _) = choices.draw(0, 0, &mut rng);
        counts[token as usize] += 1;
        let mut order: Vec<usize> = (0..40).collect();
        order.sort_by(|&a, &b| one_slot.values[b].total_cmp(&one_slot.values[a]));
        if !order[..flowlm::model::sampled::CANDIDATES].contains(&(token as usize)) {
            tail += 1;
        }
    }
    assert!(tail > draws / 10, "the tail won only {tail} times");
    assert_eq!(counts[0], 0);
    for (token, (&count, &p)) in counts.iter().zip(&expected).enumerate() {
        let frequency = count as f64 / draws as f64;
        let error = (p * (1.0 - p) / draws as f64).sqrt();
        assert!(
            (frequency - p).abs() <= 5.0 * error + 1e-9,
            "token {token}: {frequency:.4} drawn, {p:.4} expected"
        );
    }
}
