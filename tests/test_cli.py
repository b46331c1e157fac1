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
        (["data", "disks", "--rendering", "blurry"], "--rendering"),
        (["data", "disks", "--r-max", "40"], "--r-max=40 must be <= size/2 = 32"),
        (["data", "disks", "--size", "1"], "--size must be an integer in [2, 4096], got 1"),
        (["data", "disks", "--exclude", "0:32"], "--exclude"),
        (["data", "disks", "--exclude", "40:50"], "--exclude"),
        (["data", "diracs", "--scheme", "bogus"], "--scheme"),
        (["data", "diracs", "--scheme", "random", "--fraction", "0"], "--fraction must be in (0, 1], got 0"),
        (["data", "diracs", "--scheme", "quadrant", "--ndim", "1"], "--quadrant"),
        (["theory", "--radius", "-3"], "--radius -3.0: must be a number in [0.001, 1e+06]"),
        (["theory", "--radius", "nan"], "--radius nan"),
        (["train", "--regulariser", "dropout"], "--regulariser"),
        (["train", "--size", "48"], "--size must be a power of two"),
        (["train", "--lr", "-1"], "--lr must be a finite number > 0.0"),
        (["reproduce", "--profile", "huge"], "--profile"),
        (["reproduce", "--only", "D9"], "D9"),
        (["reproduce", "--seeds", "0"], "--seeds 0: must be an integer from 1 to 100"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(argv, message, tmp_path, capsys):
    out_args = ["--out", str(tmp_path / ("x.npz" if argv[0] == "data" else "x"))]
    assert main(argv + out_args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and message in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "disks", "--n", "ten", "--out", "x.npz"], "--n: invalid int value"),
        (["train", "--arch", "resnet", "--out", "x"], "--arch: invalid choice: 'resnet'"),
        (["train", "--out", "x", "--bogus"], "unrecognized arguments: --bogus"),
        (["reproduce", "--profile", "big"], "choose from 'quick', 'paper', 'tiny'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_argparse_errors_are_one_line_with_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and "--help" in err


def test_python_dash_m_geoae_runs():
    proc = subprocess.run([sys.executable, "-m", "geoae", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("geoae ")


# ------------------------------------------------------------------------------------- help screens


def _every_parser():
    from geoae.cli import _subparsers, get_parser

    root = get_parser()
    return [root, *_subparsers(root)]


def _option_sections(parser) -> dict:
    """Each option's own part of the rendered help: from its invocation to the next option's."""
    text = " ".join(parser.format_help().split())
    formatter = parser._get_formatter()
    actions = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]
    starts = {a.dest: text.index(" ".join(formatter._format_action_invocation(a).split()), text.index("options:"))
              for a in actions}
    bounds = sorted(starts.values()) + [len(text)]
    return {a: text[starts[a.dest]:bounds[bounds.index(starts[a.dest]) + 1]] for a in actions}


@pytest.mark.parametrize("parser", _every_parser(), ids=lambda p: p.prog)
def test_every_option_shows_its_help_default_and_choices(parser):
    sections = _option_sections(parser)
    assert sections or parser.prog in ("geoae data",)
    for action, section in sections.items():
        assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"
        shown = "default" in section or (action.required and "(required)" in section)
        assert shown, f"{parser.prog} {action.option_strings[0]} shows no default: {section!r}"
        assert "(default: None)" not in section, f"{parser.prog} {action.option_strings[0]}: say what None means"
        for choice in action.choices or ():
            assert str(choice) in section, f"{parser.prog} {action.option_strings[0]} hides choice {choice!r}"


def test_choices_come_from_the_library_constants():
    from geoae import data, models, training
    from geoae.experiments.common import PROFILES

    by_option = {a.option_strings[0]: tuple(a.choices) for p in _every_parser() for a in p._actions
                 if a.option_strings and a.choices}
    assert by_option["--arch"] == models.ARCHS and by_option["--upsample"] == models.UPSAMPLES
    assert by_option["--output-activation"] == models.OUTPUT_ACTIVATIONS
    assert by_option["--regulariser"] == training.REGULARISERS and by_option["--profile"] == PROFILES
    assert by_option["--rendering"] == data.RENDERINGS and by_option["--scheme"] == data.SCHEMES


@pytest.mark.parametrize("command", ["train", "reproduce", "bench", "info"])
def test_help_epilogs_list_the_settings_and_the_tiny_profile(command, capsys):
    from geoae.environment import SETTINGS

    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SETTINGS)
    if command == "reproduce":
        assert "tiny" in out and "smoke test" in out


# ------------------------------------------------------------------------------------- info, quiet


def test_every_geoae_setting_in_the_source_is_documented():
    import re
    from pathlib import Path

    import geoae
    from geoae.environment import SETTINGS

    root = Path(geoae.__file__).parent
    sources = [f for f in root.rglob("*.py") if f.name != "environment.py"]
    used = {m for f in sources for m in re.findall(r"[\"'](GEOAE_[A-Z_]+)[\"']", f.read_text())}
    assert {"GEOAE_BACKEND", "GEOAE_OFFICIAL_WEIGHTS"} <= used  # the scan finds the settings read in the code
    assert used <= set(SETTINGS), sorted(used - set(SETTINGS))


def test_info_prints_versions_cpu_kernels_and_settings(capsys, monkeypatch):
    import torch

    from geoae import __version__, fused

    monkeypatch.setenv("GEOAE_WORKERS", "3")
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["geoae"] == __version__ and info["torch"] == torch.__version__ and info["cpu"]["model"]
    assert info["fused_available"] == fused.available()
    assert (info["fused_unavailable_reason"] is None) == info["fused_available"]
    settings = {s["name"]: s for s in info["settings"]}
    assert settings["GEOAE_WORKERS"]["value"] == "3" and settings["GEOAE_WORKERS"]["in_force"] == 3
    assert settings["GEOAE_BACKEND"]["value"] is None and settings["GEOAE_BACKEND"]["in_force"] == "auto"
    assert all(s["meaning"] and s["in_force"] is not None for s in settings.values())
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "GEOAE_WORKERS=3  in force: 3" in text and f"torch {torch.__version__}" in text and "isa" in text


def test_info_shows_a_bad_setting_instead_of_failing(capsys, monkeypatch):
    monkeypatch.setenv("GEOAE_BACKEND", "gpu")
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    backend = next(s for s in info["settings"] if s["name"] == "GEOAE_BACKEND")
    assert backend["value"] == "gpu" and "GEOAE_BACKEND must be one of" in backend["in_force"]
    assert info["fused_available"] is False and "GEOAE_BACKEND" in info["fused_unavailable_reason"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_prints_nothing_but_writes_the_files(where, tmp_path, capsys):
    args = ["data", "diracs", "--size", "8", "--out", str(tmp_path / "d.npz")]
    argv = ["--quiet", *args] if where == "before" else [*args, "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert (tmp_path / "d.npz").exists()


def test_train_accepts_a_runs_config_json(tmp_path):
    first = ["train", "--size", "16", "--n-train", "16", "--iterations", "2", "--batch-size", "4", "--seed", "3",
             "--output-activation", "identity", "--out", str(tmp_path / "a")]
    assert main(["-q", *first]) == 0
    assert main(["-q", "train", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b")]) == 0
    a, b = (json.loads((tmp_path / r / "config.json").read_text())["config"] for r in "ab")
    assert a == b and a["seed"] == 3 and a["model"]["output_activation"] == "identity"
