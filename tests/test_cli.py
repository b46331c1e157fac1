"""The command line: each sub-command on a tiny budget, and bad input as a one-line error with exit code 2."""

import json
import subprocess
import sys

import numpy as np
import pytest

from geoae.cli import main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("data", "theory", "train", "reproduce", "report", "bench"):
        assert cmd in out


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "geoae.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("geoae ")


def test_data_disks_writes_npz_and_contact_sheet(tmp_path):
    out = tmp_path / "disks.npz"
    assert main(["data", "disks", "--n", "20", "--size", "32", "--exclude", "5:8", "--seed", "1",
                 "--out", str(out)]) == 0
    with np.load(out) as f:
        images, radii = f["images"], f["radii"]
        assert json.loads(str(f["config"]))["seed"] == 1
    assert images.shape == (20, 1, 32, 32) and radii.shape == (20,)
    assert not np.any((radii > 5) & (radii < 8))
    assert out.with_suffix(".png").stat().st_size > 0


def test_data_diracs_2d(tmp_path):
    out = tmp_path / "d.npz"
    assert main(["data", "diracs", "--ndim", "2", "--size", "8", "--scheme", "quadrant", "--out", str(out)]) == 0
    with np.load(out) as f:
        assert f["images"].shape == (48, 1, 8, 8) and f["positions"].shape == (48, 2)


def test_theory_writes_profile(tmp_path, capsys):
    assert main(["theory", "--radius", "20", "--out", str(tmp_path)]) == 0
    values = json.loads((tmp_path / "theory.json").read_text())
    assert round(values["x1"], 5) == 1.98635
    f = np.array(values["f_hat"])
    rho = np.array(values["rho"])
    assert f[0] > 0 and np.all(f[rho >= 20] == 0)
    assert (tmp_path / "profile.png").exists()
    assert "x1 = 1.98635" in capsys.readouterr().out


def test_train_tiny_run_and_resume_is_a_no_op(tmp_path, capsys):
    args = ["train", "--size", "16", "--n-train", "32", "--iterations", "3", "--batch-size", "4",
            "--no-bias", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    first = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert main(args) == 0
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == first
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert cfg["model"]["bias"] is False and cfg["iterations"] == 3


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "disks", "--rendering", "blurry"], "rendering"),
        (["data", "disks", "--r-max", "40"], "r_max"),
        (["data", "disks", "--size", "1"], "size"),
        (["data", "disks", "--exclude", "0:32"], "exclude"),
        (["data", "disks", "--exclude", "40:50"], "exclude"),
        (["data", "diracs", "--scheme", "bogus"], "scheme"),
        (["data", "diracs", "--scheme", "random", "--fraction", "0"], "fraction"),
        (["data", "diracs", "--scheme", "quadrant", "--ndim", "1"], "quadrant"),
        (["theory", "--radius", "-3"], "R"),
        (["theory", "--radius", "nan"], "R"),
        (["train", "--regulariser", "dropout"], "regulariser"),
        (["train", "--size", "48"], "size"),
        (["train", "--lr", "-1"], "lr"),
        (["reproduce", "--profile", "huge"], "profile"),
        (["reproduce", "--only", "D9"], "D9"),
        (["reproduce", "--seeds", "0"], "seeds"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(argv, message, tmp_path, capsys):
    out_args = ["--out", str(tmp_path / ("x.npz" if argv[0] == "data" else "x"))]
    assert main(argv + out_args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and message in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.npz").exists()


def test_argparse_errors_also_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", "disks", "--n", "ten", "--out", "x.npz"])
    assert exc.value.code == 2
