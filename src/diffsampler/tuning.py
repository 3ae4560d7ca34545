r"""``tune_grid``: the N-step time grid that brings a sampler closest to a tight PF-ODE solution.

Method (GITS, Chen et al. 2024): from x_T of a small batch, solve the PF-ODE on a fine grid of M
times (DPM-Solver++(3M), uniform in λ by default), keeping x_i and x̂_0(x_i) at each fine time.
The cost of jumping from fine time i to j in one step is the mean square distance of the DDIM step
x̂_j = α_j·x̂_0(x_i) + σ_j·ε̂_i, ε̂_i = (x_i − α_i·x̂_0(x_i))/σ_i, to the reference x_j: free, since
ε at x_i is already known. Dynamic programming picks the N jumps from t = 1 to t = 0 of least total
cost. The local cost is a first-order step's whatever the sampler; for higher-order samplers a sweep
of coordinate descent on the sampler's own distance refines it; a candidate that moves the k-th time
shares the current grid's trajectory up to it, so those network evaluations are looked up, not redone.
The grid is scored with the sampler itself, against its default spacing, on the same batch; where
the default spacing comes closer, it is the grid returned (``extra["kept_default"]``; the search's own
grid measured ``extra["found_distance"]``).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .backbones import Backbone, as_backbone
from .sampling import generators, sample, spacing_for, start_from, steps_for_nfe, time_grid
from .schedules import Schedule, check_grid, make_grid

__all__ = ["TunedGrid", "tune_grid", "load_grid", "jump_costs", "cheapest_path"]

FORMAT = "diffsampler-grid/1"
FIRST_ORDER = [("ddim", {}), ("euler", {}), ("dpm-solver++", {"order": 1})]  # one step = the DDIM step of the costs


def _same(a: Any, b: Any) -> bool:
    """Bitwise-equal tensors (shape, dtype and device too), or equal other values."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and a.device == b.device
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class _Reuse(Backbone):
    """``inner`` whose evaluations at inputs bitwise equal to those of the last kept run are looked up, not
    recomputed: the results are those of ``inner`` exactly, as long as it is a function of its inputs."""

    def __init__(self, inner: Backbone) -> None:
        self.inner = inner
        for name in ("schedule", "sample_shape", "num_classes", "null_class_label", "clip", "device", "compiled"):
            setattr(self, name, getattr(inner, name))
        self.kept: list[tuple] = []
        self.seen: list[tuple] = []
        self.calls = self.reused = 0

    def __getattr__(self, name: str) -> Any:  # the network itself, its prediction type: what a guidance reads
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def keep(self, run: bool) -> None:
        """End a run: its evaluations become the ones looked up (``run``) or are dropped."""
        if run:
            self.kept = self.seen
        self.seen = []

    def _eval(self, method: str, x: Tensor, t: Tensor, schedule: Schedule, cond: dict[str, Any]) -> Tensor:
        self.calls += 1
        hit = next(
            (
                e
                for e in self.kept
                if e[0] == method and e[3] is schedule and _same(e[1], t) and _same(e[2], x) and _same(e[4], cond)
            ),
            None,
        )
        if hit is None:
            out = getattr(self.inner, method)(x, t, schedule, **cond)
            hit = (method, t.clone(), x.clone(), schedule, dict(cond), out)
        else:
            self.reused += 1
        self.seen.append(hit)
        return hit[5].clone()

    def eps(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        return self._eval("eps", x, t, schedule, cond)

    def denoised(self, x: Tensor, t: Tensor, schedule: Schedule, **cond: Any) -> Tensor:
        return self._eval("denoised", x, t, schedule, cond)


def schedule_fingerprint(schedule: Schedule) -> list[float]:
    """log-SNR at five times and T: equal for equal schedules, different for any two built-in ones."""
    probes = (1.0, 0.75, 0.5, 0.25, schedule.t_min)
    return [float(schedule.num_train_timesteps)] + [round(float(schedule.log_snr(t)), 9) for t in probes]


@dataclass
class TunedGrid:
    """A tuned time grid with what it was tuned for; ``save`` and ``load_grid`` keep it as JSON."""

    grid: list[float]
    model: str
    sampler: str
    options: dict[str, Any]
    nfe: int
    schedule: list[float]
    distance: float
    default_distance: float
    default_spacing: str
    fine_steps: int
    batch: int
    seed: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def times(self) -> Tensor:
        return check_grid(torch.tensor(self.grid, dtype=torch.float64))

    @property
    def steps(self) -> int:
        return len(self.grid) - 1

    def save(self, path: str | Path) -> None:
        """Write the JSON file, whole or not at all."""
        write_format_file(path, FORMAT, asdict(self))

    def check(
        self, schedule: Schedule, model: str | None = None, sampler: str | None = None, force: bool = False
    ) -> None:
        """A ValueError (a warning with ``force``) when the grid was tuned for another schedule, model or sampler."""
        problems = made_for(self.schedule, self.model, schedule, model)
        if sampler is not None and sampler != self.sampler:
            problems.append(f"sampler {self.sampler!r}, not {sampler!r}")
        refuse("the grid was tuned for", problems, force)


def made_for(fingerprint: list[float], recorded: str, schedule: Schedule, model: str | None) -> list[str]:
    """What differs between the schedule and model a file was made for and those it is used with."""
    problems = []
    if schedule_fingerprint(schedule) != fingerprint:
        problems.append("another schedule")
    if model is not None and Path(str(model)).name != Path(recorded).name:
        problems.append(f"model {recorded!r}, not {model!r}")
    return problems


def refuse(head: str, problems: list[str], force: bool) -> None:
    """A ValueError naming the problems, or with ``force`` a warning."""
    if problems:
        message = f"{head} {' and '.join(problems)}"
        if not force:
            raise ValueError(message + " (--force, or force=True, uses it anyway)")
        warnings.warn(message, stacklevel=3)


def write_format_file(path: str | Path, fmt: str, data: dict[str, Any]) -> None:
    """``{"format": fmt, **data}`` as JSON, whole or not at all."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": fmt, **data}, indent=2) + "\n")
    tmp.replace(path)


def read_format_file(path: str | Path, noun: str, fmt: str) -> dict[str, Any]:
    """The fields of a JSON file written by ``write_format_file`` with ``fmt``, or a ValueError naming the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{noun} file {str(path)!r}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{noun} file {str(path)!r} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.pop("format", None) != fmt:
        raise ValueError(f"{noun} file {str(path)!r} is not a {fmt} file")
    return data


def load_grid(path: str | Path) -> TunedGrid:
    """Read a grid file written by ``tune_grid`` (``diffsampler tune-grid``)."""
    data = read_format_file(path, "grid", FORMAT)
    try:
        tuned = TunedGrid(**data)
        tuned.times  # noqa: B018  (validates the times)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"grid file {str(path)!r}: {exc}") from None
    return tuned


def jump_costs(xs: Tensor, x0s: Tensor, grid: Tensor, schedule: Schedule) -> Tensor:
    """C[i, j] (i < j): mean square distance of the DDIM step from reference x_i to t_j, to reference x_j, in the
    VP coordinates x/s(t) (the model's x on VE or flow schedules is s(t) times larger).

    Expanded into inner products, |α_j·x̂_0,i + σ_j·ε̂_i − x_j|² = α_j²|x̂_0,i|² + σ_j²|ε̂_i|² + 2α_jσ_j⟨x̂_0,i, ε̂_i⟩
    − 2α_j⟨x̂_0,i, x_j⟩ − 2σ_j⟨ε̂_i, x_j⟩ + |x_j|², so that all pairs take two matrix products in float64."""
    m = grid.numel() - 1
    alpha, std = schedule.alpha(grid).double(), schedule.std(grid).double()
    flat_x, flat_x0 = xs.flatten(1).double(), x0s.flatten(1).double()
    if not schedule.variance_preserving:
        flat_x = flat_x / schedule.scale(grid).double()[:, None]
    x, x0 = flat_x[:m], flat_x0[:m]  # the jumps' starts: every time but t = 0, where σ = 0
    eps = (x - alpha[:m, None] * x0) / std[:m, None]
    a, s = alpha[None, :], std[None, :]
    sq = (
        a.square() * x0.square().sum(1, keepdim=True)
        + s.square() * eps.square().sum(1, keepdim=True)
        + 2 * a * s * (x0 * eps).sum(1, keepdim=True)
        - 2 * a * (x0 @ flat_x.T)
        - 2 * s * (eps @ flat_x.T)
        + flat_x.square().sum(1)[None, :]
    )
    cost = torch.full((m + 1, m + 1), math.inf, dtype=torch.float64)
    upper = torch.ones(m, m + 1, dtype=torch.bool).triu(1)
    cost[:m] = torch.where(upper, sq.clamp(min=0) / flat_x.shape[1], math.inf)
    return cost


def cheapest_path(cost: Tensor, steps: int) -> list[int]:
    """The indices 0 = k_0 < k_1 < … < k_N = M minimising Σ C[k_n, k_{n+1}] (dynamic programming)."""
    m = cost.shape[0] - 1
    if not 1 <= steps <= m:
        raise ValueError(f"steps={steps} must lie in 1…{m}, the fine grid's steps")
    best = torch.full((steps + 1, m + 1), math.inf, dtype=torch.float64)
    came = torch.zeros((steps + 1, m + 1), dtype=torch.long)
    best[0, 0] = 0.0
    for n in range(1, steps + 1):
        total = best[n - 1][:, None] + cost  # [from, to]
        best[n], came[n] = total.min(0)
    path = [m]
    for n in range(steps, 0, -1):
        path.append(int(came[n, path[-1]]))
    return path[::-1]


def tune_grid(
    model: Any,
    *,
    sampler: str = "dpm-solver++",
    nfe: int = 10,
    schedule: Schedule | None = None,
    model_name: str = "model",
    options: dict[str, Any] | None = None,
    batch: int = 128,
    seed: int = 1_000_003,
    fine_steps: int = 100,
    fine_spacing: str | None = None,
    guidance: Any = None,
    cond: dict[str, Any] | None = None,
    shape: tuple[int, ...] | None = None,
    refine: int | None = None,
    refine_batch: int = 64,
) -> TunedGrid:
    """The grid of ``sampler``'s step count at ``nfe`` that follows the PF-ODE from the same x_T most closely.

    ``seed`` draws the tuning batch: keep it apart from the seeds a grid is scored on. ``refine``
    sweeps of coordinate descent then move each time to a neighbouring fine time where the sampler
    itself (on ``refine_batch`` samples) comes closer: by default one sweep, none for the samplers
    whose step is the DDIM step the costs measure.
    """
    options = dict(options or {})
    start = time.perf_counter()
    backbone = as_backbone(model, None)
    sched = schedule or backbone.schedule
    if sched is None:
        raise ValueError("no schedule: pass schedule= or a backbone that brings its own")
    if fine_steps < 2:
        raise ValueError(f"fine_steps must be ≥ 2, got {fine_steps}")
    steps = steps_for_nfe(sampler, sched, nfe, **options)
    if steps is None:
        raise ValueError(f"nfe={nfe} is less than one step of sampler {sampler!r} costs")
    if steps > fine_steps:
        raise ValueError(f"nfe={nfe} gives {steps} steps, more than fine_steps={fine_steps}: raise fine_steps")
    shape = tuple(shape or backbone.sample_shape)
    gens = generators(seed, batch)
    if fine_spacing is None:  # λ-uniform, where λ(1) is finite; from zero SNR, the schedule family's own
        fine_spacing = "logsnr" if torch.isfinite(sched.sigma(1.0)) else sched.default_spacing or "uniform"
    fine = make_grid(sched, fine_steps, fine_spacing)
    x_T = start_from(torch.stack([torch.randn(shape, generator=g) for g in gens]), sched, fine[0]).to(backbone.device)
    ref = sample(
        backbone,
        schedule=sched,
        sampler="dpm-solver++",
        order=3,
        grid=fine,
        x_T=x_T,
        guidance=guidance,
        cond=cond,
        return_trajectory=True,
    )
    cost = jump_costs(ref.trajectory, ref.denoised, fine, sched)
    path = cheapest_path(cost, steps)
    target = ref.samples.double()

    def distance(grid: Tensor, rows: int = batch, net: Backbone = backbone) -> float:
        c = cond if cond is None else {k: v[:rows] if isinstance(v, Tensor) and v.dim() else v for k, v in cond.items()}
        x = sample(
            net,
            schedule=sched,
            sampler=sampler,
            grid=grid,
            x_T=x_T[:rows],
            generator=generators(seed, rows),
            guidance=guidance,
            cond=c,
            **options,
        )
        return float((x.double() - target[:rows]).pow(2).flatten(1).mean(1).mean().sqrt())

    if refine is None:
        refine = 0 if (sampler, options) in FIRST_ORDER else 1
    rows = min(batch, refine_batch)
    reuse = _Reuse(backbone)
    for _ in range(refine):  # coordinate descent on the sampler's own distance, one fine time at a time
        moved = False
        here = distance(fine[path], rows, reuse)
        reuse.keep(True)
        for k in range(1, steps):
            for step in (-1, 1):
                cand = path[:k] + [path[k] + step] + path[k + 1 :]
                if cand[k - 1] < cand[k] < cand[k + 1]:
                    d = distance(fine[cand], rows, reuse)
                    reuse.keep(d < here)
                    if d < here:
                        path, here, moved = cand, d, True
        if not moved:
            break
    tuned = fine[path]
    default = time_grid(sampler, sched, steps, None)
    dp_cost = float(sum(cost[a, b] for a, b in zip(path, path[1:])))
    tuned_distance = found_distance = distance(tuned)
    default_distance = distance(default)
    kept_default = default_distance < found_distance  # local costs need not add up to the sampler's own distance
    if kept_default:
        tuned, tuned_distance = default, default_distance
    return TunedGrid(
        grid=tuned.tolist(),
        model=str(model_name),
        sampler=sampler,
        options=options,
        nfe=nfe,
        schedule=schedule_fingerprint(sched),
        distance=tuned_distance,
        default_distance=default_distance,
        default_spacing=spacing_for(sampler, sched),
        fine_steps=fine_steps,
        batch=batch,
        seed=seed,
        seconds=round(time.perf_counter() - start, 1),
        extra={
            "fine_spacing": fine_spacing,
            "refine": refine,
            "refine_calls": reuse.calls,
            "refine_calls_reused": reuse.reused,
            "dp_cost": dp_cost,
            "kept_default": kept_default,
            "found_distance": found_distance,
        },
    )
