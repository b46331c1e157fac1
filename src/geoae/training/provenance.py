"""What produced a result: geoae's commit (when it runs from its own checkout), the versions, the CPU and its
vector ISA level, the host."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
from pathlib import Path

import torch

from .. import __version__

__all__ = ["git_commit", "cpu_description", "provenance"]

PACKAGE_DIR = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of geoae's own checkout when geoae runs from one (``-dirty`` if modified), else None: an
    installed copy inside some other repository records None, not that repository's commit."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=PACKAGE_DIR)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() / "src" / "geoae" != PACKAGE_DIR:
        return None
    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "src")
    return sha + ("-dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def cpu_description() -> dict:
    """The CPU model and its vector ISA level (x86-64-v2/v3/v4, aarch64), for provenance and ``geoae bench``."""
    model, flags = platform.processor() or platform.machine(), set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        isa = "x86-64-v4 (AVX-512)"
    elif {"avx2", "fma"} <= flags:
        isa = "x86-64-v3 (AVX2)"
    elif "sse4_2" in flags:
        isa = "x86-64-v2 (SSE4.2)"
    elif platform.machine() in ("aarch64", "arm64"):
        isa = "aarch64 (" + ("SVE" if "sve" in flags else "NEON") + ")"
    else:
        isa = platform.machine()
    return {"model": model, "isa": isa, "machine": platform.machine(), "cores": os.cpu_count()}


def provenance() -> dict:
    """What produced a result: versions, commit (or None), CPU, host (the node of a cluster)."""
    return {"geoae_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "git_commit": git_commit(), "cpu": cpu_description(), "host": platform.node()}
