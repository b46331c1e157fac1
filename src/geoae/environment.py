"""What geoae runs on and with: versions, the CPU, the fused kernels and the ``GEOAE_*`` settings.

``SETTINGS`` shows ``geoae.settings.VARIABLES`` (the one list of the environment variables geoae reads, with
their meaning and default; ``geoae.settings`` reads and validates their values) to the command line's help
epilogs and ``geoae info``. ``describe()`` gathers what ``geoae info`` prints.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import textwrap
from pathlib import Path

__all__ = ["SETTINGS", "EXTRAS", "extras_installed", "settings_in_force", "settings_epilog", "isa_flags", "describe",
           "format_description", "LEVELS", "TORCH_LEVEL_VARIABLES", "level_environment", "torch_limits"]

from .settings import VARIABLES

# name -> (meaning, default as the user sees it), from the one list, ``settings.VARIABLES``
SETTINGS: dict[str, tuple[str, str]] = {v.name: (v.meaning, v.default) for v in VARIABLES}

# the optional extras of pyproject.toml: extra -> (module imported, distributions that provide it, what needs it)
EXTRAS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "keras": ("h5py", ("h5py",), "reading the authors' Keras weights: convert-keras, reproduce --official-weights"),
    "tensorboard": ("tensorboard", ("tensorboard",), "train --tensorboard, export --to tensorboard"),
    "mlflow": ("mlflow", ("mlflow-skinny", "mlflow"), "train --mlflow"),
    "ray": ("ray", ("ray",), "reproduce --executor ray (docs/cluster.md)"),
}

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "neon", "asimd", "sve")

# An x86-64 level as torch's own CPU libraries spell it: ATen's vectorised kernels, MKL (torch.mm in the x86 wheels)
# and oneDNN (convolutions), and OpenBLAS (torch.mm in builds that use it, and NumPy's). Each library reads its
# variable once, at its first use, so the limit must be in the environment before the process starts
# (``level_environment``). x86-64-v3 is AVX2 with FMA; x86-64-v4 adds AVX-512.
TORCH_LEVEL_VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "DNNL_MAX_CPU_ISA", "OPENBLAS_CORETYPE")
LEVELS: dict[str, dict[str, str]] = {
    "x86-64-v3": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2",
                  "OPENBLAS_CORETYPE": "Haswell"},
    "x86-64-v4": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                  "DNNL_MAX_CPU_ISA": "AVX512_CORE", "OPENBLAS_CORETYPE": "SkylakeX"},
}
_LEVEL_ORDER = ("x86-64-v2", "x86-64-v3", "x86-64-v4")


def level_environment(level: str, cpu_level: str | None = None) -> dict[str, str]:
    """The environment variables that make this process's children run as on a CPU of x86-64 ``level``: the
    fused kernels built for it (``GEOAE_MARCH``) and torch's own libraries limited to it
    (``TORCH_LEVEL_VARIABLES``). ``cpu_level``: this CPU's level (default: ``cpu_description()``'s). Raises
    ValueError naming ``level`` if it is not one of ``LEVELS`` or this CPU cannot run it."""
    from .training.provenance import cpu_description

    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    have = cpu_level if cpu_level is not None else cpu_description()["isa"].split()[0]
    rank = _LEVEL_ORDER.index(have) if have in _LEVEL_ORDER else -1
    if rank < _LEVEL_ORDER.index(level):
        runnable = [lv for lv in LEVELS if _LEVEL_ORDER.index(lv) <= rank]
        raise ValueError(f"level {level} needs a CPU that runs it; this one is {have} ("
                         + (f"choose {' or '.join(runnable)})" if runnable else "no level here can be emulated)"))
    return {"GEOAE_MARCH": level, **LEVELS[level]}


def torch_limits() -> dict:
    """What torch's own CPU code runs with here: ATen's capability (``get_cpu_capability``, which reads
    ATEN_CPU_CAPABILITY at its first use) and the limits of ``TORCH_LEVEL_VARIABLES`` in this environment (None
    where unset: the CPU's best)."""
    import torch

    return {"aten_capability": torch.backends.cpu.get_cpu_capability(),
            **{name: os.environ.get(name) for name in TORCH_LEVEL_VARIABLES}}


def settings_in_force() -> list[dict]:
    """Every ``GEOAE_*`` setting: its name, raw value (None when unset), value in force, meaning and default.

    The value in force is ``geoae.settings.read_settings()``'s (defaults resolved), or the error that a bad
    value raises; for GEOAE_OFFICIAL_WEIGHTS, the weights file found (``models.official_model_path``).
    """
    from .models import official_model_path
    from .settings import SettingsError, read_each_setting

    in_force = {k: (f"error: {v}" if isinstance(v, SettingsError) else v) for k, v in read_each_setting().items()}
    try:
        weights = official_model_path()
        in_force["official_weights"] = str(weights) if weights is not None else "not found"
    except FileNotFoundError as err:
        in_force["official_weights"] = f"error: {err}"
    rows = []
    for v in VARIABLES:
        field = v.field or "official_weights"
        value = in_force.get(field)
        rows.append({"name": v.name, "value": os.environ.get(v.name), "in_force": value, "meaning": v.meaning,
                     "default": v.default})
    return rows


def extras_installed() -> list[dict]:
    """Each optional extra: its name, the module it needs, whether that is importable (found, not imported:
    Ray and MLflow take seconds to import), the installed version, what needs it and how to install it."""
    import importlib.metadata
    import importlib.util

    rows = []
    for extra, (module, distributions, purpose) in EXTRAS.items():
        installed = importlib.util.find_spec(module) is not None
        version = None
        for dist in distributions if installed else ():
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                version = importlib.metadata.version(dist)
                break
        rows.append({"extra": extra, "module": module, "installed": installed, "version": version,
                     "for": purpose, "install": f"pip install 'geoae[{extra}]'"})
    return rows


def settings_epilog() -> str:
    """The settings as a help epilog."""
    lines = ["environment settings (`geoae info` shows those in force):"]
    for name, (meaning, default) in SETTINGS.items():
        lines.append(f"  {name}")
        lines += textwrap.wrap(f"{meaning} (default: {default})", width=96, initial_indent=" " * 6,
                               subsequent_indent=" " * 6)
    return "\n".join(lines)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def isa_flags() -> list[str]:
    """The vector instruction sets of ``ISA_FLAGS`` the CPU reports (x86 ``flags``, Arm ``Features``)."""
    info = _cpuinfo()
    present = set((info.get("flags", "") + " " + info.get("Features", "")).split())
    if platform.machine() in ("arm64", "aarch64") and sys.platform == "darwin":
        present.add("neon")  # Apple silicon: always there, and no /proc/cpuinfo
    return [f for f in ISA_FLAGS if f in present]


def describe() -> dict:
    """Everything ``geoae info`` prints, as a JSON-friendly dict (compiles the fused kernels if needed)."""
    import numpy as np
    import torch

    from . import __version__, fused
    from .settings import SettingsError, cores
    from .training.rundir import cpu_description, git_commit

    try:
        kernel = {"fused_available": fused.available(), "fused_unavailable_reason": fused.unavailable_reason(),
                  "fused_kernel": fused.kernel_info()}
    except SettingsError as err:  # a bad GEOAE_* value: shown, not raised (settings_in_force names it too)
        kernel = {"fused_available": False, "fused_unavailable_reason": str(err), "fused_kernel": {}}
    limits = torch_limits()
    return {
        "geoae": __version__,
        "geoae_path": str(Path(__file__).resolve().parent),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_description(),
        "cores_available": cores(),
        "isa": isa_flags(),
        "torch_cpu_capability": limits.pop("aten_capability"),
        "torch_limits": limits,
        **kernel,
        "extras": extras_installed(),
        "settings": settings_in_force(),
    }


def _extra_state(extra: dict) -> str:
    if not extra["installed"]:
        return "not installed"
    return f"{extra['module']} {extra['version']}" if extra["version"] else "installed"


def format_description(info: dict) -> str:
    """``describe()`` as the text ``geoae info`` prints."""
    if info["fused_available"]:
        shown = ("lanes", "wg_accumulators", "choice", "library")  # --json has the compiler flags and timings
        fused_line = "available (" + ", ".join(f"{k}={v}" for k, v in info["fused_kernel"].items() if k in shown) + ")"
    else:
        fused_line = f"unavailable ({info['fused_unavailable_reason']})"
    cpu = info["cpu"]
    lines = [
        f"geoae    {info['geoae']} ({info['geoae_path']}; commit {info['git_commit'] or 'none: not a geoae checkout'})",
        f"python   {info['python']}, torch {info['torch']}, numpy {info['numpy']}",
        f"platform {info['platform']}",
        f"cpu      {cpu['model']}, {cpu['isa']}, {info['cores_available']} cores available",
        f"isa      {' '.join(info['isa']) or 'none of ' + ', '.join(ISA_FLAGS)} "
        f"(torch's CPU capability: {info['torch_cpu_capability']}"
        + "".join(f", {k}={v}" for k, v in info["torch_limits"].items() if v) + ")",
        f"fused    {fused_line}",
        "extras   (optional: pip install 'geoae[NAME]')",
        *(f"  {e['extra']:<12} {_extra_state(e):<22} for {e['for']}" for e in info["extras"]),
        "settings (environment variables; unset ones take their default)",
    ]
    for s in info["settings"]:
        raw = f"={s['value']}" if s["value"] is not None else " (unset)"
        lines.append(f"  {s['name']}{raw}  in force: {s['in_force']}")
        lines.append(f"      {s['meaning']} (default: {s['default']})")
    return "\n".join(lines)
