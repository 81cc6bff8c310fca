"""Export maps and point tables: Gwyddion (.gsf, .gwy), TIFF with scale, CSV,
and PNG figures with a scale bar and a colorbar.

Every writer refuses to replace an existing file unless ``overwrite=True``,
and writes through a temporary file in the same folder that is then moved
into place, so a failed export leaves no half-written file behind.

Geometry in the files: lateral values in metres (Gwyddion) or micrometres
(TIFF, ImageJ convention), the offset of the map's corner (the first
pixel's outer edge, ``x0_um``/``y0_um``) and the pitch; values in SI units
(A, S, Ohm, m, S/m). Row 0 of every image is the smallest y, as in the store
(Gwyddion and ImageJ draw it at the top, as napari does).

Not-measured and rejected pixels: NaN in GSF, TIFF and CSV; in .gwy (where
a data field must be finite) they get the mean of the valid pixels and a
mask channel marks them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

FORMATS = ("gsf", "gwy", "tiff", "csv", "png")
_SUFFIX = {
    ".gsf": "gsf",
    ".gwy": "gwy",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".csv": "csv",
    ".png": "png",
}


# ------------------------------------------------------------------ writing
def check_writable(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing file (unless ``overwrite``) or a missing folder."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(
            f"{p} exists; choose another name or pass --overwrite (overwrite=True)"
        )
    if p.exists() and p.is_dir():
        raise IsADirectoryError(f"{p} is a folder, not a file")
    if not p.parent.exists():
        raise FileNotFoundError(f"the folder {p.parent} does not exist")
    return p


@contextlib.contextmanager
def _atomic(path: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it there
    (without replacing an existing file unless ``overwrite``)."""
    p = check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    tmp_p = Path(tmp)
    try:
        yield tmp_p
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_p, 0o666 & ~umask)  # mkstemp makes it private
        if overwrite:
            os.replace(tmp_p, p)
        else:
            os.link(tmp_p, p)  # fails if p appeared meanwhile: never clobber
            tmp_p.unlink()
    finally:
        if tmp_p.exists():
            tmp_p.unlink()


