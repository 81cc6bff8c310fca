"""Linear I-V fits, vectorized over any number of pixels (numpy only).

:func:`fit_iv` fits ``I = G E + I0`` along the last axis of an array of
traces, block by block (flat memory, float64 inside a block only, the cores
shared by threads). :func:`program_samples` and :func:`iv_sample_mask`
say which samples of a plan's potential program belong in a fit (the settled
part of each staircase step, one branch of a sweep, a potential range).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..acquisition.plan import ScanPlan

#: the keys of a fit, all arrays of the pixels' shape
FIT_KEYS = (
    "conductance_S",
    "offset_A",
    "r2",
    "residual_rms_A",
    "conductance_err_S",
    "resistance_ohm",
    "n",
)

_BLOCK_ROWS = 4096


def _fit_block_fast(E: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, ...]:
    """A block without NaN: ``E`` shared (1-D) or per row (2-D).

    float64 copies of the block only, centred in place, sums by ``einsum``
    (no BLAS call: a threaded BLAS matrix-vector product is slower here and
    fights the block threads for the cores).
    """
    rows, m = I.shape
    Ib = I.astype(np.float64)
    mi = np.einsum("ij->i", Ib) / m
    Ib -= mi[:, None]
    if E.ndim == 1:
        me = E.mean()
        e = E - me
        sxx = float(e @ e)
        sxy = np.einsum("ij,j->i", Ib, e)
        me = np.full(rows, me)
        sxx = np.full(rows, sxx)
    else:
        Eb = E.astype(np.float64)
        me = np.einsum("ij->i", Eb) / m
        Eb -= me[:, None]
        sxx = np.einsum("ij,ij->i", Eb, Eb)
        sxy = np.einsum("ij,ij->i", Eb, Ib)
    syy = np.einsum("ij,ij->i", Ib, Ib)
    n = np.full(rows, m, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = np.where(sxx > 0, sxy / sxx, np.nan)
    return _finish(g, mi, me, sxx, sxy, syy, n)


def _fit_block_masked(E: np.ndarray, I: np.ndarray) -> tuple[np.ndarray, ...]:
    """General block: per-row potentials and/or NaN samples."""
    E, I = np.broadcast_arrays(E, I)
    ok = np.isfinite(E) & np.isfinite(I)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        Ez = np.where(ok, E, 0.0).astype(np.float64)
        Iz = np.where(ok, I, 0.0).astype(np.float64)
        me = Ez.sum(-1) / n
        mi = Iz.sum(-1) / n
        Ez -= me[:, None]
        Iz -= mi[:, None]
        Ez[~ok] = 0.0
        Iz[~ok] = 0.0
        sxx = np.einsum("ij,ij->i", Ez, Ez)
        sxy = np.einsum("ij,ij->i", Ez, Iz)
        syy = np.einsum("ij,ij->i", Iz, Iz)
        g = sxy / sxx
        g = np.where((n >= 2) & (sxx > 0), g, np.nan)
    return _finish(g, mi, me, sxx, sxy, syy, n)


def _finish(g, mi, me, sxx, sxy, syy, n) -> tuple[np.ndarray, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        i0 = mi - g * me
        ss_res = np.maximum(syy - g * sxy, 0.0)
        r2 = np.where(syy > 0, 1.0 - ss_res / syy, np.nan)  # flat: undefined
        rms = np.sqrt(ss_res / n)
        dof = n - 2
        g_err = np.where(dof > 0, np.sqrt(ss_res / np.maximum(dof, 1) / sxx), np.nan)
        bad = ~np.isfinite(g)
        i0 = np.where(bad, np.nan, i0)
        r2 = np.where(bad, np.nan, r2)
        rms = np.where(bad, np.nan, rms)
        g_err = np.where(bad, np.nan, g_err)
    return g, i0, r2, rms, g_err, n


def fit_iv(
    potential_V: np.ndarray,
    current_A: np.ndarray,
    *,
    block_rows: int = _BLOCK_ROWS,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Least-squares line ``I = G E + I0`` along the last axis, for every pixel.

    ``potential_V`` broadcasts against ``current_A`` (shape ``(..., n)``); NaN
    samples are ignored. Returns arrays of shape ``(...)``: ``conductance_S``
    (G), ``offset_A`` (I0), ``r2``, ``residual_rms_A``, ``conductance_err_S``
    (standard error of G), ``resistance_ohm`` (1/G) and ``n`` (samples used).
    Pixels with fewer than 2 valid samples or no spread in potential give NaN,
    never 0.

    Work goes block by block (``block_rows`` pixels, float64 inside a block
    only), so memory stays flat; a potential shared by every pixel (1-D) and
    NaN-free blocks take a fast path. ``workers`` threads (default: the CPU
    count) share the blocks.
    """
    E = np.asarray(potential_V)
    I = np.asarray(current_A)
    if not np.issubdtype(E.dtype, np.floating):
        E = E.astype(np.float64)
    if not np.issubdtype(I.dtype, np.floating):
        I = I.astype(np.float64)
    shape = np.broadcast_shapes(E.shape, I.shape)
    if len(shape) == 0:
        raise ValueError("fit_iv needs at least one axis of samples")
    m = shape[-1]
    lead = shape[:-1]
    npix = int(np.prod(lead, dtype=np.int64))
    I2 = np.broadcast_to(I, shape).reshape(npix, m)
    shared = E.ndim <= 1
    E1 = np.broadcast_to(E, (m,)).astype(np.float64) if shared else None
    E2 = None if shared else np.broadcast_to(E, shape).reshape(npix, m)
    shared_ok = shared and bool(np.isfinite(E1).all())

    outs = [np.empty(npix) for _ in range(5)] + [np.empty(npix, dtype=np.int64)]

    def run(start: int) -> None:
        stop = min(start + block_rows, npix)
        Ib = I2[start:stop]
        Eb = E1 if shared else E2[start:stop]
        if (shared_ok or (not shared and np.isfinite(Eb).all())) and np.isfinite(Ib).all():
            res = _fit_block_fast(Eb, Ib)
        else:
            res = _fit_block_masked(Eb[None, :] if shared else Eb, Ib)
        for o, r in zip(outs, res, strict=True):
            o[start:stop] = r

    starts = range(0, npix, max(int(block_rows), 1))
    nworkers = workers if workers is not None else (os.cpu_count() or 1)
    if nworkers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(max_workers=min(nworkers, len(starts))) as ex:
            list(ex.map(run, starts))
    else:
        for s in starts:
            run(s)
    g, i0, r2, rms, g_err, n = (o.reshape(lead) for o in outs)
    with np.errstate(divide="ignore"):
        resistance = 1.0 / g
    return {
        "conductance_S": g,
        "offset_A": i0,
        "r2": r2,
        "residual_rms_A": rms,
        "conductance_err_S": g_err,
        "resistance_ohm": resistance,
        "n": n,
    }


