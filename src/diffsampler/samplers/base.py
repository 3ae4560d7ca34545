r"""What every sampler shares: the ε-function and noise contracts, and small tensor helpers.

A sampler is a function ``sampler(eps_fn, x, grid, schedule, *, noise_sampler, callback, **options)``
that walks the decreasing ``grid`` from x at ``grid[0]`` and returns x at ``grid[-1]``. It calls
``eps_fn(x, t)`` with t a float64 tensor of shape [B], draws noise only from ``noise_sampler``
and reports each step to ``callback`` as a dict (``i``, ``t``, ``t_next``, ``x``, ``denoised``).

A sampler that evaluates only some rows of its batch (an adaptive solver whose samples finish
at different times) calls ``eps_fn(x[rows], t[rows], rows=rows)``: ``rows`` are indices into
the batch it was given, so that per-sample conditioning follows the rows evaluated.

The ε that gives x̂_0 and the ε a step re-noises with can differ: CFG++ denoises with the guided ε
and re-noises with the unconditional one. ``sample`` hands samplers a ``ModelFn``, whose
``pair(x, t, rows=None, raw=False)`` returns both; ``eps_pair(eps_fn, x, t)`` asks for them of any
ε-function ((ε, ε) for a plain one without ``pair``). A sampler that uses the second one declares
``renoise=True`` at registration; ``sample`` refuses a re-noising guidance for the others. ``raw=True``
asks a clipped ε-function to re-noise with the network's own ε (diffusers' DDIM convention) instead
of the clipped one.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor

from ..registry import Registry
from ..schedules import Schedule
from ..tensors import bcast, times_like

__all__ = [
    "SAMPLERS",
    "EpsFn",
    "NoiseSampler",
    "Callback",
    "Sampler",
    "noise_from",
    "times_like",
    "bcast",
    "denoise",
    "eps_pair",
    "renoised",
    "report",
    "edm_denoiser",
    "edm_pair",
    "sigmas_of",
    "lambdas_of",
    "churned",
]

EpsFn = Callable[..., Tensor]  # eps_fn(x, t, rows=None) -> ε
NoiseSampler = Callable[[Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
Denoiser = Callable[[Tensor, float], Tensor]  # D(y; σ) = x̂_0 in y = x/√ᾱ (``edm_denoiser``)
EdmStep = Callable[
    [Denoiser, Tensor, float, float], tuple[Tensor, Tensor]
]  # (D, y, σ_from, σ_to) -> (y', D(y; σ_from))


class Sampler(Protocol):
    """``sampler(eps_fn, x, grid, schedule, *, noise_sampler, callback=None, **options) -> x_0``.

    Options are keyword-only parameters with defaults and type annotations (the command line
    checks ``--opt`` values against them). A sampler declares, where it is registered
    (``@SAMPLERS.register(name, spacing=…, discrete=…)``, or ``@declare(…)`` for a plugin):
    ``spacing``, the time spacing it walks when none is asked for (default ``"trailing"``), and
    ``discrete``, true when it is defined on training indices only, so that it takes at most T
    steps on a discrete schedule (default false); and ``renoise``, true when it re-noises with the
    second ε of ``eps_pair`` (default false).
    """

    def __call__(
        self,
        eps_fn: EpsFn,
        x: Tensor,
        grid: Tensor,
        schedule: Schedule,
        *,
        noise_sampler: NoiseSampler,
        callback: Callback | None = None,
        **options: Any,
    ) -> Tensor: ...


SAMPLERS: Registry[Sampler] = Registry(
    "sampler", "samplers", meta={"spacing": "trailing", "discrete": False, "renoise": False, "adaptive": False}
)


def noise_from(generator: torch.Generator | Sequence[torch.Generator] | None) -> NoiseSampler:
    """Standard normal noise shaped like x; a list of generators draws sample i from generator i."""

    def draw(like: Tensor) -> Tensor:
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        if isinstance(generator, Sequence):
            if len(generator) != like.shape[0]:
                raise ValueError(f"got {len(generator)} generators for a batch of {like.shape[0]}")
            z = torch.stack([torch.randn(like.shape[1:], generator=g, dtype=dtype, device=g.device) for g in generator])
        else:
            device = generator.device if generator is not None else like.device
            z = torch.randn(like.shape, generator=generator, dtype=dtype, device=device)
        return z.to(device=like.device, dtype=like.dtype)

    return draw


def denoise(x: Tensor, eps: Tensor, alpha_bar: float) -> Tensor:
    """Tweedie's x̂_0 = (x − √(1−ᾱ)·ε)/√ᾱ."""
    return torch.sub(x, eps, alpha=(1 - alpha_bar) ** 0.5).div_(alpha_bar**0.5)


