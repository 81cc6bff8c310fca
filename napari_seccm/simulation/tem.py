"""A TEM/STEM-like (HAADF) image of the simulated film's domains, in its own frame.

A real TEM image of the film is taken elsewhere, on a piece of the same film:
its pixel size is known (it is in the file) but its rotation and position with
respect to the SECCM stage are not. :func:`render_tem_image` draws such an
image of an :class:`~.sample.LLTOFilm` and returns, beside it, the transform
that the user does not know (the "hidden truth" for tests of an alignment):

    stage (y, x) [um, homogeneous] = transform @ (row, col, 1)

By default the transform is a similarity: the image's +col axis points
``rotation_deg`` counter-clockwise from the stage's +x axis, a pixel is
``pixel_nm`` wide and the image centre sits at ``center_um`` = (x, y); with
``mirror=True`` the image is also flipped (a TEM image seen from the other
side of the film). Contrast: [001] domains are brighter than the [100] matrix
(HAADF-like; the Au pad, if in view, is brighter still), with a slow thickness
variation, a little probe blur, scan-line jitter and counting noise.

numpy/scipy only (``write_tem_tiff`` imports tifffile when called).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from .sample import DOMAIN_001, LLTOFilm

if TYPE_CHECKING:
    from pathlib import Path

#: defaults of the hidden transform: ~9.2 um field of view (4-5 stripe periods
#: of the default 2 um film), rotated 23 deg and off the stage origin
DEFAULT_SHAPE = (512, 512)
DEFAULT_PIXEL_NM = 18.0
DEFAULT_ROTATION_DEG = 23.0
DEFAULT_CENTER_UM = (1.7, -2.3)

#: relative HAADF intensities
_LEVEL_100 = 1.0
_LEVEL_001 = 1.3
_LEVEL_PAD = 2.2


def tem_transform(
    shape: tuple[int, int] = DEFAULT_SHAPE,
    pixel_nm: float = DEFAULT_PIXEL_NM,
    rotation_deg: float = DEFAULT_ROTATION_DEG,
    center_um: tuple[float, float] = DEFAULT_CENTER_UM,
    mirror: bool = False,
) -> np.ndarray:
    """3x3 matrix: TEM pixel (row, col, 1) -> stage (y, x, 1), um.

    The centre of the image, pixel ((h-1)/2, (w-1)/2), maps to ``center_um``
    (x, y); the +col axis points ``rotation_deg`` CCW from +x; with ``mirror``
    the +row axis points the other way (a reflection, det < 0).
    """
    h, w = shape
    s = pixel_nm * 1e-3
    th = math.radians(rotation_deg)
    # stage (x, y) of a pixel offset (dcol, drow) from the centre
    ex = s * np.array([math.cos(th), math.sin(th)])  # +col
    ey = s * np.array([-math.sin(th), math.cos(th)])  # +row (90 deg CCW of +col)
    if mirror:
        ey = -ey
    # in (row, col) -> (y, x) ordering
    lin = np.array([[ey[1], ex[1]], [ey[0], ex[0]]])
    cr, cc = (h - 1) / 2, (w - 1) / 2
    t = np.array([center_um[1], center_um[0]]) - lin @ np.array([cr, cc])
    out = np.eye(3)
    out[:2, :2] = lin
    out[:2, 2] = t
    return out


def pixel_to_stage(
    transform: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Stage (x, y) um of TEM pixels (row, col) under ``transform``."""
    rows = np.asarray(rows, dtype=float)
    cols = np.asarray(cols, dtype=float)
    y = transform[0, 0] * rows + transform[0, 1] * cols + transform[0, 2]
    x = transform[1, 0] * rows + transform[1, 1] * cols + transform[1, 2]
    return x, y


def render_tem_image(
    film: LLTOFilm,
    *,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    pixel_nm: float = DEFAULT_PIXEL_NM,
    rotation_deg: float = DEFAULT_ROTATION_DEG,
    center_um: tuple[float, float] = DEFAULT_CENTER_UM,
    mirror: bool = False,
    seed: int = 0,
    counts: float = 20000.0,
    dose: float = 400.0,
    blur_px: float = 0.8,
    supersample: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """A HAADF-like image of ``film`` and its hidden transform.

    Returns ``(image uint16, transform)``; ``transform`` maps TEM pixel
    (row, col) to stage (y, x) in um (see :func:`tem_transform`). ``counts``
    is the mean level of the [100] matrix; the noise is Poisson at ``dose``
    electrons per pixel (relative noise 1/sqrt(dose)) plus read noise.
    """
    h, w = (int(v) for v in shape)
    if h < 2 or w < 2:
        raise ValueError(f"shape must be at least 2 x 2, got {shape}")
    if not pixel_nm > 0:
        raise ValueError(f"pixel_nm must be positive, got {pixel_nm}")
    transform = tem_transform((h, w), pixel_nm, rotation_deg, center_um, mirror)
    rng = np.random.default_rng(seed)
    n = max(1, int(supersample))
    sub = (np.arange(n) + 0.5) / n - 0.5  # sub-pixel offsets
    rows = np.arange(h)[:, None, None, None] + sub[None, None, :, None]
    cols = np.arange(w)[None, :, None, None] + sub[None, None, None, :]
    x, y = pixel_to_stage(transform, rows, cols)
    x, y = np.broadcast_arrays(x, y)
    # flat arrays: the film's random fields are much faster on 1-D input
    labels = film.domain_label(x.ravel(), y.ravel()).reshape(x.shape)
    level = np.where(labels == DOMAIN_001, _LEVEL_001, _LEVEL_100)
    level = np.where(film.on_pad(x), _LEVEL_PAD, level)
    img = level.mean(axis=(2, 3))
    xc, yc = pixel_to_stage(transform, np.arange(h)[:, None], np.arange(w)[None, :])
    # slow thickness variation (wedge + a bump), a few percent
    k = rng.normal(0.0, 1.0 / 4.0, size=(2,))
    img = img * (1.0 + 0.03 * np.cos(k[0] * xc + k[1] * yc + rng.uniform(0, 2 * np.pi)))
    if blur_px > 0:
        img = ndimage.gaussian_filter(img, blur_px, mode="nearest")
    # scan-line jitter: each line slightly brighter or darker
    img = img * (1.0 + 0.005 * rng.standard_normal((h, 1)))
    electrons = rng.poisson(np.clip(img, 0, None) * dose)
    out = electrons * (counts / dose) + rng.normal(0.0, 0.002 * counts, (h, w))
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16), transform


def write_tem_tiff(path: str | Path, film: LLTOFilm, **kw: Any) -> np.ndarray:
    """Render (``render_tem_image(film, **kw)``) and write an ImageJ TIFF.

    The pixel size is in the file (resolution tags + ImageJ ``unit=nm``), the
    rotation and position are not. Returns the hidden transform.
    """
    import tifffile

    image, transform = render_tem_image(film, **kw)
    pixel_nm = float(kw.get("pixel_nm", DEFAULT_PIXEL_NM))
    tifffile.imwrite(
        str(path),
        image,
        imagej=True,
        resolution=(1.0 / pixel_nm, 1.0 / pixel_nm),
        metadata={"unit": "nm"},
    )
    return transform
