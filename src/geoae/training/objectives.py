"""The training objective and its executors: L = MSE + λ·ψ (ICLR 2018 §3.1, §3.2.4).

    L(θ) = 1/(B·#pix) Σ_b ‖D(E(x_b)) − x_b‖²  +  λ · ψ(θ, x)

One registry (``REGULARISERS``) of the penalties ψ serves every executor. An executor computes, for one
batch, the code z, the MSE and (when asked) the contractive penalty, with gradients to the model's
parameters: ``TorchExecutor`` with the model's torch modules, ``fused.FusedAutoencoder`` with the fused C
kernel. ``compute_loss`` adds λ·ψ; the other penalties read only (model, x, z), so they are the same
functions on both executors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["Loss", "Regulariser", "REGISTRY", "REGULARISERS", "TorchExecutor", "compute_loss", "exact_distances",
           "integer_rows", "fused_step", "one_call_steps", "mse_per_pixel", "locality_penalty", "weight_penalty",
           "contractive_penalty"]


class Loss(NamedTuple):
    total: torch.Tensor
    mse: torch.Tensor
    penalty: torch.Tensor
    z: torch.Tensor | None = None  # the batch's codes (B, d), as the executor computed them


def mse_per_pixel(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over batch and pixels of (x̂ − x)²: the paper's reconstruction loss."""
    return F.mse_loss(x_hat, x)


def locality_penalty(x: torch.Tensor | None, z: torch.Tensor, dist: torch.Tensor | None = None,
                     integer: bool | None = None) -> torch.Tensor:
    """Paper's "type 1": mean over the batch of (‖x − x′‖² − ‖E(x) − E(x′)‖²)², x′ the nearest other image.

    x (B, 1, H, W) or (B, 1, n), z (B, d). The images carry no gradient: the nearest neighbours come from the
    Gram matrix (‖a − b‖² = ‖a‖² + ‖b‖² − 2⟨a, b⟩, one matrix product), in float64 whatever the images' dtype,
    so that a float32 and a float64 computation pick the same neighbours (symmetric images tie exactly, and
    rounding in the dtype at hand would break the tie differently); ‖x − x′‖² is then summed exactly.
    ``dist`` (B, B): the batch's squared distances selected from ``exact_distances`` (integer images, where they
    are exact; not modified): neighbours and ‖x − x′‖² are then read from it, the same integers, and x is not
    read (it may be None). ``integer``: whether x's rows are integer-valued as ``_gram`` tests it (``integer_rows``
    of the set, selected), None: tested here."""
    with torch.no_grad():
        if dist is not None:
            dist = dist.clone()
            dist.fill_diagonal_(float("inf"))
            nn_index = dist.argmin(dim=1)
            dx = dist[torch.arange(len(dist)), nn_index].to(z.dtype)
        else:
            flat = x.flatten(1)
            gram = _gram(flat, integer)
            sq = gram.diagonal()
            dist = sq[:, None] + sq[None, :] - 2 * gram
            dist.fill_diagonal_(float("inf"))
            nn_index = dist.argmin(dim=1)
            dx = torch.index_select(flat, 0, nn_index).sub_(flat).square_().sum(1)  # one temporary, not three
    dz = (z - z[nn_index]).square().sum(1)
    return (dx - dz).square().mean()


MAX_GRAM_IMAGES = 2048  # exact_distances' largest image set (a 2048 × 2048 float32 matrix: 16 MiB)


def _row_flags(flat: torch.Tensor, bound: float) -> torch.Tensor:
    """Per row of ``flat`` (N, n), whether it is non-negative, integer-valued float32 with ‖x‖² ≤ ``bound`` (N,)."""
    if flat.dtype != torch.float32:
        return torch.zeros(len(flat), dtype=torch.bool)
    return (flat >= 0).all(1) & (flat == flat.round()).all(1) & (flat.square().sum(1) <= bound)


def _integer_rows(flat: torch.Tensor, bound: float) -> bool:
    """Whether every row of ``flat`` is non-negative, integer-valued float32 with ‖x‖² ≤ ``bound``."""
    return bool(_row_flags(flat, bound).all())


GRAM_BOUND = 2.0**24  # _gram's float32 product is exact for non-negative integer rows with ‖x‖² ≤ this


