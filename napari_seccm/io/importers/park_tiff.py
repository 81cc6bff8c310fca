"""Park Systems (SmartScan / XEI) TIFF images: one value per map pixel.

Park writes an ordinary TIFF (an 8-bit preview) whose private tags hold the
measurement: 50432 a magic number (0x0E031301), 50433 the version, 50434 the
data, 50435 a little-endian header, 50436 comments (50437-50441: line
profile, spectroscopy and other data). The header's fields, in order, as
Park's own Python reader (pspylib) and Gwyddion's ``psia`` module read
them: data category (0 image, 1 line profile, 2 spectroscopy), channel name
(32 UTF-16 characters), head mode (8), low-pass strength, auto flatten, AC
track, width, height (pixels), rotation (deg), sine scan, overscan ratio,
fast scan left to right, slow scan bottom to top, XY swapped, scan size x
and y, scan offset x and y (um), scan rate, set point, set point unit (8),
tip bias, sample bias (V), data gain, z scale, z offset, unit (8), data
min, max and average, compression; then (newer files) log scale, squared,
z servo gain, z scanner range, three voltage/servo modes (8 each) and the
data type (0 int16, 1 int32, 2 float32; older files: int16).

A value is ``raw * data gain`` in the header's unit (as pspylib computes
it); the first stored row is the bottom of the image (the smallest y, as
Gwyddion reads it). An image in a current unit becomes the store's current
map, one in a length unit its contact-height map; a current and a height
image of one scan (same size and offset) combine into one store. The scan
offset is taken as the image's centre. Images (category 0) are read here; a
spectroscopy TIFF (category 2: a curve at each point, tags 50438 and 50439)
by :mod:`.park_spectroscopy`, one file at a time; line profiles (category 1)
are refused.
"""

from __future__ import annotations

import math
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from ._common import (
    ImportedScan,
    ImportInputError,
    ImportOptions,
    Landing,
    json_safe,
    unit_factor,
)

if TYPE_CHECKING:
    from pathlib import Path

MAGIC = 0x0E031301
TAG_MAGIC, TAG_VERSION, TAG_DATA, TAG_HEADER, TAG_COMMENTS = 50432, 50433, 50434, 50435, 50436
#: (name, struct format) of the header fields, in order (see the module doc)
HEADER_FIELDS = (
    ("data_category", "i"),
    ("channel_name", "64s"),
    ("head_mode", "16s"),
    ("low_pass_strength", "d"),
    ("auto_flatten", "i"),
    ("ac_track", "i"),
    ("width", "i"),
    ("height", "i"),
    ("rotation_deg", "d"),
    ("sine_scan", "i"),
    ("overscan_ratio", "d"),
    ("fast_scan_left_to_right", "i"),
    ("slow_scan_bottom_to_top", "i"),
    ("xy_swapped", "i"),
    ("scan_size_x_um", "d"),
    ("scan_size_y_um", "d"),
    ("scan_offset_x_um", "d"),
    ("scan_offset_y_um", "d"),
    ("scan_rate_Hz", "d"),
    ("set_point", "d"),
    ("set_point_unit", "16s"),
    ("tip_bias_V", "d"),
    ("sample_bias_V", "d"),
    ("data_gain", "d"),
    ("z_scale", "d"),
    ("z_offset", "d"),
    ("unit", "16s"),
    ("data_min", "i"),
    ("data_max", "i"),
    ("data_average", "i"),
    ("compression", "i"),
    ("log_scale", "i"),
    ("squared", "i"),
    ("z_servo_gain", "d"),
    ("z_scanner_range", "d"),
    ("xy_voltage_mode", "16s"),
    ("z_voltage_mode", "16s"),
    ("xy_servo_mode", "16s"),
    ("data_type", "i"),
)
#: the fields every header has (up to ``compression``); the rest only newer ones
_REQUIRED = [n for n, _ in HEADER_FIELDS].index("compression") + 1
DATA_TYPES = {0: "<i2", 1: "<i4", 2: "<f4"}


def _tags(path: Path) -> dict[int, Any]:
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            return {t.code: t.value for t in page.tags.values() if 50432 <= t.code <= 50441}
    except Exception as e:
        raise ImportInputError(f"{path}: not a readable TIFF ({type(e).__name__}: {e})") from None


