"""Pick among trained digits models on held-out seeds: conditional accuracy and fd-digits, unconditional fd-digits.

    python benchmarks/digits_select.py [--n 1000] [--device cpu|cuda] [--out select.json] FOLDER...

Each folder (a pipeline written by ``diffsampler train unet``) draws N conditional (classes in turn) and N
unconditional DDPM-100 samples from seed 1, disjoint from the model card's seed 0, scored as the model card
scores them. Ranked by class accuracy among those with unconditional fd-digits <= 1.6 and conditional <= 0.4
(a folder named "current" is scored, never ranked); writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from digits_model_card import draw, evaluate
from leaderboard import use_device

import diffsampler as ds
from diffsampler.bundled import load_classifier, load_model
from diffsampler.data import load_digits
from diffsampler.metrics import classifier_features, gaussian_stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="select.json")
    a = p.parse_args()
    use_device(a.device)
    torch.set_grad_enabled(False)
    clean = load_classifier("clean")
    ref = gaussian_stats(classifier_features(clean, load_digits("test")[0]))
    labels = torch.arange(a.n) % 10
    results = {}
    for d in a.folders:
        if not (Path(d) / "unet").exists():
            print(d, "missing", flush=True)
            continue
        start = time.time()
        unet = load_model(d, device=a.device)
        row = {}
        for name, cond in (("cond", {"class_labels": labels}), ("uncond", {})):
            scores = evaluate(draw(unet, a.n, 1, "ddpm", 100, None, cond).cpu(), labels, clean, ref)
            row[name + "_fd"] = scores["fd_digits"]
            if cond:
                row["accuracy"] = scores["accuracy"]
        row["seconds"] = round(time.time() - start, 1)
        results[d] = row
        print(d, row, flush=True)
    ok = {d: r for d, r in results.items() if r["uncond_fd"] <= 1.6 and r["cond_fd"] <= 0.4 and "current" not in d}
    pool = ok or {d: r for d, r in results.items() if "current" not in d}
    ranked = sorted(pool, key=lambda d: (-pool[d]["accuracy"], pool[d]["cond_fd"]))
    Path(a.out).write_text(json.dumps({"n": a.n, "seed": 1, "results": results, "ranked": ranked}, indent=1))
    print("ranked", ranked, flush=True)


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
