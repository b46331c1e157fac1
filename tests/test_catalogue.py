"""The catalogue of bad inputs and faults (issue 16).

Bad inputs (command line and Python API): each is refused before any work with one line naming the option as
the user wrote it (or the config key, or the variable), exit code 2 (ValueError / TypeError in the API), and
nothing is created or changed. Faults: a malformed or tampered results file, Ctrl-C (also one swallowed by a
finaliser), an interrupted ``reproduce``, a full disk, two processes on one run directory, bit-flipped
checkpoints and models, a damaged kernel library, and a training process killed (SIGKILL) at random moments:
each is survived without losing finished work. Property-based tests (Hypothesis) close the catalogue: any
input the data generators and configs accept gives finite data of the promised shape, any other raises
ValueError.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from geoae import data, fused, interrupts
from geoae.cli import main
from geoae.models import ModelConfig, build_model, load_official_model
from geoae.training import CheckpointError, TrainConfig, load_run, train, train_many
from geoae.training.rundir import load_tensors

SMALL = TrainConfig(model=ModelConfig(size=16), data=data.DiskData(n=64, size=16), iterations=12, batch_size=8,
                    log_every=2, checkpoint_every=2)


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``root``: equal snapshots = nothing created or changed."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def weights_of(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_tensors(run_dir / "model.safetensors")[0]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def at_batch(monkeypatch, n: int, action):
    """``action()`` runs when the n-th training batch (of any run, any thread) is drawn; returns the undo."""
    from geoae.training import loop

    original, calls = loop.BatchSource.draw, {"n": 0}

    def next_batch(self):
        calls["n"] += 1
        if calls["n"] == n:
            action()
        return original(self)

    monkeypatch.setattr(loop.BatchSource, "draw", next_batch)
    return lambda: monkeypatch.setattr(loop.BatchSource, "draw", original)


def ctrl_c():
    raise KeyboardInterrupt


# ------------------------------------------------------------------------------- bad command lines

# what the bad inputs below refer to, made in each test's own directory
FILES = {
    "file.txt": b"not a directory",
    "bad.json": b'{"lr": 1e-3,',
    "latin1.json": '{"notes": "é"}'.encode("latin-1"),
    "unknown.json": b'{"zzz": 1}',
    "lr.json": b'{"lr": "fast"}',
    "model5.json": b'{"model": 5}',
    "n0.json": b'{"data": {"n": 0}}',
    "list.json": b"[]",
    "deep.json": b"[" * 100_000 + b"]" * 100_000,
    "corrupt.h5": b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 4,
    "huge.json": b'{"seed": ' + b"9" * 5000 + b"}",
}
DIRS = ("dir.npz", "empty", "results")

T = "{tmp}"  # replaced by the test's directory
CLI_CASES = [
    # data disks
    (["data", "disks", "--n", "0"], "--n must be an integer in [1, "),
    (["data", "disks", "--n", "-5"], "--n must be"),
    (["data", "disks", "--n", "1000000000000"], "--n must be an integer in [1, 1073741824]"),
    (["data", "disks", "--size", "1"], "--size must be an integer in [2, 4096], got 1"),
    (["data", "disks", "--size", "100000"], "--size must be an integer in [2, 4096]"),
    (["data", "disks", "--size", "4096", "--n", "1000"], "--n=1000 asks for 1,000 × 16,777,216"),
    (["data", "disks", "--sigma", "0"], "--sigma must be a finite number in (0, 4096], got 0"),
    (["data", "disks", "--sigma", "nan"], "--sigma must be a finite number"),
    (["data", "disks", "--r-min", "-1"], "--r-min must be finite and >= 0"),
    (["data", "disks", "--r-min", "20", "--r-max", "10"], "--r-min=20 must be < r_max=10"),
    (["data", "disks", "--r-max", "40"], "--r-max=40 must be <= size/2 = 32"),
    (["data", "disks", "--exclude", "0:32"], "--exclude intervals cover the whole range"),
    (["data", "disks", "--exclude", "18:11"], "--exclude interval (18.0, 11.0)"),
    (["data", "disks", "--exclude", "a:b"], "argument --exclude: expected LO:HI"),
    (["data", "disks", "--seed", "-1"], "--seed -1: must be an integer from 0 to 9223372036854775807"),
    (["data", "disks", "--seed", str(2**64)], "--seed 18446744073709551616: must be an integer from 0"),
    (["data", "disks", "--n", "ten"], "argument --n: invalid int value: 'ten'"),
    (["data", "disks", "--rendering", "blurry"], "argument --rendering: invalid choice: 'blurry'"),
    (["data", "disks", "--out", f"{T}/x.txt"], "--out must name a .npz file"),
    (["data", "disks", "--out", f"{T}/dir.npz"], "--out {tmp}/dir.npz: a directory, not a file"),
    (["data", "disks", "--out", f"{T}/file.txt/x.npz"], "--out {tmp}/file.txt/x.npz: {tmp}/file.txt is a file"),
    (["data", "disks", "--out", ""], "argument --out: expected a path, got an empty string"),
    # data diracs
    (["data", "diracs", "--n", "0"], "--n must be an integer in [1, "),
    (["data", "diracs", "--size", "1"], "--size must be an integer in [2, 4096], got 1"),
    (["data", "diracs", "--ndim", "3"], "argument --ndim: invalid choice: 3"),
    (["data", "diracs", "--scheme", "random", "--fraction", "1.5"], "--fraction must be in (0, 1], got 1.5"),
    (["data", "diracs", "--scheme", "hole", "--hole", "30:10"], "--hole must be a pair of ints"),
    (["data", "diracs", "--scheme", "hole", "--hole", "1.5:3"], "argument --hole: expected two integers"),
    (["data", "diracs", "--scheme", "stride", "--stride", "0"], "--stride must be an integer in [1, 64], got 0"),
    (["data", "diracs", "--ndim", "2", "--size", "256"], "--size=256 asks for 65,536 × 65,536"),
    (["data", "diracs", "--scheme", "quadrant", "--ndim", "1"], "--quadrant is only defined for ndim=2"),
    (["data", "diracs", "--seed", "-1"], "--seed -1: must be an integer from 0"),
    # theory
    (["theory", "--radius", "0"], "--radius 0.0: must be a number in [0.001, 1e+06]"),
    (["theory", "--radius", "inf"], "--radius inf: must be a number in [0.001, 1e+06]"),
    (["theory", "--radius", "1e300"], "--radius 1e+300: must be a number in [0.001, 1e+06]"),
    (["theory", "--radius", "1e-300"], "--radius 1e-300: must be a number in [0.001, 1e+06]"),  # issue 24
    (["theory", "--k", "4"], "argument --k: invalid choice: 4"),
    (["theory", "--out", f"{T}/file.txt"], "--out {tmp}/file.txt: an existing file, not a directory"),
    # train: options
    (["train", "--out", f"{T}/file.txt"], "--out {tmp}/file.txt: an existing file, not a directory"),
    (["train", "--out", f"{T}/file.txt/run"], "--out {tmp}/file.txt/run: {tmp}/file.txt is a file"),
    (["train", "--size", "48"], "--size must be a power of two from 2 to 4096 for arch='paper64'"),
    (["train", "--size", "8192"], "--size must be a power of two from 2 to 4096 for arch='paper64' (no silent crop), "
     "got 8192"),
    (["train", "--latent-dim", "0"], "--latent-dim must be an integer from 1 to 4096, got 0"),
    (["train", "--alpha", "-1"], "--alpha must be a number from 0 to 100 or None, got -1.0"),
    (["train", "--n-train", "0"], "--n-train must be an integer in [1, "),
    (["train", "--n-train", "1000000000000"], "--n-train must be an integer in [1, 1073741824]"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer from 1 to 65536, got 0"),
    (["train", "--batch-size", "10000000"], "--batch-size must be an integer from 1 to 65536"),
    (["train", "--iterations", "0"], "--iterations must be an integer from 1 to 100000000, got 0"),
    (["train", "--lr", "nan"], "--lr must be a finite number > 0.0 and <= 10, got nan"),
    (["train", "--lr", "1e9"], "--lr must be a finite number > 0.0 and <= 10"),
    (["train", "--reg-weight", "-1"], "--reg-weight must be a finite number >= 0.0"),
    (["train", "--seed", "-1"], "--seed must be an integer from 0 to 9223372036854775807, got -1"),
    (["train", "--seed", str(2**64)], "--seed must be an integer from 0 to 9223372036854775807"),
    (["train", "--r-max", "40"], "--r-max=40 must be <= size/2 = 32"),
    (["train", "--exclude", "0:32"], "--exclude intervals cover the whole range"),
    (["train", "--data", "diracs", "--r-max", "5"], "--r-max: only for disks, not for --data diracs"),
    (["train", "--arch", "paper1d", "--set", "data.ndim=2"], "--arch='paper1d' does not fit the data"),
    (["train", "--arch", "keras63", "--size", "64"], "--size must be 63 for arch='keras63', got 64"),
    (["train", "--config", f"{T}/n0.json", "--arch", "keras63"], "--config {tmp}/n0.json: data.n must be"),
    # train: --config files
    (["train", "--config", f"{T}/bad.json"], "--config {tmp}/bad.json: not valid JSON (Expecting"),
    (["train", "--config", f"{T}/latin1.json"], "--config {tmp}/latin1.json: not UTF-8 text (byte 0xe9"),
    (["train", "--config", f"{T}/unknown.json"], "--config {tmp}/unknown.json: zzz: unknown TrainConfig key"),
    (["train", "--config", f"{T}/lr.json"], "--config {tmp}/lr.json: lr must be a finite number"),
    (["train", "--config", f"{T}/model5.json"], "--config {tmp}/model5.json: model must be a JSON object"),
    (["train", "--config", f"{T}/n0.json"], "--config {tmp}/n0.json: data.n must be an integer in [1, "),
    (["train", "--config", f"{T}/list.json"], "--config {tmp}/list.json: a TrainConfig must be a JSON object"),
    (["train", "--config", f"{T}/deep.json"], "--config {tmp}/deep.json: not a config (JSON nested too deeply)"),
    (["train", "--config", f"{T}/huge.json"], "--config {tmp}/huge.json: seed must be an integer from 0 to "
                                              "9223372036854775807, got <a 5000-digit integer>"),
    (["train", "--config", f"{T}/missing.json"], "--config {tmp}/missing.json: not found"),
    (["train", "--config", f"{T}/empty"], "--config {tmp}/empty: not a file"),
    (["train", "--tensorboard", f"{T}/file.txt"], "--tensorboard {tmp}/file.txt: an existing file"),
    (["train", "--mlflow", " "], "--mlflow: expected a tracking URI"),
    # export
    (["export", f"{T}/empty", "--out", f"{T}/tb"],
     "RUN_DIR {tmp}/empty is neither a run directory (no history.jsonl) nor a folder of runs"),
    (["export", f"{T}/missing", "--out", f"{T}/tb"], "RUN_DIR {tmp}/missing is not a run directory"),
    (["export", f"{T}/empty", "--to", "csv"], "argument --to: invalid choice: 'csv'"),
    # reproduce
    (["reproduce", "--only", ","], "--only ',': an empty id; give comma-separated ids from D1"),
    (["reproduce", "--only", ""], "--only '': an empty id"),
    (["reproduce", "--only", "D1,,D2"], "--only 'D1,,D2': an empty id"),
    (["reproduce", "--only", "D9"], "--only 'D9': unknown id D9"),
    (["reproduce", "--seeds", "0"], "--seeds 0: must be an integer from 1 to 100"),
    (["reproduce", "--seeds", "1000"], "--seeds 1000: must be an integer from 1 to 100"),
    (["reproduce", "--profile", "huge"], "argument --profile: invalid choice: 'huge'"),
    (["reproduce", "--out", f"{T}/file.txt"], "--out {tmp}/file.txt: an existing file, not a directory"),
    (["reproduce", "--official-weights", f"{T}/missing.h5"], "--official-weights {tmp}/missing.h5: not found"),
    (["reproduce", "--official-weights", f"{T}/corrupt.h5"],
     "--official-weights: {tmp}/corrupt.h5: not a readable Keras weights file"),
    # report
    (["report", "--out", f"{T}/missing"], "--out {tmp}/missing is not a directory of results"),
    (["report", "--out", f"{T}/file.txt"], "--out {tmp}/file.txt is not a directory of results"),
    (["report", "--out", f"{T}/results", "--reproduce-md", f"{T}/empty"], "--reproduce-md {tmp}/empty: a directory"),
    (["report", "--out", f"{T}/results", "--reproduce-md", f"{T}/file.txt/R.md"], "{tmp}/file.txt is a file"),
    # bench
    (["bench", "--repeats", "0"], "--repeats 0: must be an integer from 1 to 1000"),
    (["bench", "--sweep", "-1"], "--sweep -1: must be an integer from 0 to 1000"),
    (["bench", "--steps", "0"], "--steps 0: must be an integer from 1 to 1000000"),
    (["bench", "--batch-size", "0"], "--batch-size 0: must be an integer from 1 to 65536"),
    (["bench", "--size", "48"], "--size must be a power of two"),
    (["bench", "--threads", "0"], "--threads 0: must be an integer from 1 to 1024"),
    (["bench", "--networks", "paper64,vgg"],
     "--networks: each must be one of keras63, paper1d (comma-separated, '' for none), got 'paper64', 'vgg'"),
    (["bench", "--sweep-repeats", "0"], "--sweep-repeats 0: must be an integer from 1 to 1000"),
    (["bench", "--level", "x86-64-v5"], "argument --level: invalid choice: 'x86-64-v5'"),
    # explore
    (["explore", f"{T}/missing", "--out", f"{T}/e.html"], "RUN_DIR {tmp}/missing is not a finished run directory"),
    (["explore", f"{T}/empty", "--out", f"{T}/e.html"], "RUN_DIR {tmp}/empty is not a finished run directory"),
    (["explore", f"{T}/empty", "--out", f"{T}/e.png"], "--out must name a .html or .htm file"),
    (["explore", f"{T}/empty", "--out", f"{T}/e.html", "--label", "a", "--label", "b"],
     "--label: one per RUN_DIR: 1 run(s), 2 label(s)"),
    # convert-keras
    (["convert-keras", f"{T}/missing.h5", "--out", f"{T}/o"], "H5 {tmp}/missing.h5: not found"),
    (["convert-keras", f"{T}/corrupt.h5", "--out", f"{T}/file.txt"], "--out {tmp}/file.txt: an existing file"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]

# GEOAE_* settings: refused by every command but info, before any work
SETTINGS_CASES = [
    ("GEOAE_THREADS", "0", "GEOAE_THREADS must be an integer from 1 to 64, got '0'"),
    ("GEOAE_THREADS", "100000", "GEOAE_THREADS must be an integer from 1 to 64, got '100000'"),
    ("GEOAE_TORCH_THREADS", "abc", "GEOAE_TORCH_THREADS must be an integer from 0 to 1024, got 'abc'"),
    ("GEOAE_WORKERS", "0", "GEOAE_WORKERS must be an integer from 1 to 256, got '0'"),
    ("GEOAE_BACKEND", "gpu", "GEOAE_BACKEND must be one of auto, fused, torch, got 'gpu'"),
    ("GEOAE_FUSED", "yes", "GEOAE_FUSED must be one of 0, 1, got 'yes'"),
    ("GEOAE_KERNEL", "lanes=3,wg=8", "GEOAE_KERNEL must be 'auto' or 'lanes=L,wg=W'"),
    ("GEOAE_MARCH", "-O0 -fplugin=x", "GEOAE_MARCH must be a compiler -march name"),
    ("GEOAE_DEBUG", "yes", "GEOAE_DEBUG must be one of 0, 1, got 'yes'"),
    ("GEOAE_OFFICIAL_WEIGHTS", "{tmp}/missing.h5", "GEOAE_OFFICIAL_WEIGHTS='{tmp}/missing.h5' is not a file"),
    # issue 24
    ("GEOAE_CACHE", "{tmp}/file.txt", "GEOAE_CACHE must be a directory of your own (existing, or one that can be "
                                      "created), got '{tmp}/file.txt' (an existing file)"),
    ("GEOAE_CACHE", "{tmp}/file.txt/sub", "GEOAE_CACHE must be a directory of your own"),
    ("GEOAE_CACHE", "/proc/self/geoae", "GEOAE_CACHE must be a directory of your own (existing, or one that can "
                                        "be created), got '/proc/self/geoae' (a kernel file system)"),
    ("GEOAE_OFFICIAL_WEIGHTS", "{tmp}/corrupt.h5", "GEOAE_OFFICIAL_WEIGHTS='{tmp}/corrupt.h5': {tmp}/corrupt.h5: "
                                                   "not a readable Keras weights file"),
]
SETTINGS_COMMANDS = {
    "train": ["train", "--size", "16", "--n-train", "16", "--iterations", "2", "--out", "{tmp}/run"],
    "reproduce": ["reproduce", "--profile", "tiny", "--only", "D1", "--out", "{tmp}/r"],
    "data": ["data", "disks", "--n", "4", "--size", "8", "--out", "{tmp}/d.npz"],
}


@pytest.fixture()
def world(tmp_path, monkeypatch):
    """A directory holding the files the bad inputs name; the test runs inside it."""
    for name, content in FILES.items():
        (tmp_path / name).write_bytes(content)
    for name in DIRS:
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(argv: list[str], world: Path, capsys, needle: str) -> None:
    """``argv`` ends with exit code 2, one line naming ``needle``, and nothing created or changed."""
    fill = lambda s: s.replace(T, str(world))  # noqa: E731
    before = snapshot(world)
    code = main([fill(a) for a in argv])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2, line
    assert line.startswith("geoae") and "error" in line and fill(needle) in line, line
    assert snapshot(world) == before


@pytest.mark.parametrize(("argv", "needle"), CLI_CASES, ids=[" ".join(c[0])[:60] for c in CLI_CASES])
def test_bad_command_line_is_refused_before_any_work(argv, needle, world, capsys):
    if argv[0] in ("train", "explore", "convert-keras", "reproduce") and "--out" not in argv:
        argv = [*argv, "--out", f"{T}/out"]
    if argv[0] == "data" and "--out" not in argv:
        argv = [*argv, "--out", f"{T}/x.npz"]
    if "corrupt.h5" in " ".join(argv):
        pytest.importorskip("h5py", reason="h5py absent (pip install geoae[keras])")
    refused(argv, world, capsys, needle)


SETTINGS_RUNS = [(variable, value, needle, command) for variable, value, needle in SETTINGS_CASES
                 for command in sorted(SETTINGS_COMMANDS)
                 if variable != "GEOAE_OFFICIAL_WEIGHTS" or command == "reproduce"]  # read by D1 / D2 only


@pytest.mark.parametrize(("variable", "value", "needle", "command"), SETTINGS_RUNS,
                         ids=[f"{c}-{v}={x}" for v, x, _, c in SETTINGS_RUNS])
def test_bad_setting_is_refused_before_any_work(variable, value, needle, command, world, capsys, monkeypatch):
    if "corrupt.h5" in value:
        pytest.importorskip("h5py", reason="h5py absent (pip install geoae[keras])")
    monkeypatch.setenv(variable, value.replace(T, str(world)))
    refused(SETTINGS_COMMANDS[command], world, capsys, needle)


@contextlib.contextmanager
def as_ordinary_user():
    """Permissions apply: as root, the block runs with the effective uid of ``nobody`` (root writes anywhere)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


