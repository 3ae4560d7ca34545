"""Samplers: stateless functions that walk a time grid from x_T to x_0 (see ``samplers.base``)."""

from __future__ import annotations

from ..registry import import_submodules
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, Sampler, noise_from
from .ddim import ddim
from .ddpm import ddpm
from .dpm_solver import dpm_solver_pp
from .euler_maruyama import euler_maruyama
from .pf_ode import pf_ode

import_submodules(__name__, __path__)  # each file registers its sampler where it is defined

__all__ = [
    "SAMPLERS",
    "Sampler",
    "EpsFn",
    "NoiseSampler",
    "Callback",
    "noise_from",
    "ddpm",
    "ddim",
    "euler_maruyama",
    "pf_ode",
    "dpm_solver_pp",
]
