r"""Noise schedules on continuous time, in variance-preserving (VP) form.

    x_t = √ᾱ(t)·x_0 + √(1−ᾱ(t))·ε,   t ∈ [0, 1],   ᾱ(0) = 1.

Any other interpolation x_t = a(t)·x_0 + b(t)·ε (VE/EDM, rectified flow) is the VP one of the same
log-SNR λ = 2·log(a/b), scaled: x_t = s(t)·x_vp with s = √(a² + b²) and ᾱ = a²/(a² + b²). A schedule
states its ᾱ(t) (the VP equivalent) and ``scale`` s(t) (1 for VP); samplers walk x_vp, and ``sample``
converts at the model's door, so every sampler runs on every family. ``signal`` and ``noise`` are the
model's own a(t) and b(t).

Derived views: signal scale α(t) = √ᾱ, noise std √(1−ᾱ), EDM noise level σ(t) = √((1−ᾱ)/ᾱ),
log-SNR λ(t) = log(ᾱ/(1−ᾱ)) and its inverse. A *discrete* schedule of T training steps puts
training index i at t_i = (i+1)/T and interpolates log ᾱ linearly between the knots
(0, 0), (t_0, log ᾱ_0), …, (t_{T−1}, log ᾱ_{T−1}); its values on the knots are exact.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

__all__ = ["Schedule", "DiscreteSchedule", "as_time", "train_steps", "zero_terminal_snr"]

_DTYPE = torch.float64


def as_time(t: float | Tensor) -> Tensor:
    """Times as a float64 tensor (schedules compute in float64)."""
    return torch.as_tensor(t, dtype=_DTYPE)


def train_steps(n: Any) -> int:
    """``num_train_timesteps`` checked: an integer ≥ 1 (1.5 is an error, not 1)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"num_train_timesteps must be an integer ≥ 1, got {n!r}")
    return int(n)


class Schedule:
    """Base class: subclasses define ``log_alpha_bar`` and ``t_from_log_snr``."""

    discrete: bool = False
    config_spacing: tuple[str, dict[str, Any]] | None = None  # a diffusers config's timestep_spacing, for ``model``
    variance_preserving: bool = True  # scale(t) ≡ 1: the model's x is the samplers' x
    default_spacing: str | None = None  # the spacing this family is sampled with unless asked (else the sampler's)

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.num_train_timesteps = train_steps(num_train_timesteps)

    # -- to be defined by every schedule ---------------------------------------------------------
    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        """log ᾱ(t), float64."""
        raise NotImplementedError

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        """Inverse of λ(t) = log(ᾱ/(1−ᾱ))."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Parameters that rebuild this schedule (serialisable)."""
        return {"num_train_timesteps": self.num_train_timesteps}

    # -- derived views ----------------------------------------------------------------------------
    def alpha_bar(self, t: float | Tensor) -> Tensor:
        """ᾱ(t)."""
        return self.log_alpha_bar(t).exp()

    def alpha(self, t: float | Tensor) -> Tensor:
        """Signal scale √ᾱ(t)."""
        return (0.5 * self.log_alpha_bar(t)).exp()

    def std(self, t: float | Tensor) -> Tensor:
        """Noise standard deviation √(1−ᾱ(t))."""
        return (-torch.expm1(self.log_alpha_bar(t))).sqrt()

    def sigma(self, t: float | Tensor) -> Tensor:
        """EDM noise level σ(t) = √((1−ᾱ)/ᾱ) = exp(−λ/2)."""
        return (-0.5 * self.log_snr(t)).exp()

    def log_snr(self, t: float | Tensor) -> Tensor:
        """λ(t) = log ᾱ − log(1−ᾱ)."""
        la = self.log_alpha_bar(t)
        return la - torch.log(-torch.expm1(la))

    def scale(self, t: float | Tensor) -> Tensor:
        """s(t) = √(a² + b²): the model's x_t = s·x_vp (1 for a VP schedule)."""
        return torch.ones_like(as_time(t))

    def signal(self, t: float | Tensor) -> Tensor:
        """The model's signal scale a(t) = s·√ᾱ."""
        return self.scale(t) * self.alpha(t)

    def noise(self, t: float | Tensor) -> Tensor:
        """The model's noise scale b(t) = s·√(1−ᾱ)."""
        return self.scale(t) * self.std(t)

    def t_from_sigma(self, sigma: float | Tensor) -> Tensor:
        """Inverse of σ(t): t with √((1−ᾱ)/ᾱ) = sigma."""
        return self.t_from_log_snr(-2.0 * torch.log(as_time(sigma)))

    @property
    def t_min(self) -> float:
        """The first training knot 1/T: the lowest noise level a model was trained on."""
        return 1.0 / self.num_train_timesteps

    def index_to_t(self, index: float | Tensor) -> Tensor:
        """Training index i ∈ [0, T) → t = (i+1)/T."""
        return (as_time(index) + 1.0) / self.num_train_timesteps

    def model_time(self, t: Tensor) -> Tensor:
        """t on the model's own scale: t·(T−1) for continuous schedules (score-SDE convention)."""
        return t * (self.num_train_timesteps - 1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "betas")
        return f"{type(self).__name__}({args})"


