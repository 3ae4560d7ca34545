"""Writing samples: PNG grids, folders of PNGs, raw tensors, all atomically (no half-written output)."""

from __future__ import annotations

import glob
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor

from .data import to_uint8

__all__ = [
    "OUTPUT_KINDS",
    "output_kind",
    "check_writable",
    "save_samples",
    "write_samples",
    "grid_image",
    "save_png",
    "write_png",
    "replace_atomically",
    "Staged",
    "remove_stale_temporaries",
]

OUTPUT_KINDS = (".png", ".safetensors", ".npz", "folder")


def output_kind(path: Path) -> str:
    """``.png`` grid, ``.safetensors`` / ``.npz`` raw tensors, or ``folder`` of PNGs (no suffix)."""
    if path.suffix == "" or (path.exists() and path.is_dir()):
        return "folder"
    if path.suffix.lower() in OUTPUT_KINDS:
        return path.suffix.lower()
    raise ValueError(
        f"cannot write {str(path)!r}: unknown output kind {path.suffix!r}; "
        f"accepted: a .png grid, .safetensors, .npz, or a folder (a path without suffix)"
    )


def check_writable(path: Path, overwrite: bool = False) -> None:
    """Fail early, before any sampling, when ``path`` cannot be written (or is a folder not to be replaced)."""
    kind = output_kind(path)
    if kind == "folder" and path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise ValueError(
                f"cannot write {str(path)!r}: the folder is not empty; choose another or pass --overwrite to replace it"
            )
        if Path.cwd().resolve().is_relative_to(path.resolve()):
            raise ValueError(f"refusing to replace {str(path)!r}: it holds the current folder")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write {str(path)!r}: folder {str(parent)!r} is not writable")
    if path.is_dir() and kind != "folder":
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
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = pixels[i]
    return canvas


def write_png(path: Path, array: np.ndarray) -> None:
    """A uint8 image [H, W, C] as a PNG at ``path`` (as is: see ``save_png`` for the atomic write)."""
    from PIL import Image

    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format="PNG")


def _default_mode() -> int:
    """0o666 less the process umask: what a plain open() would have given the file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_PARTIAL = ".partial-"


def temporary_beside(path: Path, folder: bool = False) -> Path:
    """A new empty file (or folder) beside ``path``, named ``.<name>.partial-<pid>-<random>``."""
    prefix = f".{path.name}{_PARTIAL}{os.getpid()}-"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by processes that no longer run (killed mid-write)."""
    removed = []
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return removed
    for tmp in parent.glob(f".{glob.escape(path.name)}{_PARTIAL}*"):
        pid = tmp.name[len(path.name) + 1 + len(_PARTIAL) :].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _discard(tmp)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _discard(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)


def replace_atomically(path: Path, write) -> None:
    """Write ``path`` through a temporary file beside it, renamed into place only when ``write`` succeeded."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        write(tmp)
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_png(path: str | Path, image: np.ndarray | Tensor, nrow: int | None = None) -> None:
    """Write a PNG atomically: a uint8 array [H, W, C], or images [N, C, H, W] / [C, H, W] in [−1, 1] as a grid."""
    if isinstance(image, Tensor):
        image = grid_image(image if image.dim() == 4 else image[None], nrow)
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
        raise TypeError("save_png takes a uint8 array [H, W, C] or a tensor of images [N, C, H, W] in [-1, 1]")
    replace_atomically(Path(path), lambda p: write_png(p, image))


def _written(path: Path, write, tmp: Path) -> None:
    """``write(tmp)``; a writer's own error type (safetensors', PIL's) becomes an OSError naming ``path``."""
    try:
        write(tmp)
    except OSError:
        raise
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise OSError(f"cannot write {str(path)!r}: {text[0] if text else type(exc).__name__}") from exc


class Staged:
    """Outputs written to temporaries first and switched into place together by ``commit``.

    Used as a context manager: whatever was not committed is removed on every way out
    (an error, Ctrl-C, SIGTERM), so a failed run leaves no output and no temporary behind.
    """

    def __init__(self, overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._pending: list[tuple[Path, Path]] = []

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, *exc: object) -> None:
        for tmp, _ in self._pending:
            _discard(tmp)
        self._pending.clear()

    def file(self, path: Path, write) -> None:
        """Stage ``write(tmp)`` for ``path``."""
        tmp = temporary_beside(path)
        self._pending.append((tmp, path))
        _written(path, write, tmp)
        os.chmod(tmp, _default_mode())

    def folder(self, path: Path, fill) -> None:
        """Stage ``fill(tmp_folder)`` for the folder ``path``."""
        tmp = temporary_beside(path, folder=True)
        self._pending.append((tmp, path))
        _written(path, fill, tmp)
        os.chmod(tmp, 0o777 & ~(0o666 ^ _default_mode()))

    def commit(self) -> None:
        """Move every staged output into place (a replaced folder goes only once the new one is there)."""
        for tmp, path in self._pending:
            if tmp.is_dir() and path.is_dir():
                if any(path.iterdir()):
                    if not self.overwrite:
                        raise ValueError(f"cannot write {str(path)!r}: the folder is not empty; pass --overwrite")
                    old = temporary_beside(path, folder=True)
                    os.replace(path, old)
                    os.replace(tmp, path)
                    shutil.rmtree(old, ignore_errors=True)
                    continue
                path.rmdir()
            os.replace(tmp, path)
        self._pending.clear()


def write_samples(staged: Staged, x: Tensor, path: Path, labels: Tensor | None = None, nrow: int | None = None) -> str:
    """Stage samples for ``path`` by its kind; returns the kind."""
    kind = output_kind(path)
    if kind == ".png":
        staged.file(path, lambda p: write_png(p, grid_image(x, nrow)))
    elif kind == ".safetensors":
        from safetensors.torch import save_file

        tensors = {"samples": x.detach().float().cpu().contiguous()}
        if labels is not None:
            tensors["labels"] = labels.cpu().contiguous()
        staged.file(path, lambda p: save_file(tensors, str(p)))
    elif kind == ".npz":
        arrays = {"samples": x.detach().float().cpu().numpy()}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy()

        def npz(p: Path) -> None:
            with p.open("wb") as fh:
                np.savez(fh, **arrays)

        staged.file(path, npz)
    else:

        def pngs(folder: Path) -> None:
            for i in range(x.shape[0]):
                write_png(folder / f"{i:05d}.png", grid_image(x[i : i + 1], 1, pad=0))

        staged.folder(path, pngs)
    return kind


def save_samples(
    x: Tensor, path: str | Path, labels: Tensor | None = None, nrow: int | None = None, overwrite: bool = False
) -> str:
    """Write samples to ``path`` by its kind (atomically); returns the kind."""
    with Staged(overwrite) as staged:
        kind = write_samples(staged, x, Path(path), labels, nrow)
        staged.commit()
    return kind
