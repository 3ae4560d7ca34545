"""Measure the bundled digits models for their model cards.

    python benchmarks/digits_model_card.py [--n 500] [--steps 20]

Writes the reference feature statistics of the 500 held-out digits
(src/diffsampler/bundled/digits-classifier/fd_reference.safetensors), a sample grid
(src/diffsampler/bundled/digits/samples.png) and benchmarks/results/digits_model_card.json:
for each setting, the held-out classifier's accuracy on the requested classes and the
Fréchet distance of its features (fd-digits) to the held-out digits.
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
from diffsampler.metrics import classifier_features, frechet_distance, gaussian_stats
from diffsampler.training import classifier_accuracy

ROOT = Path(__file__).resolve().parent


def evaluate(x: torch.Tensor, y: torch.Tensor, clf: torch.nn.Module, ref: tuple) -> dict:
    with torch.no_grad():
        acc = (clf(x.float()).argmax(1) == y).float().mean().item()
    mu, sigma = gaussian_stats(classifier_features(clf, x))
    return {"accuracy": round(acc, 4), "fd_digits": round(frechet_distance(mu, sigma, *ref), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_grad_enabled(False)
    unet, clean, noisy = load_model("digits"), load_classifier("clean"), load_classifier("noisy")
    test_x, test_y = load_digits("test")
    ref = gaussian_stats(classifier_features(clean, test_x))
    save_file({"mu": ref[0].contiguous(), "sigma": ref[1].contiguous()},
              str(model_path("digits-classifier") / "fd_reference.safetensors"))
    train_x, train_y = load_digits("train")
    pick = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(a.seed))[: a.n]
    rows = {"real train digits (floor)": evaluate(train_x[pick], train_y[pick], clean, ref)}
    labels = torch.arange(a.n) % 10
    settings = {
        "unconditional": (None, {}),
        "conditional (cfg w=1)": (None, {"class_labels": labels}),
        "cfg w=2": (CFG(scale=2.0), {"class_labels": labels}),
        "cfg w=3": (CFG(scale=3.0), {"class_labels": labels}),
        "classifier s=1 (unconditional model)": (ClassifierGuidance(noisy, scale=1.0), {"class_labels": labels}),
        "classifier s=3 (unconditional model)": (ClassifierGuidance(noisy, scale=3.0), {"class_labels": labels}),
    }
    grid = None
    for name, (guidance, cond) in settings.items():
        start = time.perf_counter()
        xs = []
        for first in range(0, a.n, 100):
            c = {k: v[first:first + 100] for k, v in cond.items()}
            xs.append(ds.sample(unet, sampler="ddim", steps=a.steps, shape=(min(100, a.n - first), 1, 28, 28),
                                generator=ds.generators(a.seed, min(100, a.n - first), start=first),
                                guidance=guidance, cond=c))
        x = torch.cat(xs)
        rows[f"ddim {a.steps} steps, {name}"] = {**evaluate(x, labels, clean, ref),
                                                 "seconds": round(time.perf_counter() - start, 1)}
        if name == "cfg w=3":
            grid = x[:100]
        print(name, rows[f"ddim {a.steps} steps, {name}"], flush=True)
    save_png(model_path("digits") / "samples.png", grid, nrow=10)
    result = {"command": f"python benchmarks/digits_model_card.py --n {a.n} --steps {a.steps} --seed {a.seed}",
              "samples_per_setting": a.n, "reference": "500 held-out digits (50 a class)",
              "clean_classifier_held_out_accuracy": round(classifier_accuracy(clean), 4),
              "noisy_classifier_held_out_accuracy_at_t": {t: round(classifier_accuracy(noisy, t), 4)
                                                          for t in (0, 250, 500, 750)},
              "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
              "rows": rows}
    (ROOT / "results" / "digits_model_card.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
