"""Writing samples: PNG grids, folders of PNGs, raw tensors, all atomically (no half-written output)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor

from .data import to_uint8

__all__ = ["OUTPUT_KINDS", "output_kind", "check_writable", "save_samples", "grid_image", "save_png",
           "replace_atomically"]

OUTPUT_KINDS = (".png", ".safetensors", ".npz", "folder")


def output_kind(path: Path) -> str:
    """``.png`` grid, ``.safetensors`` / ``.npz`` raw tensors, or ``folder`` of PNGs (no suffix)."""
    if path.suffix == "" or (path.exists() and path.is_dir()):
        return "folder"
    if path.suffix.lower() in OUTPUT_KINDS:
        return path.suffix.lower()
    raise ValueError(f"cannot write {str(path)!r}: unknown output kind {path.suffix!r}; "
                     f"accepted: a .png grid, .safetensors, .npz, or a folder (a path without suffix)")


def check_writable(path: Path) -> None:
    """Fail early, before any sampling, when ``path`` cannot be written."""
    output_kind(path)
    parent = path.parent if output_kind(path) != "folder" or not path.exists() else path
    if not parent.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {str(path)!r}: folder {str(parent)!r} is not writable")
    if path.exists() and path.is_dir() and output_kind(path) != "folder":
        raise ValueError(f"cannot write {str(path)!r}: it is a folder")


def grid_image(x: Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Images [N, C, H, W] in [−1, 1] → one uint8 grid [H', W', C] with ``nrow`` images a row."""
    n, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    canvas = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    pixels = to_uint8(x.detach().float().cpu()).permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = pixels[i]
    return canvas


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def _default_mode() -> int:
    """0o666 less the process umask: what a plain open() would have given the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def replace_atomically(path: Path, write) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place only when ``write`` succeeded."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(array: np.ndarray, path: Path) -> None:
    replace_atomically(path, lambda p: _pil(array).save(p, format="PNG"))


def save_samples(x: Tensor, path: Path, labels: Tensor | None = None, nrow: int | None = None) -> str:
    """Write samples to ``path`` by its kind; returns the kind."""
    kind = output_kind(path)
    if kind == ".png":
        save_png(grid_image(x, nrow), path)
    elif kind == ".safetensors":
        from safetensors.torch import save_file

        tensors = {"samples": x.detach().float().cpu().contiguous()}
        if labels is not None:
            tensors["labels"] = labels.cpu().contiguous()
        replace_atomically(path, lambda p: save_file(tensors, str(p)))
    elif kind == ".npz":
        arrays = {"samples": x.detach().float().cpu().numpy()}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy()
        replace_atomically(path, lambda p: np.savez(p.open("wb"), **arrays))
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent if not path.exists() else path))
        try:
            for i in range(x.shape[0]):
                _pil(grid_image(x[i:i + 1], 1, pad=0)).save(tmp / f"{i:05d}.png", format="PNG")
            path.mkdir(exist_ok=True)
            for f in sorted(tmp.iterdir()):
                os.replace(f, path / f.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return kind
