"""Turn a scan store into napari layer data, lazily and in stage coordinates (um).

No Qt and no napari import here: these are plain ``(data, kwargs, type)``
tuples that the reader, the sample data and the widgets share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: how the two maps of a store are shown: (array path, display unit, factor, colormap)
MAPS = {
    "current": ("maps/current/0", "nA", 1e9, "viridis"),
    "contact_height": ("maps/contact_height/0", "um", 1.0, "magma"),
}


class ScaledArray:
    """A lazy view ``source * factor`` of an array-like (e.g. a zarr array).

    napari reads only what it displays, through ``__getitem__``; every read
    goes to the source, so a store that is being written shows new pixels on
    the next refresh.
    """

    def __init__(self, source: Any, factor: float = 1.0) -> None:
        self.source = source
        self.factor = float(factor)
        #: while a scan writes the store, an in-memory copy (already scaled)
        #: that a reader thread keeps current, so the GUI never waits on disk
        self.snapshot: np.ndarray | None = None
        self.shape = tuple(source.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        snap = self.snapshot
        if snap is not None:
            return snap[key]
        return (np.asarray(self.source[key], dtype=np.float32) * self.factor).astype(np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def _limits(values: np.ndarray, pad: float = 0.0) -> tuple[float, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = np.percentile(v, [1, 99]) if v.size > 20 else (v.min(), v.max())
    if hi <= lo:
        lo, hi = lo - 0.5 - pad, hi + 0.5 + pad
    return float(lo), float(hi)


def map_layer_kwargs(store: Any, kind: str, *, stem: str | None = None) -> dict[str, Any]:
    """napari Image kwargs that place a store's map in stage coordinates."""
    _path, unit, factor, cmap = MAPS[kind]
    g = store.grid
    p = g.pitch_um
    stem = stem or Path(store.path).name.removesuffix(".seccm.zarr")
    if kind == "current":
        vals = store.array("results/value_A")[:]
        ok = store.array("results/status")[:] == 1
    else:
        vals = store.array("results/contact_z_um")[:]
        ok = store.array("results/done")[:].astype(bool)
    lo, hi = _limits(np.where(ok, vals, np.nan) * factor)
    return {
        "name": f"{stem} {kind.replace('_', ' ')} ({unit})",
        "scale": (p, p),
        "translate": (g.y0_um + p / 2, g.x0_um + p / 2),
        "colormap": cmap,
        "contrast_limits": (lo, hi),
        "interpolation2d": "nearest",
        "units": ("micrometer", "micrometer"),
        "axis_labels": ("y", "x"),
        "metadata": {
            "seccm": {"store": str(Path(store.path).resolve()), "kind": kind, "unit": unit}
        },
    }


#: names of the Align widget's landmark layers (the n-th moving point pairs
#: with the n-th reference point)
LANDMARKS_REFERENCE = "landmarks: reference"
LANDMARKS_MOVING = "landmarks: moving"
_LANDMARK_STYLE = {"size": 0.3, "border_color": "black", "units": ("micrometer", "micrometer")}


def _landmark_layers(rec: dict[str, Any], matrix: np.ndarray) -> list[tuple[Any, dict, str]]:
    """The landmarks an alignment was estimated from, as points layers: the
    reference ones in um, the moving ones on the image (its pixels, placed
    with the image's matrix), ready for the Align widget to refine."""
    ref = np.asarray(rec.get("landmarks_reference_um") or [], dtype=float).reshape(-1, 2)
    mov = np.asarray(rec.get("landmarks_moving_px") or [], dtype=float).reshape(-1, 2)
    if not len(ref) or len(ref) != len(mov):
        return []
    return [
        (ref, {"name": LANDMARKS_REFERENCE, "face_color": "cyan", **_LANDMARK_STYLE}, "points"),
        (
            mov,
            {
                "name": LANDMARKS_MOVING,
                "face_color": "magenta",
                "affine": matrix,
                **_LANDMARK_STYLE,
            },
            "points",
        ),
    ]


