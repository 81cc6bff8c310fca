"""Thin low-current lines (grain boundaries) told apart from domains (bands).

A grain boundary under the droplet shows as a dip as wide as the footprint
plus the boundary itself, sampled every pitch: one or two pixels across. A
[001] domain is a band with a plateau of its own level, usually several pixels
wide. :func:`boundary_lines` finds the low features narrower than the width a
line can have (the footprint diameter plus a pitch, at least two pitches) by a
morphological black top-hat (closing minus the map): the closing fills valleys
narrower than its structuring element and leaves wider ones (bands) alone.

At a coarse pitch a thin [001] band is as narrow as a line; the lines of a
stripe pattern are parallel to it, those of a grain network point every way:
:func:`line_alignment` measures which (the fraction of line pixels whose
normal lies along a wave vector).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: a pixel is on a line if it lies this many noise sigmas below the closing
LINE_SIGMAS = 3.5
#: fewest connected pixels (8-connectivity) of a line (an isolated low pixel
#: is a bad landing or noise)
MIN_LINE_PIXELS = 4


def line_width_limit_um(pitch_um: float, footprint_radius_um: float | None) -> float:
    """The widest low feature taken for a line: the footprint diameter plus
    one pitch (where a thin boundary shows), at least two pitches (with an
    unknown footprint: two pitches)."""
    a = footprint_radius_um if footprint_radius_um else 0.0
    return max(2.0 * a + pitch_um, 2.0 * pitch_um)


def _robust_sigma(r: np.ndarray) -> float:
    d = np.concatenate([np.diff(r, axis=0).ravel(), np.diff(r, axis=1).ravel()])
    d = d[np.isfinite(d)]
    if d.size < 4:
        return math.nan
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def boundary_lines(
    residual: np.ndarray,
    *,
    pitch_um: float,
    footprint_radius_um: float | None = None,
    high_is_100: bool = True,
    sigmas: float = LINE_SIGMAS,
) -> dict[str, Any]:
    """Pixels on thin low-current lines of a map with its smooth background
    removed (NaN: not measured).

    The structuring element is a disk whose diameter is the line-width limit
    (:func:`line_width_limit_um`) plus a pixel; a pixel is on a line when the
    closing lies ``sigmas`` x the pixel noise (from neighbour differences,
    robust to the lines themselves) above it, in a connected piece of at
    least :data:`MIN_LINE_PIXELS` pixels. ``high_is_100`` False: a resistance
    map, where boundaries are high.

    Returns ``mask`` (bool), ``fraction`` (of the valid pixels), ``depth``
    (median depth of the line pixels, map units), ``width_limit_um``,
    ``noise`` (the pixel noise used).
    """
    from scipy import ndimage

    r = np.asarray(residual, dtype=float)
    ok = np.isfinite(r)
    if not high_is_100:
        r = -r
    sigma = _robust_sigma(r)
    width = line_width_limit_um(pitch_um, footprint_radius_um)
    empty = {
        "mask": np.zeros(r.shape, bool),
        "fraction": 0.0,
        "depth": math.nan,
        "width_limit_um": width,
        "noise": sigma,
    }
    if ok.sum() < 16 or not sigma > 0:
        return empty
    d_px = max(3, math.ceil(width / pitch_um) + 1)
    rad = (d_px - 1) / 2.0
    g = np.arange(-math.floor(rad), math.floor(rad) + 1)
    disk = (g[:, None] ** 2 + g[None, :] ** 2) <= rad**2 + 0.5
    if d_px == 3:
        disk = np.ones((3, 3), bool)
    filled = np.where(ok, r, np.nanmedian(r))
    closing = ndimage.grey_closing(filled, footprint=disk, mode="nearest")
    deep = ok & ((closing - filled) > sigmas * sigma)
    lab, n = ndimage.label(deep, structure=np.ones((3, 3)))
    if n == 0:
        return empty
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    mask = (sizes[lab] >= MIN_LINE_PIXELS) & (lab > 0)
    frac = float(mask.sum() / ok.sum())
    depth = float(np.median((closing - filled)[mask])) if mask.any() else math.nan
    return {"mask": mask, "fraction": frac, "depth": depth, "width_limit_um": width, "noise": sigma}


def line_alignment(
    mask: np.ndarray, wavevector: tuple[float, float], tol_deg: float = 20.0
) -> float:
    """Fraction of the line pixels whose line runs along the stripes of the
    wave vector (its normal within ``tol_deg`` of the wave vector), from the
    structure tensor of the mask smoothed over a pixel. 1 for the thin bands
    of a stripe pattern, ~``2 tol / 180`` for a grain network."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=float)
    if not m.any():
        return math.nan
    s = ndimage.gaussian_filter(m, 1.0)
    gy, gx = np.gradient(s)
    jxx = ndimage.gaussian_filter(gx * gx, 1.5)
    jyy = ndimage.gaussian_filter(gy * gy, 1.5)
    jxy = ndimage.gaussian_filter(gx * gy, 1.5)
    normal = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # dominant gradient direction
    wv = math.atan2(wavevector[1], wavevector[0])
    diff = np.abs((normal - wv + math.pi / 2) % math.pi - math.pi / 2)
    sel = mask.astype(bool)
    return float(np.mean(diff[sel] <= math.radians(tol_deg)))
