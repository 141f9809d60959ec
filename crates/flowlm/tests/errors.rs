mod common;

use burn::tensor::Device;
use flowlm::data::parse_jsonl;
use flowlm::model::SavedModel;
use flowlm::recipe::Recipe;
use std::path::Path;

#[test]
fn malformed_jsonl_names_the_line() {
    let text = "{\"text\": \"fine\"}\n{\"prompt\": \"a\", \"response\": \"b\"}\n{\"txt\": 3}\n";
    let error = parse_jsonl(text, Path::new("rows.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("rows.jsonl line 3"), "{error}");
}

#[test]
fn chat_rows_become_prompt_and_response() {
    // Turns after the last assistant turn have no answer and are dropped.
    let text = r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}]}"#;
    let docs = parse_jsonl(text, Path::new("chat.jsonl")).unwrap();
    assert_eq!(docs.len(), 1);
    let flowlm::data::Document::Chat(messages) = &docs[0] else {
        panic!("not a chat: {docs:?}");
    };
    assert_eq!(messages.len(), 2);
    // Without a chat template: `role: content` lines, the assistant turn opened.
    assert_eq!(
        docs[0].prompt_and_body(None).unwrap(),
        ("user: hi\nassistant: ".to_string(), "hello".to_string())
    );
}

#[test]
fn unknown_recipe_keys_and_bad_values_are_rejected() {
    let error = Recipe::parse("[training]\nmax_step = 3\n", Path::new("r.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("max_step") && error.contains("r.toml"),
        "{error}"
    );
    let error = Recipe::parse("", Path::new("r.toml"), &["training.batch_size=0".into()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("training.batch_size"), "{error}");
    let error = Recipe::parse("[corruption]\nkind = \"blur\"\n", Path::new("r.toml"), &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("blur"), "{error}");
    let ok = Recipe::parse(
        "",
        Path::new("r.toml"),
        &[
            "training.max_steps=77".into(),
            "data.path=corpus.txt".into(),
        ],
    )
    .unwrap();
    assert_eq!(ok.training.max_steps, 77);
    assert_eq!(ok.data.path, Path::new("corpus.txt"));
}

#[test]
fn model_directories_are_checked() {
    let device = Device::flex();
    let dir = common::scratch("model-dir");
    let error = SavedModel::load(&dir.join("nope"), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("not a directory"), "{error}");
    let error = SavedModel::load(&dir, &device).err().unwrap().to_string();
    assert!(error.contains("missing config.json"), "{error}");

    // A real model directory whose config.json no longer matches its weights.
    let default = common::default_model_dir();
    assert!(default.is_dir(), "{} is missing", default.display());
    let broken = common::scratch("model-mismatch");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "flowlm.json",
    ] {
        std::fs::copy(default.join(f), broken.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(broken.join("config.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&config).unwrap();
    value["num_hidden_layers"] =
        serde_json::json!(value["num_hidden_layers"].as_u64().unwrap() + 1);
    std::fs::write(broken.join("config.json"), value.to_string()).unwrap();
    let error = SavedModel::load(&broken, &device)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("do not match"), "{error}");
}

/// Diverged weights are never written: the save names the parameter and leaves no file.
#[test]
fn weights_holding_nan_are_not_saved() {
    use flowlm::model::{DiffusionTransformerConfig, saved::save_weights, seeded_init};
    let device = Device::flex();
    let mut config = DiffusionTransformerConfig::small(40, 16);
    config.hidden_size = 16;
    config.num_attention_heads = 2;
    config.num_hidden_layers = 1;
    config.intermediate_size = 32;
    // A NaN embedding spread puts NaN in the token embedding only.
    let model = seeded_init(config.init(&device), 1, f64::NAN);
    let dir = common::scratch("nan-weights");
    let path = dir.join("model.safetensors");
    let error = save_weights(&model, &path).unwrap_err().to_string();
    assert!(error.contains("embed_tokens"), "{error}");
    assert!(error.contains("NaN"), "{error}");
    assert!(!path.exists(), "nothing written");
    let healthy = seeded_init(config.init(&device), 1, 1.0);
    save_weights(&healthy, &path).unwrap();
    assert!(path.exists());
}
