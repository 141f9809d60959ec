//! The binary's user-facing errors.

use std::process::Command;

fn flowlm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowlm"));
    command.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    command
}

#[test]
fn generate_refuses_a_sampler_the_model_cannot_use() {
    let output = flowlm()
        .args([
            "generate",
            "--model",
            "models/default",
            "--sampler",
            "duo",
            "--no-live",
        ])
        .output()
        .expect("running flowlm");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot drive this model") && stderr.contains("`mask` corruption"),
        "{stderr}"
    );
}

#[test]
fn a_missing_model_directory_is_named() {
    let output = flowlm()
        .args([
            "eval",
            "masked-ce",
            "--model",
            "no/such/model",
            "--data",
            "README.md",
        ])
        .output()
        .expect("running flowlm");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no/such/model"));
}
