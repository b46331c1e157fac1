"""The fused CPU executor: an autoencoder's training step in one call of a small C kernel.

Why: the paper's network (``paper64``: 1 → 8 → 4 → 4 → 3 → 2 → d channels, 3 × 3 kernels) does about
0.3 M multiply-accumulates per image, yet PyTorch's convolutions spend ~15 ms per batch of 64 on it: with
1 to 16 channels every library kernel is bound by memory traffic, layout reorders and per-call overhead
(docs/performance.md). ``_fused.c`` instead

* stores activations as [H][W][C][lane] with ``lanes`` images side by side, so every multiply-add of every
  layer is one vector instruction over the images, whatever the channel count;
* runs all layers on one block of images before the next block (the block's activations stay in cache),
  forward and backward, with bias, coordinate-channel term and activation fused into the convolution;
* writes every layer of a ``spec.NetSpec`` (strided conv, upsample-then-conv, transposed conv) as index
  tables (``spec.tap_table``), so taps that read padding or inserted zeros are never computed;
* splits the blocks over threads; gradients are kept per block and per image and summed in a fixed order,
  so results depend neither on the number of threads nor on the kernel configuration (lanes, blocking).

It computes the same mathematics as ``models.Autoencoder`` (E^{l+1} = φ_α(E^l ∗ w^l + b^l),
D^{l+1} = φ_α(U(D^l) ∗ w^l + b^l), ICLR 2018 §3.1), the per-pixel MSE and the contractive penalty; only the order of
floating-point additions differs from torch's (tests: losses and gradients to 1e-4 for every model the
experiments train). Which networks it runs is decided from the spec's features (``supports``).

Build: ``_fused.c`` (contract: ``_fused.h``) is compiled on first use with the system's C compiler (``CC``,
which may carry flags, else cc / gcc / clang), ``-march`` from ``GEOAE_MARCH`` (native by default, plain
flags where refused), into ``GEOAE_CACHE``. The kernel configuration (lanes 8 | 16 × weight-gradient
accumulators 8 | 16) is then chosen by measuring each candidate on a paper64 training step (a few seconds,
once per CPU, compiler and source; cached in ``tuning-*.json``), unless ``GEOAE_KERNEL`` forces one. A cached
library is loaded only if it belongs to the user, is not writable by others and matches the checksum
recorded when it was built; its ABI (version, struct size) is checked at load. A freshly built library is
first tried in a child process (one small training step): one that crashes there (SIGILL from a ``GEOAE_MARCH``
this CPU lacks) is refused, named, and not cached. Where nothing works,
``available()`` is False with the reason, and training falls back to torch (announced on stderr).


Modules: ``abi`` (the mirror of ``_fused.h``: struct, ABI version, error codes, signatures, ``supports``), ``build``
(compiling, verifying, trying, tuning and loading the library: ``kernel()``), ``stack`` (the encoder or decoder as
C layer descriptors, and the kernel's gradient buffers handed back to the parameters), ``executor``
(``FusedAutoencoder``: ``loss`` through autograd, ``step`` in one call).
"""

from __future__ import annotations

from .abi import ABI_VERSION, CANDIDATES, SUPPORTED_FEATURES, KernelError, supports
from .build import (
    Kernel,
    KernelCrashed,
    available,
    flags_for,
    kernel,
    kernel_info,
    library_path,
    unavailable_reason,
)
from .executor import FusedAutoencoder, StepOutput, announce_fallback

__all__ = ["ABI_VERSION", "CANDIDATES", "SUPPORTED_FEATURES", "FusedAutoencoder", "Kernel", "KernelCrashed",
           "KernelError", "StepOutput", "announce_fallback", "available", "flags_for", "kernel", "kernel_info",
           "library_path", "supports", "unavailable_reason"]