# ------------------------------------------------------- the potential program
def program_samples(plan: ScanPlan) -> dict[str, np.ndarray]:
    """Per sample of a plan's program: ``time_s``, the programmed
    ``potential_V``, the ``segment`` index, the ``fraction`` (0..1) of the way
    through its segment, ``segment_time_s`` (from the segment's start), ``hold`` (True on hold segments, False on ramps),
    ``direction`` (+1 rising ramp, -1 falling, 0 hold) and ``pre_hold`` (the
    settling hold before the program, ``plan.hold_s``).

    Same sample rounding as the potentiostat's waveform (``samples_per_point``).
    """
    fs = plan.potentiostat.sample_rate_Hz
    segs = plan.waveform_segments()
    pot, seg_i, frac, hold, direc, since = [], [], [], [], [], []
    carry = 0.0
    for k, seg in enumerate(segs):
        exact = seg["t"] * fs + carry
        n = round(exact)
        carry = exact - n
        if n <= 0:
            continue
        j = np.arange(n)
        if "hold" in seg:
            pot.append(np.full(n, float(seg["hold"])))
            hold.append(np.ones(n, bool))
            direc.append(np.zeros(n, np.int8))
        else:
            e0, e1 = (float(v) for v in seg["ramp"])
            pot.append(e0 + (e1 - e0) * (j + 0.5) / n)
            hold.append(np.zeros(n, bool))
            direc.append(np.full(n, np.sign(e1 - e0), np.int8))
        seg_i.append(np.full(n, k))
        frac.append((j + 0.5) / n)
        since.append(j / fs)
    if not pot:
        z = np.empty(0)
        return {
            "time_s": z,
            "potential_V": z,
            "segment": z.astype(int),
            "fraction": z,
            "segment_time_s": z,
            "hold": z.astype(bool),
            "direction": z.astype(np.int8),
            "pre_hold": z.astype(bool),
        }
    seg_arr = np.concatenate(seg_i)
    pre = (seg_arr == 0) if plan.hold_s > 0 else np.zeros(seg_arr.size, bool)
    n_tot = seg_arr.size
    return {
        "time_s": np.arange(n_tot) / fs,
        "potential_V": np.concatenate(pot),
        "segment": seg_arr,
        "fraction": np.concatenate(frac),
        "segment_time_s": np.concatenate(since),
        "hold": np.concatenate(hold),
        "direction": np.concatenate(direc),
        "pre_hold": pre,
    }


