#!/usr/bin/env python3
"""FlowLM's pretrained-family loaders next to transformers, on the same checkpoint.

For each prompt, both sides decode with LLaDA's reference algorithm (one block, temperature 0,
low-confidence remasking, one token per step; `reference.py`'s `llada_generate`): FlowLM through
`flowlm generate --model DIR`, the reference through transformers' own modeling code
(`AutoModelForMaskedLM`). Identical text at every prompt means the logits agree in every argmax
and every confidence order along the way. It also prints the reference's masked-slot logits for
the fixed sentence the Rust test `pretrained.rs` checks.

    python3 -m pip install torch transformers    # developer tools, never FlowLM dependencies
    python3 benches/pretrained_reference.py --model ../shared/models/bert-tiny-mlm
"""

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference import llada_generate  # noqa: E402

PROMPTS = ["the capital of france is", "she opened the door and", "in the beginning", "my favourite food is"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="../shared/models/bert-tiny-mlm")
    parser.add_argument("--flowlm", default="target/release/flowlm")
    parser.add_argument("--gen-length", type=int, default=12)
    args = parser.parse_args()
    try:
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer
    except ImportError:
        sys.exit("needs torch and transformers: python3 -m pip install torch transformers")
    torch.set_grad_enabled(False)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForMaskedLM.from_pretrained(args.model).eval()

    def forward(ids):
        return model(input_ids=ids).logits.float()

    agree = 0
    flowlm_seconds = reference_seconds = 0.0
    for prompt in PROMPTS:
        # FlowLM's canvas: [CLS] + the prompt's tokens + masks (no [SEP]).
        ids = [tokenizer.cls_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        started = time.perf_counter()
        answer = llada_generate(forward, torch.tensor([ids]), args.gen_length, args.gen_length, tokenizer.mask_token_id)
        reference_seconds += time.perf_counter() - started
        reference = tokenizer.decode(answer[0].tolist(), skip_special_tokens=True)
        started = time.perf_counter()
        output = subprocess.run(
            [args.flowlm, "generate", "--model", args.model, "--prompt", prompt, "--gen-length", str(args.gen_length),
             "--steps", str(args.gen_length), "--block-length", str(args.gen_length), "--temperature", "0",
             "--remasking", "low-confidence", "--no-live"],
            capture_output=True, text=True, check=True,
        ).stdout
        flowlm_seconds += time.perf_counter() - started
        ours = output.strip()[len(prompt):].strip()
        same = " ".join(ours.split()) == " ".join(reference.split())
        agree += same
        print(f"{'same' if same else 'DIFFERENT'}: {prompt!r}\n  transformers: {reference!r}\n  flowlm:       {ours!r}")
    print(f"\n{agree}/{len(PROMPTS)} prompts decode identically "
          f"(wall time incl. process start: flowlm {flowlm_seconds:.2f} s, transformers {reference_seconds:.2f} s)")

    sentence = "[CLS] paris is the [MASK] of france . [SEP]"
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    logits = forward(torch.tensor([ids]))[0]
    slot = ids.index(tokenizer.mask_token_id)
    top = torch.topk(logits[slot], 3)
    print(f"\nreference for {sentence!r}: ids {ids}, mask slot {slot}")
    for value, index in zip(top.values.tolist(), top.indices.tolist()):
        print(f"  {tokenizer.convert_ids_to_tokens(index)!r} id {index} logit {value:.5f}")
    sys.exit(0 if agree == len(PROMPTS) else 1)


if __name__ == "__main__":
    main()
