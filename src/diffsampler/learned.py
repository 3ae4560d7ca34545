r"""Learned solvers: a multistep solver whose few dozen parameters are fitted to a model's own ODE solutions.

The bases are DPM-Solver++(3M) (Lu et al. 2022) and UniPC-3 with its corrector (Zhao et al. 2023), both in
λ = log(α/σ) on data predictions m_i = x̂_0(x_i, t_i), and iPNDM-4 (Zhang & Chen 2023) on ε in y = x/α:

    x_{i+1} = (the base's update from x_i, m_i, m_{i−1}, …)  +  α_{i+1}·Σ_j Δ_{i,j}·m_{i−j}

(iPNDM: y_{i+1} = y_i + (σ̃_{i+1} − σ̃_i)·Σ_j (w_j + Δ_{i,j})·ε_{i−j}, σ̃ = σ/α; UniPC adds the step's correction
to its corrected x_{i+1} too), and the parameters θ, as the learned-solver papers choose them (LD3, Tong et al.
2024; S4S, Frankel et al. 2025):

- the N times, monotone by construction: with w = softmax(z) (N logits), λ_k = λ_0 + (λ_end − λ_0)·Σ_{j≤k} w_j
  for k < N, λ_end the schedule's last trained level and t_N = 0; z starts from a named spacing's grid;
- per-step offsets δ_i of the network's input: it is asked at λ_i + δ_i, the step's coefficients keep λ_i;
- per-step corrections Δ_{i,j} (j < 3) to the coefficients of the last three model outputs.

δ = Δ = 0 and z from a grid make the solver its base sampler on that grid exactly. Training draws pairs (x_T, x_0)
from a high-NFE solve of the same model (the teacher) on seeds apart from any scoring seed, backpropagates the mean
square distance (or a feature distance) of the unrolled N-step solve to x_0, fits θ with Adam, and keeps the θ
of least distance on the held-out half of the pairs (stopping when it has not improved for ``patience`` epochs).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .backbones import as_backbone
from .model_fn import ModelFn, take_rows
from .samplers import SAMPLERS, Callback, EpsFn, NoiseSampler
from .samplers.base import noise_from, report
from .samplers.pndm import AB_WEIGHTS
from .sampling import generators, sample, start_from, time_grid
from .schedules import SCHEDULES, SPACINGS, Schedule, check_grid
from .tensors import sqrt_psd
from .tuning import made_for, read_format_file, refuse, schedule_fingerprint, write_format_file

__all__ = ["LearnedSolver", "learn_solver", "load_solver", "solve", "BASES"]

FORMAT = "diffsampler-solver/1"
BASES = {"dpm-solver++": 3, "unipc": 3, "ipndm": 4, "dpm-solver++-sde": 2}  # base → its multistep order
STOCHASTIC = ("dpm-solver++-sde",)  # bases that draw noise, with a learned η per step, fitted to a distribution
CORRECTED = 3  # data predictions each step's correction reaches back over


def _lambdas(logits: Tensor, lam0: float, lam_end: float) -> Tensor:
    """λ_0 … λ_{N−1}: λ_0 and the first N − 1 cumulative softmax shares of [λ_0, λ_end]."""
    w = torch.softmax(logits.double(), 0)
    return torch.cat([logits.new_full((1,), lam0, dtype=torch.float64), lam0 + (lam_end - lam0) * w.cumsum(0)[:-1]])


def _logits_of(grid: Tensor, schedule: Schedule, lam_end: float) -> list[float]:
    """The logits whose times are ``grid``'s (a grid of N steps that ends at t = 0)."""
    lam = (0.5 * schedule.log_snr(grid[:-1])).tolist() + [lam_end]
    shares = [max(b - a, 1e-9) for a, b in zip(lam, lam[1:])]
    return [math.log(s / sum(shares)) for s in shares]


