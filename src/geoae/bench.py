"""``geoae bench``: training throughput of geoae against a plain PyTorch implementation of the same maths.

(a) ``PlainAutoencoder`` is the paper's network (ICLR 2018 §3.1, Table 1) written the textbook
way: NCHW tensors, ``nn.Conv2d`` encoder, ``nn.ConvTranspose2d(in, out, 3, stride 2, padding 1,
output_padding 1)`` decoder, a standard loop over a precomputed list of batches with ``torch.optim.Adam``
and torch's default threads. Its weights are copied from a geoae model: the UpsampleConv weight w
(out, in, 3, 3), "zero insertion then conv padding 1", is the ConvTranspose2d weight w.transpose(0, 1).flip(2, 3).
(b) is geoae's own trainer ``train.train`` (the fused kernels of ``geoae.fused`` where they apply), on the
same initial weights and the same batches. The losses of the first 50 steps must agree (relative
difference < 1e-4), otherwise the benchmark fails: speed is never bought with different mathematics.

Arithmetic rate: the multiply-accumulates (MACs) of the convolutions of one image, counting only the taps
that read real samples (``spec.NetSpec.macs``: no padding, no inserted zeros); one training step is 3 × forward
(forward, backward to the inputs, backward to the weights), i.e. FLOP/step = 2 · 3 · MACs · B. It is
shown as a fraction of this machine's fp32 ``torch.mm`` rate measured in the same run.

The sweep figure trains K runs (seeds × the five regularisers) with the plain loop one after the other
(the regularisers computed by ``train.compute_loss`` on the plain network), then with
``train.train_many`` (one worker per core, as the experiments do). Each ``train_many`` run must end with
exactly the weights ``train.train`` gives it alone; the plain runs' losses of the first steps must agree
with geoae's to the same 1e-4.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import train as T
from .data import DiracData, DiskData
from .environment import LEVELS, TORCH_LEVEL_VARIABLES, torch_limits
from .models import Autoencoder, ModelConfig, build_model, upsample_kernel
from .spec import network_spec
from .train import REGULARISERS, BatchSource, TrainConfig, train

__all__ = ["PlainAutoencoder", "plain_train", "conv_macs", "matmul_flops", "bench_single", "bench_sweep", "main",
           "NETWORKS", "network_config", "level_note"]

LOSS_TOLERANCE = 1e-4  # relative difference of the first 50 losses, (a) vs (b)
SWEEP_WEIGHTS = {"none": 0.0, "locality": 1e-4, "l2_all": 1e-3, "l2_encoder": 1e-3, "contractive": 1e-3}


class PlainAutoencoder(nn.Module):
    """The textbook version of a geoae model, built from its ``spec`` with torch's own layers (NCHW tensors):
    ``nn.Conv2d`` for a strided conv, ``nn.ConvTranspose2d(stride 2, padding 1, output_padding 1)`` for
    "zero insertion then conv" (kernel ``models.upsample_kernel``), ``nn.Upsample`` + ``nn.Conv2d`` for the
    nearest mode, ``nn.ConvTranspose2d`` for a transposed conv; weights copied from ``model``."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        spec = model.spec
        if {"coord", "frozen"} & spec.features():
            raise ValueError("PlainAutoencoder mirrors networks without coordinate channels or frozen layers")
        modules = []
        with torch.no_grad():
            for ly, theirs in zip(spec.layers, model.conv_layers(), strict=True):
                conv = {1: nn.Conv1d, 2: nn.Conv2d}[ly.ndim]
                if ly.op == "conv" or (ly.op == "upconv" and ly.upsample == "nearest"):
                    mine = conv(ly.cin, ly.cout, ly.kernel, stride=ly.stride, padding=ly.padding, bias=ly.bias)
                    mine.weight.copy_(theirs.weight)
                    if ly.op == "upconv":
                        mine = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), mine)
                else:
                    up = ly.op == "upconv"
                    mine = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}[ly.ndim](
                        ly.cin, ly.cout, ly.kernel, stride=2, padding=1 if up else 0, output_padding=1 if up else 0,
                        bias=ly.bias)
                    mine.weight.copy_(upsample_kernel(theirs.weight, "zeros") if up else theirs.weight)
                if ly.bias:
                    (mine[1] if isinstance(mine, nn.Sequential) else mine).bias.copy_(theirs.bias)
                act = {"leaky": nn.LeakyReLU(ly.alpha), "identity": nn.Identity(), "sigmoid": nn.Sigmoid()}
                modules.append((ly.stage, mine, act[ly.activation]))
        self.encoder = nn.Sequential(*(m for stage, conv, act in modules if stage == "encoder" for m in (conv, act)))
        self.decoder = nn.Sequential(*(m for stage, conv, act in modules if stage == "decoder" for m in (conv, act)))
        self.ndim = spec.ndim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, m, m) → (B, d)."""
        return self.encoder(x).flatten(1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, d) → (B, 1, m, m)."""
        return self.decoder(z.view(*z.shape, *(1,) * self.ndim))

    def _weights(self, stage: nn.Sequential) -> list[torch.Tensor]:
        return [m.weight for m in stage.modules() if isinstance(m, nn.modules.conv._ConvNd)]

    def encoder_weights(self) -> list[torch.Tensor]:
        return self._weights(self.encoder)

    def decoder_weights(self) -> list[torch.Tensor]:
        return self._weights(self.decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def plain_train(model: nn.Module, batches: list[torch.Tensor], lr: float = 1e-3,
                betas: tuple[float, float] = (0.9, 0.999), regulariser: str = "none",
                weight: float = 0.0) -> tuple[list[float], float]:
    """A standard training loop; returns (losses, seconds). The regularised loss is ``train.compute_loss``'s."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=betas)
    losses = []
    t0 = time.perf_counter()
    for x in batches:
        optimizer.zero_grad()
        if regulariser == "none" or weight == 0:
            loss = F.mse_loss(model(x), x)
        else:
            loss = T.compute_loss(model, x, regulariser, weight).total
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - t0


def conv_macs(config: ModelConfig) -> int:
    """Convolution multiply-accumulates of one forward pass of one image (``spec.NetSpec.macs``)."""
    return network_spec(config).macs


def matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matrix-multiply rate (FLOP/s, the best of ``repeats``: the machine's peak, which a
    busy moment can only lower) at the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        times.append((time.perf_counter() - t0) / 4)
    return 2 * n**3 / min(times)


def _config(batch_size: int, bias: bool, steps: int, size: int = 64) -> TrainConfig:
    return TrainConfig(model=ModelConfig(size=size, bias=bias), data=DiskData(n=1000, size=size),
                       batch_size=batch_size, iterations=steps, log_every=steps, checkpoint_every=10**9)


# the other networks the experiments train, each timed against its own plain loop: the released recipe's
# architecture (Keras-style transposed convolutions, 63 × 63 disks) and the position claims' 1-D network on Diracs
NETWORKS = {
    "keras63": lambda: (ModelConfig(arch="keras63", size=63), DiskData(n=1000, size=63)),
    "paper1d": lambda: (ModelConfig(arch="paper1d", size=64), DiracData(size=64)),
}


def network_config(name: str, batch_size: int, steps: int) -> TrainConfig:
    """The bench run of one of ``NETWORKS`` (plain Adam, as the plain loop uses)."""
    model, data = NETWORKS[name]()
    return TrainConfig(model=model, data=data, batch_size=batch_size, iterations=steps, log_every=steps,
                       checkpoint_every=10**9)


def bench_single(config: TrainConfig, repeats: int, check_steps: int = 50) -> dict:
    """(a) plain loop vs (b) ``train.train``: images/s medians, ratio, first-steps loss agreement."""
    source = BatchSource(config)
    batches = [source.next() for _ in range(max(config.iterations, check_steps))]
    check = dataclasses.replace(config, iterations=check_steps, log_every=1)
    ref_losses, _ = plain_train(PlainAutoencoder(build_model(config.model, seed=config.seed)),
                                batches[:check_steps], config.lr, config.betas)
    ours = [h["loss"] for h in train(check).history]
    rel = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(ref_losses, ours, strict=True))
    plain_ips, geoae_ips = [], []
    for _ in range(repeats):
        model = PlainAutoencoder(build_model(config.model, seed=config.seed))
        _, seconds = plain_train(model, batches[: config.iterations], config.lr, config.betas)
        plain_ips.append(config.iterations * config.batch_size / seconds)
        geoae_ips.append(train(config).metrics["images_per_second"])
    a, b = statistics.median(plain_ips), statistics.median(geoae_ips)
    return {"plain_images_per_second": a, "geoae_images_per_second": b, "ratio": b / a,
            "loss_max_rel_diff": rel, "loss_check_steps": check_steps, "losses_agree": rel < LOSS_TOLERANCE}


def sweep_configs(base: TrainConfig, k: int) -> list[TrainConfig]:
    """K runs: the five regularisers, then the next seed, and so on."""
    return [dataclasses.replace(base, seed=i // len(REGULARISERS), regulariser=REGULARISERS[i % len(REGULARISERS)],
                                reg_weight=SWEEP_WEIGHTS[REGULARISERS[i % len(REGULARISERS)]]) for i in range(k)]


def _max_rel_diff(runs_a, runs_b) -> float:
    diff = 0.0
    for a, b in zip(runs_a, runs_b, strict=True):
        wa, wb = a.model.state_dict(), b.model.state_dict()
        diff = max(diff, *(float((wa[n] - wb[n]).abs().max() / wa[n].abs().max().clamp_min(1e-12)) for n in wa))
    return diff


def bench_sweep(base: TrainConfig, k: int, repeats: int, workers: int | None = None,
                check_steps: int = 20) -> dict:
    """K plain runs one after the other vs ``train_many`` (one worker per core).

    Images/s count every run's images over the wall-clock time, process start-up included. The
    ``train_many`` runs must equal ``train`` alone exactly; plain and geoae losses must agree over the
    first ``check_steps`` steps of every run to ``LOSS_TOLERANCE``.
    """
    import tempfile

    configs = sweep_configs(base, k)
    batches = {c.seed: [s.next() for s in [BatchSource(c)] for _ in range(c.iterations)] for c in configs}
    workers = T.default_workers() if workers is None else workers
    plain_s, par_s = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for c in configs:
            model = PlainAutoencoder(build_model(c.model, seed=c.seed))
            plain_train(model, batches[c.seed], c.lr, c.betas, c.regulariser, c.reg_weight)
        plain_s.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            parallel = T.train_many(configs, tmp, workers=workers)
            par_s.append(time.perf_counter() - t0)
    images = k * base.iterations * base.batch_size
    a, b = (images / statistics.median(t) for t in (plain_s, par_s))
    par_diff = _max_rel_diff([train(c) for c in configs], parallel)
    loss_diff = 0.0
    for c in configs:
        n = min(check_steps, c.iterations)
        ref, _ = plain_train(PlainAutoencoder(build_model(c.model, seed=c.seed)), batches[c.seed][:n], c.lr,
                             c.betas, c.regulariser, c.reg_weight)
        ours = [h["loss"] for h in train(dataclasses.replace(c, iterations=n, log_every=1)).history]
        loss_diff = max(loss_diff, *(abs(x - y) / max(abs(x), 1e-30) for x, y in zip(ref, ours, strict=True)))
    kind = "threads" if all(T.runs_on_fused(c) for c in configs) else "processes"
    return {"k": k, "workers": workers, "worker_kind": kind, "plain_images_per_second": a,
            "parallel_images_per_second": b,
            "ratio": b / a, "parallel_weights_max_rel_diff": par_diff, "loss_max_rel_diff": loss_diff,
            "loss_check_steps": check_steps,
            "weights_agree": par_diff == 0.0 and loss_diff < LOSS_TOLERANCE}


def main(args) -> int:
    """Entry point of ``geoae bench`` (options: see ``cli.get_parser``). Exit 1 if an equivalence check fails."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config = _config(args.batch_size, not args.no_bias, args.steps, getattr(args, "size", 64))
    flop_step = 2 * 3 * conv_macs(config.model) * config.batch_size
    peak = matmul_flops()
    from . import fused
    from .settings import read_settings
    from .training.rundir import cpu_description

    settings = read_settings()
    out = {"cpu": cpu_description(), "kernel": fused.kernel_info(settings), "settings": settings.to_dict(),
           "torch_limits": torch_limits(),
           "threads": torch.get_num_threads(), "geoae_threads": settings.threads,
           "backend": settings.backend, "fused_available": fused.available(settings),
           "batch_size": config.batch_size, "bias": config.model.bias,
           "size": config.model.size, "steps": args.steps, "repeats": args.repeats,
           "flop_per_step": flop_step, "flop_count": "conv MACs x 2 x 3 (fwd + 2 bwd), per image x batch",
           "matmul_flops_per_second": peak, "single": bench_single(config, args.repeats)}
    for key in ("plain", "geoae"):
        rate = out["single"][f"{key}_images_per_second"] / config.batch_size * flop_step
        out["single"][f"{key}_flops_per_second"] = rate
        out["single"][f"{key}_matmul_fraction"] = rate / peak
    ok = out["single"]["losses_agree"]
    names = [n for n in getattr(args, "networks", ",".join(NETWORKS)).split(",") if n]
    unknown = sorted(set(names) - set(NETWORKS))
    if unknown:
        raise ValueError(f"--networks must name networks among {', '.join(NETWORKS)}, got {', '.join(unknown)}")
    out["networks"] = {}
    for net in names:
        cfg = network_config(net, config.batch_size, args.steps)
        flop = 2 * 3 * conv_macs(cfg.model) * cfg.batch_size
        res = bench_single(cfg, args.repeats)
        res |= {"flop_per_step": flop, "geoae_matmul_fraction": res["geoae_images_per_second"] / cfg.batch_size
                * flop / peak}
        out["networks"][net] = res
        ok = ok and res["losses_agree"]
    if args.sweep:
        sweep_base = dataclasses.replace(config, iterations=getattr(args, "sweep_steps", 50))
        out["sweep"] = bench_sweep(sweep_base, args.sweep, max(1, getattr(args, "sweep_repeats", 1)))
        out["sweep"]["parallel_matmul_fraction"] = (out["sweep"]["parallel_images_per_second"]
                                                    / config.batch_size * flop_step / peak)
        ok = ok and out["sweep"]["weights_agree"]
    print(json.dumps(out, indent=2) if args.json else _text(out))
    return 0 if ok else 1


def _text(out: dict) -> str:
    s = out["single"]
    k, cpu = out["kernel"], out["cpu"]
    kernel = (f"lanes {k['lanes']}, weight-gradient accumulators {k['wg_accumulators']}, chunk {k['chunk']} "
              f"({k['choice']}; {k['flags']})" if "lanes" in k else f"unavailable: {k['unavailable']}")
    lim = out["torch_limits"]
    limits = ", ".join(f"{name}={lim[name]}" for name in TORCH_LEVEL_VARIABLES if lim[name]) or "none: the CPU's best"
    lines = [
        f"CPU: {cpu['model']}, {cpu['isa']}, {cpu['cores']} cores; fused kernel: {kernel}",
        f"torch's own code (a, torch.mm): ATen {lim['aten_capability']}; limits {limits}",
        f"geoae bench: paper{out['size']}, batch {out['batch_size']}, bias={out['bias']}, "
        f"torch threads: {out['threads']} for (a) and torch.mm; geoae backend {out['backend']} "
        f"(fused kernels {'available' if out['fused_available'] else 'UNAVAILABLE'}), {out['geoae_threads']} "
        f"kernel threads; {out['steps']} steps x {out['repeats']} repeats (medians)",
        f"  FLOP per step {out['flop_per_step'] / 1e6:.1f} M ({out['flop_count']}); "
        f"torch.mm fp32 {out['matmul_flops_per_second'] / 1e9:.1f} GFLOP/s",
        f"  (a) plain PyTorch  {s['plain_images_per_second']:8.0f} images/s  "
        f"{s['plain_flops_per_second'] / 1e9:6.2f} GFLOP/s = {100 * s['plain_matmul_fraction']:.2f}% of matmul",
        f"  (b) geoae trainer  {s['geoae_images_per_second']:8.0f} images/s  "
        f"{s['geoae_flops_per_second'] / 1e9:6.2f} GFLOP/s = {100 * s['geoae_matmul_fraction']:.2f}% of matmul",
        f"  ratio b/a {s['ratio']:.2f}; losses of the first {s['loss_check_steps']} steps: max rel diff "
        f"{s['loss_max_rel_diff']:.1e} ({'OK' if s['losses_agree'] else 'MISMATCH'}, tolerance {LOSS_TOLERANCE:g})",
    ]
    for net, r in out.get("networks", {}).items():
        lines.append(
            f"  {net}: (a) plain {r['plain_images_per_second']:.0f} images/s, (b) geoae "
            f"{r['geoae_images_per_second']:.0f} images/s ({100 * r['geoae_matmul_fraction']:.2f}% of matmul), "
            f"ratio {r['ratio']:.2f}; losses of the first {r['loss_check_steps']} steps: max rel diff "
            f"{r['loss_max_rel_diff']:.1e} ({'OK' if r['losses_agree'] else 'MISMATCH'})")
    if "sweep" in out:
        w = out["sweep"]
        lines += [
            f"  sweep of K={w['k']} runs: plain one after the other {w['plain_images_per_second']:.0f} images/s; "
            f"geoae train_many on {w['workers']} {w['worker_kind']} {w['parallel_images_per_second']:.0f} images/s "
            f"({100 * w['parallel_matmul_fraction']:.2f}% of matmul), ratio {w['ratio']:.2f}",
            f"  train_many weights vs train alone: max rel diff {w['parallel_weights_max_rel_diff']:.1e} (must be 0); "
            f"plain vs geoae losses, first {w['loss_check_steps']} steps of every run: max rel diff "
            f"{w['loss_max_rel_diff']:.1e} (tolerance {LOSS_TOLERANCE:g}): "
            f"{'OK' if w['weights_agree'] else 'MISMATCH'}",
        ]
    note = level_note(out["settings"].get("march", "native"), lim)
    return "\n".join(lines + ([f"  note: {note}"] if note else []))


def level_note(march: str, limits: dict) -> str | None:
    """What the figures mean when the kernels are built for ``march`` below this CPU's best while torch's own
    code (``limits``: ``environment.torch_limits()``) is not limited: None when both run at one level."""
    if march == "native" or any(limits.get(name) for name in TORCH_LEVEL_VARIABLES):
        return None
    return (f"the kernels are built for {march} while torch runs at this CPU's best ({limits['aten_capability']}): "
            f"the ratios and the matmul fraction understate a {march} CPU"
            + (f"; `geoae bench --level {march}` limits both" if march in LEVELS else ""))
