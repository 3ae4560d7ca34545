r"""DPM-Solver-fast and DPM-Solver-12/23 adaptive (Lu et al. 2022; k-diffusion's ``sample_dpm_fast`` / ``_adaptive``).

In y = x/√ᾱ, σ = √((1−ᾱ)/ᾱ), λ = −log σ and ε(y, λ) = (y − D(y; σ))/σ, the singlestep DPM-Solver-k steps from
λ to λ + h (stages at λ + r·h):

    k = 1:  y_u = y − σ_u·(e^h − 1)·ε
    k = 2:  u₁ = y − σ_{s₁}·(e^{r₁h} − 1)·ε;  y_u = y − σ_u·(e^h − 1)·ε − σ_u/(2r₁)·(e^h − 1)·(ε(u₁) − ε)
    k = 3:  u₂ = y − σ_{s₂}·(e^{r₂h} − 1)·ε − σ_{s₂}·(r₂/r₁)·((e^{r₂h} − 1)/(r₂h) − 1)·(ε(u₁) − ε);
            y_u = y − σ_u·(e^h − 1)·ε − σ_u/r₂·((e^h − 1)/h − 1)·(ε(u₂) − ε)          (r₁ = ⅓, r₂ = ⅔)

``dpm-fast`` spends the grid's N evaluations on ⌊N/3⌋ + 1 equal steps in λ (orders 3, …, 3 and N mod 3, or 3, …,
3, 2, 1), from the grid's first σ to its last positive one; ``dpm-adaptive`` steps from one to the other with an
embedded pair (1 in 2, or 2 with r₁ = ⅓ in 3), each sample's step size set by a PID controller on its scaled
error ‖(y_low − y_high)/max(atol, rtol·max(|y_low|, |y_prev|))‖/√(numel) (k-diffusion's on the whole batch's).
Both stop at that last
positive σ with no step into σ = 0, as k-diffusion and ComfyUI do; η > 0 adds ancestral noise. NFE: N, adaptive.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..schedules import Schedule
from ..tensors import bcast
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, sigmas_of


class _Eps:
    """ε(y, λ) = ε at x = y/√(1 + σ²), t(λ), σ = e^{−λ}: per sample λ [B], for the batch or the given rows of it."""

    def __init__(self, eps_fn: EpsFn, schedule: Schedule) -> None:
        self.eps_fn, self.schedule = eps_fn, schedule

    def __call__(self, y: Tensor, lam: Tensor, rows: Tensor | None = None) -> Tensor:
        t = self.schedule.t_from_log_snr(2 * lam).clamp(0.0, 1.0).to(y.device)
        x = y / bcast((1 + torch.exp(-2 * lam)).sqrt(), y)
        return self.eps_fn(x, t) if rows is None else self.eps_fn(x, t, rows=rows)


def _step(
    eps: _Eps,
    y: Tensor,
    s: Tensor,
    u: Tensor,
    order: int,
    e0: Tensor,
    r1: float | None = None,
    e1: Tensor | None = None,
    rows: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Singlestep DPM-Solver-``order`` from λ = s to u (per sample), ε at s given (``e0``); returns y_u and ε at
    the first stage s + r₁·h, which a step of the same r₁ may pass back as ``e1`` (the embedded pair shares it)."""
    h = u - s
    c = lambda v: bcast(v, y)  # noqa: E731
    out = y - c(torch.exp(-u) * torch.expm1(h)) * e0
    if order == 1:
        return out, None
    r1 = (0.5 if order == 2 else 1 / 3) if r1 is None else r1
    s1 = s + r1 * h
    e1 = eps(y - c(torch.exp(-s1) * torch.expm1(r1 * h)) * e0, s1, rows) if e1 is None else e1
    if order == 2:
        return out - c(torch.exp(-u) / (2 * r1) * torch.expm1(h)) * (e1 - e0), e1
    r2 = 2 / 3
    s2 = s + r2 * h
    phi = torch.expm1(r2 * h)
    u2 = y - c(torch.exp(-s2) * phi) * e0 - c(torch.exp(-s2) * (r2 / r1) * (phi / (r2 * h) - 1)) * (e1 - e0)
    return out - c(torch.exp(-u) / r2 * (torch.expm1(h) / h - 1)) * (eps(u2, s2, rows) - e0), e1


def _ends(grid: Tensor, schedule: Schedule, name: str) -> tuple[float, float]:
    """λ at the grid's first σ and at its last positive one."""
    sig = [s for s in sigmas_of(grid, schedule) if s > 0]
    if len(sig) < 2:
        raise ValueError(f"{name} needs a grid with two positive noise levels, got σ = {sig}")
    return -math.log(sig[0]), -math.log(sig[-1])


def _ancestral(s: Tensor, u: Tensor, end: float, eta: float) -> tuple[Tensor, Tensor]:
    """(λ the step solves to, σ of the noise added after it), per sample: σ_down's λ (at most ``end``) and the
    rest of σ_u (``ancestral_step``'s σ_down)."""
    if not eta:
        return u, torch.zeros_like(u)
    sig, nxt = torch.exp(-s), torch.exp(-u)
    up = torch.minimum(nxt, eta * (nxt**2 * (sig**2 - nxt**2) / sig**2).sqrt())
    u_ = (-torch.log((nxt**2 - up**2).sqrt())).clamp(max=end)
    return u_, (torch.exp(-2 * u) - torch.exp(-2 * u_)).clamp_min(0).sqrt()


