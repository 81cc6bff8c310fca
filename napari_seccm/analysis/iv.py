"""Linear I-V fits, vectorized over any number of pixels (numpy only)."""

from __future__ import annotations

import numpy as np


def fit_iv(potential_V: np.ndarray, current_A: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares line ``I = G E + I0`` along the last axis, for every pixel.

    ``potential_V`` broadcasts against ``current_A`` (shape ``(..., n)``); NaN
    samples are ignored. Returns arrays of shape ``(...)``: ``conductance_S``
    (G), ``offset_A`` (I0), ``r2``, ``residual_rms_A``, ``resistance_ohm``
    (1/G) and ``n`` (samples used). Pixels with fewer than 2 valid samples or
    no spread in potential give NaN, never 0.
    """
    E = np.asarray(potential_V, dtype=float)
    I = np.asarray(current_A, dtype=float)
    E, I = np.broadcast_arrays(E, I)
    ok = np.isfinite(E) & np.isfinite(I)
    n = ok.sum(axis=-1)
    Ez = np.where(ok, E, 0.0)
    Iz = np.where(ok, I, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        me = Ez.sum(-1) / n
        mi = Iz.sum(-1) / n
        de = np.where(ok, E - me[..., None], 0.0)
        di = np.where(ok, I - mi[..., None], 0.0)
        sxx = (de * de).sum(-1)
        sxy = (de * di).sum(-1)
        syy = (di * di).sum(-1)
        g = sxy / sxx
        i0 = mi - g * me
        ss_res = np.maximum(syy - g * sxy, 0.0)
        r2 = 1.0 - ss_res / syy
        rms = np.sqrt(ss_res / n)
        bad = (n < 2) | ~(sxx > 0)
        out = {
            "conductance_S": np.where(bad, np.nan, g),
            "offset_A": np.where(bad, np.nan, i0),
            "r2": np.where(bad, np.nan, r2),
            "residual_rms_A": np.where(bad, np.nan, rms),
            "n": n,
        }
        out["resistance_ohm"] = 1.0 / out["conductance_S"]
    return out
