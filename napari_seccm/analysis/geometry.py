"""Map geometry: pixel centres in stage um, and plane (tilt) fits.

Maps are indexed ``[row, col]``; pixel ``(row, col)`` is centred at
``x = x0 + (col + 0.5) * pitch``, ``y = y0 + (row + 0.5) * pitch`` (um, stage
frame; rows are y).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def grid_params(grid: Any) -> tuple[float, float, float]:
    """``(x0_um, y0_um, pitch_um)`` of a MapGrid, a dict or a 3-tuple."""
    if isinstance(grid, dict):
        return float(grid["x0_um"]), float(grid["y0_um"]), float(grid["pitch_um"])
    if isinstance(grid, (tuple, list)):
        x0, y0, p = grid
        return float(x0), float(y0), float(p)
    return float(grid.x0_um), float(grid.y0_um), float(grid.pitch_um)


def pixel_centers(
    shape: tuple[int, int], x0_um: float, y0_um: float, pitch_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(x_um, y_um)`` arrays of the map's shape: the pixel centres."""
    ny, nx = shape
    x = x0_um + (np.arange(nx) + 0.5) * pitch_um
    y = y0_um + (np.arange(ny) + 0.5) * pitch_um
    return np.broadcast_to(x[None, :], shape), np.broadcast_to(y[:, None], shape)


def map_center_um(
    shape: tuple[int, int], x0_um: float, y0_um: float, pitch_um: float
) -> tuple[float, float]:
    ny, nx = shape
    return x0_um + nx * pitch_um / 2, y0_um + ny * pitch_um / 2


def plane_fit(
    image: np.ndarray,
    *,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    pitch_um: float = 1.0,
    mask: np.ndarray | None = None,
    robust: bool = True,
    extra: np.ndarray | None = None,
) -> dict[str, Any]:
    """Least-squares plane ``z = offset + slope_x (x - xc) + slope_y (y - yc)``.

    ``(xc, yc)`` is the map centre, so ``offset`` is the plane's value there.
    NaN pixels (and pixels where ``mask`` is False) are left out; ``robust``
    repeats the fit without pixels beyond 3.5 robust standard deviations
    (landing outliers, debris). ``extra``: an optional label image (0/1)
    fitted jointly as a step ``step * label``, so that a two-level pattern
    (domains) does not tilt the plane.

    Returns ``offset``, ``slope_x_per_um``, ``slope_y_per_um``, ``step``
    (0 without ``extra``), ``plane`` (the plane, at the map's shape, centred
    value ``offset``), ``residual`` (image - plane - step * label), ``used``
    (pixels used) and ``center_um`` (xc, yc).
    """
    z = np.asarray(image, dtype=float)
    x, y = pixel_centers(z.shape, x0_um, y0_um, pitch_um)
    xc, yc = map_center_um(z.shape, x0_um, y0_um, pitch_um)
    ok = np.isfinite(z)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    lab = None
    if extra is not None:
        lab = np.asarray(extra, dtype=float)
        ok &= np.isfinite(lab) & (lab >= 0)
    ncoef = 3 + (lab is not None)
    if ok.sum() < ncoef:
        raise ValueError(f"a plane fit needs at least {ncoef} valid pixels, got {int(ok.sum())}")
    cols = [np.ones(z.shape), x - xc, y - yc]
    if lab is not None:
        cols.append(np.where(ok, lab, 0.0))
    A_all = np.stack([c.ravel() for c in cols], axis=1)
    zr = z.ravel()
    use = ok.ravel().copy()
    coef = np.zeros(ncoef)
    for _ in range(3 if robust else 1):
        coef, *_ = np.linalg.lstsq(A_all[use], zr[use], rcond=None)
        if not robust:
            break
        res = zr - A_all @ coef
        r_ok = res[use]
        mad = np.median(np.abs(r_ok - np.median(r_ok))) * 1.4826
        if not mad > 0:
            break
        new = ok.ravel() & (np.abs(res) <= 3.5 * mad)
        if new.sum() < ncoef or np.array_equal(new, use):
            break
        use = new
    plane = (coef[0] + coef[1] * (x - xc) + coef[2] * (y - yc)).reshape(z.shape)
    step = float(coef[3]) if lab is not None else 0.0
    resid = z - plane
    if lab is not None:
        resid = resid - step * np.where(np.isfinite(lab) & (lab >= 0), lab, np.nan)
    return {
        "offset": float(coef[0]),
        "slope_x_per_um": float(coef[1]),
        "slope_y_per_um": float(coef[2]),
        "step": step,
        "plane": plane,
        "residual": np.where(np.isfinite(z), resid, np.nan),
        "used": use.reshape(z.shape),
        "center_um": (xc, yc),
    }


