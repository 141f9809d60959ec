mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use flowlm::corruption::{CleanBatch, Corruption, MaskCorruption, TimeSampling};
use flowlm::objective::weighted_cross_entropy;
use flowlm::random::rng_for;
use flowlm::schedule::Schedule;

#[test]
fn masking_rate_matches_t() {
    for rate in [0.15, 0.5, 0.9] {
        let corruption = MaskCorruption {
            mask_id: 99,
            time: TimeSampling::Fixed { rate },
        };
        let clean = CleanBatch::unconditional(vec![7; 64 * 256], 64, 256);
        let out = corruption.corrupt(&clean, &mut rng_for(1, 2));
        let share = out.masked.iter().filter(|&&m| m).count() as f64 / out.masked.len() as f64;
        // 16384 draws: the standard error is below 0.004.
        assert!(
            (share - rate).abs() < 0.015,
            "rate {rate}: masked share {share}"
        );
        assert!(
            out.input
                .iter()
                .zip(&out.masked)
                .all(|(&t, &m)| (t == 99) == m)
        );
    }
}

#[test]
fn antithetic_times_cover_the_unit_interval() {
    let times = TimeSampling::Antithetic.draw(8, &mut rng_for(3, 4));
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    for (i, t) in sorted.iter().enumerate() {
        // One t in each eighth of (eps, 1].
        assert!(
            *t >= i as f64 / 8.0 * 0.999 && *t <= (i + 1) as f64 / 8.0 + 1e-3,
            "{sorted:?}"
        );
    }
}

#[test]
fn sft_never_masks_the_prompt_and_divides_by_the_answer_length() {
    let corruption = MaskCorruption {
        mask_id: 0,
        time: TimeSampling::Fixed { rate: 0.99 },
    };
    let mut clean = CleanBatch::unconditional(vec![5; 10], 1, 10);
    for e in &mut clean.eligible[..4] {
        *e = false;
    }
    let out = corruption.corrupt(&clean, &mut rng_for(0, 0));
    assert!(out.masked[..4].iter().all(|m| !m));
    for (i, &w) in out.weights.iter().enumerate() {
        if out.masked[i] {
            // weight = 1/t / answer length = 1 / 0.99 / 6
            assert!((w as f64 - 1.0 / 0.99 / 6.0).abs() < 1e-6);
        }
    }
    assert_eq!(out.normalizer, 1.0);
}

#[test]
fn loss_equals_a_hand_computed_value() {
    // Two rows of length 2, vocab 3, t = 0.5 on both rows (fixed rate), everything masked in
    // the hand computation by choosing logits per position.
    let device = Device::flex();
    let logits = Tensor::<3>::from_data(
        TensorData::new(
            vec![
                1.0f32, 0.0, 0.0, // row 0 pos 0
                0.0, 2.0, 0.0, // row 0 pos 1
                0.0, 0.0, 0.0, // row 1 pos 0
                0.5, 0.5, 3.0, // row 1 pos 1
            ],
            [2, 2, 3],
        ),
        &device,
    );
    let targets =
        Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 2, 1, 2], [2, 2]), &device);
    // Masked: (0,0), (0,1), (1,1); weight 1/t / L = 1 / 0.5 / 2 = 1.
    let weights = Tensor::<2>::from_data(
        TensorData::new(vec![1.0f32, 1.0, 0.0, 1.0], [2, 2]),
        &device,
    );
    let loss = weighted_cross_entropy(logits, targets, weights, 2.0).into_scalar::<f32>() as f64;
    let ce = |l: &[f64], t: usize| l.iter().map(|x| x.exp()).sum::<f64>().ln() - l[t];
    let expected =
        (ce(&[1.0, 0.0, 0.0], 0) + ce(&[0.0, 2.0, 0.0], 2) + ce(&[0.5, 0.5, 3.0], 2)) / 2.0;
    assert!((loss - expected).abs() < 1e-5, "{loss} vs {expected}");
}

#[test]
fn mask_weights_come_from_the_schedule() {
    let corruption = MaskCorruption {
        mask_id: 0,
        time: TimeSampling::Fixed { rate: 0.25 },
    };
    let clean = CleanBatch::unconditional(vec![3; 2 * 40], 2, 40);
    let out = corruption.corrupt(&clean, &mut rng_for(0, 9));
    let expected = (Schedule::LogLinear.loss_weight(0.25) / 40.0) as f32;
    assert!((expected - 0.1).abs() < 1e-7);
    for (w, m) in out.weights.iter().zip(&out.masked) {
        assert_eq!(*w, if *m { expected } else { 0.0 });
    }
    assert_eq!(out.normalizer, 2.0);
}