READ_ONLY_CASES = [
    (["train", "--size", "16", "--iterations", "2", "--out", "{ro}/run"], "--out {ro}/run: cannot write in {ro}"),
    (["data", "disks", "--n", "4", "--out", "{ro}/x.npz"], "--out {ro}/x.npz: cannot write in {ro}"),
    (["theory", "--out", "{ro}/sub/theory"], "--out {ro}/sub/theory: cannot write in {ro}"),
    (["reproduce", "--profile", "tiny", "--only", "D1", "--out", "{ro}/r"], "--out {ro}/r: cannot write in {ro}"),
    (["report", "--out", "{rw}", "--reproduce-md", "{ro}/REPRODUCE.md"], "--reproduce-md {ro}/REPRODUCE.md: cannot"),
    (["report", "--out", "{ro}"], "--out {ro}: cannot write in {ro}"),
]


@pytest.mark.parametrize(("argv", "needle"), READ_ONLY_CASES, ids=[c[0][0] for c in READ_ONLY_CASES])
def test_read_only_places_are_refused_before_anything_is_written(argv, needle, capsys):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        ro, rw = root / "ro", root / "rw"
        for folder in (ro, rw):
            folder.mkdir()
            (folder / "D1").mkdir()
            (folder / "D1" / "results.json").write_text('{"id": "D1", "status": "failed", "error": "x"}')
        os.chmod(ro, 0o555)
        os.chmod(rw, 0o777)
        os.chmod(rw / "D1", 0o777)
        fill = lambda s: s.replace("{ro}", str(ro)).replace("{rw}", str(rw))  # noqa: E731
        before = snapshot(root)
        with as_ordinary_user():
            code = main([fill(a) for a in argv])
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and fill(needle) in line and "Permission denied" in line, line
        assert snapshot(root) == before  # report: not even report.md in the writable --out


