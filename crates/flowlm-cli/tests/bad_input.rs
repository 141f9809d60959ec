//! Bad input, one row per class (panics, unbounded work, data loss, silent accepts, unclear
//! errors): the binary exits non-zero without a panic, names the culprit, and leaves every input
//! file byte for byte as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flowlm-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// Runs `flowlm args` and checks the failure: non-zero, no panic, `culprit` in the message.
fn refuses(args: &[&str], culprit: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_flowlm"))
        .args(args)
        .current_dir(ROOT)
        .env(
            "FLOWLM_CACHE_DIR",
            std::env::temp_dir().join("flowlm-bad-cache"),
        )
        .output()
        .expect("running flowlm");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    assert!(
        stderr.contains(culprit),
        "{args:?}: the message does not name `{culprit}`:\n{stderr}"
    );
}

/// A tiny model directory to damage: the bundled default's files.
fn model_copy(name: &str) -> PathBuf {
    let dir = scratch(name);
    for file in [
        "config.json",
        "flowlm.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        std::fs::copy(
            Path::new(ROOT).join("models/default").join(file),
            dir.join(file),
        )
        .unwrap();
    }
    dir
}

#[test]
fn generate_arguments_are_checked_against_their_ranges() {
    let cases: &[(&[&str], &str)] = &[
        (&["--gen-length", "18446744073709551615"], "--gen-length"),
        (&["--steps", "100000000000"], "--steps"),
        (&["--steps", "0"], "--steps"),
        (&["--temperature", "NaN"], "--temperature"),
        (&["--temperature", "inf"], "--temperature"),
        (&["--cfg-scale", "NaN"], "--cfg-scale"),
        (&["--top-p", "0"], "--top-p"),
        (
            &["--sampler", "remask", "--remask-ratio", "2"],
            "--remask-ratio",
        ),
        (
            &[
                "--sampler",
                "llada",
                "--cache",
                "dual",
                "--temperature",
                "1",
            ],
            "--cache",
        ),
        (&["--cache", "triple"], "--cache"),
    ];
    for (extra, culprit) in cases {
        let mut args = vec!["generate", "--prompt", "ROMEO:", "--no-live"];
        args.extend_from_slice(extra);
        refuses(&args, culprit);
    }
}

#[test]
fn recipes_with_empty_ranges_or_unbounded_sizes_fail_before_training() {
    let cases = [
        ("model.hidden_size=0", "model.hidden_size"),
        (
            "corruption.time={sampling=\"range\",min=0.9,max=0.1}",
            "corruption.time.max",
        ),
        (
            "corruption.time={sampling=\"fixed\",rate=2.0}",
            "corruption.time.rate",
        ),
        ("training.batch_size=1000000000", "training.batch_size"),
        (
            "training.gradient_accumulation=1000000000",
            "training.gradient_accumulation",
        ),
        ("training.learning_rate=nan", "training.learning_rate"),
        ("training.weight_decay=nan", "training.weight_decay"),
        (
            "training.final_learning_rate_ratio=-1",
            "training.final_learning_rate_ratio",
        ),
        ("sampler.steps=0", "sampler.steps"),
        ("sampler.sampler=\"nope\"", "sampler.sampler"),
        ("data.sequence_length=0", "data.sequence_length"),
    ];
    let out = scratch("recipes");
    for (setting, culprit) in cases {
        refuses(
            &[
                "train",
                "--config",
                "configs/shakespeare.toml",
                "--set",
                setting,
                "--out",
                out.join("run").to_str().unwrap(),
            ],
            culprit,
        );
    }
    assert!(
        !out.join("run").join("recipe.toml").exists(),
        "a refused recipe wrote a run"
    );
}

