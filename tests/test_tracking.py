"""Watching runs: the training callback, the live history file, TensorBoard runs read back with TensorBoard's
own reader (curves, images, hparams), MLflow runs read back with MLflow's client from a sqlite store, the export
(idempotent, folders of runs, a run without history), and the history a killed run leaves behind."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geoae import training as T
from geoae.data import DiskData
from geoae.models import ModelConfig

SMALL = T.TrainConfig(model=ModelConfig(size=16), data=DiskData(n=64, size=16), iterations=30, batch_size=8,
                      log_every=5, checkpoint_every=10, regulariser="l2_all", reg_weight=1e-3)


def test_callback_sees_every_logged_record_and_the_live_file_matches(tmp_path):
    seen = []
    res = T.train(SMALL, tmp_path / "run", callbacks=[lambda record, model: seen.append(dict(record))])
    assert [r["iteration"] for r in seen] == [5, 10, 15, 20, 25, 30]
    assert seen == res.history == T.read_history(tmp_path / "run")
    lines = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == seen


def _accumulator(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def _hparams(acc) -> tuple[dict, set]:
    """The hparams TensorBoard's HParams plugin reads: {name: value} of the session, and the metric tags."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {}
    for name, value in session.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return values, {m.name.tag for m in experiment.experiment.metric_infos}


def test_tensorboard_run_read_back_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from geoae.tracking import TensorBoardLogger

    with TensorBoardLogger(tmp_path / "tb" / "small", config=SMALL) as logger:
        res = T.train(SMALL, tmp_path / "run", callbacks=[logger])
        logger.finish(res.metrics, tmp_path / "run")
    acc = _accumulator(tmp_path / "tb" / "small")
    for key in ("loss", "mse", "penalty"):
        events = acc.Scalars(f"train/{key}")
        assert [e.step for e in events] == [r["iteration"] for r in res.history]  # one point per logging step
        assert [e.value for e in events] == pytest.approx([r[key] for r in res.history], rel=1e-6)
    images = acc.Images("reconstruction")
    assert [e.step for e in images] == [r["iteration"] for r in res.history]
    assert (images[0].width, images[0].height) == (8 * 16, 2 * 16) and images[0].encoded_image_string[:4] == b"\x89PNG"
    values, metric_tags = _hparams(acc)
    assert values["lr"] == SMALL.lr and values["model.arch"] == "paper64" and values["regulariser"] == "l2_all"
    assert values["data.n"] == 64 and values["model.bias"] == "True"
    assert "final/train_mse" in metric_tags
    assert acc.Scalars("final/train_mse")[0].value == pytest.approx(res.metrics["train_mse"], rel=1e-6)


def test_the_reconstruction_image_shows_inputs_over_outputs():
    from geoae.models import build_model
    from geoae.tracking import reconstruction_image

    model = build_model(ModelConfig(size=16))
    x = torch.rand(3, 1, 16, 16)
    image = reconstruction_image(model, x)
    assert image.shape == (3, 32, 48) and torch.equal(image[0, :16, 16:32], x[1, 0])
    with torch.no_grad():
        assert torch.equal(image[0, 16:, :16], model(x).x_hat[0, 0].clamp(0, 1))
    signals = reconstruction_image(build_model(ModelConfig(arch="paper1d", size=16)), torch.rand(3, 1, 16))
    assert signals.shape == (3, 2 * 3 * 4, 16)


def _two_runs(root):
    for name, seed in (("a", 0), ("b", 1)):
        T.train(dataclasses.replace(SMALL, seed=seed), root / "runs" / name)
    return root / "runs"


