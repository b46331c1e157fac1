"""Path checks shared by the command line and the library, made before any work: an output path must not run
through a dangling symbolic link or a loop of them, and the folder that will receive files must take them.

Each returns what is wrong (None: nothing), so that every caller words the error with its own option name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["broken_link", "cannot_write"]


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
