"""Domain classification that survives noise, and class levels whose intervals
carry the classification's uncertainty and the systematic terms.

The map is analysed in log space (``v = log value``): the pixel scatter and
the back contact's drift are multiplicative, and the [100]/[001] ratio is a
difference of log levels. Its smooth background is fitted *jointly* with the
classes, so neither the domains tilt the background nor the background
decides the classes: a plane, x-only terms (the film's collection term
depends on the distance to the Au pad; :func:`~.report.analyze_map` takes
its known variation out first when there is a series model) and terms in the
acquisition order (a drift; :func:`~.geometry.smooth_basis`). A conductance
map has no other slow terms (its topography does not change it).

Two classifiers:

- **stripe model** (:func:`classify_domains` with significant stripes): the
  [001] class is a band of width ``d`` (the [001] area fraction) per period
  along the fitted wave vector, at a fitted phase; each landing sees the
  fraction ``phi`` of its footprint that lies on [001] (a disk of radius
  ``alpha`` periods over the bands, in closed form: :func:`band_fraction`);
  the spreading conductances of the parts add (``g100 (1 + kappa phi)``) and
  sit in series with the rest of the landing (``series_fraction``: the
  spreading resistance's share), :func:`_blend`. ``(phase, d, kappa,
  alpha)`` are fitted by least squares with the background solved for each
  trial (variable projection), outliers (beyond 4 robust sigma and a quarter
  of the step: boundary remains, bad landings) left out. Every pixel informs
  the two levels, so the contrast survives pixel noise far larger than
  itself; ``alpha`` (at least the footprint; wander adds to it) is fitted,
  so the footprint's blending does not bias the levels. When the model
  leaves materially more than the pixel noise (neighbour differences), the
  mixture takes over.
- **Gaussian mixture** (otherwise): two classes with a common sigma over the
  background, by EM, each pixel with its posterior probability; the
  two-class model must beat one class (BIC > 10), hold 3 % of the pixels,
  differ by a noise sigma and 0.2 %, and its low class must be regions
  wider than lines. The levels come from the pixels a footprint plus a
  pitch away from the other class.

Intervals (95 %) of the log step ``s``: ``z SE + systematic``, with

- SE: the larger of the fit's (the covariance of all fitted parameters, so
  the uncertainty of the class boundaries is in it; for the mixture the
  empirical information of the EM, which includes the overlap of the
  classes) and a 4 x 4 block jackknife (misfit that varies across the map);
- systematic, added: the spread of ``s`` over other backgrounds (fewer x
  terms and no drift; a cubic in x and y, more x terms and a faster drift:
  how far the slow terms could still move it; large when domains are blobs
  the size of the map) and the footprint blending (half the blend model's
  correction when the footprint covers half or more of the narrower band,
  else the difference from the pixels a footprint away from an edge, and the
  step with the band as much wider or narrower as the gaps between the phases
  the grid samples allow).

The [001] fraction's interval: z SE plus half the change under another
series share (the blend's shape places the edges) plus those phase gaps; for
the mixture a quarter of the pixels on a class boundary.

Labels: 0 [100], 1 [001], -1 none (NaN, lines, outliers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._blas import single_blas_thread
from .domains import LABEL_001, LABEL_100, LABEL_NONE, otsu_threshold
from .geometry import map_center_um, orthonormal_columns, pixel_centers, smooth_basis

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054
#: a two-class mixture must lower the BIC by this much over one class
MIN_DELTA_BIC = 10.0
#: pixels further than this many robust sigmas from the model are outliers
OUTLIER_SIGMAS = 4.0
#: expected misclassification rate above which the classification is uncertain
MAX_MISCLASSIFICATION = 0.05
#: residual sigma over the pixel noise above which the regular stripe model
#: does not describe the map (irregular or wandering domains)
MAX_MISFIT = 1.15
#: ... and when the excess residual variance is at least that of this fraction
#: of the pixels in the wrong class (a noise-free map's tiny model errors are
#: no reason to drop the model)
MATERIAL_MISFIT = 0.01
#: two classes without stripes must differ by at least this (log): a
#: noise-free map's smooth terms leave structured residuals of 1e-5 that a
#: mixture splits "significantly"
MIN_STEP = 2e-3
#: each class needs this many pixels further than the footprint plus a pitch
#: from the other (whole footprints of one class, whose level is no blend)
MIN_CORE_PIXELS = 8


def _caveat(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


# ------------------------------------------------------------------ helpers
def _disk_fraction(t: np.ndarray) -> np.ndarray:
    """Fraction of a unit disk's area at ``x < t`` (0 at -1, 1 at +1)."""
    t = np.clip(t, -1.0, 1.0)
    return (np.arccos(-t) + t * np.sqrt(1.0 - t * t)) / math.pi


def band_fraction(u: np.ndarray, center: float, d: float, alpha: float) -> np.ndarray:
    """Fraction of a disk of radius ``alpha`` (in periods) centred at ``u``
    (the coordinate across the stripes, in periods) that lies on the bands
    ``[center - d/2, center + d/2] + k``."""
    alpha = max(alpha, 1e-6)
    du = (u - center + 0.5) % 1.0 - 0.5  # distance to the nearest band centre
    out = np.zeros_like(du)
    reach = int(math.ceil(alpha)) + 1
    for k in range(-reach, reach + 1):
        hi = (k + d / 2 - du) / alpha
        lo = (k - d / 2 - du) / alpha
        out += _disk_fraction(hi) - _disk_fraction(lo)
    return np.clip(out, 0.0, 1.0)


def _basis(shape, degree, x_degree, order, drift_degree):
    from .stripes import _basis_degrees

    d, xd = _basis_degrees(shape, degree, x_degree)
    return smooth_basis(shape, degree=d, x_degree=xd, order=order, drift_degree=drift_degree)


def _alt_bases(shape, degree, x_degree, order, drift_degree) -> list[np.ndarray]:
    """Other plausible backgrounds: fewer x terms and no drift; two more
    degrees in x and y (a curved background) and a faster drift. Their spread
    of the step is a systematic term: large when the domains are blobs the
    size of the map, which a smooth background can imitate."""
    from .stripes import _basis_degrees

    d, xd = _basis_degrees(shape, degree, x_degree)
    d2, _ = _basis_degrees(shape, d + 2, None)
    out = [smooth_basis(shape, degree=d, x_degree=max(xd - 2, d), order=None)]
    out.append(
        smooth_basis(
            shape,
            degree=max(d2, d),
            x_degree=xd + 2,
            order=order,
            drift_degree=drift_degree + 2 if order is not None else 0,
        )
    )
    return out


