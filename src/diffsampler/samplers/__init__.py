"""Samplers: stateless functions that walk a time grid from x_T to x_0 (see ``samplers.base``)."""

from __future__ import annotations

from ..registry import Registry
from .base import Callback, EpsFn, NoiseSampler, Sampler, noise_from
from .ddim import ddim
from .ddpm import ddpm
from .dpm_solver import dpm_solver_pp
from .euler_maruyama import euler_maruyama
from .pf_ode import pf_ode

SAMPLERS: Registry[Sampler] = Registry("sampler", "samplers")

for _name, _fn, _spacing in [("ddpm", ddpm, "trailing"), ("ddim", ddim, "trailing"),
                             ("euler-maruyama", euler_maruyama, "uniform"), ("pf-ode", pf_ode, "karras"),
                             ("dpm-solver++", dpm_solver_pp, "logsnr")]:
    _fn.default_spacing = _spacing  # type: ignore[attr-defined]
    SAMPLERS.register(_name, _fn)

__all__ = ["SAMPLERS", "Sampler", "EpsFn", "NoiseSampler", "Callback", "noise_from", "ddpm", "ddim",
           "euler_maruyama", "pf_ode", "dpm_solver_pp"]