def is_park_tiff(path: Path) -> bool:
    """Does the TIFF carry Park's magic number (tag 50432)?"""
    try:
        return _magic(_tags(path).get(TAG_MAGIC)) == MAGIC
    except ImportInputError:
        return False


def _magic(v: Any) -> int | None:
    if isinstance(v, (tuple, list, np.ndarray)):
        v = v[0] if len(v) else None
    return int(v) if isinstance(v, (int, np.integer)) else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-16-le", "replace").split("\x00", 1)[0].strip()


def parse_header(raw: bytes, path: Path) -> dict[str, Any]:
    """The header's fields (see the module doc); a header too short for the
    fields every file has is refused."""
    out: dict[str, Any] = {}
    pos = 0
    for k, (name, fmt) in enumerate(HEADER_FIELDS):
        size = struct.calcsize("<" + fmt)
        if pos + size > len(raw):
            if k < _REQUIRED:
                raise ImportInputError(
                    f"{path}: Park header (tag {TAG_HEADER}) is {len(raw)} bytes, too short "
                    f"for its field {name!r} (needs at least {_min_header_bytes()} bytes): "
                    "truncated or not a Park image"
                )
            break
        (v,) = struct.unpack_from("<" + fmt, raw, pos)
        out[name] = _text(v) if isinstance(v, bytes) else v
        pos += size
    out.setdefault("data_type", 0)  # older files: 16-bit integers
    return out


def _min_header_bytes() -> int:
    return sum(struct.calcsize("<" + f) for _, f in HEADER_FIELDS[:_REQUIRED])


def _as_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return np.asarray(v, dtype=np.uint8).tobytes()


def _park(path: Path) -> tuple[dict[int, Any], dict[str, Any]]:
    """(the Park tags, the decoded image header) of a Park TIFF."""
    tags = _tags(path)
    if _magic(tags.get(TAG_MAGIC)) != MAGIC:
        raise ImportInputError(
            f"{path}: no Park Systems magic number in tag {TAG_MAGIC} (0x{MAGIC:08X}): not "
            "a Park image"
        )
    if TAG_HEADER not in tags:
        raise ImportInputError(f"{path}: Park image without its header (tag {TAG_HEADER})")
    return tags, parse_header(_as_bytes(tags[TAG_HEADER]), path)


def _comments(tags: dict[int, Any]) -> str:
    c = tags.get(TAG_COMMENTS, b"")
    return c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c)


def _image(path: Path) -> tuple[np.ndarray, dict[str, Any], str]:
    """(values in the header's unit, rows from the bottom; header; comments)."""
    tags, h = _park(path)
    cat = h["data_category"]
    if cat != 0:
        kind = {1: "a line profile", 2: "a spectroscopy file"}.get(cat, f"data category {cat}")
        raise ImportInputError(
            f"{path}: {kind}; only Park images (data category 0) and spectroscopy files "
            "(2, imported one at a time) are imported"
        )
    if TAG_DATA not in tags:
        raise ImportInputError(f"{path}: Park image without its data (tag {TAG_DATA})")
    nx, ny = h["width"], h["height"]
    if not (0 < nx <= 65536 and 0 < ny <= 65536):
        raise ImportInputError(f"{path}: image size {nx} x {ny} px is not a valid size")
    dt = DATA_TYPES.get(h["data_type"])
    if dt is None:
        raise ImportInputError(
            f"{path}: unknown data type {h['data_type']} (0 int16, 1 int32, 2 float32)"
        )
    raw = _as_bytes(tags[TAG_DATA])
    need = nx * ny * np.dtype(dt).itemsize
    if len(raw) < need:
        raise ImportInputError(
            f"{path}: the data (tag {TAG_DATA}) holds {len(raw)} bytes, {nx} x {ny} px of "
            f"{np.dtype(dt).name} need {need}: truncated"
        )
    gain = h["data_gain"]
    if not (math.isfinite(gain) and gain != 0):
        raise ImportInputError(f"{path}: header data gain is {gain!r}: no values can be read")
    vals = np.frombuffer(raw[:need], dtype=dt).astype(float).reshape(ny, nx) * gain
    return vals, h, _comments(tags)