def aligned_image_layer_data(
    store: Any, notes: list[str] | None = None
) -> list[tuple[Any, dict[str, Any], str]]:
    """The images aligned onto a scan, placed where they were left.

    An image whose file is missing or changed (other checksum) is not
    placed; a note says why (the matrix would not fit another image).
    """
    from .images import file_sha256, load_image

    out = []
    landmarks: list[tuple[Any, dict, str]] = []
    for rec in store.alignments():
        path = Path(rec.get("path", ""))
        name = rec.get("image", path.name)
        if not path.is_file():
            if notes is not None:
                notes.append(f"aligned image {name!r} not found at {path}")
            continue
        if rec.get("sha256") and file_sha256(path) != rec["sha256"]:
            if notes is not None:
                notes.append(
                    f"aligned image {name!r} changed since it was aligned ({path}); not placed"
                )
            continue
        ps = rec.get("pixel_size_um")
        img = load_image(
            path,
            pixel_size_um=tuple(ps) if ps else None,
            signal=rec.get("signal"),
            allow_unscaled=True,
        )
        kw = img.layer_kwargs()
        kw.update(
            name=name,
            scale=(1.0, 1.0),
            translate=(0.0, 0.0),
            affine=np.asarray(rec["matrix"], dtype=float),
            units=("micrometer", "micrometer"),
        )
        out.append((img.data, kw, "image"))
        # the Align widget refines one alignment at a time: the last one's
        landmarks = _landmark_layers(rec, kw["affine"])
    return out + landmarks


def scan_layer_data(path: str | Path) -> list[tuple[Any, dict[str, Any], str]]:
    """Layer data for a ``.seccm.zarr`` store: images aligned with it, then the
    current and contact-height maps, then the last alignment's landmarks."""
    from ..acquisition.store import ScanStore

    store = ScanStore.open(path)
    notes: list[str] = []
    aligned = aligned_image_layer_data(store, notes)
    out = [t for t in aligned if t[2] == "image"]  # below the maps
    on_top = [t for t in aligned if t[2] != "image"]  # landmarks above them
    if notes:
        try:
            from napari.utils.notifications import show_warning

            for n in notes:
                show_warning(n)
        except ImportError:  # no napari: scripts get the maps only
            pass
    for kind in ("contact_height", "current"):
        arr_path, _unit, factor, _cmap = MAPS[kind]
        data = ScaledArray(store.array(arr_path), factor)
        out.append((data, map_layer_kwargs(store, kind), "image"))
    out.extend(voltammetric_layer_data(store))
    return out + on_top


#: the voltammetric layer's axes: segment, the potential (V), y and x (um)
VOLTAMMETRIC_AXES = ("segment", "E (V)", "y", "x")


def voltammetric_layer_data(store: Any) -> list[tuple[Any, dict[str, Any], str]]:
    """The current browsed by potential, for a store whose program sweeps
    (LSV, CV, staircase); nothing for one held potential.

    A lazy ``(segment, E, y, x)`` stack in nA (see
    :class:`~napari_seccm.analysis.voltammetry.PotentialStack`) whose E axis
    has the potential grid's step as scale and its first potential as
    translation: the slider's world coordinate is the potential in V.
    """
    from ..analysis.voltammetry import PotentialStack, is_voltammetric

    if not is_voltammetric(store):
        return []
    stack = PotentialStack(store, factor=1e9)
    g = store.grid
    p = g.pitch_um
    stem = Path(store.path).name.removesuffix(".seccm.zarr")
    kw = {
        "name": f"{stem} current by potential (nA)",
        "scale": (1.0, stack.table.step_V, p, p),
        "translate": (0.0, float(stack.grid_V[0]), g.y0_um + p / 2, g.x0_um + p / 2),
        "colormap": "viridis",
        "contrast_limits": stack.contrast_limits(),
        "interpolation2d": "nearest",
        "units": ("pixel", "volt", "micrometer", "micrometer"),
        "axis_labels": VOLTAMMETRIC_AXES,
        "metadata": {
            "seccm": {
                "store": str(Path(store.path).resolve()),
                "kind": "voltammetric",
                "unit": "nA",
                "segments": stack.table.lines(),
            }
        },
    }
    return [(stack, kw, "image")]


def optical_affine(
    x_um: float,
    y_um: float,
    shape: tuple[int, int],
    pixel_um: float,
    mm_affine: tuple[float, ...] | None = None,
) -> np.ndarray:
    """napari affine (rows y, x) placing a camera image taken at stage (x, y).

    The image centre is the stage position. ``mm_affine`` is Micro-Manager's
    pixel-size affine ``(a, b, tx, c, d, ty)``, which maps a pixel offset
    (x_px, y_px) from the image centre to a stage offset ``(a x + b y, c x + d
    y)`` in um; a null affine means plain ``pixel_um`` with no rotation.
    """
    h, w = shape[:2]
    a, b, c, d = pixel_um, 0.0, 0.0, pixel_um
    if mm_affine is not None and any(abs(v) > 0 for v in mm_affine):
        a, b, _tx, c, d, _ty = (float(v) for v in mm_affine[:6])
    ch, cw = (h - 1) / 2, (w - 1) / 2
    return np.array(
        [
            [d, c, y_um - d * ch - c * cw],
            [b, a, x_um - b * ch - a * cw],
            [0.0, 0.0, 1.0],
        ]
    )