def _check(eta: float, s_noise: float) -> None:
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    if not s_noise >= 0:
        raise ValueError(f"s_noise must be ≥ 0, got {s_noise!r}")


def _report(callback: Callback | None, i: int, schedule: Schedule, s: Tensor, u: Tensor, y: Tensor, d: Tensor) -> None:
    """Hand a step from λ = s to u (per sample) to ``callback``, x in the VP coordinates as every sampler's."""
    if callback is not None:
        t = schedule.t_from_log_snr(2 * torch.stack([s, u])).clamp(0, 1)
        callback({"i": i, "t": t[0], "t_next": t[1], "x": y / bcast((1 + torch.exp(-2 * u)).sqrt(), y), "denoised": d})


@SAMPLERS.register("dpm-fast", spacing="karras")
def dpm_fast(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-fast: the N evaluations on ⌊N/3⌋ + 1 equal λ steps of orders 3, …, 2, 1; ends at the last σ > 0."""
    _check(eta, s_noise)
    start, end = _ends(grid, schedule, "dpm-fast")
    nfe = grid.numel() - 1
    m = nfe // 3 + 1
    lams = [start + (end - start) * k / m for k in range(m)] + [end]
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    eps = _Eps(eps_fn, schedule)
    y = x * math.sqrt(1 + math.exp(-2 * start))
    for i, order in enumerate(orders):
        s, u = (torch.full((x.shape[0],), v, dtype=torch.float64) for v in lams[i : i + 2])
        u_, up = _ancestral(s, u, end, eta)
        e0 = eps(y, s)
        d0 = y - bcast(torch.exp(-s), y) * e0
        y = _step(eps, y, s, u_, order, e0)[0]
        if eta:
            y = y + bcast(up * s_noise, y) * noise_sampler(y)
        _report(callback, i, schedule, s, u, y, d0)
    return y


@SAMPLERS.register("dpm-adaptive", spacing="karras", adaptive=True)
def dpm_adaptive(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    eta: float = 0.0,
    s_noise: float = 1.0,
    max_iterations: int = 10_000,
) -> Tensor:
    """DPM-Solver-12 (order 2) or -23 (order 3), PID step-size control per sample, between the grid's ends;
    NFE adaptive (each sample's is its own: k-diffusion controls the whole batch as one system). With η > 0 the
    noise is drawn for the whole batch at every accepted step of any sample, so a sample then depends on its batch."""
    if order not in (2, 3):
        raise ValueError(f"order must be 2 or 3, got {order!r}")
    if not (rtol > 0 and atol > 0 and h_init > 0):
        raise ValueError(f"rtol, atol and h_init must be > 0, got {rtol!r}, {atol!r}, {h_init!r}")
    _check(eta, s_noise)
    start, end = _ends(grid, schedule, "dpm-adaptive")
    eps = _Eps(eps_fn, schedule)
    b = x.shape[0]
    y = x * math.sqrt(1 + math.exp(-2 * start))
    y_prev = y.clone()
    s = torch.full((b,), start, dtype=torch.float64, device=x.device)
    h = torch.full((b,), h_init, dtype=torch.float64, device=x.device)
    k = 1.5 if eta else order
    b1, b2, b3 = (pcoeff + icoeff + dcoeff) / k, -(pcoeff + 2 * dcoeff) / k, dcoeff / k
    # 1/error of the latest step, the last accepted and the one before it, per sample
    errs = torch.full((3, b), math.nan, dtype=torch.float64, device=x.device)
    denoised = torch.zeros_like(y)  # each sample's x̂_0 at its latest step's start, for the callback
    accepted = 0
    for _ in range(max_iterations):
        act = (s < end - 1e-5).nonzero().squeeze(1)
        if act.numel() == 0:
            return y
        ya, sa = y[act], s[act]
        u = (sa + h[act]).clamp(max=end)
        u_, up = _ancestral(sa, u, end, eta)
        e0 = eps(ya, sa, act)
        denoised[act] = ya - bcast(torch.exp(-sa), ya) * e0
        low, e1 = _step(eps, ya, sa, u_, order - 1, e0, None if order == 2 else 1 / 3, None, act)
        high = _step(eps, ya, sa, u_, order, e0, None, e1, act)[0]
        delta = (rtol * torch.maximum(low.abs(), y_prev[act].abs())).clamp_min(atol)
        error = ((low - high) / delta).flatten(1).square().mean(1).sqrt().double()
        inv = 1 / (error + 1e-8)
        fresh = errs[0, act].isnan()
        errs[:, act] = torch.where(fresh, inv, errs[:, act])
        errs[0, act] = inv
        e = errs[:, act]
        factor = 1 + torch.atan(e[0] ** b1 * e[1] ** b2 * e[2] ** b3 - 1)
        ok = factor >= accept_safety
        acc = act[ok]
        if acc.numel():
            errs[2, acc], errs[1, acc] = errs[1, acc], errs[0, acc]
            new = high[ok]
            if eta:  # drawn for the whole batch, so that each sample's generator is asked as the batch's are
                new = new + bcast(up[ok] * s_noise, new) * noise_sampler(y)[acc]
            before = s.clone()
            y_prev[acc], y[acc], s[acc] = low[ok], new, u[ok]
            _report(callback, accepted, schedule, before, s, y, denoised)  # the whole batch, each at its own time
            accepted += 1
        h[act] = h[act] * factor
    raise RuntimeError(f"dpm-adaptive did not reach the end in max_iterations={max_iterations} steps")