def read(paths: list[Path], opts: ImportOptions) -> ImportedScan:
    """One map from one or two images of a scan (a current and a height), or
    the curves of one spectroscopy file (:mod:`.park_spectroscopy`)."""
    from ...acquisition.plan import MapGrid

    for p in paths:
        tags, h = _park(p)
        if h["data_category"] == 2:
            if len(paths) > 1:
                raise ImportInputError(
                    f"{p}: a spectroscopy file (data category 2) is imported on its own, "
                    f"not with {len(paths) - 1} other file(s)"
                )
            from . import park_spectroscopy

            return park_spectroscopy.read(p, opts, tags, {**h, "comments": _comments(tags)})

    current = height = None
    headers: dict[str, Any] = {}
    geom: tuple[Any, ...] | None = None
    notes: list[str] = []
    channels: dict[str, str] = {}
    for p in paths:
        vals, h, comments = _image(p)
        headers[p.name] = {**h, "comments": comments}
        unit = h["unit"] or "(none)"
        where = f"{p}: header unit"
        try:
            vals = vals * unit_factor(unit, "current", where)
            role = "current"
        except ImportInputError:
            try:
                vals = vals * unit_factor(unit, "length", where)
                role = "height"
            except ImportInputError:
                raise ImportInputError(
                    f"{p}: channel {h['channel_name']!r} is in {unit!r}: neither a current "
                    "(A, nA, pA...) nor a height (um, nm): no map to import"
                ) from None
        if (role == "current" and current is not None) or (role == "height" and height is not None):
            raise ImportInputError(f"{p}: a second {role} image: give one current and one height")
        g = (
            h["width"],
            h["height"],
            h["scan_size_x_um"],
            h["scan_size_y_um"],
            h["scan_offset_x_um"],
            h["scan_offset_y_um"],
        )
        if geom is not None and not np.allclose(g, geom):
            raise ImportInputError(
                f"{p}: not the same scan as {paths[0].name} (size, pixels or offset differ)"
            )
        geom = g
        channels[role] = f"{h['channel_name']} ({unit}) in {p.name}"
        if role == "current":
            current = vals
        else:
            height = vals
        if h["rotation_deg"]:
            notes.append(f"{p.name}: scan rotation {h['rotation_deg']:g} deg is not applied")
    assert geom is not None
    nx, ny, sx, sy, ox, oy = geom
    px, py = sx / nx, sy / ny
    if not (px > 0 and math.isclose(px, py, rel_tol=1e-6)):
        raise ImportInputError(
            f"{paths[0]}: pixels of {px:g} x {py:g} um (scan size {sx:g} x {sy:g} um over "
            f"{nx} x {ny} px): a store's map needs square pixels above 0 um"
        )
    grid = MapGrid(ox - sx / 2, oy - sy / 2, px, nx, ny)
    rr, cc = np.mgrid[0:ny, 0:nx]
    xs, ys = grid.centers(rr.ravel(), cc.ravel())
    from ...acquisition.store import FAULT, OK

    cur = current.ravel() if current is not None else None
    hgt = height.ravel() if height is not None else None
    landings = []
    for k in range(nx * ny):
        v = float(cur[k]) if cur is not None else math.nan
        ok = cur is None or math.isfinite(v)
        landings.append(
            Landing(
                x_um=float(xs[k]),
                y_um=float(ys[k]),
                value_A=v,
                contact_z_um=float(hgt[k]) if hgt is not None else math.nan,
                status=OK if ok else FAULT,
            )
        )
    first = headers[paths[0].name]
    scan = ImportedScan(
        fmt="park-tiff",
        sources=list(paths),
        landings=landings,
        sample_rate_Hz=None,
        source_metadata=json_safe({"headers": headers}),
        notes=notes,
        grid=grid,
        potential_V=float(first["sample_bias_V"]),
        potential_source="from the header's sample bias (unverified for SECCM files)",
    )
    scan.inferred.update(
        map_channel=channels.get("current"),
        height_channel=channels.get("height"),
        geometry="scan offset taken as the image centre; first stored row = smallest y",
        value="raw * data gain, in the header's unit",
    )
    return scan
