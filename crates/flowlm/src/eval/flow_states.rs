//! Why x-prediction flow decoding fails or works on a model (seed 003): the denoiser's accuracy on
//! the states the flow visits. Every answer slot of a task example reads the blend
//! (1 - s) m + s E[y] of the mask embedding m and a token's embedding, the prompt as tokens, for
//! several s: towards the right token (the flow moving well) and towards a wrong one (a
//! prediction it must revise). s = 0 is the all-masked input a masked model is trained on, s = 1
//! a visible token.

use crate::canvas::Canvas;
use crate::error::{FlowError, Result};
use crate::model::{Denoiser, SavedModel, argmax};
use crate::random::rng_for;
use crate::tasks::Example;
use burn::tensor::Device;

/// The accuracy at one blend weight s, over every answer slot of the examples.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowStateAccuracy {
    pub blend: f64,
    /// Share of slots predicted right when blended towards the right token.
    pub towards_right: f64,
    /// Share predicted right when blended towards a wrong (random ordinary) token.
    pub towards_wrong: f64,
    /// Share that predicted the wrong token it was blended towards.
    pub follows_wrong: f64,
}

/// The accuracy at each of `blends` (each in [0, 1]) on `examples`, `batch_size` at a time.
pub fn flow_state_accuracy(
    saved: &SavedModel,
    examples: &[Example],
    blends: &[f64],
    batch_size: usize,
    seed: u64,
    device: &Device,
) -> Result<Vec<FlowStateAccuracy>> {
    if let Some(bad) = blends.iter().find(|b| !(0.0..=1.0).contains(*b)) {
        return Err(FlowError::argument(
            "--blends",
            format!("{bad} is not in [0, 1]"),
        ));
    }
    let denoiser = saved.denoiser(device);
    let (table, hidden) = denoiser
        .embedding_table()
        .ok_or_else(|| FlowError::Unsupported("this model has no embedding table".into()))?;
    let special = saved.tokenizer.special();
    let vocabulary =
        crate::vocabulary::Vocabulary::for_tokenizer(&saved.tokenizer, saved.config.vocab_size);
    let embedding = |token: u32| &table[token as usize * hidden..(token as usize + 1) * hidden];
    // Every canvas has the longest answer's length, shorter answers followed by masks.
    let mut length = 0;
    for example in examples {
        length = length.max(saved.tokenizer.encode(&example.response)?.len());
    }
    let mut results = Vec::new();
    for (index, &blend) in blends.iter().enumerate() {
        let mut rng = rng_for(seed, index as u64);
        let (mut slots, mut right, mut wrong_right, mut follows) = (0usize, 0, 0, 0);
        for chunk in examples.chunks(batch_size.max(1)) {
            let prompts = chunk
                .iter()
                .map(|e| saved.tokenizer.encode(&e.prompt))
                .collect::<Result<Vec<_>>>()?;
            let answers = chunk
                .iter()
                .map(|e| saved.tokenizer.encode(&e.response))
                .collect::<Result<Vec<_>>>()?;
            let canvas = Canvas::new(&prompts, length, special.mask, special.pad)?;
            let wrong: Vec<Vec<u32>> = answers
                .iter()
                .map(|a| {
                    a.iter()
                        .map(|&t| vocabulary.random_token_except(t, &mut rng))
                        .collect()
                })
                .collect();
            let blended =
                |towards: &[Vec<u32>]| -> Vec<f32> {
                    let mut state = Vec::with_capacity(chunk.len() * length * hidden);
                    for row in towards {
                        for slot in 0..length {
                            let token = row.get(slot).copied().unwrap_or(special.mask);
                            let (m, e) = (embedding(special.mask), embedding(token));
                            state.extend(m.iter().zip(e).map(|(&m, &e)| {
                                ((1.0 - blend) * m as f64 + blend * e as f64) as f32
                            }));
                        }
                    }
                    state
                };
            let predictions = |towards: &[Vec<u32>]| -> Result<Vec<Vec<u32>>> {
                let logits = denoiser.logits_from_embeddings(&canvas, &blended(towards))?;
                Ok((0..chunk.len())
                    .map(|row| {
                        (canvas.response_start..canvas.width())
                            .map(|column| argmax(logits.at(row, column)).0 as u32)
                            .collect()
                    })
                    .collect())
            };
            let on_right = predictions(&answers)?;
            let on_wrong = predictions(&wrong)?;
            for (row, answer) in answers.iter().enumerate() {
                for (slot, &token) in answer.iter().enumerate() {
                    slots += 1;
                    right += usize::from(on_right[row][slot] == token);
                    wrong_right += usize::from(on_wrong[row][slot] == token);
                    follows += usize::from(on_wrong[row][slot] == wrong[row][slot]);
                }
            }
        }
        let share = |n: usize| n as f64 / slots.max(1) as f64;
        results.push(FlowStateAccuracy {
            blend,
            towards_right: share(right),
            towards_wrong: share(wrong_right),
            follows_wrong: share(follows),
        });
    }
    Ok(results)
}

/// The results as a Markdown table.
pub fn markdown_table(results: &[FlowStateAccuracy]) -> String {
    let mut out = String::from(
        "| blend s | right, towards the right token | right, towards a wrong token | follows the wrong token |\n| ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {:.2} | {:.1}% | {:.1}% | {:.1}% |\n",
            r.blend,
            100.0 * r.towards_right,
            100.0 * r.towards_wrong,
            100.0 * r.follows_wrong
        ));
    }
    out
}
