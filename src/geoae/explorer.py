"""The latent-space explorer: one self-contained HTML page in which the reader moves the code z and watches
the decoders of trained runs draw (Newson et al., JMIV 2020: how a scalar code becomes a disk of a given size,
why a bias-free decoder can only scale one Airy-shaped profile f̂, how a code becomes a position).

``write_explorer(run_dirs, out_path)`` (CLI: ``geoae explore RUN_DIR ... --out explorer.html``) writes the
page: no server and no network, the decoders' weights are inlined (base64 float32) and the page's own
script runs the decoder's forward pass, an executor of the network's ``spec.NetSpec`` like the torch
modules and the fused kernels, with the same mathematics (``spec`` module docstring):

- ``upconv`` (``paper64``, ``paper1d``): D^{l+1} = φ(U(D^l) ∗ w + b), U the ×2 upsampling (zero insertion
  or nearest), ∗ the 3-tap convolution with padding 1, φ the leaky ReLU (the output layer: leaky, identity
  or sigmoid). A 1-D signal is a 1 × n image whose kernels have height 1 and whose rows are not upsampled.
  With coordinate channels the constant term conv(C, w_C) of each layer is inlined as a bias map
  (``models.coordinate_bias``);
- ``convT`` (``keras63``): out[o, 2i + a, 2j + b] += w[o, c, a, b]·x[c, i, j] (stride 2, no padding).

What the page computes is decided from the spec's features (``supports``, ``SUPPORTED_FEATURES``); a
decoder with any other feature is refused at export with a ``ValueError`` naming it.

What the page shows, per run side by side on one shared control: the decoded image at native resolution
and enlarged, the radius it implies r̂ = √(Σ x̂ / π) (disks) or its argmax (Diracs), the encoder's code
curve z(r) (or z(p)) with the training inputs and the current code marked, and for a bias-free disk run
the Airy profile f̂ (``theory.f_hat``, R = the largest training radius) with the decoded radial profile
scaled onto it and their relative L2 distance (``theory.profile_distance``). The code is set either
directly (a slider per code entry, marked with the range of codes the encoder gives on the training data,
and for d ≥ 2 a 2-D pad over the last two entries) or through the input (a disk radius, a Dirac position:
each run then decodes its own encoder's code of that input). ``window.geoae.snapshot()`` returns what the
page computed (codes, decoded float images, r̂, argmax), which the browser test compares with Python.

``explorers_for_results(out)`` writes the pages of the runs behind D1, D4/D5 and P3 of a ``reproduce``
results directory; ``links_html`` lists them in ``report.html``.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import theory
from .data import DiracData, DiskData, all_dirac_positions, render_diracs, render_disks, test_radii
from .models import conv_weight, coordinate_bias
from .spec import LayerSpec, NetSpec
from .training import BatchSource, TrainConfig, TrainResult, is_finished, load_run, run_name
from .training.rundir import write_bytes_atomic

__all__ = ["write_explorer", "explorer_html", "page_data", "page_inputs", "run_data", "decoder_layers", "supports",
           "default_labels", "explorers_for_results", "links_html", "PageLink", "MAX_RUNS_PER_PAGE",
           "SUPPORTED_FEATURES"]

DATA_MARK = "/*GEOAE_DATA*/"  # where the page's JSON goes in the template
MAX_RUNS_PER_PAGE = 8  # reproduce's pages: a group with more runs keeps the first seed's
RADII_PER_PIXEL = 4  # the radius control of a disk page: steps of 1/4 px over [0, m/2]
PAD_POINTS = 4096  # training codes drawn on the 2-D pad, at most (evenly thinned)


def _b64(values) -> str:
    """float32 little-endian bytes, base64: how the page receives arrays."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


# ------------------------------------------------------------------------------------ the decoder

# what the page's script computes (explorer.html: upconv, convT, activate), as features of the decoder's spec
SUPPORTED_FEATURES = frozenset({"upconv:zeros", "upconv:nearest", "convT", "act:leaky", "act:identity",
                                "act:sigmoid", "bias", "coord", "frozen", "ndim:1", "ndim:2",
                                *(f"kernel:{k}" for k in range(1, 17))})


def supports(spec: NetSpec) -> str | None:
    """None if the page computes the decoder of ``spec``, else which of its features it lacks (the encoder is
    not in the page: its codes are computed here, at export)."""
    missing = sorted(dataclasses.replace(spec, layers=spec.decoder).features() - SUPPORTED_FEATURES)
    if missing:
        known = sorted(f for f in SUPPORTED_FEATURES if not f.startswith("kernel:"))
        return f"features {', '.join(missing)} (the page computes: {', '.join(known)}, kernels of 1 to 16 taps)"
    return None


