"""Figures: small matplotlib helpers shared by the command line and the experiments.

Every figure is drawn from numbers already computed (and usually already saved in a results file) and
written atomically as PNG. The non-interactive Agg backend is used, so nothing needs a screen.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.2, **kw):
    """A figure of ``nrows × ncols`` panels, each about ``width × height`` inches."""
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically (``training.rundir.write_bytes_atomic``) and close it."""
    from .training.rundir import write_bytes_atomic

    path = Path(path)
    buffer = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buffer, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def label_axes(ax, xlabel: str, ylabel: str, title: str, *, title_size: float = 10, legend_size: float | None = 7,
               markerscale: float | None = None) -> None:
    """What every line figure of the report ends with: axis labels, a title, the legend (``legend_size`` None: no
    legend), a light grid."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=title_size)
    if legend_size is not None:
        ax.legend(fontsize=legend_size, **({} if markerscale is None else {"markerscale": markerscale}))
    ax.grid(alpha=0.3)


def _as_numpy(images) -> np.ndarray:
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    return arr.astype(np.float32)


def contact_sheet(images, path: str | Path, *, titles: Sequence[str] | None = None, ncols: int = 8,
                  max_images: int = 32, vmin: float | None = 0.0, vmax: float | None = 1.0) -> Path:
    """A grid of images (B, 1, H, W) — or 1-D signals (B, 1, n), drawn as stems — saved as PNG."""
    arr = _as_numpy(images)[:max_images]
    n = len(arr)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    one_d = arr.ndim == 3
    fig, axes = new_figure(ncols, nrows, width=1.6 if not one_d else 2.2, height=1.6 if not one_d else 1.2)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        if one_d:
            ax.plot(arr[k, 0], lw=0.8)
            ax.set_ylim(-0.1 if vmin is None else vmin - 0.1, 1.1 if vmax is None else vmax + 0.1)
        else:
            ax.imshow(arr[k, 0], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    return save_figure(fig, path)


def line_plot(path: str | Path, x, curves: dict[str, np.ndarray], *, xlabel: str, ylabel: str,
              title: str = "", logy: bool = False, shade: Sequence[tuple[float, float]] = (),
              styles: dict[str, str] | None = None) -> Path:
    """Several curves y(x) on one axis; ``shade`` greys out x-intervals (e.g. a hole in the training radii)."""
    fig, axes = new_figure(width=5.2, height=3.6)
    ax = axes[0, 0]
    for lo, hi in shade:
        ax.axvspan(lo, hi, color="0.85", zorder=0)
    for label, y in curves.items():
        ax.plot(x, y, (styles or {}).get(label, "-"), label=label, lw=1.4)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def image_row(path: str | Path, images: dict[str, np.ndarray], *, cmap: str = "gray",
              symmetric: bool = False) -> Path:
    """Named 2-D maps side by side (filters, gradient maps, profiles), each with its colour bar."""
    fig, axes = new_figure(len(images), width=2.8, height=2.6)
    for ax, (title, img) in zip(axes.flat, images.items(), strict=True):
        img = _as_numpy(img)
        if symmetric:
            v = float(np.abs(img).max()) or 1.0
            im = ax.imshow(img, cmap="RdBu_r", vmin=-v, vmax=v, interpolation="nearest")
        else:
            im = ax.imshow(img, cmap=cmap, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)


def image_rows(path: str | Path, rows: dict[str, np.ndarray], titles: Sequence[str], *,
               vmax: float | None = 1.0) -> Path:
    """Named rows of images (each (n, 1, H, W); sizes may differ between rows) as one labelled mosaic.

    Drawn on a single axis (several times faster than one axis per image): row labels on the left, column
    ``titles`` on top; ``vmax=None`` scales the grey levels to the data.
    """
    arrs = [_as_numpy(v).astype(np.float64) for v in rows.values()]
    side = max(max(a.shape[-2:]) for a in arrs)
    ncols, pad = max(len(a) for a in arrs), 2
    cell = side + pad
    canvas = np.full((len(arrs) * cell + pad, ncols * cell + pad), np.nan)
    for i, a in enumerate(arrs):
        for j, img in enumerate(a[:, 0]):
            h, w = img.shape
            canvas[pad + i * cell: pad + i * cell + h, pad + j * cell: pad + j * cell + w] = img
    fig, axes = new_figure(width=1.25 * ncols + 0.9, height=1.25 * len(arrs) + 0.4)
    ax = axes[0, 0]
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    top = float(np.nanmax(canvas)) if vmax is None else vmax
    ax.imshow(canvas, cmap=cmap, vmin=0.0, vmax=top if top > 0 else 1.0, interpolation="nearest")
    centres = pad + cell * np.arange(ncols) + side / 2
    ax.set_xticks(centres[: len(titles)], titles, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(pad + cell * np.arange(len(arrs)) + side / 2, list(rows), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    return save_figure(fig, path)


def heatmap(path: str | Path, values: np.ndarray, rows: Sequence[str], *, xlabel: str, title: str,
            cbar: str, vmin: float = 0.0, vmax: float = 1.0) -> Path:
    """A (row label × x) map of ``values`` (R, X), one labelled row each, with a colour bar: many curves that a
    line plot would overlay."""
    values = np.asarray(values, dtype=np.float64)
    fig, axes = new_figure(width=7.0, height=0.9 + 0.32 * len(rows))
    ax = axes[0, 0]
    im = ax.imshow(values, aspect="auto", interpolation="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=cbar, fraction=0.04)
    return save_figure(fig, path)
