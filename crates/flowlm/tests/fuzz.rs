//! Mutation fuzzing of every input parser: valid files (a recipe, `flowlm.json`, `config.json`,
//! a safetensors file, `tokenizer.json`, JSONL rows, a pretrained `config.json`) are damaged at
//! random (bytes flipped, spans deleted, duplicated or replaced by extreme values) and parsed;
//! every input must give a value or an error, never a panic. CI runs a short pass; set
//! `FLOWLM_FUZZ_SECONDS` for a long one (the count of executions is printed) and
//! `FLOWLM_FUZZ_TARGET` to give that budget only to the target of that name (the
//! others run their minimum of 20 executions).

mod common;

use burn::tensor::Device;
use flowlm::model::DiffusionTransformerConfig;
use flowlm::model::open::OpenedModel;
use flowlm::model::saved::FlowlmMetadata;
use flowlm::recipe::Recipe;
use flowlm::tokenizer::Tokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1e309",
    "NaN",
    "18446744073709551615",
    "\"\"",
    "null",
    "[]",
    "{}",
    "\u{feff}",
    "\u{0}",
    "4294967296",
    "-0.0",
    "inf",
];

fn mutate(input: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..5) {
            0 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let end = (at + rng.random_range(0..16)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let end = (at + rng.random_range(0..16)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            3 => {
                // Replace a number with an extreme value.
                let start = bytes[at..]
                    .iter()
                    .position(|b| b.is_ascii_digit())
                    .map(|p| at + p);
                if let Some(start) = start {
                    let end = bytes[start..]
                        .iter()
                        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                        .map_or(bytes.len(), |p| start + p);
                    let value = EXTREMES[rng.random_range(0..EXTREMES.len())];
                    bytes.splice(start..end, value.bytes());
                }
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

/// Runs `parse` on mutations of `seed` until `budget` passes; returns the executions.
fn fuzz(name: &str, seed: &[u8], parse: &dyn Fn(&[u8])) -> usize {
    let budget = budget(name);
    let mut rng = StdRng::seed_from_u64(name.len() as u64 * 7919);
    let started = Instant::now();
    let mut executions = 0;
    while started.elapsed() < budget || executions < 20 {
        let input = mutate(seed, &mut rng);
        if catch_unwind(AssertUnwindSafe(|| parse(&input))).is_err() {
            panic!(
                "{name}: the parser panicked on this input:\n{}",
                String::from_utf8_lossy(&input)
            );
        }
        executions += 1;
    }
    executions
}

/// The time `FLOWLM_FUZZ_SECONDS` gives target `name` (one second by default; none when
/// `FLOWLM_FUZZ_TARGET` names other targets).
fn budget(name: &str) -> Duration {
    if std::env::var("FLOWLM_FUZZ_TARGET").is_ok_and(|target| target != name) {
        return Duration::ZERO;
    }
    let seconds = std::env::var("FLOWLM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0);
    Duration::from_secs_f64(seconds)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn text_parsers_never_panic() {
    let recipe = std::fs::read(root().join("configs/shakespeare.toml")).unwrap();
    let n = fuzz("recipe", &recipe, &|input| {
        let _ = Recipe::parse(&String::from_utf8_lossy(input), Path::new("fuzz.toml"), &[]);
    });
    eprintln!("recipe: {n} executions");

    let metadata = std::fs::read(root().join("models/default/flowlm.json")).unwrap();
    let n = fuzz("flowlm.json", &metadata, &|input| {
        if let Ok(m) = serde_json::from_slice::<FlowlmMetadata>(input) {
            let _ = m.validate(4096, Path::new("flowlm.json"));
        }
    });
    eprintln!("flowlm.json: {n} executions");

    let config = std::fs::read(root().join("models/default/config.json")).unwrap();
    let n = fuzz("config.json", &config, &|input| {
        if let Ok(c) = serde_json::from_slice::<DiffusionTransformerConfig>(input) {
            let _ = c.validate();
        }
    });
    eprintln!("config.json: {n} executions");

    let dir = common::scratch("fuzz-jsonl");
    let rows = b"{\"text\": \"a\"}\n{\"prompt\": \"1+1=\", \"response\": \"2\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n";
    let n = fuzz("jsonl", rows, &|input| {
        let _ = flowlm::data::parse_jsonl(&String::from_utf8_lossy(input), &dir.join("x.jsonl"));
    });
    eprintln!("jsonl: {n} executions");
}

#[test]
fn file_parsers_never_panic() {
    let dir = common::scratch("fuzz-files");
    let tokenizer = std::fs::read(root().join("models/default/tokenizer.json")).unwrap();
    // The tokenizer file is large: damage its head, where the structure is.
    let head = &tokenizer[..4096.min(tokenizer.len())];
    let n = fuzz("tokenizer.json", head, &|input| {
        let mut whole = input.to_vec();
        whole.extend_from_slice(&tokenizer[head.len()..]);
        let path = write(&dir, "tokenizer.json", &whole);
        let _ = Tokenizer::from_file(&path);
    });
    eprintln!("tokenizer.json: {n} executions");

    // A pretrained checkpoint: damaged safetensors headers and configs.
    let bert = common::shared()
        .expect("../shared/models/bert-tiny-mlm is needed")
        .join("models/bert-tiny-mlm");
    let weights = std::fs::read(bert.join("model.safetensors")).unwrap();
    let header_length = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize + 8;
    let checkpoint = common::scratch("fuzz-checkpoint");
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(bert.join(file), checkpoint.join(file)).unwrap();
    }
    let device = Device::flex();
    let n = fuzz("safetensors", &weights[..header_length], &|input| {
        let mut whole = input.to_vec();
        whole.extend_from_slice(&weights[header_length..]);
        write(&checkpoint, "model.safetensors", &whole);
        let _ = OpenedModel::open(&checkpoint, &device);
    });
    eprintln!("safetensors: {n} executions");
    write(&checkpoint, "model.safetensors", &weights);
    let config = std::fs::read(bert.join("config.json")).unwrap();
    let n = fuzz("pretrained config.json", &config, &|input| {
        write(&checkpoint, "config.json", input);
        let _ = OpenedModel::open(&checkpoint, &device);
    });
    eprintln!("pretrained config.json: {n} executions");

    // Every other family's config.json, on its fixture's weights.
    let fixtures = root().join("crates/flowlm/tests/fixtures");
    for family in [
        "llada-tiny",
        "dream-tiny",
        "a2d-llama-tiny",
        "a2d-qwen3-tiny",
        "mdlm-tiny",
        "modernbert-tiny",
    ] {
        let fixture = fixtures.join(family);
        let checkpoint = common::scratch(&format!("fuzz-{family}"));
        std::fs::copy(
            fixture.join("model.safetensors"),
            checkpoint.join("model.safetensors"),
        )
        .unwrap();
        std::fs::copy(
            bert.join("tokenizer.json"),
            checkpoint.join("tokenizer.json"),
        )
        .unwrap();
        let config = std::fs::read(fixture.join("config.json")).unwrap();
        let n = fuzz(&format!("{family} config.json"), &config, &|input| {
            write(&checkpoint, "config.json", input);
            let _ = OpenedModel::open(&checkpoint, &device);
        });
        eprintln!("{family} config.json: {n} executions");
    }
}

/// The token cache: a damaged cache file (any mutation of a valid one) is never trusted: every
/// read gives exactly the documents a fresh tokenization gives.
#[test]
fn a_damaged_token_cache_is_never_trusted() {
    use flowlm::data::tokenize_cached;
    let data = common::scratch("fuzz-cache-data");
    write(
        &data,
        "a.txt",
        b"ROMEO. But soft, what light through yonder window breaks?",
    );
    write(
        &data,
        "b.jsonl",
        b"{\"prompt\": \"1+1=\", \"response\": \"2\"}\n{\"text\": \"JULIET. Ay me.\"}\n",
    );
    let tokenizer = Tokenizer::from_file(&root().join("models/default/tokenizer.json")).unwrap();
    let (fresh, _) = tokenize_cached(&data, &[], &tokenizer, None, None).unwrap();
    let cache = common::scratch("fuzz-cache");
    let (first, used) = tokenize_cached(&data, &[], &tokenizer, None, Some(&cache)).unwrap();
    assert!(!used && first == fresh);
    let (again, used) = tokenize_cached(&data, &[], &tokenizer, None, Some(&cache)).unwrap();
    assert!(used && again == fresh, "a valid cache is read back");
    let file = std::fs::read_dir(&cache)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let valid = std::fs::read(&file).unwrap();
    let n = fuzz("token cache", &valid, &|input| {
        std::fs::write(&file, input).unwrap();
        let (documents, _) = tokenize_cached(&data, &[], &tokenizer, None, Some(&cache)).unwrap();
        assert!(documents == fresh, "a damaged cache was trusted");
    });
    eprintln!("token cache: {n} executions");
}
