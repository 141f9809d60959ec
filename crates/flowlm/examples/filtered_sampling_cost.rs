//! What one step of seed 004's sampling (temperature, top-k, top-p) costs over LLaDA's
//! vocabulary: on the device (`FilteredChoices::on_device`, candidates only) against copying the
//! `[1, 256, 126464]` logits to the host and drawing there, with the same uniforms. Run:
//! `cargo run --release -p flowlm --example filtered_sampling_cost`.

use burn::tensor::{Device, Distribution, Tensor};
use flowlm::model::Logits;
use flowlm::model::filtered::{Filter, FilteredChoices};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::flex();
    let (slots, vocab) = (256, 126_464);
    let noise = Tensor::<3>::random([1, slots, vocab], Distribution::Normal(0.0, 3.0), &device);
    // A trained model's slots put most mass on a few tokens: one token per slot lifted by 15.
    let lift = Tensor::<3>::random([1, slots, vocab], Distribution::Bernoulli(1e-4), &device);
    let shapes = [
        ("peaked", noise.clone() + lift.mul_scalar(15.0)),
        ("flat", noise),
    ];
    let uniforms: Vec<f64> = (0..slots).map(|i| (i as f64 * 0.618_034) % 1.0).collect();
    println!(
        "| logits | temperature | top-k | top-p | device (ms) | rows copied | host copy (ms) | device / host |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (shape, logits) in shapes {
        for (temperature, top_k, top_p) in [(0.8, 50, 0.9), (0.5, 0, 0.95), (1.0, 0, 1.0)] {
            let filter = Filter {
                temperature,
                top_k,
                top_p,
            };
            let start = Instant::now();
            let on_device = FilteredChoices::on_device(logits.clone(), 0, 0, &filter, &uniforms)?;
            let device_time = start.elapsed().as_secs_f64() * 1e3;
            let start = Instant::now();
            let values = logits
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| format!("{e:?}"))?;
            let mut host = Logits {
                batch: 1,
                length: slots,
                vocab,
                values,
            };
            host.forbid(0);
            FilteredChoices::from_logits(&host, &filter, &uniforms)?;
            let host_time = start.elapsed().as_secs_f64() * 1e3;
            println!(
                "| {shape} | {temperature} | {top_k} | {top_p} | {device_time:.0} | {} | {host_time:.0} | {:.2} |",
                on_device.rows_copied,
                device_time / host_time
            );
        }
    }
    Ok(())
}
