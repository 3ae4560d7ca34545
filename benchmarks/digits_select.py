"""Pick among trained digits models on held-out seeds: conditional accuracy and fd-digits, unconditional fd-digits.

    python benchmarks/digits_select.py N DEVICE FOLDER...

Each folder (a pipeline written by ``diffsampler train unet``) draws N conditional (classes in turn) and N
unconditional DDPM-100 samples from seed 1, disjoint from the model card's seed 0. Ranked by class accuracy
among those with unconditional fd-digits <= 1.6 and conditional <= 0.4 (a folder named "current" is scored,
never ranked); writes select.json.
"""
import json
import sys
import time
from pathlib import Path

import torch

import diffsampler as ds
from diffsampler.bundled import load_classifier, load_model
from diffsampler.data import load_digits
from diffsampler.metrics import classifier_features, frechet_distance, gaussian_stats

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_grad_enabled(False)
n, device, dirs = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
clean = load_classifier("clean")
ref = gaussian_stats(classifier_features(clean, load_digits("test")[0]))
labels = torch.arange(n) % 10
results = {}
for d in dirs:
    if not (Path(d) / "unet").exists():
        print(d, "missing", flush=True)
        continue
    start = time.time()
    unet = load_model(d, device=device)
    row = {}
    for name, cond in (("cond", {"class_labels": labels}), ("uncond", {})):
        x = ds.sample(unet, sampler="ddpm", steps=100, shape=(n, 1, 28, 28), generator=ds.generators(1, n),
                      cond=cond).cpu()
        row[name + "_fd"] = round(frechet_distance(*gaussian_stats(classifier_features(clean, x).double()), *ref), 3)
        if cond:
            row["accuracy"] = round((clean(x).argmax(1) == labels).float().mean().item(), 4)
    row["seconds"] = round(time.time() - start, 1)
    results[d] = row
    print(d, row, flush=True)
ok = {d: r for d, r in results.items() if r["uncond_fd"] <= 1.6 and r["cond_fd"] <= 0.4 and "current" not in d}
pool = ok or {d: r for d, r in results.items() if "current" not in d}
ranked = sorted(pool, key=lambda d: (-pool[d]["accuracy"], pool[d]["cond_fd"]))
Path("select.json").write_text(json.dumps({"n": n, "seed": 1, "results": results, "ranked": ranked}, indent=1))
print("ranked", ranked, flush=True)
