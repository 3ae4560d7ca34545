r"""Probability-flow ODE (Song et al. 2021): dx = [f − ½g²∇log p]dt = [−½β x + ½β ε/√(1−ᾱ)]dt.

Solved in the coordinates where it is gentlest (Song et al. 2021, DDIM §4.3; Karras et al. 2022):
with σ = √((1−ᾱ)/ᾱ) and y = x/√ᾱ = x·√(1+σ²) the same ODE reads

    dy/dσ = ε(x, t(σ)),

the same trajectories without the 1/√t stiffness of t near 0. Fixed-step methods walk the grid
in σ: ``euler`` (1 NFE a step; it coincides with DDIM η = 0), ``heun`` (2), ``rk4`` (4). A step
into σ = 0 is an Euler step (x̂_0 itself), so NFE = N, 2N−1, 4N−3 on grids ending at t = 0
and N, 2N, 4N otherwise. ``rk45`` is adaptive Dormand–Prince 5(4) in log σ (dy/dlog σ = σ·ε),
with a step size per sample, so a sample does not depend on the rest of its batch; it uses
only the grid's ends (into t = 0: down to t_min, then x̂_0) and reports NFE = 1 + 6·(iterations).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, bcast, report, sigmas_of, times_like

METHODS = ("euler", "heun", "rk4", "rk45")

# Dormand–Prince 5(4): nodes, stage weights, 5th-order weights, and 5th − 4th order weights
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)


@SAMPLERS.register("pf-ode")
def pf_ode(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    method: str = "heun",
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_iterations: int = 10_000,
) -> Tensor:
    """Probability-flow ODE with ``euler``, ``heun``, ``rk4`` or adaptive ``rk45``; deterministic."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if method == "rk45":
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be > 0, got rtol={rtol!r}, atol={atol!r}")
        return _rk45(eps_fn, x, grid, schedule, callback, rtol, atol, max_iterations)
    sig = sigmas_of(grid, schedule)

    def f(y: Tensor, s: float, t: float | Tensor | None = None) -> Tensor:
        t = schedule.t_from_sigma(s) if t is None else t
        return eps_fn(y / math.sqrt(1 + s * s), times_like(t, y))

    y = x * math.sqrt(1 + sig[0] ** 2)
    for i in range(len(sig) - 1):
        s, u = sig[i], sig[i + 1]
        h = u - s
        d = f(y, s, grid[i])
        denoised = y - s * d
        if method == "euler" or u == 0:
            y_new = y + h * d
        elif method == "heun":
            y_new = y + 0.5 * h * (d + f(y + h * d, u, grid[i + 1]))
        else:
            k2 = f(y + 0.5 * h * d, s + 0.5 * h)
            k3 = f(y + 0.5 * h * k2, s + 0.5 * h)
            k4 = f(y + h * k3, u, grid[i + 1])
            y_new = y + (h / 6) * (d + 2 * k2 + 2 * k3 + k4)
        y = y_new
        report(callback, i, grid, y / math.sqrt(1 + u * u), denoised)
    return y / math.sqrt(1 + sig[-1] ** 2)


def _rk45(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    callback: Callback | None,
    rtol: float,
    atol: float,
    max_iterations: int,
) -> Tensor:
    """Dormand–Prince in u = log σ, per-sample step control; a grid ending at t = 0 is solved down to the
    schedule's first trained level t_min (or the grid's last time, if lower), then x̂_0."""
    to_zero = bool(grid[-1] == 0)
    t_end = min(float(grid[-2]), schedule.t_min) if to_zero else grid[-1]
    u0, u1 = schedule.sigma(grid[0]).log().item(), schedule.sigma(t_end).log().item()

    def g(y: Tensor, u: Tensor, rows: Tensor | None = None) -> Tensor:  # dy/du = σ·ε(x, t)
        s = u.exp()
        t = schedule.t_from_log_snr(-2 * u).to(y.device)
        x = y / bcast((1 + s * s).sqrt(), y)
        return bcast(s, y) * (eps_fn(x, t) if rows is None else eps_fn(x, t, rows=rows))

    b = x.shape[0]
    u = torch.full((b,), u0, dtype=torch.float64, device=x.device)
    y = x * math.sqrt(1 + math.exp(2 * u0))
    k1 = g(y, u)
    h = torch.full_like(u, (u1 - u0) / 20)
    done = torch.full((b,), u0 == u1, device=x.device)
    it = 0
    while not bool(done.all()):
        it += 1
        if it > max_iterations:
            raise RuntimeError(
                f"pf-ode rk45 did not reach the end in max_iterations={max_iterations} "
                f"(rtol={rtol}, atol={atol}); loosen the tolerances"
            )
        act = (~done).nonzero().squeeze(1)
        ya, ua, ka = y[act], u[act], k1[act]
        ha = torch.maximum(h[act], u1 - ua)  # never step past the end
        hb = bcast(ha, ya)
        ks = [ka]
        for c, row in zip(_C[1:], _A[1:]):
            yi = ya + hb * sum(w * k for w, k in zip(row, ks) if w != 0.0)
            ks.append(g(yi, ua + c * ha, act))
        y5 = yi  # the last stage is evaluated at the 5th-order solution (FSAL)
        err = hb * sum(w * k for w, k in zip(_E, ks) if w != 0.0)
        scale = atol + rtol * torch.maximum(ya.abs(), y5.abs())
        en = (err / scale).flatten(1).pow(2).mean(1).sqrt().to(torch.float64)
        ok = en <= 1
        acc = act[ok]
        y[acc], u[acc], k1[acc] = y5[ok], ua[ok] + ha[ok], ks[-1][ok]
        done[acc] = (ha[ok] - (u1 - ua[ok])).abs() <= 1e-12 * max(1.0, abs(u1))
        h[act] = ha * (0.9 * en.clamp_min(1e-10) ** -0.2).clamp(0.2, 5.0)
        if callback is not None:
            s = u.exp()
            callback(
                {
                    "i": it - 1,
                    "t": schedule.t_from_log_snr(-2 * u),
                    "t_next": None,
                    "x": y / bcast((1 + s * s).sqrt(), y),
                    "denoised": y - k1,
                }
            )
    if to_zero:
        return y - k1  # an Euler step into σ = 0: y − σ·ε = x̂_0, with ε from the last FSAL stage
    s = u.exp()
    return y / bcast((1 + s * s).sqrt(), y)
