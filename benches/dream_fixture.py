#!/usr/bin/env python3
"""Regenerates crates/flowlm/tests/fixtures/dream-tiny: a small random Dream built by Dream's
published `modeling_dream.py` (the copy NVlabs/Fast-dLLM vendors under `dream/model/`), saved
with `save_pretrained` as Dream's checkpoints are, and what that code computes on it:

- the logits of a two-row batch, shifted right by one slot as Dream's `generation_utils.py`
  does before it reads them (`expected_logits.json`);
- the answers of Dream's `diffusion_generate` at temperature 0 with each confidence algorithm
  (`maskgit_plus`, `topk_margin`, `entropy`), through a logits hook that forbids the mask token,
  as every FlowLM sampler does (`expected_samples.json`).

`tests/pretrained.rs` checks FlowLM's Dream family and `dream` sampler against them. The
modeling files target transformers 4 (4.46.3 here); nothing of them is copied into FlowLM.

    python3 -m venv /tmp/tf4 && /tmp/tf4/bin/pip install torch "transformers==4.46.3"
    git clone https://github.com/NVlabs/Fast-dLLM /tmp/fast-dllm
    /tmp/tf4/bin/python benches/dream_fixture.py --fast-dllm /tmp/fast-dllm
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_tools import randomize, tidy_saved, write_logits  # noqa: E402

OUT = "crates/flowlm/tests/fixtures/dream-tiny"
MASK = 127
CONFIG = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
              rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
              mask_token_id=MASK, pad_token_id=2, eos_token_id=2, bos_token_id=1)
LOGIT_IDS = [[5, 17, MASK, 9, 33, 2, MASK, 60, 12, MASK, 41],
             [7, 19, MASK, 44, 3, 88, MASK, 21, 6, MASK, 50]]
PROMPT = [11, 23, 35, 47]
SAMPLING = dict(gen_length=16, steps=8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast-dllm", required=True, help="a checkout of NVlabs/Fast-dLLM")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit('needs torch and transformers 4: pip install torch "transformers==4.46.3"')
    sys.path.insert(0, os.path.join(args.fast_dllm, "dream"))
    from model.configuration_dream import DreamConfig
    from model.modeling_dream import DreamModel

    torch.manual_seed(0)
    model = DreamModel(DreamConfig(**CONFIG)).eval()
    randomize(torch, model)
    model.save_pretrained(OUT, safe_serialization=True)
    tidy_saved(OUT)

    with torch.no_grad():
        logits = model(torch.tensor(LOGIT_IDS)).logits
    logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    write_logits(OUT, LOGIT_IDS, [0] * len(LOGIT_IDS), logits)

    def forbid_mask(step, x, logits):
        logits[..., MASK] = -float("inf")
        return logits

    samples = []
    for alg in ("maskgit_plus", "topk_margin", "entropy"):
        out = model.diffusion_generate(
            torch.tensor([PROMPT]), max_new_tokens=SAMPLING["gen_length"],
            steps=SAMPLING["steps"], temperature=0.0, alg=alg, alg_temp=0.0, mask_token_id=MASK,
            return_dict_in_generate=True, generation_logits_hook_func=forbid_mask)
        samples.append({"alg": alg, "answer": out.sequences[0, len(PROMPT):].tolist()})
    with open(f"{OUT}/expected_samples.json", "w") as f:
        json.dump({"prompt": PROMPT, "mask": MASK, **SAMPLING, "samples": samples}, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