def edm_denoiser(eps_fn: EpsFn, schedule: Schedule) -> Callable[[Tensor, float], Tensor]:
    """EDM's D(y; σ) = x̂_0 in the coordinates y = x/√ᾱ = x·√(1+σ²) (Karras et al. 2022): D = y − σ·ε(x, t(σ)).

    Above the schedule's σ_max (EDM's churn can go there) the model is asked at t = 1, as k-diffusion's
    wrappers of discrete models do; the input is still scaled by the σ asked for.
    """
    pair = edm_pair(eps_fn, schedule)
    return lambda y, sigma: pair(y, sigma)[0]


def edm_pair(eps_fn: EpsFn, schedule: Schedule) -> Callable[[Tensor, float], tuple[Tensor, Tensor | None]]:
    """(D(y; σ), ε_r − ε) as ``edm_denoiser``, with the difference of the re-noising ε of a paired
    ε-function (CFG++), or None where they are the same."""

    def denoised(y: Tensor, sigma: float) -> tuple[Tensor, Tensor | None]:
        x = y / math.sqrt(1 + sigma * sigma)
        t = schedule.t_from_sigma(sigma).clamp(0.0, 1.0)
        e, e_r = eps_pair(eps_fn, x, times_like(t, x))
        return y - sigma * e, (None if e_r is e else e_r - e)

    return denoised


def sigmas_of(grid: Tensor, schedule: Schedule) -> list[float]:
    """EDM noise levels σ = √((1−ᾱ)/ᾱ) of a grid, with an exact 0 where the grid ends at t = 0."""
    sig = schedule.sigma(grid).tolist()
    sig[-1] = 0.0 if grid[-1] == 0 else sig[-1]
    return sig


def lambdas_of(alpha_bars: list[float]) -> list[float]:
    """λ = log(α/σ) = ½·log(ᾱ/(1−ᾱ)) of each ᾱ, with λ = ∞ where ᾱ = 1 (t = 0)."""
    return [0.5 * (math.log(a) - math.log1p(-a)) if a < 1 else math.inf for a in alpha_bars]


def churned(
    y: Tensor, sigma: float, steps: int, z: Tensor | None, s_churn: float, s_tmin: float, s_tmax: float, s_noise: float
) -> tuple[Tensor, float]:
    """EDM's churn (Karras et al. 2022, Alg. 2): σ̂ = σ(1 + γ), ŷ = y + s_noise·√(σ̂² − σ²)·z, with
    γ = min(s_churn/N, √2 − 1) where s_tmin ≤ σ ≤ s_tmax, else 0. Returns (ŷ, σ̂)."""
    if not (s_churn >= 0 and s_tmin <= s_tmax):
        raise ValueError(
            f"need s_churn ≥ 0 and s_tmin ≤ s_tmax, got s_churn={s_churn}, s_tmin={s_tmin}, s_tmax={s_tmax}"
        )
    gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= sigma <= s_tmax else 0.0
    if gamma == 0:
        return y, sigma
    s_hat = sigma * (1 + gamma)
    return y + s_noise * math.sqrt(s_hat**2 - sigma**2) * z, s_hat


def eps_pair(eps_fn: EpsFn, x: Tensor, t: Tensor, raw: bool = False) -> tuple[Tensor, Tensor]:
    """(ε giving x̂_0, ε to re-noise with): the same tensor unless the ε-function is paired (CFG++), or
    clipped and ``raw`` asks for the network's own ε."""
    pair = getattr(eps_fn, "pair", None)
    if pair is None:
        e = eps_fn(x, t)
        return e, e
    return pair(x, t, raw=raw)


def renoised(x: Tensor, m: Tensor, m_r: Tensor, alpha: float) -> Tensor:
    """x_s as a step re-noising with the second ε sees it: α·x̂_0 + σ·ε_r = x + α·(x̂_0 − x̂_0,r)."""
    return x if m_r is m else x + alpha * (m - m_r)


def report(callback: Callback | None, i: int, grid: Tensor, x: Tensor, denoised: Tensor | Callable[[], Tensor]) -> None:
    """Hand step i to ``callback`` (if any) as ``{i, t, t_next, x, denoised}``; ``denoised`` may be a thunk."""
    if callback is not None:
        callback(
            {
                "i": i,
                "t": grid[i].item(),
                "t_next": grid[i + 1].item(),
                "x": x,
                "denoised": denoised() if callable(denoised) else denoised,
            }
        )
