"""Building, verifying, trying and tuning the fused kernel library (``_fused.c``), and loading it once per
process: see the package's docstring for the policy (cache, trust, child-process trial, measured tuning)."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..settings import Settings, read_settings
from .abi import CANDIDATES, HEADER, SOURCE, KernelError, bind

__all__ = ["Kernel", "KernelCrashed", "kernel", "available", "unavailable_reason", "kernel_info", "flags_for",
           "library_path"]

BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-pthread")




def _compiler() -> list[str] | None:
    """The C compiler command: ``CC`` (which may carry flags, e.g. ``gcc -O1``), else cc, gcc or clang."""
    cc = shlex.split(os.environ.get("CC", "")) or ["cc"]
    found = shutil.which(cc[0])
    if found:
        return [found, *cc[1:]]
    for name in ("gcc", "clang"):
        if shutil.which(name):
            return [shutil.which(name)]
    return None


def _cpu_signature() -> str:
    """The CPU model and flags (``-march=native`` depends on them), or the platform where unknown."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return "|".join(sorted({ln for ln in lines if ln.startswith(("model name", "flags", "Features"))}))
    except OSError:
        return platform.processor() or platform.machine()


def flags_for(lanes: int, wg: int, march: str) -> tuple[str, ...]:
    """Compiler flags of one kernel configuration (``march`` '' for none)."""
    arch = (f"-march={march}",) if march else ()
    return (*BASE_FLAGS, *arch, f"-DGEOAE_LANES={lanes}", f"-DGEOAE_WG={wg}")


