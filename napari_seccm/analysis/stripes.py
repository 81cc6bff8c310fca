"""Period and orientation of stripes (domains) in a map: a significance test of
periodic contrast over every wave vector the grid resolves
(:func:`periodic_contrast`), a least-squares refinement with an uncertainty,
the autocorrelation as a cross-check, and warnings with stable codes
(:func:`stripe_warnings`: ``no_periodic_contrast``, ``possible_aliasing``,
``ambiguous_period``).

What no analysis of the samples can tell: stripes whose wave vector lies
beyond the grid's square fold into it exactly (a pattern sampled on a lattice
is the same as its alias there); ``possible_aliasing`` fires where folding
from just beyond lands (a component above half the Nyquist frequency), not
for folding from further out, which only a finer or turned scan can reveal.

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

from ._blas import single_blas_thread
from .geometry import (
    default_x_degree,
    map_center_um,
    orthonormal_columns,
    pixel_centers,
    plane_fit,
    smooth_basis,
)


def _checked_map(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map as floats and its valid pixels; refused when not 2-D or too sparse."""
    z = np.asarray(image, dtype=float)
    if z.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {z.shape}")
    ok = np.isfinite(z)
    if ok.sum() < 16:
        raise ValueError(f"too few valid pixels for a stripe analysis ({int(ok.sum())})")
    return z, ok


def _prepare(image: np.ndarray, x0_um: float, y0_um: float, pitch_um: float, detrend: bool):
    z, ok = _checked_map(image)
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
#: global significance level of the periodic-contrast test (after the
#: look-elsewhere correction over every frequency searched)
ALPHA = 0.01
#: periodic contrast below this fraction of the map's level is not reported as
#: stripes, however significant (a noise-free map's smooth terms leave
#: residuals of 1e-5 that any test calls significant)
MIN_RELATIVE_AMPLITUDE = 1e-3
#: spectrum oversampling (per axis) of the search
OVERSAMPLE = 2
#: a wave-vector component above this fraction of the Nyquist frequency: fewer
#: than 4 pixels per period along x or y, where a pattern finer than twice the
#: pitch would fold to
ALIAS_FRACTION = 0.5
#: a period whose 1-sigma error exceeds this fraction of it is ambiguous
MAX_RELATIVE_PERIOD_ERR = 0.1
#: a significant contrast with a p-value above this is only marginally so
#: (ambiguous_period): grain-boundary lines under 10 % noise reach p ~ 0.005
MARGINAL_P = 1e-3
#: a second, unrelated spectral peak with at least this fraction of the
#: first's power makes the period ambiguous
SECOND_PEAK_POWER = 0.25


def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 2)[1:-1]


