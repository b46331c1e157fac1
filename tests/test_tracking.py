"""Watching runs: the training callback, the live history file, TensorBoard event files read back with
TensorBoard's own reader, MLflow's file store, and the history a killed run leaves behind."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

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


def test_tensorboard_event_file_read_back_with_tensorboards_reader(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from geoae.tracking import TensorBoardLogger, export_tensorboard

    with TensorBoardLogger(tmp_path / "tb") as logger:
        res = T.train(SMALL, tmp_path / "run", callbacks=[logger])
    exported = export_tensorboard([tmp_path / "run"], tmp_path / "exported")
    for folder in (tmp_path / "tb", exported[0]):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        assert {f"train/{k}" for k in ("loss", "mse", "penalty")} <= set(acc.Tags()["scalars"])
        for key in ("loss", "mse", "penalty"):
            events = acc.Scalars(f"train/{key}")
            assert [e.step for e in events] == [r["iteration"] for r in res.history]  # one point per logging step
            assert [e.value for e in events] == pytest.approx([r[key] for r in res.history], rel=1e-6)
    with pytest.raises(ValueError, match="not a run directory"):
        export_tensorboard([tmp_path], tmp_path / "x")


def test_mlflow_file_store(tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from geoae.tracking import MLflowLogger

    uri = (tmp_path / "mlruns").as_uri()
    with MLflowLogger("small", tracking_uri=uri, params={"lr": SMALL.lr}) as logger:
        res = T.train(SMALL, callbacks=[logger])
        run_id = logger.run.info.run_id
    from mlflow.tracking import MlflowClient

    history = MlflowClient(tracking_uri=uri).get_metric_history(run_id, "mse")
    assert [m.step for m in history] == [r["iteration"] for r in res.history]


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


def test_cli_train_with_tensorboard_and_export(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from geoae.cli import main

    run = tmp_path / "run"
    assert main(["--quiet", "train", "--size", "16", "--n-train", "32", "--iterations", "10", "--batch-size", "8",
                 "--out", str(run), "--tensorboard", str(tmp_path / "live")]) == 0
    assert main(["--quiet", "export", str(run), "--to", "tensorboard", "--out", str(tmp_path / "tb")]) == 0
    for folder in (tmp_path / "live", tmp_path / "tb" / "run"):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        assert [e.step for e in acc.Scalars("train/mse")] == [r["iteration"] for r in T.read_history(run)]
    assert main(["--quiet", "export", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