def _key(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def library_path(flags: tuple[str, ...], cache: Path) -> Path:
    """Where the kernel built with ``flags`` lives: the name hashes source, header, flags, compiler, CPU."""
    cc = " ".join(_compiler() or ["none"])
    name = _key(SOURCE.read_bytes(), HEADER.read_bytes(), " ".join(flags), cc, platform.machine(), _cpu_signature())
    return cache / f"fused-{name}.so"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trusted(path: Path) -> str | None:
    """None if the cached file may be loaded, else why not (another owner, writable by others)."""
    st = path.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"{path} belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by other users"
    return None


def _verified(path: Path) -> bool:
    """The library exists, is trusted, matches the checksum written beside it when it was built (``.sha256``),
    and ran a training step in a child process then (``.tried``, holding the same checksum; a library of an
    older geoae, without it, is rebuilt and tried)."""
    try:
        digest = _digest(path)
        return _trusted(path) is None and all(path.with_suffix(s).read_text().strip() == digest
                                              for s in (".sha256", ".tried"))
    except OSError:
        return False


class KernelCrashed(OSError):
    """A freshly built kernel library crashed (or hung) when tried in a child process: never loaded here."""


def _flag_value(flags: tuple[str, ...], prefix: str) -> str | None:
    return next((f[len(prefix):] for f in flags if f.startswith(prefix)), None)


# the child's program: load the library and run one small training step with it (exit 0 if all went well)
_TRY = """import sys
from pathlib import Path
from geoae.fused import build
build._try_step(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
"""


def _try_step(path: Path, lanes: int, wg: int) -> None:
    """One training step (forward and backward, a 16 × 16 network, one thread) with the library at ``path``;
    raises where the numbers are not finite. Runs in the child process of ``_try_in_child``."""
    from ..models import ModelConfig, build_model
    from .executor import FusedAutoencoder

    k = Kernel(_open(path), lanes, wg, (), path, "", {})
    ex = FusedAutoencoder(build_model(ModelConfig(size=16), seed=0), threads=1, kernel=k)
    _, mse, _ = ex.loss(torch.rand(2 * lanes, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    mse.backward()
    if not torch.isfinite(mse):
        raise SystemExit(f"the step's loss is {mse.item()}")


def _try_in_child(path: Path, flags: tuple[str, ...], timeout: float = 300) -> None:
    """Run a training step with the library at ``path`` in a child process, so that a library this CPU cannot
    run (SIGILL from a ``-march`` it lacks) kills the child, not this process. Raises ``KernelCrashed`` naming
    the library and the settings that chose its flags."""
    lanes, wg = int(_flag_value(flags, "-DGEOAE_LANES=") or 8), int(_flag_value(flags, "-DGEOAE_WG=") or 8)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(Path(__file__).resolve().parent.parent),
                                                       env.get("PYTHONPATH"))))
    try:
        proc = subprocess.run([sys.executable, "-c", _TRY, str(path), str(lanes), str(wg)], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0:
            return
        if proc.returncode < 0:
            try:
                how = f"killed by {signal.Signals(-proc.returncode).name}: this CPU cannot run it"
            except ValueError:
                how = f"killed by signal {-proc.returncode}: this CPU cannot run it"
        else:
            how = f"exit {proc.returncode}: {' '.join(proc.stderr.strip().splitlines()[-1:])[-300:]}"
    except subprocess.TimeoutExpired:
        how = f"no answer in {timeout:g} s"
    march = _flag_value(flags, "-march=") or "(none)"
    raise KernelCrashed(
        f"the fused kernel library {library_path(flags, path.parent).name} (-march={march}, lanes={lanes}, "
        f"wg={wg}) failed when tried in a child process ({how}); refused and not cached. "
        f"Check GEOAE_MARCH (now {os.environ.get('GEOAE_MARCH') or 'unset: native'}) and GEOAE_KERNEL (now "
        f"{os.environ.get('GEOAE_KERNEL') or 'unset: auto'}), e.g. unset them or use GEOAE_MARCH=x86-64-v3")


def _private_dir(cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    why = _trusted(cache)
    if why is not None:
        raise OSError(f"refusing the kernel cache: {why}; set GEOAE_CACHE to a directory of your own")
    return cache


def _build(flags: tuple[str, ...], cache: Path) -> Path:
    """The verified library for ``flags``: reused from the cache, else (re)compiled. Raises OSError."""
    path = library_path(flags, _private_dir(cache))
    if _verified(path):
        return path
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler found (set CC, or install cc / gcc / clang)")
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=path.stem, suffix=".so.tmp")
    os.close(fd)
    try:
        proc = subprocess.run([*cc, *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=300)
        if proc.returncode != 0:
            raise OSError(f"{' '.join(cc)} failed: {proc.stderr.strip()[-500:]}")
        os.chmod(tmp, 0o755)
        _try_in_child(Path(tmp), flags)  # KernelCrashed: the library is removed below, never cached
        digest = _digest(Path(tmp))
        _write_text(path.with_suffix(".sha256"), digest + "\n")
        _write_text(path.with_suffix(".tried"), digest + "\n")
        os.replace(tmp, path)  # atomic: concurrent processes build the same file and one wins
    except subprocess.SubprocessError as err:
        raise OSError(f"{' '.join(cc)} failed: {err}") from err
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)



def _open(path: Path) -> ctypes.CDLL:
    """Load a verified library and check its ABI against this module's (raises OSError on mismatch)."""
    lib = ctypes.CDLL(str(path))
    try:
        return bind(lib, path)
    except AttributeError as err:  # a library that is not geoae's kernel: a missing entry point
        raise OSError(f"{path}: not a geoae kernel ({err}); delete it to rebuild") from None


@dataclass
class Kernel:
    """A loaded kernel library and its configuration."""

    lib: ctypes.CDLL
    lanes: int
    wg: int
    flags: tuple[str, ...]
    path: Path
    choice: str  # "measured", "cached measurement", "GEOAE_KERNEL", "only candidate"
    timings: dict[str, float]  # seconds per tuning step of each candidate ("lanes=8,wg=16": s)

    def info(self) -> dict:
        return {"lanes": self.lanes, "wg_accumulators": self.wg, "chunk": self.lib.geoae_chunk(),
                "flags": " ".join(self.flags), "choice": self.choice, "library": self.path.name,
                "tuning_seconds_per_step": self.timings}


_kernels: dict[tuple, Kernel | str] = {}
_lock = threading.Lock()


def _load_candidate(lanes: int, wg: int, march: str, cache: Path) -> tuple[ctypes.CDLL, tuple[str, ...], Path]:
    """Build (or reuse) and load one configuration; without ``-march`` support, plain flags are used."""
    errors = []
    for arch in ((march, "") if march else ("",)):
        flags = flags_for(lanes, wg, arch)
        try:
            path = _build(flags, cache)
            return _open(path), flags, path
        except KernelCrashed:
            raise  # compiled, then crashed: not a compiler that refuses -march; plain flags would hide it
        except OSError as err:
            errors.append(str(err))
    raise OSError("; ".join(errors))


def kernel(settings: Settings | None = None) -> Kernel | None:
    """The kernel for these settings (built, tuned and loaded once per process), or None where unavailable."""
    settings = read_settings() if settings is None else settings
    key = (settings.cache, settings.march, settings.kernel, settings.fused, os.environ.get("CC", ""))
    with _lock:  # train_many's threads may ask at once
        if key not in _kernels:
            try:
                _kernels[key] = _make_kernel(settings)
            except (OSError, KernelError) as err:
                _kernels[key] = str(err)
        found = _kernels[key]
    return found if isinstance(found, Kernel) else None


def _make_kernel(settings: Settings) -> Kernel:
    if not settings.fused:
        raise OSError("disabled by GEOAE_FUSED=0")
    cache = Path(settings.cache).expanduser()
    forced = settings.kernel_choice()
    if forced is not None:
        lib, flags, path = _load_candidate(*forced, settings.march, cache)
        return Kernel(lib, *forced, flags, path, "GEOAE_KERNEL", {})
    cc = " ".join(_compiler() or ["none"])
    key = _key(SOURCE.read_bytes(), HEADER.read_bytes(), settings.march, _cpu_signature(), cc)
    tuning = cache / f"tuning-{key}.json"
    try:
        saved = json.loads(tuning.read_text())
        lanes, wg = saved["lanes"], saved["wg"]
        if (lanes, wg) in CANDIDATES:
            lib, flags, path = _load_candidate(lanes, wg, settings.march, cache)
            return Kernel(lib, lanes, wg, flags, path, "cached measurement", saved.get("timings", {}))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return _tune(settings, cache, tuning)


def _tune(settings: Settings, cache: Path, tuning: Path) -> Kernel:
    """Build every candidate (two compilers at a time), time a paper64 training step with each, keep the fastest."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        futures = {c: pool.submit(_load_candidate, *c, settings.march, cache) for c in CANDIDATES}
        loaded = {}
        for c, f in futures.items():
            try:
                loaded[c] = f.result()
            except OSError as err:
                last_error = err
    if not loaded:
        raise last_error
    timings = {f"lanes={c[0]},wg={c[1]}": _time_step(Kernel(lib, *c, flags, path, "", {}))
               for c, (lib, flags, path) in loaded.items()}
    best = min(loaded, key=lambda c: timings[f"lanes={c[0]},wg={c[1]}"])
    lib, flags, path = loaded[best]
    _write_text(tuning, json.dumps({"lanes": best[0], "wg": best[1], "timings": timings}, indent=1) + "\n")
    return Kernel(lib, *best, flags, path, "measured" if len(loaded) > 1 else "only candidate", timings)


def _time_step(k: Kernel, repeats: int = 5) -> float:
    """Seconds of one training step (``FusedAutoencoder.step``: forward and backward, batch 64, one thread) of the
    paper's network: the best of ``repeats`` after a warm-up."""
    from ..models import ModelConfig, build_model
    from .executor import FusedAutoencoder

    model = build_model(ModelConfig(), seed=0)
    ex = FusedAutoencoder(model, threads=1, kernel=k)
    x = torch.rand(64, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    best = float("inf")
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        for _ in range(3):
            ex.step(x)
        if r:
            best = min(best, (time.perf_counter() - t0) / 3)
    return best


def available(settings: Settings | None = None) -> bool:
    """True when the kernel is compiled (or compiles now) and loads."""
    return kernel(settings) is not None


def unavailable_reason(settings: Settings | None = None) -> str | None:
    """Why ``available()`` is False (None when it is True)."""
    settings = read_settings() if settings is None else settings
    if kernel(settings) is not None:
        return None
    key = (settings.cache, settings.march, settings.kernel, settings.fused, os.environ.get("CC", ""))
    return _kernels[key]


def kernel_info(settings: Settings | None = None) -> dict:
    """The kernel configuration in force (for bench output and run metrics), or why there is none."""
    k = kernel(settings)
    return k.info() if k is not None else {"unavailable": unavailable_reason(settings)}


