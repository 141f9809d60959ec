#!/usr/bin/env python3
"""Regenerates crates/flowlm/tests/fixtures/dream-tiny: a small random Qwen2 network saved by
transformers under Dream's model_type, and the logits Dream computes for a left-padded batch:
transformers' Qwen2 with a bidirectional (all-zero additive, padding -inf) 4-D attention mask,
then shifted right by one slot as Dream's generation_utils.py does.
`tests/pretrained.rs::dream_logits_match_transformers_qwen2` checks FlowLM against them.

    python3 -m pip install torch transformers     # developer tools, never FlowLM dependencies
    python3 benches/dream_fixture.py
"""

import json
import os
import sys

OUT = "crates/flowlm/tests/fixtures/dream-tiny"


def main():
    try:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM
    except ImportError:
        sys.exit("needs torch and transformers: python3 -m pip install torch transformers")
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            is_scale = "norm" in name
            parameter.copy_(torch.randn_like(parameter) * (0.3 if is_scale else 0.5) + (1.0 if is_scale else 0.0))
    model.config._attn_implementation = "eager"
    model.save_pretrained(OUT, safe_serialization=True)
    os.remove(f"{OUT}/generation_config.json")  # autoregressive settings Dream does not use
    with open(f"{OUT}/config.json") as f:
        saved = json.load(f)
    saved.update({"model_type": "Dream", "architectures": ["DreamModel"], "mask_token_id": 103})
    with open(f"{OUT}/config.json", "w") as f:
        json.dump(saved, f, indent=2)
    ids = torch.tensor([[0, 0, 0, 5, 17, 103, 9, 33, 2, 103, 60],
                        [7, 19, 103, 44, 3, 88, 103, 21, 6, 103, 50]])
    padding = [3, 0]
    mask = torch.zeros(2, 1, 11, 11)
    for row, pad in enumerate(padding):
        mask[row, :, :, :pad] = float("-inf")
    positions = torch.tensor([[0, 0, 0] + list(range(8)), list(range(11))])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    rounded = [[[round(v, 5) for v in slot] for slot in row] for row in logits.tolist()]
    with open(f"{OUT}/expected_logits.json", "w") as out:
        json.dump({"ids": ids.tolist(), "padding": padding, "logits": rounded}, out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
