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


class ContactWatch:
    """The contact detector on a stream of current samples, block by block.

    :meth:`feed` takes the next block (A) and returns the index (counted from
    the stream's first sample) of the first sample of the first run of
    ``confirm_samples + 1`` fired samples, once that run is complete, else
    None. Runs and the baseline carry over block boundaries: how a stream is
    cut into blocks does not change the answer."""

    def __init__(
        self, threshold_A: float, mode: str, confirm_samples: int, baseline_samples: int = 50
    ) -> None:
        if mode not in DETECT_MODES:
            raise ValueError(f"detection mode must be one of {DETECT_MODES}, not {mode!r}")
        self.threshold_A = float(threshold_A)
        self.mode = mode
        self.run = int(confirm_samples) + 1
        self.baseline_samples = int(baseline_samples)
        self._history = np.empty(0)
        self._streak = 0  # fired samples at the end of what was fed
        self._n = 0  # samples fed

    def feed(self, i: np.ndarray) -> int | None:
        i = np.asarray(i, dtype=float)
        if i.size == 0:
            return None
        hist = np.concatenate((self._history, i))
        fired = contact_fired(hist, self.threshold_A, self.mode, self.baseline_samples)[
            self._history.size :
        ]
        self._history = hist[-self.baseline_samples :] if self.baseline_samples else hist[:0]
        start, self._n = self._n, self._n + i.size
        carry = min(self._streak, self.run - 1)
        seq = np.concatenate((np.ones(carry, dtype=bool), fired))
        if seq.size >= self.run:
            hits = np.flatnonzero(
                np.lib.stride_tricks.sliding_window_view(seq, self.run).all(axis=1)
            )
            if hits.size:
                return start + int(hits[0]) - carry
        if fired.all():
            self._streak += fired.size
        else:
            self._streak = fired.size - 1 - int(np.flatnonzero(~fired)[-1])
        return None