def _basis_degrees(shape: tuple[int, int], degree: int, x_degree: int | None) -> tuple[int, int]:
    """Background degrees a map of this size can afford (tiny maps: a plane)."""
    ny, nx = shape
    d = int(max(1, min(degree, min(ny, nx) // 4)))
    xd = default_x_degree(nx) if x_degree is None else int(x_degree)
    return d, int(max(d, min(xd, nx // 4)))


def smooth_residual(
    image: np.ndarray,
    *,
    order: np.ndarray | None = None,
    degree: int = 3,
    x_degree: int | None = None,
    drift_degree: int = 3,
) -> dict[str, np.ndarray]:
    """The map minus its smooth background (:func:`~.geometry.smooth_basis`:
    tilt and curvature, the film's x-only collection term, a drift along the
    acquisition ``order``), by least squares over the finite pixels.

    Returns ``residual`` and ``background`` (NaN where the map is NaN) and
    ``basis`` (the columns, all pixels).
    """
    z = np.asarray(image, dtype=float)
    ok = np.isfinite(z)
    d, xd = _basis_degrees(z.shape, degree, x_degree)
    B = smooth_basis(z.shape, degree=d, x_degree=xd, order=order, drift_degree=drift_degree)
    okr = ok.ravel()
    coef, *_ = np.linalg.lstsq(B[okr], z.ravel()[okr], rcond=None)
    bg = (B @ coef).reshape(z.shape)
    return {
        "residual": np.where(ok, z - bg, np.nan),
        "background": np.where(ok, bg, np.nan),
        "basis": B,
    }


def _median_ratio_sf(t: float, n: int) -> float:
    """``P(X >= t Y)`` for ``X ~ Exp(1)`` and ``Y`` the ``k = (n + 1) // 2``-th
    smallest of ``n`` independent ``Exp(1)`` (the local background): by
    Renyi's representation ``Y = sum_j E_j / (n - j + 1)``, so
    ``E[exp(-t Y)] = prod_j (n - j + 1) / (n - j + 1 + t)``."""
    if n < 1:
        return 1.0
    if not t > 0:
        return 1.0
    m = n - np.arange(1, (n + 1) // 2 + 1) + 1.0
    return float(np.exp(np.sum(np.log(m) - np.log(m + t))))


#: a pattern must repeat at least this often across the map (fewer periods
#: cannot be told from a few blobs or what is left of a smooth term)
MIN_PERIODS = 2.0
#: a pattern must show in at least this fraction of the 3 x 3 blocks of the map
#: (a few straight boundary lines give a strong, significant peak that lives
#: in the blocks they cross only)
MIN_COVERAGE = 2.0 / 3.0


def _fill_from_neighbours(r: np.ndarray, n_pass: int = 8) -> np.ndarray:
    """NaN pixels take the mean of their finite 8-neighbours, pass by pass
    (a band of missing pixels fills from its edges); what is left is 0."""
    from scipy import ndimage

    out = np.asarray(r, dtype=float).copy()
    k = np.ones((3, 3))
    for _ in range(n_pass):
        bad = ~np.isfinite(out)
        if not bad.any():
            break
        good = ~bad
        s_ = ndimage.convolve(np.where(good, out, 0.0), k, mode="constant")
        c_ = ndimage.convolve(good.astype(float), k, mode="constant")
        fill = bad & (c_ > 0)
        out[fill] = s_[fill] / c_[fill]
    return np.where(np.isfinite(out), out, 0.0)


#: a pattern's spectral peak stands this many times above every bin two
#: natural bins away (a tone's Hann main lobe has fallen below 3 % there; a
#: blob's or a boundary line's spectrum is as strong there: measured <= 1.8,
#: stripes >= 7)
MIN_SHARPNESS = 4.0


def _sharpness(I: np.ndarray, jy: int, jx: int, ux: float, uy: float, skip=None) -> float:
    """The peak's power over the largest power two bins away (the bins at
    Chebyshev distance 2 on the natural grid, wrapped), leaving out the two
    on the ray through the origin (``(ux, uy)``: the peak in natural bins),
    where a boundary line parallel to the stripes puts its streak, and those
    that ``skip(u_x, u_y)`` names (the low frequencies the background fit
    takes or leaves its rest in)."""
    ny, nx = I.shape
    r = math.hypot(ux, uy)
    ex, ey = (ux / r, uy / r) if r > 0 else (1.0, 0.0)
    ring = []
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if max(abs(dy), abs(dx)) != 2:
                continue
            if (
                min(math.hypot(dx - 2 * ex, dy - 2 * ey), math.hypot(dx + 2 * ex, dy + 2 * ey))
                < 1.0
            ):
                continue
            if skip is not None and bool(skip(np.array(ux + dx), np.array(uy + dy))):
                continue
            ring.append(I[(jy + dy) % ny, (jx + dx) % nx])
    if not ring:
        return math.inf
    m = max(ring)
    return float(I[jy, jx] / m) if m > 0 else math.inf


def robust_noise(r: np.ndarray) -> float:
    """Pixel noise of a map (1 sigma) from the differences of horizontal and
    vertical neighbours (1.4826 MAD / sqrt 2): robust to edges and lines,
    which touch few pairs, and to smooth terms, which nearly cancel."""
    d = np.concatenate([np.diff(r, axis=0).ravel(), np.diff(r, axis=1).ravel()])
    d = d[np.isfinite(d)]
    if d.size < 4:
        return math.nan
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _coverage(r: np.ndarray, ok: np.ndarray, f: tuple[float, float], pitch_um: float) -> float:
    """Fraction of the map's blocks (3 x 3, or 2 x 2 on a small map) in which
    the wave ``f`` is present: its amplitude there (a local fit with its own
    phase and a local plane) at least half the whole map's, less two standard
    errors of the block (from the robust pixel noise, :func:`robust_noise`:
    not from the block's residual, which a boundary line would inflate)."""
    ny, nx = r.shape
    nb = 3 if min(ny, nx) >= 24 else 2
    yy, xx = np.mgrid[0:ny, 0:nx] * pitch_um
    ph = 2 * np.pi * (f[0] * xx + f[1] * yy)
    sigma = robust_noise(np.where(ok, r, np.nan))

    def amplitude(sel: np.ndarray) -> float:
        A = np.stack([np.ones(sel.sum()), xx[sel], yy[sel], np.cos(ph[sel]), np.sin(ph[sel])], 1)
        c, *_ = np.linalg.lstsq(A, r[sel], rcond=None)
        return math.hypot(c[3], c[4])

    A_all = amplitude(ok)
    ry = np.minimum(np.arange(ny) * nb // ny, nb - 1)
    rx = np.minimum(np.arange(nx) * nb // nx, nb - 1)
    blk = ry[:, None] * nb + rx[None, :]
    present = n = 0
    for b in range(nb * nb):
        sel = ok & (blk == b)
        if sel.sum() < 8:
            continue
        se_b = sigma * math.sqrt(2.0 / sel.sum()) if math.isfinite(sigma) else 0.0
        n += 1
        present += amplitude(sel) >= 0.5 * A_all - 2.0 * se_b
    return present / n if n else 0.0


def _wrap(d: np.ndarray, period: float) -> np.ndarray:
    return (d + period / 2) % period - period / 2


@single_blas_thread
def periodic_contrast(
    image: np.ndarray,
    *,
    pitch_um: float,
    order: np.ndarray | None = None,
    min_period_um: float | None = None,
    max_period_um: float | None = None,
    alpha: float = ALPHA,
    degree: int = 3,
    x_degree: int | None = None,
    drift_degree: int = 3,
    n_candidates: int = 8,
) -> dict[str, Any]:
    """Is there periodic contrast in the map, beyond a smooth background and
    noise? Where is it (wave vector)? A test with its look-elsewhere correction.

    1. The smooth background (:func:`smooth_residual`) is removed.
    2. The search covers every wave vector the grid resolves: the whole square
       ``|fx|, |fy| <= 1 / (2 pitch)`` (a diagonal pattern resolves down to
       ``sqrt(2)`` pitches), above ``1 / max_period_um`` (default 1.5 cycles
       over the map) and below ``1 / min_period_um``. The candidates are the
       local maxima of the Hann-windowed periodogram ``I(f)`` on the map's
       natural frequency grid (``1 / (n pitch)`` apart).
    3. Each candidate is tested against its *local* background, so that
       broadband structure (noise of any colour, grain-boundary lines, what
       is left of a smooth term) is not taken for a pattern:
       (a) the periodogram on an annulus 3..9 bins around the peak, and
       (b) the periodogram along the ray from the origin through the peak
       (where a straight line puts its power: a single boundary line gives
       every frequency along its normal the same power, a pattern one peak
       and its harmonics), both sampled every 2 bins (nearly independent
       under the Hann window), leaving out the peak's harmonics and the
       lowest frequencies (which the background fit takes).
       Under the null (a locally smooth spectrum ``S``) ``I(f) / S(f)`` is
       ``Exp(1)``, and its ratio to the median of ``n`` neighbours has the
       exact survival function of :func:`_median_ratio_sf`. The peak must beat
       both backgrounds: its local p-value is the larger of the two.
    4. The look-elsewhere correction: ``p = 1 - (1 - p_local)^M`` with ``M``
       the number of frequencies searched.

    The periodic contrast is ``significant`` when ``p < alpha`` and the
    peak's amplitude is at least :data:`MIN_RELATIVE_AMPLITUDE` of the map's
    median level (for a map of positive values). The chosen peak is the
    strongest significant candidate (a harmonic can stand further above its
    local background than the fundamental), else the least insignificant;
    a significant peak at half its wave vector, at least half as strong and
    half as sharp, is taken instead (the fundamental of a coarse pattern,
    blurred by the background fit next to it; ``harmonic_of_best`` then gives
    the period of the harmonic first chosen).

    Returns ``significant``, ``p_value``, ``alpha``, ``n_frequencies`` (M),
    ``candidates`` (best first: ``frequency_per_um`` (fx, fy), ``period_um``,
    ``angle_deg`` (along), ``power``, ``statistic`` (power over the local
    background), ``p_local``, ``p_annulus``, ``p_ray``, ``p_value``,
    ``amplitude``), ``best``, ``second_peak`` (the best significant
    candidate that is no harmonic of the first, or None),
    ``relative_amplitude``, ``residual`` and ``background`` maps, ``basis``
    and ``spectrum`` (``power``, ``fx_per_um``, ``fy_per_um``; oversampled
    2 x, unshifted FFT order).
    """
    from scipy import ndimage

    z, ok = _checked_map(image)
    ny, nx = z.shape
    p = float(pitch_um)
    sm = smooth_residual(
        z, order=order, degree=degree, x_degree=x_degree, drift_degree=drift_degree
    )
    _, xd = _basis_degrees(z.shape, degree, x_degree)
    # missing pixels (NaN, masked lines) filled from their neighbours: zeros
    # would multiply the pattern by the mask and spread its peak over the
    # mask's broad spectrum
    r = _fill_from_neighbours(sm["residual"])
    w = np.outer(_hann(ny), _hann(nx))
    # the natural grid: the test; oversampled: where exactly the peak lies
    Fn = np.fft.fft2(r * w)
    In = Fn.real**2 + Fn.imag**2
    Fo = np.fft.fft2(r * w, s=(OVERSAMPLE * ny, OVERSAMPLE * nx))
    Io = Fo.real**2 + Fo.imag**2
    fy = np.fft.fftfreq(ny, d=p)
    fx = np.fft.fftfreq(nx, d=p)
    FY, FX = np.meshgrid(fy, fx, indexing="ij")
    FR = np.hypot(FX, FY)
    extent = min(ny, nx) * p
    fmin = 1.0 / max_period_um if max_period_um else 1.5 / extent
    fmax = 1.0 / min_period_um if min_period_um else np.inf
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    half = (
        (FY > 0)
        | ((iy == 0) & (FX > 0))
        | ((ny % 2 == 0) & (iy == ny // 2) & (FX >= 0))
        | ((iy == 0) & (nx % 2 == 0) & (ix == nx // 2))
    )
    allowed = half & (fmin <= FR) & (fmax >= FR)
    if not allowed.any():
        raise ValueError(
            f"no frequency to search: periods {1 / min(fmax, 1 / p):g}..{1 / fmin:g} um on a "
            f"{extent:g} um map at {p:g} um pitch"
        )
    M = float(allowed.sum())
    # frequencies in natural bins (u = f n p); the spectrum repeats every n bins
    ux, uy = FX * nx * p, FY * ny * p

    def nat(u_x: np.ndarray, u_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.rint(u_y).astype(int) % ny, np.rint(u_x).astype(int) % nx

    def dist(u_x: np.ndarray, u_y: np.ndarray, vx: float, vy: float) -> np.ndarray:
        return np.hypot(_wrap(u_x - vx, nx), _wrap(u_y - vy, ny))

    def suppressed(u_x: np.ndarray, u_y: np.ndarray) -> np.ndarray:
        """Frequencies the background fit takes (near 0; along fx for the x terms)."""
        return (dist(u_x, u_y, 0.0, 0.0) < 3.0) | (
            (np.abs(_wrap(u_y, ny)) < 1.5) & (np.abs(_wrap(u_x, nx)) < xd / 2 + 1.5)
        )

    peaks = (In >= ndimage.maximum_filter(In, size=3, mode="wrap")) & allowed & (In > 0)
    pk = np.flatnonzero(peaks.ravel())
    if pk.size == 0:
        pk = np.array([int(np.argmax(np.where(allowed, In, -1.0)))])
    # candidates: the strongest, and the strongest over the radial level
    rho = np.hypot(_wrap(ux, nx), _wrap(uy, ny)).ravel()
    rb = rho.astype(int)
    logI = np.log(In.ravel() + 1e-300)
    level = np.exp(np.bincount(rb, logI) / np.maximum(np.bincount(rb), 1))
    by_power = pk[np.argsort(In.ravel()[pk])[::-1][:n_candidates]]
    by_level = pk[np.argsort((In.ravel() / level[rb])[pk])[::-1][:n_candidates]]
    cand = list(dict.fromkeys([*by_power.tolist(), *by_level.tolist()]))

    # the radial trend of the spectrum (medians over rings one bin wide): a
    # red spectrum (blobs, what is left of a smooth term) falls steeply, and
    # the annulus of a low-frequency peak would reach down its slope
    sup_all = suppressed(ux, uy).ravel()
    ring_ok = ~sup_all
    n_r = int(rho.max()) + 1
    ring_med = np.full(n_r, np.nan)
    order_r = np.argsort(rb[ring_ok], kind="stable")
    rb_s = rb[ring_ok][order_r]
    I_s = In.ravel()[ring_ok][order_r]
    bounds = np.searchsorted(rb_s, np.arange(n_r + 1))
    for k_ in range(n_r):
        seg = I_s[bounds[k_] : bounds[k_ + 1]]
        if seg.size >= 4:
            ring_med[k_] = np.median(seg)
    have = np.isfinite(ring_med) & (ring_med > 0)
    ring_c = np.arange(n_r) + 0.5

    def radial_level(r_: np.ndarray) -> np.ndarray:
        if have.sum() < 2:
            return np.ones_like(r_)
        return np.exp(np.interp(r_, ring_c[have], np.log(ring_med[have])))

    g = np.arange(-5, 6)
    gi, gj = np.meshgrid(g, g, indexing="ij")
    rr = np.hypot(2 * gi, 2 * gj)
    ann = (rr >= 3) & (rr <= 9)
    ann_dy, ann_dx = 2.0 * gi[ann], 2.0 * gj[ann]
    wsum = float(w.sum())
    med = float(np.nanmedian(z[ok]))

    def order_stat_p(I0: float, bg: np.ndarray) -> tuple[float, float]:
        n = bg.size
        if n < 3:
            return 0.0, 1.0
        kth = float(np.partition(bg, (n + 1) // 2 - 1)[(n + 1) // 2 - 1])
        t = I0 / kth if kth > 0 else math.inf
        return t, _median_ratio_sf(t, n)

    out_c = []
    for k in cand:
        jy, jx = divmod(int(k), nx)
        I0 = float(In[jy, jx])
        u0x, u0y = float(ux[jy, jx]), float(uy[jy, jx])
        harm = [(h * u0x, h * u0y) for h in (-1, 2, -2, 3, -3, 4, -4)]
        # (a) the annulus
        ax_, ay_ = u0x + ann_dx, u0y + ann_dy
        keep = ~suppressed(ax_, ay_)
        for hx, hy in harm:
            keep &= dist(ax_, ay_, hx, hy) >= 3.0
        ya, xa = nat(ax_[keep], ay_[keep])
        # each neighbour brought to the peak's radius along the radial trend
        r_n = np.hypot(_wrap(ax_[keep], nx), _wrap(ay_[keep], ny))
        r_0 = np.array([math.hypot(_wrap(u0x, nx), _wrap(u0y, ny))])
        bg_a = In[ya, xa] * radial_level(r_0)[0] / radial_level(r_n)
        t_a, p_a = order_stat_p(I0, bg_a)
        p_loc = p_a
        p_glob = float(-np.expm1(M * np.log1p(-min(p_loc, 1 - 1e-16))))
        # where the peak lies on the oversampled grid (its strongest neighbour)
        oy, ox = jy * OVERSAMPLE, jx * OVERSAMPLE
        best_o = (oy, ox)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                cy_, cx_ = (oy + dy) % Io.shape[0], (ox + dx) % Io.shape[1]
                if Io[cy_, cx_] > Io[best_o]:
                    best_o = (cy_, cx_)
        fxx = float(np.fft.fftfreq(Io.shape[1], d=p)[best_o[1]])
        fyy = float(np.fft.fftfreq(Io.shape[0], d=p)[best_o[0]])
        if fyy < 0 or (fyy == 0 and fxx < 0):
            fxx, fyy = -fxx, -fyy
        f0 = math.hypot(fxx, fyy)
        out_c.append(
            {
                "frequency_per_um": (fxx, fyy),
                "period_um": 1.0 / f0,
                "angle_deg": (math.degrees(math.atan2(fyy, fxx)) + 90.0) % 180.0,
                "power": float(Io[best_o]),
                "statistic": float(t_a),
                "p_local": float(p_loc),
                "n_background": int(bg_a.size),
                "p_value": p_glob,
                "amplitude": 2.0 * math.sqrt(float(Io[best_o])) / wsum if wsum > 0 else math.nan,
                "_index": best_o,
                "_natural": (u0x, u0y),
                "sharpness": _sharpness(In, jy, jx, u0x, u0y, suppressed),
            }
        )
    # the strongest significant candidate that fills the map (a pattern, not
    # a few lines), else the least insignificant
    best = None
    for c in sorted(out_c, key=lambda c: -c["power"]):
        if c["p_value"] < alpha and c["sharpness"] >= MIN_SHARPNESS:
            c["coverage"] = _coverage(r, ok, c["frequency_per_um"], p)
            if c["coverage"] >= MIN_COVERAGE:
                best = c
                break
    if best is None:
        best = min(out_c, key=lambda c: (c["p_local"], -c["power"]))
        best.setdefault("coverage", _coverage(r, ok, best["frequency_per_um"], p))
    else:
        # a coarse pattern's fundamental lies next to the frequencies the
        # background fit takes, which blur it (its sharpness falls under the
        # limit) while its 2nd harmonic stands sharp: a significant peak at
        # half the chosen wave vector, at least half as strong and sharp
        # enough to be no blob, is the fundamental (a blob or a line does
        # not put a sharp peak at exactly twice its own frequency)
        # (compared where the peaks lie on the oversampled grid, in natural bins)
        bx_, by_ = best["frequency_per_um"][0] * nx * p, best["frequency_per_um"][1] * ny * p
        for c in sorted(out_c, key=lambda c: -c["power"]):
            if c is best or c["p_value"] >= alpha or c["sharpness"] < MIN_SHARPNESS / 2:
                continue
            if c["power"] < 0.5 * best["power"]:
                continue
            cx_, cy_ = c["frequency_per_um"][0] * nx * p, c["frequency_per_um"][1] * ny * p
            if not any(
                float(dist(np.array(2 * sg * cx_), np.array(2 * sg * cy_), bx_, by_)) <= 1.0
                for sg in (1, -1)
            ):
                continue
            if math.hypot(*c["frequency_per_um"]) * extent < MIN_PERIODS:
                continue
            c["coverage"] = _coverage(r, ok, c["frequency_per_um"], p)
            if c["coverage"] >= MIN_COVERAGE:
                c["harmonic_of_best"] = best["period_um"]
                best = c
                break
    out_c.sort(key=lambda c: (c is not best, c["p_value"] >= alpha, -c["power"]))
    # the best other significant peak that is no harmonic (or sub-harmonic) of it
    b0x, b0y = best["_natural"]
    second = None
    for c in out_c[1:]:
        cx_, cy_ = c["_natural"]
        related = any(
            dist(np.array(cx_), np.array(cy_), s_ * h * b0x, s_ * h * b0y) < 2.5
            for h in (1, 2, 3, 4, 0.5, 1 / 3, 0.25)
            for s_ in (1, -1)
        )
        if not related:
            second = c
            break
    rel_amp = best["amplitude"] / abs(med) if med != 0 else math.inf
    positive = bool(np.all(z[ok] > 0))
    # periods across the map's narrower side (a diagonal wave has more along
    # the diagonal, but in the corners only)
    n_periods = math.hypot(*best["frequency_per_um"]) * extent
    significant = bool(
        best["p_value"] < alpha
        and (best["sharpness"] >= MIN_SHARPNESS or "harmonic_of_best" in best)
        and best["coverage"] >= MIN_COVERAGE
        and n_periods >= MIN_PERIODS
        and (not positive or rel_amp >= MIN_RELATIVE_AMPLITUDE)
    )
    return {
        "significant": significant,
        "p_value": best["p_value"],
        "alpha": alpha,
        "n_frequencies": M,
        "candidates": out_c,
        "best": best,
        "second_peak": second,
        "relative_amplitude": float(rel_amp) if positive else math.nan,
        "coverage": float(best["coverage"]),
        "sharpness": float(best["sharpness"]),
        "n_periods": float(n_periods),
        "residual": sm["residual"],
        "background": sm["background"],
        "basis": sm["basis"],
        "spectrum": {
            "power": Io,
            "fx_per_um": np.fft.fftfreq(Io.shape[1], d=p),
            "fy_per_um": np.fft.fftfreq(Io.shape[0], d=p),
        },
    }


def _harmonic_set(
    fx: float, fy: float, pitch_um: float, n: int, shape: tuple[int, int] | None = None
) -> list[int]:
    """Harmonics ``h <= n`` of the stripe profile to fit.

    A harmonic beyond the grid's square folds back into it: on the grid it
    *is* the folded wave, and a sharp stripe profile sampled on the grid
    contains it (axis-aligned stripes fold theirs onto the same axis, next to
    the fundamental, where they bias the fitted period when left out).
    Harmonics are kept, folded or not, while their folded wave vector lies at
    least 1.5 natural frequency bins from the origin, from every harmonic
    already kept (and its mirror) and from the Nyquist lines' self-mirrors
    (``shape``: the map's, for the bins; without it only the unfolded
    harmonics inside the square)."""
    nyq = 0.5 / pitch_um
    if shape is None:
        return [h for h in range(1, n + 1) if h * max(abs(fx), abs(fy)) < 0.95 * nyq] or [1]
    ny, nx = shape
    period = 1.0 / pitch_um  # the spectrum repeats every 1 / pitch

    def fold(v: float) -> float:
        return (v + period / 2) % period - period / 2

    kept: list[tuple[float, float]] = []
    out: list[int] = []
    for h in range(1, n + 1):
        u = (fold(h * fx) * nx * pitch_um, fold(h * fy) * ny * pitch_um)  # natural bins
        if h > 1 and math.hypot(*u) < 1.5:
            continue
        clash = False
        for kx, ky in kept:
            for sgn in (1, -1):
                dx = (u[0] - sgn * kx + nx / 2) % nx - nx / 2
                dy = (u[1] - sgn * ky + ny / 2) % ny - ny / 2
                if math.hypot(dx, dy) < 1.5:
                    clash = True
        # a wave on its own mirror (on a Nyquist line) has no sine term
        if abs(abs(u[0]) - nx / 2) < 0.75 or abs(abs(u[1]) - ny / 2) < 0.75:
            clash = clash or h > 1
        if not clash:
            kept.append(u)
            out.append(h)
    return out or [1]


def _waves(f: np.ndarray, x: np.ndarray, y: np.ndarray, harmonics: list[int]) -> np.ndarray:
    """cos and sin of each harmonic of the wave (columns), from one complex
    exponential and its powers (two trig calls instead of two per harmonic:
    the refinement evaluates this hundreds of times)."""
    e1 = np.exp(2j * np.pi * (f[0] * x + f[1] * y))
    out = np.empty((x.size, 2 * len(harmonics)))
    want = {h: k for k, h in enumerate(harmonics)}
    e = np.ones_like(e1)
    for h in range(1, max(harmonics) + 1):
        e = e * e1
        k = want.get(h)
        if k is not None:
            out[:, 2 * k] = e.real
            out[:, 2 * k + 1] = e.imag
    return out


def _caveat(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


@single_blas_thread
def stripe_period_angle(
    image: np.ndarray,
    *,
    pitch_um: float,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    harmonics: int = 6,
    min_period_um: float | None = None,
    max_period_um: float | None = None,
    order: np.ndarray | None = None,
    alpha: float = ALPHA,
    background_degree: int = 3,
    x_degree: int | None = None,
    drift_degree: int = 3,
    footprint_radius_um: float | None = None,
    exclude_lines: bool = True,
) -> dict[str, Any]:
    """Period and orientation of the dominant stripes of a map, with 1-sigma
    uncertainties, a significance test, and warnings.

    0. With ``exclude_lines``, thin low-current lines (grain boundaries,
       :func:`~.lines.boundary_lines`: narrower than the footprint diameter
       plus a pitch) are left out first: a few straight boundaries put a
       strong peak in the spectrum that is no pattern of domains. If the
       contrast is significant only with them, it counts when the lines run
       along the stripes (:func:`~.lines.line_alignment` >= 0.7: the thin
       bands of a coarsely sampled pattern), and not otherwise (a grain
       network).

    1. :func:`periodic_contrast` removes the smooth background (tilt,
       curvature, the film's collection term along x, a drift along the
       acquisition ``order``), searches every wave vector the grid resolves
       (the whole square ``|fx|, |fy| <= 1 / (2 pitch)``) and tests the best
       peak against its local spectral background with the look-elsewhere
       correction (``significant``, ``p_value``).
    2. A least-squares fit of the smooth background plus the fundamental and
       its harmonics (a non-sinusoidal stripe profile) over the valid pixels
       refines the wave vector ``(fx, fy)`` (variable projection: the linear
       amplitudes are solved for each trial wave vector).
    3. The covariance of ``(fx, fy)`` is ``s^2 (J^T J)^-1``, inflated by the
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
    rms of the fit's residual), ``phase_rad`` (of the fundamental at the map
    centre: ``cos(2 pi f.(r - c) + phase)`` peaks on the high stripes),
    ``fft_period_um`` and ``fft_angle_deg`` (the spectrum's peak before
    refinement), ``period_um_err_fit``/``_jackknife`` and
    ``angle_deg_err_fit``/``_jackknife``, ``error_inflation``, ``n_pixels``,
    ``acf`` (the autocorrelation estimate, :func:`stripe_period_angle_acf`;
    NaNs if it finds none), and from the test: ``significant``, ``p_value``,
    ``alpha``, ``n_frequencies``, ``second_peak`` (period, angle, power
    ratio, p-value, or None), ``nyquist_fraction`` (the largest wave-vector
    component over the Nyquist frequency), ``n_periods`` (across the map),
    ``relative_amplitude``, and ``warnings`` (``code``, ``message``):
    ``no_periodic_contrast``, ``possible_aliasing``, ``ambiguous_period``.
    The numbers are returned even when the contrast is not significant (the
    caller decides; :func:`~.report.analyze_store` reports none then).
    """
    from scipy.optimize import least_squares

    from .lines import boundary_lines, line_alignment

    z = np.asarray(image, dtype=float)
    ny, nx = z.shape
    p = float(pitch_um)
    kw = {
        "pitch_um": p,
        "order": order,
        "min_period_um": min_period_um,
        "max_period_um": max_period_um,
        "alpha": alpha,
        "degree": background_degree,
        "x_degree": x_degree,
        "drift_degree": drift_degree,
    }
    pc = periodic_contrast(z, **kw)
    line_mask = np.zeros(z.shape, bool)
    lines_carry_pattern = False
    align = math.nan
    line_width = math.nan
    if exclude_lines:
        ln = boundary_lines(pc["residual"], pitch_um=p, footprint_radius_um=footprint_radius_um)
        line_width = ln["width_limit_um"]
        if ln["mask"].any() and np.isfinite(z[~ln["mask"]]).sum() >= 16:
            zm = np.where(ln["mask"], np.nan, z)
            pcm = periodic_contrast(zm, **kw)
            align = line_alignment(ln["mask"], pc["best"]["frequency_per_um"])
            if pc["significant"] and align >= 0.7:
                pass  # the "lines" are the thin bands of the pattern: keep them
            else:
                lines_carry_pattern = pc["significant"] and not pcm["significant"]
                pc, z, line_mask = pcm, zm, ln["mask"]
    ok = np.isfinite(z)
    extent = min(ny, nx) * p
    best = pc["best"]
    I = pc["spectrum"]["power"]
    Py, Px = I.shape
    jy, jx = best["_index"]
    f0 = np.array(best["frequency_per_um"], dtype=float)
    # parabolic sub-bin refinement on each axis (a better starting point)
    dfx, dfy = 1.0 / (Px * p), 1.0 / (Py * p)
    for ax, (a, b, c, d) in enumerate(
        (
            (I[jy, (jx - 1) % Px], I[jy, jx], I[jy, (jx + 1) % Px], dfx),
            (I[(jy - 1) % Py, jx], I[jy, jx], I[(jy + 1) % Py, jx], dfy),
        )
    ):
        den = a - 2 * b + c
        if den < 0:
            f0[ax] += 0.5 * (a - c) / den * d
    fft_f = f0.copy()

    # least-squares refinement over the valid pixels, the smooth background
    # projected out (Frisch-Waugh: the same wave amplitudes as the joint fit)
    x, y = pixel_centers(z.shape, x0_um, y0_um, p)
    xc, yc = map_center_um(z.shape, x0_um, y0_um, p)
    okr = ok.ravel()
    xs, ys, zs = (x - xc)[ok], (y - yc)[ok], z[ok]
    Bs = pc["basis"][okr]
    if zs.size > MAX_FIT_PIXELS:
        pick = np.sort(np.random.default_rng(0).choice(zs.size, MAX_FIT_PIXELS, replace=False))
        xs, ys, zs, Bs = xs[pick], ys[pick], zs[pick], Bs[pick]
    scale = float(np.std(zs)) or 1.0
    zs = (zs - np.mean(zs)) / scale
    harm = _harmonic_set(f0[0], f0[1], p, harmonics, z.shape)

    def projector(sel: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        Q = orthonormal_columns(Bs if sel is None else Bs[sel])
        zz = zs if sel is None else zs[sel]
        return Q, zz - Q @ (Q.T @ zz)

    Q_all, zq_all = projector(None)

    def make_resid(sel: np.ndarray | None):
        Q, zq = (Q_all, zq_all) if sel is None else projector(sel)
        xx, yy = (xs, ys) if sel is None else (xs[sel], ys[sel])

        def resid(f: np.ndarray) -> np.ndarray:
            H = _waves(f, xx, yy, harm)
            Hq = H - Q @ (Q.T @ H)
            c, *_ = np.linalg.lstsq(Hq, zq, rcond=None)
            return zq - Hq @ c

        return resid

    resid = make_resid(None)
    df = 1.0 / (8 * extent)
    sol = least_squares(
        resid,
        f0,
        x_scale=[df, df],
        diff_step=1e-4,
        method="lm",
        max_nfev=100 if pc["significant"] else 30,
    )
    f = sol.x
    if not np.isfinite(f).all() or np.hypot(*(f - fft_f)) > 2.0 / extent:
        f = fft_f  # the refinement wandered off: keep the spectrum's peak
    res = resid(f)
    H = _waves(f, xs, ys, harm)
    Hq = H - Q_all @ (Q_all.T @ H)
    coef, *_ = np.linalg.lstsq(Hq, zq_all, rcond=None)
    n = zs.size
    dof = max(n - Q_all.shape[1] - Hq.shape[1] - 2, 1)
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
    inflation = _residual_inflation(res, xs + xc, ys + yc, f, x0_um, y0_um, p, z.shape, extent)
    cov = cov * inflation
    # block jackknife: refit without each of 4 x 4 blocks of the map; its
    # spread catches misfit that varies across the map (wandering stripes)
    jk = []
    bx = np.clip(((xs + xc - x0_um) / (nx * p) * 4).astype(int), 0, 3)
    by = np.clip(((ys + yc - y0_um) / (ny * p) * 4).astype(int), 0, 3)
    blocks = by * 4 + bx
    # (not for a pattern that is not there: its refits wander, slowly)
    for b in range(16 if pc["significant"] else 0):
        keep = blocks != b
        if keep.sum() < 0.5 * zs.size or keep.all():
            continue
        sb = least_squares(
            make_resid(keep), f, x_scale=[df, df], diff_step=1e-4, method="lm", max_nfev=60
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
    amp = float(math.hypot(coef[0], coef[1]) * scale)
    fft_fr = float(np.hypot(*fft_f))
    nyq = 0.5 / p
    nyq_frac = max(abs(fx), abs(fy)) / nyq
    n_periods = fr * extent
    out: dict[str, Any] = {
        "period_um": period,
        "period_um_err": period_err,
        "angle_deg": (wv + 90.0) % 180.0,
        "angle_deg_err": angle_err,
        "wavevector_angle_deg": wv % 180.0,
        "frequency_per_um": (fx, fy),
        "amplitude": amp,
        "amplitude_to_noise": float(amp / (math.sqrt(s2) * scale)) if s2 > 0 else math.inf,
        "phase_rad": float(math.atan2(-coef[1], coef[0])),
        "harmonics": harm,
        "fft_period_um": 1.0 / fft_fr,
        "fft_angle_deg": (math.degrees(math.atan2(fft_f[1], fft_f[0])) + 90.0) % 180.0,
        "period_um_err_fit": period_err_fit,
        "angle_deg_err_fit": angle_err_fit,
        "period_um_err_jackknife": period_err_jk,
        "angle_deg_err_jackknife": angle_err_jk,
        "error_inflation": float(inflation),
        "n_pixels": int(n),
        "significant": pc["significant"],
        "p_value": pc["p_value"],
        "alpha": pc["alpha"],
        "n_frequencies": pc["n_frequencies"],
        "relative_amplitude": pc["relative_amplitude"],
        "nyquist_fraction": float(nyq_frac),
        "n_periods": float(n_periods),
        "coverage": pc["coverage"],
        "sharpness": pc["sharpness"],
        "line_mask": line_mask,
        "line_fraction": float(
            line_mask.sum() / max(int(np.isfinite(np.asarray(image, float)).sum()), 1)
        ),
        "line_width_limit_um": line_width,
        "line_alignment": align,
        "lines_carry_pattern": lines_carry_pattern,
    }
    # a peak at half the frequency with a good share of the power: the
    # pattern may repeat every two "periods" (the fundamental drowned)
    half = None
    b0 = np.array(best["_natural"], float)
    for c in pc["candidates"]:
        u = np.array(c["_natural"], float)
        for sgn in (1.0, -1.0):
            dv = sgn * u - b0 / 2
            dv[0] = (dv[0] + nx / 2) % nx - nx / 2
            dv[1] = (dv[1] + ny / 2) % ny - ny / 2
            if c is not best and np.hypot(*dv) < 1.5 and c["power"] >= 0.25 * best["power"]:
                half = c
    out_half = (
        None
        if half is None
        else {
            "period_um": half["period_um"],
            "power_ratio": half["power"] / best["power"] if best["power"] > 0 else math.nan,
            "p_value": half["p_value"],
        }
    )
    sec = pc["second_peak"]
    out["second_peak"] = (
        None
        if sec is None
        else {
            "period_um": sec["period_um"],
            "angle_deg": sec["angle_deg"],
            "power_ratio": sec["power"] / best["power"] if best["power"] > 0 else math.nan,
            "p_value": sec["p_value"],
        }
    )
    out["subharmonic"] = out_half
    try:
        out["acf"] = stripe_period_angle_acf(pc["residual"], pitch_um=p, period_hint_um=period)
    except ValueError:
        out["acf"] = {"period_um": math.nan, "angle_deg": math.nan}
    out["warnings"] = stripe_warnings(out, pitch_um=p)
    return out


def stripe_warnings(st: dict[str, Any], *, pitch_um: float) -> list[dict[str, str]]:
    """The caveats of a :func:`stripe_period_angle` result (codes in
    :mod:`.caveats`)."""
    w: list[dict[str, str]] = []
    if not st["significant"]:
        pv = st["p_value"]
        w.append(
            _caveat(
                "no_periodic_contrast",
                f"no periodic contrast above the smooth background and the noise "
                f"(best peak {st['fft_period_um']:.3g} um, p = {pv:.2g} after the look-elsewhere "
                f"correction over {st['n_frequencies']:.0f} frequencies"
                + (
                    f"; amplitude {st['relative_amplitude']:.2g} of the level"
                    if math.isfinite(st.get("relative_amplitude", math.nan))
                    else ""
                )
                + (
                    "; the only periodic contrast lies on thin lines pointing every way "
                    "(a grain network)"
                    if st.get("lines_carry_pattern")
                    else ""
                )
                + (
                    f"; it repeats only {st['n_periods']:.1f} times across the map, too few to "
                    "tell a pattern from a few blobs or a smooth term"
                    if st["n_periods"] < MIN_PERIODS and st["p_value"] < st["alpha"]
                    else ""
                )
                + (
                    f"; its peak is broad (only {st['sharpness']:.1f} x the spectrum two bins "
                    "away): blobs or lines, not a repeating pattern"
                    if st.get("sharpness", math.inf) < MIN_SHARPNESS and st["p_value"] < st["alpha"]
                    else ""
                )
                + "): no period, angle or stripe classification is reported",
            )
        )
        return w
    if st["nyquist_fraction"] > ALIAS_FRACTION:
        w.append(
            _caveat(
                "possible_aliasing",
                f"the stripes' wave vector lies at {st['nyquist_fraction']:.0%} of the Nyquist "
                f"frequency along x or y (fewer than {2 / st['nyquist_fraction']:.1f} pixels per "
                f"period there): stripes finer than twice the pitch ({2 * pitch_um:.3g} um) "
                "fold to here, so the true period and angle may differ; measure again at a "
                "finer pitch or with a turned scan to tell",
            )
        )
    reasons = []
    sec = st.get("second_peak")
    if sec and sec["p_value"] < st["alpha"] and sec["power_ratio"] >= SECOND_PEAK_POWER:
        reasons.append(
            f"a second, unrelated pattern ({sec['period_um']:.3g} um at {sec['angle_deg']:.1f} "
            f"deg) has {sec['power_ratio']:.0%} of the main peak's power"
        )
    rel = st["period_um_err"] / st["period_um"] if st["period_um"] else math.inf
    if rel > MAX_RELATIVE_PERIOD_ERR:
        reasons.append(
            f"the period is poorly determined ({st['period_um']:.3g} +- "
            f"{st['period_um_err']:.2g} um)"
        )
    half = st.get("subharmonic")
    if half:
        reasons.append(
            f"a peak at twice the period ({half['period_um']:.3g} um) has "
            f"{half['power_ratio']:.0%} of the main peak's power: the pattern may repeat "
            "every two bands"
        )
    if st["p_value"] > MARGINAL_P:
        reasons.append(
            f"the periodic contrast is only marginally significant (p = {st['p_value']:.2g}: "
            "structure that is no pattern, such as boundary lines, can reach it)"
        )
    # (the autocorrelation's cross-check stays a note of the report: its
    # lobe-shape estimate of the angle fails by itself at 10 % noise or with
    # masked lines)
    if reasons:
        w.append(
            _caveat(
                "ambiguous_period",
                "; ".join(reasons)
                + ": the stripes may be irregular, crossed or barely sampled; look at the map",
            )
        )
    return w


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
    # pixel noise adds to the zero lag only: take the zero lag from its four
    # neighbours, so that noise does not shrink the central lobe to a pixel
    nb = np.nanmean([acf[cy - 1, cx], acf[cy + 1, cx], acf[cy, cx - 1], acf[cy, cx + 1]])
    if np.isfinite(nb) and 0 < nb < 1:
        acf = acf / nb
        acf[cy, cx] = 1.0
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
