"""Sampler overhead and end-to-end speed against diffusers' scheduler loops, side by side in one run.

    python benchmarks/speed.py [--repeats 5]

1. Overhead: a zero-cost backbone (it returns a stored tensor) isolates the sampler's own work;
   diffsampler's DDIM and DPM-Solver++(2M) against ``scheduler.step`` loops of diffusers'
   DDIMScheduler and DPMSolverMultistepScheduler on the same grid and batch.
2. End to end: DDIM, 50 steps, the bundled digits UNet, batch 64, against a diffusers DDIM loop
   over the same UNet. Median of ``--repeats`` runs each, interleaved, with every pair's ratio
   (their spread is the machine's noise) and each loop's time per step outside the UNet.
   Writes benchmarks/results/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

import diffsampler as ds

ROOT = Path(__file__).resolve().parent


def machine() -> str:
    """A one-line description of where the numbers were measured."""
    return f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def paired(ours, theirs, repeats: int) -> tuple[float, float, list[float]]:
    """Median seconds of each and the per-pair ratios, runs interleaved so that both see the same machine state."""
    ours(), theirs()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b), [x / y for x, y in zip(a, b)]


def overhead(repeats: int, steps: int = 50, shape=(64, 3, 32, 32)) -> dict:
    eps = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.1
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    zero_cost = lambda x, t: eps  # noqa: E731
    sched = ds.SCHEDULES.get("linear")()
    out = {}
    ddim = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    ddim.set_timesteps(steps)
    dpm = DPMSolverMultistepScheduler(beta_schedule="linear", algorithm_type="dpmsolver++", solver_order=2)
    dpm.set_timesteps(steps)
    dpm_grid = torch.cat([sched.index_to_t(dpm.timesteps), torch.zeros(1, dtype=torch.float64)])

    def diffusers_ddim():
        x = x_T
        for t in ddim.timesteps:
            x = ddim.step(zero_cost(x, t), t, x).prev_sample

    def diffusers_dpm():
        dpm.set_timesteps(steps)  # resets its multistep state
        x = x_T
        for t in dpm.timesteps:
            x = dpm.step(zero_cost(x, t), t, x).prev_sample

    def ours_ddim():
        return ds.sample(zero_cost, schedule=sched, sampler="ddim", steps=steps, spacing="leading", x_T=x_T, clip=False)

    def ours_dpm():
        return ds.sample(zero_cost, schedule=sched, sampler="dpm-solver++", grid=dpm_grid, x_T=x_T, clip=False)

    for name, ours, theirs in (("ddim", ours_ddim, diffusers_ddim), ("dpm-solver++", ours_dpm, diffusers_dpm)):
        a, b, _ = paired(ours, theirs, repeats)
        out[name] = {
            "diffsampler_ms_per_step": 1e3 * a / steps,
            "diffusers_ms_per_step": 1e3 * b / steps,
            "ratio": a / b,
        }
    return {"batch": list(shape), "steps": steps, **out}


def end_to_end(repeats: int, steps: int = 50, batch: int = 64) -> dict:
    bb = ds.bundled.load_model("digits")
    unet = bb.unet
    y = torch.arange(batch) % 10
    x_T = torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ref = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(steps)

    def diffusers_loop():
        x = x_T
        with torch.no_grad():
            for t in ref.timesteps:
                x = ref.step(unet(x, t, class_labels=y).sample, t, x).prev_sample
        return x

    def ours():
        return ds.sample(
            bb, sampler="ddim", steps=steps, spacing="leading", x_T=x_T, cond={"class_labels": y}, clip=False
        )

    torch.testing.assert_close(ours(), diffusers_loop(), rtol=1e-3, atol=1e-3)

    in_unet = [0.0]  # time inside the UNet, to show what each loop adds around it
    forward = unet.forward

    def timed_forward(*args, **kwargs):
        start = time.perf_counter()
        result = forward(*args, **kwargs)
        in_unet[0] += time.perf_counter() - start
        return result

    def outside(fn) -> float:
        unet.forward, in_unet[0] = timed_forward, 0.0
        start = time.perf_counter()
        fn()
        total = time.perf_counter() - start
        unet.forward = forward
        return 1e3 * (total - in_unet[0]) / steps

    a, b, ratios = paired(ours, diffusers_loop, repeats)
    around = [(outside(ours), outside(diffusers_loop)) for _ in range(3)]
    return {
        "batch": batch,
        "steps": steps,
        "diffsampler_s": a,
        "diffusers_s": b,
        "ratio": a / b,
        "pair_ratios": sorted(round(r, 3) for r in ratios),
        "diffsampler_ms_per_step_outside_unet": statistics.median(o for o, _ in around),
        "diffusers_ms_per_step_outside_unet": statistics.median(t for _, t in around),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    result = {
        "command": f"python benchmarks/speed.py --repeats {a.repeats}",
        "machine": machine(),
        "overhead_zero_cost_backbone": overhead(a.repeats),
        "end_to_end_digits_ddim50": end_to_end(a.repeats),
    }
    (ROOT / "results" / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
