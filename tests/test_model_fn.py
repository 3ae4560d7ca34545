"""ModelFn, the ε-function samplers call: conditioning halves, clipping pairs, counting, second networks."""

from __future__ import annotations

import pytest
import torch

import diffsampler as ds
from diffsampler.guidance import CFG
from diffsampler.guidance.autoguidance import AutoGuidance
from diffsampler.guidance.cfg_pp import CFGPP
from diffsampler.model_fn import ModelFn, split_cond

F64 = torch.float64


class Recording(ds.Backbone):
    """ε = tanh(x) + 0.1·label, recording the conditioning keys of every call."""

    null_class_label = 3

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def eps(self, x, t, schedule, class_labels=None, **cond):
        self.seen.append({"class_labels", *cond} if class_labels is not None else set(cond))
        y = torch.zeros(x.shape[0], dtype=x.dtype) if class_labels is None else class_labels.to(x.dtype)
        return torch.tanh(x) + 0.1 * y.reshape(-1, *[1] * (x.dim() - 1))


@pytest.fixture
def setting():
    s = ds.SCHEDULES.get("linear")()
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    t = torch.full((4,), 0.3, dtype=F64)
    return s, x, t


def test_split_cond_moves_negative_keys_to_their_own_half() -> None:
    pos, neg = split_cond({"encoder_hidden_states": 1, "negative_encoder_hidden_states": 2, "time_ids": 3})
    assert pos == {"encoder_hidden_states": 1, "time_ids": 3} and neg == {"encoder_hidden_states": 2}


def test_without_guidance_the_network_sees_only_the_positive_half(setting) -> None:
    s, x, t = setting
    bb = Recording()
    fn = ModelFn(bb, s, batch=4, cond={"class_labels": torch.tensor([0, 1, 2, 0]), "negative_class_labels": 3})
    fn(x, t)
    assert bb.seen == [{"class_labels"}] and fn.nfe == 1 and fn.calls == 1


def test_pair_is_one_tensor_twice_unless_clipping_or_a_renoising_guidance_splits_it(setting) -> None:
    s, x, t = setting
    plain = ModelFn(Recording(), s, batch=4)
    e, e_r = plain.pair(x, t)
    assert e is e_r  # samplers test identity to skip the re-noising correction
    clipped = ModelFn(Recording(), s, batch=4, clip=1.0)
    c, c_same = clipped.pair(x, t)
    c2, raw = clipped.pair(x, t, raw=True)
    assert c_same is c and torch.equal(c2, c) and torch.equal(raw, e) and not torch.equal(c, e)
    x0 = (x - s.std(t)[:, None] * c) / s.alpha(t)[:, None]
    assert x0.abs().max() <= 1 + 1e-12  # ε' is the ε of clip(x̂_0)
    pp = ModelFn(Recording(), s, batch=4, guidance=CFGPP(scale=0.5), cond={"class_labels": torch.tensor([0, 1, 2, 0])})
    g, u = pp.pair(x, t)
    assert pp.renoise and pp.nfe == 2
    torch.testing.assert_close(u, torch.tanh(x) + 0.3)  # the unconditional ε (null label 3)


def test_a_second_network_is_counted_too(setting) -> None:
    s, x, t = setting
    fn = ModelFn(Recording(), s, batch=4, guidance=AutoGuidance(Recording(), scale=2.0))
    fn(x, t)
    assert fn.nfe == 2 and fn.calls == 2


def test_capabilities_are_read_from_plain_attributes(setting) -> None:
    s, _, _ = setting

    class Plugin:  # a guidance that declares nothing: the defaults
        def __call__(self, eps, schedule, backbone=None):
            return eps

    fn = ModelFn(Recording(), s, batch=1, guidance=Plugin())
    assert not fn.renoise and not fn.zero_snr
    assert ModelFn(Recording(), s, batch=1, guidance=CFG(rescale=0.5, rescale_space="epsilon")).zero_snr is False
    assert ModelFn(Recording(), s, batch=1, guidance=CFG()).zero_snr is True
