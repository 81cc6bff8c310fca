"""Period and orientation of stripes (domains) in a map: 2D FFT, a least-squares
refinement with an uncertainty, and the autocorrelation as a cross-check.

Angles follow the package convention: a stripe angle is the direction *along*
the stripes, counter-clockwise from the +x stage axis, in ``[0, 180)``; the
wave vector (across the stripes) is 90 degrees from it. Maps are indexed
``[row, col]`` with rows along y (pixel centres at ``x0 + (col + 0.5) p``,
``y0 + (row + 0.5) p``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .geometry import map_center_um, pixel_centers, plane_fit


def _prepare(image: np.ndarray, x0_um: float, y0_um: float, pitch_um: float, detrend: bool):
    z = np.asarray(image, dtype=float)
    if z.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {z.shape}")
    ok = np.isfinite(z)
    if ok.sum() < 16:
        raise ValueError(f"too few valid pixels for a stripe analysis ({int(ok.sum())})")
    if detrend:
        r = plane_fit(z, x0_um=x0_um, y0_um=y0_um, pitch_um=pitch_um, robust=False)["residual"]
    else:
        r = z - np.nanmean(z)
    return np.where(ok, r, 0.0), ok


def _pad_size(n: int, factor: int = 8, minimum: int = 256) -> int:
    """FFT size: ``factor`` x zero padding for small maps (sub-bin peak
    positions), at most 2048 (or the map's own next power of 2)."""
    want = 2 ** math.ceil(math.log2(max(n * factor, minimum)))
    cap = max(2048, 2 ** math.ceil(math.log2(max(n, 1))))
    return int(min(want, cap))


#: pixels used by the least-squares refinement at most (a random subset of a
#: larger map: plenty for two parameters, and quick on a million pixels)
MAX_FIT_PIXELS = 200_000


def power_spectrum(
    image: np.ndarray, pitch_um: float, *, detrend: bool = True, pad: int | None = None
) -> dict[str, np.ndarray]:
    """Windowed (Hann), zero-padded 2D power spectrum of a detrended map.

    Returns ``power`` (fft-shifted, ``[ky, kx]``), ``fx_per_um`` and
    ``fy_per_um`` (the frequency axes, cycles/um).
    """
    r, _ok = _prepare(image, 0.0, 0.0, pitch_um, detrend)
    ny, nx = r.shape
    w = np.outer(np.hanning(ny + 2)[1:-1], np.hanning(nx + 2)[1:-1])
    P = pad or _pad_size(max(ny, nx))
    F = np.fft.fftshift(np.abs(np.fft.fft2(r * w, s=(P, P))) ** 2)
    f = np.fft.fftshift(np.fft.fftfreq(P, d=pitch_um))
    return {"power": F, "fx_per_um": f, "fy_per_um": f}


def radial_psd(
    image: np.ndarray, pitch_um: float, *, n_bins: int | None = None
) -> dict[str, np.ndarray]:
    """Radially averaged power spectral density: ``frequency_per_um`` and ``psd``."""
    ps = power_spectrum(image, pitch_um)
    fx, fy = np.meshgrid(ps["fx_per_um"], ps["fy_per_um"])
    fr = np.hypot(fx, fy)
    fmax = 0.5 / pitch_um
    nb = n_bins or max(8, min(np.asarray(image).shape))
    edges = np.linspace(0, fmax, nb + 1)
    idx = np.digitize(fr.ravel(), edges) - 1
    sel = (idx >= 0) & (idx < nb)
    s = np.bincount(idx[sel], ps["power"].ravel()[sel], nb)
    c = np.bincount(idx[sel], None, nb)
    with np.errstate(invalid="ignore"):
        psd = s / c
    return {"frequency_per_um": 0.5 * (edges[1:] + edges[:-1]), "psd": psd}


def autocorrelation(
    image: np.ndarray, *, detrend: bool = True, pitch_um: float = 1.0
) -> np.ndarray:
    """Normalized autocorrelation of a detrended map (NaN-aware), shape
    ``(2 ny - 1, 2 nx - 1)``, zero lag at the centre, 1 there.

    Each lag is normalized by the number of pixel pairs that overlap at it
    (unbiased), so stripes keep their contrast out to large lags.
    """
    r, ok = _prepare(image, 0.0, 0.0, pitch_um, detrend)
    ny, nx = r.shape
    s = (2 * ny - 1, 2 * nx - 1)
    F = np.fft.rfft2(r, s=s)
    M = np.fft.rfft2(ok.astype(float), s=s)
    num = np.fft.fftshift(np.fft.irfft2(F * np.conj(F), s=s))
    cnt = np.fft.fftshift(np.fft.irfft2(M * np.conj(M), s=s))
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = np.where(cnt > 0.5, num / np.maximum(cnt, 1e-12), np.nan)
    return acf / acf[ny - 1, nx - 1]


# ----------------------------------------------------------------- the model
def _design(fx: float, fy: float, x: np.ndarray, y: np.ndarray, harmonics: list[int]) -> np.ndarray:
    ph = 2 * np.pi * (fx * x + fy * y)
    cols = [np.ones_like(x), x, y]
    for h in harmonics:
        cols.append(np.cos(h * ph))
        cols.append(np.sin(h * ph))
    return np.stack(cols, axis=1)


def _solve(A: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Least squares by the normal equations (a few well-scaled columns; much
    quicker than an SVD per trial wave vector)."""
    AtA = np.einsum("ij,ik->jk", A, A)
    Atz = np.einsum("ij,i->j", A, z)
    try:
        return np.linalg.solve(AtA, Atz)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, z, rcond=None)[0]


def _harmonics(f: float, pitch_um: float, n: int) -> list[int]:
    nyq = 0.5 / pitch_um
    return [h for h in range(1, n + 1) if h * f < 0.95 * nyq] or [1]


def stripe_period_angle(
    image: np.ndarray,
    *,
    pitch_um: float,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    harmonics: int = 3,
    min_period_um: float | None = None,
    max_period_um: float | None = None,
) -> dict[str, Any]:
    """Period and orientation of the dominant stripes of a map, with 1-sigma
    uncertainties.

    1. The map is detrended (plane), NaN pixels left out (set to the mean).
    2. The strongest peak of the windowed, zero-padded 2D power spectrum
       between ``1 / max_period_um`` (default 1.5 cycles over the map) and
       ``1 / min_period_um`` (default: Nyquist) gives the wave vector.
    3. A least-squares fit of a plane plus the fundamental and its harmonics
       (a non-sinusoidal stripe profile) over the valid pixels refines the
       wave vector ``(fx, fy)`` (variable projection: the linear amplitudes
       are solved for each trial wave vector).
    4. The covariance of ``(fx, fy)`` is ``s^2 (J^T J)^-1``, inflated by the
       ratio of the residual's power near the stripe frequency to its mean
       (residuals correlated in space carry less information than white
       noise); a block jackknife (the fit repeated without each of 4 x 4
       blocks of the map) gives a second estimate that also catches misfit
       varying across the map (wandering stripes). The larger of the two is
       reported, propagated to the period and angle (1 sigma). Neither can
       see a rotation of the stripes common to the whole field of view.

    Returns ``period_um``, ``period_um_err``, ``angle_deg`` (along the
    stripes, CCW from +x, in [0, 180)), ``angle_deg_err``,
    ``wavevector_angle_deg`` (across), ``frequency_per_um`` (fx, fy),
    ``amplitude`` (fundamental, map units), ``amplitude_to_noise`` (over the
    rms of the fit's residual: below ~1 the "stripes" are noise),
    ``fft_period_um`` and
    ``fft_angle_deg`` (the spectrum's peak before refinement),
    ``period_um_err_fit``/``_jackknife`` and ``angle_deg_err_fit``/
    ``_jackknife`` (the two error estimates), ``error_inflation``,
    ``n_pixels``, and ``acf`` (the autocorrelation
    estimate, :func:`stripe_period_angle_acf`; NaNs if it finds none).
    """
    from scipy.optimize import least_squares

    z = np.asarray(image, dtype=float)
    ny, nx = z.shape
    r, ok = _prepare(z, x0_um, y0_um, pitch_um, detrend=True)
    extent = min(ny, nx) * pitch_um
    fmin = 1.0 / max_period_um if max_period_um else 1.5 / extent
    fmax = min(1.0 / min_period_um if min_period_um else np.inf, 0.5 / pitch_um)
    if not fmax > fmin:
        raise ValueError(
            f"no frequency range to search: periods {1 / fmax:g}..{1 / fmin:g} um on a "
            f"{extent:g} um map at {pitch_um:g} um pitch"
        )
    # 2. the spectrum's peak (half plane fy >= 0: the spectrum is symmetric)
    w = np.outer(np.hanning(ny + 2)[1:-1], np.hanning(nx + 2)[1:-1])
    P = _pad_size(max(ny, nx))
    F = np.abs(np.fft.fft2(r * w, s=(P, P))) ** 2
    fy_ax = np.fft.fftfreq(P, d=pitch_um)
    fx_ax = np.fft.fftfreq(P, d=pitch_um)
    FX, FY = np.meshgrid(fx_ax, fy_ax)
    FR = np.hypot(FX, FY)
    allowed = (fmin <= FR) & (fmax >= FR) & ((FY > 0) | ((FY == 0) & (FX > 0)))
    if not allowed.any():
        raise ValueError("the map is too small for its pitch: no frequency to search")
    Fa = np.where(allowed, F, -1.0)
    iy, ix = np.unravel_index(int(np.argmax(Fa)), Fa.shape)
    f0 = np.array([FX[iy, ix], FY[iy, ix]])
    # parabolic sub-bin refinement on each axis (a better starting point)
    for ax, (i, j) in ((0, (iy, ix)), (1, (iy, ix))):
        if ax == 0:
            a, b, c = F[i, (j - 1) % P], F[i, j], F[i, (j + 1) % P]
            d = fx_ax[1] - fx_ax[0]
        else:
            a, b, c = F[(i - 1) % P, j], F[i, j], F[(i + 1) % P, j]
            d = fy_ax[1] - fy_ax[0]
        den = a - 2 * b + c
        if den < 0:
            f0[ax] += 0.5 * (a - c) / den * d
    fft_f = f0.copy()

    # 3. least-squares refinement over the valid pixels
    x, y = pixel_centers(z.shape, x0_um, y0_um, pitch_um)
    xc, yc = map_center_um(z.shape, x0_um, y0_um, pitch_um)
    xs, ys, zs = (x - xc)[ok], (y - yc)[ok], z[ok]
    if zs.size > MAX_FIT_PIXELS:
        pick = np.sort(np.random.default_rng(0).choice(zs.size, MAX_FIT_PIXELS, replace=False))
        xs, ys, zs = xs[pick], ys[pick], zs[pick]
    scale = float(np.std(zs)) or 1.0
    zs = (zs - np.mean(zs)) / scale
    harm = _harmonics(float(np.hypot(*f0)), pitch_um, harmonics)

    def resid(f: np.ndarray, sel: np.ndarray | None = None) -> np.ndarray:
        xx, yy, zz = (xs, ys, zs) if sel is None else (xs[sel], ys[sel], zs[sel])
        A = _design(f[0], f[1], xx, yy, harm)
        return zz - A @ _solve(A, zz)

    df = 1.0 / (8 * extent)
    sol = least_squares(resid, f0, x_scale=[df, df], diff_step=1e-4, method="lm")
    f = sol.x
    if not np.isfinite(f).all() or np.hypot(*(f - fft_f)) > 2.0 / extent:
        f = fft_f  # the refinement wandered off: keep the spectrum's peak
    res = resid(f)
    A = _design(f[0], f[1], xs, ys, harm)
    coef = _solve(A, zs)
    n = zs.size
    p_lin = A.shape[1]
    dof = max(n - p_lin - 2, 1)
    s2 = float(res @ res) / dof
    # Jacobian of the projected residual at the solution (central differences)
    J = np.empty((n, 2))
    for k in range(2):
        h = np.zeros(2)
        h[k] = df * 1e-2
        J[:, k] = (resid(f + h) - resid(f - h)) / (2 * h[k])
    try:
        cov = s2 * np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.full((2, 2), np.nan)
    inflation = _residual_inflation(
        res, xs + xc, ys + yc, f, x0_um, y0_um, pitch_um, z.shape, extent
    )
    cov = cov * inflation
    # block jackknife: refit without each of 4 x 4 blocks of the map; its
    # spread catches misfit that varies across the map (wandering stripes)
    jk = []
    bx = np.clip(((xs + xc - x0_um) / (nx * pitch_um) * 4).astype(int), 0, 3)
    by = np.clip(((ys + yc - y0_um) / (ny * pitch_um) * 4).astype(int), 0, 3)
    blocks = by * 4 + bx
    for b in range(16):
        keep = blocks != b
        if keep.sum() < 0.5 * zs.size or keep.all():
            continue
        sb = least_squares(
            lambda q, k=keep: resid(q, k),
            f,
            x_scale=[df, df],
            diff_step=1e-4,
            method="lm",
        )
        if np.isfinite(sb.x).all():
            jk.append(sb.x)
    cov_jk = np.full((2, 2), np.nan)
    if len(jk) >= 4:
        J_ = np.asarray(jk)
        dev = J_ - J_.mean(axis=0)
        cov_jk = (len(jk) - 1) / len(jk) * (dev.T @ dev)

    fx, fy = float(f[0]), float(f[1])
    fr = math.hypot(fx, fy)
    period = 1.0 / fr
    gP = np.array([-fx / fr**3, -fy / fr**3])
    gA = np.array([-fy / fr**2, fx / fr**2])  # d(atan2(fy, fx))/d(fx, fy), rad
    period_err_fit = float(math.sqrt(max(gP @ cov @ gP, 0.0)))
    angle_err_fit = float(math.degrees(math.sqrt(max(gA @ cov @ gA, 0.0))))
    period_err_jk = float(math.sqrt(max(gP @ cov_jk @ gP, 0.0)))
    angle_err_jk = float(math.degrees(math.sqrt(max(gA @ cov_jk @ gA, 0.0))))
    period_err = float(np.nanmax([period_err_fit, period_err_jk]))
    angle_err = float(np.nanmax([angle_err_fit, angle_err_jk]))
    wv = math.degrees(math.atan2(fy, fx))
    amp = float(math.hypot(coef[3], coef[4]) * scale)
    fft_fr = float(np.hypot(*fft_f))
    out: dict[str, Any] = {
        "period_um": period,
        "period_um_err": period_err,
        "angle_deg": (wv + 90.0) % 180.0,
        "angle_deg_err": angle_err,
        "wavevector_angle_deg": wv % 180.0,
        "frequency_per_um": (fx, fy),
        "amplitude": amp,
        "amplitude_to_noise": float(amp / (math.sqrt(s2) * scale)) if s2 > 0 else math.inf,
        "harmonics": harm,
        "fft_period_um": 1.0 / fft_fr,
        "fft_angle_deg": (math.degrees(math.atan2(fft_f[1], fft_f[0])) + 90.0) % 180.0,
        "period_um_err_fit": period_err_fit,
        "angle_deg_err_fit": angle_err_fit,
        "period_um_err_jackknife": period_err_jk,
        "angle_deg_err_jackknife": angle_err_jk,
        "error_inflation": float(inflation),
        "n_pixels": int(n),
    }
    try:
        out["acf"] = stripe_period_angle_acf(z, pitch_um=pitch_um, period_hint_um=period)
    except ValueError:
        out["acf"] = {"period_um": math.nan, "angle_deg": math.nan}
    return out


def _residual_inflation(
    res: np.ndarray,
    x_um: np.ndarray,
    y_um: np.ndarray,
    f: np.ndarray,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    shape: tuple[int, int],
    extent: float,
) -> float:
    """Residual power near +-f over its mean power (>= 1)."""
    img = np.zeros(shape)
    col = np.clip(np.round((x_um - x0_um) / pitch_um - 0.5).astype(int), 0, shape[1] - 1)
    row = np.clip(np.round((y_um - y0_um) / pitch_um - 0.5).astype(int), 0, shape[0] - 1)
    img[row, col] = res
    P = _pad_size(max(shape), factor=4, minimum=128)
    S = np.abs(np.fft.fft2(img, s=(P, P))) ** 2
    fa = np.fft.fftfreq(P, d=pitch_um)
    FX, FY = np.meshgrid(fa, fa)
    rad = 1.0 / extent
    near = (np.hypot(FX - f[0], FY - f[1]) <= rad) | (np.hypot(FX + f[0], FY + f[1]) <= rad)
    if not near.any():
        return 1.0
    ratio = float(S[near].mean() / S.mean()) if S.mean() > 0 else 1.0
    return max(1.0, ratio)


def stripe_period_angle_acf(
    image: np.ndarray, *, pitch_um: float, period_hint_um: float | None = None
) -> dict[str, float]:
    """Period and angle from the autocorrelation (a cross-check of the FFT).

    The stripe direction is the long axis of the central lobe of the
    autocorrelation (its second moments above half maximum); the period is
    the position of the first maximum of the autocorrelation along the
    normal, refined by a parabola. Returns ``period_um`` and ``angle_deg``.
    """
    acf = autocorrelation(image, pitch_um=pitch_um)
    ny2, nx2 = acf.shape
    cy, cx = ny2 // 2, nx2 // 2
    from scipy import ndimage

    lobe = np.nan_to_num(acf, nan=0.0) > 0.5
    lab, _ = ndimage.label(lobe)
    central = lab == lab[cy, cx]
    yy, xx = np.nonzero(central)
    dx, dy = (xx - cx) * pitch_um, (yy - cy) * pitch_um
    wts = acf[yy, xx]
    cxx, cyy, cxy = (wts * dx * dx).sum(), (wts * dy * dy).sum(), (wts * dx * dy).sum()
    theta = 0.5 * math.atan2(2 * cxy, cxx - cyy)  # long axis
    nrm = theta + math.pi / 2
    rmax = 0.5 * min(ny2, nx2) * pitch_um
    step = pitch_um / 4
    d = np.arange(0.0, rmax, step)
    coords = np.array([cy + d * math.sin(nrm) / pitch_um, cx + d * math.cos(nrm) / pitch_um])
    prof = ndimage.map_coordinates(
        np.nan_to_num(acf, nan=0.0), coords, order=1, mode="constant", cval=0.0
    )
    # first minimum, then the highest maximum after it (before the edge)
    below = np.flatnonzero(np.diff(np.sign(np.diff(prof))) > 0)
    if below.size == 0:
        raise ValueError("the autocorrelation shows no period")
    start = below[0] + 1
    if period_hint_um:
        lo = np.searchsorted(d, 0.6 * period_hint_um)
        hi = np.searchsorted(d, 1.4 * period_hint_um)
        start = max(start, lo)
        seg = prof[start:hi] if hi > start else prof[start:]
    else:
        seg = prof[start:]
    if seg.size < 3:
        raise ValueError("the autocorrelation shows no period")
    k = start + int(np.argmax(seg))
    # a parabola through the peak's neighbourhood (+-1.5 pixels): the profile
    # is interpolated between lags on whole pixels, so one sample is not enough
    half = max(2, round(1.5 * pitch_um / step))
    lo, hi = max(k - half, 0), min(k + half + 1, prof.size)
    off = 0.0
    if hi - lo >= 3:
        c2, c1, _ = np.polyfit(d[lo:hi] - d[k], prof[lo:hi], 2)
        if c2 < 0:
            off = float(np.clip(-c1 / (2 * c2), -half * step, half * step)) / step
    return {
        "period_um": float((k + off) * step),
        "angle_deg": float(math.degrees(theta) % 180.0),
    }
