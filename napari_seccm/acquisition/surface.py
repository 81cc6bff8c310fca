"""Prediction of the next landing height from the previous landings.

A least-squares plane ``z = c0 + c1 x + c2 y`` through all contact heights so
far, updated in O(1) per landing from running sums (a million-point scan costs
the same per point as a small one). Before ``min_landings`` landings it
predicts the last height; with no landing it predicts nothing (the engine then
searches for the surface).
"""

from __future__ import annotations

import math

import numpy as np


class SurfaceModel:
    def __init__(self, model: str = "plane", min_landings: int = 3) -> None:
        self.model = model
        self.min_landings = min_landings
        self._S = np.zeros((3, 3))  # sum of [1, x, y]^T [1, x, y]
        self._b = np.zeros(3)  # sum of [1, x, y] z
        self._zz = 0.0
        self.n = 0
        self.last: float | None = None
        self._coef: np.ndarray | None = None

    def add(self, x: float, y: float, z: float) -> None:
        if not math.isfinite(z):
            return
        v = np.array([1.0, x, y])
        self._S += np.outer(v, v)
        self._b += v * z
        self._zz += z * z
        self.n += 1
        self.last = z
        self._coef = None

    def add_many(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> None:
        ok = np.isfinite(z)
        for xi, yi, zi in zip(x[ok], y[ok], z[ok], strict=True):
            self.add(float(xi), float(yi), float(zi))

    def coefficients(self) -> np.ndarray | None:
        if self.model != "plane" or self.n < max(self.min_landings, 3):
            return None
        if self._coef is None:
            # centred normal equations; along a direction with no spread (e.g.
            # the first row of a raster) the slope is taken as zero (pinv)
            n = self.n
            mx, my = self._S[0, 1] / n, self._S[0, 2] / n
            mz = self._b[0] / n
            cov = self._S[1:, 1:] / n - np.outer([mx, my], [mx, my])
            cz = self._b[1:] / n - mz * np.array([mx, my])
            slopes = _pinv2_solve(cov, cz)
            self._coef = np.array([mz - slopes @ [mx, my], slopes[0], slopes[1]])
        return self._coef

    def predict(self, x: float, y: float) -> float | None:
        """Predicted contact height at (x, y), um, or None with no landing yet."""
        c = self.coefficients()
        if c is None:
            return self.last
        return float(c[0] + c[1] * x + c[2] * y)

    @property
    def rms_um(self) -> float:
        """Rms residual of the plane fit, um (0 until the plane is fitted)."""
        c = self.coefficients()
        if c is None or self.n <= 3:
            return 0.0
        # sum (z - v.c)^2 = zz - 2 c.b + c.S.c
        ss = self._zz - 2 * c @ self._b + c @ self._S @ c
        return math.sqrt(max(ss, 0.0) / (self.n - 3))


def _pinv2_solve(c: np.ndarray, d: np.ndarray, rcond: float = 1e-4) -> np.ndarray:
    """``pinv(c) @ d`` for a symmetric 2x2 ``c``, dropping tiny eigenvalues."""
    a, b, e = c[0, 0], c[0, 1], c[1, 1]
    tr, det = a + e, a * e - b * b
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, tr / 2 - disc
    if l1 <= 0:
        return np.zeros(2)
    if l2 > rcond * l1:
        return np.array([e * d[0] - b * d[1], a * d[1] - b * d[0]]) / det
    # rank 1: solve along the principal direction only
    v = np.array([b, l1 - a]) if abs(b) > 1e-300 else (np.array([1.0, 0.0]) if a >= e else np.array([0.0, 1.0]))
    v = v / np.linalg.norm(v)
    return v * (v @ d) / l1
