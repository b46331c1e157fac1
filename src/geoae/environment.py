"""What geoae runs on and with: versions, the CPU, the fused kernels and the ``GEOAE_*`` settings.

``SETTINGS`` is the one list of the environment variables geoae reads, with their meaning and default; the
command-line help (epilogs) and ``geoae info`` print it, and a test checks that every ``GEOAE_*`` name in
the source is listed. ``describe()`` gathers what ``geoae info`` prints.
"""

from __future__ import annotations

import os
import platform
import sys
import textwrap
from pathlib import Path

__all__ = ["SETTINGS", "settings_in_force", "cpu_model", "isa_flags", "describe", "format_description"]

# name -> (meaning, default as the user sees it)
SETTINGS: dict[str, tuple[str, str]] = {
    "GEOAE_BACKEND": ("training backend: auto (fused kernels where they apply), fused (refuse runs they "
                      "cannot train) or torch", "auto"),
    "GEOAE_THREADS": ("threads of the fused training kernels (results do not depend on it)", "all cores"),
    "GEOAE_TORCH_THREADS": ("torch intra-op threads while training (0: leave torch's setting)", "1"),
    "GEOAE_WORKERS": ("parallel runs in train_many / reproduce", "one per core"),
    "GEOAE_CACHE": ("where the fused kernels are compiled and cached", "~/.cache/geoae"),
    "GEOAE_FUSED": ("0 disables the fused kernels (training uses torch)", "1"),
    "GEOAE_OFFICIAL_WEIGHTS": ("path to the authors' disk_example_model_weights.h5 (D1/D2 compare with it; "
                               "reproduce --official-weights sets it)", "searched in shared/reference/"),
}

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "neon", "asimd", "sve")


def settings_in_force() -> list[tuple[str, str | None, str, str]]:
    """(name, value or None when unset, meaning, default) for every ``GEOAE_*`` setting."""
    return [(name, os.environ.get(name), meaning, default) for name, (meaning, default) in SETTINGS.items()]


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


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine() or "unknown"


def isa_flags() -> list[str]:
    """The vector instruction sets of ``ISA_FLAGS`` the CPU reports (x86 ``flags``, Arm ``Features``)."""
    info = _cpuinfo()
    present = set((info.get("flags", "") + " " + info.get("Features", "")).split())
    if platform.machine() in ("arm64", "aarch64") and sys.platform == "darwin":
        present.add("neon")  # Apple silicon: always there, and no /proc/cpuinfo
    return [f for f in ISA_FLAGS if f in present]


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe() -> dict:
    """Everything ``geoae info`` prints, as a JSON-friendly dict (compiles the fused kernels if needed)."""
    import numpy as np
    import torch

    from . import __version__, fused

    return {
        "geoae": __version__,
        "geoae_path": str(Path(__file__).resolve().parent),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores_available": _cores(),
        "isa": isa_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "fused_available": fused.available(),
        "fused_unavailable_reason": fused.unavailable_reason(),
        "settings": [{"name": n, "value": v, "meaning": m, "default": d} for n, v, m, d in settings_in_force()],
    }


def format_description(info: dict) -> str:
    """``describe()`` as the text ``geoae info`` prints."""
    fused_line = "available" if info["fused_available"] else f"unavailable ({info['fused_unavailable_reason']})"
    lines = [
        f"geoae    {info['geoae']} ({info['geoae_path']})",
        f"python   {info['python']}, torch {info['torch']}, numpy {info['numpy']}",
        f"platform {info['platform']}",
        f"cpu      {info['cpu']}, {info['cores_available']} cores available",
        f"isa      {' '.join(info['isa']) or 'none of ' + ', '.join(ISA_FLAGS)} "
        f"(torch's CPU capability: {info['torch_cpu_capability']})",
        f"fused    {fused_line}",
        "settings (environment variables; unset ones take their default)",
    ]
    for s in info["settings"]:
        lines.append(f"  {s['name']}={s['value']}" if s["value"] is not None else f"  {s['name']} (unset)")
        lines.append(f"      {s['meaning']} (default: {s['default']})")
    return "\n".join(lines)
