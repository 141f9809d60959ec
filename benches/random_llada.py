#!/usr/bin/env python3
"""Writes a random-weight LLaDA checkpoint (LLaDA's config.json keys and tensor names,
safetensors, f32 or bf16) with the bundled model's tokenizer: a pretrained-family model with a
long context for speed and memory measurements whose figures do not depend on what the weights
know, e.g.

    python3 benches/random_llada.py --out runs/random-llada
    flowlm bench cache --model runs/random-llada --gen-length 256 --block-length 32

`--preset llada-8b` takes LLaDA-8B's shapes (hidden 4096, 32 layers, 32 heads, MLP 12288,
vocabulary 126464, separate output head; 8.0B parameters) in bf16, as the Hub ships it: a 16 GB
file. Above 50M parameters the values are a 1M-value random pattern repeated (writing billions of
Gaussian draws in pure Python would take hours; speed does not depend on the values). Never
commit the result.

    python3 benches/random_llada.py --preset llada-8b --out runs/llada-8b-shapes
    flowlm bench generate --model runs/llada-8b-shapes --gen-length 16 --batch-size 1 --iterations 1

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
    parser.add_argument("--vocab", type=int, help="model vocabulary (default: the tokenizer's)")
    parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    parser.add_argument("--untied", action="store_true", help="a separate output head (ff_out)")
    parser.add_argument("--preset", choices=["llada-8b"], help="LLaDA-8B's shapes, bf16")
    args = parser.parse_args()
    if args.preset == "llada-8b":
        args.hidden, args.layers, args.heads, args.mlp = 4096, 32, 32, 12288
        args.vocab, args.context, args.dtype, args.untied = 126464, 4096, "bf16", True
    if args.out.exists():
        sys.exit(f"{args.out} exists; choose another --out")
    metadata = json.loads((args.tokenizer / "flowlm.json").read_text())
    vocab = args.vocab or json.loads((args.tokenizer / "config.json").read_text())["vocab_size"]
    rng = random.Random(args.seed)
    d, f = args.hidden, args.mlp

    shapes = [("model.transformer.wte.weight", [vocab, d], 0.02)]
    for n in range(args.layers):
        block = f"model.transformer.blocks.{n}"
        for name, shape in [("q_proj", [d, d]), ("k_proj", [d, d]), ("v_proj", [d, d]),
                            ("attn_out", [d, d]), ("ff_proj", [f, d]), ("up_proj", [f, d]),
                            ("ff_out", [d, f])]:
            shapes.append((f"{block}.{name}.weight", shape, 0.02))
        shapes.append((f"{block}.attn_norm.weight", [d], None))
        shapes.append((f"{block}.ff_norm.weight", [d], None))
    shapes.append(("model.transformer.ln_f.weight", [d], None))
    if args.untied:
        shapes.append(("model.transformer.ff_out.weight", [vocab, d], 0.02))
    count = lambda shape: shape[0] * (shape[1] if len(shape) > 1 else 1)
    params = sum(count(shape) for _, shape, _ in shapes)
    width = 4 if args.dtype == "f32" else 2
    pattern_length = 1 << 20
    tiled = params > 50_000_000

    def encode(values: array.array) -> bytes:
        if sys.byteorder != "little":
            values.byteswap()
        raw = values.tobytes()
        if width == 4:
            return raw
        # bf16: the upper half of each little-endian f32 (truncation).
        return b"".join(raw[i + 2:i + 4] for i in range(0, len(raw), 4))

    pattern = encode(array.array("f", (rng.gauss(0.0, 0.02) for _ in range(pattern_length)))) if tiled else b""

    def chunks(n: int, std):
        """The bytes of n values, in chunks."""
        if std is None:
            yield encode(array.array("f", [1.0] * n))
        elif not tiled:
            yield encode(array.array("f", (rng.gauss(0.0, std) for _ in range(n))))
        else:
            whole, rest = divmod(n, pattern_length)
            for _ in range(whole):
                yield pattern
            yield pattern[:rest * width]

    header, offset = {}, 0
    for name, shape, _ in shapes:
        size = count(shape) * width
        header[name] = {"dtype": args.dtype.upper(), "shape": shape,
                        "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    args.out.mkdir(parents=True)
    with open(args.out / "model.safetensors", "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for _, shape, std in shapes:
            for chunk in chunks(count(shape), std):
                out.write(chunk)
    config = {
        "model_type": "llada", "architectures": ["LLaDAModelLM"], "d_model": d,
        "n_heads": args.heads, "n_kv_heads": args.heads, "n_layers": args.layers,
        "mlp_hidden_size": f, "vocab_size": vocab, "embedding_size": vocab,
        "max_sequence_length": args.context, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "weight_tying": not args.untied, "include_bias": False, "activation_type": "silu",
        "mask_token_id": metadata["mask_token_id"],
    }
    (args.out / "config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(args.tokenizer / "tokenizer.json", args.out / "tokenizer.json")
    print(f"{args.out}: random LLaDA, {params / 1e6:.1f}M parameters ({args.dtype}"
          f"{', a repeated random pattern' if tiled else ''}), context {args.context}")


if __name__ == "__main__":
    main()
