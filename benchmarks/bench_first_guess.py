"""Time of the Align widget's automatic first guess (all angles, 2 deg steps,
refined to 0.25 deg) for image sizes users meet: a scan map against a TEM
image (512^2 and 4096^2 px) and an optical snap (2048^2 px), and with mirrors.

Prints one line per case: sizes, seconds (best of 3), the error of the found
placement against the known one (max over the image corners, um).
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from napari_seccm.analysis.autoalign import first_guesses
from napari_seccm.analysis.registration import apply
from napari_seccm.simulation.tem import tem_transform

rng = np.random.default_rng(0)
TEXTURE = ndimage.gaussian_filter(rng.standard_normal((800, 800)), 6)  # 40 um at 0.05


def render(matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    r, c = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    yx = apply(matrix, np.column_stack([r.ravel(), c.ravel()]))
    return ndimage.map_coordinates(
        TEXTURE, [(yx[:, 0] + 20) / 0.05, (yx[:, 1] + 20) / 0.05], order=1
    ).reshape(shape)


def case(name: str, ref_shape, ref_px, mov_shape, mov_px_um, mirror=False) -> None:
    ref_m = np.array(
        [
            [ref_px, 0, -ref_shape[0] * ref_px / 2],
            [0, ref_px, -ref_shape[1] * ref_px / 2],
            [0, 0, 1],
        ]
    )
    ref = render(ref_m, ref_shape)
    truth = tem_transform(mov_shape, mov_px_um * 1e3, 23.0, (0.7, -0.4))
    mov = -render(truth, mov_shape)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        g = first_guesses(ref, ref_m, mov, np.diag([mov_px_um, mov_px_um, 1.0]), mirror=mirror)[0]
        times.append(time.perf_counter() - t)
    h, w = mov_shape
    corners = np.array([[0, 0], [h - 1, 0], [0, w - 1], [h - 1, w - 1]], float)
    err = np.linalg.norm(apply(g.matrix, corners) - apply(truth, corners), axis=1).max()
    print(
        f"{name:<44} {min(times):6.2f} s   corner error {err:.3f} um "
        f"(compared at {g.pixel_um:.3g} um/px)"
    )


if __name__ == "__main__":
    case("map 48^2 @0.25 um vs TEM 512^2 @18 nm", (48, 48), 0.25, (512, 512), 0.018)
    case("map 48^2 @0.25 um vs TEM 512^2, mirrors too", (48, 48), 0.25, (512, 512), 0.018, True)
    case("map 48^2 @0.25 um vs TEM 4096^2 @2.25 nm", (48, 48), 0.25, (4096, 4096), 0.00225)
    case("optical 2048^2 @0.01 um vs TEM 512^2 @18 nm", (2048, 2048), 0.01, (512, 512), 0.018)
