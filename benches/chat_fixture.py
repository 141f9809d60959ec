"""Records how transformers renders chat templates, for crates/flowlm/tests/chat.rs.

Three templates in the styles the seeds' checkpoints ship (ChatML as Qwen2/Dream write it, the
Llama-3 header style of LLaDA-Instruct, the Tulu style of seed 001's ModernBERT fine-tune) render
a two-turn conversation (and a single turn with a system prompt), with and without the
generation prompt, through transformers' own `render_jinja_template`. The Rust test renders the
same cases with minijinja and must produce these strings exactly.

    python3 -m pip install transformers jinja2
    python3 benches/chat_fixture.py   # writes crates/flowlm/tests/fixtures/chat-templates.json
"""

import json
import os
import sys

try:
    from transformers.utils.chat_template_utils import render_jinja_template
except ImportError:
    sys.exit("needs transformers (python3 -m pip install transformers jinja2)")

TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama3-headers": (
        "{% set loop_messages = messages %}{% for message in loop_messages %}"
        "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
        " + message['content'] | trim + '<|eot_id|>' %}"
        "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
        "{{ content }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
        "{% endif %}"
    ),
    "tulu": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
        "{% elif message['role'] == 'assistant' %}"
        "{% if not loop.last %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
        "{% else %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}{% endif %}"
        "{% endif %}"
        "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
        "{% endfor %}"
    ),
}
SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|endoftext|>"}
CONVERSATIONS = [
    [
        {"role": "user", "content": "Who wrote Hamlet?"},
        {"role": "assistant", "content": " Shakespeare. "},
        {"role": "user", "content": "And when?"},
    ],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a play."},
    ],
]


def main():
    cases = []
    for name, template in TEMPLATES.items():
        for messages in CONVERSATIONS:
            for generation_prompt in (True, False):
                expected = render_jinja_template(
                    [messages],
                    chat_template=template,
                    add_generation_prompt=generation_prompt,
                    **SPECIAL,
                )[0][0]
                cases.append({
                    "template_name": name,
                    "chat_template": template,
                    **SPECIAL,
                    "messages": messages,
                    "add_generation_prompt": generation_prompt,
                    "expected": expected,
                })
    out = os.path.join(os.path.dirname(__file__), "..", "crates", "flowlm", "tests", "fixtures",
                       "chat-templates.json")
    with open(out, "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases -> {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