#[test]
fn damaged_model_files_are_named_and_left_alone() {
    let model = model_copy("model-meta");
    let metadata = model.join("flowlm.json");
    let good = std::fs::read_to_string(&metadata).unwrap();
    for (from, to, culprit) in [
        (
            "\"mask_token_id\": 1",
            "\"mask_token_id\": 99999",
            "mask_token_id",
        ),
        (
            "\"format_version\": 1",
            "\"format_version\": 99",
            "format_version",
        ),
        (
            "\"sequence_length\": 256",
            "\"sequence_length\": 0",
            "sequence_length",
        ),
        (
            "\"temperature\": 0.8",
            "\"temperature\": -3.0",
            "temperature",
        ),
    ] {
        assert!(good.contains(from), "flowlm.json changed shape: {from}");
        std::fs::write(&metadata, good.replace(from, to)).unwrap();
        let before = snapshot(&model);
        refuses(
            &[
                "generate",
                "--model",
                model.to_str().unwrap(),
                "--prompt",
                "a",
                "--no-live",
            ],
            culprit,
        );
        assert_eq!(snapshot(&model), before, "generate changed the model files");
    }
}

#[test]
fn outputs_never_replace_inputs_or_runs() {
    let model = model_copy("outputs");
    let before = snapshot(&model);
    let tasks = scratch("outputs-task");
    refuses(
        &[
            "data",
            "task",
            "addition",
            "--train",
            "1000000000000",
            "--out",
            tasks.to_str().unwrap(),
        ],
        "--train",
    );
    refuses(
        &[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ],
        "already exists",
    );
    let data = tasks.join("rows.jsonl");
    std::fs::write(&data, "{\"prompt\":\"1+1=\",\"response\":\"2\"}\n").unwrap();
    refuses(
        &[
            "align",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            model.to_str().unwrap(),
        ],
        "already exists",
    );
    assert_eq!(
        snapshot(&model),
        before,
        "a refused command changed the model"
    );

    // A directory that holds a run is not silently restarted.
    let run = scratch("outputs-run");
    std::fs::write(run.join("recipe.toml"), "# an earlier run\n").unwrap();
    std::fs::write(run.join("metrics.jsonl"), "{\"step\":1,\"loss\":1.0}\n").unwrap();
    let run_before = snapshot(&run);
    refuses(
        &[
            "train",
            "--config",
            "configs/shakespeare.toml",
            "--out",
            run.to_str().unwrap(),
        ],
        "--force",
    );
    assert_eq!(snapshot(&run), run_before, "train touched an existing run");
}

#[test]
fn unclear_inputs_get_clear_errors() {
    let runs = scratch("unclear");
    std::fs::create_dir_all(runs.join("checkpoint")).unwrap();
    std::fs::copy(
        Path::new(ROOT).join("models/default/config.json"),
        runs.join("checkpoint/config.json"),
    )
    .unwrap();
    refuses(
        &[
            "generate",
            "--model",
            runs.to_str().unwrap(),
            "--prompt",
            "a",
            "--no-live",
        ],
        "checkpoint",
    );
    refuses(&["bench", "train", "--batch-size", "0"], "--batch-size");
    refuses(&["bench", "cache", "--threshold", "2"], "--threshold");
    refuses(&["bench", "cache", "--gen-length", "300"], "--gen-length");
    refuses(&["serve", "--max-batch", "0"], "--max-batch");
    let examples = runs.join("test.jsonl");
    std::fs::write(
        &examples,
        "{\"prompt\":\"0000030200401420\",\"response\":\"2134431232411423\"}\n",
    )
    .unwrap();
    let flow_states = |flag: &str, value: &str| {
        let data = examples.to_str().unwrap().to_string();
        let args = [
            "eval",
            "flow-states",
            "--model",
            "models/sudoku4",
            "--data",
            &data,
            flag,
            value,
        ];
        refuses(&args, flag);
    };
    flow_states("--examples", "0");
    flow_states("--blends", "2");
    refuses(
        &["serve", "--model", "/nonexistent/model"],
        "/nonexistent/model",
    );
    refuses(
        &[
            "tokenizer",
            "train",
            "--vocab-size",
            "1000000000",
            "--out",
            runs.to_str().unwrap(),
            "README.md",
        ],
        "--vocab-size",
    );
}
