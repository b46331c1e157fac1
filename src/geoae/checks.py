"""The checks every layer makes before any work (data, models, training, the command line).

Values: ``check_int``, ``finite_real``, ``check_choice``, ``check_volume`` raise ValueError naming the parameter,
its value and what is allowed. Paths: an output path must not run through a dangling symbolic link or a loop of
them, and the folder that will receive files must take them; ``broken_link`` and ``cannot_write`` return what is
wrong (None: nothing), so that every caller words the error with its own option name.
"""

from __future__ import annotations

import math
import numbers
import os
import tempfile
from pathlib import Path

__all__ = ["broken_link", "cannot_write", "check_int", "finite_real", "check_choice", "check_volume", "MAX_VALUES"]

MAX_VALUES = 2**30  # values one call may generate (4 GiB of float32)


def broken_link(path: Path) -> Path | None:
    """The first of ``path`` and its parents that is a symbolic link leading nowhere (to a missing file, or
    round a loop of links), else None. Such a path passes ``exists()`` checks as 'absent', then every attempt
    to create it fails."""
    path = Path(path)
    for part in reversed([path, *path.parents]):
        if part.is_symlink():
            try:
                part.stat()
            except OSError:  # ENOENT: dangling; ELOOP: a loop
                return part
    return None


def cannot_write(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (the nearest existing folder above it when it is missing,
    where the missing ones would be made), else None: tried with a temporary file, removed at once."""
    folder = Path(folder)
    link = broken_link(folder)
    if link is not None:
        return f"{link} is a symbolic link to nothing (dangling, or a loop of links)"
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".geoae-probe-")
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror})"
    os.close(fd)
    os.unlink(probe)
    return None


# ------------------------------------------------------------------------------------------ values


def check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in [minimum, maximum], else a ValueError naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    raise ValueError(f"{name} must be an integer {allowed}, got {value!r}")


def finite_real(value) -> bool:
    """A real number (not a bool) that is finite as a float (an int beyond float's range is not)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_choice(name: str, value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of " + ", ".join(repr(c) for c in choices))
    return value


def check_volume(name: str, value, count: int, per_item: int) -> None:
    """Refuse a request for more than ``MAX_VALUES`` values (``count`` items of ``per_item`` values)."""
    if count * per_item > MAX_VALUES:
        raise ValueError(f"{name}={value} asks for {count:,} × {per_item:,} = {count * per_item:,} values, more than "
                         f"the {MAX_VALUES:,} (4 GiB of float32) one call may generate; generate in parts")
