#!/usr/bin/env python3
"""Regenerates crates/flowlm/tests/fixtures/modernbert-tiny: a small random ModernBERT saved by
transformers, and the logits transformers' ModernBertForMaskedLM computes for a left-padded
batch. `tests/pretrained.rs::modernbert_logits_match_transformers` checks FlowLM against them.

    python3 -m pip install torch transformers     # developer tools, never FlowLM dependencies
    python3 benches/modernbert_fixture.py
"""

import json
import sys

OUT = "crates/flowlm/tests/fixtures/modernbert-tiny"


def main():
    try:
        import torch
        from transformers import ModernBertConfig, ModernBertForMaskedLM
    except ImportError:
        sys.exit("needs torch and transformers: python3 -m pip install torch transformers")
    torch.manual_seed(0)
    # Four layers (full, sliding, sliding, full) and a +-4 window, so that the sliding layers
    # matter on 16 slots.
    config = ModernBertConfig(
        vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=4,
        num_attention_heads=2, max_position_embeddings=64, local_attention=8,
        global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
        pad_token_id=0, norm_bias=False, mlp_bias=False, attention_bias=False, decoder_bias=True,
        classifier_bias=False, tie_word_embeddings=True,
    )
    model = ModernBertForMaskedLM(config).eval()
    # Weights far larger than the initialisation's, so that every part of the network matters.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            is_scale = "norm" in name and parameter.dim() == 1 and name.endswith("weight")
            parameter.copy_(torch.randn_like(parameter) * (0.5 if parameter.dim() > 1 else 0.3) + (1.0 if is_scale else 0.0))
    model.config._attn_implementation = "eager"
    model.save_pretrained(OUT, safe_serialization=True)
    ids = torch.tensor([[0, 0, 0, 0, 5, 17, 103, 9, 33, 2, 103, 60, 71, 8, 103, 12],
                        [7, 19, 103, 44, 3, 88, 103, 21, 6, 103, 50, 11, 9, 103, 27, 30]])
    attention = torch.tensor([[0, 0, 0, 0] + [1] * 12, [1] * 16])
    positions = torch.tensor([[0, 0, 0, 0] + list(range(12)), list(range(16))])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits
    rounded = [[[round(v, 5) for v in slot] for slot in row] for row in logits.tolist()]
    with open(f"{OUT}/expected_logits.json", "w") as out:
        json.dump({"ids": ids.tolist(), "padding": [4, 0], "logits": rounded}, out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
