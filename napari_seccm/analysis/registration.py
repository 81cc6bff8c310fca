"""Landmark registration maths (numpy / scikit-image; no Qt, no core).

Points are (row, col)-ordered pairs as napari uses them: world coordinates
are (y, x) in um, image data coordinates are (row, col) in pixels. A
transform is a 3 x 3 matrix acting on ``[p0, p1, 1]``; it works directly as
a napari layer ``affine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: fewest landmark pairs each model needs
MIN_POINTS = {"translation": 1, "euclidean": 2, "similarity": 2, "affine": 3}
MODELS = tuple(MIN_POINTS)


class RegistrationError(ValueError):
    """Too few or degenerate landmarks; the message says which and how many."""


@dataclass
class Registration:
    model: str
    matrix: np.ndarray  # 3 x 3, moving -> reference
    residuals: np.ndarray  # per landmark pair, in reference units (um)
    rms: float
    warnings: list[str] = field(default_factory=list)

    @property
    def scale(self) -> float:
        """Mean linear scale of the transform (reference units per moving unit)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    @property
    def rotation_deg(self) -> float:
        """Rotation angle of the transform's linear part, degrees."""
        m = self.matrix
        return float(np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1])))


def _check(src: np.ndarray, dst: np.ndarray, model: str) -> list[str]:
    if model not in MIN_POINTS:
        raise RegistrationError(f"unknown model {model!r}; choose one of {MODELS}")
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise RegistrationError(
            f"landmarks must be pairs: {len(src)} moving and {len(dst)} reference points given"
        )
    need = MIN_POINTS[model]
    n = len(src)
    if n < need:
        raise RegistrationError(
            f"{_article(model)} {model} transform needs at least {need} landmark "
            f"pair{'s' if need > 1 else ''}; {n} given"
        )
    warnings: list[str] = []
    for name, pts in (("moving", src), ("reference", dst)):
        spread = np.ptp(pts, axis=0).max() if n > 1 else 0.0
        if n > 1 and spread == 0:
            raise RegistrationError(f"the {name} landmarks all coincide")
        if model == "affine":
            centred = pts - pts.mean(0)
            sv = np.linalg.svd(centred, compute_uv=False)
            if sv[-1] <= 1e-6 * sv[0]:
                raise RegistrationError(
                    f"the {name} landmarks are collinear: an affine transform needs "
                    "3 points not on one line"
                )
            if sv[-1] < 0.05 * sv[0]:
                warnings.append(
                    f"the {name} landmarks are nearly collinear: the affine fit is poorly "
                    "constrained across that line"
                )
    if n == need and model != "translation":
        warnings.append(
            f"{n} landmark pairs exactly determine {_article(model)} {model} transform: "
            "no residual can "
            "reveal a misplaced landmark; add more"
        )
    return warnings


#: an rms residual above this fraction of the landmarks' spread is a bad fit
POOR_FIT_FRACTION = 0.05


def estimate(
    src: np.ndarray,
    dst: np.ndarray,
    model: str = "similarity",
    src_pixel_size: tuple[float, float] | None = None,
) -> Registration:
    """The transform of ``model`` that maps ``src`` (moving) onto ``dst`` (reference).

    ``src_pixel_size`` (row, col; reference units per moving unit, e.g. um/px)
    is kept by the transform: the moving points are scaled by it before the
    fit, so a translation or Euclidean fit of pixel landmarks onto um ones
    keeps the image's pixel size. The matrix always maps the unscaled ``src``.
    """
    from skimage.transform import (
        AffineTransform,
        EuclideanTransform,
        SimilarityTransform,
    )

    src = np.asarray(src, dtype=float).reshape(-1, 2)
    dst = np.asarray(dst, dtype=float).reshape(-1, 2)
    warnings = _check(src, dst, model)
    pre = np.eye(3)
    if src_pixel_size is not None:
        py, px = (float(v) for v in src_pixel_size)
        if not (py > 0 and px > 0 and np.isfinite(py) and np.isfinite(px)):
            raise RegistrationError(f"the moving pixel size must be positive, got {src_pixel_size}")
        pre = np.diag([py, px, 1.0])
    raw, src = src, apply(pre, src)
    if model == "translation":
        m = np.eye(3)
        m[:2, 2] = (dst - src).mean(0)
    else:
        cls = {
            "euclidean": EuclideanTransform,
            "similarity": SimilarityTransform,
            "affine": AffineTransform,
        }[model]
        m = np.asarray(cls.from_estimate(src, dst).params, dtype=float)
        if not np.all(np.isfinite(m)):
            raise RegistrationError(f"the {model} fit failed (degenerate landmarks)")
    m = m @ pre
    res = np.linalg.norm(apply(m, raw) - dst, axis=1)
    rms = float(np.sqrt(np.mean(res**2)))
    spread = float(np.ptp(dst, axis=0).max()) if len(dst) > 1 else 0.0
    if spread > 0 and rms > POOR_FIT_FRACTION * spread:
        warnings.append(
            f"the landmarks fit {_article(model)} {model} transform poorly (rms {rms:.3g}, "
            f"{rms / spread:.0%} of their spread): check that the pairs are in the same "
            "order, or choose another transform"
        )
    return Registration(model, m, res, rms, warnings)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=float).reshape(-1, 2)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]
