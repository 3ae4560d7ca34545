"""``sample()``: one call from a model and a schedule to samples, whatever the sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .backbones import as_backbone
from .guidance import Guidance
from .options import check_options
from .registry import declared_meta
from .samplers import SAMPLERS, Callback, EpsFn, NoiseSampler, Sampler, noise_from
from .samplers.base import times_like
from .schedules import SCHEDULES, Schedule, check_grid, make_grid
from .tensors import bcast

__all__ = ["sample", "SampleResult", "generators", "time_grid", "spacing_for", "steps_for_nfe", "take_rows",
           "ClippedEps", "start_from"]

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
            raise ValueError("no schedule: pass schedule= (a Schedule or one of "
                             f"{', '.join(SCHEDULES.names())}) or a backbone that brings its own")
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


def take_rows(cond: dict[str, Any], rows: Tensor, batch: int) -> dict[str, Any]:
    """Per-sample conditioning (tensors whose first dimension is the batch) restricted to ``rows``."""
    return {k: v[rows.to(v.device)] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == batch else v
            for k, v in cond.items()}


class ClippedEps:
    """ε of a clipped prediction: ε' = (x − α·clip(x̂_0, ±bound))/√(1−ᾱ), with x̂_0 = (x − √(1−ᾱ)·ε)/α.

    ``pair`` re-noises with the clipped ε too, or with the network's own ε where ``raw`` asks for it;
    an inner paired ε (CFG++) keeps its own re-noising ε.
    """

    def __init__(self, eps: EpsFn, schedule: Schedule, bound: float) -> None:
        self.eps, self.schedule, self.bound = eps, schedule, bound
        if hasattr(eps, "pair"):
            self.pair = self._pair_of_pair

    def _clip(self, x: Tensor, t: Tensor, e: Tensor) -> Tensor:
        alpha, std = bcast(self.schedule.alpha(t), x), bcast(self.schedule.std(t), x)
        return (x - alpha * ((x - std * e) / alpha).clamp(-self.bound, self.bound)) / std

    def pair(self, x: Tensor, t: Tensor, rows: Tensor | None = None, raw: bool = False) -> tuple[Tensor, Tensor]:
        e = self.eps(x, t, rows=rows)
        clipped = self._clip(x, t, e)
        return clipped, (e if raw else clipped)

    def _pair_of_pair(self, x: Tensor, t: Tensor, rows: Tensor | None = None,
                      raw: bool = False) -> tuple[Tensor, Tensor]:
        e, e_r = self.eps.pair(x, t, rows=rows)
        return self._clip(x, t, e), e_r

    def __call__(self, x: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        return self._clip(x, t, self.eps(x, t, rows=rows))


def finite(x: Tensor) -> bool:
    """No NaN or inf in x, in one reduction: both propagate through a sum (kept in ≥ float32, so fp16 cannot
    overflow it); an elementwise isfinite costs 25× more per step."""
    return bool(torch.isfinite(x.sum(dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)))


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


def _step_of(grid: Tensor, t: float) -> int:
    """The step (1-based) whose interval [t_{i+1}, t_i] holds t."""
    return max(1, min(int((grid >= t - 1e-12).sum()), grid.numel() - 1))


def spacing_for(sampler: str | Sampler, schedule: Schedule | None, spacing: str | None = None) -> str:
    """The spacing ``sample`` walks: ``spacing``, else the schedule family's default, else the sampler's."""
    return spacing or getattr(schedule, "default_spacing", None) or _sampler(sampler)[2]["spacing"]


def time_grid(sampler: str | Sampler, schedule: Schedule, steps: int, spacing: str | None = None,
              spacing_options: dict[str, Any] | None = None) -> Tensor:
    """The grid ``sample`` walks for ``steps`` steps: ``spacing``, or the schedule family's default (karras on VE,
    shifted-uniform on rectified flow), or the sampler's, then t = 0."""
    name, _, meta = _sampler(sampler)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer ≥ 1, got {steps!r}")
    if meta["discrete"] and schedule.discrete and steps > schedule.num_train_timesteps:
        raise ValueError(f"steps={steps} is more than the schedule's {schedule.num_train_timesteps} training "
                         f"steps, the most sampler {name!r} can take")
    return make_grid(schedule, steps, spacing_for(sampler, schedule, spacing), **(spacing_options or {}))


