r"""DDIM (Song, Meng & Ermon 2021), deterministic at η = 0 and ancestral (respaced DDPM) at η = 1.

From s to u:  σ = η·√((1−ᾱ_u)/(1−ᾱ_s))·√(1 − ᾱ_s/ᾱ_u),
              x̂_0 = (x_s − √(1−ᾱ_s)·ε)/√ᾱ_s,
              x_u = √ᾱ_u·x̂_0 + √(1−ᾱ_u−σ²)·ε' + σ·z.

ε' is the ε that re-noises. Where x̂_0 is clipped the two conventions differ:
``use_clipped_model_output=True`` (the default, as guided-diffusion) takes ε' = ε re-derived from
the clipped x̂_0, so the step is the DDIM step of the clipped prediction, as every other sampler
here sees it; ``False`` keeps the network's own ε, as diffusers' ``DDIMScheduler`` and
``DDIMPipeline`` do by default. Without clipping both are the same. A paired ε (CFG++) re-noises
with its second ε, the unconditional one.
With ``set_alpha_to_one=False`` the last step ends at the first training knot instead of ᾱ = 1
(diffusers' ``set_alpha_to_one``). NFE = N.
"""

from __future__ import annotations

from torch import Tensor

from ..schedules import Schedule
from .base import SAMPLERS, Callback, EpsFn, NoiseSampler, denoise, eps_pair, report, times_like


@SAMPLERS.register("ddim", discrete=True, renoise=True)
def ddim(
    eps_fn: EpsFn,
    x: Tensor,
    grid: Tensor,
    schedule: Schedule,
    *,
    noise_sampler: NoiseSampler,
    callback: Callback | None = None,
    eta: float = 0.0,
    set_alpha_to_one: bool = True,
    use_clipped_model_output: bool = True,
) -> Tensor:
    """DDIM with stochasticity η ≥ 0 (η = 1 is respaced DDPM); NFE = steps."""
    if not eta >= 0:
        raise ValueError(f"eta must be ≥ 0, got {eta!r}")
    ab = schedule.alpha_bar(grid).tolist()
    if not set_alpha_to_one and grid[-1] < schedule.t_min:
        ab[-1] = schedule.alpha_bar(schedule.t_min).item()
    for i in range(len(ab) - 1):
        a_s, a_u = ab[i], ab[i + 1]
        eps, renoise = eps_pair(eps_fn, x, times_like(grid[i], x), raw=not use_clipped_model_output)
        sigma = eta * ((1 - a_u) / (1 - a_s) * (1 - a_s / a_u)) ** 0.5
        x0 = denoise(x, eps, a_s)
        x_new = (a_u**0.5 * x0).add_(renoise, alpha=max(1 - a_u - sigma**2, 0.0) ** 0.5)
        if sigma > 0:
            x_new.add_(noise_sampler(x), alpha=sigma)
        report(callback, i, grid, x_new, x0)
        x = x_new
    return x
