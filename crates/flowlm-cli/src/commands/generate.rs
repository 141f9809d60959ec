use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use flowlm::canvas::Canvas;
use flowlm::model::CacheMode;
use flowlm::random::rng_for;
use flowlm::sampler::{
    ChangeKind, DreamConfidence, Initialization, ParallelRule, Remasking, Revision, SAMPLERS,
    SamplerSettings, StepEvent, build_sampler,
};
use flowlm::tokenizer::Tokenizer;
use flowlm::tokenizer::chat::{ChatTemplate, Message};
use flowlm::vocabulary::Vocabulary;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

/// `--sampler`'s values and their help lines, from the sampler registry.
fn sampler_values() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        SAMPLERS
            .iter()
            .map(|(name, help)| clap::builder::PossibleValue::new(name).help(help)),
    )
}

#[derive(Clone, Copy, ValueEnum)]
enum InitName {
    Mask,
    Random,
    Mixed,
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
    #[arg(long, default_value = "", conflicts_with = "chat")]
    prompt: String,
    /// A user message, wrapped in the model's chat template (tokenizer_config.json); only the
    /// answer is printed
    #[arg(long)]
    chat: Option<String>,
    /// Sampler (default: the model's own, from flowlm.json)
    #[arg(long, value_parser = sampler_values())]
    sampler: Option<String>,
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
    /// remask, dream (temperature > 0): keep only the k most likely tokens (0 = off)
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    /// remask, dream (temperature > 0): nucleus mass (1 = off)
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// remask: share of the response re-masked each round but the last
    #[arg(long, default_value_t = 0.5)]
    remask_ratio: f64,
    /// llada: which predictions to keep each step [default: the model's, else low-confidence]
    #[arg(long, value_enum)]
    remasking: Option<RemaskingName>,
    /// llada: classifier-free guidance scale (0 = off)
    #[arg(long, default_value_t = 0.0)]
    cfg_scale: f64,
    /// llada: give end-of-text predictions -inf confidence so they are committed last
    #[arg(long)]
    suppress_eos: bool,
    /// llada (Fast-dLLM): each step commits every masked slot of the block with confidence >=
    /// this (at least one), instead of a fixed count; --steps is then a ceiling
    #[arg(long, conflicts_with = "factor")]
    threshold: Option<f64>,
    /// llada (Fast-dLLM): each step accepts the k-th most confident slot while its confidence
    /// >= 1 - f / (k + 1)
    #[arg(long)]
    factor: Option<f64>,
    /// llada (Fast-dLLM): once a block is all end-of-text, end the answer there
    #[arg(long)]
    early_stop: bool,
    /// llada (Fast-dLLM): key/value cache. `prefix`: each block's first step runs the whole
    /// canvas and caches everything before the block, later steps run the block and what
    /// follows; `dual`: later steps run the block alone. Needs --temperature 0
    #[arg(long, default_value = "none",
          value_parser = clap::builder::PossibleValuesParser::new(CacheMode::NAMES))]
    cache: String,
    /// dream: how the masked slots are ranked, as Dream's `alg`: the chosen token's probability,
    /// the top-1 minus top-2 margin, or the negative entropy
    #[arg(long, default_value = "entropy",
          value_parser = clap::builder::PossibleValuesParser::new(DreamConfidence::NAMES))]
    alg: String,
    /// correct: replace a token whose own probability falls below this
    #[arg(long, default_value_t = 0.3)]
    edit_threshold: f64,
    /// correct: replace a token when another is predicted with more than this
    #[arg(long, default_value_t = 0.9)]
    accept_threshold: f64,
    /// correct: a distrusted token is `replace`d by the prediction at once, or `remask`ed and
    /// refilled from the context on a later step
    #[arg(long, default_value = "replace",
          value_parser = clap::builder::PossibleValuesParser::new(Revision::NAMES))]
    revision: String,
    /// correct: start the response from masks, random tokens, or half of each
    #[arg(long, value_enum, default_value = "mask")]
    init: InitName,
    /// xflow: step sizes from the confidence `heuristic` or the `learned` GRPO policy
    #[arg(long, default_value = "heuristic")]
    policy: String,
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

/// The answer with masked slots as `░`, this step's fills in green and its revisions (a written
/// token replaced by another: self-correction) in inverse yellow, so corrections show as they
/// happen.
fn render(tokenizer: &Tokenizer, canvas: &Canvas, fresh: &[(usize, ChangeKind)]) -> String {
    let mask = canvas.mask_id;
    let mut text = String::new();
    let mut run: Vec<u32> = Vec::new();
    let flush = |run: &mut Vec<u32>, text: &mut String| {
        text.push_str(&tokenizer.decode(run).unwrap_or_default());
        run.clear();
    };
    for (position, &t) in canvas.response(0).iter().enumerate() {
        let kind = fresh.iter().find(|(p, _)| *p == position).map(|(_, k)| *k);
        if t == mask {
            flush(&mut run, &mut text);
            text.push('░');
        } else if let Some(kind) = kind {
            flush(&mut run, &mut text);
            text.push_str(match kind {
                ChangeKind::Revised => "\x1b[7;33m",
                ChangeKind::Filled | ChangeKind::Remasked => "\x1b[1;32m",
            });
            text.push_str(&tokenizer.decode(&[t]).unwrap_or_default());
            text.push_str("\x1b[0m");
        } else {
            run.push(t);
        }
    }
    flush(&mut run, &mut text);
    text
}

/// How many of each kind of change a run made, for `--show-steps` and the closing line.
#[derive(Default)]
struct ChangeCounts {
    filled: usize,
    revised: usize,
    remasked: usize,
}