def steps_for_nfe(sampler: str | Sampler, schedule: Schedule, nfe: int, spacing: str | None = None,
                  **options: Any) -> int | None:
    """The most steps whose cost is at most ``nfe`` network evaluations per sample (None if even one step
    costs more), found by running the sampler on a free ε = 0 model: exact for any sampler whose cost
    does not depend on the model's values (every one here but ``pf-ode``'s adaptive ``rk45``)."""
    name, fn, meta = _sampler(sampler)
    check_options("sampler", name, fn, options)
    cap = schedule.num_train_timesteps if meta["discrete"] and schedule.discrete else nfe
    best = None
    for n in range(1, min(nfe, cap) + 1):
        calls = 0

        def free(x: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
            nonlocal calls
            calls += 1
            return torch.zeros_like(x)

        grid = time_grid(sampler, schedule, n, spacing)
        if schedule.alpha_bar(grid[0]).item() == 0:  # sample's own first step from zero SNR
            calls, grid = 1, grid[1:]
        if grid.numel() > 1:
            fn(free, torch.zeros(1, 1, dtype=torch.float64), grid, schedule, noise_sampler=torch.zeros_like,
               **options)
        if calls > nfe:
            break
        best = n
    return best


def sample(model: Any, *, schedule: str | Schedule | None = None, sampler: str | Sampler = "ddim",
           steps: int = 50, x_T: Tensor | None = None, shape: Sequence[int] | None = None,
           spacing: str | None = None, spacing_options: dict[str, Any] | None = None,
           grid: Tensor | Sequence[float] | None = None,
           generator: Generators | None = None, seed: int | None = None, noise_sampler: NoiseSampler | None = None,
           guidance: Guidance | None = None, cond: dict[str, Any] | None = None, prediction_type: str | None = None,
           clip: float | bool | None = None, callback: Callback | None = None, return_trajectory: bool = False,
           full_output: bool = False, device: str | torch.device | None = None, dtype: torch.dtype | None = None,
           deterministic: bool = False, **options: Any) -> Tensor | SampleResult:
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
    """
    name, fn, meta = _sampler(sampler)
    check_options("sampler", name, fn, options)
    backbone = as_backbone(model, prediction_type)
    sched = _schedule(schedule, backbone.schedule)
    bound = _clip_bound(clip, backbone.clip)

    if grid is not None:
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

    cond = dict(cond or {})
    batch, rows_done, calls = x_T.shape[0], 0, 0

    predict = "eps"  # "denoised" for the first step from zero SNR, where ε cannot tell x̂_0

    def counted(x: Tensor, t: Tensor, _backbone: Any = None, **c: Any) -> Tensor:
        """ε of the backbone (or of ``_backbone``, a guidance's second network) at the model's x = s(t)·x_vp,
        counted per sample."""
        nonlocal rows_done, calls
        rows_done, calls = rows_done + x.shape[0], calls + 1
        model_x = x if vp else x * bcast(sched.scale(t), x).to(x.dtype)
        return getattr(backbone if _backbone is None else _backbone, predict)(model_x, t, sched, **c)

    def nfe() -> int | float:
        """Network evaluations per sample: a doubled (guided) batch counts twice."""
        n = rows_done / batch
        return int(n) if n.is_integer() else n

    eps_c = counted if guidance is None else guidance(counted, sched, backbone)
    call = getattr(eps_c, "pair", eps_c)  # a paired guidance (CFG++) returns (ε, ε to re-noise with)
    paired = call is not eps_c
    if paired and not meta["renoise"]:
        able = [s for s in SAMPLERS.names() if SAMPLERS.meta(s)["renoise"]]
        raise ValueError(f"sampler {name!r} cannot re-noise with a second ε, which this guidance needs; "
                         f"samplers that can: {', '.join(able)}")

    def evaluate(x: Tensor, t: Tensor, rows: Tensor | None) -> Any:
        if not deterministic:
            return call(x, t, **(cond if rows is None else take_rows(cond, rows, batch)))
        index = torch.arange(batch, device=x.device) if rows is None else rows
        parts = [call(x[i:i + 1], t[i:i + 1], **take_rows(cond, index[i:i + 1], batch)) for i in range(x.shape[0])]
        return tuple(torch.cat(p) for p in zip(*parts)) if paired else torch.cat(parts)

    def checked(out: Tensor, x: Tensor, t: Tensor) -> Tensor:
        if out.shape != x.shape:
            raise ValueError(f"model output {tuple(out.shape)} does not match the shape of x {tuple(x.shape)}")
        if not finite(out):
            at = float(t.reshape(-1)[0])
            raise ValueError(f"the model returned NaN or infinite values at t={at:.4g} (step {_step_of(times, at)} "
                             f"of {steps}, network call {calls})")
        return out

    def eps_fn(x: Tensor, t: Tensor, rows: Tensor | None = None) -> Tensor:
        out = evaluate(x, t, rows)
        return checked(out[0] if paired else out, x, t)

    def eps_pair_fn(x: Tensor, t: Tensor, rows: Tensor | None = None, raw: bool = False) -> tuple[Tensor, Tensor]:
        e, e_r = evaluate(x, t, rows)
        return checked(e, x, t), checked(e_r, x, t)

    if paired:
        eps_fn.pair = eps_pair_fn  # type: ignore[attr-defined]
    run_eps: EpsFn = eps_fn if bound is None else ClippedEps(eps_fn, sched, bound)
    xs: list[Tensor] = [x_T.detach().cpu()] if return_trajectory else []
    x0s: list[Tensor] = []

    first = 0  # steps taken before the sampler's own: 1 where the grid starts at zero SNR

    def on_step(info: dict[str, Any]) -> None:
        info["nfe"] = nfe()
        info["i"] += first
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
        if sched.alpha_bar(times[0]).item() == 0:
            if guidance is not None and not getattr(guidance, "zero_snr", False):
                raise ValueError(f"{type(guidance).__name__} guidance works on ε, and at zero SNR (t = "
                                 f"{times[0].item():g}) ε = x says nothing of x̂_0; use cfg (rescale in the model's "
                                 "space), pag or autoguidance, or start the grid below zero SNR")
            predict = "denoised"
            out = evaluate(x, times_like(times[0], x), None)
            predict = "eps"
            m = checked(out[0] if paired else out, x, times[0])
            if bound is not None:
                m = m.clamp(-bound, bound)
            x = zero_snr_step(x, m, sched.alpha_bar(times[1]).item())
            first = 1
            if report_to is not None:
                report_to({"i": 0, "t": times[0].item(), "t_next": times[1].item(), "x": x, "denoised": m})
        x0 = x if times.numel() - first < 2 else fn(run_eps, x, times[first:], sched, noise_sampler=draw,
                                                   callback=report_to, **options)
    if not vp and times[-1] > 0:
        x0 = x0 * sched.scale(times[-1]).item()
    if not finite(x0):
        raise ValueError(f"sampler {name!r} produced NaN or infinite values from finite model outputs")
    if not (full_output or return_trajectory):
        return x0
    return SampleResult(x0, nfe(), times, calls, torch.stack(xs) if xs else None,
                        torch.stack(x0s) if x0s else None, {"sampler": name, "steps": steps, **options})
