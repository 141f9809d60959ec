#!/usr/bin/env python3
"""Regenerates crates/flowlm/tests/fixtures/mdlm-tiny and mdlm-timed-tiny: small random MDLM
diffusion transformers built by the MDLM repository's own `models/dit.py` (kuleshov-group/mdlm),
saved as the published `kuleshov-group/mdlm-owt` checkpoint lays it out (`backbone.*` names,
MDLMConfig keys, `model_type` "mdlm"), and the logits that DiT computes: at sigma = 0 for the
unconditioned checkpoint, and for the time-conditioned one at each row's time t (recorded), read
through MDLM's log-linear schedule sigma = -log(1 - (1 - 1e-3) t) as `diffusion.py` does.
`tests/pretrained.rs::mdlm_logits_match_the_reference_dit` checks FlowLM against them.

dit.py needs flash-attn, which has no CPU build: this script stands in two of its functions
with their documented semantics (rotate-half rotary on q and k; full non-causal attention over
each packed sequence). Everything else — the adaLN blocks, the time embedding, the output layer —
runs as the repository wrote it.

    python3 -m pip install torch einops omegaconf huggingface_hub   # developer tools only
    git clone https://github.com/kuleshov-group/mdlm /tmp/mdlm
    python3 benches/mdlm_fixture.py --mdlm-repo /tmp/mdlm
"""

import argparse
import json
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_tools import randomize, write_logits  # noqa: E402

FIXTURES = "crates/flowlm/tests/fixtures"
IDS = [[5, 17, 127, 9, 33, 2, 127, 60, 12, 127, 41],
       [7, 19, 127, 44, 3, 88, 127, 21, 6, 127, 50]]
CONFIG = dict(vocab_size=128, model_length=64, hidden_dim=32, cond_dim=16, n_blocks=2,
              n_heads=4, dropout=0.0, time_conditioning=False)
# The time-conditioned fixture's time per row, and the schedule's epsilon (`LogLinearNoise`).
TIMES = [0.3, 0.85]
EPS = 1e-3


def stand_in_flash_attn(torch):
    """flash_attn's rotary and varlen attention, as their docstrings define them."""
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

    def apply_rotary_emb_qkv_(qkv, cos, sin):
        # qkv (b, s, 3, h, d); cos/sin (s, d/2), non-interleaved: rotates q and k in place.
        cos = torch.cat((cos, cos), dim=-1)[None, :, None, :]
        sin = torch.cat((sin, sin), dim=-1)[None, :, None, :]
        for i in (0, 1):
            part = qkv[:, :, i]
            qkv[:, :, i] = part * cos + rotate_half(part) * sin
        return qkv

    def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p, causal=False):
        outputs = []
        for start, end in zip(cu_seqlens[:-1].tolist(), cu_seqlens[1:].tolist()):
            q, k, v = (qkv[start:end, i].transpose(0, 1) for i in range(3))  # (h, s, d)
            attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
            outputs.append(attended.transpose(0, 1))
        return torch.cat(outputs, dim=0)

    flash_attn = types.ModuleType("flash_attn")
    layers = types.ModuleType("flash_attn.layers")
    rotary = types.ModuleType("flash_attn.layers.rotary")
    interface = types.ModuleType("flash_attn.flash_attn_interface")
    rotary.apply_rotary_emb_qkv_ = apply_rotary_emb_qkv_
    interface.flash_attn_varlen_qkvpacked_func = flash_attn_varlen_qkvpacked_func
    flash_attn.layers, layers.rotary = layers, rotary
    flash_attn.flash_attn_interface = interface
    sys.modules.update({"flash_attn": flash_attn, "flash_attn.layers": layers,
                        "flash_attn.layers.rotary": rotary,
                        "flash_attn.flash_attn_interface": interface})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mdlm-repo", required=True, help="a checkout of kuleshov-group/mdlm")
    args = parser.parse_args()
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        sys.exit("needs torch, safetensors, einops, omegaconf and huggingface_hub (pip install ...)")
    stand_in_flash_attn(torch)
    # dit.py alone: the package's __init__ also imports the Mamba backbones.
    import importlib.util
    spec = importlib.util.spec_from_file_location("dit", os.path.join(args.mdlm_repo, "models/dit.py"))
    dit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dit)
    DIT = dit.DIT

    for name, timed in (("mdlm-tiny", False), ("mdlm-timed-tiny", True)):
        write_fixture(torch, save_file, DIT, f"{FIXTURES}/{name}", timed)


def write_fixture(torch, save_file, DIT, out, timed):
    torch.manual_seed(0)
    model_config = {"model": {"hidden_size": CONFIG["hidden_dim"], "cond_dim": CONFIG["cond_dim"],
                              "n_heads": CONFIG["n_heads"], "n_blocks": CONFIG["n_blocks"],
                              "dropout": 0.0, "scale_by_sigma": False}}
    model = DIT(model_config, vocab_size=CONFIG["vocab_size"]).eval()
    randomize(torch, model)
    os.makedirs(out, exist_ok=True)
    state = {f"backbone.{name}": tensor.contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, f"{out}/model.safetensors", metadata={"format": "pt"})
    with open(f"{out}/config.json", "w") as f:
        config = {**CONFIG, "time_conditioning": timed}
        json.dump({"architectures": ["MDLM"], "model_type": "mdlm", **config}, f, indent=2)
    ids = torch.tensor(IDS)
    times = torch.tensor(TIMES if timed else [0.0] * len(IDS))
    sigma = -torch.log1p(-(1 - EPS) * times) if timed else torch.zeros(len(IDS))
    with torch.no_grad():
        logits = model(ids, sigma)
    write_logits(out, IDS, [0] * len(IDS), logits.float(), times=TIMES if timed else None)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
