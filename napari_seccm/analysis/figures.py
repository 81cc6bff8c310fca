"""Figures of maps with a scale bar and a colorbar (matplotlib, no GUI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def nice_length(target: float) -> float:
    """A round length (1, 2 or 5 x 10^k) not longer than ``target``."""
    if target <= 0:
        return 0.0
    k = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**k <= target:
            return float(m * 10**k)
    return float(10**k)


def show_map(
    ax: Axes,
    image: np.ndarray,
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    label: str,
    scale: float = 1.0,
    cmap: str = "viridis",
    scalebar: bool = True,
) -> None:
    """Draw a map in stage coordinates (um), NaN transparent, with colorbar and scale bar."""
    ny, nx = image.shape
    extent = (x0_um, x0_um + nx * pitch_um, y0_um + ny * pitch_um, y0_um)
    data = np.ma.masked_invalid(image * scale)
    im = ax.imshow(data, extent=extent, cmap=cmap, interpolation="nearest")
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um), down as in napari")
    ax.figure.colorbar(im, ax=ax, label=label, fraction=0.046, pad=0.04)
    if scalebar:
        width = nx * pitch_um
        length = nice_length(width / 4)
        xb = extent[0] + 0.05 * width
        yb = extent[2] - 0.07 * ny * pitch_um
        ax.plot([xb, xb + length], [yb, yb], color="white", lw=4, solid_capstyle="butt")
        ax.plot([xb, xb + length], [yb, yb], color="black", lw=1.5, solid_capstyle="butt")
        ax.text(
            xb + length / 2,
            yb - 0.03 * ny * pitch_um,
            f"{length:g} um",
            ha="center",
            va="bottom",
            color="black",
            bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
        )
