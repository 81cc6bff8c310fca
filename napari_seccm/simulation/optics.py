"""What the SECCM's optical microscope sees: a reflected-light image.

The camera is fixed to the probe head, so the image is centred on the pipette
tip, i.e. on the stage position (x, y): pixel ``[row, col]`` of a ``(h, w)``
image shows the sample at ``x = x0 + (col - (w - 1) / 2) * pixel``,
``y = y0 + (row - (h - 1) / 2) * pixel``. The image shows the faint optical
contrast of [001] domains, the bright Au pad, droplet residue spots, and the
pipette's shadow, defocused by its height above the surface.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .sample import DOMAIN_001, LLTOFilm

if TYPE_CHECKING:
    from collections.abc import Sequence


def pixel_grid(
    x0: float, y0: float, shape: tuple[int, int], pixel_um: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stage coordinates (x, y) of every pixel centre, um."""
    h, w = shape
    xs = x0 + (np.arange(w) - (w - 1) / 2) * pixel_um
    ys = y0 + (np.arange(h) - (h - 1) / 2) * pixel_um
    return np.meshgrid(xs, ys)


def render(
    film: LLTOFilm,
    x0: float,
    y0: float,
    shape: tuple[int, int],
    pixel_um: float,
    residues: Sequence[tuple[float, float, float]],
    tip_height_um: float,
    rng: np.random.Generator,
    exposure_ms: float = 10.0,
    bit_depth: int = 12,
) -> np.ndarray:
    """Render the optical image around (x0, y0) as unsigned integers."""
    X, Y = pixel_grid(x0, y0, shape, pixel_um)
    img = np.full(shape, 0.50)
    img += 0.03 * (film.domain_label(X, Y) == DOMAIN_001)
    img = np.where(film.on_pad(X), 0.92, img)
    # residue of landed droplets: small dark rings
    if residues:
        res = np.asarray(list(residues)[-5000:])
        near = (np.abs(res[:, 0] - x0) < shape[1] * pixel_um) & (
            np.abs(res[:, 1] - y0) < shape[0] * pixel_um
        )
        for rx, ry, rr in res[near]:
            r_img = max(rr, 0.6 * pixel_um)
            d2 = (X - rx) ** 2 + (Y - ry) ** 2
            img -= 0.08 * np.exp(-d2 / (2 * r_img**2))
    # the pipette: a dark cone from the tip towards the top-left, its edge
    # blurred in proportion to the tip's height above the surface
    dx, dy = X - x0, Y - y0
    along = -(dx + dy) / np.sqrt(2)  # distance along the pipette axis
    across = np.abs(dx - dy) / np.sqrt(2)
    half_width = 0.05 + np.clip(along, 0, None) * np.tan(np.radians(8))
    blur = 0.3 + 0.5 * abs(tip_height_um) / 10.0
    shadow = 1 / (1 + np.exp((across - half_width) / blur)) * (along > -blur)
    img *= 1 - 0.6 * shadow
    # vignetting, shot noise
    r2 = (dx**2 + dy**2) / (max(shape) * pixel_um / 2) ** 2
    img *= 1 - 0.15 * r2
    full = 2**bit_depth - 1
    signal = np.clip(img * exposure_ms / 10.0, 0, 1) * full * 0.8
    counts = rng.poisson(np.maximum(signal, 0)) + rng.normal(0, 3.0, shape)
    dtype = np.uint8 if bit_depth <= 8 else np.uint16
    return np.clip(counts, 0, full).astype(dtype)
