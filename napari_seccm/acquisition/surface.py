"""Prediction of the next landing height from the previous landings.

A least-squares plane ``z = c0 + c1 x + c2 y`` through all contact heights so
far, updated in O(1) per landing from running sums (a million-point scan costs
the same per point as a small one). Along a direction in which the landings
have no spread yet (the first row of a raster) the slope is taken as zero.
Before ``min_landings`` landings it predicts the last height; with no landing
it predicts nothing (the engine then searches for the surface).

Plain Python floats: on 3 x 3 sums numpy's call overhead would dominate.
"""

from __future__ import annotations

import math

import numpy as np


class SurfaceModel:
    def __init__(self, model: str = "plane", min_landings: int = 3) -> None:
        self.model = model
        self.min_landings = min_landings
        self.n = 0
        self._sx = self._sy = self._sz = 0.0
        self._sxx = self._sxy = self._syy = 0.0
        self._sxz = self._syz = self._szz = 0.0
        self.last: float | None = None
        self._coef: tuple[float, float, float] | None = None
        self._rms: float | None = None

    def add(self, x: float, y: float, z: float) -> None:
        if not math.isfinite(z):
            return
        self.n += 1
        self._sx += x
        self._sy += y
        self._sz += z
        self._sxx += x * x
        self._sxy += x * y
        self._syy += y * y
        self._sxz += x * z
        self._syz += y * z
        self._szz += z * z
        self.last = z
        self._coef = None
        self._rms = None

    def add_many(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        ok = np.isfinite(z)
        for xi, yi, zi in zip(x[ok], y[ok], z[ok], strict=True):
            self.add(float(xi), float(yi), float(zi))

    def coefficients(self) -> tuple[float, float, float] | None:
        """(c0, c1, c2) of the plane, or None while it is not trusted yet."""
        if self.model != "plane" or self.n < max(self.min_landings, 3):
            return None
        if self._coef is None:
            n = self.n
            mx, my, mz = self._sx / n, self._sy / n, self._sz / n
            cxx = self._sxx / n - mx * mx
            cxy = self._sxy / n - mx * my
            cyy = self._syy / n - my * my
            cxz = self._sxz / n - mx * mz
            cyz = self._syz / n - my * mz
            b1, b2 = _pinv2_solve(cxx, cxy, cyy, cxz, cyz)
            self._coef = (mz - b1 * mx - b2 * my, b1, b2)
        return self._coef

    def min_spread_um(self) -> float:
        """Spread (rms, um) of the landings along their narrowest direction:
        about 0 while they lie on a line, when the plane's slope across that
        line is unknown (the fit sets it to 0)."""
        if self.n < 2:
            return 0.0
        n = self.n
        mx, my = self._sx / n, self._sy / n
        cxx = self._sxx / n - mx * mx
        cxy = self._sxy / n - mx * my
        cyy = self._syy / n - my * my
        tr, det = cxx + cyy, cxx * cyy - cxy * cxy
        lo = tr / 2 - math.sqrt(max(tr * tr / 4 - det, 0.0))
        return math.sqrt(max(lo, 0.0))

    def predict(self, x: float, y: float) -> float | None:
        """Predicted contact height at (x, y), um, or None with no landing yet."""
        c = self.coefficients()
        if c is None:
            return self.last
        return c[0] + c[1] * x + c[2] * y

    @property
    def rms_um(self) -> float:
        """Rms residual of the plane fit, um (0 until the plane is fitted)."""
        c = self.coefficients()
        if c is None or self.n <= 3:
            return 0.0
        if self._rms is None:
            c0, c1, c2 = c
            # sum (z - c0 - c1 x - c2 y)^2 expanded in the running sums
            ss = (
                self._szz
                + c0 * c0 * self.n
                + c1 * c1 * self._sxx
                + c2 * c2 * self._syy
                - 2 * (c0 * self._sz + c1 * self._sxz + c2 * self._syz)
                + 2 * (c0 * c1 * self._sx + c0 * c2 * self._sy + c1 * c2 * self._sxy)
            )
            self._rms = math.sqrt(max(ss, 0.0) / (self.n - 3))
        return self._rms


def _pinv2_solve(
    a: float, b: float, e: float, d0: float, d1: float, rcond: float = 1e-4
) -> tuple[float, float]:
    """``pinv([[a, b], [b, e]]) @ [d0, d1]``, dropping eigenvalues below rcond x the largest."""
    tr, det = a + e, a * e - b * b
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, tr / 2 - disc
    if l1 <= 0:
        return 0.0, 0.0
    if l2 > rcond * l1:
        return (e * d0 - b * d1) / det, (a * d1 - b * d0) / det
    # rank 1: solve along the principal direction only
    if abs(b) > 1e-300:
        vx, vy = b, l1 - a
    else:
        vx, vy = (1.0, 0.0) if a >= e else (0.0, 1.0)
    norm = math.hypot(vx, vy)
    vx, vy = vx / norm, vy / norm
    proj = (vx * d0 + vy * d1) / l1
    return vx * proj, vy * proj
