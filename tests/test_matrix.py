"""Every sampler × every schedule: runs, finite, NFE as documented, reproducible, batch-size invariant."""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds

STEPS = 6


def documented_nfe(key: str | tuple[str, str], n: int) -> int:
    """NFE as each sampler's docstring states it, for n steps on grids that end at t = 0
    (restart: + 2·restarts·restart_steps where the grid reaches below restart_max)."""
    two = {("pf-ode", "heun"), "heun", "dpm-solver++-2s", "restart", "dpm-2", "dpm-2-ancestral"}
    return (
        2 * n - 1
        if key in two
        else 4 * n - 3
        if key == ("pf-ode", "rk4")
        else n + 9
        if key == "pndm"
        else n + 1
        if key == "plms"
        else n
    )


def zero_snr_start(schedule: str) -> bool:
    """sample() takes a grid's first step itself (one evaluation) where it starts at zero SNR."""
    return ds.SCHEDULES.get(schedule)().alpha_bar(1.0).item() == 0


CASES = [
    ("ddpm", {}),
    ("ddpm", {"variance": "large"}),
    ("ddim", {}),
    ("ddim", {"eta": 0.5}),
    ("euler-maruyama", {}),
    ("pf-ode", {"method": "euler"}),
    ("pf-ode", {"method": "heun"}),
    ("pf-ode", {"method": "rk4"}),
    ("pf-ode", {"method": "rk45"}),
    ("dpm-solver++", {}),
    ("euler", {}),
    ("euler", {"s_churn": 1.0}),
    ("euler-ancestral", {}),
    ("heun", {}),
    ("heun", {"s_churn": 1.0}),
    ("dpm-2", {}),
    ("dpm-2", {"s_churn": 1.0}),
    ("dpm-2-ancestral", {}),
    ("dpm-solver++-sde", {}),
    ("dpm-solver++-sde", {"order": 3}),
    ("dpm-solver++", {"order": 3}),
    ("lms", {}),
    ("dpm-solver++-2s", {}),
    ("dpm-solver++-2s", {"eta": 1.0}),
    ("unipc", {}),
    ("unipc", {"order": 3, "variant": "bh1"}),
    ("unipc", {"corrector": False}),
    ("deis", {}),
    ("deis", {"order": 3}),
    ("ipndm", {}),
    ("ipndm-v", {}),
    ("pndm", {}),
    ("plms", {}),
    ("dpm-solver++-singlestep", {}),
    ("dpm-solver++-singlestep", {"order": 3}),
    ("restart", {}),
    ("restart", {"restarts": 2, "restart_steps": 3}),
    ("dpm-fast", {}),
    ("dpm-fast", {"eta": 1.0}),
    ("dpm-adaptive", {}),
    ("dpm-adaptive", {"order": 2}),
]


def _restart_nfe(schedule: str, options: dict) -> int:
    """restart's extra cost: 2·restarts·K where the grid level nearest σ = 0.1 is below σ = 2, with K = restart_steps
    or, by default, the grid's own levels in (σ_near, 2] (at least 2)."""
    grid = ds.sampling.time_grid("restart", ds.SCHEDULES.get(schedule)(), STEPS)
    sig = ds.SCHEDULES.get(schedule)().sigma(grid[1:-1]).tolist()
    near = min(sig, key=lambda s: abs(torch.log(torch.tensor(s / 0.1)).item()))
    k = options.get("restart_steps", max(2, sum(1 for s in sig if near < s <= 2.0)))
    return 2 * options.get("restarts", 1) * k if near < 2.0 else 0


def test_cases_cover_every_builtin_sampler() -> None:
    assert {name for name, _ in CASES} == {n for n in ds.SAMPLERS.names() if ds.SAMPLERS.origin(n) == "built-in"}


def _run(mixture, name, options, schedule, x_T=None, generator=None, seed=None, shape=(8, 2)):
    return ds.sample(
        mixture,
        schedule=schedule,
        sampler=name,
        steps=STEPS,
        x_T=x_T,
        shape=None if x_T is not None else shape,
        seed=seed,
        generator=generator,
        dtype=torch.float64,
        full_output=True,
        **options,
    )


