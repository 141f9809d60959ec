#!/usr/bin/env python3
"""FlowLM against a PyTorch eager implementation of the same model, side by side in one run.

    python3 benches/reference.py                     # train and generate, 3 paired runs each
    python3 benches/reference.py --what train --repeats 5
    python3 benches/reference.py --model runs/x/checkpoint --flowlm target/release/flowlm

Each repeat runs FlowLM's `flowlm bench ... --json` and this file's PyTorch worker as separate
processes, one after the other (paired), and the table reports medians: tokens/s in the timed
window, peak resident memory of the whole process, and cores used (CPU seconds / wall seconds in
the timed window). Both sides build the model from the same `config.json`:

- train: batch x sequence_length random tokens, the masked-diffusion loss (antithetic t, mask
  with probability t, CE at masked slots weighted 1/t, divided by the tokens), AdamW with burn's
  defaults (lr 1e-4, betas 0.9/0.999, eps 1e-5, weight decay 1e-4);
- generate: LLaDA's reference `generate` (one block, steps = gen_length, temperature 0,
  low-confidence remasking) on the model's own weights, batch 1 and 16. At temperature 0 both
  sides are deterministic, so the generated tokens must be identical; the table says whether
  they are.

PyTorch is a developer tool here, never a dependency of FlowLM: `python3 -m pip install torch
numpy` (the CPU wheel is enough: `--index-url https://download.pytorch.org/whl/cpu` where that
index is reachable).
"""

import argparse
import json
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import time


def need_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit(
            "error: PyTorch is not installed; this benchmark compares FlowLM with it.\n"
            "  install it with: python3 -m pip install torch numpy"
        )


# --------------------------------------------------------------------------------------------
# The PyTorch model: the same computation as crates/flowlm/src/model/diffusion_transformer.rs
# (pre-norm RMSNorm blocks, RoPE with rotate-half, SwiGLU, bidirectional attention, tied head).
# --------------------------------------------------------------------------------------------


def build_model(config):
    import torch
    from torch import nn
    import torch.nn.functional as F

    for key, expected in [("norm", "rms"), ("hidden_act", "swiglu"), ("position_encoding", "rope")]:
        if config.get(key, expected) != expected:
            sys.exit(f"error: the reference implements {key} = {expected!r} only, got {config[key]!r}")
    if config.get("time_conditioning") or config.get("causal"):
        sys.exit("error: the reference implements the plain masked model (no time embedding, not causal)")

    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head = hidden // heads
    eps = config.get("norm_eps", 1e-5)
    theta = config.get("rope_theta", 10000.0)

    class RmsNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(hidden))

        def forward(self, x):
            return x / torch.sqrt(x.square().mean(-1, keepdim=True) + eps) * self.gamma

    def linear(i, o):
        layer = nn.Linear(i, o, bias=False)
        nn.init.normal_(layer.weight, std=0.02)
        return layer

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention_norm = RmsNorm()
            self.query, self.key = linear(hidden, hidden), linear(hidden, hidden)
            self.value, self.output = linear(hidden, hidden), linear(hidden, hidden)
            self.feed_forward_norm = RmsNorm()
            f = config["intermediate_size"]
            self.gate, self.up, self.down = linear(hidden, f), linear(hidden, f), linear(f, hidden)

        def forward(self, x, cos, sin):
            b, l, _ = x.shape
            h = self.attention_norm(x)
            split = lambda t: t.view(b, l, heads, head).transpose(1, 2)
            q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            attended = F.scaled_dot_product_attention(q, k, v)
            x = x + self.output(attended.transpose(1, 2).reshape(b, l, hidden))
            h = self.feed_forward_norm(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    def rotate_half(x):
        first, second = x.chunk(2, dim=-1)
        return torch.cat([-second, first], dim=-1)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(config["vocab_size"], hidden)
            nn.init.normal_(self.embed_tokens.weight, std=0.02)
            self.layers = nn.ModuleList(Block() for _ in range(config["num_hidden_layers"]))
            self.final_norm = RmsNorm()
            inverse = 1.0 / theta ** (torch.arange(0, head, 2, dtype=torch.float64) / head)
            positions = torch.arange(config["max_position_embeddings"], dtype=torch.float64)
            angles = torch.outer(positions, inverse)
            angles = torch.cat([angles, angles], dim=-1).float()
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)

        def forward(self, ids):
            length = ids.shape[1]
            cos, sin = self.cos[:length], self.sin[:length]
            x = self.embed_tokens(ids)
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.final_norm(x) @ self.embed_tokens.weight.T

    return Model()