def integer_rows(images: torch.Tensor) -> torch.Tensor:
    """Per image of a set (N, 1, ...), whether ``_gram`` would find its row integer-valued (N,) bool: a batch
    drawn from the set passes ``_integer_rows`` exactly when all its images do (the same test, row by row), so the
    training loop selects this instead of testing every batch (~0.4 ms a step on 63 × 63 images, measured)."""
    return _row_flags(images.flatten(1), GRAM_BOUND)


def exact_distances(images: torch.Tensor) -> torch.Tensor | None:
    """The squared distances ‖x_i − x_j‖² (N, N) float32 of a whole image set (N, 1, ...), where every one is an
    integer computed exactly: non-negative integer-valued float32 images with ‖x‖² ≤ 2²³ (then every partial sum
    of the Gram product is an integer float32 holds, and ‖x_i − x_j‖² ≤ ‖x_i‖² + ‖x_j‖² ≤ 2²⁴ is one too), at
    most ``MAX_GRAM_IMAGES``: binary disks, one-hot Diracs. Else None. A batch's distances are then a selection
    of it, the numbers the Gram matrix of the batch gives in ``locality_penalty``: the penalty of a step costs a
    gather, not a product over the pixels."""
    flat = images.flatten(1)
    if len(flat) > MAX_GRAM_IMAGES or not _integer_rows(flat, 2.0**23):
        return None
    gram = (flat @ flat.T).double()
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2 * gram).float()


def _gram(flat: torch.Tensor, integer: bool | None = None) -> torch.Tensor:
    """⟨x_i, x_j⟩ for the rows of ``flat`` (B, n), in float64. Where every row is non-negative and integer-valued
    (binary disks, one-hot Diracs) with ‖x‖² ≤ 2²⁴, every partial sum of every product is an integer float32
    represents exactly, so the float32 product (half the time of float64's, measured) is converted without a
    change; otherwise the product is computed in float64. ``integer``: that test's answer, if known."""
    if _integer_rows(flat, GRAM_BOUND) if integer is None else integer:
        return (flat @ flat.T).double()
    wide = flat.double()
    return wide @ wide.T


def weight_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ‖w‖² over convolution kernels (paper's "type 2" with all kernels, "type 3" with the encoder's)."""
    return torch.stack([w.square().sum() for w in weights]).sum()


def contractive_penalty(model, x: torch.Tensor) -> torch.Tensor:
    """Released code's penalty: mean over batch, pixels and code dimensions of (∂z_k/∂x)² (double backward)."""
    x = x.detach().requires_grad_(True)
    z = model.encode(x)
    total = x.new_zeros(())
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z[:, k].sum(), x, create_graph=True)
        total = total + g.square().mean()
    return total / z.shape[1]


@dataclass(frozen=True)
class Regulariser:
    """A penalty ψ: ``penalty(model, x, z)``; None for ``contractive``, which the executor computes. A weight
    penalty also names its kernels (``weights(model)``), so that ``fused_step`` adds its gradient directly."""

    name: str
    paper: str  # its name in the paper or the released code
    penalty: Callable | None
    weights: Callable | None = None  # model -> the kernels ψ = Σ‖w‖² sums over (weight penalties only)


def _all_weights(model) -> list[torch.Tensor]:
    return model.encoder_weights() + model.decoder_weights()


def _encoder_weights(model) -> list[torch.Tensor]:
    return model.encoder_weights()


REGISTRY: dict[str, Regulariser] = {r.name: r for r in (
    Regulariser("none", "no regulariser", lambda model, x, z: z.new_zeros(())),
    Regulariser("locality", 'paper "type 1"', lambda model, x, z: locality_penalty(x, z)),
    Regulariser("l2_all", 'paper "type 2"', lambda model, x, z: weight_penalty(_all_weights(model)), _all_weights),
    Regulariser("l2_encoder", 'paper "type 3"', lambda model, x, z: weight_penalty(_encoder_weights(model)),
                _encoder_weights),
    Regulariser("contractive", "released code", None),
)}
REGULARISERS = tuple(REGISTRY)