impl ChangeCounts {
    fn of(event: &StepEvent) -> Self {
        let mut counts = ChangeCounts::default();
        counts.add(event);
        counts
    }

    /// `generate` decodes one row, so every change is that row's.
    fn add(&mut self, event: &StepEvent) {
        self.filled += event.count(ChangeKind::Filled);
        self.revised += event.count(ChangeKind::Revised);
        self.remasked += event.count(ChangeKind::Remasked);
    }
}

impl std::fmt::Display for ChangeCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} filled, {} revised", self.filled, self.revised)?;
        if self.remasked > 0 {
            write!(f, ", {} remasked", self.remasked)?;
        }
        Ok(())
    }
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let device = super::device(&args.device)?;
    let dir = args.model.clone().unwrap_or_else(super::default_model_dir);
    let saved = super::open_model(&dir, &device)?;
    let defaults = &saved.metadata.sampler_defaults;
    let sampler_name = args.sampler.as_deref().unwrap_or(defaults.sampler.as_str());
    let gen_length = args.gen_length.unwrap_or(defaults.gen_length);
    let steps = args.steps.unwrap_or(defaults.steps);
    let temperature = args.temperature.unwrap_or(defaults.temperature);
    // What the answer is printed after: the prompt, or nothing in a chat.
    let shown = if args.chat.is_some() {
        ""
    } else {
        args.prompt.as_str()
    };
    let prompt = match &args.chat {
        // The template writes its own beginning token.
        Some(message) => {
            let template = ChatTemplate::load(&dir)?;
            let text = template.render(
                &[Message {
                    role: "user".into(),
                    content: message.clone(),
                }],
                true,
            )?;
            saved.tokenizer.encode(&text)?
        }
        None => {
            let mut ids = saved.prompt_prefix.clone();
            ids.extend(saved.tokenizer.encode(&args.prompt)?);
            ids
        }
    };
    let limit = saved.context_length;
    if prompt.len().saturating_add(gen_length) > limit {
        bail!(
            "the prompt ({} tokens) plus --gen-length {gen_length} exceeds the model's maximum length {limit}; shorten the prompt or --gen-length",
            prompt.len()
        );
    }
    let settings = SamplerSettings {
        steps,
        block_length: args
            .block_length
            .unwrap_or(defaults.block_length.min(gen_length)),
        temperature: if sampler_name == "remask" {
            args.temperature.unwrap_or(0.8)
        } else {
            temperature
        },
        remasking: match args.remasking {
            Some(RemaskingName::LowConfidence) => Remasking::LowConfidence,
            Some(RemaskingName::Random) => Remasking::Random,
            None => defaults.remasking,
        },
        cfg_scale: args.cfg_scale,
        suppress_tokens: if args.suppress_eos {
            vec![saved.metadata.eos_token_id]
        } else {
            Vec::new()
        },
        top_k: args.top_k,
        top_p: args.top_p,
        remask_ratio: args.remask_ratio,
        edit_threshold: args.edit_threshold,
        accept_threshold: args.accept_threshold,
        initialization: match args.init {
            InitName::Mask => Initialization::Mask,
            InitName::Random => Initialization::Random,
            InitName::Mixed => Initialization::Mixed { random_share: 0.5 },
        },
        revision: Revision::parse(&args.revision)?,
        step_policy: flowlm::sampler::StepPolicyChoice::load(&args.policy, &dir)?,
        parallel: match (args.threshold, args.factor) {
            (Some(tau), _) => ParallelRule::Threshold(tau),
            (None, Some(f)) => ParallelRule::Factor(f),
            (None, None) => ParallelRule::Schedule,
        },
        end_tokens: if args.early_stop {
            vec![saved.metadata.eos_token_id]
        } else {
            Vec::new()
        },
        cache: CacheMode::parse(&args.cache).context("--cache")?,
        dream_confidence: DreamConfidence::parse(&args.alg).context("--alg")?,
    };
    let vocabulary = Vocabulary::for_tokenizer(&saved.tokenizer, saved.denoiser.vocab_size());
    let sampler = build_sampler(
        sampler_name,
        &settings,
        &saved.metadata.corruption,
        &vocabulary,
    )?;
    let ids = &saved.metadata;
    let mut canvas = Canvas::new(&[prompt], gen_length, ids.mask_token_id, ids.pad_token_id)?;
    let denoiser = &*saved.denoiser;
    let live = !args.no_live && !args.show_steps && std::io::stdout().is_terminal();
    let tokenizer = &saved.tokenizer;
    let mut stdout = std::io::stdout();
    let mut total = ChangeCounts::default();
    let mut observer = |event: &StepEvent, canvas: &Canvas| {
        total.add(event);
        let fresh: Vec<(usize, ChangeKind)> = event
            .changes
            .iter()
            .filter(|c| c.row == 0)
            .map(|c| (c.position, c.kind))
            .collect();
        if args.show_steps {
            println!(
                "step {:>3} [{}] {}{}",
                event.step,
                ChangeCounts::of(event),
                shown,
                render(tokenizer, canvas, &[])
            );
        } else if live {
            let text = format!("{shown}{}", render(tokenizer, canvas, &fresh)).replace('\n', "↵");
            let _ = write!(stdout, "\r\x1b[2K{text}");
            let _ = stdout.flush();
        }
    };
    let report = sampler.run(
        denoiser,
        &mut canvas,
        &mut rng_for(args.seed, 0),
        &mut observer,
    )?;
    if live {
        println!("\r\x1b[2K");
    }
    println!("{shown}{}", tokenizer.decode(canvas.response(0))?);
    eprintln!(
        "[{} sampler: {} steps, {} forward passes; {total}]",
        sampler.name(),
        report.steps,
        report.forward_passes
    );
    Ok(())
}