def iv_sample_mask(
    plan: ScanPlan,
    *,
    settle_fraction: float = 0.5,
    settle_s: float | None = None,
    branch: str = "all",
    potential_range_V: tuple[float, float] | None = None,
    window_s: tuple[float, float] | None = None,
) -> np.ndarray:
    """Which samples of the program go into an I-V fit (bool, ``n_samples``).

    - hold segments (staircase steps): the samples after the first
      ``settle_fraction`` of each step (the charging transient and the
      amplifier's filter settle there); the settling hold before the program
      (``plan.hold_s``) never counts;
    - every segment: not the first ``settle_s`` after it began (the step or
      the change of sweep direction rings through the amplifier's filter;
      default five filter time constants, ``5 / (2 pi filter_Hz)``);
    - ramps (LSV, CV): all their (remaining) samples; ``branch`` ``"up"`` or ``"down"``
      keeps the rising or falling ramps only (``"all"``: both);
    - ``potential_range_V``: only samples whose programmed potential lies in
      ``[lo, hi]``; ``window_s``: only samples with time in ``[t0, t1)``.
    """
    if not 0 <= settle_fraction < 1:
        raise ValueError(f"settle_fraction must be in [0, 1), got {settle_fraction}")
    if settle_s is None:
        settle_s = 5.0 / (2.0 * np.pi * plan.potentiostat.filter_Hz)
    if settle_s < 0:
        raise ValueError(f"settle_s must be >= 0, got {settle_s}")
    if branch not in ("all", "up", "down"):
        raise ValueError(f"branch must be 'all', 'up' or 'down', not {branch!r}")
    p = program_samples(plan)
    keep = ~p["pre_hold"]
    keep &= ~p["hold"] | (p["fraction"] >= settle_fraction)
    keep &= p["segment_time_s"] >= settle_s - 1e-12
    if branch == "up":
        keep &= p["direction"] >= 0
    elif branch == "down":
        keep &= p["direction"] <= 0
    if potential_range_V is not None:
        lo, hi = sorted(float(v) for v in potential_range_V)
        keep &= (p["potential_V"] >= lo - 1e-12) & (p["potential_V"] <= hi + 1e-12)
    if window_s is not None:
        t0, t1 = (float(v) for v in window_s)
        if not t1 > t0:
            raise ValueError(f"time window must have end > start, got [{t0}, {t1}]")
        keep &= (p["time_s"] >= t0 - 1e-12) & (p["time_s"] < t1 - 1e-12)
    return keep
