"""Perturbed-attention guidance against diffusers' PAG attention processors and PAG pipelines' formula."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from diffusers.models.attention_processor import PAGCFGIdentitySelfAttnProcessor2_0, PAGIdentitySelfAttnProcessor2_0
from diffusers.pipelines.pag.pag_utils import PAGMixin

import diffsampler as ds
from diffsampler.backbones.diffusers_unet import DiffusersBackbone
from diffsampler.guidance import CFG
from diffsampler.guidance.pag import PAG, perturbed, self_attention_layers

F64 = torch.float64


def pixel_unet() -> UNet2DModel:
    torch.manual_seed(0)
    return (
        UNet2DModel(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            attention_head_dim=4,
            num_class_embeds=4,
        )
        .eval()
        .double()
    )


def text_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return (
        UNet2DConditionModel(
            sample_size=8,
            in_channels=2,
            out_channels=2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            norm_num_groups=4,
            cross_attention_dim=6,
            attention_head_dim=2,
        )
        .eval()
        .double()
    )


def _with_diffusers_processor(unet, layers, processor, *args, **kw):
    modules = self_attention_layers(unet, layers)
    saved = [m.processor for m in modules]
    for m in modules:
        m.processor = processor
    try:
        return unet(*args, **kw).sample
    finally:
        for m, p in zip(modules, saved):
            m.processor = p


@pytest.mark.parametrize("layers", [("mid",), ("down_blocks.1", "up_blocks"), ("mid", "attentions.0")])
def test_identity_attention_is_diffusers_pag_processor_pixel_unet(layers) -> None:
    unet = pixel_unet()
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    t, y = torch.tensor([10, 200, 500, 700, 900, 999] * 1), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = _with_diffusers_processor(unet, layers, PAGIdentitySelfAttnProcessor2_0(), x, t, class_labels=y)
    with perturbed(self_attention_layers(unet, layers), 3):
        got = unet(x, t, class_labels=y).sample
    torch.testing.assert_close(got[3:], expected[3:], rtol=1e-12, atol=1e-12)
    # diffusers' processor splits the batch in two halves: its first half is attention on rows 0–2 only
    plain = unet(x, t, class_labels=y).sample
    torch.testing.assert_close(got[:3], plain[:3], rtol=1e-12, atol=1e-12)
    assert (got[3:] - plain[3:]).abs().max() > 1e-4  # the perturbation changes the prediction
    assert all(
        not isinstance(m.processor, type(None)) and type(m.processor).__name__ != "_Perturbed"
        for m in self_attention_layers(unet, layers)
    )  # restored


def test_identity_attention_skips_cross_attention_in_text_unets() -> None:
    unet = text_unet()
    layers = self_attention_layers(unet, ("down_blocks.0", "up_blocks.1"))
    assert layers and all(not m.is_cross_attention for m in layers)
    x = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=F64)
    text = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.tensor([50, 300, 600, 900])
    expected = _with_diffusers_processor(
        unet, ("down_blocks.0", "up_blocks.1"), PAGIdentitySelfAttnProcessor2_0(), x, t, encoder_hidden_states=text
    )
    with perturbed(layers, 2):
        got = unet(x, t, encoder_hidden_states=text).sample
    torch.testing.assert_close(got[2:], expected[2:], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_pag_is_the_pag_pipelines_guidance(cfg_scale: float) -> None:
    unet = pixel_unet()
    bb = DiffusersBackbone(unet, null_class_label=3)
    s = ds.SCHEDULES.get("linear")()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
    t = torch.tensor([0.9, 0.5, 0.1], dtype=F64)
    y = torch.tensor([0, 1, 2])
    eps = lambda xx, tt, **c: bb.eps(xx, tt, s, **c)  # noqa: E731
    got = PAG(scale=2.0, layers="mid", cfg_scale=cfg_scale)(eps, s, bb)(x, t, class_labels=y)
    seen = {}  # the UNet's own timesteps for t, as the backbone maps them
    hook = unet.register_forward_pre_hook(lambda m, a: seen.update(t=a[1][:3].clone()))
    bb.eps(x, t, s, class_labels=y)
    hook.remove()
    if cfg_scale == 1:
        pred = _with_diffusers_processor(
            unet,
            ("mid",),
            PAGIdentitySelfAttnProcessor2_0(),
            torch.cat([x, x]),
            torch.cat([seen["t"]] * 2),
            class_labels=torch.cat([y, y]),
        )
    else:
        null = torch.full_like(y, 3)
        pred = _with_diffusers_processor(
            unet,
            ("mid",),
            PAGCFGIdentitySelfAttnProcessor2_0(),
            torch.cat([x, x, x]),
            torch.cat([seen["t"]] * 3),
            class_labels=torch.cat([null, y, y]),
        )
    pipe = SimpleNamespace(_get_pag_scale=lambda t: 2.0)
    expected = PAGMixin._apply_perturbed_attention_guidance(pipe, pred, cfg_scale != 1, cfg_scale, None)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    cfg = CFG(scale=cfg_scale)(eps, s, bb)(x, t, class_labels=y)
    assert (got - cfg).abs().max() > 1e-4


@pytest.mark.parametrize("sampler", ds.SAMPLERS.names())
def test_pag_runs_with_every_sampler_and_counts_its_evaluations(sampler: str) -> None:
    bb = DiffusersBackbone(pixel_unet(), null_class_label=3)
    kw = dict(schedule="linear", sampler=sampler, steps=3, shape=(2, 1, 8, 8), seed=0, dtype=F64, full_output=True)
    plain = ds.sample(bb, **kw)
    r = ds.sample(bb, guidance=PAG(scale=1.5), **kw)
    adaptive = ds.SAMPLERS.meta(sampler)["adaptive"]  # its steps follow the guided ε
    assert torch.isfinite(r.samples).all() and (r.nfe == 2 * plain.nfe or adaptive and r.nfe >= 12)
    assert (r.samples - plain.samples).abs().max() > 1e-6
    if sampler == "ddim":
        both = ds.sample(bb, guidance=PAG(scale=1.5, cfg_scale=2.0), cond={"class_labels": 1}, **kw)
        assert both.nfe == 3 * plain.nfe


def test_pag_errors(mixture) -> None:
    bb = DiffusersBackbone(pixel_unet(), null_class_label=3)
    with pytest.raises(
        ValueError,
        match="pag layer 'nowhere' matches no self-attention layer; the model has: down_blocks.1.attentions.0",
    ):
        ds.sample(bb, schedule="linear", steps=2, shape=(1, 1, 8, 8), seed=0, guidance=PAG(layers="nowhere"))
    with pytest.raises(
        ValueError, match="pag needs a diffusers UNet with self-attention layers; the model is GaussianMixture"
    ):
        ds.sample(mixture, schedule="linear", steps=2, shape=(1, 2), seed=0, guidance=PAG())
    with pytest.raises(ValueError, match="pag scale must be a finite number ≥ 0, got -1"):
        PAG(scale=-1)
    with pytest.raises(ValueError, match="pag layers must be one or more layer names"):
        PAG(layers=())
