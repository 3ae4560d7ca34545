"""diffsampler: plugin samplers, schedules and guidance for ε-predicting diffusion models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import bundled, images  # noqa: F401  (ds.bundled.load_model, ds.images.save_png)
from .backbones import BACKBONES, Backbone, CallableBackbone, DiffusersBackbone, Empirical, GaussianMixture, as_backbone
from .guidance import GUIDANCE
from .learned import LearnedSolver, learn_solver, load_solver
from .registry import Registry, UnknownNameError
from .samplers import SAMPLERS
from .sampling import SampleResult, generators, sample, spacing_for, steps_for_nfe
from .schedules import SCHEDULES, SPACINGS, VE, DiscreteSchedule, RectifiedFlow, Schedule, make_grid, sigma_tools
from .tensors import retain_freed_memory
from .tuning import TunedGrid, load_grid, tune_grid

try:
    __version__ = version("diffsampler")  # written once, in pyproject.toml
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "unknown"

__all__ = [
    "sample",
    "SampleResult",
    "generators",
    "steps_for_nfe",
    "spacing_for",
    "SAMPLERS",
    "SCHEDULES",
    "SPACINGS",
    "GUIDANCE",
    "BACKBONES",
    "Registry",
    "UnknownNameError",
    "Schedule",
    "DiscreteSchedule",
    "VE",
    "RectifiedFlow",
    "make_grid",
    "sigma_tools",
    "Backbone",
    "CallableBackbone",
    "DiffusersBackbone",
    "Empirical",
    "GaussianMixture",
    "as_backbone",
    "tune_grid",
    "load_grid",
    "TunedGrid",
    "retain_freed_memory",
    "learn_solver",
    "load_solver",
    "LearnedSolver",
    "__version__",
]
