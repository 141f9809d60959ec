//! Pretrained families load checkpoints as the Hub ships them and compute what the reference
//! implementation computes. The reference figures come from transformers' `BertForMaskedLM` on
//! the same checkpoint (`benches/pretrained_reference.py` prints them).

mod common;

use burn::tensor::Device;
use flowlm::canvas::Canvas;
use flowlm::model::open::OpenedModel;
use std::path::PathBuf;

fn bert_tiny() -> PathBuf {
    let dir = common::shared()
        .expect("../shared is missing: these tests need ../shared/models/bert-tiny-mlm")
        .join("models/bert-tiny-mlm");
    assert!(dir.is_dir(), "{} is missing", dir.display());
    dir
}

#[test]
fn bert_masked_lm_logits_match_transformers() {
    let model = OpenedModel::open(&bert_tiny(), &Device::flex()).unwrap();
    let special = model.tokenizer.special();
    assert_eq!(special.mask, 103, "[MASK]");
    assert_eq!(model.prompt_prefix, vec![101], "[CLS] starts a prompt");
    assert_eq!(model.context_length, 512);
    // "[CLS] paris is the [MASK] of france . [SEP]"
    let mut canvas = Canvas::new(&[vec![101, 3000, 2003, 1996]], 5, 103, 0).unwrap();
    canvas.rows[0][5..].copy_from_slice(&[1997, 2605, 1012, 102]);
    let logits = model.denoiser.logits(&canvas, None).unwrap();
    let row = logits.at(0, 4);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    let reference = [(2103, 1.78675), (4020, 1.09662), (2605, 0.75561)];
    for (rank, (id, value)) in reference.into_iter().enumerate() {
        assert_eq!(order[rank], id, "rank {rank}");
        assert!(
            (row[id] - value).abs() < 1e-3,
            "logit of {id}: {} vs transformers {value}",
            row[id]
        );
    }
}

/// Copies the checkpoint's files into a scratch directory, minus `leave_out`.
fn checkpoint_copy(name: &str, leave_out: &str) -> PathBuf {
    let dir = common::scratch(name);
    for entry in std::fs::read_dir(bert_tiny()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap();
        if file != leave_out {
            std::fs::copy(&path, dir.join(file)).unwrap();
        }
    }
    dir
}

fn open_error(dir: &std::path::Path) -> String {
    match OpenedModel::open(dir, &Device::flex()) {
        Ok(_) => panic!("{} opened", dir.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn broken_checkpoints_are_named() {
    let dir = checkpoint_copy("no-tokenizer", "tokenizer.json");
    assert!(open_error(&dir).contains("tokenizer.json"));

    let dir = checkpoint_copy("no-weights", "model.safetensors");
    assert!(open_error(&dir).contains("model.safetensors"));

    let dir = checkpoint_copy("unknown-family", "");
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"model_type\": \"bert\"", "\"model_type\": \"gpt9\""),
    )
    .unwrap();
    let error = open_error(&dir);
    assert!(error.contains("gpt9") && error.contains("bert"), "{error}");

    let dir = checkpoint_copy("wrong-shape", "");
    std::fs::write(
        dir.join("config.json"),
        config.replace("\"intermediate_size\": 512", "\"intermediate_size\": 256"),
    )
    .unwrap();
    let error = open_error(&dir);
    assert!(
        error.contains("intermediate.dense.weight") && error.contains("[512, 128]"),
        "{error}"
    );

    let dir = checkpoint_copy("sharded", "model.safetensors");
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"weight_map": {"cls.predictions.bias": "model-00001-of-00002.safetensors"}}"#,
    )
    .unwrap();
    assert!(open_error(&dir).contains("model-00001-of-00002.safetensors"));
}

/// F32, F16 and BF16 tensors read back as f32; other dtypes and wrong shapes are refused by name.
#[test]
fn weights_widen_half_precision_and_name_what_they_refuse() {
    use flowlm::model::weights::Weights;
    use safetensors::{Dtype, tensor::TensorView};
    let dir = common::scratch("weights");
    let f16: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0.25f32, 3.0]
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let f32s: Vec<u8> = [7.0f32, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let ints: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensors = vec![
        ("a", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        ("b", TensorView::new(Dtype::BF16, vec![2], &bf16).unwrap()),
        ("c", TensorView::new(Dtype::F32, vec![1, 2], &f32s).unwrap()),
        ("d", TensorView::new(Dtype::I64, vec![2], &ints).unwrap()),
    ];
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(tensors, None).unwrap(),
    )
    .unwrap();
    let weights = Weights::open(&dir).unwrap();
    let device = Device::flex();
    let read = |name: &str| -> Vec<f32> {
        weights
            .tensor(name, [2], &device)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(read("a"), vec![1.5, -2.0]);
    assert_eq!(read("b"), vec![0.25, 3.0]);
    let c: Vec<f32> = weights
        .tensor("c", [1, 2], &device)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(c, vec![7.0, 8.0]);
    let error = weights.tensor("c", [2], &device).unwrap_err().to_string();
    assert!(error.contains("`c`") && error.contains("[1, 2]"), "{error}");
    let error = weights.tensor("d", [2], &device).unwrap_err().to_string();
    assert!(error.contains("`d`") && error.contains("I64"), "{error}");
    let error = weights.tensor("e", [2], &device).unwrap_err().to_string();
    assert!(error.contains("no tensor `e`"), "{error}");
}
