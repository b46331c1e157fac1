"""Training curves of an experiment's runs, and where the runs live: added to every results record.

``training_curves(ctx, runs)`` draws the logged loss and MSE against the iteration for each run (runs of one
group, ``prefix/s<seed>``, share a colour), with the discrete optimum of the training set (the rank-1 bound of
any bias-free d = 1 network, ``theory.discrete_optimum``) as a dashed line for the bias-free disk runs.
``run_folders`` names each run's directory relative to the results folder, for the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..plots import label_axes, new_figure, save_figure

FIGURE = "training_curves.png"
MAX_GROUPS = 10  # legend entries; further groups are drawn in grey


def group_of(name: str) -> str:
    """'l2_all/s3' -> 'l2_all'; 'search/locality/1e-05/s0' -> 'search/locality/1e-05'."""
    head, sep, tail = name.rpartition("/s")
    return head if sep and tail.isdigit() else name


def run_folders(runs: dict, out: Path) -> dict[str, str]:
    """{run name: its directory relative to ``out`` (the results folder), or absolute when outside it}."""
    folders = {}
    for name, run in runs.items():
        if run.out_dir is None:
            continue
        path = Path(run.out_dir).resolve()
        try:
            folders[name] = str(path.relative_to(Path(out).resolve()))
        except ValueError:
            folders[name] = str(path)
    return folders


def _optimum(run) -> float | None:
    """The discrete optimum's MSE of a bias-free d = 1 disk run's training set, else None."""
    from ..data import DiskData
    from ..theory import discrete_optimum
    from ..training import BatchSource

    cfg = run.config
    if cfg.model.bias or cfg.model.latent_dim != 1 or not isinstance(cfg.data, DiskData) or cfg.data.ndim != 2:
        return None
    return float(discrete_optimum(BatchSource(cfg).images).mse)


def training_curves(path: Path, runs: dict) -> str | None:
    """Loss and MSE against iteration for every run with a history; None when no run has one."""
    groups: dict[str, list] = {}
    for name, run in runs.items():
        if run.history:
            groups.setdefault(group_of(name), []).append(run)
    if not groups:
        return None
    fig, axes = new_figure(2, width=4.6, height=3.4)
    colours = {g: f"C{k}" if k < MAX_GROUPS else "0.6" for k, g in enumerate(groups)}
    for ax, key in zip(axes[0], ("loss", "mse"), strict=True):
        for g, rs in groups.items():
            for k, run in enumerate(rs):
                its = [r["iteration"] for r in run.history]
                ax.plot(its, [r.get(key, np.nan) for r in run.history], "-", color=colours[g], lw=0.8, alpha=0.7,
                        label=g if k == 0 and colours[g] != "0.6" else None)
        if key == "mse":
            bounds = [(g, b) for g, rs in groups.items() if (b := _optimum(rs[0])) is not None]
            for g, b in bounds[:1]:
                ax.axhline(b, color="k", ls="--", lw=1.0, label=f"discrete optimum ({g}, first seed)")
        ax.set_yscale("log")
        label_axes(ax, "iteration", f"training {key} (batch)", f"training {key} of each run", legend_size=6)
    save_figure(fig, path)
    return path.name
