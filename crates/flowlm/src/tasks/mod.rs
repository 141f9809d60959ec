//! Checkable tasks for diffusion language models: seeded generators of `{"prompt","response"}`
//! examples plus exact scorers that recompute the right answer from the prompt.
//!
//! Tasks: [`sudoku`] (`sudoku4`, `sudoku9`), [`arithmetic`] (`addition`), [`sorting`]
//! (`sorting`) and [`counting`] (`counting`). Pick one with [`task_by_name`] and write a train/test split with
//! [`write_split`]; the trainer reads the resulting JSONL rows directly.
//!
//! # Fixed-length answers
//!
//! Every task emits prompts and responses of a fixed number of characters
//! ([`Task::prompt_length`], [`Task::response_length`]) so a diffusion model's canvas length
//! can equal the answer length and no padding or end-of-sequence has to be learned (the cache
//! benchmark rounds an answer up to whole blocks; its task model learns the end token for the
//! rest, see `configs/task-counting42-mdlm.toml`):
//!
//! - sudoku: the grid row-major, `0` for blanks in the prompt (16 or 81 characters each);
//! - addition: operands zero-padded to `digits`, the sum zero-padded to `digits + 1`
//!   (`042+007=` → `0049`);
//! - sorting: every number zero-padded to the width of `max_value` (`42,07,19=` → `07,19,42`);
//! - counting: the next `count` numbers after the prompt's, all zero-padded to `digits`
//!   (`00372=` → `00373,00374`).
//!
//! # Scoring
//!
//! [`Task::score`] is exact: 1.0 for a fully correct answer, 0.0 otherwise. It never trusts a
//! stored answer; it parses the prompt and checks the response against it. The only leniency is
//! at the end of the response: trailing whitespace and the char tokenizer's special tokens
//! `<end>` / `<pad>` (which a decoder may emit after the answer) are stripped first, see
//! [`strip_decoded_tail`]. Leading characters are never stripped.

pub mod arithmetic;
pub mod counting;
pub mod sorting;
pub mod sudoku;

use std::collections::HashSet;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{FlowError, Result};
use crate::random::rng_for;

pub use arithmetic::Addition;
pub use counting::Counting;
pub use sorting::Sorting;
pub use sudoku::Sudoku;

/// One training or test row; serializes as `{"prompt": ..., "response": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub response: String,
}

/// A generator of examples with an exact scorer.
pub trait Task: Send + Sync {
    fn name(&self) -> &str;
    /// Deterministic: the same generator state always gives the same example.
    fn example(&self, rng: &mut StdRng) -> Example;
    /// Exact score in [0, 1]: 1.0 only for a fully correct answer, 0.0 otherwise.
    fn score(&self, prompt: &str, response: &str) -> f64;
    /// Characters of every response (fixed length).
    fn response_length(&self) -> usize;
    /// Characters of every prompt (fixed length), for canvas sizing.
    fn prompt_length(&self) -> usize;
    /// Characters the task can emit (for a char tokenizer vocabulary), e.g. "0123456789+=".
    fn alphabet(&self) -> &str;
    /// The task's effective parameters (defaults resolved), recorded in `task.json`.
    fn parameters(&self) -> serde_json::Value;
}

/// Parameters shared by all tasks; each task reads the ones it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskParameters {
    /// Sudoku: givens left in the puzzle (`None`: 6 for 4x4, 30 for 9x9).
    pub givens: Option<usize>,
    /// Sudoku: puzzles may have several solutions (any valid completion scores).
    pub any_solution: bool,
    /// Addition: maximum digits per operand; counting: digits per number.
    pub digits: usize,
    /// Sorting: numbers per list; counting: numbers per answer.
    pub count: usize,
    /// Sorting: largest number (numbers are drawn from `0..=max_value`).
    pub max_value: u32,
}

impl Default for TaskParameters {
    fn default() -> Self {
        TaskParameters {
            givens: None,
            any_solution: false,
            digits: 3,
            count: 5,
            max_value: 99,
        }
    }
}

