"""The digits training recipe: min-SNR weights, EMA warm-up, and a resume that ends with the same weights."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from diffsampler import training
from diffsampler.schedules import SCHEDULES


def test_min_snr_weight_is_min_snr_gamma_over_snr() -> None:
    ab = SCHEDULES.get("linear")().alphas_cumprod
    snr = ab / (1 - ab)
    w = training.min_snr_weight(ab, 5.0)
    assert torch.equal(w[snr <= 5], torch.ones_like(w[snr <= 5]))
    assert torch.allclose(w[snr > 5], 5 / snr[snr > 5], rtol=1e-12)
    assert (snr > 5).any() and (snr <= 5).any()
    assert torch.equal(training.min_snr_weight(ab, None), torch.ones_like(ab))


def test_ema_warmup_starts_at_a_tenth_and_reaches_the_decay() -> None:
    assert training.ema_decay(0, 0.999, True) == pytest.approx(0.1)
    assert training.ema_decay(90, 0.999, True) == pytest.approx(91 / 100)
    assert training.ema_decay(100_000, 0.999, True) == 0.999
    assert training.ema_decay(0, 0.999, False) == 0.999


def test_step_batches_cover_each_epoch_once() -> None:
    n, batch = 50, 8
    seen = torch.cat([training._step_batch(s, n, batch, seed=3) for s in range(n // batch)])
    assert len(set(seen.tolist())) == len(seen) == (n // batch) * batch
    assert torch.equal(training._step_batch(7, n, batch, 3), training._step_batch(7, n, batch, 3))
    assert not torch.equal(training._step_batch(0, n, batch, 3), training._step_batch(n // batch, n, batch, 3))


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, monkeypatch) -> None:
    kw = {"iters": 4, "batch": 8, "checkpoint_every": 1, "seed": 1}
    whole = training.train_unet(tmp_path / "whole", **kw)
    steps = {"n": 0}
    step = training.Progress.step

    def interrupt_after_two(self, loss: float) -> None:
        step(self, loss)
        steps["n"] += 1
        if steps["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.Progress, "step", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        training.train_unet(tmp_path / "cut", **kw)
    assert (tmp_path / "cut" / training.CHECKPOINT).exists() and not (tmp_path / "cut" / "unet").exists()
    monkeypatch.setattr(training.Progress, "step", step)
    with pytest.raises(ValueError, match="written with other settings"):
        training.train_unet(tmp_path / "cut", **{**kw, "iters": 5})
    resumed = training.train_unet(tmp_path / "cut", **kw)
    a = load_file(str(tmp_path / "whole" / "unet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(tmp_path / "cut" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["final_loss"] == whole["final_loss"]
    assert not (tmp_path / "cut" / training.CHECKPOINT).exists()


def test_bad_recipe_values_are_one_line_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="p_uncond must lie in \\[0, 1\\], got 1.5"):
        training.train_unet(tmp_path, iters=1, p_uncond=1.5)
    with pytest.raises(ValueError, match="batch must lie in \\[1, 4500\\], got 0"):
        training.train_unet(tmp_path, iters=1, batch=0)
