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


def test_the_settings_are_listed_in_the_main_help_only(capsys):
    from geoae.environment import SETTINGS

    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out and meaning in out for name, (meaning, _) in SETTINGS.items())
    for command in ("train", "reproduce", "bench", "info", "data", "export"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        listed = [name for name, (meaning, _) in SETTINGS.items() if meaning in out]
        assert not listed, f"geoae {command} --help lists the settings: {listed}"
        if command in ("train", "reproduce", "bench", "info"):
            assert "`geoae info` shows those in force" in out
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    out = capsys.readouterr().out
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


def test_info_shows_the_limits_on_torchs_own_cpu_code(capsys, monkeypatch):
    """``bench --level`` (and a user) limit ATen, MKL and oneDNN by environment variables: info shows those set."""
    for name in ("DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch_limits"] == {"ATEN_CPU_CAPABILITY": None, "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                    "DNNL_MAX_CPU_ISA": None, "OPENBLAS_CORETYPE": None}
    assert main(["info"]) == 0
    assert "MKL_ENABLE_INSTRUCTIONS=AVX2)" in capsys.readouterr().out


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


def _tiny_train(out, *extra):
    return ["train", "--size", "16", "--n-train", "16", "--iterations", "2", "--batch-size", "4", *extra,
            "--out", str(out)]


def test_train_prints_a_one_line_summary_and_the_config_only_when_verbose(tmp_path, capsys):
    assert main(_tiny_train(tmp_path / "a", "--no-bias")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("training paper64 16x16, d=1, bias-free; 16 disks (area); 2 iterations of 4")
    assert out[0].endswith(f"-> {tmp_path / 'a'}") and not any(line.lstrip().startswith("{") for line in out)
    assert len(out) == 2 and out[1].startswith("finished: train MSE")
    assert main(_tiny_train(tmp_path / "a", "--no-bias", "--verbose")) == 0  # finished: a no-op, config shown
    out = capsys.readouterr().out
    config = json.loads(out[out.index("{"):out.index("\n}") + 2])
    assert config["model"]["bias"] is False and config["iterations"] == 2
    assert main(["-q", *_tiny_train(tmp_path / "a", "--no-bias", "--verbose")]) == 0
    assert capsys.readouterr().out == ""  # --quiet wins


def _this_geoae() -> dict:
    """The environment of a child `python -m geoae` that imports the geoae under test, from any directory."""
    import os
    from pathlib import Path

    import geoae

    src = str(Path(geoae.__file__).resolve().parents[1])
    return os.environ | {"PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize("argv", [["info", "--json"], ["info"], ["data", "diracs", "--size", "8", "--out", "d.npz"]])
def test_a_closed_output_pipe_ends_quietly_with_141(argv, tmp_path):
    """`geoae info --json | head -1`: the reader has gone before geoae writes (deterministic: the pipe is closed
    before the interpreter has even imported geoae): no message, exit code 141 (128 + SIGPIPE)."""
    from geoae.cli import EXIT_PIPE

    proc = subprocess.Popen([sys.executable, "-m", "geoae", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=tmp_path, env=_this_geoae())
    proc.stdout.close()
    with proc.stderr:
        err = proc.stderr.read().decode()
    assert proc.wait() == EXIT_PIPE == 141 and err == ""
    if argv[0] == "data":
        assert (tmp_path / "d.npz").is_file()  # the work was done; only its message was lost


def test_a_shell_pipeline_into_head_prints_no_error(tmp_path):
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m geoae info --json | head -1", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, cwd=tmp_path, env=_this_geoae())
    assert proc.stdout == "{\n" and proc.stderr == "" and proc.returncode in (0, 141)


def test_a_refused_explore_has_one_error_prefix(tmp_path, capsys):
    for name, size in (("a", "16"), ("b", "8")):
        assert main(["-q", "train", "--size", size, "--n-train", "8", "--iterations", "1", "--batch-size", "4",
                     "--out", str(tmp_path / name)]) == 0
    assert main(["explore", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("geoae explore: error: runs on one page share") and err.count("geoae explore") == 1
    assert "\n" not in err and not (tmp_path / "x.html").exists()


def test_info_lists_the_optional_extras_and_whether_each_is_installed(capsys, monkeypatch):
    import importlib.util

    from geoae.environment import EXTRAS

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["info", "--json"]) == 0
    extras = {e["extra"]: e for e in json.loads(capsys.readouterr().out)["extras"]}
    assert set(extras) == set(EXTRAS) == {"keras", "tensorboard", "mlflow", "ray"}
    assert extras["ray"]["installed"] is False and extras["ray"]["version"] is None
    for name, module in (("keras", "h5py"), ("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
        assert extras[name]["installed"] is (real(module) is not None)
    assert extras["mlflow"]["install"] == "pip install 'geoae[mlflow]'"
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    ray_line = next(line for line in text.splitlines() if line.lstrip().startswith("ray "))
    assert "not installed" in ray_line and "--executor ray" in ray_line


# ------------------------------------------------------------------------------- configs that compose


def _config_of(*argv):
    from geoae.cli.checks import train_config

    return train_config(get_parser_args(["train", *argv, "--out", "unused"]))


def get_parser_args(argv):
    from geoae.cli import get_parser

    return get_parser().parse_args(argv)


def test_a_partial_json_or_toml_config_merges_over_the_defaults(tmp_path):
    (tmp_path / "binary.json").write_text('{"data": {"rendering": "binary"}}')
    (tmp_path / "keras.toml").write_text('lr = 0.01\n[model]\narch = "keras63"\nalpha = 0.1\n'
                                         '[data]\nexclude = [[11, 18]]\n')
    config = _config_of("--config", str(tmp_path / "binary.json"))
    assert config.data.rendering == "binary" and config.data.n == 1000 and config.model.size == 64
    config = _config_of("--config", str(tmp_path / "binary.json"), "--config", str(tmp_path / "keras.toml"))
    assert config.model.arch == "keras63" and config.model.size == config.data.size == 63  # the arch's size
    assert config.lr == 0.01 and config.model.alpha == 0.1 and config.data.exclude == ((11, 18),)
    assert config.data.rendering == "binary"  # from the first file


def test_set_overrides_files_and_options_with_json_values_else_strings(tmp_path):
    (tmp_path / "c.json").write_text('{"lr": 0.5, "data": {"rendering": "gaussian"}}')
    config = _config_of("--config", str(tmp_path / "c.json"), "--lr", "0.2", "--set", "data.rendering=binary",
                        "--set", "model.alpha=0.05", "--set", "model.bias=false", "--set", "data.r_max=20")
    assert config.lr == 0.2 and config.data.rendering == "binary" and config.model.alpha == 0.05
    assert config.model.bias is False and config.data.r_max == 20
    assert _config_of("--lr", "0.2", "--set", "lr=0.3").lr == 0.3  # --set wins over an option


def test_the_new_train_options(tmp_path):
    config = _config_of("--rendering", "gaussian", "--log-every", "7", "--channels", "8,8,4,4,2")
    assert config.data.rendering == "gaussian" and config.log_every == 7 and config.model.channels == (8, 8, 4, 4, 2)
    config = _config_of("--arch", "paper1d", "--size", "32", "--data", "diracs", "--scheme", "hole", "--hole", "8:16")
    assert config.data.scheme == "hole" and config.data.hole == (8, 16) and config.data.ndim == 1
    assert _config_of("--data", "diracs", "--scheme", "stride", "--stride", "4").data.stride == 4
    assert _config_of("--arch", "keras63").model.size == 63


@pytest.mark.parametrize(("files", "argv", "message"), [
    ({"a.json": '{"data": {"rendering": "blurry"}}'}, ["--config", "{a.json}"],
     "--config {a.json}: data.rendering='blurry' is not one of 'binary', 'area', 'gaussian'"),
    ({"a.toml": '[model]\nsize = "big"\n'}, ["--config", "{a.toml}"], "--config {a.toml}: model.size"),
    ({"a.toml": "[model\n"}, ["--config", "{a.toml}"], "--config {a.toml}: not valid TOML"),
    ({"a.json": "{}"}, ["--config", "{a.json}", "--set", "model.alhpa=0.1"],
     "--set model.alhpa=0.1: model.alhpa: unknown"),
    ({}, ["--set", "lr"], "--set 'lr': expected KEY=VALUE"),
    ({}, ["--set", "=3"], "--set '=3': expected KEY=VALUE"),
    ({}, ["--rendering", "binary", "--data", "diracs"], "--rendering: only for disks, not for --data diracs"),
    ({}, ["--scheme", "hole"], "--scheme: only for diracs, not for --data disks"),
    ({}, ["--channels", "8,x"], "--channels: expected comma-separated integers"),
    ({}, ["--arch", "keras63", "--size", "64"], "--size must be 63 for arch='keras63', got 64"),
])
def test_a_bad_composed_config_names_the_key_and_where_it_was_set(files, argv, message, tmp_path, capsys):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    fill = lambda s: s.replace("{a.json}", str(tmp_path / "a.json")).replace("{a.toml}", str(tmp_path / "a.toml"))  # noqa: E731
    assert main(["train", *map(fill, argv), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and fill(message) in err, err
    assert not (tmp_path / "run").exists()


def test_train_with_a_partial_toml_config_and_set(tmp_path, capsys):
    (tmp_path / "c.toml").write_text('iterations = 2\nbatch_size = 4\n[model]\nsize = 16\n[data]\nn = 16\n')
    assert main(["train", "--config", str(tmp_path / "c.toml"), "--set", "data.rendering=binary", "--no-bias",
                 "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert saved["data"]["rendering"] == "binary" and saved["data"]["size"] == saved["model"]["size"] == 16
    assert saved["model"]["bias"] is False and saved["iterations"] == 2
    assert "16 disks (binary)" in capsys.readouterr().out


def test_train_recipe_starts_from_the_named_set_up_and_names_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--recipe", "released", "--set", "iterations=2", "--set", "data.n=64", "--log-every", "1",
                 "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "config.json").read_text())
    cfg = saved["config"]
    assert saved["recipe"] == "released"
    assert (cfg["model"]["arch"], cfg["data"]["size"], cfg["data"]["quantise"], cfg["lr"], cfg["optimizer"],
            cfg["keep"], cfg["iterations"]) == ("keras63", 63, 255, 0.01, "adam_keras", "best_batch", 2)
    assert "kept_iteration" in json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("argv, message", [
    (["train", "--recipe", "keras"], "--recipe: invalid choice: 'keras'"),
    (["reproduce", "--recipe", "iclr2018,foo"], "--recipe 'iclr2018,foo': unknown recipe 'foo'"),
    (["reproduce", "--recipe", ","], "--recipe ',': an empty name"),
])
def test_unknown_recipes_are_refused_before_any_work(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        rc = main([*argv, "--out", str(tmp_path / "x")])
        raise SystemExit(rc)
    assert err.value.code == 2
    assert message in capsys.readouterr().err and not (tmp_path / "x").exists()
