#!/usr/bin/env python3
"""Regenerates crates/flowlm/tests/fixtures/llada-tiny: a small random LLaDA built by the
published `modeling_llada.py` (as vendored by NVlabs/Fast-dLLM, whose `llada/model/` carries
LLaDA's modeling file with its key/value cache added), saved with `save_pretrained` as the Hub's
LLaDA checkpoints are, and what that code computes on it:

- the logits of a two-row batch (`expected_logits.json`);
- the answers of Fast-dLLM's `llada/generate.py` samplers at temperature 0 — `generate` (LLaDA's
  reference algorithm), `generate_with_prefix_cache` and `generate_with_dual_cache`, each with the
  step schedule and with the confidence threshold (`expected_samples.json`), with their forward
  pass counts.

`tests/llada_reference.rs` checks FlowLM's LLaDA family and sampler against them, token for token.
Nothing of these files is copied into FlowLM; the script takes the checkout's path.

    python3 -m pip install torch transformers einops     # developer tools only
    git clone https://github.com/NVlabs/Fast-dLLM /tmp/fast-dllm
    python3 benches/llada_fixture.py --fast-dllm /tmp/fast-dllm
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_tools import randomize, tidy_saved, write_logits  # noqa: E402

OUT = "crates/flowlm/tests/fixtures/llada-tiny"
MASK = 127
CONFIG = dict(
    d_model=64, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=96, mlp_ratio=4,
    vocab_size=128, embedding_size=128, max_sequence_length=128, rope_theta=10000.0,
    rms_norm_eps=1e-5, weight_tying=False, include_bias=False, include_qkv_bias=False,
    block_type="llama", activation_type="silu", layer_norm_type="rms", rope=True, alibi=False,
    flash_attention=False, attention_layer_norm=False, input_emb_norm=False, scale_logits=False,
    attention_dropout=0.0, residual_dropout=0.0, embedding_dropout=0.0, init_device="cpu",
    mask_token_id=MASK, eos_token_id=2, pad_token_id=2,
)
LOGIT_IDS = [[5, 17, MASK, 9, 33, 2, MASK, 60, 12, MASK, 41],
             [7, 19, MASK, 44, 3, 88, MASK, 21, 6, MASK, 50]]
PROMPT = [11, 23, 35, 47, 59, 71]
# gen_length, block_length, steps (steps divisible by the block count, as generate.py asserts)
SAMPLING = dict(gen_length=16, block_length=4, steps=16)
THRESHOLD = 0.1  # random weights are rarely sure: a low threshold still commits several at once


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast-dllm", required=True, help="a checkout of NVlabs/Fast-dLLM")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("needs torch, transformers and einops: python3 -m pip install torch transformers einops")
    sys.path.insert(0, os.path.join(args.fast_dllm, "llada"))
    from model.configuration_llada import LLaDAConfig
    from model.modeling_llada import LLaDAModelLM
    import generate as reference

    torch.manual_seed(0)
    model = LLaDAModelLM(LLaDAConfig(**CONFIG), init_params=True).eval()
    # transformers 5 no longer keeps `use_cache` on a config; the modeling file reads it.
    model.config.use_cache = False
    randomize(torch, model, scale_suffixes=["ln_f.weight"])
    model.save_pretrained(OUT, safe_serialization=True)
    tidy_saved(OUT)

    with torch.no_grad():
        logits = model(torch.tensor(LOGIT_IDS)).logits
    write_logits(OUT, LOGIT_IDS, [0] * len(LOGIT_IDS), logits)

    prompt = torch.tensor([PROMPT])
    samples = []
    for cache, function in [("none", reference.generate),
                            ("prefix", reference.generate_with_prefix_cache),
                            ("dual", reference.generate_with_dual_cache)]:
        for threshold in (None, THRESHOLD):
            x, passes = function(model, prompt, temperature=0.0, remasking="low_confidence",
                                 mask_id=MASK, threshold=threshold, **SAMPLING)
            samples.append({"cache": cache, "threshold": threshold,
                            "answer": x[0, len(PROMPT):].tolist(), "forward_passes": int(passes)})
    with open(f"{OUT}/expected_samples.json", "w") as f:
        json.dump({"prompt": PROMPT, "mask": MASK, **SAMPLING, "samples": samples}, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
