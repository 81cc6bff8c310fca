"""Line profiles along a drawn line (optionally averaged across a width), and
grain boundaries: the profile across a boundary, its contrast against the
noise, and what the droplet footprint can resolve at all.

Lines are given by their end points in stage um, ``(x, y)``; the map's
geometry by ``x0_um``, ``y0_um``, ``pitch_um`` (pixel centres at
``x0 + (col + 0.5) p``, ``y0 + (row + 0.5) p``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


def _sample(
    image: np.ndarray, xs: np.ndarray, ys: np.ndarray, x0: float, y0: float, p: float
) -> np.ndarray:
    """Bilinear, NaN-aware samples of a map at stage positions (NaN outside the
    map or where the neighbours are all NaN; NaN neighbours are left out of
    the weights)."""
    from scipy import ndimage

    z = np.asarray(image, dtype=float)
    ok = np.isfinite(z)
    col = (np.asarray(xs) - x0) / p - 0.5
    row = (np.asarray(ys) - y0) / p - 0.5
    coords = np.array([row.ravel(), col.ravel()])
    num = ndimage.map_coordinates(np.where(ok, z, 0.0), coords, order=1, mode="nearest")
    den = ndimage.map_coordinates(ok.astype(float), coords, order=1, mode="nearest")
    inside = (
        (row.ravel() >= -0.5)
        & (row.ravel() <= z.shape[0] - 0.5)
        & (col.ravel() >= -0.5)
        & (col.ravel() <= z.shape[1] - 0.5)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((den > 1e-6) & inside, num / den, np.nan)
    return out.reshape(np.shape(xs))


def line_profile(
    image: np.ndarray,
    start_um: tuple[float, float],
    end_um: tuple[float, float],
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    width_um: float = 0.0,
    step_um: float | None = None,
) -> dict[str, np.ndarray]:
    """Values along the line from ``start_um`` to ``end_um`` (x, y in um).

    Samples every ``step_um`` (default half a pitch) by bilinear
    interpolation; with ``width_um > 0`` the profile is the mean over
    parallel lines spread across that width (every half pitch), and ``std``
    their spread. Returns ``distance_um`` (from the start), ``value``,
    ``std``, ``n`` (lines that had a value), ``x_um``, ``y_um``.
    """
    x1, y1 = (float(v) for v in start_um)
    x2, y2 = (float(v) for v in end_um)
    L = math.hypot(x2 - x1, y2 - y1)
    if not L > 0:
        raise ValueError("a line profile needs two distinct end points")
    step = step_um or pitch_um / 2
    d = np.linspace(0.0, L, max(math.ceil(L / step) + 1, 2))
    ux, uy = (x2 - x1) / L, (y2 - y1) / L
    nxv, nyv = -uy, ux
    if width_um > 0:
        k = max(math.ceil(width_um / (pitch_um / 2)), 1)
        offs = np.linspace(-width_um / 2, width_um / 2, k + 1)
    else:
        offs = np.zeros(1)
    xs = x1 + d[None, :] * ux + offs[:, None] * nxv
    ys = y1 + d[None, :] * uy + offs[:, None] * nyv
    vals = _sample(image, xs, ys, x0_um, y0_um, pitch_um)
    n = np.isfinite(vals).sum(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        mean = np.nanmean(vals, axis=0)
        std = np.nanstd(vals, axis=0, ddof=1) if vals.shape[0] > 1 else np.zeros_like(mean)
    return {
        "distance_um": d,
        "value": np.where(n > 0, mean, np.nan),
        "std": np.where(n > 1, std, np.nan),
        "n": n,
        "x_um": x1 + d * ux,
        "y_um": y1 + d * uy,
    }


# ------------------------------------------------------------ grain boundary
def footprint_resolution(
    footprint_radius_um: float,
    pitch_um: float,
    *,
    relative_noise: float | None = None,
    gb_conductivity_factor: float = 0.0,
    series_fraction: float = 1.0,
    snr: float = 3.0,
) -> dict[str, float]:
    """What a droplet of footprint radius ``a`` can resolve, um.

    - ``resolution_um``: the narrowest feature the map shows as a feature of
      its own: the footprint diameter ``2a`` (the map is the sample averaged
      over the footprint) or twice the pitch (Nyquist), whichever is larger;
    - ``hit_fraction``: the chance that a landing sits close enough (within
      ``a``) to a thin line for it to be under the footprint:
      ``min(1, 2a / pitch)`` per row crossing the line;
    - ``min_detectable_width_nm`` (with ``relative_noise``, the pixel noise
      over the pixel value): the narrowest thin line of conductivity factor
      ``gb_conductivity_factor`` (sigma_GB / sigma_bulk) that still lowers a
      centred landing by ``snr`` x the noise. A strip of width ``w`` through
      the middle of the footprint covers ``2 w / (pi a)`` of its area, and
      the conductances of the parts add, so the spreading conductance drops
      by ``(1 - f) 2 w / (pi a)``; only ``series_fraction`` (``R_spreading /
      R_total``) of that reaches the current.
    """
    a = float(footprint_radius_um)
    p = float(pitch_um)
    if not a > 0 or not p > 0:
        raise ValueError("footprint radius and pitch must be > 0")
    out = {
        "footprint_diameter_um": 2 * a,
        "sampling_limit_um": 2 * p,
        "resolution_um": max(2 * a, 2 * p),
        "hit_fraction": min(1.0, 2 * a / p),
    }
    if relative_noise is not None:
        drop_per_um = (1 - gb_conductivity_factor) * 2 / (math.pi * a) * max(series_fraction, 1e-12)
        out["min_detectable_width_nm"] = float(snr * relative_noise / drop_per_um * 1e3)
    return out


def boundary_contrast(
    image: np.ndarray,
    start_um: tuple[float, float],
    end_um: tuple[float, float],
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    width_um: float = 0.0,
    position_um: float | None = None,
    window_um: float | None = None,
    footprint_radius_um: float | None = None,
    kind: str = "dip",
) -> dict[str, Any]:
    """The profile across a (grain) boundary and its contrast against the noise.

    The profile (:func:`line_profile`) is split into a window of
    ``window_um`` around the boundary (default: the larger of the footprint
    diameter and 3 pitches) and the rest; a straight line fitted to the rest
    is the baseline, its rms residual the noise. The boundary is at
    ``position_um`` along the line or, if None, at the profile's lowest
    (``kind="dip"``; ``"peak"``: highest) point after removing the baseline.

    Returns ``profile`` (the line profile), ``position_um``, ``depth``
    (baseline minus value at the boundary, map units; negative for a peak
    with ``kind="dip"``), ``relative_depth`` (over the baseline there),
    ``noise`` (rms), ``contrast_to_noise`` (depth / noise), ``significant``
    (contrast_to_noise >= 3), ``fwhm_um`` (width of the dip at half depth,
    NaN if not resolved) and, with ``footprint_radius_um``, ``resolution``
    (:func:`footprint_resolution` with the measured relative noise).
    """
    if kind not in ("dip", "peak"):
        raise ValueError(f"kind must be 'dip' or 'peak', not {kind!r}")
    prof = line_profile(
        image,
        start_um,
        end_um,
        x0_um=x0_um,
        y0_um=y0_um,
        pitch_um=pitch_um,
        width_um=width_um,
        step_um=pitch_um / 4,
    )
    d, v = prof["distance_um"], prof["value"]
    ok = np.isfinite(v)
    if ok.sum() < 8:
        raise ValueError("the line crosses too few measured pixels")
    sign = 1.0 if kind == "dip" else -1.0
    win = window_um or max(2 * (footprint_radius_um or 0.0), 3 * pitch_um)
    if position_um is None:
        # baseline over the whole line first, then its extreme point
        c = np.polyfit(d[ok], v[ok], 1)
        r = v - np.polyval(c, d)
        position_um = float(d[ok][np.argmax(-sign * r[ok])])
    inwin = np.abs(d - position_um) <= win / 2
    outside = ok & ~inwin
    if outside.sum() < 4:
        raise ValueError(
            f"too little of the line lies outside the {win:g} um window for a baseline; draw a longer line"
        )
    c = np.polyfit(d[outside], v[outside], 1)
    base = np.polyval(c, d)
    # noise: the scatter of the baseline part; the profile is sampled at
    # pitch/4, so neighbouring samples share pixels: use one sample per pitch
    every = max(round(pitch_um / (d[1] - d[0])), 1)
    res_out = (v - base)[outside][::every]
    noise = float(np.sqrt(np.mean(res_out**2))) if res_out.size > 1 else float("nan")
    k = int(np.argmin(np.abs(d - position_um)))
    # the boundary value: the extreme within half a pitch of the position
    near = ok & (np.abs(d - position_um) <= pitch_um / 2)
    val = float(np.min(sign * v[near]) * sign) if near.any() else float(v[k])
    depth = float(sign * (base[k] - val))
    rel = depth / abs(base[k]) if base[k] != 0 else float("nan")
    cnr = depth / noise if noise > 0 else float("inf")
    # full width at half depth, inside the window
    fwhm = float("nan")
    if depth > 0:
        half = sign * (base - v) >= depth / 2
        idx = np.flatnonzero(half & inwin & ok)
        if idx.size:
            # the contiguous run containing k
            runs = np.split(idx, np.flatnonzero(np.diff(idx) != 1) + 1)
            run = next((r for r in runs if r[0] <= k <= r[-1]), None)
            if run is not None:
                fwhm = float(d[run[-1]] - d[run[0]] + (d[1] - d[0]))
    out: dict[str, Any] = {
        "profile": prof,
        "baseline": base,
        "position_um": float(position_um),
        "depth": depth,
        "relative_depth": rel,
        "noise": noise,
        "contrast_to_noise": cnr,
        "significant": bool(cnr >= 3.0),
        "fwhm_um": fwhm,
        "window_um": win,
    }
    if footprint_radius_um is not None:
        rel_noise = noise / abs(base[k]) if base[k] != 0 else float("nan")
        out["resolution"] = footprint_resolution(
            footprint_radius_um, pitch_um, relative_noise=rel_noise
        )
    return out
