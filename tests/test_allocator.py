"""retain_freed_memory: on glibc, freed large blocks are reused instead of mapped and faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

import diffsampler as ds

PROBE = """
import resource, sys, torch
import diffsampler as ds
took = ds.retain_freed_memory() if sys.argv[1] == "retain" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 << 20)  # 64 MiB, over the most glibc's dynamic mmap threshold rises to: mapped, touched, unmapped
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def probe(mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
    )
    took, faults = out.stdout.split()
    return took, int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_are_reused_not_faulted_in_again() -> None:
    _, plain = probe("plain")
    took, kept = probe("retain")
    assert took == "True"
    assert plain > 20 * 16384 * 0.9  # every 64 MiB block's 16384 pages faulted in again
    assert kept < plain / 4  # the first block's pages only, reused 19 times


def test_thresholds_the_user_set_are_left_alone(monkeypatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert ds.retain_freed_memory() is False