def _layer(ly: LayerSpec, module: nn.Module) -> dict:
    """One decoder layer as the page runs it, per axis (rows, columns): a 1-D signal is a 1 × n image whose
    kernels have height 1 and whose rows are neither upsampled nor padded. Weights in the spec's convolution
    layout (cout, cin, kh, kw); a ``coord`` layer's coordinate term as a bias map (cout, H_out, W_out)."""
    one = ly.ndim == 1
    weight = conv_weight(ly, module.weight.detach())
    out = {"op": ly.op, "upsample": ly.upsample, "cin": ly.cin, "cout": ly.cout,
           "k": [1 if one else ly.kernel, ly.kernel], "stride": [1 if one else ly.stride, ly.stride],
           "padding": [0 if one else ly.padding, ly.padding], "up": [1 if one else 2, 2],
           "act": ly.activation, "alpha": float(ly.alpha), "weight": _b64(weight)}
    if ly.bias:
        out["bias"] = _b64(module.bias)
    if ly.coord:
        with torch.no_grad():
            out["bias_map"] = _b64(coordinate_bias(ly, module.weight))
    return out


def decoder_layers(model) -> tuple[list[dict], tuple[int, int]]:
    """The decoder of ``model`` (built from its ``spec``) as the page computes it: one dict per layer, and the
    output shape (H, W) (1 × n for a 1-D signal). Raises ValueError naming what the page cannot compute."""
    spec = model.spec
    why = supports(spec)
    if why is not None:
        raise ValueError(f"the explorer cannot draw this decoder: it has {why}")
    modules = [m for m in model.decoder if hasattr(m, "weight")]
    layers = [_layer(ly, m) for ly, m in zip(spec.decoder, modules, strict=True)]
    n = spec.decoder[-1].n_out
    return layers, ((1, n) if spec.ndim == 1 else (n, n))


# ------------------------------------------------------------------------------------ one run


@torch.no_grad()
def _codes(model, images: torch.Tensor) -> np.ndarray:
    model.eval()
    return torch.cat([model.encode(c) for c in images.split(512)]).double().numpy()


def _training_radii(data: DiskData) -> list[list[float]]:
    """The radius intervals the training disks were drawn from: [r_min, r_max] minus the excluded ones."""
    pieces = [[float(data.r_min), float(data.size / 2 if data.r_max is None else data.r_max)]]
    for lo, hi in data.exclude:
        pieces = [p for a, b in pieces for p in ([a, min(b, lo)], [max(a, hi), b]) if p[1] > p[0]]
    return pieces


def _thin(points: np.ndarray, limit: int) -> np.ndarray:
    return points if len(points) <= limit else points[np.linspace(0, len(points) - 1, limit).round().astype(int)]


def _airy(config: TrainConfig) -> dict | None:
    """f̂ for a bias-free disk run (Prop. 2 needs D(λz) = λD(z): no bias, no coordinates, no sigmoid)."""
    m = config.model
    if not isinstance(config.data, DiskData) or m.bias or m.coord or m.output_activation == "sigmoid":
        return None
    R = float(config.data.size / 2 if config.data.r_max is None else config.data.r_max)
    size = config.data.size
    rho, f = theory.airy_curve(R, 200, rho_max=float(theory.pixel_radii(size).max()))
    return {"R": R, "f_pix": _b64(theory.f_hat_image(size, R)), "rho": rho.tolist(), "f": f.tolist()}


def page_inputs(data: DiskData | DiracData) -> torch.Tensor:
    """The inputs of the page's input control: radii (N,) every 1/4 px over [0, m/2], or every Dirac position
    (n,) or (m·m, 2)."""
    if isinstance(data, DiskData):
        return test_radii(RADII_PER_PIXEL * data.size // 2 + 1, size=data.size)
    return all_dirac_positions(data.size, data.ndim)


def run_data(run: TrainResult, label: str) -> dict:
    """Everything the page needs about one finished run: its decoder, its encoder's codes, its training inputs."""
    config, model = run.config, run.model
    layers, shape = decoder_layers(model)
    batches = BatchSource(config)  # exactly the run's training set
    z_train, params = _codes(model, batches.images), batches.params
    data, inputs = config.data, page_inputs(config.data)
    if isinstance(data, DiskData):
        images = render_disks(inputs, size=data.size, rendering=data.rendering, sigma=data.sigma)
        seen = {"intervals": _training_radii(data)}
    else:
        images = render_diracs(inputs, size=data.size, ndim=data.ndim)
        flat = params.reshape(len(params), -1).long()
        index = flat[:, 0] if data.ndim == 1 else flat[:, 0] * data.size + flat[:, 1]
        mask = torch.zeros(len(inputs), dtype=torch.bool)
        mask[index] = True
        seen = {"mask": mask.int().tolist()}
    lo, hi = z_train.min(0), z_train.max(0)
    return {
        "label": label, "run": run_name(config), "latent_dim": config.model.latent_dim, "shape": list(shape),
        "layers": layers,
        "z_train_range": [[float(a), float(b)] for a, b in zip(lo, hi, strict=True)],
        "z_train_points": _b64(_thin(np.unique(z_train, axis=0), PAD_POINTS)) if config.model.latent_dim > 1 else None,
        "input_codes": _b64(_codes(model, images)),
        "seen": seen, "airy": _airy(config),
    }


# ------------------------------------------------------------------------------------ the page


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v)
    return out


