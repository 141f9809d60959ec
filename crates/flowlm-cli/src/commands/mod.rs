pub mod align;
pub mod bench;
pub mod bench_cache;
pub mod data;
pub mod eval;
pub mod eval_budget;
pub mod eval_correction;
pub mod export;
pub mod generate;
pub mod plot;
pub mod serve;
pub mod tokenizer;
pub mod train;
pub mod train_policy;

use std::path::PathBuf;

/// `models/default` in the working directory, else the one beside this source tree.
pub fn default_model_dir() -> PathBuf {
    let local = PathBuf::from("models/default");
    if local.is_dir() {
        return local;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/default")
}

pub fn device(name: &str) -> anyhow::Result<burn::tensor::Device> {
    Ok(flowlm::device::parse_device(name)?)
}

/// Opens any model directory, with a progress bar on stderr while a large pretrained
/// checkpoint's tensors are read (hidden below 256 MiB or when stderr is not a terminal).
pub fn open_model(
    dir: &std::path::Path,
    device: &burn::tensor::Device,
) -> anyhow::Result<flowlm::model::open::OpenedModel> {
    use anyhow::Context;
    const SHOWN_FROM: u64 = 256 << 20;
    let bar = indicatif::ProgressBar::hidden();
    let shown = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let reporter = bar.clone();
    let opened = flowlm::model::open::OpenedModel::open_with_progress(dir, device, move |read, total| {
        if shown && total >= SHOWN_FROM && reporter.is_hidden() {
            reporter.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            reporter.set_length(total);
            reporter.set_style(
                indicatif::ProgressStyle::with_template(
                    "loading weights {bar:30} {binary_bytes}/{binary_total_bytes} [{elapsed_precise} < {eta_precise}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        }
        reporter.set_position(read);
    })
    .with_context(|| format!("loading the model from {}", dir.display()));
    bar.finish_and_clear();
    opened
}

/// The known tasks' names, from the task registry: `--help` lists them and clap refuses others.
pub fn task_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(flowlm::tasks::TaskKind::ALL.map(|kind| kind.name()))
}
