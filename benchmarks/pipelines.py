"""diffsampler against diffusers' StableDiffusionPipeline on the same tiny pipeline, side by side in one run.

    python benchmarks/pipelines.py [--repeats 7] [--steps 20] [--width 32] [--size 64] [--device cpu|cuda]
                                   [--dtype fp32|fp16]

A tiny random Stable Diffusion 1.x pipeline (the tests' ``tests/tiny_pipelines.py``; UNet widths ``width``,
2·``width``) is built offline; both sides encode the prompts, run DDIM (the config's leading spacing,
steps_offset 1, the last step to ᾱ_0 as the config says) with CFG 7.5 on two prompts and a negative
one from the same latents, and decode to pixels. Median wall time of ``--repeats`` interleaved runs
each, and every pair's ratio (their spread is the machine's noise); the outputs are also compared.
Writes benchmarks/results/pipelines[-<device>-<dtype>].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline
from speed import ROOT, machine, paired

import diffsampler as ds
from diffsampler.backbones import DiffusersBackbone
from diffsampler.guidance import CFG

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: its tests build the tiny pipeline
from tests.tiny_pipelines import tiny_sd_pipeline  # noqa: E402

PROMPTS, NEGATIVE, SCALE = ["a photo of 2 cats", "a dog, 3"], "blurry", 7.5


def run(repeats: int, steps: int, width: int, size: int, device: str, dtype: str) -> dict:
    dt = {"fp32": torch.float32, "fp16": torch.float16}[dtype]
    with tempfile.TemporaryDirectory() as tmp:
        folder = tiny_sd_pipeline(Path(tmp) / "sd", width=width)
        pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dt).to(device)
        pipe.set_progress_bar_config(disable=True)
        bb = DiffusersBackbone.from_pretrained(folder, device=device, dtype=dt).resize(size, size)
    latents = torch.randn(len(PROMPTS), *bb.sample_shape, generator=torch.Generator().manual_seed(0)).to(device, dt)
    out: dict[str, torch.Tensor] = {}

    def ours() -> None:
        cond = bb.encode_prompt(PROMPTS, NEGATIVE)
        x = ds.sample(
            bb,
            sampler="ddim",
            steps=steps,
            spacing="leading",
            spacing_options={"steps_offset": 1},
            x_T=latents,
            guidance=CFG(scale=SCALE),
            cond=cond,
            set_alpha_to_one=False,
        )
        out["ours"] = (bb.decode(x) / 2 + 0.5).clamp(0, 1)

    def theirs() -> None:  # the pixels on the CPU, as ours: on a GPU the timing then includes the wait
        out["theirs"] = pipe(
            PROMPTS,
            negative_prompt=[NEGATIVE] * len(PROMPTS),
            num_inference_steps=steps,
            guidance_scale=SCALE,
            height=size,
            width=size,
            latents=latents,
            output_type="pt",
        ).images.cpu()

    a, b, ratios = paired(ours, theirs, repeats)
    if device == "cuda":
        torch.cuda.synchronize()
    diff = ((out["ours"].float() - out["theirs"].float()).abs().max() / out["theirs"].float().abs().max()).item()
    return {
        "machine": machine(),
        "device": device,
        "dtype": dtype,
        "steps": steps,
        "unet_widths": [width, 2 * width],
        "image_size": size,
        "batch": len(PROMPTS),
        "cfg_scale": SCALE,
        "repeats": repeats,
        "diffsampler_s": round(a, 4),
        "diffusers_s": round(b, 4),
        "ratio_of_medians": round(a / b, 4),
        "pair_ratios": [round(r, 4) for r in ratios],
        "images_max_rel_difference": diff,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16"])
    a = p.parse_args()
    result = run(a.repeats, a.steps, a.width, a.size, a.device, a.dtype)
    result["command"] = (
        f"python benchmarks/pipelines.py --repeats {a.repeats} --steps {a.steps} --width {a.width} "
        f"--size {a.size} --device {a.device} --dtype {a.dtype}"
    )
    name = "pipelines" if (a.device, a.dtype) == ("cpu", "fp32") else f"pipelines-{a.device}-{a.dtype}"
    (ROOT / "results" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    ds.retain_freed_memory()
    main()
