"""mkdocs hooks: generated tables and cards in the pages, the benchmarks' plots and the cards' images in the site."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))
import gen  # noqa: E402


def on_files(files: Files, config: Any) -> Files:
    plots = sorted((gen.ROOT / "benchmarks" / "results").rglob("*.png"))
    extra = [(f"results/{p.relative_to(gen.ROOT / 'benchmarks' / 'results')}", p) for p in plots] + gen.card_images()
    for uri, path in extra:
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    return gen.expand(markdown)
