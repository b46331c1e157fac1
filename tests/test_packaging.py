"""The built wheel, installed into a fresh virtual environment and run inside another, unrelated git repository.

The wheel is built from a copy of the sources (pyproject.toml, README.md, LICENSE, src/), so the checkout is
left untouched; the fresh venv gets the wheel alone (``--no-deps``) and sees this environment's
site-packages (torch, numpy, ...) through a ``.pth`` file, so nothing is downloaded or installed twice. The
venv lies inside a new git repository (as a user's project environment would), where a short
``geoae train`` runs under umask 022.

What the run directory must record (issue 12, provenance; the trainer writes it):
- ``config.json`` key ``geoae_version``: geoae's version (``geoae.__version__``);
- ``config.json`` key ``git_commit``: ``null`` here, since geoae does not run from its own checkout (the
  other repository's HEAD must not be recorded);
- every file written with the mode the umask gives: 0o644 under umask 022 (no owner-only temp-file modes).
"""

import json
import os
import shutil
import site
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import geoae

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _build_wheel(tmp: Path) -> Path:
    """Build the wheel from a copy of the sources; without build isolation when setuptools is at hand."""
    src = tmp / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(src)]
    try:
        import setuptools

        if int(setuptools.__version__.split(".")[0]) >= 77:
            cmd.insert(4, "--no-build-isolation")
    except ImportError:
        pass
    _run(cmd)
    (wheel,) = (tmp / "dist").glob("geoae-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin directory, run directory, environment) after a short `geoae train` in another repository."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tmp = tmp_path_factory.mktemp("packaging")
    wheel = _build_wheel(tmp)
    repo = tmp / "other-repository"
    repo.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run(["git", "init", "-q"], cwd=repo, env=env)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "--allow-empty", "-m", "x"],
         cwd=repo, env=env)
    venv = repo / ".venv"  # as a user would: the environment inside their own project's repository
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)])
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "geoae_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    _run([str(venv / "bin" / "geoae"), "--quiet", "train", "--size", "16", "--n-train", "16", "--iterations", "2",
          "--batch-size", "4", "--out", "run"], cwd=repo, env=env, preexec_fn=lambda: os.umask(0o022))
    return venv / "bin", repo / "run", env, repo


def test_the_wheel_installs_and_runs_outside_the_checkout(installed):
    bin_dir, run, env, repo = installed
    where = _run([str(bin_dir / "python"), "-c", "import geoae, pathlib; p = pathlib.Path(geoae.__file__).parent; "
                  "print(p); print((p / 'py.typed').is_file(), (p / '_fused.c').is_file()); print(geoae.__version__)"],
                 cwd=repo, env=env).stdout.split("\n")
    assert Path(where[0]).is_relative_to(bin_dir.parent), where  # the installed copy, not the checkout
    assert where[1] == "True True"  # package data: the PEP 561 marker and the fused kernels' source
    assert where[2] == geoae.__version__
    assert {"config.json", "model.safetensors", "metrics.json"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["config"]["iterations"] == 2


def test_an_installed_run_records_geoaes_version(installed):
    record = json.loads((installed[1] / "config.json").read_text())
    assert record.get("geoae_version") == geoae.__version__


def test_an_installed_run_records_no_commit_of_another_repository(installed):
    record = json.loads((installed[1] / "config.json").read_text())
    assert "git_commit" in record and record["git_commit"] is None


def test_every_file_of_an_installed_run_has_the_umask_mode(installed):
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in installed[1].rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {"0o644"}, modes