/// The known tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    Sudoku4,
    Sudoku9,
    Addition,
    Sorting,
    Counting,
}

impl TaskKind {
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Sudoku4,
        TaskKind::Sudoku9,
        TaskKind::Addition,
        TaskKind::Sorting,
        TaskKind::Counting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Sudoku4 => "sudoku4",
            TaskKind::Sudoku9 => "sudoku9",
            TaskKind::Addition => "addition",
            TaskKind::Sorting => "sorting",
            TaskKind::Counting => "counting",
        }
    }

    pub fn from_name(name: &str) -> Result<TaskKind> {
        TaskKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = TaskKind::ALL.iter().map(|kind| kind.name()).collect();
                FlowError::argument(
                    "task",
                    format!("unknown task `{name}`; valid tasks: {}", valid.join(", ")),
                )
            })
    }

    pub fn build(self, parameters: &TaskParameters) -> Result<Box<dyn Task>> {
        Ok(match self {
            TaskKind::Sudoku4 => {
                Box::new(Sudoku::new(4, parameters.givens, parameters.any_solution)?)
            }
            TaskKind::Sudoku9 => {
                Box::new(Sudoku::new(9, parameters.givens, parameters.any_solution)?)
            }
            TaskKind::Addition => Box::new(Addition::new(parameters.digits)?),
            TaskKind::Sorting => Box::new(Sorting::new(parameters.count, parameters.max_value)?),
            TaskKind::Counting => Box::new(Counting::new(parameters.count, parameters.digits)?),
        })
    }
}

/// The task called `name` (`sudoku4`, `sudoku9`, `addition`, `sorting`, `counting`) with `parameters`.
pub fn task_by_name(name: &str, parameters: &TaskParameters) -> Result<Box<dyn Task>> {
    TaskKind::from_name(name)?.build(parameters)
}

/// The manifest a data split carries: `task.json` in the directory of `data_file`.
pub const MANIFEST_FILE: &str = "task.json";

/// The task `name` as the data in `data_file` was made: the parameters come from the
/// `task.json` that `flowlm data task` writes beside it, so a split made with, say, 5-digit
/// addition is scored as 5-digit addition. Without a `task.json` the defaults apply; a manifest
/// for another task is an error.
pub fn task_for_data(name: &str, data_file: &Path) -> Result<Box<dyn Task>> {
    let kind = TaskKind::from_name(name)?;
    let manifest_path = data_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return kind.build(&TaskParameters::default());
    }
    let manifest: SplitManifest = crate::io::read_json(&manifest_path)?;
    if manifest.task != name {
        return Err(FlowError::argument(
            "--task",
            format!(
                "`{name}`, but {} says this data is `{}`",
                manifest_path.display(),
                manifest.task
            ),
        ));
    }
    let mut parameters = manifest.parameters;
    // `size` is part of the task's name (sudoku4 / sudoku9), not a parameter.
    if let Some(map) = parameters.as_object_mut() {
        map.remove("size");
    }
    let parameters: TaskParameters =
        serde_json::from_value(parameters).map_err(|e| FlowError::Parse {
            path: manifest_path.clone(),
            message: format!("parameters: {e}"),
        })?;
    kind.build(&parameters)
}

/// `response` without trailing whitespace and trailing `<end>` / `<pad>` tokens, which a char
/// tokenizer's decoder may leave after the answer. Nothing else is forgiven.
pub fn strip_decoded_tail(response: &str) -> &str {
    let mut body = response;
    loop {
        let trimmed = body.trim_end();
        let trimmed = trimmed
            .strip_suffix("<end>")
            .or_else(|| trimmed.strip_suffix("<pad>"))
            .unwrap_or(trimmed);
        if trimmed.len() == body.len() {
            return body;
        }
        body = trimmed;
    }
}

/// What `write_split` wrote; also the contents of `task.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitManifest {
    pub task: String,
    pub parameters: serde_json::Value,
    pub seed: u64,
    pub train: usize,
    pub test: usize,
    pub prompt_length: usize,
    pub response_length: usize,
    pub alphabet: String,
}

