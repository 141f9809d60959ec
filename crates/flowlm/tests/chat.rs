//! Chat templates render as transformers' `apply_chat_template` does for the same template.

mod common;

use flowlm::tokenizer::chat::{ChatTemplate, Message};

fn messages() -> Vec<Message> {
    vec![
        Message {
            role: "system".into(),
            content: "  Be brief.  ".into(),
        },
        Message {
            role: "user".into(),
            content: "Who wrote Hamlet?".into(),
        },
    ]
}

fn template_dir(name: &str, config: serde_json::Value) -> std::path::PathBuf {
    let dir = common::scratch(name);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string(&config).unwrap(),
    )
    .unwrap();
    dir
}

#[test]
fn a_llama_style_template_renders_with_python_string_methods() {
    // The shape of LLaMA-3's template: bos_token, a loop, `.strip()`, the generation prompt.
    let source = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";
    let dir = template_dir(
        "llama-chat",
        serde_json::json!({
            "chat_template": source,
            "bos_token": {"content": "<|begin_of_text|>", "special": true},
            "eos_token": "<|eot_id|>",
        }),
    );
    let template = ChatTemplate::load(&dir).unwrap();
    let text = template.render(&messages(), true).unwrap();
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho wrote Hamlet?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let without = template.render(&messages(), false).unwrap();
    assert!(
        without.ends_with("Who wrote Hamlet?<|eot_id|>"),
        "{without}"
    );
}

#[test]
fn python_methods_named_templates_and_raise_exception() {
    let source = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('system messages are not supported') }}{% endif %}{{ m.content.strip().upper() }}{% endfor %}";
    let dir = template_dir(
        "named-chat",
        serde_json::json!({
            "chat_template": [
                {"name": "tool_use", "template": "unused"},
                {"name": "default", "template": source},
            ],
        }),
    );
    let template = ChatTemplate::load(&dir).unwrap();
    let user_only = &messages()[1..];
    assert_eq!(
        template.render(user_only, true).unwrap(),
        "WHO WROTE HAMLET?"
    );
    let error = template.render(&messages(), true).unwrap_err().to_string();
    assert!(
        error.contains("system messages are not supported"),
        "{error}"
    );
}

#[test]
fn a_model_without_a_template_is_a_clear_error() {
    let dir = template_dir("no-chat", serde_json::json!({"bos_token": "<s>"}));
    let error = ChatTemplate::load(&dir).unwrap_err().to_string();
    assert!(error.contains("no chat_template"), "{error}");
    let error = ChatTemplate::load(&common::scratch("no-config"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("tokenizer_config.json"), "{error}");
}

/// Block tags on their own lines leave no blank lines, as transformers renders them
/// (trim_blocks and lstrip_blocks); the expected text is transformers' `render_jinja_template`.
#[test]
fn whitespace_around_block_tags_matches_transformers() {
    let source = "{% for m in messages %}\n    {{ m.role }}: {{ m.content }}\n{% endfor %}\n{% if add_generation_prompt %}\nassistant:\n{% endif %}";
    let dir = template_dir(
        "whitespace-chat",
        serde_json::json!({"chat_template": source}),
    );
    let text = ChatTemplate::load(&dir)
        .unwrap()
        .render(&messages()[1..], true)
        .unwrap();
    assert_eq!(text, "    user: Who wrote Hamlet?\nassistant:\n");
}

/// Every case `benches/chat_fixture.py` recorded with transformers' `render_jinja_template`
/// (ChatML, Llama-3 headers, Tulu; a two-turn conversation and a system prompt, with and without
/// the generation prompt) renders to exactly the same text.
#[test]
fn templates_render_exactly_as_transformers_recorded() {
    #[derive(serde::Deserialize)]
    struct Case {
        template_name: String,
        chat_template: String,
        bos_token: String,
        eos_token: String,
        messages: Vec<Message>,
        add_generation_prompt: bool,
        expected: String,
    }
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat-templates.json");
    let cases: Vec<Case> = serde_json::from_slice(
        &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    assert_eq!(cases.len(), 12);
    for (index, case) in cases.iter().enumerate() {
        let dir = template_dir(
            &format!("recorded-{index}"),
            serde_json::json!({
                "chat_template": case.chat_template,
                "bos_token": case.bos_token,
                "eos_token": case.eos_token,
            }),
        );
        let text = ChatTemplate::load(&dir)
            .unwrap()
            .render(&case.messages, case.add_generation_prompt)
            .unwrap();
        assert_eq!(
            text,
            case.expected,
            "{} ({} messages, generation prompt {})",
            case.template_name,
            case.messages.len(),
            case.add_generation_prompt
        );
    }
}
