"""Sweeps: K independent ``paper64`` autoencoders trained at once as one stacked network.

Every experiment of the paper (Newson et al., JMIV 2020, Sec. 4) is many small runs: seeds × regularisers
× splits. Model k's layers are E^{l+1} = φ_α(E^l ∗ w_k + b_k) and D^{l+1} = φ_α(U(D^l) ∗ w_k + b_k); stacking
the K models along the channel axis turns every layer into one grouped convolution (``groups=K``), so each
kernel call does K models' work. Model k sees only its own batches (its own ``BatchSource``), its own
regulariser ψ_k and weight λ_k, and the objective is

    Σ_k  L_k(θ_k),     L_k = MSE_k + λ_k ψ_k,

so ∂/∂θ_k is model k's own gradient. Adam is elementwise, so one Adam over the stacked parameters is K
independent Adams. The result equals K separate ``train.train`` runs up to float rounding (summation
order inside the grouped kernels): ``tests/test_fastpath.py`` checks the weights after a short run.

An interrupted group restarts from its first iteration (finished runs are never redone).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .models import Autoencoder, ModelConfig

__all__ = ["supported", "group_key", "StackedAutoencoder", "stacked_losses", "train_group"]

# ModelConfig fields the stacked network computes; any other field must keep its default value
_KNOWN_FIELDS = {"arch", "size", "latent_dim", "bias", "alpha", "channels", "upsample", "output_activation"}


def supported(config: ModelConfig) -> bool:
    """Whether ``StackedAutoencoder`` computes exactly the network ``build_model(config)`` builds:
    ``paper64`` with zero-insertion upsampling (any size, channels, α, bias, output activation)."""
    defaults = ModelConfig()
    for f in dataclasses.fields(config):
        if f.name not in _KNOWN_FIELDS and getattr(config, f.name) != getattr(defaults, f.name):
            return False
    return config.arch == "paper64" and config.upsample == "zeros"


def group_key(config) -> tuple | None:
    """Runs with equal keys can be trained together (None: this run cannot be grouped)."""
    if not supported(config.model):
        return None
    return (config.model, config.batch_size, config.iterations, config.lr, tuple(config.betas),
            config.log_every)


class StackedAutoencoder(torch.nn.Module):
    """K autoencoders of one ModelConfig as one network; parameter i is (K, *shape of model parameter i).

    Tensors are laid out (B, K·C, H, W): model k owns channels [k·C, (k+1)·C) of every layer.
    """

    def __init__(self, models: Sequence[Autoencoder]):
        super().__init__()
        config = models[0].config
        if not supported(config) or any(m.config != config for m in models):
            raise ValueError("StackedAutoencoder needs models of one supported paper64 ModelConfig")
        self.config, self.k = config, len(models)
        per_model = [list(m.parameters()) for m in models]
        self.params = torch.nn.ParameterList(
            torch.nn.Parameter(torch.stack([p[i].detach() for p in per_model]).contiguous())
            for i in range(len(per_model[0]))
        )

    def layers(self) -> tuple[list, list]:
        """(encoder, decoder) lists of (weight (K, out, in, 3, 3), bias (K, out) or None)."""
        ps = list(self.params)
        step = 2 if self.config.bias else 1
        pairs = [(ps[i], ps[i + 1] if step == 2 else None) for i in range(0, len(ps), step)]
        n = self.config.n_layers
        return pairs[:n], pairs[n:]

    def encoder_weights(self) -> list[torch.Tensor]:
        return [w for w, _ in self.layers()[0]]

    def decoder_weights(self) -> list[torch.Tensor]:
        return [w for w, _ in self.layers()[1]]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, K, m, m) (model k's batch in channel k) → z (B, K, d)."""
        alpha, h = self.config.negative_slope, x.contiguous(memory_format=torch.channels_last)
        for w, b in self.layers()[0]:
            h = F.conv2d(h, w.flatten(0, 1), None if b is None else b.flatten(), stride=2, padding=1,
                         groups=self.k)
            h = F.leaky_relu(h, alpha)
        return h.view(h.shape[0], self.k, -1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, K, d) → x_hat (B, K, m, m)."""
        alpha = self.config.negative_slope
        h = z.reshape(z.shape[0], -1, 1, 1)
        dec = self.layers()[1]
        for i, (w, b) in enumerate(dec):
            kernel = w.transpose(1, 2).flip(3, 4).flatten(0, 1)  # UpsampleConv's kernel, per model
            h = F.conv_transpose2d(h, kernel, None if b is None else b.flatten(), stride=2, padding=1,
                                   output_padding=1, groups=self.k)
            kind = self.config.output_activation if i == len(dec) - 1 else "leaky"
            h = F.leaky_relu(h, alpha) if kind == "leaky" else torch.sigmoid(h) if kind == "sigmoid" else h
        return h

    @torch.no_grad()
    def copy_to(self, models: Sequence[Autoencoder]) -> None:
        """Write model k's slice of every stacked parameter into ``models[k]``."""
        for j, model in enumerate(models):
            for p, stacked in zip(model.parameters(), self.params, strict=True):
                p.copy_(stacked[j])


