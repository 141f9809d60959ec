"""What the fixture scripts (benches/*_fixture*.py) share: weights drawn far larger than an
initialisation's, so that every part of a tiny network shows in its logits; a saved checkpoint
tidied to what a Hub checkpoint holds; the expected logits written as the Rust tests read them."""

import json
import os


def randomize(torch, model, scale_suffixes=()):
    """Every parameter ~ N(0, 0.5); normalisation scales (names containing "norm", or ending
    with one of `scale_suffixes`) ~ N(1, 0.3)."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            is_scale = "norm" in name or name.endswith(tuple(scale_suffixes))
            parameter.copy_(torch.randn_like(parameter) * (0.3 if is_scale else 0.5)
                            + (1.0 if is_scale else 0.0))


def tidy_saved(out, **config_updates):
    """Drops the autoregressive generation_config.json and the remote-code auto_map a
    save_pretrained wrote, and sets `config_updates` in config.json."""
    generation = f"{out}/generation_config.json"
    if os.path.exists(generation):
        os.remove(generation)
    with open(f"{out}/config.json") as f:
        saved = json.load(f)
    saved.pop("auto_map", None)
    saved.update(config_updates)
    with open(f"{out}/config.json", "w") as f:
        json.dump(saved, f, indent=2)


def write_logits(out, ids, padding, logits, times=None):
    """expected_logits.json: the batch's ids, left padding per row, logits to 5 decimals, and
    the time per row the logits were computed at (time-conditioned models only)."""
    rounded = [[[round(v, 5) for v in slot] for slot in row] for row in logits.tolist()]
    record = {"ids": ids, "padding": padding, "logits": rounded}
    if times is not None:
        record["time"] = times
    with open(f"{out}/expected_logits.json", "w") as f:
        json.dump(record, f)
