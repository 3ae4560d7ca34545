"""PF-ODE solvers' measured convergence order against a tight adaptive reference from the same x_T."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import diffsampler as ds

STEPS = [16, 32, 64, 128]


@pytest.fixture(scope="module")
def setting():
    gm = ds.GaussianMixture(
        means=[[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]],
        weights=[0.5, 0.3, 0.2],
        variances=[[0.3, 0.5], [0.4, 0.2], [0.25, 0.25]],
    )
    s = ds.SCHEDULES.get("linear")()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # integrate t: 1 → first knot (no final jump to t = 0, which would be a first-order step)
    ref = ds.sample(gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-10, atol=1e-10, grid=[1.0, s.t_min], x_T=x)
    return gm, s, x, ref


def _order(setting, method: str, sampler: str = "pf-ode", **options) -> tuple[float, list[float]]:
    gm, s, x, ref = setting
    errs = []
    for n in STEPS:
        grid = ds.make_grid(s, n + 1, "karras")[:-1]  # n steps from t = 1 to the first knot
        options = {"method": method} if sampler == "pf-ode" else options
        out = ds.sample(gm, schedule=s, sampler=sampler, grid=grid, x_T=x, **options)
        errs.append((out - ref).pow(2).sum(1).sqrt().mean().item())
    return -np.polyfit(np.log(STEPS), np.log(errs), 1)[0], errs


@pytest.mark.parametrize("method,low,high", [("euler", 0.9, 1.15), ("heun", 1.8, 2.3), ("rk4", 3.3, 4.3)])
def test_convergence_order(setting, method: str, low: float, high: float) -> None:
    order, errs = _order(setting, method)
    assert low < order < high, f"{method}: fitted order {order:.2f} from errors {errs}"


@pytest.mark.parametrize(
    "sampler,options,low,high",
    [
        ("euler", {}, 0.9, 1.15),
        ("heun", {}, 1.8, 2.3),
        ("dpm-solver++", {"order": 1}, 0.9, 1.15),
        ("dpm-solver++", {"order": 2}, 1.8, 2.3),
        ("lms", {"order": 1}, 0.9, 1.15),
        ("dpm-solver++-2s", {}, 1.8, 2.3),
    ],
)
# DPM-Solver++(3M) is left out: its warm-up starts with a first-order step whose O(h²) local error
# bounds the global error at O(h²) (fitted slopes fall from 3.4 to 2.2 over 16…128 steps here).
def test_other_solvers_convergence_order(setting, sampler: str, options: dict, low: float, high: float) -> None:
    order, errs = _order(setting, "", sampler, **options)
    assert low < order < high, f"{sampler}: fitted order {order:.2f} from errors {errs}"


def test_rk45_error_follows_tolerance(setting) -> None:
    gm, s, x, ref = setting
    errs = []
    for tol in (1e-3, 1e-5, 1e-7):
        r = ds.sample(
            gm,
            schedule=s,
            sampler="pf-ode",
            method="rk45",
            rtol=tol,
            atol=tol,
            grid=[1.0, s.t_min],
            x_T=x,
            full_output=True,
        )
        errs.append((r.samples - ref).abs().max().item())
        assert (r.calls - 1) % 6 == 0 and r.nfe <= r.calls
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-5, errs


def test_rk45_into_zero_solves_down_to_the_first_knot(setting) -> None:
    """rk45 uses only its grid's ends: into t = 0 it solves to t_min, then takes x̂_0, whatever the inner times."""
    gm, s, x, ref = setting
    to_knot = ds.sample(
        gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-6, atol=1e-6, grid=[1.0, s.t_min], x_T=x
    )
    x0_hat = gm.denoised(to_knot, torch.full((len(x),), s.t_min, dtype=torch.float64), s)
    for grid in ({"steps": 1}, {"steps": 2}, {"steps": 2, "spacing": "karras"}, {"grid": [1.0, 0.5, 0.0]}):
        out = ds.sample(gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-6, atol=1e-6, x_T=x, **grid)
        torch.testing.assert_close(out, x0_hat, rtol=0, atol=1e-9, msg=str(grid))