def _wls_project(B: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the weighted background columns (rows scaled by sqrt w)."""
    return orthonormal_columns(B * np.sqrt(w)[:, None])


def _robust_sigma(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if x.size < 3:
        return math.nan
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _neighbour_noise(v: np.ndarray, same: np.ndarray | None = None) -> float:
    """Pixel noise from the differences of horizontal and vertical neighbours
    (both inside ``same``, e.g. the core of one class), 1.4826 MAD / sqrt 2."""
    diffs = []
    for ax in (0, 1):
        d = np.diff(v, axis=ax)
        if same is not None:
            a = same[:-1, :] & same[1:, :] if ax == 0 else same[:, :-1] & same[:, 1:]
            d = np.where(a, d, np.nan)
        diffs.append(d.ravel())
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    if d.size < 8:
        return math.nan
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def _block_ids(shape: tuple[int, int], nb: int = 4) -> np.ndarray:
    ny, nx = shape
    ry = np.minimum(np.arange(ny) * nb // ny, nb - 1)
    rx = np.minimum(np.arange(nx) * nb // nx, nb - 1)
    return ry[:, None] * nb + rx[None, :]


# --------------------------------------------------------- the stripe model
def _blend(k: float, phi: np.ndarray, gamma: float) -> np.ndarray:
    """log(value / [100] value) of a landing with the fraction ``phi`` of its
    footprint on [001]: the spreading conductances add,
    ``g = g100 (1 + k phi)``, and ``gamma`` (the spreading resistance's share
    of the [100] landing's total) puts them in series with the rest:
    ``value / value_100 = 1 / ((1 - gamma) + gamma / (1 + k phi))``."""
    q = 1.0 + k * np.asarray(phi, dtype=float)
    if gamma >= 1.0:
        return np.log(q)
    return -np.log((1.0 - gamma) + gamma / q)


def _dblend(k: float, phi: np.ndarray, gamma: float) -> np.ndarray:
    """d _blend / d k."""
    phi = np.asarray(phi, dtype=float)
    q = 1.0 + k * phi
    if gamma >= 1.0:
        return phi / q
    return gamma * phi / q**2 / ((1.0 - gamma) + gamma / q)


def _step(k: float, gamma: float) -> float:
    """The log step of a whole [001] landing over a [100] one."""
    return float(_blend(max(k, -0.999), np.array(1.0), gamma))


class _StripeModel:
    """``v = B beta + log(1 + kappa phi(u; center, d, alpha))`` over the used
    pixels, beta profiled out."""

    def __init__(self, v, used, B, u, sign, gamma=1.0):
        self.gamma = gamma
        self.v = v[used]
        self.B = B[used.ravel()]
        self.u = u[used]
        self.sign = sign  # +1: [001] is the low class
        self.w = np.ones(self.v.size)
        self.Q = _wls_project(self.B, self.w)

    def reweight(self, w: np.ndarray) -> None:
        self.w = w
        self.Q = _wls_project(self.B, w)

    def phi(self, th: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        c, d, _k, la = th
        return band_fraction(self.u if u is None else u, c, d, math.exp(la))

    def resid(self, th: np.ndarray) -> np.ndarray:
        """Weighted residual with the background projected out."""
        _c, d, k, _la = th
        if not (0.0 < d < 1.0) or k <= -0.999:
            return np.full(self.v.size, 1e3)
        m = _blend(k, self.phi(th), self.gamma)
        sw = np.sqrt(self.w)
        y = (self.v - m) * sw
        return y - self.Q @ (self.Q.T @ y)

    def background(self, th: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """beta and the unweighted residual."""
        m = _blend(th[2], self.phi(th), self.gamma)
        sw = np.sqrt(self.w)
        beta, *_ = np.linalg.lstsq(self.B * sw[:, None], (self.v - m) * sw, rcond=None)
        return beta, self.v - m - self.B @ beta


def _invert_step(s: float, gamma: float) -> float:
    """k of a measured log step s (inverse of :func:`_step`)."""
    if gamma >= 1.0:
        return math.expm1(s)
    # exp(-s) = (1 - gamma) + gamma / (1 + k)
    den = math.exp(-s) - (1.0 - gamma)
    if den <= 1e-6:
        return 1e3
    return gamma / den - 1.0


def _fold_init(v: np.ndarray, u: np.ndarray, sign: int) -> tuple[float, float]:
    """Band centre and width (periods) to start from: the pixels below the
    middle of the two levels (10th and 90th percentiles) give the width (their
    share) and the centre (their circular mean phase). No phase bins: on a
    grid commensurate with the period (8 pixels per period along an axis)
    most bins would be empty."""
    r = sign * np.asarray(v, dtype=float)
    lo, hi = np.percentile(r, [10, 90])
    low = r < 0.5 * (lo + hi)
    if not low.any() or low.all():
        return 0.0, 0.5
    d = float(np.clip(low.mean(), 0.1, 0.9))
    ang = np.angle(np.sum(np.exp(2j * np.pi * np.mod(u[low], 1.0))))
    return float((ang / (2 * np.pi)) % 1.0), d


def _stripe_fit(v, used, B, u, sign, alpha0, init=None, n_reweight=2, alpha_min=1e-4, gamma=1.0):
    """Fit the stripe model; returns dict with theta, cov, sigma, weights..."""
    from scipy.optimize import least_squares

    m = _StripeModel(v, used, B, u, sign, gamma)
    if init is None:
        beta, *_ = np.linalg.lstsq(m.B, m.v, rcond=None)
        r0 = m.v - m.B @ beta
        c0, d0 = _fold_init(r0, m.u, sign)
        lo = np.percentile(sign * r0, 100 * d0 / 2)
        hi = np.percentile(sign * r0, 100 * (1 - (1 - d0) / 2))
        k0 = _invert_step(sign * (lo - hi), gamma)
        th0 = np.array([c0, d0, k0 if k0 > -0.99 else -0.5, math.log(alpha0)])
    else:
        th0 = np.asarray(init, float).copy()
    lb = [-np.inf, 0.02, -0.995, math.log(max(alpha_min, 1e-4))]
    ub = [np.inf, 0.98, 1e3, math.log(0.45)]
    th0[1] = float(np.clip(th0[1], 0.03, 0.97))
    th0[3] = float(np.clip(th0[3], lb[3] + 1e-3, ub[3] - 1e-3))
    th = th0
    sol = None
    for it in range(n_reweight + 1):
        sol = least_squares(
            m.resid, th, bounds=(lb, ub), x_scale=[0.02, 0.02, 0.05, 0.3], method="trf"
        )
        th = sol.x
        _, res = m.background(th)
        sig = _robust_sigma(res[m.w > 0])
        if it < n_reweight and sig > 0:
            # outliers lie far from the model against the noise and against the
            # contrast (a noise-free map's edges miss the model by a little)
            cut = max(OUTLIER_SIGMAS * sig, 0.25 * abs(_step(float(th[2]), gamma)))
            w = (np.abs(res) <= cut).astype(float)
            if np.array_equal(w, m.w):
                break
            m.reweight(w)
    r = m.resid(th)
    n_used = int((m.w > 0).sum())
    dof = max(n_used - m.Q.shape[1] - 4, 1)
    s2 = float(r @ r) / dof
    J = sol.jac
    try:
        cov = s2 * np.linalg.pinv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.full((4, 4), np.nan)
    beta, res = m.background(th)
    return {"theta": th, "cov": cov, "s2": s2, "model": m, "beta": beta, "residual": res}


def _kappa_given(v, used, B, phi, w, k0, gamma=1.0):
    """kappa with the geometry fixed (Gauss-Newton on the projected model)."""
    vv, BB, ph, ww = v[used], B[used.ravel()], phi[used], w[used]
    Q = _wls_project(BB, ww)
    sw = np.sqrt(ww)
    k = k0
    for _ in range(6):
        m = _blend(k, ph, gamma)
        g = _dblend(k, ph, gamma)
        y = (vv - m) * sw
        y = y - Q @ (Q.T @ y)
        gq = g * sw
        gq = gq - Q @ (Q.T @ gq)
        den = float(gq @ gq)
        if den <= 0:
            break
        step = float(gq @ y) / den
        k = max(k + step, -0.99)
        if abs(step) < 1e-10:
            break
    m = _blend(k, ph, gamma)
    g = _dblend(k, ph, gamma)
    y = (vv - m) * sw
    y = y - Q @ (Q.T @ y)
    gq = g * sw
    gq = gq - Q @ (Q.T @ gq)
    dof = max(int((ww > 0).sum()) - Q.shape[1] - 1, 1)
    s2 = float(y @ y) / dof
    se = math.sqrt(s2 / float(gq @ gq)) if float(gq @ gq) > 0 else math.nan
    return k, se


# ------------------------------------------------------------- the mixture
def _mixture_em(v, used, B, sign, p0=None, n_iter=200, tol=1e-9):
    """Two Gaussian classes with a common sigma over a background B beta;
    returns posterior of the low class (``sign`` +1) etc."""
    vv = v[used]
    BB = B[used.ravel()]
    n, k = BB.shape
    if p0 is None:
        beta, *_ = np.linalg.lstsq(BB, vv, rcond=None)
        r = vv - BB @ beta
        try:
            thr = otsu_threshold(r)
        except ValueError:
            thr = float(np.median(r))
        p = ((sign * r) < sign * thr).astype(float)
    else:
        p = np.clip(p0, 1e-6, 1 - 1e-6)
    ll_old = -np.inf
    BtB = BB.T @ BB
    for _ in range(n_iter):
        # M-step: [B, p] regression with the EM correction s^2 sum p(1-p)
        A = np.empty((k + 1, k + 1))
        A[:k, :k] = BtB
        A[:k, k] = A[k, :k] = BB.T @ p
        A[k, k] = p.sum()
        rhs = np.concatenate([BB.T @ vv, [p @ vv]])
        try:
            sol = np.linalg.solve(A, rhs)
        except np.linalg.LinAlgError:
            sol = np.linalg.lstsq(A, rhs, rcond=None)[0]
        beta, s = sol[:k], float(sol[k])
        base = BB @ beta
        r0 = vv - base
        r1 = r0 - s
        pi = float(np.clip(p.mean(), 1e-6, 1 - 1e-6))
        sig2 = float(np.sum((1 - p) * r0**2 + p * r1**2) / n)
        sig2 = max(sig2, 1e-30)
        # E-step
        l0 = np.log(1 - pi) - 0.5 * r0**2 / sig2
        l1 = np.log(pi) - 0.5 * r1**2 / sig2
        mx = np.maximum(l0, l1)
        lse = mx + np.log(np.exp(l0 - mx) + np.exp(l1 - mx))
        p = np.exp(l1 - lse)
        ll = float(np.sum(lse) - 0.5 * n * np.log(2 * np.pi * sig2))
        if abs(ll - ll_old) < tol * max(1.0, abs(ll)):
            break
        ll_old = ll
    # keep the labelling: class 1 is the low class for sign +1
    if sign * s > 0:
        p = 1 - p
        beta = beta + s * np.linalg.lstsq(BB, np.ones(n), rcond=None)[0]
        s = -s
        pi = 1 - pi
    return {"p": p, "beta": beta, "s": s, "sigma": math.sqrt(sig2), "pi": pi, "loglik": ll}


def _mixture_se(v, used, B, fit):
    """Standard errors of (s, pi) from the empirical information (sum of the
    per-pixel score outer products) over all parameters (beta, s, pi, sigma)."""
    vv = v[used]
    BB = B[used.ravel()]
    p, beta, s, sig, pi = fit["p"], fit["beta"], fit["s"], fit["sigma"], fit["pi"]
    r0 = vv - BB @ beta
    r1 = r0 - s
    s2 = sig * sig
    g_beta = ((1 - p) * r0 + p * r1)[:, None] * BB / s2
    g_s = p * r1 / s2
    g_pi = p / pi - (1 - p) / (1 - pi)
    g_sig = ((1 - p) * r0**2 + p * r1**2) / (s2 * sig) - 1.0 / sig
    G = np.column_stack([g_beta, g_s, g_pi, g_sig])
    info = G.T @ G
    try:
        cov = np.linalg.pinv(info)
    except np.linalg.LinAlgError:
        return math.nan, math.nan
    k = BB.shape[1]
    return math.sqrt(max(cov[k, k], 0.0)), math.sqrt(max(cov[k + 1, k + 1], 0.0))


def _one_class_loglik(v, used, B):
    vv = v[used]
    BB = B[used.ravel()]
    beta, *_ = np.linalg.lstsq(BB, vv, rcond=None)
    r = vv - BB @ beta
    s2 = max(float(r @ r) / r.size, 1e-30)
    return float(-0.5 * r.size * (np.log(2 * np.pi * s2) + 1))


def _distance_to_other(labels: np.ndarray, pitch_um: float) -> np.ndarray:
    """Distance (um) from each labelled pixel's centre to the nearest pixel
    centre of the other class (inf if none)."""
    from scipy import ndimage

    out = np.full(labels.shape, np.inf)
    for lab, other in ((LABEL_100, LABEL_001), (LABEL_001, LABEL_100)):
        oth = labels == other
        if not oth.any():
            continue
        d = ndimage.distance_transform_edt(~oth) * pitch_um
        out = np.where(labels == lab, d, out)
    return out


def _widths_um(mask: np.ndarray, pitch_um: float) -> float:
    """Typical width of the regions of a mask (um): twice the median of the
    distance transform on their ridges (local maxima), minus half a pixel."""
    from scipy import ndimage

    if not mask.any():
        return math.nan
    dt = ndimage.distance_transform_edt(mask)
    ridge = mask & (dt >= ndimage.maximum_filter(dt, size=3))
    vals = dt[ridge]
    if vals.size == 0:
        return math.nan
    return float((2 * np.median(vals) - 1) * pitch_um)


# ------------------------------------------------------------- classify
def _jackknife_step_se(v, live, B, phi, kappa0, gamma) -> float:
    """Block jackknife (4 x 4 blocks) of the step with the geometry fixed:
    misfit that varies across the map."""
    blocks = _block_ids(v.shape)
    ks = []
    for b in range(16):
        sel = live & (blocks != b)
        if sel.sum() < 0.5 * live.sum():
            continue
        kb, _ = _kappa_given(v, sel, B, phi, sel.astype(float), kappa0, gamma)
        ks.append(_step(kb, gamma))
    return _jackknife_se(ks)


def _jackknife_se(vals: list[float]) -> float:
    if len(vals) < 4:
        return math.nan
    a = np.asarray(vals, dtype=float)
    return float(math.sqrt((a.size - 1) / a.size * np.sum((a - a.mean()) ** 2)))


def _band_distance_um(u: np.ndarray, center: float, d: float, fr: float) -> np.ndarray:
    """Distance (um) from each pixel to the nearest band edge of the model."""
    du = (u - center + 0.5) % 1.0 - 0.5
    return np.minimum(np.abs(du - d / 2), np.abs(du + d / 2)) / fr


def _phase_gap(u: np.ndarray, center: float, d: float, alpha: float) -> float:
    """Half the summed gaps between sampled phases (periods) around the two
    band edges, less the blur that bridges them: how far the band width can
    move without any pixel changing class."""
    du = np.unique(np.round((u - center + 0.5) % 1.0 - 0.5, 6))
    if du.size < 2:
        return 0.5
    ext = np.concatenate([du - 1.0, du, du + 1.0])
    total = 0.0
    for e in (-d / 2, d / 2):
        k = np.searchsorted(ext, e)
        gap = ext[min(k, ext.size - 1)] - ext[max(k - 1, 0)]
        total += max(gap - alpha, 0.0)
    return 0.5 * total


def _stripe_systematics(v, st, B, alts, kappa, gamma, s, covers):
    """(background, blending) systematic terms of a stripe-model step."""
    live, w, phi, phi_sharp, core = st["used"], st["w"], st["phi"], st["phi_sharp"], st["core"]
    sys_bg = 0.0
    for Ba in alts:
        ka, _ = _kappa_given(v, live, Ba, phi, w, kappa, gamma)
        sys_bg = max(sys_bg, abs(_step(ka, gamma) - s))
    ks_, _ = _kappa_given(v, live, B, phi_sharp, w, kappa, gamma)
    s_sharp = _step(ks_, gamma)
    n1 = int((core & (phi_sharp > 0.5)).sum())
    n0 = int((core & (phi_sharp <= 0.5)).sum())
    if covers or n1 < 8 or n0 < 8:
        # few landings wholly in one domain: the levels rest on the blend
        # model; half its correction is the systematic
        return sys_bg, 0.5 * abs(s - s_sharp)
    kc, _ = _kappa_given(v, core, B, phi_sharp, core.astype(float), kappa, gamma)
    return sys_bg, abs(_step(kc, gamma) - s)


@single_blas_thread
def classify_domains(
    image: np.ndarray,
    *,
    pitch_um: float,
    x0_um: float = 0.0,
    y0_um: float = 0.0,
    stripes: dict[str, Any] | None = None,
    order: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    footprint_radius_um: float | None = None,
    high_is_100: bool = True,
    series_fraction: float = 1.0,
    background_degree: int = 1,
    x_degree: int | None = None,
    drift_degree: int = 3,
) -> dict[str, Any]:
    """Classify a map's pixels into [100] and [001] (module docstring).

    ``stripes``: a :func:`~.stripes.stripe_period_angle` result; its wave
    vector and phase seed the stripe model when it is ``significant``.
    ``exclude``: pixels to leave out (e.g. its ``line_mask``: grain-boundary
    lines). ``order``: each pixel's place in the acquisition order (drift).
    The background is a plane, x-only terms up to ``x_degree`` (the film's
    collection term; default :func:`~.geometry.default_x_degree`: pass 1 for
    a map whose film term is already removed) and the drift terms: what a
    conductance map has (its topography does not change it); a more flexible
    one is among the alternatives of the systematic term.
    ``footprint_radius_um``: the droplet's (the blur of the band edges is at
    least this; and the blending warning). ``series_fraction``: the share of
    a [100] landing's resistance that is spreading resistance (1 for a map
    of spreading conductance; ``1 - G R_series`` for a measured map): a
    footprint on both domains blends their spreading conductances, which
    sit in series with the rest.

    Returns ``method`` (``"stripe_model"``, ``"mixture"`` or ``"none"``: no
    two classes), ``labels``, ``p001`` (probability or footprint fraction of
    [001] per pixel), ``fraction_001`` and ``fraction_001_ci95``,
    ``log_step`` (``log`` [001] level minus [100] level, at the map) with
    ``log_step_se`` and ``log_step_systematic`` (dict of terms),
    ``level_100``/``level_001`` (map units), ``n_100``/``n_001``,
    ``separation`` (step over the pixel noise), ``misclassification``
    (expected fraction of wrongly classed pixels), ``band_width_um``
    (narrowest class), ``blur_um`` (the stripe model's fitted edge blur),
    ``noise`` (relative pixel noise), ``warnings`` and, for
    :func:`class_levels` on other maps, ``_state``.
    """
    z = np.asarray(image, dtype=float)
    p = float(pitch_um)
    sign = 1 if high_is_100 else -1
    gamma = float(np.clip(series_fraction, 1e-3, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(z > 0, np.log(z), np.nan)
    ok = np.isfinite(v)
    excl = np.zeros(z.shape, bool) if exclude is None else np.asarray(exclude, bool)
    used = ok & ~excl
    warnings: list[dict[str, str]] = []
    if used.sum() < 16:
        raise ValueError(f"too few valid pixels to classify ({int(used.sum())})")
    B = _basis(z.shape, background_degree, x_degree, order, drift_degree)
    alts = _alt_bases(z.shape, background_degree, x_degree, order, drift_degree)
    x, y = pixel_centers(z.shape, x0_um, y0_um, p)
    xc, yc = map_center_um(z.shape, x0_um, y0_um, p)
    a = footprint_radius_um
    state: dict[str, Any] = {"B": B, "alts": alts, "sign": sign, "excl": excl, "order": order}
    out: dict[str, Any] = {"warnings": warnings}

    use_stripes = bool(stripes and stripes.get("significant"))
    state["stripes_significant"] = use_stripes
    if use_stripes:
        fxy = np.asarray(stripes["frequency_per_um"], float)
        fr = float(np.hypot(*fxy))
        u = fxy[0] * (x - xc) + fxy[1] * (y - yc)  # periods across the stripes
        alpha0 = max(a or 0.0, p / 4) * fr
        # the blur is at least (nearly) the footprint's, when it is known
        alpha_min = min(0.8 * a * fr, 0.4) if a else 1e-4
        fit = _stripe_fit(
            v,
            used,
            B,
            np.where(used, u, 0.0),
            sign,
            alpha0,
            alpha_min=alpha_min,
            gamma=gamma,
        )
        th, cov = fit["theta"], fit["cov"]
        mdl = fit["model"]
        res = fit["residual"]
        w_used = mdl.w
        sig_res = float(np.sqrt(np.sum(w_used * res**2) / max(w_used.sum() - 4, 1)))
        phi_all = band_fraction(u, th[0], th[1], math.exp(th[3]))
        # pixel noise from neighbours inside one class
        core_same = ok & ((phi_all < 0.02) | (phi_all > 0.98))
        sig_noise = _neighbour_noise(np.where(ok, v, np.nan), core_same)
        misfit = sig_res / sig_noise if sig_noise > 0 else 1.0
        n_used = int(w_used.sum())
        kappa = float(th[2])
        s = _step(kappa, gamma)
        # a misfit beyond a fixed margin and its own noise (the ratio of two
        # variances from ~n pixels), and material: as much excess variance as
        # a few per cent of the pixels in the wrong class would give
        tol = max(MAX_MISFIT, 1.0 + 4.0 / math.sqrt(max(n_used, 1)))
        excess = (sig_res**2 - sig_noise**2) / max(s * s, 1e-300)
        state["misfit_excess"] = excess
        if misfit > tol and excess > MATERIAL_MISFIT:
            warnings.append(
                _caveat(
                    "classification_uncertain",
                    f"the regular stripe model leaves {misfit:.2f} x the pixel noise (irregular, "
                    "wandering or crossed domains): the classes come from a two-class mixture "
                    "instead",
                )
            )
            use_stripes = False
            state["stripe_misfit"] = misfit
    if use_stripes:
        w_full = np.zeros(z.shape)
        w_full[used] = w_used
        live = used & (w_full > 0)
        live_for_alt = live

        def th_for_alt(g_alt: float) -> np.ndarray:
            t = th.copy()
            t[2] = _invert_step(_step(float(th[2]), gamma), g_alt)
            return t

        outl = used & (w_full == 0)
        dsdk = float(_dblend(kappa, np.array(1.0), gamma))
        se_fit = math.sqrt(max(cov[2, 2], 0.0)) * dsdk
        # block jackknife of the step (geometry fixed): misfit varying in space
        se_jk = _jackknife_step_se(v, live, B, phi_all, kappa, gamma)
        se = float(np.nanmax([se_fit, se_jk]))
        # the geometry's share of the step's error (class_levels reuses it)
        k_fix, se_fix = _kappa_given(v, live, B, phi_all, w_full, kappa, gamma)
        se_fix_s = se_fix * float(_dblend(k_fix, np.array(1.0), gamma))
        state["geo_factor"] = max(1.0, se_fit / se_fix_s) if se_fix_s > 0 else 1.0
        labels = np.where(
            ok & ~excl, np.where(phi_all >= 0.5, LABEL_001, LABEL_100), LABEL_NONE
        ).astype(np.int8)
        labels[outl] = LABEL_NONE
        d = float(th[1])
        se_d = math.sqrt(max(cov[1, 1], 0.0))
        # the [001] area fraction of the model (the fraction of pixels in it
        # scatters with how the grid samples narrow bands)
        frac = d
        # the blend's shape sets where the edges are: the band width with
        # another series share (1 if one was given, else 0.3), half the
        # difference as a systematic
        g_alt = 1.0 if gamma < 0.999 else 0.3
        fit_alt = _stripe_fit(
            v,
            live_for_alt,
            B,
            np.where(used, u, 0.0),
            sign,
            alpha0,
            init=th_for_alt(g_alt),
            n_reweight=0,
            alpha_min=alpha_min,
            gamma=g_alt,
        )
        sys_d = 0.5 * abs(float(fit_alt["theta"][1]) - d)
        # where the grid samples few phases (a period of a whole number of
        # pixels along an axis), an edge can lie anywhere between two sampled
        # phases that the blur does not bridge
        gap_d = _phase_gap(u[live], float(th[0]), d, math.exp(th[3]))
        sys_d += gap_d
        half_f = Z95 * se_d + sys_d  # the pixel fraction follows d one to one
        blur = math.exp(th[3]) / fr
        out.update(
            {
                "method": "stripe_model",
                "labels": labels,
                "p001": np.where(ok, phi_all, np.nan),
                "fraction_001": frac,
                "fraction_001_ci95": [max(frac - half_f, 0.0), min(frac + half_f, 1.0)],
                "fraction_001_systematic": sys_d,
                "duty_001": d,
                "blur_um": blur,
                "band_width_um": min(d, 1 - d) / fr,
                "log_step": s,
                "log_step_se": se,
                "log_step_se_fit": se_fit,
                "log_step_se_jackknife": se_jk,
                "misfit": misfit,
                # pixels within 1.96 SE of a band edge (the edges' uncertainty)
                "misclassification": float(
                    min(1.0, 2 * 2 * Z95 * math.sqrt(max(cov[0, 0] + cov[1, 1] / 4, 0.0)))
                ),
                "outliers": int(outl.sum()),
                "noise": sig_noise,
                "separation": abs(s) / sig_noise if sig_noise > 0 else math.inf,
            }
        )
        state["beta"] = fit["beta"]
        bg = B[live.ravel()] @ fit["beta"]
        out["level_100"] = float(np.exp(np.median(bg)))
        out["level_001"] = out["level_100"] * math.exp(s)
        phi_sharp = band_fraction(u, th[0], th[1], 1e-6)
        dist = _band_distance_um(u, th[0], d, fr)
        margin = max(blur, a or 0.0) + p / 2
        core = live & (dist > margin)
        state.update(
            {
                "method": "stripe_model",
                "u": u,
                "theta": th,
                "cov": cov,
                "used": live,
                "w": w_full,
                "phi": phi_all,
                "phi_sharp": phi_sharp,
                "core": core,
                "gamma": gamma,
            }
        )
        out["n_core_001"] = int((core & (phi_sharp > 0.5)).sum())
        out["n_core_100"] = int((core & (phi_sharp <= 0.5)).sum())
        covers = 2 * max(blur, a or 0.0) >= 0.5 * out["band_width_um"]
        sys_bg, sys_blend = _stripe_systematics(v, state, B, alts, kappa, gamma, s, covers)
        if gap_d > 1e-4:
            # the step with the band as much wider and narrower
            for dd in (d - gap_d, d + gap_d):
                if 0.01 < dd < 0.99:
                    ph_ = band_fraction(u, th[0], dd, math.exp(th[3]))
                    kd, _ = _kappa_given(v, live, B, ph_, w_full, kappa, gamma)
                    sys_blend = max(sys_blend, abs(_step(kd, gamma) - s))
        out["log_step_systematic"] = {"background": sys_bg, "blending": sys_blend}
        if covers:
            _blend_warning(out, warnings, a, blur, out["band_width_um"], p)

    if not use_stripes:
        _mixture_classify(v, ok, used, excl, B, alts, sign, p, a, out, state, warnings)
    state["sign"] = sign
    out["_state"] = state
    # the smooth background (log) and the map without it, level kept
    beta = state.get("beta")
    if beta is None:
        beta, *_ = np.linalg.lstsq(B[used.ravel()], v[used], rcond=None)
    bg = (B @ beta).reshape(z.shape)
    ref = float(np.median(bg[used]))
    out["background_log"] = np.where(ok, bg, np.nan)
    out["flattened"] = np.where(ok, np.exp(v - bg + ref), np.nan)
    out["n_100"] = int((out["labels"] == LABEL_100).sum())
    out["n_001"] = int((out["labels"] == LABEL_001).sum())
    if out["method"] != "none":
        sys_tot = sum(out["log_step_systematic"].values())
        half = Z95 * out["log_step_se"] + sys_tot
        s = out["log_step"]
        out["log_step_ci95"] = [s - half, s + half]
        uncertain = (
            out.get("misclassification", 0.0) > MAX_MISCLASSIFICATION
            or out.get("separation", math.inf) < 2.0
        )
        if uncertain and not any(w["code"] == "classification_uncertain" for w in warnings):
            noise = abs(s) / out["separation"] if out["separation"] > 0 else math.nan
            if out["method"] == "stripe_model":
                msg = (
                    f"the pixel noise ({noise:.3g} in log) is as large as the step between the "
                    f"classes ({abs(s):.3g}): single pixels cannot be classed, so the classes rest "
                    "on the regular stripe model (at this noise a misfit of the model, e.g. "
                    "domains of several widths, would not show)"
                )
            else:
                msg = (
                    f"the classes overlap: step {abs(s):.3g} (log) against a pixel noise of "
                    f"{noise:.3g}; about {out['misclassification']:.0%} of the pixels may be in "
                    "the wrong class (the interval includes it)"
                )
            warnings.append(_caveat("classification_uncertain", msg))
    return out


def _blend_warning(out, warnings, a, blur, w_narrow, p):
    """footprint_exceeds_feature when the footprint (or the fitted blur)
    covers half or more of the narrower band."""
    fp = a if a else None
    width = 2 * max(blur, fp or 0.0)
    if w_narrow and width >= 0.5 * w_narrow:
        what = (
            f"the footprint ({2 * fp:.3g} um across)"
            if fp and 2 * fp >= 0.5 * w_narrow
            else f"the blur of the band edges ({width:.3g} um)"
        )
        warnings.append(
            _caveat(
                "footprint_exceeds_feature",
                f"{what} covers {width / w_narrow:.0%} of the narrower band ({w_narrow:.3g} um): "
                "few or no landings sit wholly in one domain, so the levels rest on the blending "
                "model (the interval carries half the correction)",
            )
        )


def _mixture_classify(v, ok, used, excl, B, alts, sign, p, a, out, state, warnings):
    from scipy import ndimage

    n = int(used.sum())
    fit = _mixture_em(v, used, B, sign)
    ll1 = _one_class_loglik(v, used, B)
    k_b = B.shape[1]
    bic1 = -2 * ll1 + (k_b + 1) * math.log(n)
    bic2 = -2 * fit["loglik"] + (k_b + 3) * math.log(n)
    d_bic = bic1 - bic2
    pfull = np.full(v.shape, np.nan)
    pfull[used] = fit["p"]
    hard = np.where(used, np.where(pfull >= 0.5, LABEL_001, LABEL_100), LABEL_NONE).astype(np.int8)
    low = hard == LABEL_001
    # regions, not lines: the low class must survive an opening by the
    # line-width element
    from .lines import line_width_limit_um

    wl = line_width_limit_um(p, a)
    d_px = max(3, math.ceil(wl / p) + 1) if wl else 3
    del d_px
    kept = ndimage.binary_opening(low, structure=np.ones((2, 2)))
    region_frac = float(kept.sum() / max(low.sum(), 1))
    s, sig, pi = fit["s"], fit["sigma"], fit["pi"]
    sep = abs(s) / sig if sig > 0 else math.inf
    # after significant stripes the pattern is established: thin bands need
    # not survive the opening
    regions_ok = region_frac >= 0.5 or bool(state.get("stripes_significant"))
    # blending: levels from the pixels further than a footprint (or half a
    # pitch) from the other class; the boundary lies anywhere between a
    # pixel and its neighbour of the other class: a footprint is whole only a
    # pitch plus its radius away
    margin = (a or 0.0) + p
    core = used & (_distance_to_other(hard, p) > margin + 1e-9)
    ncore = (int((core & low).sum()), int((core & ~low & used).sum()))
    two = (
        d_bic > MIN_DELTA_BIC
        and min(pi, 1 - pi) >= 0.03
        and sep >= 1.0
        and regions_ok
        and abs(s) >= MIN_STEP
        and min(ncore) >= MIN_CORE_PIXELS
    )
    state.update({"method": "mixture" if two else "none", "used": used, "p": pfull})
    if not two:
        why = []
        if d_bic <= MIN_DELTA_BIC:
            why.append(f"two classes fit no better than one (BIC {d_bic:+.1f})")
        if min(pi, 1 - pi) < 0.03:
            why.append(f"the smaller class holds {min(pi, 1 - pi):.1%} of the pixels")
        if sep < 1.0:
            why.append(f"their levels differ by {sep:.2f} noise sigmas")
        if not regions_ok:
            why.append("the low pixels form lines or specks, not regions")
        if abs(s) < MIN_STEP:
            why.append(f"their levels differ by {abs(s):.1e} (log), below {MIN_STEP:g}")
        if min(ncore) < MIN_CORE_PIXELS:
            why.append(
                f"only {min(ncore)} pixels of the {'low' if ncore[0] < ncore[1] else 'high'} "
                f"class lie further than the footprint plus a pitch ({margin:.2g} um) from the "
                f"other class (needs {MIN_CORE_PIXELS}): every level is a blend, and thin "
                "low-current lines or edges are no domains"
            )
        out.update(
            {
                "method": "none",
                "labels": np.where(ok, LABEL_100, LABEL_NONE).astype(np.int8),
                "p001": np.where(ok, 0.0, np.nan),
                "fraction_001": 0.0,
                "fraction_001_ci95": [None, None],
                "log_step": math.nan,
                "log_step_se": math.nan,
                "log_step_systematic": {},
                "level_100": float(np.exp(np.median(v[used]))),
                "level_001": math.nan,
                "separation": sep,
                "misclassification": math.nan,
                "band_width_um": math.nan,
                "delta_bic": d_bic,
                "no_classes_reason": "; ".join(why),
            }
        )
        if state.get("stripes_significant"):
            warnings.append(
                _caveat(
                    "classification_uncertain",
                    "the stripes are significant but no two domain classes can be told apart: "
                    + "; ".join(why)
                    + ": no ratio is reported",
                )
            )
        return
    se_s, se_pi = _mixture_se(v, used, B, fit)
    mis = float(np.mean(np.minimum(fit["p"], 1 - fit["p"])))
    # the levels from the core pixels (whole footprints of one class)
    s_core = _mixture_em(v, core, B, sign, p0=pfull[core], n_iter=50)["s"]
    sys_blend = abs(s_core - s)
    sys_bg = 0.0
    for Ba in alts:
        fa = _mixture_em(v, used, Ba, sign, p0=fit["p"], n_iter=50)
        sys_bg = max(sys_bg, abs(fa["s"] - s))
    state["beta"] = fit["beta"]
    bg = B[used.ravel()] @ fit["beta"]
    frac = float(np.mean(fit["p"]))
    # the pixels on a boundary straddle it: where it runs inside them the
    # threshold (set by the blend of the levels) decides: a quarter of them
    # either way
    edge = np.zeros(v.shape, bool)
    lab1 = np.where(used, hard, -1)
    for sl_a, sl_b in (
        ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
        ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ):
        a_, b_ = lab1[sl_a], lab1[sl_b]
        dif = (a_ >= 0) & (b_ >= 0) & (a_ != b_)
        edge[sl_a] |= dif
        edge[sl_b] |= dif
    n_ok = max(int(used.sum()), 1)
    sys_frac = 0.25 * float(edge.sum()) / n_ok
    out.update(
        {
            "method": "mixture",
            "labels": hard,
            "p001": pfull,
            "fraction_001": frac,
            "fraction_001_ci95": [
                max(frac - Z95 * se_pi - sys_frac, 0.0),
                min(frac + Z95 * se_pi + sys_frac, 1.0),
            ],
            "fraction_001_systematic": sys_frac,
            "log_step": s_core,
            "log_step_se": se_s,
            "log_step_systematic": {"background": sys_bg, "blending": sys_blend},
            "level_100": float(np.exp(np.median(bg))),
            "level_001": float(np.exp(np.median(bg) + s_core)),
            "separation": sep,
            "misclassification": mis,
            "band_width_um": float(np.nanmin([_widths_um(low, p), _widths_um(used & ~low, p)])),
            "delta_bic": d_bic,
            "n_core_001": ncore[0],
            "n_core_100": ncore[1],
        }
    )
    state["core"] = core
    if a and out["band_width_um"] < 2 * (2 * a):
        _blend_warning(out, warnings, a, 0.0, out["band_width_um"], p)


# --------------------------------------------------------------- levels
@single_blas_thread
def class_levels(
    values: np.ndarray,
    classification: dict[str, Any],
    *,
    series_fraction: float = 1.0,
) -> dict[str, Any]:
    """The class levels of another map of the same pixels (e.g. the spreading
    conductance) under a :func:`classify_domains` classification, with the
    same kinds of uncertainty (``series_fraction`` as there, for this map).

    Returns ``log_step``, ``log_step_se``, ``log_step_systematic``,
    ``log_step_ci95``, ``level_100``, ``level_001``.
    """
    st = classification["_state"]
    method = st.get("method", classification["method"])
    gamma = float(np.clip(series_fraction, 1e-3, 1.0))
    z = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(z > 0, np.log(z), np.nan)
    nan = math.nan
    if method == "none":
        ok = np.isfinite(v) & ~st["excl"]
        lvl = float(np.exp(np.median(v[ok]))) if ok.any() else nan
        return {
            "log_step": nan,
            "log_step_se": nan,
            "log_step_systematic": {},
            "log_step_ci95": [nan, nan],
            "level_100": lvl,
            "level_001": nan,
        }
    B = st["B"]
    if method == "stripe_model":
        live = st["used"] & np.isfinite(v)
        w = np.where(live, st["w"], 0.0)
        phi = st["phi"]
        sub = {**st, "used": live, "w": w, "core": st["core"] & live}
        k, se_fix = _kappa_given(
            v, live, B, phi, w, _invert_step(classification["log_step"], gamma), gamma
        )
        s = _step(k, gamma)
        se_geo = se_fix * float(_dblend(k, np.array(1.0), gamma)) * st.get("geo_factor", 1.0)
        se = float(np.nanmax([se_geo, _jackknife_step_se(v, live, B, phi, k, gamma)]))
        covers = any(x["code"] == "footprint_exceeds_feature" for x in classification["warnings"])
        sys_bg, sys_blend = _stripe_systematics(v, sub, B, st["alts"], k, gamma, s, covers)
        beta, *_ = np.linalg.lstsq(
            B[live.ravel()], v[live] - _blend(k, phi[live], gamma), rcond=None
        )
        lvl100 = float(np.exp(np.median(B[live.ravel()] @ beta)))
    else:
        p = st["p"]
        used = st["used"] & np.isfinite(v) & np.isfinite(p)
        # one M-step with the posteriors of the classification map
        BB = B[used.ravel()]
        pp = p[used]
        A = np.column_stack([BB, pp])
        sol, *_ = np.linalg.lstsq(A, v[used], rcond=None)
        s_all = float(sol[-1])
        r = v[used] - A @ sol
        s2 = float(r @ r) / max(r.size - A.shape[1], 1)
        Q = orthonormal_columns(BB)
        pq = pp - Q @ (Q.T @ pp)
        se_reg = math.sqrt(s2 / float(pq @ pq)) if float(pq @ pq) > 0 else nan
        s = s_all
        core = st.get("core")
        if core is not None and (core & used).sum() > 16:
            cu = core & used
            solc, *_ = np.linalg.lstsq(np.column_stack([B[cu.ravel()], p[cu]]), v[cu], rcond=None)
            s = float(solc[-1])
        # at least the classification's relative uncertainty (the overlap of
        # the classes is in it; a regression on fixed posteriors misses it)
        c = classification
        rel = c["log_step_se"] / max(abs(c["log_step"]), 1e-300)
        se = max(se_reg, rel * abs(s)) if math.isfinite(rel) else se_reg
        sys_bg = 0.0
        for Ba in st["alts"]:
            sa, *_ = np.linalg.lstsq(np.column_stack([Ba[used.ravel()], pp]), v[used], rcond=None)
            sys_bg = max(sys_bg, abs(float(sa[-1]) - s))
        sys_blend = abs(s - s_all)
        lvl100 = float(np.exp(np.median(BB @ sol[:-1])))
    half = Z95 * se + sys_bg + sys_blend
    return {
        "log_step": s,
        "log_step_se": se,
        "log_step_systematic": {"background": sys_bg, "blending": sys_blend},
        "log_step_ci95": [s - half, s + half],
        "level_100": lvl100,
        "level_001": lvl100 * math.exp(s),
    }


def ratio_from_step(step: dict[str, Any], high_is_100: bool = True) -> dict[str, Any]:
    """[100]/[001] ratio of the values and its 95 % interval from a log step."""
    s = step["log_step"]
    lo, hi = step.get("log_step_ci95", [math.nan, math.nan])
    if not math.isfinite(s):
        return {"ratio": math.nan, "ci": [math.nan, math.nan]}
    if high_is_100:
        return {"ratio": safe_exp(-s), "ci": [safe_exp(-hi), safe_exp(-lo)]}
    return {"ratio": safe_exp(s), "ci": [safe_exp(lo), safe_exp(hi)]}


def safe_exp(x: float) -> float:
    """exp that gives inf (JSON null) instead of raising for a degenerate fit's
    unbounded interval."""
    return math.exp(x) if x < 700 else math.inf


# ------------------------------------------------- levels at the map centre
def _reduced_basis(shape, x_degree, order, drift_degree, center_row=False):
    """x-only Legendre terms (the film's collection term) and, with an order,
    drift terms in the acquisition rank: the smooth terms a conductance map
    has (topography does not change it), so that the [100] level at the map
    centre at the start of the acquisition is defined. Returns the columns and
    the row of the reference (x at the map centre, t at the first point)."""
    from numpy.polynomial import legendre

    nx = shape[1]
    xs = (2 * (np.arange(nx) + 0.5) / nx) - 1.0
    Vx = legendre.legvander(xs, x_degree)
    cols = [np.broadcast_to(Vx[:, k][None, :], shape).ravel() for k in range(x_degree + 1)]
    ref = [float(legendre.legval(0.0, np.eye(x_degree + 1)[k])) for k in range(x_degree + 1)]
    if order is not None and drift_degree > 0:
        full = smooth_basis(shape, degree=0, x_degree=0, order=order, drift_degree=drift_degree)
        for k in range(1, drift_degree + 1):
            cols.append(full[:, k])
            ref.append(float(legendre.legval(-1.0, np.eye(drift_degree + 1)[k])))
    return np.stack(cols, axis=1), np.asarray(ref)


@single_blas_thread
def reference_level(
    image: np.ndarray,
    classification: dict[str, Any],
    *,
    order: np.ndarray | None = None,
    x_degree: int | None = None,
    drift_degree: int = 3,
) -> dict[str, Any]:
    """The [100] level of a map at its centre (x) and at the start of the
    acquisition, with the class step of ``classification`` held, and the
    drift along the acquisition ``order`` that the data show.

    The background here is the film's x-only term plus a drift in time (no y
    terms: a conductance map does not change with y), so that the drift is
    told from the map's slow terms; the series-model inversion of the levels
    (:func:`spreading_ratio`) needs the level without drift.

    Returns ``level_100`` and ``level_001`` (map units), ``log_level_se``,
    ``log_level_systematic`` (other degrees), ``drift_factor`` (map: the
    fitted drift relative to the first point; ones without an order) and
    ``drift_range`` (its max - min).
    """
    from .stripes import _basis_degrees

    st = classification["_state"]
    z = np.asarray(image, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(z > 0, np.log(z), np.nan)
    _, xd = _basis_degrees(z.shape, 3, x_degree)
    method = st.get("method", classification["method"])
    if method == "stripe_model":
        used = st["used"] & np.isfinite(v)
        k = _invert_step(classification["log_step"], st["gamma"])
        offset = _blend(k, st["phi"], st["gamma"])
    elif method == "mixture":
        used = st["used"] & np.isfinite(v) & np.isfinite(st["p"])
        offset = classification["log_step"] * np.nan_to_num(st["p"])
    else:
        used = np.isfinite(v) & ~st["excl"]
        offset = np.zeros(z.shape)
    s = classification["log_step"] if method != "none" else 0.0

    def fit(xdeg: int, ddeg: int) -> tuple[float, float, np.ndarray]:
        Br, ref = _reduced_basis(z.shape, xdeg, order, ddeg)
        y = (v - offset)[used]
        A = Br[used.ravel()]
        beta, *_ = np.linalg.lstsq(A, y, rcond=None)
        r = y - A @ beta
        # robust: without pixels far off (boundary remains, blended edges)
        sig = _robust_sigma(r)
        if sig > 0:
            keep = np.abs(r) <= 3.5 * sig
            if keep.sum() > A.shape[1] + 8:
                y, A = y[keep], A[keep]
                beta, *_ = np.linalg.lstsq(A, y, rcond=None)
                r = y - A @ beta
        dof = max(r.size - A.shape[1], 1)
        s2 = float(r @ r) / dof
        try:
            cov = s2 * np.linalg.pinv(A.T @ A)
            se = float(math.sqrt(max(ref @ cov @ ref, 0.0)))
        except np.linalg.LinAlgError:
            se = math.nan
        nx_cols = xdeg + 1
        drift = np.ones(z.shape)
        if Br.shape[1] > nx_cols:
            t_part = Br[:, nx_cols:] @ beta[nx_cols:]
            drift = np.exp(t_part - float(ref[nx_cols:] @ beta[nx_cols:])).reshape(z.shape)
        return float(ref @ beta), se, drift

    lv, se, drift = fit(xd, drift_degree if order is not None else 0)
    alts = [fit(max(xd - 2, 1), 0 if order is None else max(drift_degree - 1, 1))]
    alts.append(fit(xd + 2, 0 if order is None else drift_degree + 2))
    sys_ = max(abs(a_[0] - lv) for a_ in alts)
    d_ok = np.where(np.isfinite(v), drift, np.nan)
    return {
        "level_100": math.exp(lv),
        "level_001": math.exp(lv + s) if math.isfinite(s) else math.nan,
        "log_level_se": se,
        "log_level_systematic": sys_,
        "drift_factor": d_ok,
        "drift_range": float(np.nanmax(d_ok) - np.nanmin(d_ok)) if np.isfinite(d_ok).any() else 0.0,
    }


def spreading_ratio(
    classification: dict[str, Any],
    reference: dict[str, Any],
    series_resistance_ohm: float,
) -> dict[str, Any]:
    """The [100]/[001] ratio of the spreading conductances from the class
    levels of a measured conductance map (S): ``R_sp = 1 / G - R_series`` of
    each level at the map centre (``series_resistance_ohm``: pipette,
    interface and film there), not pixel by pixel (the inversion of a noisy
    pixel is biased: ``1 / G`` of a scattered ``G`` and the remainder's log).

    The 95 % interval takes the extremes over the step's interval and the
    level's (``z SE + systematic``); the series terms are taken as exact.
    Returns ``ratio``, ``ci``, ``spreading_100_S``, ``spreading_001_S``
    (None where the series terms leave no positive spreading resistance).
    """
    nan = math.nan
    s = classification["log_step"]
    if not math.isfinite(s):
        return {"ratio": nan, "ci": [nan, nan], "spreading_100_S": nan, "spreading_001_S": nan}
    lv = math.log(reference["level_100"])
    dl = Z95 * (reference["log_level_se"] or 0.0) + (reference["log_level_systematic"] or 0.0)
    lo_s, hi_s = classification["log_step_ci95"]
    rs = float(series_resistance_ohm)

    def ratio(step: float, level: float) -> tuple[float, float, float]:
        g100 = math.exp(float(np.clip(level, -700, 700)))
        g001 = math.exp(float(np.clip(level + step, -700, 700)))
        if not (g100 > 0 and g001 > 0):
            return nan, nan, nan
        r100 = 1.0 / g100 - rs
        r001 = 1.0 / g001 - rs
        if r100 <= 0 or r001 <= 0:
            return nan, nan, nan
        return r001 / r100, 1.0 / r100, 1.0 / r001

    r0, g100, g001 = ratio(s, lv)
    corners = [ratio(a, b)[0] for a in (lo_s, hi_s) for b in (lv - dl, lv + dl)]
    corners = [c for c in corners if math.isfinite(c)]
    if not math.isfinite(r0):
        return {"ratio": nan, "ci": [nan, nan], "spreading_100_S": nan, "spreading_001_S": nan}
    # a corner past the point where nothing is left for spreading: unbounded
    lo = min([*corners, r0])
    hi = max([*corners, r0]) if len(corners) == 4 else math.inf
    return {"ratio": r0, "ci": [lo, hi], "spreading_100_S": g100, "spreading_001_S": g001}
