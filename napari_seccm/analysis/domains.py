"""Two-class segmentation of a map into domains, per-domain statistics and
the [100]/[001] conductance ratio with a confidence interval.

Labels follow the simulator's convention: ``0`` = [100] (the better
conducting, higher-current class), ``1`` = [001] (the low-current stripes),
``-1`` = not measured / NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .geometry import map_center_um, pixel_centers, plane_fit

LABEL_100 = 0
LABEL_001 = 1
LABEL_NONE = -1

#: largest class resampled as is by the bootstrap
MAX_BOOT = 20_000


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of the finite values (maximum between-class variance)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2 or v.min() == v.max():
        raise ValueError("Otsu's threshold needs at least two distinct values")
    hist, edges = np.histogram(v, bins=bins)
    centers = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mt = m0[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        mu0 = m0 / w0
        mu1 = (mt - m0) / w1
        between = w0 * w1 * (mu0 - mu1) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    k = int(np.argmax(between))
    return float(edges[k + 1])


def segment_domains(
    image: np.ndarray,
    *,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    pitch_um: float = 1.0,
    detrend: bool = True,
    high_is_100: bool = True,
    n_iter: int = 4,
) -> dict[str, Any]:
    """Split a map into two classes (Otsu's threshold), after removing its tilt.

    The plane and the step between the classes are fitted together and
    iterated (segment, refit the plane with the class step, segment again),
    so the domains do not tilt the plane, and a smooth gradient across the
    map (the film term's ``ln(L/a)`` towards the pad) does not decide the
    classes. ``high_is_100``: the class with the higher values is [100]
    (true for current and conductance maps; pass False for a resistance map).

    Returns ``labels`` (int8: 0 [100], 1 [001], -1 NaN), ``flattened`` (the
    map minus its tilt, level at the map centre kept), ``threshold`` (on the
    flattened values), ``plane`` (``offset``, ``slope_x_per_um``,
    ``slope_y_per_um``, ``step``) and ``fraction_001`` (of the labelled
    pixels).
    """
    z = np.asarray(image, dtype=float)
    ok = np.isfinite(z)
    if ok.sum() < 8:
        raise ValueError(f"too few valid pixels to segment ({int(ok.sum())})")
    if detrend:
        fit = plane_fit(z, x0_um=x0_um, y0_um=y0_um, pitch_um=pitch_um, robust=False)
        flat = z - fit["plane"] + fit["offset"]
        thr = otsu_threshold(flat[ok])
        high = flat > thr
        for _ in range(n_iter):
            fit = plane_fit(
                z,
                x0_um=x0_um,
                y0_um=y0_um,
                pitch_um=pitch_um,
                robust=False,
                extra=np.where(ok, high, np.nan).astype(float),
            )
            # level preserved: the plane's offset is the low class at the
            # centre; keep the values, remove only the tilt
            x, y = pixel_centers(z.shape, x0_um, y0_um, pitch_um)
            xc, yc = map_center_um(z.shape, x0_um, y0_um, pitch_um)
            tilt = fit["slope_x_per_um"] * (x - xc) + fit["slope_y_per_um"] * (y - yc)
            flat = z - tilt
            thr = otsu_threshold(flat[ok])
            new = flat > thr
            if np.array_equal(new[ok], high[ok]):
                break
            high = new
        plane = {k: fit[k] for k in ("offset", "slope_x_per_um", "slope_y_per_um", "step")}
    else:
        flat = z.copy()
        thr = otsu_threshold(flat[ok])
        high = flat > thr
        plane = {
            "offset": float(np.nanmean(z)),
            "slope_x_per_um": 0.0,
            "slope_y_per_um": 0.0,
            "step": 0.0,
        }
    is100 = high if high_is_100 else ~high
    labels = np.where(ok, np.where(is100, LABEL_100, LABEL_001), LABEL_NONE).astype(np.int8)
    n_lab = int((labels >= 0).sum())
    return {
        "labels": labels,
        "flattened": np.where(ok, flat, np.nan),
        "threshold": float(thr),
        "plane": plane,
        "fraction_001": float((labels == LABEL_001).sum() / max(n_lab, 1)),
    }


def class_statistics(values: np.ndarray) -> dict[str, float]:
    """n, mean, std, sem, median, robust spread (1.4826 MAD), 5th and 95th
    percentiles of the finite values."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return {
            "n": 0,
            "mean": nan,
            "std": nan,
            "sem": nan,
            "median": nan,
            "mad_std": nan,
            "p05": nan,
            "p95": nan,
        }
    med = float(np.median(v))
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
        "sem": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan"),
        "median": med,
        "mad_std": float(1.4826 * np.median(np.abs(v - med))),
        "p05": float(np.percentile(v, 5)),
        "p95": float(np.percentile(v, 95)),
    }


