"""``sample()``: one call from a model and a schedule to samples, whatever the sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .backbones import as_backbone
from .errors import BadValue
from .guidance import Guidance
from .model_fn import ModelFn, finite, take_rows
from .options import check_options
from .registry import declared_meta
from .samplers import SAMPLERS, Callback, NoiseSampler, Sampler, noise_from
from .samplers.base import times_like
from .schedules import SCHEDULES, Schedule, check_grid, make_grid
from .tensors import bcast

__all__ = [
    "sample",
    "SampleResult",
    "generators",
    "time_grid",
    "spacing_for",
    "steps_for_nfe",
    "nfe_for_steps",
    "take_rows",
    "start_from",
    "ModelFn",
]

Generators = torch.Generator | Sequence[torch.Generator]


@dataclass
class SampleResult:
    """Samples with what they cost: ``nfe`` network evaluations per sample (CFG's doubled batch counts
    twice; an adaptive solver that evaluates only part of its batch counts that part), in ``calls`` calls."""

    samples: Tensor
    nfe: int | float
    grid: Tensor
    calls: int = 0
    trajectory: Tensor | None = None  # x at t_0 (= x_T), t_1, …, t_N: [N+1, B, …]
    denoised: Tensor | None = None  # x̂_0 seen at each step: [N, B, …]
    options: dict[str, Any] = field(default_factory=dict)


def generators(seed: int, n: int, start: int = 0, device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per sample: sample i's stream depends only on (seed, start + i)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return [
        torch.Generator(device).manual_seed(
            int(np.random.SeedSequence(int(seed), spawn_key=(start + i,)).generate_state(1, np.uint64)[0] >> 1)
        )
        for i in range(n)
    ]


def _sampler(sampler: str | Sampler) -> tuple[str, Sampler, dict[str, Any]]:
    """(name, function, declared metadata) of a registered name or a sampler function."""
    if isinstance(sampler, str):
        return sampler, SAMPLERS.get(sampler), SAMPLERS.meta(sampler)
    if callable(sampler):
        return getattr(sampler, "__name__", "custom"), sampler, {**SAMPLERS.meta_defaults, **declared_meta(sampler)}
    raise TypeError(f"sampler must be a registered name or a function, got {type(sampler).__name__}")


def _schedule(schedule: str | Schedule | None, backbone_schedule: Schedule | None) -> Schedule:
    if schedule is None:
        if backbone_schedule is None:
            raise ValueError(
                "no schedule: pass schedule= (a Schedule or one of "
                f"{', '.join(SCHEDULES.names())}) or a backbone that brings its own"
            )
        return backbone_schedule
    if isinstance(schedule, str):
        return SCHEDULES.get(schedule)()
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule or a name, got {type(schedule).__name__}")
    return schedule


def _clip_bound(clip: float | bool | None, default: float | None) -> float | None:
    if clip is None:
        return default
    if clip is False:
        return None
    bound = 1.0 if clip is True else clip
    if not isinstance(bound, (int, float)) or not math.isfinite(bound) or bound <= 0:
        raise ValueError(f"clip must be a number > 0, True (1.0), False or None, got {clip!r}")
    return float(bound)


def start_from(z: Tensor, schedule: Schedule, t0: float | Tensor = 1.0) -> Tensor:
    """The model's x_T for standard-normal draws z at time t0: s(t0)·z (z itself on a VP schedule), what
    ``sample`` draws when it is given no x_T."""
    return z if schedule.variance_preserving else z * schedule.scale(t0).item()


def zero_snr_step(x: Tensor, denoised: Tensor, alpha_bar_next: float) -> Tensor:
    """The first step from zero SNR, where ε = x exactly: DDIM's x_s = √ᾱ_s·x̂_0 + √(1−ᾱ_s)·x.

    There x̂_0 = E[x_0] does not depend on x, so the deterministic and the ancestral step (fresh noise
    for x) give the same distribution; every sampler takes this step, then walks the rest of the grid.
    """
    return torch.add(x * math.sqrt(1 - alpha_bar_next), denoised, alpha=math.sqrt(alpha_bar_next))


def spacing_for(sampler: str | Sampler, schedule: Schedule | None, spacing: str | None = None) -> str:
    """The spacing ``sample`` walks: ``spacing``, else the schedule family's default, else the sampler's."""
    return spacing or getattr(schedule, "default_spacing", None) or _sampler(sampler)[2]["spacing"]


def time_grid(
    sampler: str | Sampler,
    schedule: Schedule,
    steps: int,
    spacing: str | None = None,
    spacing_options: dict[str, Any] | None = None,
) -> Tensor:
    """The grid ``sample`` walks for ``steps`` steps: ``spacing``, or the schedule family's default (karras on VE,
    shifted-uniform on rectified flow), or the sampler's, then t = 0."""
    name, _, meta = _sampler(sampler)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BadValue("steps", steps, "must be an integer ≥ 1")
    if meta["discrete"] and schedule.discrete and steps > schedule.num_train_timesteps:
        raise BadValue(
            "steps",
            steps,
            f"more than the schedule's {schedule.num_train_timesteps} training "
            f"steps, the most sampler {name!r} can take",
        )
    return make_grid(schedule, steps, spacing_for(sampler, schedule, spacing), **(spacing_options or {}))


