"""The ``GEOAE_*`` environment settings, read in one place, at call time, validated, and recorded with runs.

``VARIABLES`` below is the one list of the variables geoae reads: name, meaning, default. ``read_settings``
reads their values; ``geoae info`` and the command line's help epilogs show the list (``environment``); a
test checks that every ``GEOAE_*`` name in the source is in it. A bad value is a ``SettingsError`` (a
``ValueError``) naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["BACKENDS", "EXECUTORS", "LANES", "WG_ACCUMULATORS", "VARIABLES", "Variable", "Settings", "SettingsError",
           "read_settings", "read_each_setting", "debug_enabled", "cores"]

BACKENDS = ("auto", "fused", "torch")
EXECUTORS = ("local", "ray")
LANES = (8, 16)
WG_ACCUMULATORS = (8, 16)
MAX_THREADS = 64  # the kernels' own limit (_fused.c MAX_THREADS)
MAX_WORKERS = 256
_MARCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the ``Settings`` field that holds its value (None: read
    elsewhere, as named in ``meaning``), what it does and its default as the user sees it."""

    name: str
    field: str | None
    meaning: str
    default: str


VARIABLES = (
    Variable("GEOAE_BACKEND", "backend", "training executor: auto (fused C kernels where they apply), fused "
             "(refuse a run they cannot train) or torch (PyTorch modules)", "auto"),
    Variable("GEOAE_THREADS", "threads", f"threads of the fused kernels for one run, 1 to {MAX_THREADS} (results "
             "do not depend on it)", "all cores"),
    Variable("GEOAE_TORCH_THREADS", "torch_threads", "torch intra-op threads while training, 0 to 1024 (0: leave "
             "torch's setting)", "1"),
    Variable("GEOAE_WORKERS", "workers", f"parallel runs of train_many / reproduce, 1 to {MAX_WORKERS}",
             "one per core"),
    Variable("GEOAE_EXECUTOR", "executor", "where train_many / reproduce send their runs: local (this machine's "
             "cores) or ray (tasks of the Ray cluster at RAY_ADDRESS, else of a Ray started here; needs "
             "geoae[ray])", "local"),
    Variable("GEOAE_CACHE", "cache", "where the fused kernels are compiled, tuned and cached (a directory of "
             "your own)", "~/.cache/geoae"),
    Variable("GEOAE_FUSED", "fused", "0 disables the fused kernels (same as GEOAE_BACKEND=torch)", "1"),
    Variable("GEOAE_MARCH", "march", "the compiler's -march for the fused kernels, e.g. x86-64-v3 to build for "
             "AVX2 on an AVX-512 machine", "native"),
    Variable("GEOAE_KERNEL", "kernel", "fused kernel configuration: auto (measured choice, cached) or "
             f"lanes=L,wg=W (L in {LANES}, W in {WG_ACCUMULATORS})", "auto"),
    Variable("GEOAE_DEBUG", "debug", "1: an internal error prints its full traceback (to attach to a bug "
             "report)", "0"),
    Variable("GEOAE_OFFICIAL_WEIGHTS", None, "path to the authors' disk_example_model_weights.h5, read by "
             "models.official_model_path (D1/D2 compare with it; reproduce --official-weights sets it)",
             "searched in shared/reference/"),
)


class SettingsError(ValueError):
    """A ``GEOAE_*`` environment variable holds a value geoae does not accept."""


@dataclass(frozen=True)
class Settings:
    backend: str
    threads: int
    torch_threads: int
    workers: int
    executor: str
    cache: str
    fused: bool
    march: str
    kernel: str  # "auto" or "lanes=L,wg=W"
    debug: bool

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


def _march(env) -> str:
    march = _get(env, "GEOAE_MARCH") or "native"
    if not _MARCH.fullmatch(march):
        raise SettingsError(f"GEOAE_MARCH must be a compiler -march name such as native or x86-64-v3, got {march!r}")
    return march


def _cache(env) -> str:
    """``GEOAE_CACHE``: a directory (existing, or to be made) in a place the user may write, not a file nor a
    kernel file system (/proc, /sys, /dev). The default (under ~/.cache) is not checked here: where it cannot
    be used, the fused kernels are unavailable and training falls back to torch."""
    value = _get(env, "GEOAE_CACHE")
    if value is None:
        return str(Path.home() / ".cache" / "geoae")
    path = Path(value).expanduser()
    allowed = "a directory of your own (existing, or one that can be created)"
    if "\0" in value:
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r}")
    absolute = Path(os.path.abspath(path))
    if absolute.parts[1:2] and absolute.parts[1] in ("proc", "sys", "dev"):
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r} (a kernel file system)")
    if path.is_symlink() and not path.exists():
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r} (a dangling symbolic link or a loop)")
    if path.exists() and not path.is_dir():
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r} (an existing file)")
    existing = absolute
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(f"GEOAE_CACHE must be {allowed}, got {value!r} (cannot write in {existing})")
    return str(path)


# Settings field -> its reader (each reads and checks one variable)
_READERS = {
    "backend": lambda env: _choice(env, "GEOAE_BACKEND", BACKENDS, "auto"),
    "threads": lambda env: _count(env, "GEOAE_THREADS", cores(), 1, MAX_THREADS),
    "torch_threads": lambda env: _count(env, "GEOAE_TORCH_THREADS", 1, 0, 1024),
    "workers": lambda env: _count(env, "GEOAE_WORKERS", cores(), 1, MAX_WORKERS),
    "executor": lambda env: _choice(env, "GEOAE_EXECUTOR", EXECUTORS, "local"),
    "cache": _cache,
    "fused": lambda env: _choice(env, "GEOAE_FUSED", ("0", "1"), "1") == "1",
    "march": _march,
    "kernel": _kernel,
    "debug": lambda env: debug_enabled(env),
}


def read_settings(env=None) -> Settings:
    """The settings in force now (``env``: a mapping, default ``os.environ``); raises ``SettingsError`` naming
    the first bad variable (in the order of ``VARIABLES``)."""
    env = os.environ if env is None else env
    order = [v.field for v in VARIABLES if v.field is not None]
    return Settings(**{field: _READERS[field](env) for field in order})


def read_each_setting(env=None) -> dict[str, object]:
    """Each setting's value, or the ``SettingsError`` its own variable raises (``geoae info`` shows every
    setting, a bad one as its own error, the others as their values)."""
    env = os.environ if env is None else env
    values = {}
    for field, reader in _READERS.items():
        try:
            values[field] = reader(env)
        except SettingsError as err:
            values[field] = err
    return values


def debug_enabled(env=None) -> bool:
    """``GEOAE_DEBUG=1``: internal errors show their traceback (raises ``SettingsError`` on a bad value)."""
    return _choice(os.environ if env is None else env, "GEOAE_DEBUG", ("0", "1"), "0") == "1"
