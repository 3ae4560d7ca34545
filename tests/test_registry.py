"""Registries: built-ins, collisions, unknown names, and third-party plugins through entry points."""

from __future__ import annotations

import sys

import pytest
import torch

import diffsampler as ds
from diffsampler.registry import Registry, UnknownNameError

PLUGIN = '''
"""A third-party sampler: plain Euler on the probability-flow ODE in (σ, x/√ᾱ)."""

def sampler(eps_fn, x, grid, schedule, *, noise_sampler, callback=None, scale: float = 1.0):
    """Plugin Euler sampler."""
    from diffsampler.samplers.base import times_like
    sig = schedule.sigma(grid).tolist()
    sig[-1] = 0.0 if grid[-1] == 0 else sig[-1]
    y = x * (1 + sig[0] ** 2) ** 0.5
    for i in range(len(sig) - 1):
        y = y + scale * (sig[i + 1] - sig[i]) * eps_fn(y / (1 + sig[i] ** 2) ** 0.5, times_like(grid[i], x))
    return y / (1 + sig[-1] ** 2) ** 0.5
'''


def write_plugin(folder):
    """A distribution 'ds-plugin-demo' whose entry point adds the sampler 'demo-euler'."""
    (folder / "ds_plugin_demo.py").write_text(PLUGIN)
    info = folder / "ds_plugin_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ds-plugin-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[diffsampler.samplers]\ndemo-euler = ds_plugin_demo:sampler\n")


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    write_plugin(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("ds_plugin_demo", None)


def test_plugin_sampler_is_listed_lazily_and_samples(plugin_on_path, mixture) -> None:
    assert "demo-euler" in ds.SAMPLERS.names()
    assert "ds_plugin_demo" not in sys.modules, "listing must not import the plugin"
    assert ds.SAMPLERS.origin("demo-euler") == "ds-plugin-demo"
    x_T = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = ds.sample(mixture, schedule="linear", sampler="demo-euler", steps=12, x_T=x_T, full_output=True)
    assert ours.nfe == 12 and ds.SAMPLERS.get("demo-euler").__module__ == "ds_plugin_demo"
    ref = ds.sample(mixture, schedule="linear", sampler="pf-ode", method="euler", steps=12, spacing="trailing", x_T=x_T)
    plugin_default = ds.sample(mixture, schedule="linear", sampler="demo-euler", steps=12, spacing="trailing", x_T=x_T)
    torch.testing.assert_close(plugin_default, ref)
    with pytest.raises(TypeError, match="unknown option 'eta' for sampler 'demo-euler'; accepted: scale"):
        ds.sample(mixture, schedule="linear", sampler="demo-euler", steps=3, x_T=x_T, eta=0.1)


def test_plugin_follows_sys_path(tmp_path, monkeypatch) -> None:
    write_plugin(tmp_path)
    assert "demo-euler" not in ds.SAMPLERS.names()
    with monkeypatch.context() as m:
        m.syspath_prepend(str(tmp_path))
        assert "demo-euler" in ds.SAMPLERS.names()
    assert "demo-euler" not in ds.SAMPLERS.names()
    with pytest.raises(UnknownNameError):
        ds.SAMPLERS.get("demo-euler")


def test_unknown_name_lists_known() -> None:
    for reg in (ds.SAMPLERS, ds.SCHEDULES, ds.BACKBONES, ds.GUIDANCE):
        with pytest.raises(KeyError) as e:
            reg.get("no-such-thing")
        assert isinstance(e.value, UnknownNameError)
        assert "'no-such-thing'" in str(e.value) and all(n in str(e.value) for n in reg.names())
    with pytest.raises(
        UnknownNameError,
        match="unknown sampler 'dddim'; known: ddim, ddpm, deis, dpm-2, dpm-2-ancestral, dpm-adaptive, dpm-fast, dpm-",
    ):
        ds.SAMPLERS.get("dddim")


def test_register_collisions_and_replace() -> None:
    reg: Registry[type] = Registry("widget", "widgets")
    reg.register("a", int)

    @reg.register("b")
    def b() -> int:
        """Makes a ``b``."""
        return 2

    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.register("a", float)
    reg.register("a", float, replace=True)
    assert reg.get("a") is float and reg.get("b") is b and reg.names() == ["a", "b"] and reg.origin("a") == "built-in"
    assert "a" in reg and "z" not in reg
    assert reg.describe("b") == "Makes a b."  # RST markup is not shown in listings


@pytest.mark.parametrize(
    "name,obj,message",
    [
        (123, int, "name must be a non-empty string"),
        ("", int, "name must be a non-empty string"),
        (" x", int, "without surrounding spaces"),
        ("x", 3, "widget 'x' must be callable"),
        ("x", "text", "widget 'x' must be callable"),
    ],
)
def test_register_refuses_bad_names_and_objects(name, obj, message) -> None:
    reg: Registry[type] = Registry("widget", "widgets")
    with pytest.raises((TypeError, ValueError), match=message):
        reg.register(name, obj)
    assert reg.names() == []


def test_builtin_names() -> None:
    assert {"ddpm", "ddim", "euler-maruyama", "pf-ode", "dpm-solver++"} <= set(ds.SAMPLERS.names())
    assert {"linear", "cosine", "sigmoid", "sigmoid-alphabar", "vp-continuous"} <= set(ds.SCHEDULES.names())
    assert {"callable", "gaussian-mixture"} <= set(ds.BACKBONES.names())
    sched = ds.SCHEDULES.get("linear")(num_train_timesteps=1000)
    assert sched.num_train_timesteps == 1000 and sched.config()["beta_end"] == 0.02