# --------------------------------------------------------------------- GSF
def gsf_bytes(
    image: np.ndarray,
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    z_unit: str = "",
    title: str = "",
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A Gwyddion Simple Field (GSF 1.0) file as bytes.

    Magic line, ``name = value`` header lines (XRes, YRes, XReal, YReal,
    XOffset, YOffset in metres; XYUnits ``m``; ZUnits; Title; extra keys),
    one to four NUL bytes aligning the data to a multiple of 4, then
    ``XRes * YRes`` little-endian float32 values row by row.
    """
    z = np.asarray(image)
    if z.ndim != 2:
        raise ValueError(f"a GSF holds one 2-D channel, got shape {z.shape}")
    ny, nx = z.shape
    lines = [
        "Gwyddion Simple Field 1.0",
        f"XRes = {nx}",
        f"YRes = {ny}",
        f"XReal = {nx * pitch_um * 1e-6!r}",
        f"YReal = {ny * pitch_um * 1e-6!r}",
        f"XOffset = {x0_um * 1e-6!r}",
        f"YOffset = {y0_um * 1e-6!r}",
        "XYUnits = m",
        f"ZUnits = {z_unit}",
    ]
    if title:
        lines.append(f"Title = {title}")
    for k, v in (extra or {}).items():
        if not str(k).isidentifier():
            raise ValueError(f"GSF header names must be identifiers, got {k!r}")
        lines.append(f"{k} = {v}")
    header = ("\n".join(lines) + "\n").encode("utf-8")
    if b"\0" in header:
        raise ValueError("a GSF header cannot hold NUL characters")
    pad = 4 - len(header) % 4  # 1..4 NUL bytes
    return header + b"\0" * pad + np.ascontiguousarray(z, dtype="<f4").tobytes()


def write_gsf(path: str | Path, image: np.ndarray, *, overwrite: bool = False, **kw: Any) -> Path:
    """Write one map as GSF (see :func:`gsf_bytes` for the keywords)."""
    data = gsf_bytes(image, **kw)
    with _atomic(path, overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


# --------------------------------------------------------------------- GWY
def write_gwy(
    path: str | Path,
    channels: list[dict[str, Any]],
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    overwrite: bool = False,
) -> Path:
    """Write maps as channels of one Gwyddion .gwy file (with ``gwyfile``).

    ``channels``: dicts with ``image``, ``title`` and ``unit`` (SI, e.g. ``A``,
    ``m``). Lateral geometry in metres. Non-finite pixels get the mean of
    the finite ones and a mask (``/N/mask``, 1 = not valid).
    """
    from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit

    if not channels:
        raise ValueError("nothing to write: no channels")
    c = GwyContainer()
    for k, ch in enumerate(channels):
        z = np.asarray(ch["image"], dtype=np.float64)
        ny, nx = z.shape
        bad = ~np.isfinite(z)
        fill = float(np.mean(z[~bad])) if (~bad).any() else 0.0
        geo = {
            "xreal": nx * pitch_um * 1e-6,
            "yreal": ny * pitch_um * 1e-6,
            "xoff": x0_um * 1e-6,
            "yoff": y0_um * 1e-6,
        }
        c[f"/{k}/data"] = GwyDataField(
            np.where(bad, fill, z),
            **geo,
            si_unit_xy=GwySIUnit(unitstr="m"),
            si_unit_z=GwySIUnit(unitstr=ch.get("unit", "")),
        )
        c[f"/{k}/data/title"] = str(ch.get("title", f"channel {k}"))
        if bad.any():
            c[f"/{k}/mask"] = GwyDataField(
                bad.astype(np.float64),
                **geo,
                si_unit_xy=GwySIUnit(unitstr="m"),
                si_unit_z=GwySIUnit(unitstr=""),
            )
    with _atomic(path, overwrite) as tmp:
        c.tofile(str(tmp))
    return Path(path)


# -------------------------------------------------------------------- TIFF
def write_tiff(
    path: str | Path,
    image: np.ndarray,
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    value_unit: str = "",
    title: str = "",
    overwrite: bool = False,
) -> Path:
    """One map as a float32 ImageJ TIFF with its scale.

    ImageJ convention: ``XResolution = YResolution = 1 / pitch`` pixels per
    ``unit=um`` (ResolutionUnit none), ``xorigin``/``yorigin`` in pixels
    (so that pixel centres land at their stage x, y); also ``x0_um``,
    ``y0_um``, ``pitch_um``, ``value_unit`` and ``channel`` in the ImageJ
    description. NaN stays NaN.
    """
    import tifffile

    z = np.asarray(image, dtype=np.float32)
    if z.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {z.shape}")
    meta = {
        "unit": "um",
        "xorigin": -x0_um / pitch_um,
        "yorigin": -y0_um / pitch_um,
        "x0_um": x0_um,
        "y0_um": y0_um,
        "pitch_um": pitch_um,
        "value_unit": value_unit,
        "channel": title,
    }
    with _atomic(path, overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            z,
            imagej=True,
            resolution=(1.0 / pitch_um, 1.0 / pitch_um),
            metadata=meta,
        )
    return Path(path)


# --------------------------------------------------------------------- PNG
_PREFIXES = [
    (1e-15, "f"),
    (1e-12, "p"),
    (1e-9, "n"),
    (1e-6, "u"),
    (1e-3, "m"),
    (1.0, ""),
    (1e3, "k"),
    (1e6, "M"),
    (1e9, "G"),
]


def si_prefix(values: np.ndarray) -> tuple[float, str]:
    """``(scale, prefix)`` that brings the typical magnitude of the finite
    values into 1..1000 (scale multiplies the values)."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return 1.0, ""
    m = float(np.percentile(v, 95))  # the larger values read 1..1000 (not 0.5 of a unit)
    best = _PREFIXES[0]
    for f, p in _PREFIXES:
        if m >= f:
            best = (f, p)
    return 1.0 / best[0], best[1]


def write_png(
    path: str | Path,
    image: np.ndarray,
    *,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    label: str,
    unit: str = "",
    title: str = "",
    cmap: str = "viridis",
    dpi: int = 120,
    overwrite: bool = False,
) -> Path:
    """A figure of one map in stage um with a colorbar (``label`` in
    ``prefix+unit``, the prefix chosen from the values) and a scale bar."""
    from matplotlib.figure import Figure

    from .figures import show_map

    check_writable(path, overwrite)
    scale, prefix = si_prefix(image) if unit else (1.0, "")
    fig = Figure(figsize=(6.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    lab = f"{label} ({prefix}{unit})" if unit else label
    show_map(
        ax,
        np.asarray(image, dtype=float),
        x0_um=x0_um,
        y0_um=y0_um,
        pitch_um=pitch_um,
        label=lab,
        scale=scale,
        cmap=cmap,
    )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with _atomic(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


# --------------------------------------------------------------------- CSV
def write_point_table(
    path: str | Path,
    columns: dict[str, np.ndarray],
    *,
    overwrite: bool = False,
    float_format: str = "%.10g",
) -> Path:
    """A CSV table, one row per point: a header of the column names (with
    their units), then the values; NaN is written ``nan``; string columns
    as they are (no commas allowed in them)."""
    names = list(columns)
    if not names:
        raise ValueError("no columns to write")
    cols = [np.asarray(columns[k]) for k in names]
    n = cols[0].shape[0]
    if any(c.shape != (n,) for c in cols):
        raise ValueError("every column must be 1-D with one value per point")
    fmts = []
    for c in cols:
        if c.dtype.kind in "iub":
            fmts.append("%d")
        elif c.dtype.kind == "f":
            fmts.append(float_format)
        else:
            if any("," in str(x) or "\n" in str(x) for x in np.unique(c.astype(str))):
                raise ValueError("string columns must not hold commas or newlines")
            fmts.append("%s")
    row_fmt = ",".join(fmts)
    with _atomic(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        fh.write(",".join(names) + "\n")
        block = 65536
        for s in range(0, n, block):
            rows = zip(*(c[s : s + block].tolist() for c in cols), strict=True)
            fh.write("\n".join(row_fmt % r for r in rows))
            fh.write("\n")
    return Path(path)


def write_traces_csv(
    store: Any,
    path: str | Path,
    *,
    points: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Path:
    """The raw traces as a long CSV table, one row per sample of each measured
    point: ``point,row,col,x_um,y_um,status,t_s,E_V,I_A`` (e.g. the I-E curves
    of a staircase or CV map, for a plotting program). ``points`` selects
    point indices (default: every measured point); points not measured yet
    are refused by index."""
    from ..acquisition.store import STATUS_NAMES
    from .maps import open_store

    check_writable(path, overwrite)
    with open_store(store) as s:
        done = s.done_mask()
        if points is None:
            idx = np.flatnonzero(done)
        else:
            idx = np.asarray(list(points), dtype=np.int64)
            bad = idx[(idx < 0) | (idx >= done.size)]
            if bad.size:
                raise ValueError(
                    f"point {int(bad[0])} does not exist: the scan has points 0..{done.size - 1}"
                )
            missing = idx[~done[idx]]
            if missing.size:
                raise ValueError(f"point {int(missing[0])} has not been measured yet")
        if idx.size == 0:
            raise ValueError("no measured point to export")
        t = np.asarray(s.array("traces/time_s")[:], dtype=float)
        pts, res = s.points(), s.results()
        cur_arr, pot_arr = s.array("traces/current_A"), s.array("traces/potential_V")
        with _atomic(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
            fh.write("point,row,col,x_um,y_um,status,t_s,E_V,I_A\n")
            for start in range(0, idx.size, 256):
                block = idx[start : start + 256]
                cur = np.asarray(cur_arr.get_orthogonal_selection((block, slice(None))))
                pot = np.asarray(pot_arr.get_orthogonal_selection((block, slice(None))))
                for k, i in enumerate(block):
                    ok = np.isfinite(cur[k])
                    head = (
                        f"{i},{pts['row'][i]},{pts['col'][i]},{res['x_um'][i]:.6g},"
                        f"{res['y_um'][i]:.6g},{STATUS_NAMES[int(res['status'][i])]},"
                    )
                    fh.writelines(
                        f"{head}{tt:.9g},{e:.9g},{c:.9g}\n"
                        for tt, e, c in zip(t[ok], pot[k][ok], cur[k][ok], strict=True)
                    )
    return Path(path)


# ----------------------------------------------------------------- channels
@dataclass(frozen=True)
class Channel:
    """A map that can be exported: its key in the analysis maps, title, SI
    unit, and the factor from the map's unit to SI."""

    key: str
    title: str
    unit: str
    to_si: float = 1.0
    #: unit and factor (from SI) for figures, when the field's habit differs
    #: from SI (conductivity in S/cm, as the analysis reports it)
    figure_unit: tuple[str, float] | None = None


CHANNELS: dict[str, Channel] = {
    "current": Channel("current_A", "Current", "A"),
    "conductance": Channel("conductance_S", "Conductance", "S"),
    "resistance": Channel("resistance_ohm", "Resistance", "Ohm"),
    "offset": Channel("offset_A", "I-V offset", "A"),
    "r2": Channel("r2", "I-V fit R^2", ""),
    "height": Channel("height_um", "Contact height", "m", 1e-6),
    "height_flat": Channel("height_flat_um", "Contact height, plane removed", "m", 1e-6),
    "spreading_conductance": Channel("spreading_conductance_S", "Spreading conductance", "S"),
    "conductivity": Channel(
        "conductivity_S_per_cm", "Local conductivity", "S/m", 100.0, ("S/cm", 0.01)
    ),
    "domains": Channel("labels", "Domains (0 [100], 1 [001])", ""),
    "quality": Channel("quality", "Quality code", ""),
}


def _channel_image(maps: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, Channel]:
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; choose one of {', '.join(CHANNELS)}")
    ch = CHANNELS[name]
    if ch.key not in maps:
        raise ValueError(
            f"channel {name!r} is not available for this store (available: "
            f"{', '.join(k for k, c in CHANNELS.items() if c.key in maps)})"
        )
    img = np.asarray(maps[ch.key], dtype=np.float64)
    if ch.key == "labels":
        img = np.where(img >= 0, img, np.nan)
    return img * ch.to_si, ch


_MAP_KEYS = (
    "r2_min",
    "rest_potential_V",
    "settle_fraction",
    "settle_s",
    "branch",
    "potential_range_V",
    "scheduler",
)


def store_maps(
    store: Any,
    channels: list[str] | None = None,
    series: dict[str, Any] | None = None,
    **analysis: Any,
) -> dict[str, np.ndarray]:
    """The maps behind ``channels`` (default: every channel the store can give).

    Conductance maps always; the contact height when asked; the domain labels
    (the classes of :func:`~.report.analyze_map`, as ``napari-seccm analyze``
    finds them: 0 [100], 1 [001], -1 none or a boundary line; all [100] when
    there are no two classes) for ``domains``, ``spreading_conductance`` and
    ``conductivity``; the last two only when the series model is known (rig
    snapshot or ``series``).
    """
    from .maps import conductance_maps, height_map, open_store
    from .report import analyze_map
    from .series import SeriesModel

    want = set(channels) if channels is not None else set(CHANNELS)
    unknown = want - set(CHANNELS)
    if unknown:
        raise ValueError(f"unknown channel(s) {sorted(unknown)}; choose from {', '.join(CHANNELS)}")
    with open_store(store) as s:
        cm = conductance_maps(s, **{k: v for k, v in analysis.items() if k in _MAP_KEYS})
        maps = {k: v for k, v in cm.items() if isinstance(v, np.ndarray)}
        g = s.grid
        meta = s.meta
        if want & {"height", "height_flat"}:
            with contextlib.suppress(ValueError):
                h = height_map(s)
                maps["height_um"] = h["height_um"]
                maps["height_flat_um"] = h["height_flat_um"]
    model = None
    if want & {"domains", "spreading_conductance", "conductivity"}:
        given = {k: v for k, v in (series or {}).items() if v is not None}
        try:
            model = SeriesModel.from_meta(meta, **given)
        except ValueError:
            if given and want & {"spreading_conductance", "conductivity"}:
                raise
            model = None
        with contextlib.suppress(ValueError):
            _, amaps = analyze_map(
                cm["conductance_S"],
                x0_um=g.x0_um,
                y0_um=g.y0_um,
                pitch_um=g.pitch_um,
                x_um=cm["x_um"],
                order=cm.get("visit_index"),
                model=model,
            )
            maps["labels"] = amaps["labels"]
    if want & {"spreading_conductance", "conductivity"} and model is not None:
        gsp = model.spreading_conductance_S(cm["conductance_S"], cm["x_um"])
        maps["spreading_conductance_S"] = gsp
        maps["conductivity_S_per_cm"] = model.conductivity_S_per_cm(gsp)
    return maps


def _unit_slug(unit: str) -> str:
    """A unit as a column-name suffix: 'S/cm' -> 'S_per_cm', 'um' -> 'um'."""
    return unit.replace("/", "_per_").replace(" ", "").replace("^", "")


def point_table_columns(store: Any, **analysis: Any) -> dict[str, np.ndarray]:
    """The per-point table of a store: planned and measured positions, landing
    status, map value, contact height, times, and conductance (fit or CA) with
    its quality code; units in the column names."""
    from ..acquisition.store import STATUS_NAMES
    from .maps import QUALITY_NAMES, open_store, point_conductance

    with open_store(store) as s:
        pts = s.points()
        res = s.results()
        pc = point_conductance(s, **{k: v for k, v in analysis.items() if k in _MAP_KEYS})
    n = pts["x_um"].shape[0]
    cols: dict[str, np.ndarray] = {
        "index": np.arange(n),
        "row": pts["row"],
        "col": pts["col"],
        "x_planned_um": pts["x_um"],
        "y_planned_um": pts["y_um"],
        "x_um": res["x_um"],
        "y_um": res["y_um"],
        "done": res["done"].astype(np.int64),
        "status": res["status"].astype(np.int64),
        "status_name": np.array([STATUS_NAMES.get(int(v), "?") for v in res["status"]]),
        "value_A": res["value_A"],
        "contact_z_um": res["contact_z_um"],
        "t_start_s": res["t_start_s"],
        "wall_time_s": res["wall_time_s"],
    }
    for k in (
        "conductance_S",
        "resistance_ohm",
        "offset_A",
        "r2",
        "residual_rms_A",
        "conductance_err_S",
    ):
        if k in pc:
            cols[k] = pc[k]
    cols["quality"] = pc["quality"].astype(np.int64)
    cols["quality_name"] = np.array([QUALITY_NAMES[int(v)] for v in pc["quality"]])
    return cols


def format_from_path(path: str | Path) -> str | None:
    return _SUFFIX.get(Path(path).suffix.lower())


def resolve_format(out: str | Path, fmt: str | None) -> str:
    """The export format: ``fmt``, or the one ``out``'s suffix names; a
    ValueError naming the formats there are."""
    fmt = (fmt or format_from_path(out) or "").lower()
    if fmt == "tif":
        fmt = "tiff"
    if fmt not in FORMATS:
        what = (
            f"unknown export format {fmt!r}"
            if fmt
            else (f"cannot tell the export format from the name {Path(out).name!r}")
        )
        raise ValueError(
            f"{what}; choose one of {', '.join(FORMATS)} (--format, or a .gsf/.gwy/.tif/.csv/.png name)"
        )
    return fmt


def export_store(
    store: Any,
    out: str | Path,
    *,
    fmt: str | None = None,
    channel: str = "current",
    channels: list[str] | None = None,
    overwrite: bool = False,
    series: dict[str, Any] | None = None,
    **analysis: Any,
) -> Path:
    """Export a store to ``out`` in ``fmt`` (default: from the suffix).

    - ``gsf``, ``tiff``, ``png``: one ``channel`` (see ``CHANNELS``);
    - ``gwy``: ``channels`` (default: every available one) in one file;
    - ``csv``: the per-point table (:func:`point_table_columns`), with the
      ``channel``'s value at each point as a column of its own (unless it is
      the current, the table's ``value_A``).

    ``analysis``: options of the conductance maps (``r2_min``,
    ``rest_potential_V``, ...); ``series``: series-model parameters (see
    :class:`~.series.SeriesModel`) for the spreading-conductance and
    conductivity channels when the store's rig snapshot lacks them. Raises ``FileExistsError`` for an existing ``out`` (unless
    ``overwrite``) before doing any work.
    """
    from .maps import open_store

    fmt = resolve_format(out, fmt)
    check_writable(out, overwrite)
    with open_store(store) as s:
        g = s.grid
        geo = {"x0_um": g.x0_um, "y0_um": g.y0_um, "pitch_um": g.pitch_um}
        if fmt == "csv":
            cols = point_table_columns(s, **analysis)
            if channel != "current":  # (the current is the table's value_A)
                # the chosen map's value at each point, as a column of its own
                img, ch = _channel_image(
                    store_maps(s, [channel], series=series, **analysis), channel
                )
                name = f"{channel}_{_unit_slug(ch.unit)}" if ch.unit else channel
                cols[name] = np.asarray(img)[cols["row"], cols["col"]]
            return write_point_table(out, cols, overwrite=overwrite)
        wanted = (channels or None) if fmt == "gwy" else [channel]
        maps = store_maps(s, wanted, series=series, **analysis)
        potential = s.plan().measurement
    if fmt == "gwy":
        names = channels or [k for k, c in CHANNELS.items() if c.key in maps]
        chs = []
        for name in names:
            img, ch = _channel_image(maps, name)
            chs.append({"image": img, "title": ch.title, "unit": ch.unit})
        return write_gwy(out, chs, overwrite=overwrite, **geo)
    img, ch = _channel_image(maps, channel)
    title = ch.title
    if channel == "current" and getattr(potential, "kind", "") == "ca":
        title = f"{title} at {potential.potential_V:g} V"
    return write_map(out, fmt, img, ch, title=title, overwrite=overwrite, **geo)


def write_map(
    out: str | Path,
    fmt: str,
    image: np.ndarray,
    channel: Channel,
    *,
    title: str,
    x0_um: float,
    y0_um: float,
    pitch_um: float,
    overwrite: bool = False,
) -> Path:
    """One map (in the channel's SI unit) as ``gsf``, ``gwy``, ``tiff`` or ``png``."""
    geo = {"x0_um": x0_um, "y0_um": y0_um, "pitch_um": pitch_um}
    if fmt == "gsf":
        return write_gsf(out, image, z_unit=channel.unit, title=title, overwrite=overwrite, **geo)
    if fmt == "gwy":
        chs = [{"image": image, "title": title, "unit": channel.unit}]
        return write_gwy(out, chs, overwrite=overwrite, **geo)
    if fmt == "tiff":
        return write_tiff(
            out, image, value_unit=channel.unit, title=title, overwrite=overwrite, **geo
        )
    if fmt != "png":
        raise ValueError(f"a map is written as gsf, gwy, tiff or png, not {fmt!r}")
    unit, factor = channel.figure_unit or (channel.unit, 1.0)
    return write_png(
        out, image * factor, label=channel.title, unit=unit, title=title, overwrite=overwrite, **geo
    )
