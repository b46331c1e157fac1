"""Data with ground truth: centred disks (size) and Diracs (position).

The two data sets of Newson, Almansa, Gousseau & Ladjal, *Processing Simple Geometric Attributes with
Autoencoders* (JMIV 2020): images of one centred disk of radius r (the paper's size experiments, whose
indicator is 1_{B_r}) and one-hot signals / images (its position experiments). See SPEC section 1.

Notation: image side m; pixel (i, j) has centre (x, y) = (j - c, i - c) with c = (m - 1)/2, so pixel
(i, j) covers the unit square [x - 1/2, x + 1/2] x [y - 1/2, y + 1/2] and a centred disk is symmetric.
Images are float32 tensors (B, 1, m, m) in [0, 1]; 1-D signals are (B, 1, n).

Disk renderings (all deterministic):
- ``binary``: 1 where the pixel centre satisfies x^2 + y^2 <= r^2.
- ``area``: the exact area of (pixel square) ∩ B_r, from the closed-form antiderivative of
  sqrt(r^2 - u^2), evaluated in float64 (error ~1e-12 per pixel, below float32 rounding).
- ``gaussian``: (1_{B_r} * G_sigma) at the pixel centre, i.e. P(|t + sigma N| <= r) for N ~ N(0, I_2):
  the authors' released data (800 Monte Carlo offsets, sigma = 0.5) in expectation. It is the CDF of a
  non-central chi-square with 2 degrees of freedom (scipy.special.chndtr, error ~1e-14); pixels with
  |rho - r| >= 8 sigma are set to exactly 0 or 1 (error <= exp(-32) ~ 1e-14).

Beyond the paper (Newson et al. treat centred disks with uniform radii in 2-D only), three options of the
disk generators, all exact and deterministic given the radii:
- ``density``: the radii's density on [r_min, r_max] (minus ``exclude``): ``uniform`` (the paper's),
  ``area`` p(r) ∝ r (the disks' areas πr² are then uniform), ``small`` p(r) ∝ r_max − r (small radii
  frequent); drawn by inverting the CDF, no rejection;
- ``shape``: ``disk``; ``square`` of half-side r (side 2r, the set ‖t‖_∞ ≤ r: every rendering is the
  product of two 1-D coverages); ``ellipse`` with semi-axes r along x and ``ELLIPSE_ASPECT``·r along y
  (``area``: the disk formula on pixels stretched by 1/aspect along y; ``binary``; no ``gaussian``);
- ``ndim=1``: centred intervals [−r, r] in signals (B, 1, n), sample x = i − (n − 1)/2 (the 1-D ball:
  ``area`` = exact coverage of [x − ½, x + ½], ``binary``, ``gaussian`` = P(|x + σN| ≤ r)).

Generators follow scikit-learn's habit: they return the data *and* the ground truth, and take an
explicit ``seed`` (an int in [0, 2^63 - 1] or a torch.Generator), never global random state.

Bounds: an image side is at most ``MAX_SIZE``; one call generates at most ``MAX_VALUES`` values (4 GiB of
float32: generate more in parts). Any argument outside what is documented raises ``ValueError`` naming it.
"""

from ..checks import MAX_VALUES, finite_real
from .common import MAX_SEED, MAX_SIZE, Interval, Seed
from .configs import DiracData, DiskData
from .diracs import SCHEMES, all_dirac_positions, dirac_positions, make_diracs, render_diracs
from .disks import (
    DENSITIES,
    ELLIPSE_ASPECT,
    RENDERINGS,
    SHAPES,
    _render_area,  # noqa: F401 - the tests compare the two area renderers
    _render_ellipse,  # noqa: F401
    make_disks,
    radius_density,
    render_disks,
    sample_radii,
    test_radii,
)

__all__ = ["DiskData", "DiracData", "make_disks", "render_disks", "sample_radii", "test_radii", "radius_density",
           "make_diracs", "render_diracs", "dirac_positions", "all_dirac_positions", "RENDERINGS", "DENSITIES",
           "SHAPES", "SCHEMES", "ELLIPSE_ASPECT", "MAX_SIZE", "MAX_VALUES", "MAX_SEED", "Seed", "Interval",
           "finite_real"]
