r"""Time grids: where a sampler evaluates the model.

A grid is a strictly decreasing float64 tensor t_0 > t_1 > … > t_N of N+1 times: N steps.
A *spacing* chooses the N start times t_0 … t_{N−1}; ``make_grid`` ends every grid at t_N = 0
(ᾱ = 1, fully denoised). A grid handed to ``sample(grid=…)`` may end earlier, at the first
training knot t = 1/T for instance, and the samplers then return x at that noise level.

Index spacings (diffusers-compatible, on training indices i, t = (i+1)/T, N ≤ T):
``leading`` i = k·⌊T/N⌋ + offset; ``trailing`` i = round(T − k·T/N) − 1;
``linspace`` i = round(linspace(0, T−1, N)); ``quadratic`` (DDIM) i = ⌊linspace(0, √(0.8T), N)²⌋;
``model``: whichever of the first three the model's diffusers scheduler config names.
Continuous spacings: ``uniform`` in t on [0, 1]; ``shifted-uniform`` (uniform through a rectified
flow's shift) and ``flow`` (diffusers' flow-matching Euler grid, shifted likewise); ``logsnr`` uniform
in λ between λ(1) and λ(1/T); ``karras`` (alias ``edm``)
σ_k = (σ_max^{1/ρ} + k/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7.

The names k-diffusion and ComfyUI users know, each as its source defines it, in EDM σ = √((1−ᾱ)/ᾱ)
between σ_min = σ(1/T) and σ_max = σ(1) (r_k = k/(N−1)): ``exponential`` log σ uniform;
``polyexponential`` log σ_k = log σ_min + (1 − r_k)^ρ (log σ_max − log σ_min); ``kl-optimal``
atan σ uniform; ``simple``, ``ddim-uniform`` and ``sgm-uniform`` (ComfyUI); ``beta`` (Beta(α, β)
quantiles of the training indices); ``ays`` (the published Align Your Steps 10-step lists);
``linear-quadratic``, ``laplace``, ``vp`` and ``beta57`` in ``more_spacings``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..errors import BadValue
from ..registry import Registry
from .base import Schedule, as_time

__all__ = ["SPACINGS", "make_grid", "check_grid", "karras_sigmas", "AYS_SIGMAS", "resolution_shift_mu"]

Spacing = Callable[..., Tensor]
SPACINGS: Registry[Spacing] = Registry("spacing", "spacings")


def _indices(schedule: Schedule, idx: Tensor) -> Tensor:
    return schedule.index_to_t(idx.to(torch.float64))


def _check_index_steps(schedule: Schedule, steps: int, spacing: str) -> None:
    if steps > schedule.num_train_timesteps:
        raise BadValue(
            "steps",
            steps,
            f"more than the schedule's {schedule.num_train_timesteps} training steps "
            f"(spacing {spacing!r} picks training indices)",
        )


@SPACINGS.register("leading")
def leading(schedule: Schedule, steps: int, *, steps_offset: int = 0) -> Tensor:
    """Training indices k·⌊T/N⌋ + offset (diffusers' default for DDPM/DDIM)."""
    _check_index_steps(schedule, steps, "leading")
    idx = torch.arange(steps - 1, -1, -1) * (schedule.num_train_timesteps // steps) + steps_offset
    return _indices(schedule, idx)


@SPACINGS.register("trailing")
def trailing(schedule: Schedule, steps: int) -> Tensor:
    """Training indices round(T − k·T/N) − 1: starts at the last training step (Lin et al. 2024)."""
    _check_index_steps(schedule, steps, "trailing")
    T = schedule.num_train_timesteps
    idx = torch.tensor([round(T - k * T / steps) - 1 for k in range(steps)])
    return _indices(schedule, idx)


@SPACINGS.register("linspace")
def linspace(schedule: Schedule, steps: int) -> Tensor:
    """Training indices round(linspace(0, T−1, N)), reversed."""
    _check_index_steps(schedule, steps, "linspace")
    idx = torch.linspace(0, schedule.num_train_timesteps - 1, steps, dtype=torch.float64).round().flip(0)
    return _indices(schedule, idx)


@SPACINGS.register("quadratic")
def quadratic(schedule: Schedule, steps: int) -> Tensor:
    """DDIM's quadratic indices ⌊linspace(0, √(0.8T), N)²⌋, reversed (Song et al. 2021)."""
    _check_index_steps(schedule, steps, "quadratic")
    idx = torch.linspace(0, math.sqrt(0.8 * schedule.num_train_timesteps), steps, dtype=torch.float64) ** 2
    return _indices(schedule, _distinct(idx.floor().flip(0), f"'quadratic' with steps={steps}"))


@SPACINGS.register("uniform")
def uniform(schedule: Schedule, steps: int) -> Tensor:
    """Equal steps in continuous t from 1 down to 0."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]


@SPACINGS.register("flow")
def flow(schedule: Schedule, steps: int, *, mu: float | None = None, shift_terminal: float | None = None) -> Tensor:
    """diffusers' ``FlowMatchEulerDiscreteScheduler``: u = linspace(1, u_min, N), t = shift·u/(1 + (shift−1)·u),
    with u_min = the shifted 1/T (so the low end is shifted twice, as there); shift = 1 off a rectified flow.

    ``mu`` is its resolution-dependent shift (``use_dynamic_shifting``, ``resolution_shift_mu``): shift = e^μ and
    u_min = 1/T, unshifted. ``shift_terminal`` τ stretches the times so that the last is τ:
    t ← 1 − (1 − t)·(1 − τ)/(1 − t_{N−1})."""
    shift = getattr(schedule, "shift", 1.0) if mu is None else math.exp(mu)

    def shifted(u: Tensor) -> Tensor:
        return shift * u / (1 + (shift - 1) * u)

    low = torch.tensor(1.0 / schedule.num_train_timesteps, dtype=torch.float64)
    t = shifted(torch.linspace(1.0, (shifted(low) if mu is None else low).item(), steps, dtype=torch.float64))
    if shift_terminal is not None:
        if not 0 < shift_terminal < 1:
            raise ValueError(f"shift_terminal must lie in (0, 1), got {shift_terminal!r}")
        if steps > 1:
            t = 1 - (1 - t) * (1 - shift_terminal) / (1 - t[-1])
    return t


def resolution_shift_mu(
    image_seq_len: int,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """The ``mu`` of Flux/SD3 pipelines for a latent of ``image_seq_len`` tokens: linear from base_shift at
    base_seq_len to max_shift at max_seq_len (diffusers' ``calculate_shift``)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return base_shift + slope * (image_seq_len - base_seq_len)


@SPACINGS.register("model")
def model(schedule: Schedule, steps: int) -> Tensor:
    """The model's own: its diffusers scheduler config's ``timestep_spacing`` (leading with its ``steps_offset``,
    trailing or linspace), as a diffusers pipeline with that config walks."""
    if schedule.config_spacing is None:
        raise ValueError(
            "spacing 'model' needs a schedule read from a diffusers scheduler config with a "
            "timestep_spacing (leading, trailing or linspace); this one has none"
        )
    name, options = schedule.config_spacing
    return SPACINGS.get(name)(schedule, steps, **options)


@SPACINGS.register("shifted-uniform")
def shifted_uniform(schedule: Schedule, steps: int) -> Tensor:
    """``uniform`` through a rectified flow's shift: t = shift·u/(1 + (shift−1)·u), u = 1, 1 − 1/N, …, 1/N."""
    shift = getattr(schedule, "shift", 1.0)
    u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1]
    return shift * u / (1 + (shift - 1) * u)


def _finite_top(schedule: Schedule, spacing: str) -> None:
    """A one-line error where the schedule reaches zero SNR at t = 1, which a σ or λ spacing cannot place."""
    if not torch.isfinite(schedule.sigma(1.0)):
        raise ValueError(
            f"spacing {spacing!r} needs a finite σ at t = 1, and this schedule "
            f"({type(schedule).__name__}) reaches zero SNR there: pass sigma_max=…, or use trailing, "
            "uniform or flow"
        )


@SPACINGS.register("logsnr")
def logsnr(schedule: Schedule, steps: int) -> Tensor:
    """Equal steps in log-SNR λ from λ(1) to λ(1/T) (as DPM-Solver's ``logSNR`` skip)."""
    _finite_top(schedule, "logsnr")
    lam = torch.linspace(
        schedule.log_snr(1.0).item(), schedule.log_snr(schedule.t_min).item(), steps, dtype=torch.float64
    )
    return schedule.t_from_log_snr(lam)


@SPACINGS.register("edm")
@SPACINGS.register("karras")
def karras(
    schedule: Schedule, steps: int, *, rho: float = 7.0, sigma_min: float | None = None, sigma_max: float | None = None
) -> Tensor:
    """Karras et al. 2022: σ_k = (σ_max^{1/ρ} + k/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ in EDM σ = √((1−ᾱ)/ᾱ)."""
    lo, hi = _sigma_range(schedule, sigma_min, sigma_max, "karras")
    return schedule.t_from_sigma(karras_sigmas(steps, lo, hi, rho))


def karras_sigmas(count: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """``count`` noise levels from σ_max down to σ_min, equally spaced in σ^{1/ρ} (Karras et al. 2022)."""
    ramp = torch.linspace(0, 1, count, dtype=torch.float64)
    return (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho


def _distinct(idx: Tensor, what: str) -> Tensor:
    """Decreasing training indices, or a one-line error where two steps fall on one index."""
    same = (idx[1:] >= idx[:-1]).nonzero()
    if len(same):
        raise ValueError(f"spacing {what} puts two steps on training index {int(idx[same[0, 0]])}; use fewer steps")
    return idx


def _sigma_range(
    schedule: Schedule, sigma_min: float | None, sigma_max: float | None, name: str
) -> tuple[float, float]:
    """(σ_min, σ_max), the schedule's σ(1/T) and σ(1) where not given."""
    lo = schedule.sigma(schedule.t_min).item() if sigma_min is None else sigma_min
    if sigma_max is None:
        _finite_top(schedule, name)
    hi = schedule.sigma(1.0).item() if sigma_max is None else sigma_max
    return lo, hi


@SPACINGS.register("exponential")
def exponential(
    schedule: Schedule, steps: int, *, sigma_min: float | None = None, sigma_max: float | None = None
) -> Tensor:
    """k-diffusion's ``get_sigmas_exponential``: log σ_k uniform from log σ_max to log σ_min."""
    return polyexponential(schedule, steps, rho=1.0, sigma_min=sigma_min, sigma_max=sigma_max)


@SPACINGS.register("polyexponential")
def polyexponential(
    schedule: Schedule, steps: int, *, rho: float = 1.0, sigma_min: float | None = None, sigma_max: float | None = None
) -> Tensor:
    """k-diffusion's ``get_sigmas_polyexponential``: log σ_k = log σ_min + (1 − k/(N−1))^ρ·(log σ_max − log σ_min)."""
    lo, hi = _sigma_range(schedule, sigma_min, sigma_max, "polyexponential")
    ramp = torch.linspace(1, 0, steps, dtype=torch.float64) ** rho
    return _sigmas_to_t(schedule, (math.log(lo) + ramp * (math.log(hi) - math.log(lo))).exp(), "'polyexponential'")


@SPACINGS.register("kl-optimal")
def kl_optimal(
    schedule: Schedule, steps: int, *, sigma_min: float | None = None, sigma_max: float | None = None
) -> Tensor:
    """Sabour et al. 2024 (ComfyUI ``kl_optimal``): σ_k = tan((1 − k/(N−1))·atan σ_max + k/(N−1)·atan σ_min)."""
    lo, hi = _sigma_range(schedule, sigma_min, sigma_max, "kl-optimal")
    r = torch.linspace(0, 1, steps, dtype=torch.float64)
    return _sigmas_to_t(schedule, torch.tan((1 - r) * math.atan(hi) + r * math.atan(lo)), "'kl-optimal'")


@SPACINGS.register("simple")
def simple(schedule: Schedule, steps: int) -> Tensor:
    """ComfyUI's ``simple``: training indices T − 1 − ⌊k·T/N⌋, k = 0 … N−1 (T/N in floating point, as there)."""
    _check_index_steps(schedule, steps, "simple")
    T = schedule.num_train_timesteps
    return _indices(schedule, torch.tensor([T - 1 - int(k * (T / steps)) for k in range(steps)]))


@SPACINGS.register("ddim-uniform")
def ddim_uniform(schedule: Schedule, steps: int) -> Tensor:
    """ComfyUI's ``ddim_uniform``: training indices 1 + k·⌊T/N⌋, k = N−1 … 0 (``leading`` with offset 1).

    Where 1 + N·⌊T/N⌋ < T (N = 3, 6, 7, … at T = 1000), ComfyUI walks one step more, from
    1 + N·⌊T/N⌋; here a grid keeps its N steps.
    """
    T = schedule.num_train_timesteps
    if steps > T - 1:
        raise BadValue(
            "steps",
            steps,
            f"more than the schedule's {T} training steps less one (spacing 'ddim-uniform' starts at training index 1)",
        )
    return _indices(schedule, 1 + torch.arange(steps - 1, -1, -1) * (T // steps))


def _training_log_sigmas(schedule: Schedule) -> Tensor:
    return schedule.sigma(schedule.index_to_t(torch.arange(schedule.num_train_timesteps, dtype=torch.float64))).log()


@SPACINGS.register("sgm-uniform")
def sgm_uniform(schedule: Schedule, steps: int) -> Tensor:
    """ComfyUI's ``sgm_uniform``: fractional training indices linspace(T−1, 0, N+1)[:N], log σ linear between knots."""
    log_sigmas = _training_log_sigmas(schedule)
    u = torch.linspace(schedule.num_train_timesteps - 1, 0, steps + 1, dtype=torch.float64)[:-1]
    lo = u.floor().long()
    hi = u.ceil().long()
    w = u - lo
    return _sigmas_to_t(schedule, ((1 - w) * log_sigmas[lo] + w * log_sigmas[hi]).exp(), "'sgm-uniform'")


@SPACINGS.register("beta")
def beta(schedule: Schedule, steps: int, *, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Lee et al. 2024 (ComfyUI ``beta``): training indices rint((T−1)·F⁻¹(1 − k/N)), F the Beta(α, β) CDF."""
    from scipy.stats import beta as beta_dist

    if not (alpha > 0 and beta > 0):
        raise ValueError(f"spacing 'beta' needs alpha > 0 and beta > 0, got alpha={alpha}, beta={beta}")
    T = schedule.num_train_timesteps
    q = 1 - torch.arange(steps, dtype=torch.float64) / steps
    idx = torch.from_numpy(beta_dist.ppf(q.numpy(), alpha, beta)).mul(T - 1).round()
    return _indices(schedule, _distinct(idx, f"'beta' (alpha={alpha}, beta={beta}) with steps={steps}"))


AYS_SIGMAS: dict[str, tuple[float, ...]] = {
    "sd1": (
        14.6146412293,
        6.4745760956,
        3.8636745985,
        2.6946151520,
        1.8841921177,
        1.3943805092,
        0.9642583904,
        0.6523686016,
        0.3977456272,
        0.1515232662,
        0.0291671582,
    ),
    "sdxl": (
        14.6146412293,
        6.3184485287,
        3.7681790315,
        2.1811480769,
        1.3405244945,
        0.8620721141,
        0.5550693289,
        0.3798540708,
        0.2332364134,
        0.1114188177,
        0.0291671582,
    ),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}


@SPACINGS.register("ays")
def ays(schedule: Schedule, steps: int, *, model: str = "sd1") -> Tensor:
    """Align Your Steps (Sabour et al. 2024): the published 10-step σ list of ``model`` (sd1, sdxl, svd).

    For N ≠ 10 the 11 levels are interpolated log-linearly to N + 1 (as the paper's code does); the
    last level is replaced by σ = 0, the grid's end.
    """
    if model not in AYS_SIGMAS:
        raise ValueError(f"unknown ays model {model!r}; known: {', '.join(AYS_SIGMAS)}")
    levels = torch.tensor(AYS_SIGMAS[model], dtype=torch.float64)
    if steps + 1 != len(levels):
        xs = torch.linspace(0, 1, len(levels), dtype=torch.float64)
        new = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        pos = (new * (len(levels) - 1)).clamp(max=len(levels) - 1 - 1e-12)
        k = pos.floor().long()
        w = (new - xs[k]) / (xs[k + 1] - xs[k])
        logs = levels.log().flip(0)  # ascending, as the reference interpolates
        levels = ((1 - w) * logs[k] + w * logs[k + 1]).exp().flip(0)
    return _sigmas_to_t(schedule, levels[:-1], f"ays (model {model!r})")


def _sigmas_to_t(schedule: Schedule, sigmas: Tensor, name: str) -> Tensor:
    """Times of σ levels; a level above σ(1) by more than rounding is an error naming the range."""
    top = schedule.sigma(1.0).item()
    if sigmas.max().item() > top * (1 + 1e-9):
        raise ValueError(
            f"spacing {name} starts at σ = {sigmas.max().item():.6g}, above this schedule's "
            f"σ_max = {top:.6g}; it is meant for another model"
        )
    return schedule.t_from_sigma(sigmas).clamp(max=1.0)


def check_grid(grid: Tensor) -> Tensor:
    """Validate a grid: 1-D, at least two times, strictly decreasing, inside [0, 1]."""
    grid = as_time(grid)
    if grid.dim() != 1:
        raise ValueError(f"a grid is a 1-D sequence of times, got shape {tuple(grid.shape)}")
    if grid.numel() < 2:
        raise ValueError(f"a grid needs at least 2 times (1 step), got {grid.numel()}")
    if not torch.all(grid[1:] < grid[:-1]):
        raise ValueError(f"grid times must be strictly decreasing, got {grid.tolist()}")
    if grid[-1] < 0 or grid[0] > 1:
        raise ValueError(f"grid times must lie in [0, 1], got {grid[-1].item()} … {grid[0].item()}")
    return grid


def make_grid(schedule: Schedule, steps: int, spacing: str | None = None, **options: float) -> Tensor:
    """A decreasing grid of ``steps + 1`` times: ``steps`` start times from ``spacing`` (default: the schedule
    family's, else trailing), then t = 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise BadValue("steps", steps, "must be an integer ≥ 1")
    starts = SPACINGS.get(spacing or schedule.default_spacing or "trailing")(schedule, steps, **options)
    return check_grid(torch.cat([starts, torch.zeros(1, dtype=torch.float64)]))