def stacked_losses(net: StackedAutoencoder, x: torch.Tensor, regularisers: Sequence[str],
                   weights: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-model (total, mse, penalty), each (K,), for x (B, K, m, m); the formulas of ``compute_loss``."""
    active = {r for r, lam in zip(regularisers, weights, strict=True) if r != "none" and lam != 0}
    if "contractive" in active:
        x = x.detach().requires_grad_(True)
    z = net.encode(x)
    x_hat = net.decode(z)
    mse = (x_hat - x).square().mean((0, 2, 3))
    penalty = mse.new_zeros(net.k)
    for reg in sorted(active):
        mask = torch.tensor([r == reg and lam != 0 for r, lam in zip(regularisers, weights, strict=True)])
        penalty = penalty + torch.where(mask, _penalty(net, reg, x, z), 0.0)
    lam = torch.tensor([float(w) for w in weights])
    return mse + lam * penalty, mse, penalty


def _penalty(net: StackedAutoencoder, reg: str, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Regulariser ``reg`` of every model, (K,)."""
    if reg in ("l2_all", "l2_encoder"):
        ws = net.encoder_weights() + (net.decoder_weights() if reg == "l2_all" else [])
        return torch.stack([w.square().flatten(1).sum(1) for w in ws]).sum(0)
    if reg == "locality":  # per model: nearest other image of its own batch
        flat, zk = x.transpose(0, 1).flatten(2), z.transpose(0, 1)  # (K, B, pixels), (K, B, d)
        dist = torch.cdist(flat, flat).square()
        dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        index = dist.argmin(dim=2, keepdim=True)
        dx = (flat - flat.gather(1, index.expand_as(flat))).square().sum(2)
        dz = (zk - zk.gather(1, index.expand_as(zk))).square().sum(2)
        return (dx - dz).square().mean(1)
    if reg == "contractive":  # mean over batch, pixels and code dimensions of (∂z_c/∂x)²
        total = x.new_zeros(net.k)
        for c in range(z.shape[2]):
            (g,) = torch.autograd.grad(z[:, :, c].sum(), x, create_graph=True)
            total = total + g.square().mean((0, 2, 3))
        return total / z.shape[2]
    raise ValueError(f"unknown regulariser {reg!r}")


def train_group(configs: Sequence, out_dirs: Sequence[Path | None] | None = None, *,
                progress: bool = False) -> list:
    """Train runs of one ``group_key`` at once; write each run directory as ``train.train`` does.

    Returns one ``TrainResult`` per config. Raises ``train.TrainingDiverged`` if any run's loss stops
    being finite (``train.train_many`` then trains that group's runs one by one).
    """
    from . import train as T

    with T.training_threads():
        return _train_group(configs, out_dirs, progress)


def _train_group(configs: Sequence, out_dirs, progress: bool) -> list:
    from . import train as T

    keys = {group_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise ValueError("train_group needs configs of one group_key (same model, batch, iterations, lr, logging)")
    c0, k = configs[0], len(configs)
    out_dirs = list(out_dirs) if out_dirs is not None else [None] * k
    models = [T.build_model(c.model, seed=c.seed) for c in configs]
    sources = [T.BatchSource(c) for c in configs]
    net = StackedAutoencoder(models)
    optimizer = torch.optim.Adam(net.parameters(), lr=c0.lr, betas=c0.betas)
    regs, lams = [c.regulariser for c in configs], [c.reg_weight for c in configs]
    histories: list[list[dict]] = [[] for _ in configs]
    bar = T._progress(c0.iterations, 0, progress, f"{k} runs at once")
    t0 = time.perf_counter()
    for it in range(c0.iterations):
        x = torch.stack([s.next() for s in sources], 1).squeeze(2)  # (B, K, m, m)
        total, mse, pen = stacked_losses(net, x, regs, lams)
        step = it + 1
        log = step % c0.log_every == 0 or step == c0.iterations
        if log or step == 1:
            values = torch.stack([total, mse, pen]).tolist()
            bad = [j for j, v in enumerate(values[0]) if v != v or abs(v) == float("inf")]
            if bad:
                raise T.TrainingDiverged(f"grouped run {T.run_name(configs[bad[0]])} diverged at iteration {step}")
            if log:
                for j, h in enumerate(histories):
                    h.append({"iteration": step, "loss": values[0][j], "mse": values[1][j], "penalty": values[2][j]})
        optimizer.zero_grad(set_to_none=True)
        total.sum().backward()
        optimizer.step()
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t0
    if not all(torch.isfinite(p).all() for p in net.parameters()):
        raise T.TrainingDiverged(f"a grouped run of {k} diverged (non-finite weights)")
    net.copy_to(models)
    results = []
    for config, model, source, history, out_dir in zip(configs, models, sources, histories, out_dirs, strict=True):
        extra = {"grouped_runs": k, "train_seconds": elapsed,
                 "images_per_second": k * config.iterations * config.batch_size / max(elapsed, 1e-9)}
        results.append(T.finish_run(config, model, source, history, extra, out_dir))
    return results