def _unipc_rhos(rs: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """UniPC's (ρ_k, B(h)) of variant bh2 for nodes r_k (``samplers.unipc.unipc_rhos``), differentiable in r and h."""
    z = -h
    b_h = torch.expm1(z)
    if rs.numel() == 1:
        return rs.new_full((1,), 0.5), b_h
    b, z_phi, factorial = [], torch.expm1(z) / z - 1, 1
    for j in range(1, rs.numel() + 1):
        b.append(z_phi * factorial / b_h)
        factorial *= j + 1
        z_phi = z_phi / z - 1 / factorial
    return torch.linalg.solve(torch.linalg.vander(rs).T, torch.stack(b)), b_h


def _unipc_step(
    x: Tensor, lam: Tensor, alpha: Tensor, sigma: Tensor, s: int, u: int, ms: list[Tensor], nodes: list[int]
) -> Tensor:
    """UniPC's update (bh2) from λ_s to λ_u with m₀ = ms[s] and the other predictions ms[k], k in ``nodes``."""
    h = lam[u] - lam[s]
    out = (sigma[u] / sigma[s]).to(x.dtype) * x - (alpha[u] * torch.expm1(-h)).to(x.dtype) * ms[s]
    if nodes:
        rs = torch.stack([(lam[k] - lam[s]) / h for k in nodes])
        rhos, b_h = _unipc_rhos(rs, h)
        for rho, r, k in zip(rhos, rs, nodes):
            out = out - (alpha[u] * b_h * rho / r).to(x.dtype) * (ms[k] - ms[s])
    return out


def solve(
    eps_fn: EpsFn,
    x: Tensor,
    schedule: Schedule,
    lam: Tensor,
    offsets: Tensor,
    corrections: Tensor,
    base: str = "dpm-solver++",
    callback: Callback | None = None,
    etas: Tensor | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """The learned ``base`` solver from x at λ_0 through λ_1 … λ_{N−1} to t = 0, differentiable in x and θ.

    Orders as the base sampler's with ``lower_order_final``: the first steps take what their history allows,
    and the last ones drop (DPM-Solver++(3M) below 15 steps to 1 and ≤ 2, UniPC-3 to min(3, N − i); iPNDM
    keeps order min(4, i + 1)). The step into t = 0 is x = m_{N−1} for the data-prediction bases. The
    stochastic base draws its noise from ``noise_sampler`` with stochasticity ``etas`` (η_i ≥ 0 per step)."""
    n, order = lam.numel(), BASES[base]
    ab = torch.sigmoid(2 * lam)
    alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
    t_net = schedule.t_from_log_snr(2 * (lam + offsets)).clamp(0.0, 1.0)
    grid = torch.cat([schedule.t_from_log_snr(2 * lam.detach()).clamp(0.0, 1.0), lam.new_zeros(1)])
    ms: list[Tensor] = []  # data predictions m_0 … m_i (iPNDM: the ε's)
    x_prev, p_prev = x, 0
    for i in range(n):
        t = t_net[i].to(x.device).expand(x.shape[0])
        e = eps_fn(x, t)
        m = (x - sigma[i].to(x.dtype) * e) / alpha[i].to(x.dtype)
        last = i == n - 1
        if base == "unipc" and 0 < i < n - 1:  # UniC on the step just taken, with m_i (unused before t = 0)
            x = _unipc_step(x_prev, lam, alpha, sigma, i - 1, i, ms + [m], [i - 1 - k for k in range(1, p_prev)] + [i])
            x = x + _correction(corrections[i - 1], ms, alpha[i], x.dtype)
        ms.append(e if base == "ipndm" else m)
        if base == "ipndm":  # in y = x/α and σ̃ = σ/α, y ← y + (σ̃_{i+1} − σ̃_i)·Σ_j w_j·ε_{i−j}
            s_i, s_u = sigma[i] / alpha[i], (lam.new_zeros(()) if last else sigma[i + 1] / alpha[i + 1])
            k = min(order, i + 1)
            d = sum(w * mj for w, mj in zip(AB_WEIGHTS[k - 1], ms[::-1]))
            x_new = x / alpha[i].to(x.dtype) + (s_u - s_i).to(x.dtype) * (d + _combine(corrections[i], ms))
            x_new = x_new if last else x_new * alpha[i + 1].to(x.dtype)
        elif last:
            x_new = m + _correction(corrections[i], ms, alpha.new_ones(()), x.dtype)
        elif base == "unipc":
            p = min(order, i + 1, n - i)
            x_new = _unipc_step(x, lam, alpha, sigma, i, i + 1, ms, [i - k for k in range(1, p)])
            x_new = x_new + _correction(corrections[i], ms, alpha[i + 1], x.dtype)
            x_prev, p_prev = x, p
        elif base == "dpm-solver++-sde":
            x_new = _sde_step(x, lam, alpha, sigma, i, ms, etas[i], noise_sampler)
            x_new = x_new + _correction(corrections[i], ms, alpha[i + 1], x.dtype)
        else:
            x_new = _dpm_step(x, lam, alpha, sigma, i, ms, min(order, i + 1, n - i if n < 15 else order))
            x_new = x_new + _correction(corrections[i], ms, alpha[i + 1], x.dtype)
        report(callback, i, grid, x_new, m)
        x = x_new
    return x


def _combine(delta: Tensor, ms: list[Tensor]) -> Tensor | float:
    """Σ_j Δ_j·m_{i−j} over the newest ``CORRECTED`` entries of ``ms`` (newest last)."""
    out: Tensor | float = 0.0
    for j, mj in enumerate(ms[::-1][:CORRECTED]):
        out = out + delta[j].to(mj.dtype) * mj
    return out


def _correction(delta: Tensor, ms: list[Tensor], a_u: Tensor, dtype: torch.dtype) -> Tensor | float:
    """α_u·Σ_j Δ_j·m_{i−j}: the learned correction of a data-prediction step into λ_u."""
    return a_u.to(dtype) * _combine(delta, ms)


def _dpm_step(x: Tensor, lam: Tensor, alpha: Tensor, sigma: Tensor, i: int, ms: list[Tensor], k: int) -> Tensor:
    """DPM-Solver++(kM)'s multistep update from λ_i to λ_{i+1} with m_i = ms[-1] and its k − 1 predecessors."""
    h = lam[i + 1] - lam[i]
    phi, a_u, m = torch.expm1(-h), alpha[i + 1], ms[-1]
    out = (sigma[i + 1] / sigma[i]).to(x.dtype) * x - (a_u * phi).to(x.dtype) * m
    if k >= 2:
        h0 = lam[i] - lam[i - 1]
        d1 = (m - ms[-2]) * (h / h0).to(x.dtype)
        if k == 2:
            return out - (0.5 * a_u * phi).to(x.dtype) * d1
        r0, r1 = h0 / h, (lam[i - 1] - lam[i - 2]) / h
        d2 = (d1 - (ms[-2] - ms[-3]) / r1.to(x.dtype)) / (r0 + r1).to(x.dtype)
        out = out + (a_u * (phi / h + 1)).to(x.dtype) * (d1 + r0.to(x.dtype) * d2)
        out = out - (a_u * ((phi + h) / h**2 - 0.5)).to(x.dtype) * d2
    return out


def _sde_step(
    x: Tensor, lam: Tensor, alpha: Tensor, sigma: Tensor, i: int, ms: list[Tensor], eta: Tensor, noise: NoiseSampler
) -> Tensor:
    """DPM-Solver++(2M) SDE's midpoint step (``samplers.dpm_solver_sde``) from λ_i to λ_{i+1}, stochasticity η.

    In y = x/α: y_u = e^{−(1+η)h}·y + (1 − e^{−(1+η)h})·(m_i + ½(m_i − m_{i−1})·h/h_{i−1}) + σ̃_u·√(1 − e^{−2ηh})·z,
    σ̃ = σ/α, h = λ_{i+1} − λ_i; then x_u = α_u·y_u."""
    h = lam[i + 1] - lam[i]
    h_eta = h * (1 + eta)
    c = -torch.expm1(-h_eta)
    y = (torch.exp(-h_eta) / alpha[i]).to(x.dtype) * x + c.to(x.dtype) * ms[-1]
    if i > 0:
        y = y + (0.5 * c * h / (lam[i] - lam[i - 1])).to(x.dtype) * (ms[-1] - ms[-2])
    y = y + (sigma[i + 1] / alpha[i + 1] * (-torch.expm1(-2 * eta * h)).sqrt()).to(x.dtype) * noise(y)
    return alpha[i + 1].to(x.dtype) * y


@dataclass
class LearnedSolver:
    """A learned solver with what it was learned for and how; ``save`` and ``load_solver`` keep it as JSON.

    Called as a sampler (``solver(eps_fn, x, grid, schedule, …)``) on the grid ``times(schedule)`` gives;
    ``ds.sample(model, solver=…)`` does both."""

    base: str
    nfe: int
    logits: list[float]
    offsets: list[float]
    corrections: list[list[float]]
    lam0: float
    lam_end: float
    model: str
    schedule: list[float]
    init_spacing: str
    teacher: dict[str, Any]
    seeds: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    train_error: float | None = None
    heldout_error: float | None = None
    init_heldout_error: float | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    etas: list[float] = field(default_factory=list)  # the stochastic bases' η per step; empty for the others

    @property
    def __name__(self) -> str:  # what ``sample`` names the sampler in its results
        return f"learned-{self.base}"

    def parameters(self, requires_grad: bool = False) -> dict[str, Tensor]:
        """θ as float64 tensors: ``logits`` [N], ``offsets`` [N], ``corrections`` [N, 3]; a stochastic base also
        ``noise`` [N], ρ with η = softplus(ρ) (η ≥ 0 by construction)."""
        theta = {k: torch.tensor(getattr(self, k), dtype=torch.float64) for k in ("logits", "offsets", "corrections")}
        if self.base in STOCHASTIC:
            eta = torch.tensor(self.etas, dtype=torch.float64).clamp_min(1e-12)
            theta["noise"] = eta + torch.log(-torch.expm1(-eta))  # softplus⁻¹
        return {k: v.requires_grad_(requires_grad) for k, v in theta.items()}

    def set_parameters(self, params: dict[str, Tensor]) -> None:
        for k, v in params.items():
            if k == "noise":
                self.etas = torch.nn.functional.softplus(v.detach()).cpu().tolist()
            else:
                setattr(self, k, v.detach().cpu().tolist())

    def lambdas(self) -> Tensor:
        return _lambdas(torch.tensor(self.logits, dtype=torch.float64), self.lam0, self.lam_end)

    def times(self, schedule: Schedule) -> Tensor:
        """The N + 1 times t_0 > … > t_{N−1} > t_N = 0 the solver steps through."""
        t = schedule.t_from_log_snr(2 * self.lambdas()).clamp(0.0, 1.0)
        return check_grid(torch.cat([t, t.new_zeros(1)]))

    def __call__(
        self,
        eps_fn: EpsFn,
        x: Tensor,
        grid: Tensor,
        schedule: Schedule,
        *,
        noise_sampler: NoiseSampler | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        if grid.numel() != self.nfe + 1:
            raise ValueError(
                f"a learned {self.nfe}-step solver walks its own grid, not one of {grid.numel() - 1} steps"
            )
        p = self.parameters()
        etas = torch.tensor(self.etas, dtype=torch.float64) if self.base in STOCHASTIC else None
        if etas is not None and noise_sampler is None:
            raise ValueError(f"the learned {self.base} solver draws noise: pass noise_sampler")
        return solve(
            eps_fn,
            x,
            schedule,
            self.lambdas(),
            p["offsets"],
            p["corrections"],
            self.base,
            callback,
            etas,
            noise_sampler,
        )

    def check(self, schedule: Schedule, model: str | None = None, force: bool = False) -> None:
        """A ValueError (a warning with ``force``) when the solver was learned for another schedule or model."""
        refuse("the solver was learned for", made_for(self.schedule, self.model, schedule, model), force)

    def save(self, path: str | Path) -> None:
        """Write the JSON file, whole or not at all."""
        write_format_file(path, FORMAT, asdict(self))


def load_solver(path: str | Path) -> LearnedSolver:
    """Read a solver file written by ``learn_solver`` (``diffsampler learn-solver``)."""
    data = read_format_file(path, "solver", FORMAT)
    try:
        solver = LearnedSolver(**data)
        if solver.base not in BASES:
            raise ValueError(f"unknown base {solver.base!r}; known: {', '.join(BASES)}")
        p = solver.parameters()
        n = solver.nfe
        if p["logits"].shape != (n,) or p["offsets"].shape != (n,) or p["corrections"].shape != (n, CORRECTED):
            raise ValueError(f"parameters do not fit {n} steps")
        if solver.base in STOCHASTIC and (p["noise"].shape != (n,) or min(solver.etas) < 0):
            raise ValueError(f"etas must be {n} values ≥ 0")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"solver file {str(path)!r}: {exc}") from None
    return solver


def initial_solver(
    schedule: Schedule, nfe: int, spacing: str, base: str = "dpm-solver++", model: str = "model"
) -> LearnedSolver:
    """The solver that is its base on ``spacing``'s N-step grid: where training starts."""
    if base not in BASES:
        raise ValueError(f"unknown base {base!r}; known: {', '.join(BASES)}")
    if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 2:
        raise ValueError(f"nfe must be an integer ≥ 2 (a learned solver takes one step per evaluation), got {nfe!r}")
    grid = time_grid(base, schedule, nfe, spacing)
    lam0 = 0.5 * float(schedule.log_snr(grid[0]))
    if not math.isfinite(lam0):
        raise ValueError("a learned solver starts below zero SNR: the schedule's ᾱ(1) must be > 0")
    lam_end = 0.5 * float(schedule.log_snr(torch.tensor(schedule.t_min, dtype=torch.float64)))
    return LearnedSolver(
        base=base,
        nfe=nfe,
        logits=_logits_of(grid, schedule, lam_end),
        offsets=[0.0] * nfe,
        corrections=[[0.0] * CORRECTED for _ in range(nfe)],
        lam0=lam0,
        lam_end=lam_end,
        model=model,
        schedule=schedule_fingerprint(schedule),
        init_spacing=spacing,
        teacher={},
        seeds={},
        etas=[1.0] * nfe if base in STOCHASTIC else [],
    )


SCOUTS = 64  # training pairs on which spacing="best" measures each named spacing


def _distance(x: Tensor, ref: Tensor) -> Tensor:
    """Per-sample Euclidean distance ‖x − x_ref‖ in float64."""
    return (x - ref).reshape(x.shape[0], -1).double().norm(dim=1)


def _solve_rows(
    solver_params: dict[str, Tensor],
    solver: LearnedSolver,
    backbone: Any,
    sched: Schedule,
    x_T: Tensor,
    cond: dict[str, Any],
    guidance: Any,
    rows: Tensor,
    n: int,
    noise: NoiseSampler | None = None,
) -> Tensor:
    fn = ModelFn(backbone, sched, batch=len(rows), cond=take_rows(cond, rows, n), guidance=guidance)
    p = solver_params
    lam = _lambdas(p["logits"], solver.lam0, solver.lam_end)
    etas = torch.nn.functional.softplus(p["noise"]) if "noise" in p else None
    return solve(fn, x_T[rows], sched, lam, p["offsets"], p["corrections"], solver.base, None, etas, noise)


def pool_stats(f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(μ, Σ^{1/2}, tr Σ) of feature rows f in float64: the target of ``frechet_to``."""
    f = f.reshape(f.shape[0], -1).double()
    c = f - f.mean(0)
    sigma = c.T @ c / (f.shape[0] - 1)
    return f.mean(0), sqrt_psd(sigma), sigma.trace()


def frechet_to(f: Tensor, target: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Fréchet distance of the rows of f to N(μ, Σ), differentiable in f:
    ‖μ_f − μ‖² + tr Σ_f + tr Σ − 2·‖Σ^{1/2}·Cᵀ‖_* / √(B − 1), C the centred rows (Σ_f = CᵀC/(B − 1))."""
    mu, root, trace = target
    f = f.reshape(f.shape[0], -1).double()
    m = f.mean(0)
    c = f - m
    b = f.shape[0] - 1
    return (m - mu).square().sum() + c.square().sum() / b + trace - 2 * torch.linalg.svdvals(root @ c.T).sum() / b**0.5


def _heldout(
    solver: LearnedSolver,
    backbone: Any,
    sched: Schedule,
    x_T: Tensor,
    x0: Tensor,
    cond: dict[str, Any],
    guidance: Any,
    rows: Tensor,
    n: int,
    batch: int,
    params: dict[str, Tensor] | None = None,
    target: tuple[Callable[[Tensor], Tensor], tuple[Tensor, Tensor, Tensor], int] | None = None,
) -> float:
    """Mean distance to the teacher over ``rows``, without gradients; with ``target`` (features, their pool's
    statistics, a noise seed), the Fréchet distance of the rows' samples' features to the pool's."""
    p = params if params is not None else solver.parameters()
    noise = noise_from(torch.Generator().manual_seed(target[2])) if target is not None else None
    with torch.no_grad():
        out = [_solve_rows(p, solver, backbone, sched, x_T, cond, guidance, r, n, noise) for r in rows.split(batch)]
        if target is not None:
            return float(frechet_to(torch.cat([target[0](o) for o in out]), target[1]))
        d = [_distance(o, x0[r]) for o, r in zip(out, rows.split(batch))]
    return float(torch.cat(d).mean())


def pair_defaults(base: str) -> tuple[int, int, int]:
    """(pairs, batch size, epochs) by default: a distribution needs more samples than pairs do, and each
    epoch over them costs more."""
    return (1024, 128, 20) if base in STOCHASTIC else (256, 32, 30)


def learn_solver(
    model: Any,
    *,
    nfe: int = 4,
    base: str = "dpm-solver++",
    schedule: str | Schedule | None = None,
    spacing: str = "best",
    cond: dict[str, Any] | None = None,
    guidance: Any = None,
    teacher: str | None = None,
    teacher_steps: int = 50,
    teacher_options: dict[str, Any] | None = None,
    num_pairs: int | None = None,
    batch_size: int | None = None,
    epochs: int | None = None,
    lr: float = 0.03,
    patience: int = 10,
    seed: int = 2_000_003,
    shape: tuple[int, ...] | None = None,
    model_name: str = "model",
    features: Callable[[Tensor], Tensor] | None = None,
    checkpoint: str | Path | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> LearnedSolver:
    """Fit a learned ``nfe``-step solver to ``teacher``'s solutions of ``model`` (see the module's docstring).

    ``cond`` holds per-pair conditioning (tensors of ``num_pairs`` rows, or one value for all); ``guidance`` and
    ``cond`` reach the teacher and the student alike. ``spacing`` is the grid the times start from, or ``"best"``:
    of every registered spacing that makes the grid with its defaults, the one whose base solve lies closest to
    the teacher on 64 training pairs. ``seed`` draws the
    pairs' x_T: keep it apart from the seeds a solver is scored on. ``features`` replaces the distance by one
    between features (e.g. a classifier's). ``checkpoint`` (a .safetensors path) keeps the pairs and every
    epoch's state, so that a run stopped half-way resumes there. ``progress`` is called after every epoch.

    A stochastic base (``dpm-solver++-sde``) also learns its η per step, from a stochastic teacher
    (DPM-Solver++(2M) SDE by default, its noise seeded by ``seed + 1``): one x_T gives many x_0, so it fits no
    pairs but a distribution, the Fréchet distance of a batch's ``features`` (default: the samples themselves)
    to those of the teacher's samples (``frechet_to``); held-out error is that distance on the other half.
    Its defaults are 1024 pairs, batches of 128, 20 epochs and the base's own spacing for ``"best"``.
    """
    start = time.perf_counter()
    backbone = as_backbone(model)
    sched = SCHEDULES.get(schedule)() if isinstance(schedule, str) else (schedule or backbone.schedule)
    if sched is None:
        raise ValueError("no schedule: pass schedule= or a backbone that brings its own")
    shape = tuple(shape or backbone.sample_shape or ())
    if not shape:
        raise ValueError("pass shape=: the model does not say the shape of one sample")
    stochastic = base in STOCHASTIC
    teacher = teacher or ("dpm-solver++-sde" if stochastic else "dpm-solver++")
    num_pairs = num_pairs if num_pairs is not None else pair_defaults(base)[0]
    batch_size = batch_size if batch_size is not None else pair_defaults(base)[1]
    epochs = epochs if epochs is not None else pair_defaults(base)[2]
    if stochastic and spacing == "best":
        spacing = SAMPLERS.meta(base)["spacing"]
    for name, value, low in (
        ("num_pairs", num_pairs, 4),
        ("batch_size", batch_size, 1),
        ("epochs", epochs, 1),
        ("teacher_steps", teacher_steps, 1),
        ("patience", patience, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
    SAMPLERS.get(teacher)
    teacher_options = dict(teacher_options or ({"order": 3} if teacher == "dpm-solver++" else {}))
    cond = dict(cond or {})
    config = {
        "model": model_name,
        "nfe": nfe,
        "base": base,
        "schedule": schedule_fingerprint(sched),
        "teacher": teacher,
        "teacher_steps": teacher_steps,
        "teacher_options": teacher_options,
        "num_pairs": num_pairs,
        "seed": seed,
        "spacing": spacing,
        "shape": list(shape),
    }
    saved = _resume(checkpoint, config)
    n, device = num_pairs, backbone.device

    if saved is not None:
        x_T, x0 = saved["x_T"].to(device), saved["x0"].to(device)
    else:
        gens = generators(seed, n)
        t0 = time_grid(teacher, sched, teacher_steps)[0]
        x_T = start_from(torch.stack([torch.randn(shape, generator=g) for g in gens]), sched, t0).to(device)
        parts = []
        for rows in torch.arange(n).split(max(batch_size, 64)):
            parts.append(
                sample(
                    backbone,
                    schedule=sched,
                    sampler=teacher,
                    steps=teacher_steps,
                    x_T=x_T[rows],
                    cond=take_rows(cond, rows, n),
                    guidance=guidance,
                    generator=generators(seed + 1, len(rows), start=int(rows[0])),  # a stochastic teacher's noise
                    **teacher_options,
                )
            )
        x0 = torch.cat(parts)
        if checkpoint is not None:
            _save_checkpoint(checkpoint, config, {"x_T": x_T, "x0": x0}, {})
    train, held = torch.arange(0, n, 2), torch.arange(1, n, 2)
    targets: dict[str, Any] = {"train": None, "held": None}
    if stochastic:  # the teacher's samples' feature statistics, one pool per half; noise seeds apart from the pairs'
        feats = features or (lambda x: x)
        with torch.no_grad():
            for k, (rows, noise_seed) in {"train": (train, seed + 3), "held": (held, seed + 2)}.items():
                pool = torch.cat([feats(x0[r]) for r in rows.split(max(batch_size, 64))])
                targets[k] = (feats, pool_stats(pool), noise_seed)

    inits: dict[str, float] = {}
    for s in [spacing] if spacing != "best" else SPACINGS.names():
        try:
            candidate = initial_solver(sched, nfe, s, base, model_name)
        except (ValueError, TypeError, KeyError):  # a spacing that needs options (ays for another model), or
            if spacing != "best":  # cannot make this many distinct steps: not a candidate
                raise
            continue
        inits[s] = _heldout(
            candidate,
            backbone,
            sched,
            x_T,
            x0,
            cond,
            guidance,
            train[: len(train) if stochastic else SCOUTS],
            n,
            batch_size,
            target=targets["train"],
        )
    chosen = min(inits, key=inits.get)
    solver = initial_solver(sched, nfe, chosen, base, model_name)

    params = solver.parameters(requires_grad=True)
    opt = torch.optim.Adam(params.values(), lr=lr)
    steps_per_epoch = -(-len(train) // batch_size)

    # cosine decay to zero over the run: large first steps, settled parameters at the end
    def factor(k: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(k / (epochs * steps_per_epoch), 1.0)))

    decay = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    history: list[dict[str, float]] = []
    best = {k: v.detach().clone() for k, v in params.items()}
    init_held = _heldout(solver, backbone, sched, x_T, x0, cond, guidance, held, n, batch_size, target=targets["held"])
    best_held, since, first_epoch, before = init_held, 0, 0, 0.0
    if saved is not None and "state" in saved:
        state = saved["state"]
        for k in params:
            params[k].data.copy_(saved[f"theta.{k}"])
            best[k] = saved[f"best.{k}"].clone()
        opt.load_state_dict(_optimizer_state(opt, saved, state))
        decay.last_epoch = state["epoch"] * steps_per_epoch
        for group in opt.param_groups:
            group["lr"] = lr * factor(decay.last_epoch)
        history, best_held, since, first_epoch = state["history"], state["best_held"], state["since"], state["epoch"]
        before = state["seconds"]
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(first_epoch):
        torch.randperm(len(train), generator=shuffle)  # the same batches as an uninterrupted run

    def dist(out: Tensor, ref: Tensor) -> Tensor:
        if features is None:
            return (out - ref).reshape(out.shape[0], -1).square().mean(1)
        return (features(out) - features(ref)).reshape(out.shape[0], -1).square().sum(1)

    for epoch in range(first_epoch, epochs):
        if since >= patience:
            break
        total, count = 0.0, 0
        noise = noise_from(torch.Generator().manual_seed(seed + 1000 + epoch)) if stochastic else None
        for rows in train[torch.randperm(len(train), generator=shuffle)].split(batch_size):
            out = _solve_rows(params, solver, backbone, sched, x_T, cond, guidance, rows, n, noise)
            if stochastic:
                loss = frechet_to(targets["train"][0](out), targets["train"][1])
            else:
                loss = dist(out, x0[rows]).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            decay.step()
            total, count = total + float(loss.detach()) * len(rows), count + len(rows)
        held_err = _heldout(
            solver, backbone, sched, x_T, x0, cond, guidance, held, n, batch_size, params, targets["held"]
        )
        since = 0 if held_err < best_held else since + 1
        if held_err < best_held:
            best_held, best = held_err, {k: v.detach().clone() for k, v in params.items()}
        entry = {"epoch": epoch + 1, "train_loss": total / count, "heldout_error": held_err}
        history.append(entry)
        if checkpoint is not None:
            state = {
                "history": history,
                "best_held": best_held,
                "since": since,
                "epoch": epoch + 1,
                "seconds": before + time.perf_counter() - start,
            }
            _save_checkpoint(checkpoint, config, {"x_T": x_T, "x0": x0, **_tensors(params, best, opt)}, state)
        if progress is not None:
            progress({**entry, "epochs": epochs, "best_heldout_error": best_held})

    solver.set_parameters(best)
    solver.teacher = {"sampler": teacher, "steps": teacher_steps, "options": teacher_options}
    solver.seeds = {"seed": seed, "num_pairs": n, "train": "even pair indices", "heldout": "odd pair indices"}
    if stochastic:
        solver.seeds["noise"] = {
            "teacher": seed + 1,
            "heldout": seed + 2,
            "train error": seed + 3,
            "epochs": seed + 1000,
        }
    solver.history = history
    solver.train_error = _heldout(
        solver, backbone, sched, x_T, x0, cond, guidance, train, n, batch_size, target=targets["train"]
    )
    solver.heldout_error = best_held
    solver.init_heldout_error = init_held
    solver.seconds = before + time.perf_counter() - start
    solver.extra = {
        "init_distances": inits,
        "lr": lr,
        "batch_size": batch_size,
        "epochs": epochs,
        "patience": patience,
        "loss": ("frechet" if stochastic else "l2") + (" of features" if features is not None else ""),
        "guidance": type(guidance).__name__ if guidance is not None else None,
    }
    return solver


def _tensors(params: dict[str, Tensor], best: dict[str, Tensor], opt: torch.optim.Optimizer) -> dict[str, Tensor]:
    out = {f"theta.{k}": v.detach() for k, v in params.items()} | {f"best.{k}": v for k, v in best.items()}
    for i, s in enumerate(opt.state_dict()["state"].values()):
        out |= {f"adam.{i}.{k}": torch.as_tensor(v) for k, v in s.items()}
    return out


def _optimizer_state(opt: torch.optim.Optimizer, saved: dict[str, Tensor], state: dict[str, Any]) -> dict[str, Any]:
    sd = opt.state_dict()
    sd["state"] = {
        i: {k: saved[f"adam.{i}.{k}"] for k in ("step", "exp_avg", "exp_avg_sq")}
        for i in range(len(sd["param_groups"][0]["params"]))
    }
    return sd


def _save_checkpoint(
    path: str | Path, config: dict[str, Any], tensors: dict[str, Tensor], state: dict[str, Any]
) -> None:
    """Pairs and training state in one safetensors file, replaced in one step."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    meta = {"config": json.dumps(config), **({"state": json.dumps(state)} if state else {})}
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    tmp.replace(path)


def _resume(path: str | Path | None, config: dict[str, Any]) -> dict[str, Any] | None:
    """What a checkpoint of the same run holds (pairs, and the state after its last epoch), or None."""
    if path is None or not Path(path).is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if json.loads(meta.get("config", "null")) != config:
        raise ValueError(
            f"checkpoint {str(path)!r} is of another run (model, NFE, teacher, pairs or seed differ): "
            "move it away to start afresh"
        )
    saved: dict[str, Any] = dict(load_file(str(path)))
    if "state" in meta:
        saved["state"] = json.loads(meta["state"])
    return saved