def load_weights(model, path):
    """Reads FlowLM's model.safetensors (burn names, Linear weights stored [in, out])."""
    import numpy as np
    import torch

    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    # Half-precision files are widened to f32, as FlowLM's loader does.
    dtypes = {"F32": np.float32, "F16": np.float16}
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in dtypes:
            sys.exit(f"error: tensor {name} is {entry['dtype']}; the reference reads F32 and F16")
        start, end = entry["data_offsets"]
        array = np.frombuffer(data[start:end], dtype=dtypes[entry["dtype"]]).reshape(entry["shape"])
        tensors[name] = torch.from_numpy(array.astype(np.float32))
    state = {}
    for name, value in tensors.items():
        key = name.replace(".Rms.", ".").replace("feed_forward.Swiglu.", "")
        if key.endswith(".weight") and value.dim() == 2 and not key.startswith("embed_tokens"):
            value = value.T.contiguous()
        state[key] = value
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        sys.exit(f"error: weights do not match the model: missing {missing}, unexpected {unexpected}")


def masked_diffusion_loss(model, tokens, mask_id, generator):
    import torch
    import torch.nn.functional as F

    batch, length = tokens.shape
    u = torch.rand((), generator=generator).item()
    t = torch.tensor([((u / batch + i / batch) % 1.0) * (1 - 1e-3) + 1e-3 for i in range(batch)])
    masked = torch.rand(batch, length, generator=generator) < t[:, None]
    noisy = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    logits = model(noisy)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="none")
    weights = masked.float() / t[:, None] / length
    return (ce.view(batch, length) * weights).sum() / batch


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_memory_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_train(args):
    import torch

    torch.set_num_threads(args.threads)
    config = json.load(open(os.path.join(args.model, "config.json")))
    length = json.load(open(os.path.join(args.model, "flowlm.json")))["sequence_length"]
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-5, weight_decay=1e-4)
    vocab = config["vocab_size"]
    generator = torch.Generator().manual_seed(0)
    started = cpu_start = None
    for step in range(args.warmup + args.iterations):
        if step == args.warmup:
            started, cpu_start = time.perf_counter(), cpu_seconds()
        tokens = torch.randint(0, vocab - 1, (args.batch_size, length), generator=generator)
        loss = masked_diffusion_loss(model, tokens, vocab - 1, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall = time.perf_counter() - started
    print(json.dumps({
        "tokens_per_second": args.iterations * args.batch_size * length / wall,
        "seconds": wall,
        "cpu_seconds": cpu_seconds() - cpu_start,
        "peak_memory_bytes": peak_memory_bytes(),
    }))


def llada_generate(model, prompt, gen_length, steps, mask_id):
    """LLaDA's reference `generate` with one block, temperature 0, low-confidence remasking."""
    import torch
    import torch.nn.functional as F

    x = torch.full((prompt.shape[0], prompt.shape[1] + gen_length), mask_id, dtype=torch.long)
    x[:, : prompt.shape[1]] = prompt
    masked_count = (x == mask_id).sum(dim=1, keepdim=True)
    base, remainder = masked_count // steps, masked_count % steps
    schedule = base.repeat(1, steps) + (torch.arange(steps)[None, :] < remainder).long()
    for step in range(steps):
        mask_index = x == mask_id
        logits = model(x)
        logits[:, :, mask_id] = -math.inf  # FlowLM never predicts the mask token
        x0 = logits.argmax(dim=-1)  # Gumbel-max at T = 0 is the argmax
        p = F.softmax(logits.to(torch.float64), dim=-1)
        x0_p = torch.gather(p, -1, x0.unsqueeze(-1)).squeeze(-1)
        x0 = torch.where(mask_index, x0, x)
        confidence = torch.where(mask_index, x0_p, torch.tensor(-math.inf, dtype=torch.float64))
        transfer = torch.zeros_like(x0, dtype=torch.bool)
        for row in range(confidence.shape[0]):
            _, chosen = torch.topk(confidence[row], k=int(schedule[row, step]))
            transfer[row, chosen] = True
        x[transfer] = x0[transfer]
    return x[:, prompt.shape[1]:]


def worker_generate(args):
    import torch

    torch.set_num_threads(args.threads)
    config = json.load(open(os.path.join(args.model, "config.json")))
    mask_id = json.load(open(os.path.join(args.model, "flowlm.json")))["mask_token_id"]
    model = build_model(config)
    load_weights(model, os.path.join(args.model, "model.safetensors"))
    model.eval()
    prompt = json.loads(args.prompt_ids)
    results = {}
    with torch.inference_mode():
        for batch in [1, args.batch_size]:
            prompts = torch.tensor([prompt] * batch, dtype=torch.long)
            llada_generate(model, prompts, args.gen_length, args.gen_length, mask_id)  # warm-up
            repeats = max(1, -(-args.iterations // batch))
            started, cpu_start = time.perf_counter(), cpu_seconds()
            for _ in range(repeats):
                tokens = llada_generate(model, prompts, args.gen_length, args.gen_length, mask_id)
            wall = time.perf_counter() - started
            results[str(batch)] = {
                "tokens_per_second": repeats * batch * args.gen_length / wall,
                "cpu_seconds": cpu_seconds() - cpu_start,
                "seconds": wall,
                "tokens": tokens[0].tolist(),
                "rows_agree": bool((tokens == tokens[0]).all()),
            }
    results["peak_memory_bytes"] = peak_memory_bytes()
    print(json.dumps(results))


# --------------------------------------------------------------------------------------------
# The comparison: paired whole-process runs, medians.
# --------------------------------------------------------------------------------------------


def run_json(command):
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        sys.exit(f"error: {' '.join(command)} failed:\n{completed.stderr}")
    lines = [l for l in completed.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"error: {' '.join(command)} printed no JSON line:\n{completed.stdout}")
    return json.loads(lines[-1])


def worker_command(args, mode, extra=()):
    return [sys.executable, __file__, "--worker", mode, "--model", args.model,
            "--threads", str(args.threads), "--batch-size", str(args.batch_size),
            "--iterations", str(args.iterations), "--gen-length", str(args.gen_length), *extra]


def flowlm_command(args, what):
    return [args.flowlm, "bench", what, "--model", args.model, "--batch-size", str(args.batch_size),
            "--iterations", str(args.iterations), "--gen-length", str(args.gen_length), "--json"]


def median(rows, *path):
    values = []
    for row in rows:
        for key in path:
            row = row[key]
        values.append(row)
    return statistics.median(values)


def compare_train(args):
    flowlm, torch = [], []
    for repeat in range(args.repeats):
        print(f"  train, pair {repeat + 1}/{args.repeats}", file=sys.stderr)
        flowlm.append(run_json(flowlm_command(args, "train")))
        torch.append(run_json(worker_command(args, "train")))
    rows = []
    f_tps, t_tps = median(flowlm, "tokens_per_second"), median(torch, "tokens_per_second")
    rows.append(("train: tokens/s", f"{f_tps:,.0f}", f"{t_tps:,.0f}", f"{f_tps / t_tps:.2f}"))
    f_cores = median([{"c": r["cpu_seconds"] / r["seconds"]} for r in flowlm], "c")
    t_cores = median([{"c": r["cpu_seconds"] / r["seconds"]} for r in torch], "c")
    rows.append(("train: cores used", f"{f_cores:.2f}", f"{t_cores:.2f}", ""))
    f_mem, t_mem = median(flowlm, "peak_memory_bytes"), median(torch, "peak_memory_bytes")
    rows.append(("train: peak memory (MiB)", f"{f_mem / 2**20:.0f}", f"{t_mem / 2**20:.0f}", f"{f_mem / t_mem:.2f}"))
    return rows


def compare_generate(args):
    flowlm, torch = [], []
    for repeat in range(args.repeats):
        print(f"  generate, pair {repeat + 1}/{args.repeats}", file=sys.stderr)
        f = run_json(flowlm_command(args, "generate"))
        flowlm.append(f)
        torch.append(run_json(worker_command(args, "generate", ["--prompt-ids", json.dumps(f["prompt"])])))
    rows = []
    for batch in ["1", str(args.batch_size)]:
        f_tps, t_tps = median(flowlm, batch, "tokens_per_second"), median(torch, batch, "tokens_per_second")
        same = all(f[batch]["tokens"] == t[batch]["tokens"] for f, t in zip(flowlm, torch))
        rows.append((f"generate batch {batch}: tokens/s", f"{f_tps:,.1f}", f"{t_tps:,.1f}",
                     f"{f_tps / t_tps:.2f} ({'identical tokens' if same else 'TOKENS DIFFER'})"))
        f_cores = median([{"c": r[batch]["cpu_seconds"] / r[batch]["seconds"]} for r in flowlm], "c")
        t_cores = median([{"c": r[batch]["cpu_seconds"] / r[batch]["seconds"]} for r in torch], "c")
        rows.append((f"generate batch {batch}: cores used", f"{f_cores:.2f}", f"{t_cores:.2f}", ""))
    f_mem, t_mem = median(flowlm, "peak_memory_bytes"), median(torch, "peak_memory_bytes")
    rows.append(("generate: peak memory (MiB)", f"{f_mem / 2**20:.0f}", f"{t_mem / 2**20:.0f}", f"{f_mem / t_mem:.2f}"))
    if not all(f["1"]["tokens"] == t["1"]["tokens"] for f, t in zip(flowlm, torch)):
        print(f"FlowLM tokens:  {flowlm[0]['1']['tokens']}\nPyTorch tokens: {torch[0]['1']['tokens']}", file=sys.stderr)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=["train", "generate", "both"], default="both")
    parser.add_argument("--model", default="models/default", help="model directory (config.json, flowlm.json, model.safetensors)")
    parser.add_argument("--flowlm", default="target/release/flowlm", help="the flowlm binary")
    parser.add_argument("--repeats", type=int, default=3, help="paired runs; the table shows medians")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch intra-op threads")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=10, help="timed training steps / generations")
    parser.add_argument("--gen-length", type=int, default=64)
    parser.add_argument("--worker", choices=["train", "generate"], help=argparse.SUPPRESS)
    parser.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    need_torch()
    if args.worker == "train":
        return worker_train(args)
    if args.worker == "generate":
        return worker_generate(args)
    if not os.path.exists(args.flowlm):
        sys.exit(f"error: {args.flowlm} not found; build it with `cargo build --release`")
    rows = []
    if args.what in ("train", "both"):
        rows += compare_train(args)
    if args.what in ("generate", "both"):
        rows += compare_generate(args)
    print(f"\nmodel {args.model}, {args.repeats} paired runs, medians; PyTorch {args.threads} threads\n")
    print("| work | FlowLM | PyTorch eager | FlowLM / PyTorch |")
    print("| --- | ---: | ---: | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