# ------------------------------------------------------------------------------------ bad API calls


@pytest.fixture(scope="module")
def model16():
    return build_model(ModelConfig(size=16))


API_CASES = [
    (lambda m: data.make_disks(-1, seed=0), ValueError, "n must be an integer in [0, "),
    (lambda m: data.make_disks(10**12, seed=0), ValueError, "n must be an integer in [0, 1073741824]"),
    (lambda m: data.make_disks(10**6, size=64, seed=0), ValueError, "n=1000000 asks for"),
    (lambda m: data.make_disks("5", seed=0), ValueError, "n must be an integer"),
    (lambda m: data.make_disks(5, size=10**5, seed=0), ValueError, "size must be an integer in [2, 4096]"),
    (lambda m: data.make_disks(5, seed=-1), ValueError, "seed must be an integer in [0, 2**63 - 1]"),
    (lambda m: data.make_disks(5, seed=2**64), ValueError, "seed must be an integer in [0, 2**63 - 1]"),
    (lambda m: data.make_disks(5, seed=1.5), ValueError, "seed must be an integer"),
    (lambda m: data.make_disks(5, sigma=True, seed=0), ValueError, "sigma must be a finite number"),
    (lambda m: data.make_diracs(10**12), ValueError, "n must be an integer in [1, 1073741824]"),
    (lambda m: data.make_diracs(size=10**5), ValueError, "size must be an integer in [2, 4096]"),
    (lambda m: data.make_diracs(ndim=2, size=512), ValueError, "size=512 asks for"),
    (lambda m: data.render_disks([1.0], size=10**4), ValueError, "size must be an integer in [2, 4096]"),
    (lambda m: data.render_disks(np.ones(10**6), size=64), ValueError, "radii=<1000000 radii> asks for"),
    (lambda m: data.render_disks("abc"), ValueError, "radii must be a 1-D sequence of numbers"),
    (lambda m: data.render_diracs(object()), ValueError, "positions must be integers"),
    (lambda m: data.DiskData(n=True), ValueError, "n must be an integer"),
    (lambda m: data.DiracData(size=16, ndim=2, hole=(0, 16)), ValueError, "hole=(0, 16) removes every position"),
    (lambda m: ModelConfig(size=8192).validate(), ValueError, "size must be a power of two from 2 to 4096"),
    (lambda m: ModelConfig(latent_dim=10**6).validate(), ValueError, "latent_dim must be an integer from 1 to 4096"),
    (lambda m: ModelConfig.from_dict([]), ValueError, "a ModelConfig must be a dict"),
    (lambda m: TrainConfig.from_dict({"lr": "fast"}), ValueError, "lr must be a finite number"),
    (lambda m: TrainConfig.from_dict({"model": 5}), ValueError, "model must be a JSON object, got 5"),
    (lambda m: TrainConfig.from_dict({"data": {"exclude": 5}}), ValueError, "data.n: missing"),
    (lambda m: TrainConfig.from_dict({"model": {"size": 48}}), ValueError, "model.size must be a power of two"),
    (lambda m: dataclasses.replace(SMALL, seed=2**64).validate(), ValueError, "seed must be an integer from 0"),
    (lambda m: m.encode(np.zeros((2, 1, 16, 16))), TypeError, "expected input as a torch.Tensor of shape"),
    (lambda m: m.encode(torch.zeros(2, 1, 16, 16, dtype=torch.int64)), TypeError, "dtype float32 (or float64)"),
    (lambda m: m.encode(torch.zeros(2, 1, 16, 16, dtype=torch.float16)), TypeError, "got torch.float16"),
    (lambda m: m.encode(torch.zeros(1, 16, 16)), ValueError, "expected input of shape (B, 1, 16, 16)"),
    (lambda m: m.decode([0.5]), TypeError, "expected a code as a torch.Tensor of shape (B, 1), got list"),
    (lambda m: m.decode(torch.zeros(2, 3)), ValueError, "expected a code of shape (B, 1), got (2, 3)"),
    (lambda m: train(SMALL, threads=0), ValueError, "threads must be an integer from 1 to 64"),
    (lambda m: train_many([SMALL], "unused", workers=0), ValueError, "workers must be an integer from 1 to 256"),
    (lambda m: train_many(["config"], "unused"), ValueError, "train_many takes TrainConfig objects"),
    # issue 24
    (lambda m: train(SMALL, ""), ValueError, "out_dir must be a directory path (None: record nothing), got ''"),
    (lambda m: train(SMALL, " "), ValueError, "out_dir must be a directory path"),
    (lambda m: train(SMALL, 5), ValueError, "out_dir must be a directory path (None: record nothing), got 5"),
    (lambda m: train(SMALL, "run", callbacks=[1]), ValueError, "callbacks must be a sequence of callables f(record, "
                                                                "model), got (1,)"),
    (lambda m: train(SMALL, "run", callbacks=print), ValueError, "callbacks must be a sequence of callables"),
    (lambda m: dataclasses.replace(SMALL, betas=[0.9, 1.5]).validate(), ValueError,
     "betas must be two numbers in [0, 1), got (0.9, 1.5)"),
    (lambda m: dataclasses.replace(SMALL, lr=np.float32("nan")).validate(), ValueError,
     "lr must be a finite number > 0.0 and <= 10, got nan"),
]