def remove_plane(
    image: np.ndarray,
    *,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    pitch_um: float = 1.0,
    keep_level: bool = False,
    robust: bool = True,
) -> np.ndarray:
    """The image minus its fitted plane (``keep_level``: plus the plane's value
    at the map centre, so the mean level stays and only the tilt goes)."""
    fit = plane_fit(image, x0_um=x0_um, y0_um=y0_um, pitch_um=pitch_um, robust=robust)
    out = np.asarray(image, dtype=float) - fit["plane"]
    return out + fit["offset"] if keep_level else out


# ------------------------------------------------------ smooth backgrounds
def default_x_degree(nx: int) -> int:
    """Degree of the extra x-only terms of :func:`smooth_basis`: up to 7, at
    most one per 6 columns (the film's collection term depends on x only:
    the distance to the Au pad's edge, which runs along y)."""
    return int(min(7, max(3, nx // 6)))


def smooth_basis(
    shape: tuple[int, int],
    *,
    degree: int = 3,
    x_degree: int | None = None,
    order: np.ndarray | None = None,
    drift_degree: int = 3,
) -> np.ndarray:
    """Columns of a smooth background over a map, shape ``(ny * nx, k)``.

    - Legendre products ``P_i(x) P_j(y)`` with ``i + j <= degree`` (x, y
      scaled to [-1, 1] over the map): tilt and curvature;
    - ``P_k(x)`` for ``degree < k <= x_degree`` (default
      :func:`default_x_degree`): the film's collection term, a smooth
      function of the distance to the Au pad (x only) that bends more than a
      cubic near the pad;
    - with ``order`` (each pixel's place in the acquisition order, any
      increasing numbers, NaN for pixels not measured): ``P_k(t)`` for
      ``1 <= k <= drift_degree`` of the scaled acquisition rank ``t``: a slow
      drift in time (the back contact charging up). In a serpentine map its
      within-row part alternates from row to row, which a function of (x, y)
      cannot follow; its slow part is shared with the y terms (either may
      take it: only the sum matters).
    """
    from numpy.polynomial import legendre

    ny, nx = shape
    xd = default_x_degree(nx) if x_degree is None else int(x_degree)
    xs = (2 * (np.arange(nx) + 0.5) / nx) - 1.0
    ys = (2 * (np.arange(ny) + 0.5) / ny) - 1.0
    Vx = legendre.legvander(xs, max(degree, xd))  # (nx, d+1)
    Vy = legendre.legvander(ys, degree)
    cols = []
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            cols.append((Vy[:, j][:, None] * Vx[:, i][None, :]).ravel())
    for k in range(degree + 1, xd + 1):
        cols.append(np.broadcast_to(Vx[:, k][None, :], shape).ravel())
    if order is not None and drift_degree > 0:
        o = np.asarray(order, dtype=float).ravel()
        fin = np.isfinite(o)
        t = np.zeros(o.size)
        if fin.sum() > 1:
            rank = np.empty(int(fin.sum()))
            rank[np.argsort(o[fin], kind="stable")] = np.arange(fin.sum())
            t[fin] = 2 * rank / (fin.sum() - 1) - 1.0
        Vt = legendre.legvander(t, drift_degree)
        for k in range(1, drift_degree + 1):
            cols.append(np.where(fin, Vt[:, k], 0.0))
    return np.stack(cols, axis=1)


def orthonormal_columns(A: np.ndarray, rtol: float = 1e-9) -> np.ndarray:
    """An orthonormal basis of the span of ``A``'s columns (SVD; columns that
    are (nearly) linear combinations of others are dropped)."""
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    keep = s > rtol * (s[0] if s.size else 1.0)
    return U[:, keep]
