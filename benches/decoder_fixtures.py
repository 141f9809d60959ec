#!/usr/bin/env python3
"""Regenerates the A2D fixtures under crates/flowlm/tests/fixtures: small random Llama, Qwen2
and Qwen3 networks saved by transformers under the A2D model types of the dllm project
("a2d-llama", "a2d-qwen2", "a2d-qwen3"), with the logits each computes for a left-padded batch
through transformers' own modeling code and a bidirectional 4-D attention mask (all zeros, -inf
on padding), which is what the A2D modeling files pass. `tests/pretrained.rs` checks FlowLM
against them. (Dream's fixture comes from Dream's own modeling file: benches/dream_fixture.py.)

The shapes exercise what sets the architectures apart: an explicit head_dim that is not
hidden / heads, grouped-query heads, Llama's attention and MLP biases with llama3 RoPE scaling
(a short original context, so every frequency regime occurs), Qwen3's query/key norms, tied and
untied output heads.

    python3 -m pip install torch transformers     # developer tools, never FlowLM dependencies
    python3 benches/decoder_fixtures.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_tools import randomize, tidy_saved, write_logits  # noqa: E402

ROOT = "crates/flowlm/tests/fixtures"
IDS = [[0, 0, 0, 5, 17, 103, 9, 33, 2, 103, 60],
       [7, 19, 103, 44, 3, 88, 103, 21, 6, 103, 50]]
PADDING = [3, 0]
SHAPE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
             rms_norm_eps=1e-6)


def cases(transformers):
    llama3 = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 4.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
    return [
        # name, model_type, architectures, config
        ("a2d-llama-tiny", "a2d-llama", ["A2DLlamaLMHeadModel"],
         transformers.LlamaConfig(**SHAPE, head_dim=12, attention_bias=True, mlp_bias=True,
                                  rope_parameters=llama3, tie_word_embeddings=True)),
        ("a2d-qwen2-tiny", "a2d-qwen2", ["A2DQwen2LMHeadModel"],
         transformers.Qwen2Config(**SHAPE, tie_word_embeddings=False)),
        ("a2d-qwen3-tiny", "a2d-qwen3", ["A2DQwen3LMHeadModel"],
         transformers.Qwen3Config(**SHAPE, head_dim=12, tie_word_embeddings=True,
                                  rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    ]


def write_fixture(torch, transformers, name, model_type, architectures, config):
    out = f"{ROOT}/{name}"
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    randomize(torch, model)
    model.config._attn_implementation = "eager"
    model.save_pretrained(out, safe_serialization=True)
    tidy_saved(out, model_type=model_type, architectures=architectures)
    ids = torch.tensor(IDS)
    width = ids.shape[1]
    mask = torch.zeros(len(IDS), 1, width, width)
    for row, pad in enumerate(PADDING):
        mask[row, :, :, :pad] = float("-inf")
    positions = torch.tensor([[0] * pad + list(range(width - pad)) for pad in PADDING])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    write_logits(out, IDS, PADDING, logits)
    print(f"wrote {out}")


def main():
    try:
        import torch
        import transformers
    except ImportError:
        sys.exit("needs torch and transformers: python3 -m pip install torch transformers")
    for case in cases(transformers):
        write_fixture(torch, transformers, *case)


if __name__ == "__main__":
    main()
