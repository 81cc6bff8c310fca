"""An automatic first guess of how a moving image lies on a reference image.

Before landmarks are clicked, the moving image (a TEM micrograph, an optical
image) is usually far off: its pixel size is known but its rotation and
position on the stage are not. :func:`first_guesses` finds them by brute
force: both images are resampled to one pixel size in um, the moving image is
turned through all angles, and for each angle a masked normalised
cross-correlation (Padfield 2012, by FFT) with the reference gives the best
shift and its score. The contrast may be inverted between the two (a current
map's [001] stripes are dark, a HAADF image's bright), so the score is the
magnitude of the correlation and its sign is reported.

A film of parallel stripes looks the same turned by 180 deg or shifted by a
period, so the best score is not always the right placement: the few best
distinct candidates are returned, best first, for the user to look at and
refine with landmarks. The guess is Euclidean (rotation + shift; optionally a
mirror): the pixel sizes are taken as right.

Pure numpy/scipy; no Qt, no core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the longer side of the larger image, resampled, is at most this many pixels
MAX_SIDE_PX = 128
#: each image must be at least this many compared pixels across
MIN_SIDE_PX = 8
#: a best correlation below this is no match (noise correlates up to ~0.4 on
#: small overlaps)
MIN_SCORE = 0.5


@dataclass(frozen=True)
class Guess:
    matrix: np.ndarray  # 3 x 3, moving data (row, col) -> world (y, x), um
    rotation_deg: float  # of the moving image on the world, CCW as displayed
    mirrored: bool
    score: float  # |normalised cross-correlation| at the best shift, 0..1
    inverted: bool  # the contrast is inverted between the images
    overlap: float  # fraction of the smaller image inside the other
    pixel_um: float  # the common pixel size the images were compared at
    #: how far apart (um) placements at this angle lie that correlate within
    #: 5 % of the best: about a pixel for a unique match, a period or more for
    #: a repeating pattern
    uncertainty_um: float

    @property
    def ambiguous(self) -> bool:
        return self.uncertainty_um > 3 * self.pixel_um

    def describe(self) -> str:
        return (
            f"rotation {self.rotation_deg:.1f} deg{', mirrored' if self.mirrored else ''}, "
            f"correlation {self.score:.2f}{' (contrast inverted)' if self.inverted else ''}, "
            f"overlap {self.overlap:.0%}, shift uncertain by {self.uncertainty_um:.2g} um "
            f"(compared at {self.pixel_um:.3g} um/px)"
        )


def _axis_scales(matrix: np.ndarray) -> np.ndarray:
    """um per pixel along the data rows and columns of a data -> world matrix."""
    return np.linalg.norm(np.asarray(matrix, float)[:2, :2], axis=0)


def _scale_matrix(k: np.ndarray) -> np.ndarray:
    """Resampled pixel o -> data pixel i, pixel centres kept: i = (o + 1/2) k - 1/2."""
    m = np.eye(3)
    m[0, 0], m[1, 1] = k
    m[:2, 2] = 0.5 * np.asarray(k) - 0.5
    return m


def _prepare(image: np.ndarray, scales: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample to ``p`` um/px (anti-aliased), flatten slow background, robust
    normalise; NaN pixels (unmeasured) are masked. Returns (image, mask)."""
    from scipy import ndimage

    img = np.asarray(image, dtype=float)
    if img.ndim == 3 and img.shape[-1] in (3, 4):  # RGB(A): luminance
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    if img.ndim != 2:
        raise ValueError(f"a 2-D image is needed for the first guess, got shape {img.shape}")
    valid = np.isfinite(img)
    if valid.sum() < 16:
        raise ValueError("the image has fewer than 16 finite pixels")
    fill = float(np.median(img[valid]))
    img = np.where(valid, img, fill)
    k = p / scales  # data pixels per resampled pixel, per axis
    shape = tuple(max(2, int(math.floor(n / kk))) for n, kk in zip(img.shape, k, strict=True))
    # a large image is first block-averaged (cheap), keeping >= 2 px per
    # resampled pixel: data pixel i of the blocks' centres is b j + (b - 1) / 2,
    # so the resampling below keeps the same o -> i mapping with k / b
    b = np.maximum(np.floor(k / 2), 1).astype(int)
    if np.any(b > 1):
        h, w = (img.shape[0] // b[0]) * b[0], (img.shape[1] // b[1]) * b[1]
        blocks = (h // b[0], b[0], w // b[1], b[1])
        img = img[:h, :w].reshape(blocks).mean(axis=(1, 3))
        valid = valid[:h, :w].reshape(blocks).all(axis=(1, 3))
        k = k / b
    sigma = np.where(k > 1, 0.45 * k, 0.0)
    if np.any(sigma > 0):
        img = ndimage.gaussian_filter(img, sigma, mode="nearest")
    m = _scale_matrix(k)
    out = ndimage.affine_transform(img, m[:2, :2], m[:2, 2], output_shape=shape, order=1)
    mask = ndimage.affine_transform(valid.astype(float), m[:2, :2], m[:2, 2], shape, order=1) > 0.99
    # slow background (a film term, thickness, illumination) would dominate
    sig_bg = max(shape) / 6.0
    w = ndimage.gaussian_filter(mask.astype(float), sig_bg)
    bg = ndimage.gaussian_filter(np.where(mask, out, 0.0), sig_bg) / np.maximum(w, 1e-6)
    out = out - bg
    lo, hi = np.percentile(out[mask], [1, 99])
    out = np.clip(out, lo, hi)
    return np.where(mask, out, 0.0), mask


def _rotation(shape: tuple[int, int], deg: float, mirror: bool) -> tuple[np.ndarray, tuple]:
    """Output pixel -> input pixel matrix of turning an image by ``deg`` (as
    displayed, rows down) about its centre, and the output's shape (bounding box)."""
    th = math.radians(deg)
    c, s = math.cos(th), math.sin(th)
    # forward, in (row, col): a CCW turn on screen (rows point down)
    # (the mirror flips the columns first)
    fwd = np.array([[c, -s], [s, c]]) @ np.diag([1.0, -1.0 if mirror else 1.0])
    h, w = shape
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], float)
    cin = np.array([(h - 1) / 2, (w - 1) / 2])
    rc = (corners - cin) @ fwd.T
    size = np.ceil(rc.max(0) - rc.min(0)).astype(int) + 1
    cout = (size - 1) / 2
    inv = np.linalg.inv(fwd)
    m = np.eye(3)
    m[:2, :2] = inv
    m[:2, 2] = cin - inv @ cout
    return m, (int(size[0]), int(size[1]))