def default_labels(configs: list[TrainConfig]) -> list[str]:
    """Each run named by the config entries that differ between the runs of the page (e.g. ``bias=false,
    seed=1``); a page of one run: its arch and seed."""
    flats = [_flat(dataclasses.asdict(c)) for c in configs]
    keys = [k for k in flats[0] if len({f.get(k) for f in flats}) > 1]
    if not keys:
        return [f"{c.model.arch}, seed {c.seed}" for c in configs]
    return [", ".join(f"{k.split('.')[-1]}={f[k]}" for k in keys) for f in flats]


def page_data(runs: list[TrainResult], *, title: str, labels: list[str] | None = None) -> dict:
    """The page's JSON: shared facts (data kind, sizes, inputs) and one ``run_data`` per run."""
    if not runs:
        raise ValueError("runs must hold at least one finished run")
    first = runs[0].config
    kind = "disks" if isinstance(first.data, DiskData) else "diracs"
    ndim = 1 if first.model.arch == "paper1d" else 2
    for r in runs[1:]:
        c = r.config
        for name, a, b in (("data kind", type(c.data).__name__, type(first.data).__name__),
                           ("image size", c.data.size, first.data.size), ("latent_dim", c.model.latent_dim,
                                                                          first.model.latent_dim),
                           ("signal dimension", c.model.arch == "paper1d", first.model.arch == "paper1d")):
            if a != b:
                raise ValueError(f"runs on one page share the code and the inputs: {name} differs between "
                                 f"{run_name(first)} ({b}) and {run_name(c)} ({a}); export them to separate pages")
    labels = default_labels([r.config for r in runs]) if labels is None else list(labels)
    if len(labels) != len(runs):
        raise ValueError(f"labels must give one name per run: {len(runs)} runs, {len(labels)} labels")
    for r in runs:  # refuse a decoder the page cannot run before any work
        decoder_layers(r.model)
    return {"title": title, "kind": kind, "ndim": ndim, "size": first.data.size, "latent_dim": first.model.latent_dim,
            "inputs": page_inputs(first.data).tolist(),
            "runs": [run_data(r, label) for r, label in zip(runs, labels, strict=True)]}


def explorer_html(runs: list[TrainResult], *, title: str = "geoae latent-space explorer",
                  labels: list[str] | None = None) -> str:
    """The page's HTML text for finished runs (see ``write_explorer``)."""
    data = json.dumps(page_data(runs, title=title, labels=labels), separators=(",", ":"))
    template = resources.files("geoae").joinpath("explorer.html").read_text(encoding="utf-8")
    if template.count(DATA_MARK) != 1:
        raise RuntimeError(f"explorer.html must contain {DATA_MARK} exactly once")
    # inside <script>, "</script", "<!--" and "<script" change how the browser reads the block: with every
    # "<" (and ">", "&") as a JSON escape, no text of the data can end or bend it
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return template.replace("{{title}}", html.escape(title)).replace(DATA_MARK, data)


def _load(run_dir) -> TrainResult:
    run_dir = Path(run_dir)
    if not is_finished(run_dir):
        raise ValueError(f"{run_dir} is not a finished run directory (it needs metrics.json and "
                         "model.safetensors; train it with `geoae train` or `geoae reproduce`)")
    return load_run(run_dir)


def write_explorer(run_dirs, out_path, *, title: str | None = None, labels: list[str] | None = None) -> Path:
    """Write the explorer of the finished runs in ``run_dirs`` to ``out_path`` (one HTML file, atomically).

    All runs share the page's controls, so they must have the same data kind, image size, signal dimension
    and code dimension d; a decoder the page cannot compute is refused (``decoder_layers``). Returns the path.
    """
    run_dirs = [run_dirs] if isinstance(run_dirs, str | Path) else list(run_dirs)
    if not run_dirs:
        raise ValueError("run_dirs must name at least one finished run directory")
    runs = [_load(d) for d in run_dirs]
    text = explorer_html(runs, title=title or f"geoae explorer: {len(runs)} run(s)", labels=labels)
    return _write_text(Path(out_path), text)


