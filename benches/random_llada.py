#!/usr/bin/env python3
"""Writes a random-weight LLaDA checkpoint (LLaDA's config.json keys and tensor names,
safetensors, f32) with the bundled model's tokenizer: a pretrained-family model with a long
context for speed measurements whose figures do not depend on what the weights know, e.g.

    python3 benches/random_llada.py --out runs/random-llada
    flowlm bench cache --model runs/random-llada --gen-length 256 --block-length 32

Standard library only (the safetensors format is a JSON header and raw little-endian bytes).
"""

import argparse
import array
import json
import pathlib
import random
import shutil
import struct
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--mlp", type=int, default=2048)
    parser.add_argument("--context", type=int, default=4096)
    parser.add_argument("--tokenizer", type=pathlib.Path, default=pathlib.Path("models/default"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.exists():
        sys.exit(f"{args.out} exists; choose another --out")
    metadata = json.loads((args.tokenizer / "flowlm.json").read_text())
    vocab = json.loads((args.tokenizer / "config.json").read_text())["vocab_size"]
    rng = random.Random(args.seed)
    d, f = args.hidden, args.mlp

    def normal(count: int, std: float) -> array.array:
        return array.array("f", (rng.gauss(0.0, std) for _ in range(count)))

    def ones(count: int) -> array.array:
        return array.array("f", [1.0] * count)

    tensors = {"model.transformer.wte.weight": ([vocab, d], normal(vocab * d, 0.02))}
    for n in range(args.layers):
        block = f"model.transformer.blocks.{n}"
        for name, shape in [("q_proj", [d, d]), ("k_proj", [d, d]), ("v_proj", [d, d]),
                            ("attn_out", [d, d]), ("ff_proj", [f, d]), ("up_proj", [f, d]),
                            ("ff_out", [d, f])]:
            tensors[f"{block}.{name}.weight"] = (shape, normal(shape[0] * shape[1], 0.02))
        tensors[f"{block}.attn_norm.weight"] = ([d], ones(d))
        tensors[f"{block}.ff_norm.weight"] = ([d], ones(d))
    tensors["model.transformer.ln_f.weight"] = ([d], ones(d))

    header, offset = {}, 0
    for name, (shape, values) in tensors.items():
        size = len(values) * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    args.out.mkdir(parents=True)
    with open(args.out / "model.safetensors", "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for _, values in tensors.values():
            if sys.byteorder != "little":
                values.byteswap()
            out.write(values.tobytes())
    config = {
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": d,
        "n_heads": args.heads, "n_kv_heads": args.heads, "n_layers": args.layers,
        "mlp_hidden_size": f, "vocab_size": vocab, "embedding_size": vocab,
        "max_sequence_length": args.context, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "weight_tying": True, "include_bias": False, "activation_type": "silu",
        "mask_token_id": metadata["mask_token_id"],
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(args.tokenizer / "tokenizer.json", args.out / "tokenizer.json")
    params = sum(len(v) for _, v in tensors.values())
    print(f"{args.out}: random LLaDA, {params / 1e6:.1f}M parameters, context {args.context}")


if __name__ == "__main__":
    main()