def _masked_ncc(
    f: np.ndarray, mf: np.ndarray, g: np.ndarray, mg: np.ndarray, min_overlap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Masked normalised cross-correlation of ``g`` over ``f`` at every shift.

    Element [i, j] is the correlation with g's pixel (0, 0) on f's pixel
    (i - hg + 1, j - wg + 1); shifts with less than ``min_overlap`` pixels in
    common are 0. Returns (ncc, overlap pixel counts).
    """
    from scipy.fft import irfft2, next_fast_len, rfft2

    hh, ww = f.shape[0] + g.shape[0] - 1, f.shape[1] + g.shape[1] - 1
    shape = (next_fast_len(hh, real=True), next_fast_len(ww, real=True))

    def fft(a: np.ndarray) -> np.ndarray:
        return rfft2(a, shape)

    def ifft(a: np.ndarray) -> np.ndarray:
        return irfft2(a, shape)[:hh, :ww]

    mf = mf.astype(float)
    gf, mgf = g[::-1, ::-1], mg[::-1, ::-1].astype(float)
    f_f, f_mf, f_ff = fft(f * mf), fft(mf), fft(f * f * mf)
    f_g, f_mg, f_gg = fft(gf * mgf), fft(mgf), fft(gf * gf * mgf)
    n = np.rint(ifft(f_mf * f_mg))
    nn = np.maximum(n, 1.0)
    sf = ifft(f_f * f_mg)
    sg = ifft(f_mf * f_g)
    num = ifft(f_f * f_g) - sf * sg / nn
    vf = ifft(f_ff * f_mg) - sf * sf / nn
    vg = ifft(f_mf * f_gg) - sg * sg / nn
    den = np.sqrt(np.clip(vf * vg, 0.0, None))
    ok = (n >= min_overlap) & (den > 1e-9 * max(float(den.max()), 1e-300))
    ncc = np.zeros_like(num)
    ncc[ok] = num[ok] / den[ok]
    return np.clip(ncc, -1.0, 1.0), n


def _subpixel(w: np.ndarray, i: int, j: int) -> tuple[float, float]:
    """Sub-pixel position of the maximum of ``w`` at (i, j): a parabola through
    its neighbours along each axis."""

    def vertex(lo: float, mid: float, hi: float) -> float:
        d = lo - 2 * mid + hi
        return 0.0 if d >= 0 else float(np.clip(0.5 * (lo - hi) / d, -0.5, 0.5))

    di = vertex(w[i - 1, j], w[i, j], w[i + 1, j]) if 0 < i < w.shape[0] - 1 else 0.0
    dj = vertex(w[i, j - 1], w[i, j], w[i, j + 1]) if 0 < j < w.shape[1] - 1 else 0.0
    return i + di, j + dj


def _displayed_angle(matrix: np.ndarray) -> float:
    """Angle of a data -> world matrix's +col axis, deg CCW on screen (y down)."""
    dy, dx = matrix[0, 1], matrix[1, 1]
    return float(np.degrees(np.arctan2(-dy, dx)))


def _angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def first_guesses(
    reference: np.ndarray,
    reference_matrix: np.ndarray,
    moving: np.ndarray,
    moving_matrix: np.ndarray,
    *,
    n: int = 3,
    mirror: bool = False,
    angle_step_deg: float = 2.0,
    min_overlap: float = 0.3,
    max_side_px: int = MAX_SIDE_PX,
) -> list[Guess]:
    """The ``n`` best distinct placements of ``moving`` on ``reference``, best first.

    ``reference_matrix`` maps the reference's data (row, col) to world (y, x)
    in um (any similarity, e.g. an optical image's stage affine);
    ``moving_matrix`` is the moving layer's current data -> world matrix, of
    which only the pixel size (um/px along rows and columns) is used. With
    ``mirror`` the mirrored moving image is tried too. ``min_overlap`` is the
    least fraction of the smaller image that must lie on the other.
    """
    if not 0 < min_overlap <= 1:
        raise ValueError(f"min_overlap must be in (0, 1], got {min_overlap}")
    if not 0 < angle_step_deg <= 30:
        raise ValueError(f"angle_step_deg must be in (0, 30] deg, got {angle_step_deg}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    from scipy import ndimage

    ref_m = np.asarray(reference_matrix, float)
    s_ref, s_mov = _axis_scales(ref_m), _axis_scales(moving_matrix)
    if not (np.all(s_ref > 0) and np.all(s_mov > 0)):
        raise ValueError("both images need a pixel size (a non-singular data -> world matrix)")
    ref_img = np.asarray(reference)
    mov_img = np.asarray(moving)
    for img in (ref_img, mov_img):
        if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (3, 4))):
            raise ValueError(f"a 2-D image is needed for the first guess, got shape {img.shape}")
    extent = max(
        float(np.max(np.asarray(ref_img.shape[:2]) * s_ref)),
        float(np.max(np.asarray(mov_img.shape[:2]) * s_mov)),
    )
    p = max(float(s_ref.max()), float(s_mov.max()), extent / max_side_px)
    for name, img, sc in (("moving", mov_img, s_mov), ("reference", ref_img, s_ref)):
        across = float(np.min(np.asarray(img.shape[:2]) * sc))
        if across < MIN_SIDE_PX * p:
            raise ValueError(
                f"the {name} image is {across:.3g} um across, less than {MIN_SIDE_PX} pixels of "
                f"{p:.3g} um at which the two can be compared: the images' scales are too "
                "different for a first guess; align them with landmarks"
            )
    f, mf = _prepare(ref_img, s_ref, p)
    g0, mg0 = _prepare(mov_img, s_mov, p)
    for name, img, m in (("reference", f, mf), ("moving", g0, mg0)):
        if m.sum() < 16 or float(np.std(img[m])) == 0.0:
            raise ValueError(f"the {name} image has no contrast to match")
    need = min_overlap * min(mf.sum(), mg0.sum())
    r_px = max(3.0, 0.15 * min(g0.shape))  # distinct shifts lie at least this far apart

    def score_at(
        deg: float, mirrored: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Signed correlation, its overlap-weighted magnitude (placements that
        hang off the reference count less), the rotation, the rotated shape."""
        rot, shape = _rotation(g0.shape, deg, mirrored)
        g = ndimage.affine_transform(g0, rot[:2, :2], rot[:2, 2], output_shape=shape, order=1)
        mg = (
            ndimage.affine_transform(
                mg0.astype(float), rot[:2, :2], rot[:2, 2], output_shape=shape, order=1
            )
            > 0.99
        )
        ncc, counts = _masked_ncc(f, mf, g, mg, need)
        frac = counts / max(min(mf.sum(), mg.sum()), 1)
        return ncc, np.abs(ncc) * np.sqrt(np.clip(frac, 0.0, 1.0)), rot, np.asarray(shape)

    def peaks(w: np.ndarray, k: int) -> list[tuple[int, int]]:
        """The ``k`` highest maxima of ``w`` at least ``r_px`` apart."""
        w = w.copy()
        out = []
        yy, xx = np.indices(w.shape)
        for _ in range(k):
            i, j = np.unravel_index(int(np.argmax(w)), w.shape)
            if w[i, j] <= 0:
                break
            out.append((int(i), int(j)))
            w[(yy - i) ** 2 + (xx - j) ** 2 < r_px**2] = 0.0
        return out

    mirrors = (False, True) if mirror else (False,)
    coarse = []
    for mirrored in mirrors:
        for deg in np.arange(0.0, 360.0, angle_step_deg):
            coarse.append((float(score_at(float(deg), mirrored)[1].max()), float(deg), mirrored))
    coarse.sort(key=lambda t: -t[0])

    candidates: list[tuple[float, Guess]] = []
    picked: list[tuple[float, bool]] = []
    for _, deg, mirrored in coarse:
        if len(picked) >= n:
            break
        if any(m == mirrored and _angle_diff(deg, d) < 3 * angle_step_deg for d, m in picked):
            continue
        picked.append((deg, mirrored))
        # refine the angle around the coarse one
        fine = np.arange(-angle_step_deg, angle_step_deg + 1e-9, angle_step_deg / 8)
        ncc, w, rot, shape = max(
            (score_at(float(a), mirrored) for a in fine + deg), key=lambda r: float(r[1].max())
        )
        top = float(w.max())
        near = np.argwhere(w >= 0.95 * top)
        # at this angle: the best shift and the next distinct one (a repeating
        # pattern, e.g. stripes a period over, scores almost as well)
        for i, j in peaks(w, 2):
            di, dj = _subpixel(w, i, j)
            spread = float(np.max(np.hypot(near[:, 0] - i, near[:, 1] - j)))
            shift = np.eye(3)
            shift[:2, 2] = (-(di - (shape[0] - 1)), -(dj - (shape[1] - 1)))
            # moving data -> moving resampled -> rotated -> reference resampled -> world
            to_mov_res = np.linalg.inv(_scale_matrix(p / s_mov))
            matrix = (
                ref_m
                @ _scale_matrix(p / s_ref)
                @ np.linalg.inv(shift)
                @ np.linalg.inv(rot)
                @ to_mov_res
            )
            v = float(ncc[i, j])
            g = Guess(
                matrix=matrix,
                rotation_deg=_displayed_angle(matrix),
                mirrored=mirrored,
                score=abs(v),
                inverted=v < 0,
                overlap=float(min(1.0, (w[i, j] / max(abs(v), 1e-12)) ** 2)),
                pixel_um=p,
                uncertainty_um=max(spread * p, p),
            )
            candidates.append((float(w[i, j]), g))
    candidates.sort(key=lambda t: -t[0])
    guesses = [g for _, g in candidates[:n]]
    if not guesses or guesses[0].score < MIN_SCORE:
        best = guesses[0].score if guesses else 0.0
        raise ValueError(
            f"no reliable match: the best correlation is {best:.2f} (below {MIN_SCORE:g}); "
            "the images may not show the same features at this scale: align them with landmarks"
        )
    return guesses
