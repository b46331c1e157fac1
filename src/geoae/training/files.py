"""How geoae writes files: durably and atomically (a temporary file in the same directory, fsync, rename, with
the permissions the user's umask gives), and tensors with a checksum over the tensors and their metadata
(safetensors, never pickle). ``rundir`` says which files a run directory holds."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

__all__ = ["CheckpointError", "TMP_SUFFIX", "write_bytes_atomic", "write_files_atomic", "write_json", "save_tensors",
           "load_tensors", "CHECKSUM_KEY"]

TMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" beside the file they replace


class CheckpointError(ValueError):
    """A checkpoint or model file is corrupted, or belongs to another configuration."""


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (the os.umask(0) round trip would
    briefly give the files and directories other threads create meanwhile the permissions 666 / 777)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably and atomically, with the umask's permissions; on failure nothing
    is left behind and the old file (if any) is intact. ENOSPC and permission errors become one-line OSErrors."""
    write_files_atomic({Path(path): data})


def write_files_atomic(files: dict[Path, bytes]) -> None:
    """Write several files as one: every temporary file is written and fsynced first, then all are renamed, so a
    failure while writing (a full disk) leaves every old file as it was and no temporary file behind."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            staged.append((_stage(path, data), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as err:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        where = path  # the file being written or renamed when it failed
        what = "the disk is full" if err.errno == errno.ENOSPC else err.strerror or str(err)
        raise OSError(err.errno, f"cannot write {where}: {what}") from None
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def _stage(path: Path, data: bytes) -> str:
    """A temporary file beside ``path`` holding ``data``, on disk (fsynced), with the umask's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_json(path: Path, obj) -> None:
    """Write JSON (sorted keys, indented) durably and atomically."""
    write_bytes_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


CHECKSUM_KEY = "checksum"  # sha256 of the tensors and of every other metadata entry (the envelope)
LEGACY_CHECKSUM_KEY = "sha256"  # geoae < 0.4: sha256 of the tensors only (read, never written)


def _tensor_hash(tensors: dict[str, torch.Tensor]):
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h


def _checksum(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """sha256 over the tensors (name, dtype, shape, bytes) and, unless None, every metadata entry but the
    checksum itself (key and value, length-prefixed): any change of a tensor or of the header changes it."""
    h = _tensor_hash(tensors)
    if metadata is not None:
        h.update(b"\0metadata\0")
        for key in sorted(metadata):
            if key in (CHECKSUM_KEY, LEGACY_CHECKSUM_KEY):
                continue
            for part in (key.encode(), metadata[key].encode()):
                h.update(len(part).to_bytes(8, "little"))
                h.update(part)
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file in geoae's integrity envelope: a checksum over its tensors and its metadata (every
    entry, whatever its name), written atomically. Checksums in ``metadata`` (the metadata of a file read back)
    are dropped: the file gets its own."""
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise ValueError(f"metadata must map text to text, got {bad[0]!r}: {metadata[bad[0]]!r}"[:200])
    metadata = {k: v for k, v in metadata.items() if k not in (CHECKSUM_KEY, LEGACY_CHECKSUM_KEY)}
    write_bytes_atomic(Path(path), save(tensors, metadata=metadata | {CHECKSUM_KEY: _checksum(tensors, metadata)}))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, refusing a file whose tensors or header fail the checksum,
    and one without a checksum (a file geoae did not write). Files of geoae < 0.4 carry a checksum of their
    tensors only (``sha256``): accepted, and their header is checked by its readers (``load_checkpoint``,
    ``load_run``) against the config."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path} is corrupted or unreadable ({err}); delete it to start again") from err
    if CHECKSUM_KEY in metadata:
        ok = metadata[CHECKSUM_KEY] == _checksum(tensors, metadata)
    elif LEGACY_CHECKSUM_KEY in metadata:
        ok = metadata[LEGACY_CHECKSUM_KEY] == _checksum(tensors)
    else:
        raise CheckpointError(f"{path} is corrupted or was not written by geoae (no checksum in its header); "
                              "delete it to start again")
    if not ok:
        raise CheckpointError(f"{path} is corrupted (its tensors or header do not match their checksum); delete "
                              "it to start again")
    return tensors, metadata
