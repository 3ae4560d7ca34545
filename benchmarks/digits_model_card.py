"""Measure the bundled digits models for their model cards.

    python benchmarks/digits_model_card.py [--n 500] [--seed 0] [--only unconditional,conditional]

Writes the reference feature statistics of the 500 held-out digits
(src/diffsampler/bundled/digits-classifier/fd_reference.safetensors), a sample grid
(src/diffsampler/bundled/digits/samples.png: DDIM 20 steps, cfg w = 3, 100 samples) and
benchmarks/results/digits_model_card.json: for each setting, the held-out classifier's accuracy on
the requested classes and the Fréchet distance of its features (fd-digits, with a bootstrap SE) to
the held-out digits. The targets are measured with DDPM, 100 steps; the guidance rows with DDIM,
20 steps. A card written for another model (another training.json) moves to the file's history.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

import diffsampler as ds
from diffsampler.bundled import load_classifier, load_model, model_path
from diffsampler.data import load_digits
from diffsampler.guidance import CFG, ClassifierGuidance
from diffsampler.images import save_png
from diffsampler.metrics import bootstrap, classifier_features, frechet_distance, gaussian_stats
from diffsampler.training import classifier_accuracy

ROOT = Path(__file__).resolve().parent
RESULT = ROOT / "results" / "digits_model_card.json"


def evaluate(x: torch.Tensor, y: torch.Tensor, clf: torch.nn.Module, ref: tuple) -> dict:
    with torch.no_grad():
        acc = (clf(x.float()).argmax(1) == y).float().mean().item()
    f = classifier_features(clf, x).double()
    fd = frechet_distance(*gaussian_stats(f), *ref)
    se = bootstrap(lambda i: frechet_distance(*gaussian_stats(f[i]), *ref), len(f))
    return {"accuracy": round(acc, 4), "fd_digits": round(fd, 3), "fd_digits_se": round(se, 3)}


def settings(noisy: torch.nn.Module, labels: torch.Tensor) -> dict[str, tuple]:
    """name → (sampler, steps, guidance, cond)."""
    cond = {"class_labels": labels}
    return {
        "unconditional": ("ddpm", 100, None, {}),
        "conditional": ("ddpm", 100, None, cond),
        "ddim unconditional": ("ddim", 20, None, {}),
        "ddim conditional": ("ddim", 20, None, cond),
        "cfg w=2": ("ddim", 20, CFG(scale=2.0), cond),
        "cfg w=3": ("ddim", 20, CFG(scale=3.0), cond),
        "classifier s=1": ("ddim", 20, ClassifierGuidance(noisy, scale=1.0), cond),
        "classifier s=3": ("ddim", 20, ClassifierGuidance(noisy, scale=3.0), cond),
    }


def draw(unet, n: int, seed: int, sampler: str, steps: int, guidance, cond: dict) -> torch.Tensor:
    xs = []
    for first in range(0, n, 100):
        b = min(100, n - first)
        c = {k: v[first : first + b] for k, v in cond.items()}
        xs.append(
            ds.sample(
                unet,
                sampler=sampler,
                steps=steps,
                shape=(b, 1, 28, 28),
                generator=ds.generators(seed, b, start=first),
                guidance=guidance,
                cond=c,
            )
        )
    return torch.cat(xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", default=None, help="comma-separated settings (default: all)")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    unet, clean, noisy = load_model("digits"), load_classifier("clean"), load_classifier("noisy")
    trained = json.loads((model_path("digits") / "training.json").read_text())
    test_x, test_y = load_digits("test")
    ref = gaussian_stats(classifier_features(clean, test_x))
    save_file(
        {"mu": ref[0].contiguous(), "sigma": ref[1].contiguous()},
        str(model_path("digits-classifier") / "fd_reference.safetensors"),
    )
    old = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    history = old.pop("history", [])
    if old and old.get("model") != trained:
        history.append(old)
        old = {}
    rows = old.get("rows", {}) if old.get("samples_per_setting") == a.n else {}
    train_x, train_y = load_digits("train")
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(a.seed))[: a.n]
    rows["real train digits (floor)"] = evaluate(train_x[pick], train_y[pick], clean, ref)
    labels = torch.arange(a.n) % 10
    chosen = settings(noisy, labels)
    for name in a.only.split(",") if a.only else chosen:
        sampler, steps, guidance, cond = chosen[name]
        start = time.perf_counter()
        x = draw(unet, a.n, a.seed, sampler, steps, guidance, cond)
        rows[name] = {
            "sampler": sampler,
            "steps": steps,
            **evaluate(x, labels, clean, ref),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(name, rows[name], flush=True)
    grid = draw(unet, 100, a.seed, "ddim", 20, CFG(scale=3.0), {"class_labels": torch.arange(100) % 10})
    save_png(model_path("digits") / "samples.png", grid, nrow=10)
    result = {
        "command": f"python benchmarks/digits_model_card.py --n {a.n} --seed {a.seed}",
        "model": trained,
        "samples_per_setting": a.n,
        "reference": "500 held-out digits (50 a class)",
        "clean_classifier_held_out_accuracy": round(classifier_accuracy(clean), 4),
        "noisy_classifier_held_out_accuracy_at_t": {
            t: round(classifier_accuracy(noisy, t), 4) for t in (0, 250, 500, 750)
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "rows": rows,
        "history": history,
    }
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
