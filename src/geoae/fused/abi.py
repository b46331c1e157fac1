"""The C contract's mirror (``_fused.h``): the ``Layer`` struct, the ABI version, the error codes, the entry
points' ctypes signatures, and which network features the kernel computes (``supports``)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from ..settings import LANES, WG_ACCUMULATORS
from ..spec import NetSpec

__all__ = ["ABI_VERSION", "SOURCE", "HEADER", "SUPPORTED_FEATURES", "CANDIDATES", "KernelError", "supports", "bind"]

SOURCE = Path(__file__).parent.parent / "_fused.c"
HEADER = Path(__file__).parent.parent / "_fused.h"
ABI_VERSION = 5
BASE_FLAGS = ("-O3", "-std=gnu99", "-fPIC", "-shared", "-pthread")
ACTIVATIONS = {"leaky": 0, "identity": 1, "sigmoid": 2}
EINDEX = 5  # GEOAE_EINDEX: an index outside [0, n_images), refused before any work
ERRORS = {1: "bad arguments (null pointer, size or activation)", 2: "a kernel's taps exceed the kernel's limit",
          3: "layers do not fit together", 4: "out of memory for the weights' copy", 5: "an index outside the images"}
# what the kernel computes: every op of spec.OPS, both upsampling modes, every activation, biases, coordinate
# channels, a frozen encoder, kernels of 1 to 16 taps per axis, 1-D and 2-D
SUPPORTED_FEATURES = frozenset({"conv", "upconv:zeros", "upconv:nearest", "convT", "act:leaky", "act:identity",
                                "act:sigmoid", "bias", "coord", "frozen", "ndim:1", "ndim:2",
                                *(f"kernel:{k}" for k in range(1, 17))})
CANDIDATES = tuple((lanes, wg) for lanes in LANES for wg in WG_ACCUMULATORS)


class _Layer(ctypes.Structure):  # _fused.h: Layer
    _fields_ = [(name, ctypes.c_int) for name in ("hin", "win", "cin", "hout", "wout", "cout", "kh", "kw", "act")] + [
        ("alpha", ctypes.c_float),
        ("rows", ctypes.POINTER(ctypes.c_int)),
        ("cols", ctypes.POINTER(ctypes.c_int)),
        ("w", ctypes.c_void_p),
        ("b", ctypes.c_void_p),
        ("bm", ctypes.c_void_p),
        ("mr", ctypes.c_int),
        ("mc", ctypes.c_int),
        ("irows", ctypes.POINTER(ctypes.c_int)),
        ("icols", ctypes.POINTER(ctypes.c_int)),
        ("wf", ctypes.c_void_p),  # set by the library on its own copy (repacked weights); left NULL here
        ("wi", ctypes.c_void_p),
    ]


class KernelError(RuntimeError):
    """The C kernel refused its arguments (a defect of geoae: the message says which check failed)."""


def _check(code: int, call: str) -> None:
    if code != 0:
        raise KernelError(f"fused kernel {call} returned error {code}: {ERRORS.get(code, 'unknown')}")


def bind(lib: ctypes.CDLL, path: Path) -> ctypes.CDLL:
    for name in ("geoae_abi_version", "geoae_layer_size", "geoae_lanes", "geoae_chunk", "geoae_wg_accumulators",
                 "geoae_image_slots"):
        getattr(lib, name).restype = ctypes.c_int if name != "geoae_image_slots" else ctypes.c_long
    if lib.geoae_abi_version() != ABI_VERSION or lib.geoae_layer_size() != ctypes.sizeof(_Layer):
        raise OSError(f"{path}: ABI {lib.geoae_abi_version()} with a {lib.geoae_layer_size()}-byte Layer, expected "
                      f"ABI {ABI_VERSION} with {ctypes.sizeof(_Layer)} bytes; delete it to rebuild")
    ptr, ptrs, c_int, c_float, c_long = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                         ctypes.c_float, ctypes.c_long)
    layers = ctypes.POINTER(_Layer)
    lib.geoae_scratch_floats.restype = lib.geoae_activation_floats.restype = lib.geoae_coef_floats.restype = c_long
    lib.geoae_scratch_floats.argtypes = [layers, c_int, layers, c_int, c_int]
    lib.geoae_activation_floats.argtypes = [layers, c_int, c_int]
    lib.geoae_coef_floats.argtypes = [layers, c_int, c_int]
    lib.geoae_image_slots.argtypes = [c_int]
    lib.geoae_ae_forward.restype = lib.geoae_ae_backward.restype = c_int
    lib.geoae_ae_forward.argtypes = [layers, c_int, layers, c_int, c_int, ptr, ptr, ptrs, ptrs, ptr, ptrs, ptr, ptr,
                                     ptr, c_int, ptr, ptr]
    lib.geoae_ae_backward.argtypes = [layers, c_int, layers, c_int, c_int, ptrs, ptrs, ptr, c_float, ptrs, ptr,
                                      c_float, c_int, ptr, ptr, ptr, ptr, ptr, c_int]
    lib.geoae_ae_step.restype = c_int
    c_longlong = ctypes.c_longlong
    lib.geoae_ae_step.argtypes = [layers, c_int, layers, c_int, c_int, ptr, c_longlong, ptr, ptr, ptr, ptrs, ptrs, ptr,
                                  ptrs, ptr, ptr, c_float, c_float, c_int, ptr, ptr, ptr, ptr, ptr, c_int, ptr, ptr]
    lib.geoae_ae_encode.restype = c_int
    lib.geoae_ae_encode.argtypes = [layers, c_int, c_int, ptr, c_longlong, ptr, ptr, ptrs, ptr, c_int]
    c_double = ctypes.c_double
    lib.geoae_adam.restype = c_int
    lib.geoae_adam.argtypes = [c_int, ptrs, ptrs, ptrs, ptrs, ctypes.POINTER(c_longlong), c_double, c_double,
                               c_double, c_double, c_double, c_int]
    return lib



def supports(spec: NetSpec) -> str | None:
    """None if the fused kernel computes the network ``spec``, else which of its features it lacks."""
    missing = sorted(spec.features() - SUPPORTED_FEATURES)
    if missing:
        return f"features {', '.join(missing)} (the fused kernel has: {', '.join(sorted(SUPPORTED_FEATURES))})"
    frozen = {ly.frozen for ly in spec.encoder}
    if len(frozen) > 1 or any(ly.frozen for ly in spec.decoder):
        return "a partly frozen network (the fused kernel trains the decoder, and the encoder or none of it)"
    return None

