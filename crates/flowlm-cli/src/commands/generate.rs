use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flowlm::canvas::Canvas;
use flowlm::model::SavedModel;
use flowlm::random::rng_for;
use flowlm::sampler::{
    GreedySampler, LladaSampler, RemaskOrder, RemaskSampler, Remasking, Sampler, StepEvent,
};
use flowlm::tokenizer::Tokenizer;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
enum SamplerName {
    /// One token per step, the most confident masked position (seed 001)
    Greedy,
    /// LLaDA generate: blocks, low-confidence/random remasking, CFG
    Llada,
    /// Seed 004: sample all masks, re-mask a share each round
    Remask,
}

#[derive(Clone, Copy, ValueEnum)]
enum RemaskingName {
    LowConfidence,
    Random,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Model directory (default: the bundled models/default)
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text the answer continues
    #[arg(long, default_value = "")]
    prompt: String,
    /// Sampler (default: the model's own, from flowlm.json)
    #[arg(long, value_enum)]
    sampler: Option<SamplerName>,
    /// Denoising steps (llada: divisible by gen_length/block_length; remask: rounds)
    #[arg(long)]
    steps: Option<usize>,
    /// Response length in tokens
    #[arg(long)]
    gen_length: Option<usize>,
    /// LLaDA block length (gen_length must be a multiple)
    #[arg(long)]
    block_length: Option<usize>,
    /// Sampling temperature (0 = argmax)
    #[arg(long)]
    temperature: Option<f64>,
    /// remask: keep only the k most likely tokens (0 = off)
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// remask: nucleus mass (1 = off)
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// remask: share of the response re-masked each round but the last
    #[arg(long, default_value_t = 0.5)]
    remask_ratio: f64,
    /// llada: which predictions to keep each step
    #[arg(long, value_enum, default_value = "low-confidence")]
    remasking: RemaskingName,
    /// llada: classifier-free guidance scale (0 = off)
    #[arg(long, default_value_t = 0.0)]
    cfg_scale: f64,
    /// llada: give end-of-text predictions -inf confidence so they are committed last
    #[arg(long)]
    suppress_eos: bool,
    /// Random seed
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print only the final text (no live redraw)
    #[arg(long)]
    no_live: bool,
    /// Print the canvas after every step
    #[arg(long)]
    show_steps: bool,
    /// cpu or vulkan
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The response with masks drawn as a visible placeholder.
fn render(tokenizer: &Tokenizer, canvas: &Canvas) -> String {
    let mask = canvas.mask_id;
    let mut text = String::new();
    let mut run: Vec<u32> = Vec::new();
    for &t in canvas.response(0) {
        if t == mask {
            text.push_str(&tokenizer.decode(&run).unwrap_or_default());
            run.clear();
            text.push('░');
        } else {
            run.push(t);
        }
    }
    text.push_str(&tokenizer.decode(&run).unwrap_or_default());
    text
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let saved = SavedModel::load(&dir, &device)
        .with_context(|| format!("loading the model from {}", dir.display()))?;
    let defaults = &saved.metadata.sampler_defaults;
    let sampler_name = match args.sampler {
        Some(SamplerName::Greedy) => "greedy",
        Some(SamplerName::Llada) => "llada",
        Some(SamplerName::Remask) => "remask",
        None => defaults.sampler.as_str(),
    };
    if !saved.metadata.corruption.supports_sampler(sampler_name) {
        bail!(
            "the `{sampler_name}` sampler cannot drive this model: it was trained with the `{}` corruption",
            saved.metadata.corruption.name()
        );
    }
    let gen_length = args.gen_length.unwrap_or(defaults.gen_length);
    let steps = args.steps.unwrap_or(defaults.steps);
    let temperature = args.temperature.unwrap_or(defaults.temperature);
    let prompt = saved.tokenizer.encode(&args.prompt)?;
    let limit = saved.config.max_position_embeddings;
    if prompt.len() + gen_length > limit {
        bail!(
            "the prompt ({} tokens) plus --gen-length {gen_length} exceeds the model's maximum length {limit}; shorten the prompt or --gen-length",
            prompt.len()
        );
    }
    let sampler: Box<dyn Sampler> = match sampler_name {
        "greedy" => Box::new(GreedySampler),
        "llada" => Box::new(LladaSampler {
            steps,
            block_length: args
                .block_length
                .unwrap_or(defaults.block_length.min(gen_length)),
            temperature,
            remasking: match args.remasking {
                RemaskingName::LowConfidence => Remasking::LowConfidence,
                RemaskingName::Random => Remasking::Random,
            },
            cfg_scale: args.cfg_scale,
            suppress_tokens: if args.suppress_eos {
                vec![saved.metadata.eos_token_id]
            } else {
                Vec::new()
            },
        }),
        "remask" => Box::new(RemaskSampler {
            steps,
            remask_ratio: args.remask_ratio,
            temperature: args.temperature.unwrap_or(0.8),
            top_k: args.top_k,
            top_p: args.top_p,
            order: RemaskOrder::LowestConfidence,
        }),
        other => bail!("unknown sampler `{other}` in flowlm.json; use greedy, llada or remask"),
    };
    let special = saved.tokenizer.special();
    let mut canvas = Canvas::new(&[prompt], gen_length, special.mask, special.pad)?;
    let denoiser = saved.denoiser(&device);
    let live = !args.no_live && !args.show_steps && std::io::stdout().is_terminal();
    let tokenizer = &saved.tokenizer;
    let mut stdout = std::io::stdout();
    let mut observer = |event: &StepEvent, canvas: &Canvas| {
        if args.show_steps {
            println!(
                "step {:>3} [{} changed] {}{}",
                event.step,
                event.changes.len(),
                args.prompt,
                render(tokenizer, canvas)
            );
        } else if live {
            let text = format!("{}{}", args.prompt, render(tokenizer, canvas)).replace('\n', "↵");
            let _ = write!(stdout, "\r\x1b[2K{text}");
            let _ = stdout.flush();
        }
    };
    let report = sampler.run(
        &denoiser,
        &mut canvas,
        &mut rng_for(args.seed, 0),
        &mut observer,
    )?;
    if live {
        println!("\r\x1b[2K");
    }
    println!("{}{}", args.prompt, tokenizer.decode(canvas.response(0))?);
    eprintln!(
        "[{} sampler: {} steps, {} forward passes]",
        sampler.name(),
        report.steps,
        report.forward_passes
    );
    Ok(())
}
