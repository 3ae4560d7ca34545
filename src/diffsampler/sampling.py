"""``sample()``: one call from a model and a schedule to samples, whatever the sampler."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .backbones import as_backbone
from .guidance import Guidance
from .samplers import SAMPLERS, Callback, EpsFn, NoiseSampler, Sampler, noise_from
from .samplers.base import bcast
from .schedules import SCHEDULES, Schedule, check_grid, make_grid

__all__ = ["sample", "SampleResult", "generators"]

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
    return [torch.Generator(device).manual_seed(
        int(np.random.SeedSequence(int(seed), spawn_key=(start + i,)).generate_state(1, np.uint64)[0] >> 1))
        for i in range(n)]


def _sampler(sampler: str | Sampler) -> tuple[str, Sampler]:
    if isinstance(sampler, str):
        return sampler, SAMPLERS.get(sampler)
    if callable(sampler):
        return getattr(sampler, "__name__", "custom"), sampler
    raise TypeError(f"sampler must be a registered name or a function, got {type(sampler).__name__}")


def check_options(name: str, fn: Sampler, options: Any) -> None:
    """Raise TypeError for an option (a key of ``options``) that the sampler's signature does not take."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p not in ("noise_sampler", "callback")]
    for key in options:
        if key not in accepted:
            raise TypeError(f"unknown option {key!r} for sampler {name!r}; accepted: {', '.join(accepted) or '(none)'}")


def _schedule(schedule: str | Schedule | None, backbone_schedule: Schedule | None) -> Schedule:
    if schedule is None:
        if backbone_schedule is None:
            raise ValueError("no schedule: pass schedule= (a Schedule or one of "
                             f"{', '.join(SCHEDULES.names())}) or a backbone that brings its own")
        return backbone_schedule
    if isinstance(schedule, str):
        return SCHEDULES.get(schedule)()
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a Schedule or a name, got {type(schedule).__name__}")
    return schedule


def clip_denoised(eps: EpsFn, schedule: Schedule, bound: float) -> EpsFn:
    """ε re-derived from a clipped prediction: ε' = (x − α·clip(x̂_0, ±bound))/√(1−ᾱ)."""

    def clipped(x: Tensor, t: Tensor) -> Tensor:
        e = eps(x, t)
        alpha, std = bcast(schedule.alpha(t), x), bcast(schedule.std(t), x)
        return (x - alpha * ((x - std * e) / alpha).clamp(-bound, bound)) / std

    return clipped


def sample(model: Any, *, schedule: str | Schedule | None = None, sampler: str | Sampler = "ddim",
           steps: int = 50, x_T: Tensor | None = None, shape: Sequence[int] | None = None,
           spacing: str | None = None, spacing_options: dict[str, Any] | None = None,
           grid: Tensor | Sequence[float] | None = None,
           generator: Generators | None = None, seed: int | None = None, noise_sampler: NoiseSampler | None = None,
           guidance: Guidance | None = None, cond: dict[str, Any] | None = None, prediction_type: str | None = None,
           clip: float | bool | None = None, callback: Callback | None = None, return_trajectory: bool = False,
           full_output: bool = False, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
           **options: Any) -> Tensor | SampleResult:
    """Draw samples x_0 from ``model`` (an ε-predicting callable or a ``Backbone``).

    ``x_T`` or ``shape`` (with ``generator``, a list of per-sample generators, or ``seed``) gives
    the start; ``spacing`` (with ``spacing_options``) and ``steps``, or an explicit ``grid`` of
    decreasing times, the grid;
    other keywords are the sampler's options (``eta=0.5``). ``clip`` bounds x̂_0 to [−clip, clip]
    (``None``: the backbone's default, e.g. a diffusers scheduler's ``clip_sample``; ``False``: off).
    Returns the samples, or a ``SampleResult`` with NFE (and the trajectory) when
    ``full_output`` or ``return_trajectory`` is set. ``callback`` gets a dict per step, NFE included.
    """
    name, fn = _sampler(sampler)
    check_options(name, fn, options)
    backbone = as_backbone(model, prediction_type)
    sched = _schedule(schedule, backbone.schedule)

    if grid is not None:
        times = check_grid(torch.as_tensor(grid, dtype=torch.float64))
        steps = times.numel() - 1
    else:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
        if getattr(fn, "discrete", False) and sched.discrete and steps > sched.num_train_timesteps:
            raise ValueError(f"steps={steps} is more than the schedule's {sched.num_train_timesteps} training "
                             f"steps, the most sampler {name!r} can take")
        times = make_grid(sched, steps, spacing or getattr(fn, "default_spacing", "trailing"),
                          **(spacing_options or {}))

    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        n = x_T.shape[0] if x_T is not None else (shape[0] if shape else 0)
        generator = generators(seed, n)
    draw = noise_sampler or noise_from(generator)
    if x_T is None:
        if shape is None:
            raise ValueError("pass x_T or shape")
        dev = torch.device(device) if device is not None else getattr(backbone, "device", torch.device("cpu"))
        x_T = draw(torch.empty(tuple(shape), dtype=dtype or torch.float32, device=dev))
    elif dtype is not None or device is not None:
        x_T = x_T.to(device=device or x_T.device, dtype=dtype or x_T.dtype)

    cond = dict(cond or {})
    batch, rows, calls = x_T.shape[0], 0, 0

    def counted(x: Tensor, t: Tensor, **c: Any) -> Tensor:
        nonlocal rows, calls
        rows, calls = rows + x.shape[0], calls + 1
        return backbone.eps(x, t, sched, **c)

    def nfe() -> int | float:
        """Network evaluations per sample: a doubled (guided) batch counts twice."""
        n = rows / batch
        return int(n) if n.is_integer() else n

    eps_c = counted if guidance is None else guidance(counted, sched, backbone)

    def eps_fn(x: Tensor, t: Tensor) -> Tensor:
        out = eps_c(x, t, **cond)
        if out.shape != x.shape:
            raise ValueError(f"model output {tuple(out.shape)} does not match the shape of x {tuple(x.shape)}")
        return out

    bound = getattr(backbone, "clip", None) if clip is None else (None if clip is False else float(clip))
    run_eps: EpsFn = eps_fn if bound is None else clip_denoised(eps_fn, sched, bound)
    xs: list[Tensor] = [x_T.detach().cpu()] if return_trajectory else []
    x0s: list[Tensor] = []

    def on_step(info: dict[str, Any]) -> None:
        info["nfe"] = nfe()
        if return_trajectory:
            xs.append(info["x"].detach().cpu())
            x0s.append(info["denoised"].detach().cpu())
        if callback is not None:
            callback(info)

    with torch.no_grad():
        x0 = fn(run_eps, x_T, times, sched, noise_sampler=draw,
                callback=on_step if (callback or return_trajectory) else None, **options)
    if not (full_output or return_trajectory):
        return x0
    return SampleResult(x0, nfe(), times, calls, torch.stack(xs) if xs else None,
                        torch.stack(x0s) if x0s else None, {"sampler": name, "steps": steps, **options})