@pytest.mark.parametrize(("call", "error", "needle"), API_CASES, ids=[c[2][:40] for c in API_CASES])
def test_bad_api_call_raises_the_documented_error(call, error, needle, model16, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as info:
        call(model16)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_bad_config_writes_no_run_directory(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be an integer from 1 to 65536, got 0"):
        train(dataclasses.replace(SMALL, batch_size=0), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_corrupt_h5_names_its_path(tmp_path):
    pytest.importorskip("h5py", reason="h5py absent (pip install geoae[keras])")
    path = tmp_path / "weights.h5"
    path.write_bytes(FILES["corrupt.h5"])
    with pytest.raises(ValueError, match=f"{path}: not a readable Keras weights file"):
        load_official_model(path)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_official_model(tmp_path / "missing.h5")


# --------------------------------------------------------------------------------- internal errors


@pytest.mark.parametrize(("phase", "error"), [("check", ZeroDivisionError("division by zero")),
                                              ("work", ZeroDivisionError("division by zero")),
                                              ("work", ValueError("a bug's ValueError"))])  # while checking, a
# ValueError is bad input by definition (the library's validators raise it)
def test_an_unexpected_exception_is_an_internal_error_not_bad_input(phase, error, tmp_path, capsys, monkeypatch):
    from geoae import cli

    def broken(*args):
        raise error

    check, work = cli.COMMANDS["theory"]
    monkeypatch.setitem(cli.COMMANDS, "theory", (broken, work) if phase == "check" else (check, broken))
    assert main(["theory", "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    first, hint = err.strip().splitlines()
    assert first == f"geoae theory: internal error: {type(error).__name__}: {error}"
    assert "bug in geoae" in hint and "GEOAE_DEBUG=1" in hint and "Traceback" not in err
    monkeypatch.setenv("GEOAE_DEBUG", "1")
    assert main(["theory", "--out", str(tmp_path / "t")]) == 1
    assert "Traceback" in capsys.readouterr().err


# ------------------------------------------------------------------------- faults: the results files

MALFORMED = {
    "a list": b"[]",
    "no verdict": json.dumps({"id": "D1", "status": "ok", "rule": "r", "numbers": {}, "descriptions": {}}).encode(),
    "numbers a list": json.dumps({"id": "D1", "status": "ok", "verdict": "confirmed", "rule": "r", "numbers": [1],
                                  "descriptions": {}}).encode(),
    "a verdict with markup": json.dumps({"id": "D1", "status": "ok", "verdict": "<script>", "rule": "r",
                                         "numbers": {}, "descriptions": {}}).encode(),
    "another claim's id": json.dumps({"id": "D2", "status": "failed", "error": "x"}).encode(),
    "a title that is not text": json.dumps({"id": "D1", "status": "failed", "title": {"a": 1}}).encode(),
    "tables of the wrong form": json.dumps({"id": "D1", "status": "ok", "verdict": "confirmed", "rule": "r",
                                            "numbers": {}, "descriptions": {}, "tables": [5]}).encode(),
    "not UTF-8": b'{"id": "D1", "title": "\xe9"}',
    "not JSON": b"{",
    # issue 24: each of these aborted the whole report with an internal error
    "a control that is not text": json.dumps({"id": "D1", "status": "ok", "verdict": "confirmed", "rule": "r",
                                              "numbers": {}, "descriptions": {}, "control": {"a": 1},
                                              "profile": "tiny", "seeds": [0]}).encode(),
    "a numeric table title": json.dumps({"id": "D1", "status": "ok", "verdict": "confirmed", "rule": "r",
                                         "numbers": {}, "descriptions": {}, "profile": "tiny", "seeds": [0],
                                         "tables": [{"title": 5, "columns": ["a"], "rows": [[1]]}]}).encode(),
    "a runtime that is not a number": json.dumps({"id": "D1", "status": "failed", "error": "x",
                                                  "runtime_s": "abc"}).encode(),
    "a NUL in a figure name": json.dumps({"id": "D1", "status": "ok", "verdict": "confirmed", "rule": "r",
                                          "numbers": {}, "descriptions": {}, "profile": "tiny", "seeds": [0],
                                          "figures": ["a\u0000.png"]}).encode(),
}


def good_record(exp_id: str, **changes) -> dict:
    return {"id": exp_id, "title": f"title {exp_id}", "status": "ok", "profile": "tiny", "seeds": [0],
            "runtime_s": 1.0, "numbers": {"x": 1.0}, "descriptions": {"x": "a number"}, "verdict": "confirmed",
            "rule": "confirmed if x > 0", "figures": [], "tables": []} | changes


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_a_malformed_results_file_is_marked_in_the_report(kind, tmp_path, capsys):
    (tmp_path / "D1").mkdir()
    (tmp_path / "D1" / "results.json").write_bytes(MALFORMED[kind])
    (tmp_path / "D3").mkdir()
    (tmp_path / "D3" / "results.json").write_text(json.dumps(good_record("D3")))
    assert main(["report", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    md, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert "| D1 |" in md and "| failed |" in md and ("malformed D1/results.json" in md or "unreadable" in md)
    assert "| D3 | title D3 | confirmed |  | x = 1 |" in md  # the others are still reported
    assert "<script>" not in page


SECRET = b"TOP-SECRET-CONTENT-1234567890"


@pytest.mark.parametrize("figure", ["/etc/passwd", "../secret.png", "sub/../../secret.png", "link.png"])
def test_a_tampered_results_file_cannot_embed_outside_files_or_inject_markup(figure, tmp_path):
    import base64

    out = tmp_path / "results"
    (out / "D1").mkdir(parents=True)
    (out / "secret.png").write_bytes(SECRET)
    (out / "D1" / "link.png").symlink_to(out / "secret.png")
    (out / "D1" / "ok.png").write_bytes(b"\x89PNG fine")
    (out / "D3").mkdir()
    markup = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    (out / "D3" / "results.json").write_text(json.dumps(good_record(
        "D3", title=markup, rule=markup, notes=markup, numbers={markup: 1.0}, descriptions={markup: markup},
        tables=[{"title": markup, "columns": [markup], "rows": [[markup]]}], figures=["ok.png"])))
    (out / "D3" / "ok.png").write_bytes(b"\x89PNG fine")
    (out / "D1" / "results.json").write_text(json.dumps(good_record("D1", figures=["ok.png", figure])))
    assert main(["report", "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    secret = base64.b64encode(SECRET).decode()
    passwd = base64.b64encode(Path("/etc/passwd").read_bytes()[:30]).decode()[:36]
    assert secret[:24] not in page and passwd not in page
    assert "malformed D1/results.json" in page and f"figure {figure!r} lies outside D1/".replace("'", "&#x27;") in page
    assert "<script>" not in page and "onerror=alert(2)>" not in page and "&lt;script&gt;" in page
    assert base64.b64encode(b"\x89PNG fine").decode() in page  # D3's own figure is embedded


# ------------------------------------------------------------------------------------ faults: Ctrl-C


def fake_experiments(monkeypatch, hook):
    """Three cheap experiments (D1, D2, D3: one small run each) in place of the paper's; ``hook(exp_id)`` runs
    in each analysis."""
    from types import SimpleNamespace

    from geoae.experiments import runner
    from geoae.experiments.common import Number, Result

    def module(exp_id, seed):
        def analyse(ctx, runs):
            hook(exp_id)
            return Result({"mse": Number(runs["run"].metrics["train_mse"], "train MSE")}, "confirmed", "always")

        return SimpleNamespace(TITLE=f"fake {exp_id}", CLAIM="", PAPER="", analyse=analyse,
                               STAGES=(lambda ctx, done: {"run": dataclasses.replace(SMALL, seed=seed)},))

    modules = {f"D{i}": module(f"D{i}", i) for i in (1, 2, 3)}
    fakes = {k: SimpleNamespace(id=k, kind="claim", paper_claim=True, load=lambda k=k: modules[k], recipes=(),
                                quick_seeds=None, recipes_for=lambda profile, chosen=None: (None,)) for k in modules}
    monkeypatch.setattr(runner, "BY_ID", fakes)


def test_a_swallowed_ctrl_c_still_stops_reproduce_and_the_rerun_resumes(tmp_path, capsys, monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt was swallowed (by a finaliser) leaves its request: reproduce stops at
    the next experiment with exit code 130, the finished experiments and runs are kept, the rerun resumes."""
    analysed = []

    def swallowed_ctrl_c(exp_id):
        analysed.append(exp_id)
        if exp_id == "D2" and len(analysed) == 2:
            interrupts.request()  # what the handler records before its raise (lost here)

    fake_experiments(monkeypatch, swallowed_ctrl_c)
    argv = ["-q", "reproduce", "--profile", "tiny", "--only", "D1,D2,D3", "--out", str(tmp_path)]
    assert main(argv) == 130
    assert "interrupted; the finished work is kept" in one_line_error(capsys.readouterr().err)
    assert analysed == ["D1", "D2"] and not (tmp_path / "D3" / "results.json").exists()
    runs = {p.name: p.joinpath("model.safetensors").stat().st_mtime_ns for p in (tmp_path / "runs" / "tiny").iterdir()}
    assert len(runs) == 3  # every run was trained before the analyses (prefetch) and kept
    assert main(argv) == 0
    assert analysed == ["D1", "D2", "D3"]  # D1 and D2 kept, not redone
    assert runs == {p.name: p.joinpath("model.safetensors").stat().st_mtime_ns
                    for p in (tmp_path / "runs" / "tiny").iterdir()}  # no run retrained


def test_a_swallowed_ctrl_c_stops_training_threads_and_their_runs_resume(tmp_path, capsys, monkeypatch):
    fake_experiments(monkeypatch, lambda exp_id: None)
    undo = at_batch(monkeypatch, 9, interrupts.request)  # a Ctrl-C whose raise was lost, runs training in threads
    monkeypatch.setenv("GEOAE_WORKERS", "2")
    from geoae.training import schedule

    monkeypatch.setattr(schedule, "SMALL_MACS", 0)  # these small networks train in threads, not processes
    argv = ["-q", "reproduce", "--profile", "tiny", "--only", "D1,D2,D3", "--out", str(tmp_path)]
    assert main(argv) == 130
    assert not list(tmp_path.glob("D*/results.json"))
    assert list(tmp_path.glob("runs/tiny/*/checkpoint.safetensors"))  # stopped mid-run, checkpoints kept
    undo()
    assert main(argv) == 0
    for seed in (1, 2, 3):
        config = dataclasses.replace(SMALL, seed=seed)
        from geoae.training import run_name

        assert same(weights_of(tmp_path / "runs" / "tiny" / run_name(config)), dict(train(config).model.state_dict()))


@pytest.mark.slow
def test_ctrl_c_at_random_moments_of_a_real_reproduce_is_never_swallowed(tmp_path):
    """``geoae reproduce --profile tiny`` sent SIGINT at random moments (start-up, training, analysis, report):
    each time exit code 130 and one line (no traceback); the finished runs and results are kept, and the last
    run finishes what is left."""
    argv = [sys.executable, "-m", "geoae", "-q", "reproduce", "--profile", "tiny", "--only", "D1,D4", "--out",
            str(tmp_path)]
    rng, seen = random.Random(130), []
    for _ in range(6):
        process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(0.5, 15))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=600)
        if process.returncode == 0:  # finished before the signal
            break
        assert process.returncode == 130 and "interrupted" in one_line_error(err), (process.returncode, err)
        seen.append({p.name for p in tmp_path.glob("runs/tiny/*") if (p / "metrics.json").exists()})
        assert all(a <= b for a, b in zip(seen, seen[1:], strict=False))  # finished runs are never lost
    assert subprocess.run(argv, capture_output=True, timeout=600).returncode == 0
    assert (tmp_path / "D1" / "results.json").exists() and (tmp_path / "D4" / "results.json").exists()


GC_SCRIPT = """
import contextlib, gc, signal, sys
from geoae import interrupts

signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own handler, even where the parent ignores SIGINT

def callback(phase, info):  # a Ctrl-C landing in a garbage-collection callback: its KeyboardInterrupt is lost
    if phase == "start":
        gc.callbacks.remove(callback)
        signal.raise_signal(signal.SIGINT)

with interrupts.sigint_handler() if sys.argv[1] == "handler" else contextlib.nullcontext():
    try:
        gc.callbacks.append(callback)
        gc.collect()
        interrupts.check()
        print("went on")
    except KeyboardInterrupt:
        print("stopped")
"""


def test_a_ctrl_c_lost_in_a_gc_callback_is_not_swallowed(tmp_path):
    script = tmp_path / "gc_ctrl_c.py"
    script.write_text(GC_SCRIPT)
    run = {mode: subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, timeout=60)
           for mode in ("plain", "handler")}
    assert "KeyboardInterrupt" in run["plain"].stderr and run["plain"].stdout.strip() == "went on"  # the fault
    assert run["handler"].stdout.strip() == "stopped"  # with geoae's handler: remembered, raised again


# -------------------------------------------------------------------------------- faults: disk full


def enospc_at(monkeypatch, n: int, under: Path) -> None:
    """The n-th fsync of a file under ``under`` fails as on a full disk."""
    original, calls = os.fsync, {"n": 0}

    def fsync(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(under):
            calls["n"] += 1
            if calls["n"] == n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_full_disk_stops_training_with_one_line_and_the_last_checkpoint_resumes(tmp_path, capsys, monkeypatch):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL.to_dict()))
    run = tmp_path / "run"
    enospc_at(monkeypatch, 4, run)  # config.json, history.jsonl, checkpoint of step 2, then step 4: full
    assert main(["-q", "train", "--config", str(config), "--out", str(run)]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line == f"geoae train: error: cannot write {run / 'checkpoint.safetensors'}: the disk is full"
    assert not list(run.glob(".*.tmp")) and not (run / "metrics.json").exists()
    _, metadata = load_tensors(run / "checkpoint.safetensors")  # the last good one, readable
    assert metadata["iteration"] == "2"
    monkeypatch.undo()
    assert main(["-q", "train", "--config", str(config), "--out", str(run)]) == 0
    assert same(weights_of(run), dict(train(SMALL).model.state_dict()))


def test_a_full_disk_leaves_the_previous_report_whole(tmp_path, capsys, monkeypatch):
    (tmp_path / "D1").mkdir()
    (tmp_path / "D1" / "results.json").write_text(json.dumps(good_record("D1")))
    assert main(["-q", "report", "--out", str(tmp_path)]) == 0
    before = snapshot(tmp_path)
    (tmp_path / "D1" / "results.json").write_text(json.dumps(good_record("D1", numbers={"x": 2.0})))
    before["D1/results.json"] = (tmp_path / "D1" / "results.json").read_bytes()
    enospc_at(monkeypatch, 3, tmp_path)  # report.md and report.html staged, REPRODUCE.md: full
    assert main(["report", "--out", str(tmp_path)]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert line == f"geoae report: error: cannot write {tmp_path / 'REPRODUCE.md'}: the disk is full"
    assert snapshot(tmp_path) == before  # the old report.md, report.html, REPRODUCE.md, no temporary file


# ---------------------------------------------------------------------- faults: damaged run files


def flip(path: Path, where: str) -> None:
    """Damage a safetensors file: the low bit of a byte of tensor data, a header byte, a truncation, or all."""
    blob = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(blob[:8], "little")  # the tensors' bytes follow the JSON header
    if where == "low bit of a tensor":
        blob[(start + len(blob)) // 2] ^= 1
    elif where == "header":
        blob[12] ^= 0x20
    elif where == "truncated":
        blob = blob[: (start + len(blob)) // 2]
    else:
        blob = bytearray()
    path.write_bytes(bytes(blob))


DAMAGES = ["low bit of a tensor", "header", "truncated", "zero bytes"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    train(SMALL, root / "run")
    return root / "run"


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_model_file_is_refused(damage, finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    flip(run / "model.safetensors", damage)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_run(run)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL.to_dict()))
    before = snapshot(tmp_path)
    for argv in (["train", "--config", str(config), "--out", str(run)], ["explore", str(run), "--out",
                                                                          str(tmp_path / "e.html")]):
        assert main(argv) == 2
        line = one_line_error(capsys.readouterr().err)
        assert f"{run / 'model.safetensors'}" in line and ("corrupted" in line or "unreadable" in line), line
    assert snapshot(tmp_path) == before  # the damaged file is kept for inspection, nothing else written


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_refused(damage, tmp_path, capsys, monkeypatch):
    undo = at_batch(monkeypatch, 5, ctrl_c)  # stopped after the checkpoint of step 4
    with pytest.raises(KeyboardInterrupt):
        train(SMALL, tmp_path / "run")
    undo()
    checkpoint = tmp_path / "run" / "checkpoint.safetensors"
    flip(checkpoint, damage)
    damaged = checkpoint.read_bytes()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL.to_dict()))
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(checkpoint) in line and ("corrupted" in line or "unreadable" in line), line
    assert checkpoint.read_bytes() == damaged and not (tmp_path / "run" / "metrics.json").exists()


# ------------------------------------------------------------------ faults: the kernel library cache


@pytest.fixture()
def fake_compiler(tmp_path, monkeypatch):
    """A 'compiler' that copies this machine's built kernel (no compile: the cache logic is what is tested)."""
    kernel = fused.kernel()
    if kernel is None:
        pytest.skip(f"fused kernels unavailable: {fused.unavailable_reason()}")
    script = tmp_path / "cc.sh"
    script.write_text(f'#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && cp "{kernel.path}" "$2"; shift; done\n')
    monkeypatch.setattr(fused.build, "_compiler", lambda: ["/bin/sh", str(script)])
    cache = tmp_path / "cache"
    flags = fused.flags_for(kernel.lanes, kernel.wg, "")
    path = fused.build._build(flags, cache)
    assert fused.build._verified(path)
    return flags, cache, path


def _foreign(path: Path) -> None:
    import ctypes.util

    libm = ctypes.util.find_library("m") or "libm.so.6"
    found = next((p for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                              "/lib/aarch64-linux-gnu") if (p := Path(d) / libm).is_file()), None)
    path.write_bytes(found.read_bytes() if found else b"\x7fELF" + bytes(4000))


LIBRARY_DAMAGES = {
    "zero bytes": lambda p: p.write_bytes(b""),
    "scrambled": lambda p: p.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(p.stat().st_size))),
    "foreign library": _foreign,
}


@pytest.mark.parametrize("damage", list(LIBRARY_DAMAGES))
def test_a_damaged_kernel_library_is_rebuilt_not_loaded(damage, fake_compiler):
    flags, cache, path = fake_compiler
    LIBRARY_DAMAGES[damage](path)
    assert not fused.build._verified(path)  # never loaded: a truncated / scrambled library kills the process
    assert fused.build._build(flags, cache) == path and fused.build._verified(path)  # rebuilt
    fused.build._open(path)


def test_a_foreign_library_with_a_planted_checksum_is_refused_not_raised(fake_compiler):
    flags, cache, path = fake_compiler
    _foreign(path)
    path.with_suffix(".sha256").write_text(fused.build._digest(path) + "\n")
    with pytest.raises(OSError):
        fused.build._open(path)


# ---------------------------------------------------- faults: two processes, SIGINT, SIGKILL at random


@pytest.fixture(scope="module")
def forkserver():
    """Worker processes forked from one server that has imported geoae and torch once (each starts in ms)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["geoae.training", "torch._dynamo"])
    warm = context.Process(target=time.sleep, args=(0,))  # starts the server (seconds), once
    warm.start()
    warm.join()
    return context


def test_two_processes_on_one_run_directory(tmp_path, capsys):
    """A real ``geoae train`` process holds the run directory; this process (another one) is refused with the
    same or another config, the first is then stopped with Ctrl-C (exit 130), and the directory holds the first
    process's config and a valid checkpoint of it, untouched by the second."""
    long = dataclasses.replace(SMALL, iterations=10**7, checkpoint_every=5, log_every=5)
    other = dataclasses.replace(long, lr=2e-3)
    run = tmp_path / "run"
    paths = {}
    for name, cfg in (("a", long), ("b", other)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(cfg.to_dict()))
    first = subprocess.Popen([sys.executable, "-m", "geoae", "-q", "train", "--config", str(paths["a"]), "--out",
                              str(run)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.safetensors").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        written = (run / "config.json").read_bytes()
        for name in ("a", "b"):
            assert main(["-q", "train", "--config", str(paths[name]), "--out", str(run)]) == 1
            assert f"another process is training in {run}" in one_line_error(capsys.readouterr().err)
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130 and "interrupted" in one_line_error(err), err
    assert (run / "config.json").read_bytes() == written
    assert json.loads(written)["digest"] == long.digest()
    _, metadata = load_tensors(run / "checkpoint.safetensors")
    assert metadata["config_digest"] == long.digest() and int(metadata["iteration"]) >= 5
    before = snapshot(run)
    assert main(["-q", "train", "--config", str(paths["b"]), "--out", str(run)]) == 2  # unlocked: another config
    assert "belongs to another configuration" in one_line_error(capsys.readouterr().err)
    assert snapshot(run) == before


KILL_CONFIG = dataclasses.replace(SMALL, iterations=40, log_every=2, checkpoint_every=2)


def killed_at_random_moments(forkserver, root: Path, kills: int, seed: int) -> tuple[int, int, int]:
    """Train ``KILL_CONFIG`` uninterrupted, then in fresh directories (trials) kill it (SIGKILL) 1 to 3 times at
    random moments, each time resumed, then let it finish; every end must be bit-identical to the uninterrupted
    run. Trials go on until ``kills`` kills have landed on a running process. Returns (trials, kills landed,
    kills that left a temporary file behind: killed mid-write)."""
    def start(run: Path):
        process = forkserver.Process(target=train, args=(KILL_CONFIG, str(run)), kwargs={"threads": 1})
        process.start()
        return process

    reference, t0 = root / "reference", time.perf_counter()
    process = start(reference)
    process.join()
    duration = time.perf_counter() - t0
    assert process.exitcode == 0
    expected, expected_history = weights_of(reference), (reference / "history.jsonl").read_text()
    rng, landed, mid_write, trial = random.Random(seed), 0, 0, 0
    while landed < kills and trial < 4 * kills:
        run, trial = root / f"trial{trial}", trial + 1
        for _ in range(rng.randint(1, 3)):
            process = start(run)
            time.sleep(rng.uniform(0, duration))
            if process.is_alive():
                process.kill()
            process.join()
            landed += process.exitcode == -signal.SIGKILL
            mid_write += bool(list(run.glob(".*.tmp")))
        process = start(run)
        process.join()
        assert process.exitcode == 0, f"trial {trial}: the resumed run failed"
        assert same(weights_of(run), expected), f"trial {trial}: resumed weights differ"
        assert (run / "history.jsonl").read_text() == expected_history
        assert not list(run.glob(".*.tmp")) and not (run / "checkpoint.safetensors").exists()
    return trial, landed, mid_write


def test_a_run_killed_at_random_moments_resumes_bit_identical(forkserver, tmp_path):
    trials, landed, _ = killed_at_random_moments(forkserver, tmp_path, kills=10, seed=16)
    assert landed >= 10, f"{landed} kills landed in {trials} trials"


@pytest.mark.slow
def test_a_run_killed_at_many_random_moments_resumes_bit_identical(forkserver, tmp_path):
    trials, landed, mid_write = killed_at_random_moments(forkserver, tmp_path, kills=100, seed=1616)
    assert landed >= 100 and mid_write >= 1, (trials, landed, mid_write)


# -------------------------------------------------------------------------- property-based tests
# Each example draws every argument from its valid values, except (in most examples) one drawn from values
# outside what is documented. Property: with a bad argument the call raises ValueError (the one documented
# error type), naming nothing else; with none, it either gives finite data of the promised shape or (an
# invalid combination of valid values, e.g. r_min >= r_max) raises ValueError. `event` counts both.

PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
NOT_NUMBERS = st.sampled_from([None, True, "1", [1], 10**400, -(10**400), float("nan"), float("inf")])
NOT_SEEDS = st.sampled_from([-1, 2**64, 1.5, "0", None, True])


@st.composite
def arguments(draw, valid: dict, bad: dict):
    """(the argument drawn bad, or None in about half the examples, and the arguments)."""
    broken = draw(st.sampled_from([None] * len(valid) + list(valid)))
    return broken, {k: draw(bad[k] if k == broken else v) for k, v in valid.items()}


def outcome(call, broken):
    """The call's result, or None when it raised ValueError (required when an argument was ``broken``)."""
    try:
        result = call()
    except ValueError:
        event("refused (bad argument)" if broken else "refused (an invalid combination)")
        return None
    assert broken is None, f"accepted a bad {broken}"
    event("accepted")
    return result


DISKS = arguments(
    valid={"n": st.integers(0, 5), "size": st.integers(2, 16), "rendering": st.sampled_from(data.RENDERINGS),
           "sigma": st.floats(0.05, 3), "r_min": st.floats(0, 4), "r_max": st.one_of(st.none(), st.floats(0.5, 8)),
           "seed": st.integers(0, 2**63 - 1)},
    bad={"n": st.one_of(NOT_NUMBERS, st.sampled_from([-1, 10**12, 1.5])),
         "size": st.one_of(NOT_NUMBERS, st.sampled_from([0, 1, 4097, 8.0])),
         "rendering": st.one_of(st.text(max_size=4), st.none(), st.integers()),
         "sigma": st.one_of(NOT_NUMBERS, st.sampled_from([0.0, -1.0, 5000.0])),
         "r_min": st.one_of(NOT_NUMBERS, st.sampled_from([-1.0, -1e-9])),
         "r_max": st.one_of(st.sampled_from([True, "1", -1.0, 1e9, float("nan")])),
         "seed": NOT_SEEDS})


@PROPERTY
@given(DISKS)
def test_make_disks_gives_finite_images_of_the_promised_shape_or_a_value_error(drawn):
    broken, kw = drawn
    made = outcome(lambda: data.make_disks(**kw), broken)
    if made is not None:
        images, radii = made
        n, size = kw["n"], kw["size"]
        assert images.shape == (n, 1, size, size) and radii.shape == (n,) and images.dtype == torch.float32
        assert torch.isfinite(images).all() and (images >= 0).all() and (images <= 1).all()
        assert ((radii >= kw["r_min"]) & (radii <= (size / 2 if kw["r_max"] is None else kw["r_max"]))).all()


DIRACS = arguments(
    valid={"n": st.one_of(st.none(), st.integers(1, 5)), "size": st.integers(2, 12), "ndim": st.sampled_from([1, 2]),
           "scheme": st.sampled_from(data.SCHEMES), "fraction": st.floats(0.01, 1),
           "hole": st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(1, 12))),
           "stride": st.integers(1, 2), "quadrant": st.integers(0, 3), "seed": st.integers(0, 2**63 - 1)},
    bad={"n": st.one_of(st.sampled_from([0, -1, 10**12, 1.5, "2", True, 10**400])),
         "size": st.one_of(NOT_NUMBERS, st.sampled_from([0, 1, 4097, 2.5])),
         "ndim": st.sampled_from([0, 3, 1.0, "1", None, True]),
         "scheme": st.one_of(st.text(max_size=4).filter(lambda t: t not in data.SCHEMES), st.none(), st.integers()),
         "fraction": st.one_of(NOT_NUMBERS, st.sampled_from([0.0, -0.1, 1.01])),
         "hole": st.sampled_from([(3, 1), (0,), "ab", (0.5, 2), 5, (0, 10**6)]),
         "stride": st.sampled_from([0, -1, 1.5, "2", None, 10**6]),
         "quadrant": st.sampled_from([-1, 4, 1.5, None, "0"]),
         "seed": NOT_SEEDS})


@PROPERTY
@given(DIRACS)
def test_make_diracs_gives_one_hot_signals_of_the_promised_shape_or_a_value_error(drawn):
    broken, kw = drawn
    made = outcome(lambda: data.make_diracs(**kw), broken)
    if made is not None:
        signals, positions = made
        count, size, ndim = len(positions), kw["size"], kw["ndim"]
        assert kw["n"] is None or count == kw["n"]
        assert signals.shape == (count, 1, *(size,) * ndim) and torch.isfinite(signals).all()
        assert torch.equal(signals.flatten(1).sum(1), torch.ones(count))


def _config_dict(size: int) -> dict:
    return dataclasses.replace(SMALL, model=ModelConfig(size=size), data=data.DiskData(n=16, size=size)).to_dict()


CONFIGS = arguments(
    valid={"size": st.sampled_from([8, 16]), "iterations": st.integers(1, 10**8), "batch_size": st.integers(1, 65536),
           "lr": st.floats(1e-9, 10), "betas": st.lists(st.floats(0, 0.999), min_size=2, max_size=2),
           "regulariser": st.sampled_from(["none", "locality", "l2_all", "l2_encoder", "contractive"]),
           "reg_weight": st.floats(0, 1e12), "seed": st.integers(0, 2**63 - 1),
           "data_seed": st.one_of(st.none(), st.integers(0, 2**63 - 1)), "log_every": st.integers(1, 1000),
           "latent_dim": st.integers(1, 8), "n": st.integers(1, 1000)},
    bad={"size": st.sampled_from([12, 0, 8192, "16", None]),
         "iterations": st.one_of(NOT_NUMBERS, st.sampled_from([0, 10**8 + 1, 2.0])),
         "batch_size": st.one_of(NOT_NUMBERS, st.sampled_from([0, 65537])),
         "lr": st.one_of(NOT_NUMBERS, st.sampled_from([0.0, -1e-3, 11.0])),
         "betas": st.sampled_from([[0.9], [0.9, 1.0], "ab", None, [True, 0.5], [0.5, float("nan")]]),
         "regulariser": st.one_of(st.text(max_size=5), st.none()),
         "reg_weight": st.one_of(NOT_NUMBERS, st.sampled_from([-1.0, 1e13])),
         "seed": NOT_SEEDS, "data_seed": NOT_SEEDS.filter(lambda v: v is not None),
         "log_every": st.sampled_from([0, -1, 1.5, None]),
         "latent_dim": st.sampled_from([0, 4097, 1.5, None, "1"]),
         "n": st.sampled_from([0, -1, 10**9, 2.5, None, "10"])})


@PROPERTY
@given(CONFIGS, st.sampled_from([None] * 5 + ["zzz", "model.zzz", "data.zzz", "model", "data"]))
def test_train_config_from_dict_accepts_a_valid_config_or_raises_value_error(drawn, extra):
    broken, kw = drawn
    d = _config_dict(kw.pop("size") if broken != "size" else 16) | {k: v for k, v in kw.items()
                                                                   if k not in ("latent_dim", "n")}
    if broken == "size":
        d["model"]["size"] = drawn[1]["size"]
    d["model"]["latent_dim"], d["data"]["n"] = kw["latent_dim"], kw["n"]
    if extra is not None:  # an unknown key, or a part that is not an object
        part, _, key = extra.rpartition(".")
        if key in ("model", "data"):
            d[key] = [1]
        else:
            (d[part] if part else d)[key] = 1
        broken = broken or extra
    config = outcome(lambda: TrainConfig.from_dict(d), broken)
    if config is not None:
        config.validate()
        assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
        assert len(config.digest()) == 12


MODELS = arguments(
    valid={"arch": st.sampled_from(["paper64", "paper1d"]), "size": st.sampled_from([2, 4, 8, 16]),
           "latent_dim": st.integers(1, 4), "bias": st.booleans(), "alpha": st.one_of(st.none(), st.floats(0, 100)),
           "upsample": st.sampled_from(["zeros", "nearest"]),
           "output_activation": st.sampled_from(["leaky", "identity", "sigmoid"])},
    bad={"arch": st.one_of(st.text(max_size=4), st.none()), "size": st.sampled_from([0, 1, 3, 6, 8192, 8.0, "8"]),
         "latent_dim": st.sampled_from([0, -1, 4097, 1.5, "1", None, True]),
         "bias": st.sampled_from([0, 1, "yes", None]), "alpha": st.one_of(NOT_NUMBERS.filter(lambda v: v is not None),
                                                                        st.sampled_from([-0.1, 101.0])),
         "upsample": st.one_of(st.text(max_size=4), st.none()),
         "output_activation": st.one_of(st.text(max_size=4), st.none())})


@PROPERTY
@given(MODELS)
def test_model_config_builds_a_finite_network_or_raises_value_error(drawn):
    broken, kw = drawn
    model = outcome(lambda: build_model(ModelConfig(**kw)), broken)
    if model is not None:
        x = torch.rand(2, *model.input_shape)
        out = model(x)
        assert out.z.shape == (2, kw["latent_dim"]) and out.x_hat.shape == x.shape
        assert torch.isfinite(out.x_hat).all()


SETTINGS = arguments(
    valid={"GEOAE_THREADS": st.integers(1, 64).map(str), "GEOAE_TORCH_THREADS": st.integers(0, 1024).map(str),
           "GEOAE_WORKERS": st.integers(1, 256).map(str), "GEOAE_BACKEND": st.sampled_from(["auto", "fused", "torch"]),
           "GEOAE_FUSED": st.sampled_from(["0", "1", ""]), "GEOAE_MARCH": st.sampled_from(["native", "x86-64-v3"]),
           "GEOAE_KERNEL": st.sampled_from(["auto", "lanes=8,wg=16", "lanes=16, wg=8"]),
           "GEOAE_DEBUG": st.sampled_from(["0", "1"])},
    bad={"GEOAE_THREADS": st.sampled_from(["0", "65", "abc", "-1", "1.5", "99999999999"]),
         "GEOAE_TORCH_THREADS": st.sampled_from(["-1", "1025", "x"]),
         "GEOAE_WORKERS": st.sampled_from(["0", "257", "many"]),
         "GEOAE_BACKEND": st.text(min_size=1, max_size=5).filter(lambda t: t.strip() not in ("", "auto", "fused",
                                                                                            "torch")),
         "GEOAE_FUSED": st.sampled_from(["2", "yes", "on"]),
         "GEOAE_MARCH": st.sampled_from(["-O0", "a b", "x;rm", "é"]),
         "GEOAE_KERNEL": st.sampled_from(["lanes=3,wg=8", "fast", "lanes=8"]),
         "GEOAE_DEBUG": st.sampled_from(["yes", "2"])})


@PROPERTY
@given(SETTINGS)
def test_settings_are_read_or_refused_naming_the_variable(drawn):
    from geoae.settings import Settings, SettingsError, read_settings

    broken, env = drawn
    try:
        found = read_settings(env)
    except SettingsError as err:
        assert broken is not None and str(err).startswith(f"{broken} must be")
        event("refused")
        return
    assert broken is None and isinstance(found, Settings) and found.threads == int(env["GEOAE_THREADS"])
    event("accepted")


# ------------------------------------------------------- issue 24: a finished run is the run asked for


def rewrite_header(path: Path, change, *, planted: bool = False) -> None:
    """Rewrite the metadata of a safetensors file (``change(metadata)`` edits it in place); ``planted``: with a
    checksum recomputed over the changed header, as a tamperer who knows the envelope would."""
    from geoae.training.files import CHECKSUM_KEY, _checksum

    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header, data_part = json.loads(blob[8:8 + n]), blob[8 + n:]
    metadata = header.get("__metadata__", {})
    change(metadata)
    if planted:
        metadata.pop(CHECKSUM_KEY, None)
        tensors = load_tensors_unchecked(path)
        metadata[CHECKSUM_KEY] = _checksum(tensors, metadata)
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + data_part)


def load_tensors_unchecked(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture()
def stopped_run(tmp_path, monkeypatch):
    """A run of SMALL stopped by Ctrl-C after its checkpoint of step 4, and the config file of it."""
    undo = at_batch(monkeypatch, 5, ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        train(SMALL, tmp_path / "run")
    undo()
    config = tmp_path / "config.json"
    config.write_text(json.dumps(SMALL.to_dict()))
    return tmp_path / "run", config


HEADER_TAMPERS = {
    "iteration 4 -> 6 (in range)": (lambda m: m.update(iteration="6"), False),
    "iteration 4 -> 11": (lambda m: m.update(iteration="11"), False),
    "iteration 4 -> -2": (lambda m: m.update(iteration="-2"), False),
    "iteration 4 -> 6, checksum planted": (lambda m: m.update(iteration="6"), True),
    "iteration 4 -> 99, checksum planted": (lambda m: m.update(iteration="99"), True),
    "junk history, checksum planted": (lambda m: m.update(history=json.dumps([{"junk": "<b>"}] * 2)), True),
    "history of another length, checksum planted": (
        lambda m: m.update(history=json.dumps(json.loads(m["history"])[:1])), True),
    "history with a string loss, checksum planted": (
        lambda m: m.update(history=json.dumps([r | {"loss": "x"} for r in json.loads(m["history"])])), True),
    "executor not an object, checksum planted": (lambda m: m.update(executor="[1]"), True),
    "no checksum": (lambda m: m.pop("checksum"), False),
    "an extra key": (lambda m: m.update(note="hello"), False),
}


@pytest.mark.parametrize("tamper", list(HEADER_TAMPERS))
def test_a_tampered_checkpoint_header_is_refused_not_resumed(tamper, stopped_run, capsys):
    """Issue 24, kind 1: the header's iteration "300" -> "700" resumed with wrong weights and exit 0."""
    run, config = stopped_run
    change, planted = HEADER_TAMPERS[tamper]
    checkpoint = run / "checkpoint.safetensors"
    rewrite_header(checkpoint, change, planted=planted)
    before = snapshot(run)
    assert main(["-q", "train", "--config", str(config), "--out", str(run)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert str(checkpoint) in line and "delete it" in line, line
    assert snapshot(run) == before  # nothing resumed, history.jsonl not rewritten from the header
    assert "junk" not in (run / "history.jsonl").read_text()


def test_an_untampered_checkpoint_still_resumes_bit_identical(stopped_run):
    run, _ = stopped_run
    rewrite_header(run / "checkpoint.safetensors", lambda m: None)  # re-serialised, same content
    assert same(dict(train(SMALL, run).model.state_dict()), dict(train(SMALL).model.state_dict()))
    assert train(SMALL, run).metrics["resumed_from"] == 4


MODEL_TAMPERS = {
    "no checksum (a file saved without geoae's metadata)": (lambda m: m.clear(), False),
    "no config digest, checksum planted": (lambda m: m.pop("config_digest"), True),
    "another config's digest, checksum planted": (lambda m: m.update(config_digest="0123456789ab"), True),
    "a changed digest": (lambda m: m.update(config_digest="0123456789ab"), False),
}


@pytest.mark.parametrize("tamper", list(MODEL_TAMPERS))
def test_a_model_file_without_its_envelope_is_refused_by_explore_and_load_run(tamper, finished_run, tmp_path,
                                                                              capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    change, planted = MODEL_TAMPERS[tamper]
    rewrite_header(run / "model.safetensors", change, planted=planted)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_run(run)
    assert main(["explore", str(run), "--out", str(tmp_path / "e.html")]) == 2
    assert "model.safetensors" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "e.html").exists()


def test_a_model_file_of_an_earlier_geoae_is_still_read(finished_run, tmp_path):
    """Files written before the envelope carry a checksum of their tensors only (``sha256``): still read."""
    from geoae.training.files import _checksum

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    tensors = load_tensors_unchecked(run / "model.safetensors")

    def legacy(m):
        m.pop("checksum")
        m["sha256"] = _checksum(tensors)

    rewrite_header(run / "model.safetensors", legacy)
    assert same(dict(load_run(run).model.state_dict()), weights_of(finished_run))
    rewrite_header(run / "model.safetensors", lambda m: m.update(sha256="0" * 64))
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_run(run)


def test_the_envelope_covers_any_tensors_and_metadata(tmp_path):
    """Extra state (a snapshot under ``kept/`` and its ``kept_loss``) is covered like the rest."""
    from geoae.training.rundir import save_tensors

    path = tmp_path / "x.safetensors"
    save_tensors(path, {"model.w": torch.ones(3), "kept/model.w": torch.zeros(3)}, {"kept_loss": "0.5"})
    tensors, metadata = load_tensors(path)
    assert metadata["kept_loss"] == "0.5" and torch.equal(tensors["kept/model.w"], torch.zeros(3))
    rewrite_header(path, lambda m: m.update(kept_loss="0.1"))
    with pytest.raises(CheckpointError, match="do not match their checksum"):
        load_tensors(path)
    save_tensors(path, {"w": torch.ones(1)}, {"checksum": "planted", "sha256": "planted", "a": "b"})
    assert load_tensors(path)[1]["checksum"] != "planted" and "sha256" not in load_tensors(path)[1]
    with pytest.raises(ValueError, match="metadata must map text to text"):
        save_tensors(path, {"w": torch.ones(1)}, {"iteration": 5})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(["iteration", "history", "executor", "format", "config_digest",
                                                  "checksum", "extra"]),
                                st.one_of(st.none(), st.text(max_size=30),
                                          st.integers(-10, 10**6).map(str),
                                          st.lists(st.dictionaries(st.sampled_from(["iteration", "loss", "mse",
                                                                                    "penalty", "x"]),
                                                                   st.one_of(st.integers(-5, 20),
                                                                             st.floats(allow_nan=True), st.text(
                                                                                 max_size=3))),
                                                   max_size=4).map(json.dumps))),
                      min_size=1, max_size=3),
       planted=st.booleans())
def test_any_corrupted_checkpoint_header_is_refused_or_means_the_same(edits, planted, stopped_run):
    """Hypothesis: whatever is done to the header (keys removed, changed, added; the checksum recomputed or
    not), loading the checkpoint either raises CheckpointError or gives back exactly what was saved."""
    from geoae.training import loop
    from geoae.training.rundir import RunDirectory

    run, _ = stopped_run
    checkpoint = run / "checkpoint.safetensors"
    original = checkpoint.read_bytes()

    def change(m):
        for key, value in edits:
            if value is None:
                m.pop(key, None)
            else:
                m[key] = value

    try:
        rewrite_header(checkpoint, change, planted=planted)
        model = build_model(SMALL.model, seed=SMALL.seed)
        optimizer, batches = loop.make_optimizer(model, SMALL), loop.BatchSource(SMALL)
        try:
            iteration, history, _ = RunDirectory(run).load_checkpoint(SMALL, model, optimizer, batches.generator)
        except CheckpointError as err:
            assert str(checkpoint) in str(err)
            event("refused")
            return
        event("accepted")
        assert iteration == 4 and history == read_history_of(original)
    finally:
        checkpoint.write_bytes(original)


def read_history_of(blob: bytes) -> list[dict]:
    n = int.from_bytes(blob[:8], "little")
    return json.loads(json.loads(blob[8:8 + n])["__metadata__"]["history"])


# ---- kind 2: settings that still broke runs

CRASHING_COMPILER = """#!/bin/sh
# a 'compiler' whose library raises SIGILL as soon as it is loaded (an instruction this CPU lacks)
out=""; while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done
printf '#include <signal.h>\\n__attribute__((constructor)) static void boom(void) { raise(SIGILL); }\\n' > "$out.c"
cc -shared -fPIC "$out.c" -o "$out"; status=$?; rm -f "$out.c"; exit $status
"""


def test_a_kernel_library_that_crashes_is_refused_named_and_not_cached(tmp_path, monkeypatch, capsys):
    """Issue 24, kind 2: GEOAE_MARCH=skylake-avx512 on an AVX2 CPU: SIGILL (exit 132) with no message, `geoae
    info` said "available", and the library stayed cached."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    script = tmp_path / "cc.sh"
    script.write_text(CRASHING_COMPILER)
    monkeypatch.setattr(fused.build, "_compiler", lambda: ["/bin/sh", str(script)])
    cache = tmp_path / "cache"
    for name, value in (("GEOAE_CACHE", str(cache)), ("GEOAE_MARCH", "skylake-avx512"),
                        ("GEOAE_KERNEL", "lanes=16,wg=8")):
        monkeypatch.setenv(name, value)
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("fused"))
    assert line.startswith("fused    unavailable ("), line
    for needle in ("SIGILL", "fused-", "GEOAE_MARCH (now skylake-avx512)", "GEOAE_KERNEL (now lanes=16,wg=8)",
                   "not cached"):
        assert needle in line, line
    assert not list(cache.glob("*.so")) and not list(cache.glob("*.tried"))  # nothing cached as good
    monkeypatch.setenv("GEOAE_BACKEND", "fused")
    before = snapshot(tmp_path)
    assert main(["-q", "train", "--size", "16", "--n-train", "16", "--iterations", "2", "--out",
                 str(tmp_path / "run")]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "GEOAE_BACKEND=fused cannot train this run" in err and "SIGILL" in err, err
    assert snapshot(tmp_path) == before and not (tmp_path / "run").exists()


def test_a_built_library_is_cached_only_once_tried(fake_compiler):
    flags, cache, path = fake_compiler
    assert path.with_suffix(".tried").read_text().strip() == fused.build._digest(path)
    path.with_suffix(".tried").unlink()  # a library cached by an older geoae: not tried yet
    assert not fused.build._verified(path)
    assert fused.build._build(flags, cache) == path and fused.build._verified(path)


def test_info_names_only_the_bad_setting(monkeypatch, capsys):
    """Issue 24, kind 7: GEOAE_THREADS=abc showed every setting as that error."""
    monkeypatch.setenv("GEOAE_THREADS", "abc")
    assert main(["info"]) == 0
    lines = {ln.split()[0].split("=")[0]: ln for ln in capsys.readouterr().out.splitlines()
             if ln.strip().startswith("GEOAE_")}
    assert "error: GEOAE_THREADS must be an integer from 1 to 64, got 'abc'" in lines["GEOAE_THREADS"]
    assert all("error" not in ln for name, ln in lines.items() if name != "GEOAE_THREADS"), lines


# ---- kind 3: bad files

RESULT_FIELDS = ["title", "status", "profile", "seeds", "runtime_s", "train_core_s", "numbers", "descriptions",
                 "verdict", "rule", "figures", "tables", "control", "notes", "claim", "paper", "git_commit",
                 "authors", "error", "number_order", "kind"]
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.dictionaries(st.sampled_from(RESULT_FIELDS), json_values, min_size=1, max_size=3))
def test_any_malformed_results_record_is_a_failed_record_and_the_rest_is_reported(changes, tmp_path_factory):
    """Hypothesis: a results record with any fields replaced by any JSON values is shown as it is or as a
    failed record; the report is always built, and the other claims are in it."""
    out = tmp_path_factory.mktemp("results")
    for exp_id in ("D1", "D3"):
        (out / exp_id).mkdir()
    (out / "D1" / "results.json").write_text(json.dumps(good_record("D1", **changes)))
    (out / "D3" / "results.json").write_text(json.dumps(good_record("D3")))
    from geoae.report import build_report

    build_report(out)
    md = (out / "report.md").read_text()
    assert "| D3 | title D3 | confirmed |  | x = 1 |" in md
    assert "| D1 |" in md
    event("D1 failed" if "malformed D1/results.json" in md else "D1 shown")


def write_history(run: Path, lines: list[str]) -> None:
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text("".join(line + "\n" for line in lines))


GOOD_LINE = json.dumps({"iteration": 2, "loss": 0.5, "mse": 0.5, "penalty": 0.0})


@pytest.mark.parametrize("bad", ['{"iteration": 4, "mse": 0.1, "penalty": 0}', '{"iteration": "4", "loss": 1, '
                                 '"mse": 1, "penalty": 0}', '[1, 2]', '{"iteration": 6, "loss": "x", "mse": 1, '
                                 '"penalty": 0}'])
def test_a_malformed_history_is_refused_by_export_before_anything_is_written(bad, tmp_path, capsys):
    """Issue 24, kind 3: a malformed history.jsonl crashed export (KeyError) and left partial event files."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    write_history(tmp_path / "good", [GOOD_LINE])
    write_history(tmp_path / "bad", [GOOD_LINE, bad])
    before = snapshot(tmp_path)
    assert main(["-q", "export", str(tmp_path / "good"), str(tmp_path / "bad"), "--out", str(tmp_path / "tb")]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"{tmp_path / 'bad'}: history record 2 is malformed" in line, line
    assert snapshot(tmp_path) == before


def test_export_keeps_runs_of_the_same_name_apart(tmp_path, capsys):
    """Issue 24, kind 3: `export a/run b/run` merged both into one folder."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for name, loss in (("a", 0.25), ("b", 0.75)):
        write_history(tmp_path / name / "run", [json.dumps({"iteration": 2, "loss": loss, "mse": loss,
                                                            "penalty": 0.0})])
    assert main(["-q", "export", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "--out",
                 str(tmp_path / "tb")]) == 0
    for name, loss in (("a", 0.25), ("b", 0.75)):
        acc = EventAccumulator(str(tmp_path / "tb" / name / "run"))
        acc.Reload()
        assert [e.value for e in acc.Scalars("train/loss")] == [loss]
    assert not list((tmp_path / "tb").glob(".geoae-export-*"))  # the staging folder is gone


# ---- kind 4: late failures

def test_the_largest_seed_trains_and_saves_with_fresh_disks(tmp_path):
    """Issue 24, kind 4: --fresh --seed 9223372036854775807 trained every step, then failed (seed + 7)."""
    cfg = dataclasses.replace(SMALL, seed=2**63 - 1, data=dataclasses.replace(SMALL.data, fresh=True))
    result = train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "metrics.json").exists() and np.isfinite(result.metrics["train_mse"])


def test_ordinary_seeds_draw_the_same_data_as_before(monkeypatch):
    """The seed offsets wrap only beyond 2**63 - 1 - offset: every existing run draws its old data."""
    from geoae.training import loop
    from geoae.training.config import offset_seed

    assert [offset_seed(s, 7) for s in (0, 1, 12345, 2**62)] == [7, 8, 12352, 2**62 + 7]
    assert offset_seed(2**63 - 1, 7) == 6 and offset_seed(2**63 - 1, 1_000_003) == 1_000_002
    seeds = []
    original = data.DiskData.make
    monkeypatch.setattr(data.DiskData, "make", lambda self, n=None, seed=0: seeds.append(seed) or original(
        self, n, seed=seed))
    cfg = dataclasses.replace(SMALL, seed=3, data=dataclasses.replace(SMALL.data, fresh=True))
    batches = loop.BatchSource(cfg)
    assert torch.equal(batches.generator.get_state(), torch.Generator().manual_seed(3 + 1_000_003).get_state())
    loop.final_metrics(build_model(cfg.model, seed=3), batches, cfg)
    assert seeds[-1] == 10


def test_reproduce_with_a_read_only_runs_folder_is_refused_before_any_work(capsys):
    """Issue 24, kind 4: a read-only runs/ failed after the work with exit 1 and nothing on stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o755)
        out = root / "results"
        (out / "runs" / "tiny").mkdir(parents=True)
        os.chmod(out, 0o777)
        os.chmod(out / "runs", 0o555)
        before = snapshot(root)
        try:
            with as_ordinary_user():
                code = main(["-q", "reproduce", "--profile", "tiny", "--only", "D1", "--out", str(out)])
        finally:
            os.chmod(out / "runs", 0o755)
        line = one_line_error(capsys.readouterr().err)
        assert code == 2 and f"--out {out}: cannot write in {out / 'runs'}" in line, line
        assert snapshot(root) == before


def test_a_failed_experiment_is_said_on_stderr_even_quiet(tmp_path, capsys, monkeypatch):
    def hook(exp_id):
        if exp_id == "D2":
            raise RuntimeError("the analysis broke")

    fake_experiments(monkeypatch, hook)
    assert main(["-q", "reproduce", "--profile", "tiny", "--only", "D1,D2", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "D2: FAILED (RuntimeError: the analysis broke)" in err
    assert "geoae reproduce: error: 1 experiment(s) failed: D2" in err


def test_an_unreachable_ray_cluster_is_refused_quickly(tmp_path, capsys):
    """Issue 24, kind 4: --executor ray --address 127.0.0.1:1 hung (over 200 s of connection warnings)."""
    pytest.importorskip("ray", reason="Ray absent (pip install geoae[ray])")
    t0 = time.perf_counter()
    code = main(["-q", "reproduce", "--profile", "tiny", "--only", "D1", "--executor", "ray", "--address",
                 "127.0.0.1:1", "--out", str(tmp_path / "r")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in line, line
    assert time.perf_counter() - t0 < 60 and not (tmp_path / "r").exists()


# ---- kind 5: paths

@pytest.mark.parametrize("argv", [["train", "--size", "16", "--iterations", "2"], ["theory"],
                                  ["data", "disks", "--n", "4"], ["reproduce", "--profile", "tiny", "--only", "D1"]],
                         ids=lambda a: a[0])
@pytest.mark.parametrize("link", ["loop", "dangling"])
def test_an_output_path_through_a_broken_link_is_refused_before_any_work(argv, link, world, capsys):
    """Issue 24, kind 5: a symlink loop or a dangling symlink as --out passed the checks, then failed."""
    (world / "loop").symlink_to(world / "loop")
    (world / "dangling").symlink_to(world / "nowhere")
    out = f"{T}/{link}" + ("/x.npz" if argv[0] == "data" else "")
    refused([*argv, "--out", out], world, capsys, f"{T}/{link} is a symbolic link to nothing")


def test_a_lock_that_is_a_symlink_is_refused_and_not_followed(tmp_path):
    """Issue 24, kind 5: a .lock that is a symlink was opened through it (its target created)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(tmp_path / "target")
    with pytest.raises(OSError, match=r"\.lock is a symbolic link"):
        train(SMALL, run)
    assert not (tmp_path / "target").exists() and sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_folder_of_the_users_own_files_is_not_a_run_directory(tmp_path, capsys):
    """Issue 24, kind 5: a folder holding the user's metrics.json / history.jsonl had them overwritten."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"mine": 1}')
    (mine / "history.jsonl").write_text('{"mine": 2}\n')
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="is not empty and not a geoae run directory"):
        train(SMALL, mine)
    assert main(["-q", "train", "--size", "16", "--iterations", "2", "--out", str(mine)]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"--out {mine} is not empty and not a geoae run directory (it holds history.jsonl, metrics.json)" in line
    assert snapshot(tmp_path) == before


def test_geoaes_own_run_directories_are_still_used(tmp_path):
    """A finished run, a run stopped before its config.json (only .lock), a prepared checkpoint: all accepted."""
    from geoae.training.rundir import check_run_directory

    train(SMALL, tmp_path / "done")
    check_run_directory(tmp_path / "done")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / ".lock").write_bytes(b"")
    train(SMALL, tmp_path / "locked")
    assert (tmp_path / "locked" / "metrics.json").exists()


# ---- kind 6: escaping

def test_a_title_cannot_bend_the_explorers_data_block(finished_run):
    """Issue 24, kind 6: --title '<!--<script>' gave a blank page (the data block swallowed the page's script)."""
    from geoae.explorer import explorer_html

    title = "<!--<script></script>&"
    page = explorer_html([load_run(finished_run)], title=title)
    start = page.index('<script id="geoae-data" type="application/json">') + len(
        '<script id="geoae-data" type="application/json">')
    block = page[start:page.index("</script>", start)]
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block)["title"] == title
    assert page.count("<script") == 2  # the data block and the page's own script, nothing more


def test_report_md_and_reproduce_md_do_not_copy_markup_from_results_files(tmp_path):
    markup = "<script>alert(1)</script><img src=x onerror=alert(2)> [link](javascript:alert(3)) `code`"
    (tmp_path / "D3").mkdir()
    (tmp_path / "D3" / "results.json").write_text(json.dumps(good_record(
        "D3", title=markup, rule=markup, notes=markup, paper=markup, claim=markup, control=markup,
        numbers={markup: 1.0}, descriptions={markup: markup},
        tables=[{"title": markup, "columns": [markup], "rows": [[markup]]}])))
    assert main(["-q", "report", "--out", str(tmp_path), "--reproduce-md", str(tmp_path / "R.md")]) == 0
    for name in ("report.md", "REPRODUCE.md", "R.md"):
        text = (tmp_path / name).read_text()
        assert "<script" not in text and "<img" not in text and "](javascript" not in text, name
        assert "&lt;script>" in text, name


# ---- kind 7: smaller

def test_a_bad_option_with_an_unwritable_stderr_still_exits_2(tmp_path):
    """Issue 24, kind 7: `--lr nan` with stderr on /dev/full exited 1, not 2."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "geoae", "train", "--lr", "nan", "--out", str(tmp_path / "r")],
                              stderr=full, stdout=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": os.pathsep.join(
                                  sys.path)}, timeout=120)
    assert proc.returncode == 2 and not (tmp_path / "r").exists()


def test_numpy_scalars_and_a_betas_list_are_the_numbers_they_hold():
    """Issue 24, kind 7: betas=[0.9, 0.99] and np.float32 alpha / lr gave misleading messages."""
    cfg = dataclasses.replace(SMALL, betas=[0.9, 0.99], lr=np.float32(0.5), reg_weight=np.float64(0.25),
                              model=dataclasses.replace(SMALL.model, alpha=np.float32(0.5)))
    cfg.validate()
    assert cfg.betas == (0.9, 0.99) and type(cfg.lr) is float and cfg.lr == 0.5 and cfg.model.alpha == 0.5
    assert type(cfg.model.alpha) is float and TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert dataclasses.replace(SMALL, betas=[0.9, 0.999]).digest() == SMALL.digest()  # same run, same digest
