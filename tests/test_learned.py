"""Learned solvers: their base at initialisation, monotone times, files, resuming, and learning on exact mixtures."""

from __future__ import annotations

import json

import pytest
import torch

import diffsampler as ds
from diffsampler.learned import _lambdas, initial_solver, solve
from diffsampler.samplers.base import noise_from

F64 = torch.float64


@pytest.fixture
def schedule():
    return ds.SCHEDULES.get("linear")()


@pytest.fixture
def x_T():
    return torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


BASE_SAMPLERS = {"dpm-solver++": {"order": 3}, "unipc": {"order": 3}, "ipndm": {"order": 4}, "dpm-solver++-sde": {}}


@pytest.mark.parametrize("base", list(BASE_SAMPLERS))
@pytest.mark.parametrize("nfe,spacing", [(4, "trailing"), (5, "logsnr"), (6, "karras"), (8, "uniform")])
def test_at_initialisation_it_is_its_base(mixture, schedule, x_T, base: str, nfe: int, spacing: str) -> None:
    """θ = (z from the grid, δ = 0, Δ = 0) is the base sampler (DPM-Solver++(3M) and UniPC-3 with
    lower_order_final, iPNDM-4, DPM-Solver++(2M) SDE at η = 1 from the same noise) on that grid: the same numbers
    to float64 round-off, and the grid is the named one to the λ → t round trip's (≈ 1e-10)."""
    solver = initial_solver(schedule, nfe, spacing, base)
    named = ds.sampling.time_grid(base, schedule, nfe, spacing)
    torch.testing.assert_close(solver.times(schedule), named, rtol=0, atol=1e-9)
    ours = ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T, seed=1, full_output=True)
    plain = ds.sample(
        mixture, schedule=schedule, sampler=base, grid=solver.times(schedule), x_T=x_T, seed=1, **BASE_SAMPLERS[base]
    )
    torch.testing.assert_close(ours.samples, plain, rtol=1e-10, atol=1e-10)
    assert ours.nfe == nfe


def test_times_are_monotone_for_any_parameters(schedule) -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        lam = _lambdas(torch.randn(6, generator=g, dtype=F64) * 5, -5.0, 6.0)
        assert (lam.diff() > 0).all() and lam[0] == -5.0 and lam[-1] < 6.0


@pytest.mark.parametrize("base", list(BASE_SAMPLERS))
def test_the_solver_is_differentiable_in_every_parameter(mixture, schedule, x_T, base: str) -> None:
    solver = initial_solver(schedule, 4, "trailing", base)
    p = solver.parameters(requires_grad=True)

    def eps(x, t):
        return mixture.eps(x, t, schedule)

    lam = _lambdas(p["logits"], solver.lam0, solver.lam_end)
    etas = torch.nn.functional.softplus(p["noise"]) if "noise" in p else None
    noise = noise_from(torch.Generator().manual_seed(0))
    out = solve(eps, x_T[:8], schedule, lam, p["offsets"], p["corrections"], base, None, etas, noise)
    out.square().sum().backward()
    assert p["logits"].grad.abs().sum() > 0 and p["offsets"].grad[1:].abs().min() > 0
    assert p["corrections"].grad[:, 0].abs().min() > 0  # every step's own prediction
    assert base != "dpm-solver++-sde" or p["noise"].grad[:-1].abs().min() > 0  # the last step draws none


def test_save_load_and_refusals(mixture, schedule, x_T, tmp_path) -> None:
    solver = initial_solver(schedule, 4, "trailing", model="gmm")
    solver.offsets = [0.0, 0.01, -0.02, 0.0]
    solver.save(tmp_path / "s.json")
    back = ds.load_solver(tmp_path / "s.json")
    assert back == solver
    torch.testing.assert_close(
        ds.sample(mixture, schedule=schedule, solver=back, x_T=x_T),
        ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T),
        rtol=0,
        atol=0,
    )
    with pytest.raises(ValueError, match="the solver was learned for another schedule"):
        ds.sample(mixture, schedule="cosine", solver=solver, x_T=x_T)
    with pytest.raises(ValueError, match="model 'gmm', not 'digits'"):
        solver.check(schedule, "digits")
    with pytest.raises(ValueError, match="leave out grid, spacing and sampler options"):
        ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T, spacing="karras")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="is not JSON"):
        ds.load_solver(tmp_path / "bad.json")
    data = json.loads((tmp_path / "s.json").read_text())
    data["offsets"] = [0.0]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="parameters do not fit 4 steps"):
        ds.load_solver(tmp_path / "short.json")
    with pytest.raises(ValueError, match="no such file"):
        ds.load_solver(tmp_path / "none.json")
    with pytest.raises(ValueError, match="nfe must be an integer ≥ 2"):
        initial_solver(schedule, 1, "trailing")


def _learn(mixture, schedule, **kw):
    return ds.learn_solver(mixture, schedule=schedule, nfe=4, shape=(2,), num_pairs=128, batch_size=32, **kw)