def domain_statistics(values: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """:func:`class_statistics` of the values in each class: ``{"100": ..., "001": ...}``."""
    v = np.asarray(values, dtype=float)
    lab = np.asarray(labels)
    return {
        "100": class_statistics(v[lab == LABEL_100]),
        "001": class_statistics(v[lab == LABEL_001]),
    }


def class_ratio(
    values: np.ndarray,
    labels: np.ndarray,
    *,
    statistic: str = "median",
    n_boot: int = 2000,
    ci: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Ratio ``stat([100]) / stat([001])`` with a bootstrap confidence interval.

    ``statistic``: ``"median"`` (default: robust to the pixels whose
    footprint straddles a domain edge and blends the two levels) or
    ``"mean"``. The interval resamples the pixels of each class
    independently (percentile bootstrap, ``n_boot`` resamples, fixed
    ``seed``). Returns ``ratio``, ``ci`` ([lo, hi]), ``value_100``,
    ``value_001``, ``n_100``, ``n_001``, ``statistic``, ``confidence``.
    """
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be 'median' or 'mean', not {statistic!r}")
    v = np.asarray(values, dtype=float)
    lab = np.asarray(labels)
    a = v[(lab == LABEL_100) & np.isfinite(v)]
    b = v[(lab == LABEL_001) & np.isfinite(v)]
    nan = float("nan")
    if a.size < 2 or b.size < 2:
        return {
            "ratio": nan,
            "ci": [nan, nan],
            "value_100": nan,
            "value_001": nan,
            "n_100": int(a.size),
            "n_001": int(b.size),
            "statistic": statistic,
            "confidence": ci,
        }
    f = np.median if statistic == "median" else np.mean
    va, vb = float(f(a)), float(f(b))
    rng = np.random.default_rng(seed)
    # a large class is resampled from a random subset of MAX_BOOT pixels and
    # the spread rescaled by sqrt(subset / n) (the statistic's error ~ 1/sqrt(n))
    sa = a if a.size <= MAX_BOOT else rng.choice(a, MAX_BOOT, replace=False)
    sb = b if b.size <= MAX_BOOT else rng.choice(b, MAX_BOOT, replace=False)
    ratios = np.empty(n_boot)
    batch = max(1, int(4e6 // (sa.size + sb.size)))  # bounded memory
    for s in range(0, n_boot, batch):
        k = min(batch, n_boot - s)
        ra = f(sa[rng.integers(0, sa.size, (k, sa.size))], axis=1)
        rb = f(sb[rng.integers(0, sb.size, (k, sb.size))], axis=1)
        # scale each class's deviation to its full size
        ra = va + (ra - f(sa)) * np.sqrt(sa.size / a.size)
        rb = vb + (rb - f(sb)) * np.sqrt(sb.size / b.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios[s : s + k] = ra / rb
    lo, hi = np.nanpercentile(ratios, [50 * (1 - ci), 50 * (1 + ci)])
    return {
        "ratio": va / vb if vb != 0 else nan,
        "ci": [float(lo), float(hi)],
        "value_100": va,
        "value_001": vb,
        "n_100": int(a.size),
        "n_001": int(b.size),
        "statistic": statistic,
        "confidence": ci,
    }


def histogram(
    values: np.ndarray, *, bins: int | str = "auto", labels: np.ndarray | None = None
) -> dict[str, Any]:
    """Histogram of the finite values: ``counts``, ``edges``; with ``labels``
    also ``counts_100`` and ``counts_001`` on the same edges."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        raise ValueError("no finite values to histogram")
    counts, edges = np.histogram(v[ok], bins=bins)
    out: dict[str, Any] = {"counts": counts, "edges": edges}
    if labels is not None:
        lab = np.asarray(labels)
        out["counts_100"] = np.histogram(v[ok & (lab == LABEL_100)], bins=edges)[0]
        out["counts_001"] = np.histogram(v[ok & (lab == LABEL_001)], bins=edges)[0]
    return out