class TorchExecutor:
    """The loss of one batch through the model's own torch modules (every architecture)."""

    name = "torch"

    def __init__(self, model):
        self.model = model

    def loss(self, x: torch.Tensor, contractive: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, 1, m, m) or (B, 1, n) → (z (B, d), per-pixel MSE, contractive penalty or 0)."""
        z = self.model.encode(x)
        mse = mse_per_pixel(self.model.decode(z), x)
        return z, mse, contractive_penalty(self.model, x) if contractive else mse.new_zeros(())


def one_call_steps(config, executor) -> bool:
    """Whether ``fused_step`` trains ``config`` on ``executor``: the fused executor, on a network it steps in one
    call (every network it computes; coordinate channels since 2026-12-07)."""
    return getattr(executor, "name", None) == "fused" and executor.one_call() is None


def fused_step(model, images: torch.Tensor, index: torch.Tensor | None, regulariser: str, weight: float,
               executor, dist: torch.Tensor | None = None, integer: torch.Tensor | None = None) -> Loss:
    """The loss of the batch x = images[index] (``BatchSource.draw``) with its gradient written to the
    parameters' ``.grad``: MSE and contractive penalty by ``executor.step`` (one kernel call); the locality
    penalty, which reads the codes, by its ``code_loss`` (the codes first, then the step); a weight penalty's
    gradient added to those (``_weight_penalty_step``). Bit for bit ``compute_loss`` followed by ``backward``.
    For the locality penalty, ``dist``: ``exact_distances(images)`` (None: computed from the batch), and where that
    is None, ``integer``: ``integer_rows(images)`` (None: the batch is tested)."""
    active = weight != 0 and regulariser != "none"
    if active and regulariser == "locality":  # reads the codes: forward, the penalty's gradient at z, backward
        held = []
        batch_dist = dist if dist is None or index is None else dist.index_select(0, index).index_select(1, index)

        def code_loss(z):
            x = None if batch_dist is not None else images if index is None else images.index_select(0, index)
            rows = None if integer is None or batch_dist is not None else bool(
                (integer if index is None else integer.index_select(0, index)).all())
            held.append(locality_penalty(x, z, batch_dist, rows))
            return weight * held[0]

        out = executor.step(images, index, code_loss=code_loss)
        return Loss(out.mse + weight * held[0].detach(), out.mse, held[0].detach(), out.z)
    out = executor.step(images, index, contractive_weight=weight if active and regulariser == "contractive" else 0)
    if not active:  # mse + weight · 0 is mse itself (mse ≥ 0): no tensor arithmetic a step
        return Loss(out.mse, out.mse, out.penalty, out.z)
    if regulariser == "contractive":
        penalty = out.penalty
    else:
        penalty = _weight_penalty_step(REGISTRY[regulariser].weights(model), weight)
    return Loss(out.mse + weight * penalty, out.mse, penalty, out.z)


@torch.no_grad()
def _weight_penalty_step(weights: list[torch.Tensor], weight: float) -> torch.Tensor:
    """ψ = Σ‖w‖² over ``weights``, with the gradient of weight · ψ added to their ``.grad``: 2w times weight in
    float32, the two roundings of autograd's (the derivative of w² is 2w, exact; times the upstream gradient, the
    float32 weight), then added to the gradient held (one rounding, as autograd accumulates it): bit for bit
    ``(weight * ψ).backward()``, without building and running its graph (~0.3 ms a step, measured). Kernels without
    gradient (a frozen encoder) get none."""
    penalty = weight_penalty(weights)
    trainable = [w for w in weights if w.requires_grad]
    if trainable and all(w.grad is not None for w in trainable):
        terms = torch._foreach_mul(trainable, 2.0)
        torch._foreach_mul_(terms, weight)
        torch._foreach_add_([w.grad for w in trainable], terms)
    elif trainable:  # a kernel without a gradient yet: let autograd create it
        with torch.enable_grad():
            (weight * weight_penalty(weights)).backward()
    return penalty


def compute_loss(model, x: torch.Tensor, regulariser: str, weight: float, executor=None) -> Loss:
    """Loss of one batch x (B, 1, H, W) or (B, 1, n): MSE + weight · ψ, through ``executor`` (default: the
    model's torch modules)."""
    if regulariser not in REGISTRY:
        raise ValueError(f"regulariser must be one of {', '.join(REGULARISERS)}, got {regulariser!r}")
    executor = TorchExecutor(model) if executor is None else executor
    active = weight != 0 and regulariser != "none"
    z, mse, contractive = executor.loss(x, contractive=active and regulariser == "contractive")
    if not active:
        penalty = mse.new_zeros(())
    elif regulariser == "contractive":
        penalty = contractive
    else:
        penalty = REGISTRY[regulariser].penalty(model, x, z)
    return Loss(mse + weight * penalty, mse, penalty, z)