def test_learning_lowers_the_heldout_distance_and_resumes_where_it_stopped(mixture, schedule, tmp_path) -> None:
    whole = _learn(mixture, schedule, epochs=4, spacing="trailing")
    assert whole.heldout_error < whole.init_heldout_error and len(whole.history) == 4
    assert whole.seeds["seed"] == 2_000_003 and whole.teacher == {
        "sampler": "dpm-solver++",
        "steps": 50,
        "options": {"order": 3},
    }
    ckpt = tmp_path / "run.safetensors"

    def stop_after_two(entry):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _learn(mixture, schedule, epochs=4, spacing="trailing", checkpoint=ckpt, progress=stop_after_two)
    resumed = _learn(mixture, schedule, epochs=4, spacing="trailing", checkpoint=ckpt)
    assert resumed.history == whole.history
    assert (resumed.logits, resumed.offsets, resumed.corrections) == (whole.logits, whole.offsets, whole.corrections)
    with pytest.raises(ValueError, match="is of another run"):
        _learn(mixture, schedule, epochs=4, spacing="trailing", checkpoint=ckpt, seed=5)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedules_have_finite_nonzero_time_gradients_on_knots_and_ends(name: str) -> None:
    """A learned time sits on a training knot at first (trailing's are knots) and at t = 1: there ᾱ(t) and t(λ)
    must pass a gradient (snapping to the knot used to stop it, and the unused zero-SNR branch made it NaN)."""
    s = ds.SCHEDULES.get(name)()
    t = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.1234], dtype=F64, requires_grad=True)
    s.alpha_bar(t).sum().backward()
    assert torch.isfinite(t.grad).all() and (t.grad != 0).all(), t.grad
    lam = s.log_snr(t.detach()).requires_grad_(True)
    s.t_from_log_snr(lam).sum().backward()
    assert torch.isfinite(lam.grad).all() and (lam.grad != 0).all(), lam.grad


def _component_errors(mixture, x):
    """Mean over components of |mean − μ_k| and Σ|var − v_k| of the samples assigned to k."""
    k = mixture.posterior(x).argmax(1)
    mean = sum((x[k == c].mean(0) - mixture.means[c]).norm().item() for c in range(3)) / 3
    var = sum((x[k == c].var(0) - mixture.variances[c]).abs().sum().item() for c in range(3)) / 3
    return mean, var


@pytest.mark.slow
def test_a_learned_four_step_solver_recovers_the_mixture_better_than_plain_ones(mixture, schedule) -> None:
    """Learned on seed 2000003, scored on seed 0 (20000 samples): its component means and variances are at least
    a fifth closer than those of the strongest plain solvers on every spacing that can run them at NFE 4
    (benchmarks/learned_solver.py --mixture races all of them: 0.021 and 0.054 against 0.038 and 0.112)."""
    solver = ds.learn_solver(mixture, schedule=schedule, nfe=4, shape=(2,), num_pairs=1024, batch_size=128, epochs=100)
    x_T = torch.randn(20000, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ours = _component_errors(mixture, ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T))
    plain = []
    for name in ("unipc", "dpm-solver++", "dpm-solver++-sde", "deis", "ipndm"):
        for spacing in ("ays", "trailing", "karras", "logsnr", "sgm-uniform"):
            steps = ds.steps_for_nfe(name, schedule, 4, spacing)
            x = ds.sample(
                mixture,
                schedule=schedule,
                sampler=name,
                steps=steps,
                spacing=spacing,
                x_T=x_T,
                generator=torch.Generator().manual_seed(1),
            )
            plain.append(_component_errors(mixture, x))
    best_mean, best_var = min(p[0] for p in plain), min(p[1] for p in plain)
    assert ours[0] < 0.8 * best_mean and ours[1] < 0.8 * best_var, (ours, best_mean, best_var)


def test_frechet_to_is_the_frechet_distance_and_differentiable() -> None:
    """The batch loss equals metrics' eigh-based Fréchet distance of the two sample sets, for fewer rows than
    dimensions too (a rank-deficient batch covariance), and passes a finite gradient."""
    from diffsampler.learned import frechet_to, pool_stats
    from diffsampler.metrics.frechet import frechet_distance, gaussian_stats
    from diffsampler.tensors import sqrt_psd

    g = torch.Generator().manual_seed(4)
    pool = torch.randn(400, 6, generator=g, dtype=F64) @ torch.randn(6, 6, generator=g, dtype=F64)
    for rows in (50, 4):
        f = (torch.randn(rows, 6, generator=g, dtype=F64) + 0.3).requires_grad_(True)
        d = frechet_to(f, pool_stats(pool))
        (mu_f, sigma_f), (mu_p, sigma_p) = gaussian_stats(f.detach()), gaussian_stats(pool)
        want = frechet_distance(mu_f, sigma_f, mu_p, sigma_p)
        # the reference takes √ of the eigenvalues of M = Σ_f^{½}·Σ·Σ_f^{½}; where M is rank-deficient its zeros
        # come out as round-off of ε·‖M‖, each adding up to √(ε·‖M‖): 6 of them at most
        root = sqrt_psd(sigma_f)
        norm = torch.linalg.matrix_norm(root @ sigma_p @ root, ord=2).item()
        assert d.item() == pytest.approx(want, rel=0, abs=6 * (torch.finfo(F64).eps * norm) ** 0.5)
        d.backward()
        assert torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_a_stochastic_solver_learns_its_noise_and_lowers_the_distance_to_the_teacher(mixture, schedule) -> None:
    solver = ds.learn_solver(mixture, schedule=schedule, nfe=4, shape=(2,), base="dpm-solver++-sde", epochs=3)
    assert solver.teacher["sampler"] == "dpm-solver++-sde" and solver.seeds["num_pairs"] == 1024
    assert solver.init_spacing == "trailing" and solver.extra["loss"] == "frechet"
    assert solver.heldout_error < solver.init_heldout_error and solver.etas != [1.0] * 4
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T, seed=1)
    assert torch.equal(a, ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T, seed=1))
    assert not torch.equal(a, ds.sample(mixture, schedule=schedule, solver=solver, x_T=x_T, seed=2))