@pytest.mark.parametrize("schedule", ds.SCHEDULES.names())
@pytest.mark.parametrize("name,options", CASES)
def test_sampler_schedule_matrix(mixture, name: str, options: dict, schedule: str) -> None:
    r = _run(mixture, name, options, schedule, seed=11)
    assert r.samples.shape == (8, 2) and torch.isfinite(r.samples).all()
    key = (name, options.get("method", "heun")) if name == "pf-ode" else name
    first = int(zero_snr_start(schedule))
    if key == ("pf-ode", "rk45"):  # 1 + 6 per iteration; samples that finish early stop costing
        assert (r.calls - 1 - first) % 6 == 0 and 7 <= r.nfe <= r.calls
    elif name == "dpm-adaptive":  # order evaluations per iteration; samples that finish early stop costing
        order = options.get("order", 3)
        assert (r.calls - first) % order == 0 and 2 * order <= r.nfe <= r.calls
    else:
        extra = _restart_nfe(schedule, options) if name == "restart" else 0
        assert r.nfe == r.calls == first + documented_nfe(key, STEPS - first) + extra
    again = _run(mixture, name, options, schedule, seed=11)
    assert torch.equal(r.samples, again.samples), "same seed must give bitwise identical output"


@pytest.mark.parametrize("name,options", CASES)
def test_sample_i_does_not_depend_on_batch(mixture, name: str, options: dict) -> None:
    batch = _run(mixture, name, options, "linear", seed=5).samples
    for i in (0, 3, 7):
        single = _run(mixture, name, options, "linear", generator=ds.generators(5, 1, start=i), shape=(1, 2)).samples
        torch.testing.assert_close(single[0], batch[i], rtol=1e-12, atol=1e-12)
    other = _run(mixture, name, options, "linear", seed=6).samples
    assert not torch.allclose(other, batch), "a different seed must change the samples"


@pytest.mark.parametrize("name,options", CASES)
def test_every_sampler_reports_whole_batch_states(mixture, name: str, options: dict) -> None:
    """The trajectory stacks one state of the whole batch per reported step (an adaptive sampler's samples may
    each be at their own time)."""
    r = ds.sample(
        mixture,
        schedule="linear",
        sampler=name,
        steps=STEPS,
        shape=(8, 2),
        seed=3,
        dtype=torch.float64,
        return_trajectory=True,
        full_output=True,
        **options,
    )
    assert r.trajectory.shape[1:] == (8, 2) and r.trajectory.shape[0] >= 2 and torch.isfinite(r.trajectory).all()
    assert r.denoised.shape[1:] == (8, 2) and r.denoised.shape[0] == r.trajectory.shape[0] - 1


def test_trajectory_and_callback(mixture) -> None:
    seen = []
    r = ds.sample(
        mixture,
        schedule="linear",
        sampler="ddim",
        steps=5,
        shape=(3, 2),
        seed=0,
        return_trajectory=True,
        callback=seen.append,
    )
    assert r.trajectory.shape == (6, 3, 2) and r.denoised.shape == (5, 3, 2)
    assert torch.equal(r.trajectory[-1], r.samples)
    assert [s["nfe"] for s in seen] == [1, 2, 3, 4, 5] and [s["i"] for s in seen] == list(range(5))
    assert r.grid.tolist() == ds.make_grid(ds.SCHEDULES.get("linear")(), 5, "trailing").tolist()


def test_ddim_eta_one_is_respaced_ddpm(mixture) -> None:
    a = ds.sample(
        mixture, schedule="cosine", sampler="ddim", eta=1.0, steps=25, shape=(16, 2), seed=2, dtype=torch.float64
    )
    b = ds.sample(mixture, schedule="cosine", sampler="ddpm", steps=25, shape=(16, 2), seed=2, dtype=torch.float64)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_clip_bounds_the_denoised_estimate(mixture) -> None:
    seen = []
    ds.sample(
        mixture,
        schedule="linear",
        sampler="ddim",
        steps=10,
        shape=(64, 2),
        seed=0,
        clip=1.0,
        callback=lambda s: seen.append(s["denoised"]),
    )
    assert max(d.abs().max().item() for d in seen) <= 1.0 + 1e-6
    free = []
    ds.sample(
        mixture,
        schedule="linear",
        sampler="ddim",
        steps=10,
        shape=(64, 2),
        seed=0,
        callback=lambda s: free.append(s["denoised"]),
    )
    assert max(d.abs().max().item() for d in free) > 2.0


def test_callback_steps_count_from_zero_after_a_step_from_zero_snr(mixture) -> None:
    """On rectified flow sample takes the first step (from zero SNR) itself: it is step 0, the sampler's follow."""
    seen = []
    ds.sample(mixture, schedule=ds.RectifiedFlow(), sampler="ddim", steps=5, shape=(2, 2), seed=0, callback=seen.append)
    assert [s["i"] for s in seen] == list(range(5)) and [s["nfe"] for s in seen] == [1, 2, 3, 4, 5]