def test_export_is_idempotent_and_takes_a_folder_of_runs(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from geoae.tracking import export_tensorboard

    runs = _two_runs(tmp_path)
    first = export_tensorboard([runs], tmp_path / "tb")
    assert [(e.folder.name, e.points, e.finished) for e in first] == [("a", 6, True), ("b", 6, True)]
    export_tensorboard([runs], tmp_path / "tb")  # again: the same points, not twice as many
    export_tensorboard([runs / "a"], tmp_path / "tb")
    for name in ("a", "b"):
        acc = _accumulator(tmp_path / "tb" / name)
        assert [e.step for e in acc.Scalars("train/mse")] == [5, 10, 15, 20, 25, 30]
        assert [e.step for e in acc.Images("reconstruction")] == [30]
        assert _hparams(acc)[0]["seed"] == (0 if name == "a" else 1)
    with pytest.raises(ValueError, match="neither a run directory"):
        export_tensorboard([tmp_path / "tb"], tmp_path / "x")


def test_export_of_a_run_without_history_says_so(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from geoae.cli import main

    run = tmp_path / "run"
    T.train(SMALL, run)
    (run / "history.jsonl").write_text("")  # as convert-keras writes it: the authors' curve is not in their file
    assert main(["export", str(run), "--out", str(tmp_path / "tb")]) == 0
    out = capsys.readouterr().out
    assert f"{run}: no training history (a converted model" in out
    acc = _accumulator(tmp_path / "tb" / "run")
    assert "train/mse" not in acc.Tags()["scalars"] and "final/train_mse" in acc.Tags()["scalars"]


def test_mlflow_run_read_back_with_mlflows_client(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("sqlalchemy", reason="MLflow's sqlite store needs sqlalchemy (geoae[mlflow])")
    from mlflow.tracking import MlflowClient

    from geoae.tracking import MLflowLogger, flatten_config

    monkeypatch.chdir(tmp_path)  # the store's artifacts go to ./mlruns
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with MLflowLogger("small", tracking_uri=uri, config=SMALL) as logger:
        res = T.train(SMALL, tmp_path / "run", callbacks=[logger])
        logger.finish(res.metrics, tmp_path / "run")
        run_id = logger.run.info.run_id
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.data.params == {k: str(v) for k, v in flatten_config(SMALL).items()} | {"digest": SMALL.digest()}
    assert run.data.params["data.n"] == "64" and run.data.params["model.arch"] == "paper64"
    history = client.get_metric_history(run_id, "mse")
    assert [m.step for m in history] == [r["iteration"] for r in res.history]
    assert run.data.metrics["final/train_mse"] == pytest.approx(res.metrics["train_mse"])
    artifacts = {a.path for a in client.list_artifacts(run_id, "run")}
    assert {"run/config.json", "run/metrics.json", "run/history.jsonl", "run/model.safetensors"} <= artifacts
    assert "run/.lock" not in artifacts


KILLABLE = """
import sys, time
from geoae import training as T
from geoae.data import DiskData
from geoae.models import ModelConfig
cfg = T.TrainConfig(model=ModelConfig(size=16), data=DiskData(n=64, size=16), iterations=100000, batch_size=8,
                    log_every=20, checkpoint_every=10**9)
T.train(cfg, sys.argv[1], callbacks=[lambda r, m: print(r["iteration"], flush=True)])
"""


def test_a_killed_run_keeps_its_history_up_to_the_last_logging_step(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(tmp_path / "run")], stdout=subprocess.PIPE,
                            text=True, env=os.environ | {"GEOAE_THREADS": "1"})
    logged = []
    deadline = time.monotonic() + 120
    while len(logged) < 3 and time.monotonic() < deadline:
        logged.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert len(logged) == 3
    history = T.read_history(tmp_path / "run")
    iterations = [r["iteration"] for r in history]
    assert iterations[:3] == logged and iterations == list(range(20, 20 * len(iterations) + 1, 20))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_cli_train_with_tensorboard_mlflow_and_export(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("sqlalchemy", reason="MLflow's sqlite store needs sqlalchemy (geoae[mlflow])")
    from mlflow.tracking import MlflowClient

    from geoae.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["--quiet", "train", "--size", "16", "--n-train", "32", "--iterations", "10", "--batch-size", "8",
            "--log-every", "5", "--tensorboard", "live", "--mlflow"]
    for name, seed in (("one", "0"), ("two", "1")):
        assert main([*args, "--seed", seed, "--out", f"runs/{name}"]) == 0
    for name in ("one", "two"):  # one TensorBoard run per training run, not one merged run "."
        assert [e.step for e in _accumulator(tmp_path / "live" / name).Scalars("train/mse")] == [5, 10]
    assert not list((tmp_path / "live").glob("events.*"))
    client = MlflowClient(tracking_uri="sqlite:///mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("geoae").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["one", "two"]
    assert {r.data.params["seed"] for r in runs} == {"0", "1"}
    assert all("final/train_mse" in r.data.metrics for r in runs)
    assert main(["--quiet", "export", "runs", "--out", "tb"]) == 0  # a folder of runs
    assert main(["--quiet", "export", "runs", "--out", "tb"]) == 0
    assert [e.step for e in _accumulator(tmp_path / "tb" / "two").Scalars("train/mse")] == [5, 10]
    assert main(["--quiet", "export", str(tmp_path / "live"), "--out", "x"]) == 2