/// `train` and `test` examples with distinct prompts (within and across the two sets). Train
/// draws from stream 0 of `seed`, test from stream 1, so growing one set never changes the other's
/// draws (test still skips prompts that train took).
pub fn generate_split(
    task: &dyn Task,
    train: usize,
    test: usize,
    seed: u64,
) -> Result<(Vec<Example>, Vec<Example>)> {
    use crate::limits::{MAX_TASK_EXAMPLES, flag, within};
    for (name, count) in [("--train", train), ("--test", test)] {
        flag(name, within(count, 0, MAX_TASK_EXAMPLES))?;
    }
    let mut seen = HashSet::new();
    let train_examples = distinct_examples(task, train, &mut rng_for(seed, 0), &mut seen)?;
    let test_examples = distinct_examples(task, test, &mut rng_for(seed, 1), &mut seen)?;
    Ok((train_examples, test_examples))
}

fn distinct_examples(
    task: &dyn Task,
    wanted: usize,
    rng: &mut StdRng,
    seen: &mut HashSet<String>,
) -> Result<Vec<Example>> {
    // A small task space (e.g. 1-digit addition) cannot fill a large split; give up instead of
    // looping forever once duplicates dominate.
    let max_attempts = wanted.saturating_mul(50).saturating_add(10_000);
    let mut examples = Vec::with_capacity(wanted);
    let mut attempts = 0;
    while examples.len() < wanted {
        if attempts == max_attempts {
            return Err(FlowError::argument(
                "train/test",
                format!(
                    "task `{}` produced only {} distinct prompts in {attempts} draws; ask for fewer examples or widen the task's parameters",
                    task.name(),
                    seen.len()
                ),
            ));
        }
        attempts += 1;
        let example = task.example(rng);
        if seen.insert(example.prompt.clone()) {
            examples.push(example);
        }
    }
    Ok(examples)
}

/// Writes `out_dir/train.jsonl`, `out_dir/test.jsonl` (one `{"prompt","response"}` object per
/// line) and `out_dir/task.json` (the [`SplitManifest`]). Each file is written to `NAME.tmp` and
/// renamed, so readers never see a half-written file.
pub fn write_split(
    task: &dyn Task,
    train: usize,
    test: usize,
    seed: u64,
    out_dir: &Path,
) -> Result<SplitManifest> {
    let (train_examples, test_examples) = generate_split(task, train, test, seed)?;
    fs::create_dir_all(out_dir).map_err(|e| FlowError::io(out_dir, e))?;
    write_atomically(&out_dir.join("train.jsonl"), |out| {
        write_jsonl(out, &train_examples)
    })?;
    write_atomically(&out_dir.join("test.jsonl"), |out| {
        write_jsonl(out, &test_examples)
    })?;
    let manifest = SplitManifest {
        task: task.name().to_string(),
        parameters: task.parameters(),
        seed,
        train,
        test,
        prompt_length: task.prompt_length(),
        response_length: task.response_length(),
        alphabet: task.alphabet().to_string(),
    };
    write_atomically(&out_dir.join("task.json"), |out| {
        serde_json::to_writer_pretty(&mut *out, &manifest).map_err(std::io::Error::other)?;
        writeln!(out)
    })?;
    Ok(manifest)
}

fn write_jsonl(out: &mut dyn Write, examples: &[Example]) -> std::io::Result<()> {
    for example in examples {
        serde_json::to_writer(&mut *out, example).map_err(std::io::Error::other)?;
        writeln!(out)?;
    }
    Ok(())
}

fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut temporary = PathBuf::from(path);
    temporary.as_mut_os_string().push(".tmp");
    let file = fs::File::create(&temporary).map_err(|e| FlowError::io(&temporary, e))?;
    let mut out = BufWriter::new(file);
    write(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| FlowError::io(&temporary, e))?;
    drop(out);
    fs::rename(&temporary, path).map_err(|e| FlowError::io(path, e))
}
