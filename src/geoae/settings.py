"""The ``GEOAE_*`` environment settings, read in one place, at call time, validated, and recorded with runs.

==========================  =========================================================================  ========
variable                    meaning                                                                    default
==========================  =========================================================================  ========
``GEOAE_BACKEND``           training executor: ``auto`` (fused C kernels where they apply), ``fused``  auto
                            (refuse a run they cannot train), ``torch`` (PyTorch modules)
``GEOAE_THREADS``           threads of the fused kernels for one run (1 … 64)                          cores
``GEOAE_TORCH_THREADS``     torch intra-op threads while training (0: leave torch's setting)           1
``GEOAE_WORKERS``           parallel runs of ``train_many`` (1 … 256)                                  cores
``GEOAE_CACHE``             directory of the compiled kernels and their tuning                         ~/.cache/geoae
``GEOAE_FUSED``             ``0`` disables the fused kernels (same as ``GEOAE_BACKEND=torch``)         1
``GEOAE_MARCH``             the compiler's ``-march`` for the kernels (e.g. ``x86-64-v3`` to build for  native
                            AVX2 on an AVX-512 machine, ``x86-64-v2``, ``armv8-a``)
``GEOAE_KERNEL``            kernel configuration: ``auto`` (measured choice, cached) or                auto
                            ``lanes=8,wg=16`` (lanes 8 | 16, weight-gradient accumulators 8 | 16)
==========================  =========================================================================  ========

A bad value is a ``SettingsError`` (a ``ValueError``) naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BACKENDS", "LANES", "WG_ACCUMULATORS", "Settings", "SettingsError", "read_settings", "cores"]

BACKENDS = ("auto", "fused", "torch")
LANES = (8, 16)
WG_ACCUMULATORS = (8, 16)
MAX_THREADS = 64  # the kernels' own limit (_fused.c MAX_THREADS)
MAX_WORKERS = 256
_MARCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class SettingsError(ValueError):
    """A ``GEOAE_*`` environment variable holds a value geoae does not accept."""


@dataclass(frozen=True)
class Settings:
    backend: str
    threads: int
    torch_threads: int
    workers: int
    cache: str
    fused: bool
    march: str
    kernel: str  # "auto" or "lanes=L,wg=W"

    def kernel_choice(self) -> tuple[int, int] | None:
        """(lanes, wg) forced by ``GEOAE_KERNEL``, or None for the measured choice."""
        if self.kernel == "auto":
            return None
        parts = dict(p.split("=") for p in self.kernel.split(","))
        return int(parts["lanes"]), int(parts["wg"])

    def to_dict(self) -> dict:
        return asdict(self)


def cores() -> int:
    """CPU cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _get(env, name: str) -> str | None:
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def _count(env, name: str, default: int, lo: int, hi: int) -> int:
    value = _get(env, name)
    if value is None:
        return min(default, hi)
    if not re.fullmatch(r"\d{1,9}", value) or not lo <= int(value) <= hi:
        raise SettingsError(f"{name} must be an integer from {lo} to {hi}, got {value!r}")
    return int(value)


def _choice(env, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _get(env, name) or default
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _kernel(env) -> str:
    value = _get(env, "GEOAE_KERNEL") or "auto"
    if value == "auto":
        return value
    m = re.fullmatch(r"lanes=(\d+),wg=(\d+)", value.replace(" ", ""))
    if not m or int(m[1]) not in LANES or int(m[2]) not in WG_ACCUMULATORS:
        raise SettingsError(f"GEOAE_KERNEL must be 'auto' or 'lanes=L,wg=W' with L in {LANES} and W in "
                            f"{WG_ACCUMULATORS}, got {value!r}")
    return f"lanes={int(m[1])},wg={int(m[2])}"


def read_settings(env=None) -> Settings:
    """The settings in force now (``env``: a mapping, default ``os.environ``); raises ``SettingsError``."""
    env = os.environ if env is None else env
    march = _get(env, "GEOAE_MARCH") or "native"
    if not _MARCH.fullmatch(march):
        raise SettingsError(f"GEOAE_MARCH must be a compiler -march name such as native or x86-64-v3, got {march!r}")
    cache = _get(env, "GEOAE_CACHE") or str(Path.home() / ".cache" / "geoae")
    return Settings(
        backend=_choice(env, "GEOAE_BACKEND", BACKENDS, "auto"),
        threads=_count(env, "GEOAE_THREADS", cores(), 1, MAX_THREADS),
        torch_threads=_count(env, "GEOAE_TORCH_THREADS", 1, 0, 1024),
        workers=_count(env, "GEOAE_WORKERS", cores(), 1, MAX_WORKERS),
        cache=cache,
        fused=_choice(env, "GEOAE_FUSED", ("0", "1"), "1") == "1",
        march=march,
        kernel=_kernel(env),
    )