class DiscreteSchedule(Schedule):
    """A schedule given by T betas; ᾱ_i = ∏_{j≤i}(1−β_j) at t_i = (i+1)/T, log-linear in between."""

    discrete = True

    def __init__(self, betas: Tensor | Any) -> None:
        betas = torch.as_tensor(betas, dtype=_DTYPE).flatten()
        if betas.numel() < 1 or not torch.all(
            (betas > 0) & (betas < 1) | (betas == 1) & (torch.arange(betas.numel()) == betas.numel() - 1)
        ):
            raise ValueError(
                "betas must be a non-empty sequence of values in (0, 1); the last may be 1 (zero terminal SNR)"
            )
        super().__init__(betas.numel())
        self.betas = betas
        # knots' log ᾱ, with log ᾱ(0) = 0 prepended
        self._log_ab = torch.cat([torch.zeros(1, dtype=_DTYPE), torch.cumsum(torch.log1p(-betas), 0)])
        self._knots_on: dict[torch.device, Tensor] = {self._log_ab.device: self._log_ab}

    def _knots(self, like: Tensor) -> Tensor:
        """The knots' log ᾱ on ``like``'s device (copied there once: a GPU's times index a GPU table)."""
        if like.device not in self._knots_on:
            self._knots_on[like.device] = self._log_ab.to(like.device)
        return self._knots_on[like.device]

    @property
    def alphas_cumprod(self) -> Tensor:
        """ᾱ_i on the training knots i = 0 … T−1."""
        return self._log_ab[1:].exp()

    def _position(self, t: float | Tensor) -> Tensor:
        """u = t·T, snapped to the nearest integer when within 1e-9 (knots are exact)."""
        u = as_time(t) * self.num_train_timesteps
        r = u.round()
        # the snapped value r exactly (u + (r − u) rounds to r), with u's gradient: times stay learnable on knots
        return torch.where((u - r).abs() < 1e-9, u + (r - u).detach(), u)

    def log_alpha_bar(self, t: float | Tensor) -> Tensor:
        u = self._position(t)
        k = u.floor().clamp(0, self.num_train_timesteps - 1)
        knots = self._knots(u)
        lo, hi = knots[k.long()], knots[k.long() + 1]
        w = u - k
        # into a zero-SNR last knot (ᾱ = 0) ᾱ itself is linear: log ᾱ = lo + log(1 − w); each branch is computed
        # only where it is taken, so that the other's infinities give no NaN gradient
        zero = torch.isinf(hi)
        return torch.where(zero, lo + torch.log1p(-torch.where(zero, w, 0.0)), lo + w * torch.where(zero, 0.0, hi - lo))

    def t_from_log_snr(self, lam: float | Tensor) -> Tensor:
        target = torch.nn.functional.logsigmoid(as_time(lam))  # log ᾱ = log σ(λ)
        knots = self._knots(target)
        # −log ᾱ increases along the knots; find the segment holding the target
        k = torch.searchsorted(-knots, (-target).contiguous()).clamp(1, self.num_train_timesteps)
        lo, hi = knots[k - 1], knots[k]
        zero = torch.isinf(hi)
        w = torch.where(zero, -torch.expm1(target - lo), (target - lo) / torch.where(zero, 1.0, hi - lo))
        return ((k - 1) + w) / self.num_train_timesteps

    def model_time(self, t: Tensor) -> Tensor:
        """Training index t·T − 1, clamped to [0, T−1] (what diffusers UNets take)."""
        return (self._position(t) - 1.0).clamp(0, self.num_train_timesteps - 1)

    def config(self) -> dict[str, Any]:
        return {"betas": self.betas.tolist()}

    @classmethod
    def from_diffusers(cls, config: Any) -> "Schedule":
        """Build from a diffusers scheduler, its config, or a ``scheduler_config.json`` dict; its
        ``timestep_spacing`` (and ``steps_offset``) is kept as ``config_spacing``, which the ``model`` spacing walks."""
        cfg = dict(getattr(config, "config", config))
        schedule = cls._from_config(cfg)
        spacing = cfg.get("timestep_spacing")
        if spacing in ("leading", "trailing", "linspace"):  # what the ``model`` spacing walks
            schedule.config_spacing = (
                spacing,
                {"steps_offset": int(cfg.get("steps_offset", 0))} if spacing == "leading" else {},
            )
        return schedule

    @classmethod
    def _from_config(cls, cfg: dict[str, Any]) -> "Schedule":
        from . import SCHEDULES

        if str(cfg.get("_class_name", "")).startswith("FlowMatch"):
            return SCHEDULES.get("rectified-flow")(
                shift=cfg.get("shift", 1.0), num_train_timesteps=cfg.get("num_train_timesteps", 1000)
            )
        if cfg.get("trained_betas") is not None:
            betas = torch.as_tensor(cfg["trained_betas"], dtype=_DTYPE)
            return cls(zero_terminal_snr(betas) if cfg.get("rescale_betas_zero_snr") else betas)
        kind = cfg.get("beta_schedule", "linear")
        names = {
            "linear": "linear",
            "scaled_linear": "scaled-linear",
            "squaredcos_cap_v2": "cosine",
            "sigmoid": "sigmoid",
        }
        if kind not in names:
            raise ValueError(f"unsupported diffusers beta_schedule {kind!r}; supported: {', '.join(names)}")
        kwargs: dict[str, Any] = {"num_train_timesteps": cfg.get("num_train_timesteps", 1000)}
        if kind != "squaredcos_cap_v2":
            kwargs.update(beta_start=cfg.get("beta_start", 1e-4), beta_end=cfg.get("beta_end", 0.02))
        named = SCHEDULES.get(names[kind])(**kwargs)
        return cls(zero_terminal_snr(named.betas)) if cfg.get("rescale_betas_zero_snr") else named

    @property
    def default_spacing(self) -> str | None:  # type: ignore[override]
        """trailing where ᾱ_T = 0, so that sampling starts from zero SNR (Lin et al. 2024); else the sampler's."""
        return "trailing" if self._log_ab[-1].item() == -math.inf else None


def zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2024, Alg. 1: shift and scale √ᾱ so that √ᾱ_T = 0 and √ᾱ_0 is kept; the betas of that ᾱ."""
    root = torch.cumprod(1 - betas.to(_DTYPE), 0).sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    ab = root**2
    return 1 - torch.cat([ab[:1], ab[1:] / ab[:-1]])


def cosine_alpha_bar(u: Tensor, s: float = 0.008) -> Tensor:
    """Nichol & Dhariwal's f(u) = cos²((u + s)/(1 + s)·π/2) on u ∈ [0, 1]."""
    return torch.cos((u + s) / (1 + s) * (math.pi / 2)) ** 2