#[test]
fn cosine_schedule_follows_its_formula() {
    let schedule = Schedule::Cosine { steps: 1000 };
    for k in [0usize, 1, 250, 500, 999, 1000] {
        let t = k as f64 / 1000.0;
        let angle = (t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2;
        assert!((schedule.noise_at_step(k) - (1.0 - angle.cos().powi(2))).abs() < 1e-12);
    }
    assert!(schedule.noise_at_step(0) < 1e-3);
    assert!(schedule.noise_at_step(1000) > 0.999);
}

#[test]
fn symmetric_kl_and_view_scale_match_hand_computed_values() {
    use flowlm::objective::{SYMMETRIC_KL_FLOOR, ViewScale, symmetric_kl_to_one_hot};
    let device = Device::flex();
    // Two positions over 3 tokens: uniform logits with target 0, and logits (2, 0, 0) target 1.
    let logits = Tensor::<3>::from_data(
        TensorData::new(vec![0.0f32, 0.0, 0.0, 2.0, 0.0, 0.0], [1, 2, 3]),
        &device,
    );
    let kl = symmetric_kl_to_one_hot(logits, &[0, 1], &device);
    let values: Vec<f32> = kl.into_data().try_to_vec::<f32>().unwrap();
    let floor = SYMMETRIC_KL_FLOOR as f64;
    let by_hand = |p: [f64; 3], target: usize| -> f64 {
        (0..3)
            .map(|i| {
                let q = if i == target { 1.0 } else { floor };
                (p[i] - q) * (p[i].ln() - q.ln())
            })
            .sum()
    };
    let third = 1.0 / 3.0;
    let e2 = 2f64.exp();
    let second = [e2 / (e2 + 2.0), 1.0 / (e2 + 2.0), 1.0 / (e2 + 2.0)];
    assert!((values[0] as f64 - by_hand([third; 3], 0)).abs() < 1e-3);
    assert!((values[1] as f64 - by_hand(second, 1)).abs() < 1e-3);
    // Explicit numbers, so a formula error in both places is caught too.
    assert!(
        (by_hand([third; 3], 0) - 9.2103).abs() < 1e-3,
        "{}",
        by_hand([third; 3], 0)
    );
    // The literal view scale t / (V (1 - t) + t).
    let literal = |t, v| ViewScale::Literal.at(t, v);
    assert!((literal(0.5, 3) - 0.25).abs() < 1e-12);
    assert!((literal(0.1, 100) - 0.1 / 90.1).abs() < 1e-12);
    assert_eq!(literal(1.0, 50), 1.0);
    assert_eq!(literal(0.0, 50), 0.0);
}

/// The default view scale is the seed's stated intent: 1 at no noise, smaller as noise grows,
/// V (1 - t) / (V (1 - t) + t); the literal formula stays available and is its complement.
#[test]
fn the_default_view_scale_is_one_at_no_noise_and_falls_with_noise() {
    use flowlm::objective::ViewScale;
    assert_eq!(ViewScale::default(), ViewScale::Intent);
    let intent = |t| ViewScale::Intent.at(t, 100);
    assert_eq!(intent(0.0), 1.0);
    assert!((intent(0.1) - 90.0 / 90.1).abs() < 1e-12);
    assert!((intent(0.5) - 50.0 / 50.5).abs() < 1e-12);
    assert_eq!(intent(1.0), 0.0);
    let mut previous = 1.0;
    for step in 1..=100 {
        let t = step as f64 / 100.0;
        assert!(intent(t) < previous, "not falling at t = {t}");
        assert!((intent(t) + ViewScale::Literal.at(t, 100) - 1.0).abs() < 1e-12);
        previous = intent(t);
    }
}

/// The soft-token cross-entropy option is -ln softmax(l)[target] at each position.
#[test]
fn soft_token_cross_entropy_matches_hand_computed_values() {
    use flowlm::objective::cross_entropy_per_position;
    let device = Device::flex();
    let logits = Tensor::<3>::from_data(
        TensorData::new(vec![2.0f32, 0.0, -1.0, 0.5, 0.5, 3.0], [1, 2, 3]),
        &device,
    );
    let ce: Vec<f32> = cross_entropy_per_position(logits, &[0, 2])
        .into_data()
        .try_to_vec()
        .unwrap();
    let expected = |row: [f64; 3], target: usize| {
        let total: f64 = row.iter().map(|v| v.exp()).sum();
        -(row[target].exp() / total).ln()
    };
    assert!((ce[0] as f64 - expected([2.0, 0.0, -1.0], 0)).abs() < 1e-5);
    assert!((ce[1] as f64 - expected([0.5, 0.5, 3.0], 2)).abs() < 1e-5);
}