def _write_text(path: Path, text: str) -> Path:
    """Write atomically (``training.rundir.write_bytes_atomic``): a browser never opens half a page."""
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------- reproduce's pages


@dataclass(frozen=True)
class PageLink:
    """One explorer page of a results directory: its title and file, or why it could not be written."""

    title: str
    file: str | None
    error: str = ""


PAGES = (("D1", "D1: the d = 1 disk autoencoders, one per seed"),
         ("D5", "D4/D5: the disk decoders with and without biases (bias-free: the Airy profile)"),
         ("P3", "P3: the Dirac decoders, per position-sampling scheme"))


def _group_key(c: TrainConfig) -> tuple:
    return type(c.data).__name__, c.data.size, c.model.arch == "paper1d", c.model.latent_dim, c.model.encoder


def _group_name(c: TrainConfig) -> tuple[str, str]:
    """(file-name slug, words) for a group of runs that share a page, e.g. ('2d-diracs-16-d3-position', ...)."""
    kind = "disks" if isinstance(c.data, DiskData) else f"{c.data.ndim}d-diracs"
    words = "disks" if isinstance(c.data, DiskData) else f"{c.data.ndim}-D Diracs"
    words += f", size {c.data.size}, d = {c.model.latent_dim}"
    slug = f"{kind}-{c.data.size}-d{c.model.latent_dim}"
    if c.model.encoder == "position":
        slug, words = slug + "-position", words + ", decoders behind the hand-crafted position encoder"
    elif not isinstance(c.data, DiskData):
        words += ", end-to-end autoencoders"
    return slug, words


def explorers_for_results(out) -> list[PageLink]:
    """Write ``explorer_<ID>[_<group>].html`` in the results directory ``out`` for the runs behind D1, D4/D5
    (D5's runs: with and without biases) and P3, read from each ``<ID>/results.json`` (its ``configs``) and
    ``runs/<profile>/``. Runs that cannot share controls go to separate pages (one per data kind, size, code
    dimension and encoder); a page with more than ``MAX_RUNS_PER_PAGE`` runs keeps the first seed's. A page
    that cannot be written is returned with its reason instead of a file: the report still gets built."""
    out = Path(out)
    links = []
    for exp_id, title in PAGES:
        try:
            rec = json.loads((out / exp_id / "results.json").read_text())
        except (OSError, ValueError):  # unreadable, not UTF-8, not JSON: the report says so
            continue
        if not isinstance(rec, dict) or rec.get("status") != "ok" or not rec.get("configs"):
            continue
        profile = rec.get("profile")
        if not isinstance(profile, str) or Path(profile).name != profile or profile in ("", ".", ".."):
            links.append(PageLink(title, None, f"{exp_id}/results.json names no valid profile ({profile!r})"))
            continue
        try:
            groups: dict[tuple, list[TrainConfig]] = {}
            configs = rec["configs"]  # {run name: config} (a list in results files of earlier versions)
            for c in (TrainConfig.from_dict(d) for d in (configs.values() if isinstance(configs, dict) else configs)):
                groups.setdefault(_group_key(c), []).append(c)
        except (ValueError, TypeError, KeyError) as err:
            links.append(PageLink(title, None, f"unreadable configs in {exp_id}/results.json: {err}"))
            continue
        root = out / "runs" / profile
        for configs in groups.values():
            if len(configs) > MAX_RUNS_PER_PAGE:
                configs = [c for c in configs if c.seed == min(x.seed for x in configs)]
            slug, words = _group_name(configs[0])
            page_title = title + (f" ({words})" if len(groups) > 1 else "")
            name = f"explorer_{exp_id}" + (f"_{slug}" if len(groups) > 1 else "") + ".html"
            try:
                write_explorer([root / run_name(c) for c in configs], out / name, title=page_title)
                links.append(PageLink(page_title, name))
            except Exception as err:  # noqa: BLE001 - one page that fails must not stop the report
                links.append(PageLink(page_title, None, f"{type(err).__name__}: {err}"))
    return links


def links_html(links: list[PageLink]) -> str:
    """The report's list of explorer pages (empty when there is none)."""
    if not links:
        return ""
    e = html.escape
    items = "".join(f'<li><a href="{e(p.file)}">{e(p.title)}</a></li>' if p.file else
                    f"<li>{e(p.title)}: <em>not written ({e(p.error)})</em></li>" for p in links)
    return ("<section id='explorers'><h2>Explore the decoders</h2><p>Interactive pages (open from disk, no "
            "server): move the code z and watch each trained decoder draw.</p>" f"<ul>{items}</ul></section>")

