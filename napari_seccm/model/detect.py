"""The contact detector of the approach, shared by every controller that runs
one (the simulated instrument's loop and the software approach of a stage
whose controller cannot watch the current itself)."""

from __future__ import annotations

import numpy as np

#: absolute: |I| >= threshold (or I <= threshold for a negative one); rise:
#: I - baseline >= threshold; either: |I - baseline| >= threshold
DETECT_MODES = ("absolute", "rise", "either")


def contact_fired(
    i: np.ndarray, threshold_A: float, mode: str, baseline_samples: int
) -> np.ndarray:
    """Per sample of ``i`` (A): does the detector fire there? The baseline is
    the running mean of the previous ``baseline_samples`` samples (causal; the
    first sample is its own)."""
    if mode not in DETECT_MODES:
        raise ValueError(f"detection mode must be one of {DETECT_MODES}, not {mode!r}")
    i = np.asarray(i, dtype=float)
    thr = float(threshold_A)
    if mode == "absolute":
        return np.abs(i) >= abs(thr) if thr >= 0 else i <= thr
    c = np.concatenate(([0.0], np.cumsum(i)))
    idx = np.arange(i.size)
    lo = np.maximum(idx - baseline_samples, 0)
    cnt = np.maximum(idx - lo, 1)
    base = (c[idx] - c[lo]) / cnt
    if i.size:
        base[0] = i[0]
    d = i - base
    return d >= thr if mode == "rise" else np.abs(d) >= abs(thr)
