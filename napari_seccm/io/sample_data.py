"""napari sample data: a small simulated LLTO scan with its optical image."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def simulated_llto_scan(out_dir: str | Path | None = None) -> list[tuple[Any, dict, str]]:
    """Run a 12 x 12 um, 0.4 um pitch map at 1.0 V on the simulated film (a few
    seconds) and return the optical image and the maps as layer data."""
    import gc

    from ..acquisition.plan import RectangleArea, ScanPlan
    from ..acquisition.scan import Scan
    from ..configs import load_core
    from .layers import optical_affine, scan_layer_data

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="seccm-sample-"))
    core = load_core()
    try:
        core.setXYPosition(0.0, 0.0)
        core.snapImage()
        img = core.getImage()
        affine = optical_affine(
            0.0, 0.0, img.shape, core.getPixelSizeUm() or 0.1, tuple(core.getPixelSizeAffine())
        )
        plan = ScanPlan(
            name="sample: LLTO map", area=RectangleArea(width_um=12, height_um=12), pitch_um=0.4
        )
        scan = Scan.create(core, plan, out / "sample_llto.seccm.zarr")
        status = scan.run()
        if status != "complete":
            raise RuntimeError(f"the sample scan ended {status}: {scan.store.meta.get('reason')}")
    finally:
        core.unloadAllDevices()
        del core
        gc.collect()
    optical = (
        img,
        {
            "name": "optical (simulated)",
            "affine": affine,
            "colormap": "gray",
            "units": ("micrometer", "micrometer"),
        },
        "image",
    )
    return [optical, *scan_layer_data(out / "sample_llto.seccm.zarr")]


def simulated_tem_image(out_dir: str | Path | None = None) -> list[tuple[Any, dict, str]]:
    """A HAADF-like TEM image of the simulated film (the rig's default film).

    Written as an ImageJ TIFF (pixel size in nm in its tags) and read back
    through the image importer, so the layer has its scale in um and the
    file's checksum, but not its rotation and position on the stage: those are
    the simulation's hidden truth, for the user to find by aligning.
    """
    from ..simulation import FilmParameters, LLTOFilm
    from ..simulation.tem import write_tem_tiff
    from .images import load_image

    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="seccm-tem-"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "simulated_tem_llto.tif"
    write_tem_tiff(path, LLTOFilm(FilmParameters()))
    data, kwargs, kind = load_image(path).layer_data()
    kwargs["name"] = "TEM (simulated, unaligned)"
    return [(data, kwargs, kind)]