def _free_calls(fn: Sampler, schedule: Schedule, grid: Tensor, options: dict[str, Any]) -> int:
    """Network evaluations of ``fn`` walking ``grid`` on a free ε = 0 model (sample's own first step from zero
    SNR included)."""
    calls = 0

    def free(x: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        nonlocal calls
        calls += 1
        return torch.zeros_like(x)

    if schedule.alpha_bar(grid[0]).item() == 0:
        calls, grid = 1, grid[1:]
    if grid.numel() > 1:
        fn(free, torch.zeros(1, 1, dtype=torch.float64), grid, schedule, noise_sampler=torch.zeros_like, **options)
    return calls


def nfe_for_steps(
    sampler: str | Sampler, schedule: Schedule, steps: int, spacing: str | None = None, **options: Any
) -> int:
    """Network evaluations per sample of ``steps`` steps, counted on a free ε = 0 model: exact for any sampler
    whose cost does not depend on the model's values (not the adaptive ones: ``dpm-adaptive``, ``pf-ode``'s
    ``rk45``)."""
    name, fn, _ = _sampler(sampler)
    check_options("sampler", name, fn, options)
    return _free_calls(fn, schedule, time_grid(sampler, schedule, steps, spacing), options)


def steps_for_nfe(
    sampler: str | Sampler, schedule: Schedule, nfe: int, spacing: str | None = None, **options: Any
) -> int | None:
    """The most steps whose cost is at most ``nfe`` network evaluations per sample (None if even one step
    costs more), counted as ``nfe_for_steps`` does."""
    name, fn, meta = _sampler(sampler)
    check_options("sampler", name, fn, options)
    if meta["adaptive"]:
        raise ValueError(f"sampler {name!r} sets its own steps (adaptive): no step count fits an NFE budget")
    cap = schedule.num_train_timesteps if meta["discrete"] and schedule.discrete else nfe
    best = None
    for n in range(1, min(nfe, cap) + 1):
        if _free_calls(fn, schedule, time_grid(sampler, schedule, n, spacing), options) > nfe:
            break
        best = n
    return best


def sample(
    model: Any,
    *,
    schedule: str | Schedule | None = None,
    sampler: str | Sampler = "ddim",
    steps: int = 50,
    x_T: Tensor | None = None,
    shape: Sequence[int] | None = None,
    spacing: str | None = None,
    spacing_options: dict[str, Any] | None = None,
    grid: Tensor | Sequence[float] | None = None,
    generator: Generators | None = None,
    seed: int | None = None,
    noise_sampler: NoiseSampler | None = None,
    guidance: Guidance | None = None,
    cond: dict[str, Any] | None = None,
    prediction_type: str | None = None,
    clip: float | bool | None = None,
    callback: Callback | None = None,
    return_trajectory: bool = False,
    full_output: bool = False,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    deterministic: bool = False,
    solver: Any = None,
    **options: Any,
) -> Tensor | SampleResult:
    """Draw samples x_0 from ``model`` (an ε-predicting callable or a ``Backbone``).

    ``x_T`` or ``shape`` (with ``generator``, a list of per-sample generators, or ``seed``) gives
    the start; ``spacing`` (with ``spacing_options``) and ``steps``, or an explicit ``grid`` of
    decreasing times (or a ``TunedGrid`` from ``tune_grid``), the grid;
    other keywords are the sampler's options (``eta=0.5``). ``clip`` bounds x̂_0 to [−clip, clip]
    (``None``: the backbone's default, e.g. a diffusers scheduler's ``clip_sample``; ``False``: off).
    Per-sample generators make sample i's noise independent of the batch; the network's kernels
    still round differently for different batch sizes, so outputs agree to float tolerance.
    ``deterministic=True`` evaluates ε one sample at a time, so that sample i is bitwise the same
    in any batch (slower). Returns the samples, or a ``SampleResult`` with NFE (and the trajectory)
    when ``full_output`` or ``return_trajectory`` is set. ``callback`` gets a dict per step, NFE included.
    ``solver`` (a ``LearnedSolver`` from ``learn_solver``) is a sampler with its own times: it takes the
    place of ``sampler``, ``steps``, ``spacing`` and ``grid``.
    """
    if solver is not None:
        if grid is not None or spacing is not None or options:
            raise ValueError(
                "a learned solver walks its own times with its own parameters: leave out grid, "
                "spacing and sampler options"
            )
        sampler = solver
    name, fn, meta = _sampler(sampler)
    check_options("sampler", name, fn, options)
    backbone = as_backbone(model, prediction_type)
    sched = _schedule(schedule, backbone.schedule)
    bound = _clip_bound(clip, backbone.clip)

    if solver is not None:  # refuses another schedule
        solver.check(sched)
        times, steps = solver.times(sched), solver.nfe
    elif grid is not None:
        if hasattr(grid, "check") and hasattr(grid, "times"):  # a TunedGrid: refuses another schedule or sampler
            grid.check(sched, sampler=name)
            grid = grid.times
        times = check_grid(torch.as_tensor(grid, dtype=torch.float64))
        steps = times.numel() - 1
    else:
        times = time_grid(sampler, sched, steps, spacing, spacing_options)

    if x_T is not None and shape is not None and tuple(shape) != tuple(x_T.shape):
        raise ValueError(f"shape {tuple(shape)} contradicts x_T's shape {tuple(x_T.shape)}: pass one of them")
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        n = x_T.shape[0] if x_T is not None else (shape[0] if shape else 0)
        generator = generators(seed, n)
    draw = noise_sampler or noise_from(generator)
    vp = sched.variance_preserving
    if x_T is None:
        if shape is None:
            raise ValueError("pass x_T or shape")
        dev = torch.device(device) if device is not None else backbone.device
        x_start = draw(torch.empty(tuple(shape), dtype=dtype or torch.float32, device=dev))
        x_T = start_from(x_start, sched, times[0])
    else:
        if dtype is not None or device is not None:
            x_T = x_T.to(device=device or x_T.device, dtype=dtype or x_T.dtype)
        x_start = x_T if vp else x_T / sched.scale(times[0]).item()
    if not finite(x_T):
        raise ValueError("x_T holds NaN or infinite values")

    model_fn = ModelFn(
        backbone,
        sched,
        batch=x_T.shape[0],
        cond=cond,
        guidance=guidance,
        clip=bound,
        deterministic=deterministic,
        grid=times,
    )
    if model_fn.renoise and not meta["renoise"]:
        able = [s for s in SAMPLERS.names() if SAMPLERS.meta(s)["renoise"]]
        raise ValueError(
            f"sampler {name!r} cannot re-noise with a second ε, which this guidance needs; "
            f"samplers that can: {', '.join(able)}"
        )
    xs: list[Tensor] = [x_T.detach().cpu()] if return_trajectory else []
    x0s: list[Tensor] = []
    first = int(sched.alpha_bar(times[0]).item() == 0)  # the step from zero SNR that sample takes itself
    shift = 0  # how many steps the sampler's own indices are behind: `first` once that step is reported

    def on_step(info: dict[str, Any]) -> None:
        info["nfe"] = model_fn.nfe
        info["i"] += shift
        if not vp:  # rk45 reports no t_next, and its t per sample
            t = info["t_next"] if info["t_next"] is not None else info["t"]
            info["x"] = info["x"] * bcast(sched.scale(t), info["x"])
        if return_trajectory:
            xs.append(info["x"].detach().cpu())
            x0s.append(info["denoised"].detach().cpu())
        if callback is not None:
            callback(info)

    report_to = on_step if (callback or return_trajectory) else None
    x = x_start
    with torch.no_grad():
        if first:
            m = model_fn.denoised(x, times_like(times[0], x))
            x = zero_snr_step(x, m, sched.alpha_bar(times[1]).item())
            if report_to is not None:
                report_to({"i": 0, "t": times[0].item(), "t_next": times[1].item(), "x": x, "denoised": m})
        shift = first
        x0 = (
            x
            if times.numel() - first < 2
            else fn(model_fn, x, times[first:], sched, noise_sampler=draw, callback=report_to, **options)
        )
    if not vp and times[-1] > 0:
        x0 = x0 * sched.scale(times[-1]).item()
    if not finite(x0):
        raise ValueError(f"sampler {name!r} produced NaN or infinite values from finite model outputs")
    if not (full_output or return_trajectory):
        return x0
    return SampleResult(
        x0,
        model_fn.nfe,
        times,
        model_fn.calls,
        torch.stack(xs) if xs else None,
        torch.stack(x0s) if x0s else None,
        {"sampler": name, "steps": steps, **options},
    )