def test_pf_ode_euler_is_ddim(setting) -> None:
    """Euler in (σ, x/√ᾱ) is DDIM with η = 0: the same numbers on the same grid."""
    gm, s, x, _ = setting
    a = ds.sample(gm, schedule=s, sampler="pf-ode", method="euler", steps=20, spacing="trailing", x_T=x)
    b = ds.sample(gm, schedule=s, sampler="ddim", steps=20, spacing="trailing", x_T=x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


FINE_STEPS = [126, 252, 504]


@pytest.fixture(scope="module")
def tight(setting):
    gm, s, x, _ = setting
    return ds.sample(
        gm, schedule=s, sampler="pf-ode", method="rk45", rtol=1e-12, atol=1e-12, grid=[1.0, s.t_min], x_T=x
    )


@pytest.mark.parametrize(
    "sampler,options,order",
    [
        ("unipc", {"order": 1}, 2),
        ("unipc", {"order": 2, "corrector": False}, 2),
        ("unipc", {"order": 2}, 3),
        ("unipc", {"order": 2, "variant": "bh1"}, 3),
        ("unipc", {"order": 3, "corrector": False}, 3),
        ("unipc", {"order": 3}, 4),
        ("deis", {"order": 2}, 2),
        ("deis", {"order": 3}, 3),
        ("ipndm", {"order": 2}, 2),
        ("dpm-solver++-singlestep", {"order": 2}, 2),
        # fixed equal-step weights on a grid whose steps vary (karras): second order, whatever the warm-up
        ("pndm", {}, 2),
        ("plms", {}, 2),
        ("ipndm", {"order": 4}, 2),
    ],
)
def test_multistep_convergence_order(setting, tight, sampler: str, options: dict, order: int) -> None:
    """Orders reached at 126–504 steps (at 16–128 steps the higher orders are still rising: e.g. DEIS-2
    fits 1.6, UniPC-2 with its corrector 2.4). UniPC's corrector adds one order; lower_order_final is off
    so that the last step keeps the order (it drops it to 1 otherwise)."""
    gm, s, x, _ = setting
    errs = []
    for n in FINE_STEPS:
        grid = ds.make_grid(s, n + 1, "karras")[:-1]
        extra = {"lower_order_final": False} if sampler in ("unipc", "dpm-solver++-singlestep") else {}
        out = ds.sample(gm, schedule=s, sampler=sampler, grid=grid, x_T=x, **options, **extra)
        errs.append((out - tight).pow(2).sum(1).sqrt().mean().item())
    fitted = -np.polyfit(np.log(FINE_STEPS), np.log(errs), 1)[0]
    assert order - 0.2 < fitted < order + 0.35, f"{sampler} {options}: fitted order {fitted:.2f} from errors {errs}"


def test_rk45_agrees_with_scipy_solve_ivp(setting) -> None:
    """The same ODE, dy/du = σ·ε(y/√(1+σ²), t(σ)) in u = log σ, solved per sample by scipy's RK45 at the same
    tolerances: both land within their tolerance's reach of a DOP853 solution at 1e-12, and of each other."""
    from scipy.integrate import solve_ivp

    gm, s, x, _ = setting
    x = x[:8]
    u0, u1 = s.sigma(torch.tensor(1.0, dtype=torch.float64)).log().item(), s.sigma(s.t_min).log().item()

    def f(u: float, y: np.ndarray) -> np.ndarray:
        sig = np.exp(u)
        t = s.t_from_log_snr(torch.tensor([-2 * u], dtype=torch.float64))
        xx = torch.from_numpy(y).reshape(1, -1) / np.sqrt(1 + sig * sig)
        return sig * gm.eps(xx, t, s).reshape(-1).numpy()

    def solve(y0: torch.Tensor, method: str, tol: float) -> torch.Tensor:
        r = solve_ivp(f, (u0, u1), y0.numpy(), method=method, rtol=tol, atol=tol)
        assert r.success
        return torch.from_numpy(r.y[:, -1]) / np.sqrt(1 + np.exp(2 * u1))

    y0 = x * np.sqrt(1 + np.exp(2 * u0))
    for tol in (1e-4, 1e-6):
        ours = ds.sample(
            gm, schedule=s, sampler="pf-ode", method="rk45", rtol=tol, atol=tol, grid=[1.0, s.t_min], x_T=x
        )
        theirs = torch.stack([solve(y, "RK45", tol) for y in y0])
        tight = torch.stack([solve(y, "DOP853", 1e-12) for y in y0])
        err_ours, err_theirs = (ours - tight).abs().max().item(), (theirs - tight).abs().max().item()
        # y is of size |x|·√(1+σ_max²) ≈ 10² at the start: an absolute tolerance tol on y is tol/√(1+σ²) on x at the end
        assert err_ours < 100 * tol and err_theirs < 100 * tol, (tol, err_ours, err_theirs)
        assert err_ours < 5 * err_theirs + tol, (tol, err_ours, err_theirs)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=50 * tol)
