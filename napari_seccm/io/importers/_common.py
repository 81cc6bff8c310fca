"""What every importer shares: the in-memory scan, units, map geometry,
provenance and the one way a store is written.

An importer reads its files into an :class:`ImportedScan` (landings in the
order they were measured, each with its position, samples and contact
height) and checks them; :func:`write_store` then turns it into a
``*.seccm.zarr`` through :class:`~napari_seccm.acquisition.store.ScanStore`,
with a plan that gives exactly the imported points (a points area in the
order the source visited them, or a rectangle for a raster image), so the
store validates, analyses, exports and opens like a native one.

Nothing is written until every file is read and checked; the store is
written into a hidden sibling folder holding the creation marker and renamed
into place once complete, so a failed or killed import leaves no store
behind (and never a half-replaced one).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ...acquisition.plan import MapGrid, ScanPlan

#: bumped whenever an importer maps a file differently (recorded in every store)
IMPORTER_VERSION = 1

FORMATS = ("wec-tdms", "park-tiff", "heka-mat", "echemtips", "csv")

#: the sample rates a store's plan accepts (PotentiostatSettings.sample_rate_Hz)
MIN_RATE_HZ, MAX_RATE_HZ = 100.0, 100_000.0
#: the time step of a source may vary this much (relative) and still be one rate
RATE_TOLERANCE = 0.01
#: a potential that varies less than this within a landing is held (CA), V
HELD_POTENTIAL_V = 5e-3


class ImportInputError(ValueError):
    """A file that cannot be imported: the message names the file, the field
    and the limit; nothing was written."""


@dataclass
class ImportOptions:
    """What the user may say about the files (the CLI's options)."""

    #: map pitch, um (None: the median nearest-neighbour spacing of the landings)
    pitch_um: float | None = None
    #: readout window [start, end] s from each landing's contact (None: its last half)
    readout_window_s: tuple[float, float] | None = None
    #: TDMS channel, HEKA trace number or CSV column of the current
    current_channel: str | None = None
    #: ... of the potential
    potential_channel: str | None = None
    #: potential of a map whose source records none (a CA map), V
    potential_V: float | None = None
    #: HEKA: positions file (CSV x (um), y (um); or JSON)
    positions: str | None = None
    #: HEKA: a grid instead of positions (nx, ny) at pitch_um from origin_um
    grid: tuple[int, int] | None = None
    grid_order: str = "raster"
    origin_um: tuple[float, float] = (0.0, 0.0)
    #: CSV: role -> column name (and unit: ``NAME@UNIT``)
    columns: dict[str, str] = field(default_factory=dict)
    #: CSV: "samples" (one row per sample), "points" (one row per point) or None (auto)
    csv_shape: str | None = None
    #: keep landings that fall into one map pixel (the later one is shown)
    allow_shared_pixels: bool = False

    def as_json(self) -> dict[str, Any]:
        """The options that differ from the defaults (what the user said)."""
        default = ImportOptions()
        return json_safe({k: v for k, v in self.__dict__.items() if v != getattr(default, k)})


@dataclass
class Landing:
    """One landing as the source recorded it."""

    x_um: float
    y_um: float
    #: current from contact on, A (None: the source gives one value per point)
    current_A: np.ndarray | None = None
    potential_V: np.ndarray | None = None
    contact_z_um: float = math.nan
    #: when the landing started on the source's clock, s
    t_start_s: float = math.nan
    #: the map value, when the source gives one (no samples), A
    value_A: float | None = None
    #: a landing status decided by the importer (None: from the samples)
    status: int | None = None
    approach_z_um: np.ndarray | None = None
    approach_current_A: np.ndarray | None = None

    @property
    def n(self) -> int:
        return 0 if self.current_A is None else int(self.current_A.shape[0])


@dataclass
class ImportedScan:
    """A scan read from another program's files, ready to be written."""

    fmt: str
    sources: list[Path]
    landings: list[Landing]
    #: samples per second of the traces (None: a map with one value per point)
    sample_rate_Hz: float | None
    #: the source's own header / properties (JSON values)
    source_metadata: dict[str, Any]
    #: what was inferred and how (filled in further by write_store)
    inferred: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: a raster image's exact grid (Park): every pixel a point, in raster order
    grid: MapGrid | None = None
    #: Unix time of the first landing, when the source says (else the file's mtime)
    start_time_s: float | None = None
    #: the potential the source's header records for a map without samples, V
    potential_V: float | None = None
    #: where that potential comes from (for the provenance)
    potential_source: str = ""


# ------------------------------------------------------------------ values
def json_safe(v: Any, depth: int = 0) -> Any:
    """A JSON value for the store's metadata: numpy numbers as numbers,
    NaN/infinity as None, dates as ISO text, bytes as text, arrays as lists
    (long ones cut to their first 1000 values)."""
    if depth > 20:
        return str(v)
    if isinstance(v, dict):
        return {str(k): json_safe(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x, depth + 1) for x in v[:1000]]
    if isinstance(v, np.ndarray):
        return json_safe(v.ravel()[:1000].tolist(), depth + 1)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.datetime64):
        return str(np.datetime_as_string(v, unit="us"))
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if v is None or isinstance(v, str):
        return v
    return str(v)


# ------------------------------------------------------------------- units
#: the quantity of each role, its pint dimensionality and the store's unit
QUANTITIES = {
    "length": ("[length]", "micrometer", "um, nm, mm"),
    "current": ("[current]", "ampere", "A, mA, uA, nA, pA"),
    "potential": ("[electric_potential]", "volt", "V, mV"),
    "time": ("[time]", "second", "s, ms"),
}

_UNIT_IN_NAME = re.compile(r"^\s*(.*?)\s*[\(\[]\s*([^()\[\]]+?)\s*[\)\]]\s*$")


def split_unit(name: str) -> tuple[str, str | None]:
    """``"x (um)"`` -> ``("x", "um")``; ``"x"`` -> ``("x", None)``."""
    m = _UNIT_IN_NAME.match(name)
    return (m.group(1), m.group(2)) if m else (name.strip(), None)


@cache
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def unit_factor(unit: str, quantity: str, where: str) -> float:
    """The factor that turns a value in ``unit`` into the store's unit of
    ``quantity`` (um, A, V, s). An unknown unit, or one of another quantity
    (an ``x`` in A), raises :class:`ImportInputError` naming ``where``."""
    import pint

    dim, target, examples = QUANTITIES[quantity]
    try:
        q = _registry().Quantity(1.0, unit.strip().replace("μ", "u").replace("µ", "u"))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, ValueError) as e:
        raise ImportInputError(
            f"{where}: unknown unit {unit!r} ({type(e).__name__}); a {quantity} is given in "
            f"{examples}"
        ) from None
    except Exception as e:  # pint's parser on odd text (an operator alone...)
        raise ImportInputError(
            f"{where}: cannot read the unit {unit!r} ({type(e).__name__}); a {quantity} is "
            f"given in {examples}"
        ) from None
    if not q.check(dim):
        raise ImportInputError(f"{where}: unit {unit!r} is not a {quantity} (expected {examples})")
    return float(q.to(target).magnitude)


# -------------------------------------------------------------- provenance
def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def source_record(path: Path) -> dict[str, Any]:
    """Path, name, size and sha256 of a source file."""
    from ..images import file_sha256

    return {
        "path": str(path.resolve()),
        "name": path.name,
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
    }


def check_sources(paths: Sequence[str | Path]) -> list[Path]:
    """The files as paths; a missing one, a folder or an empty file is refused."""
    out = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if not path.is_file():
            raise ImportInputError(f"{path} is not a file")
        if path.stat().st_size == 0:
            raise ImportInputError(f"{path} is empty (0 bytes): nothing to import")
        out.append(path)
    if not out:
        raise ImportInputError("no file to import")
    return out


# ------------------------------------------------------------------ traces
def sample_rate(dt_s: np.ndarray, where: str) -> float:
    """One sample rate from time steps that may jitter by 1 %; refused when
    they vary more or lie outside what a store holds."""
    dt = np.asarray(dt_s, dtype=float)
    dt = dt[np.isfinite(dt)]
    if dt.size == 0 or not (dt > 0).all():
        bad = "no time step" if dt.size == 0 else f"a time step of {dt[dt <= 0][0]:g} s"
        raise ImportInputError(f"{where}: {bad}; time steps must be positive (s)")
    med = float(np.median(dt))
    spread = float(np.max(np.abs(dt - med))) / med
    if spread > RATE_TOLERANCE:
        raise ImportInputError(
            f"{where}: the time step varies from {dt.min():g} to {dt.max():g} s (more than "
            f"{RATE_TOLERANCE:.0%}): a store holds one sample rate"
        )
    fs = 1.0 / med
    if not MIN_RATE_HZ <= fs <= MAX_RATE_HZ:
        raise ImportInputError(
            f"{where}: sample rate {fs:g} Hz (time step {med:g} s) is outside the "
            f"{MIN_RATE_HZ:g}-{MAX_RATE_HZ:g} Hz a store holds"
        )
    return fs


def readout(landing: Landing, fs: float, window_s: tuple[float, float] | None) -> float:
    """Mean current of a landing over its readout window (NaN if no finite
    sample lies in it): ``window_s`` from the contact, or the landing's last
    half (the samples with k >= n/2, as the analysis reads a window)."""
    cur = landing.current_A
    if cur is None or cur.size == 0:
        return math.nan
    if window_s is None:
        sel = cur[(cur.size + 1) // 2 :]
    else:
        k = np.arange(cur.size) / fs
        sel = cur[(k >= window_s[0] - 1e-12) & (k < window_s[1] - 1e-12)]
    sel = sel[np.isfinite(sel)]
    return float(sel.mean()) if sel.size else math.nan


def padded(rows: Sequence[np.ndarray | None], n: int, dtype: Any = np.float32) -> np.ndarray:
    """Rows padded with NaN to ``n`` columns (None: all NaN)."""
    out = np.full((len(rows), n), np.nan, dtype=dtype)
    for i, r in enumerate(rows):
        if r is not None and r.size:
            out[i, : min(n, r.size)] = r[:n]
    return out


# ---------------------------------------------------------------- geometry
def median_spacing(x: np.ndarray, y: np.ndarray, where: str) -> float:
    """Median nearest-neighbour distance of the distinct positions, um."""
    from scipy.spatial import cKDTree

    pts = np.unique(np.round(np.column_stack((x, y)), 9), axis=0)
    if len(pts) < 2:
        raise ImportInputError(
            f"{where}: every landing is at one position ({x[0]:g}, {y[0]:g}) um: the map "
            "pitch cannot be inferred; give it (--pitch UM)"
        )
    d = cKDTree(pts).query(pts, k=2)[0][:, 1]
    return float(np.median(d))


def snap(v: np.ndarray, pitch: float) -> np.ndarray:
    """Each position's nearest pixel centre on a grid of ``pitch`` whose
    phase is the positions' median one (so that positions scattered around
    a grid never pile into one pixel because of the outermost one).

    The plan's points are these centres (where the points were meant to be);
    the positions themselves are the store's measured ``results/x_um, y_um``."""
    u = (v - v.min()) / pitch
    phase = float(np.median(u - np.round(u)))
    k = np.round(u - phase)
    return v.min() + (phase + k) * pitch


def measurement_for(
    scan: ImportedScan, n: int, potential_V: float | None, source: str = "given"
) -> tuple[Any, str]:
    """The plan's measurement for ``n`` samples at the scan's rate: a CA at a
    held potential, or the LSV / CV the longest landing's potential follows
    (one sweep or one cycle), with a sentence saying which and why."""
    from ...acquisition.plan import Chronoamperometry, CyclicVoltammetry, LinearSweep

    fs = scan.sample_rate_Hz or 1000.0
    dur = n / fs
    longest = max(scan.landings, key=lambda la: la.n, default=None)
    e = None if longest is None or longest.potential_V is None else longest.potential_V
    e = None if e is None else e[np.isfinite(e)]
    if e is None or e.size == 0:
        v = 0.0 if potential_V is None else float(potential_V)
        why = (
            "the source records no potential: recorded as 0 V (give --potential-V)"
            if potential_V is None
            else f"the potential {source}"
        )
        return Chronoamperometry(potential_V=v, duration_s=dur), f"ca at {v:g} V ({why})"
    if float(np.ptp(e)) <= HELD_POTENTIAL_V or e.size < 3:
        v = float(np.median(e))
        return Chronoamperometry(potential_V=v, duration_s=dur), (
            f"ca at {v:g} V (the potential varies by {float(np.ptp(e)) * 1e3:.3g} mV within "
            "the longest landing)"
        )
    k = max(1, e.size // 50)
    e0, e1 = float(e[:k].mean()), float(e[-k:].mean())
    i_ext = int(np.argmax(np.abs(e - e0)))
    ev = float(e[i_ext])
    swing = abs(ev - e0)
    cand: Any = None
    if abs(e1 - e0) >= 0.9 * swing:
        cand = LinearSweep(start_V=e0, end_V=e1, scan_rate_V_per_s=abs(e1 - e0) / dur)
        what = f"lsv {e0:g} -> {e1:g} V at {abs(e1 - e0) / dur:g} V/s"
    elif abs(e1 - e0) <= 0.1 * swing:
        rate = 2 * swing / dur
        cand = CyclicVoltammetry(start_V=e0, vertex_V=ev, scan_rate_V_per_s=rate, cycles=1)
        what = f"cv {e0:g} -> {ev:g} -> {e0:g} V at {rate:g} V/s"
    if cand is not None and cand.program().n_samples(fs) == n:
        return cand, f"{what} (from the potential of the longest landing)"
    v = float(np.median(e))
    return Chronoamperometry(potential_V=v, duration_s=dur), (
        f"ca at {v:g} V: the potential sweeps ({e.min():g} to {e.max():g} V) but in no single "
        "sweep or cycle the importer recognises; the I-V analysis reads the recorded potential"
    )


def build_plan(scan: ImportedScan, opts: ImportOptions, n_samples: int) -> ScanPlan:
    """A plan that gives exactly the imported points (see the module doc);
    fills ``scan.inferred`` with the grid, pitch and measurement chosen."""
    from ...acquisition.plan import (
        EdgesArea,
        PointsArea,
        PotentiostatSettings,
        ScanPlan,
    )

    where = ", ".join(p.name for p in scan.sources)
    fs = scan.sample_rate_Hz or 1000.0
    if opts.potential_V is not None:
        meas, why = measurement_for(scan, n_samples, opts.potential_V, "given (--potential-V)")
    else:
        meas, why = measurement_for(scan, n_samples, scan.potential_V, scan.potential_source)
    window = opts.readout_window_s
    dur = n_samples / fs
    if window is not None and not 0 <= window[0] < window[1] <= dur + 1e-12:
        raise ImportInputError(
            f"{where}: readout window [{window[0]:g}, {window[1]:g}] s must lie inside the "
            f"longest landing, [0, {dur:g}] s"
        )
    common: dict[str, Any] = {
        "name": f"imported {scan.fmt}: {scan.sources[0].name}",
        "measurement": meas,
        "potentiostat": PotentiostatSettings(sample_rate_Hz=fs, filter_Hz=fs / 2),
        "readout_start_s": None if window is None else window[0],
        "readout_end_s": None if window is None else window[1],
    }
    if scan.grid is not None:  # a raster image: every pixel, in raster order
        g = scan.grid
        area: Any = EdgesArea(
            x_min_um=g.x0_um,
            x_max_um=g.x0_um + g.nx * g.pitch_um,
            y_min_um=g.y0_um,
            y_max_um=g.y0_um + g.ny * g.pitch_um,
        )
        pitch, order, rule = g.pitch_um, "raster", "the image's scan size over its pixels"
    else:
        x = np.array([la.x_um for la in scan.landings])
        y = np.array([la.y_um for la in scan.landings])
        if opts.pitch_um is not None:
            pitch, rule = float(opts.pitch_um), "given (--pitch)"
        else:
            pitch = median_spacing(x, y, where)
            rule = f"median nearest-neighbour spacing of {len(x)} landings"
        xc, yc = snap(x, pitch), snap(y, pitch)
        area = PointsArea(points_um=list(zip(xc.tolist(), yc.tolist(), strict=True)))
        order = "as_listed"
    with warnings.catch_warnings():  # the pitch vs footprint warning: not ours to judge
        warnings.simplefilter("ignore", UserWarning)
        try:
            plan = ScanPlan(area=area, pitch_um=pitch, order=order, **common)
        except ValueError as e:
            from ...acquisition.plan import validation_lines

            raise ImportInputError(
                f"{where}: the imported scan makes no valid plan: "
                + "; ".join(validation_lines(e, with_input=True))
            ) from None
    if plan.samples_per_point() != n_samples:  # guarded by measurement_for; never silent
        raise ImportInputError(
            f"{where}: the plan gives {plan.samples_per_point()} samples per point, the "
            f"landings {n_samples}"
        )
    scan.inferred.update(
        pitch_um=pitch,
        pitch_rule=rule,
        measurement=why,
        sample_rate_Hz=scan.sample_rate_Hz,
        readout_window=(
            "one value per point, from the source"
            if scan.sample_rate_Hz is None
            else f"[{window[0]:g}, {window[1]:g}] s from the contact (given)"
            if window is not None
            else "the last half of each landing's samples"
        ),
    )
    return plan


def _check_pixels(scan: ImportedScan, plan: ScanPlan, opts: ImportOptions) -> None:
    """Refuse (or note) landings that fall into one map pixel; note how far
    the landings lie from their pixel centres."""
    pts = plan.points()
    g = pts.grid
    mx = np.array([la.x_um for la in scan.landings])  # where measured
    my = np.array([la.y_um for la in scan.landings])
    key = pts.row.astype(np.int64) * g.nx + pts.col
    uniq, counts = np.unique(key, return_counts=True)
    where = ", ".join(p.name for p in scan.sources)
    if (counts > 1).any():
        k = uniq[counts > 1][0]
        i, j = np.flatnonzero(key == k)[:2]
        msg = (
            f"{int((counts - 1).sum())} landings share a map pixel with another at pitch "
            f"{g.pitch_um:g} um, e.g. landings {i} at ({mx[i]:g}, {my[i]:g}) um "
            f"and {j} at ({mx[j]:g}, {my[j]:g}) um both in pixel (row "
            f"{pts.row[i]}, col {pts.col[i]})"
        )
        if not opts.allow_shared_pixels:
            raise ImportInputError(
                f"{where}: {msg}; give a smaller --pitch, or --allow-shared-pixels to keep "
                "them all (the map shows the later landing)"
            )
        scan.notes.append(msg + "; kept (--allow-shared-pixels): the map shows the later one")
    cx, cy = g.centers(pts.row, pts.col)
    off = np.hypot(mx - cx, my - cy)
    scan.inferred["max_offset_from_pixel_centre_um"] = float(off.max()) if off.size else 0.0
    if off.size and off.max() > 0.25 * g.pitch_um:
        scan.notes.append(
            f"the landings are not on a regular grid: up to {off.max():g} um from their "
            f"pixel's centre (pitch {g.pitch_um:g} um); each is mapped to its nearest pixel"
        )


# -------------------------------------------------------------------- write
def _landing_status(la: Landing, value: float) -> int:
    from ...acquisition.store import FAULT, NO_CONTACT, OK

    if la.status is not None:
        return la.status
    if la.value_A is None and la.n == 0:
        return NO_CONTACT
    return OK if math.isfinite(value) else FAULT


def _stale_imports(out: Path) -> None:
    """Remove hidden folders a killed import to ``out`` left behind (they
    hold the creation marker and only a store's files, and nobody holds
    their lock)."""
    from ...acquisition.store import ScanStore, half_created

    prefix = f".{out.name}.importing-"
    with contextlib.suppress(OSError):
        for sib in out.parent.iterdir():
            if not sib.name.startswith(prefix) or not sib.is_dir() or sib.is_symlink():
                continue
            if half_created(sib) is None or "right now" in (half_created(sib) or ""):
                continue
            with contextlib.suppress(Exception):
                ScanStore._check_replaceable(sib)
                shutil.rmtree(sib)


def write_store(
    scan: ImportedScan, out: str | Path, opts: ImportOptions, *, overwrite: bool = False
) -> Path:
    """Write ``scan`` as a new store at ``out`` (see the module doc); an
    existing ``out`` is replaced only with ``overwrite`` (and only a store)."""
    from ... import __version__
    from ...acquisition.store import (
        CREATING_MARKER,
        PointRecord,
        ScanStore,
        StoreLockedError,
    )

    out = Path(out)
    where = ", ".join(p.name for p in scan.sources)
    if not scan.landings:
        raise ImportInputError(f"{where}: no landing found: nothing to import")
    ScanStore.check_creatable(out, overwrite=overwrite)
    fs = scan.sample_rate_Hz
    n_samples = max((la.n for la in scan.landings), default=0) if fs else 1
    if fs and n_samples == 0:
        raise ImportInputError(f"{where}: no landing holds a sample: nothing to import")
    n_samples = max(n_samples, 1)
    plan = build_plan(scan, opts, n_samples)
    _check_pixels(scan, plan, opts)
    g = plan.grid()
    values = [
        la.value_A if la.value_A is not None else readout(la, fs or 1000.0, opts.readout_window_s)
        for la in scan.landings
    ]
    statuses = [_landing_status(la, v) for la, v in zip(scan.landings, values, strict=True)]
    start = scan.start_time_s
    if start is None:
        start = min(p.stat().st_mtime for p in scan.sources)
        scan.inferred["wall_time"] = (
            "the source holds no clock time: the source file's modification time plus each "
            "landing's start"
        )
    t_end = max(
        (la.t_start_s + la.n / fs for la in scan.landings if fs and math.isfinite(la.t_start_s)),
        default=0.0,
    )
    started = _dt.datetime.fromtimestamp(start, _dt.UTC).isoformat(timespec="seconds")
    ended = _dt.datetime.fromtimestamp(start + t_end, _dt.UTC).isoformat(timespec="seconds")
    scan.inferred["grid"] = {
        "x0_um": g.x0_um,
        "y0_um": g.y0_um,
        "pitch_um": g.pitch_um,
        "nx": g.nx,
        "ny": g.ny,
    }
    scan.inferred["landings"] = len(scan.landings)
    provenance = json_safe(
        {
            "format": scan.fmt,
            "importer": f"napari_seccm.io.importers ({scan.fmt})",
            "importer_version": IMPORTER_VERSION,
            "napari_seccm_version": __version__,
            "imported": _now_iso(),
            "sources": [source_record(p) for p in scan.sources],
            "source_metadata": scan.source_metadata,
            "inferred": scan.inferred,
            "options": opts.as_json(),
            "notes": scan.notes,
        }
    )
    json.dumps(provenance, allow_nan=False)  # plain JSON only

    _stale_imports(out)
    tmp = out.parent / f".{out.name}.importing-{uuid.uuid4().hex[:12]}"
    store = ScanStore.create(tmp, plan)
    try:
        # a killed import leaves a hidden store recognised as half-created
        (tmp / CREATING_MARKER).write_text(
            json.dumps({"seccm_store": "being imported; removed once complete"})
        )
        batch = max(1, min(4096, (64 << 20) // max(8 * n_samples, 1)))
        for b in range(0, len(scan.landings), batch):
            recs = []
            for i in range(b, min(b + batch, len(scan.landings))):
                la = scan.landings[i]
                has_trace = fs is not None and la.n > 0
                pot = la.potential_V if la.potential_V is not None else None
                if has_trace and pot is None:
                    pot = np.full(la.n, np.nan, dtype=np.float32)
                recs.append(
                    PointRecord(
                        i=i,
                        status=statuses[i],
                        value_A=values[i],
                        contact_z_um=la.contact_z_um,
                        x_um=la.x_um,
                        y_um=la.y_um,
                        t_start_s=la.t_start_s,
                        wall_time_s=start + (la.t_start_s if math.isfinite(la.t_start_s) else 0.0),
                        current_A=la.current_A if has_trace else None,
                        potential_V=pot if has_trace else None,
                        approach_z_um=la.approach_z_um,
                        approach_current_A=la.approach_current_A,
                    )
                )
            store.write_points(recs)
        store.update_meta(
            status="complete",
            reason=f"imported from {where} ({scan.fmt})",
            started=started,
            ended=ended,
            instrument_time_s=float(t_end),
            wall_time_s=0.0,
            imported=provenance,
        )
        os.remove(tmp / CREATING_MARKER)
        store.close()
        if out.exists():  # overwrite: checked above; again now, under the lock
            fd = ScanStore._try_lock(out)
            if fd is None:
                raise StoreLockedError(f"{out} is being written by a running scan (lock held)")
            try:
                ScanStore._check_replaceable(out)
                old = out.parent / f".{out.name}.replaced-{uuid.uuid4().hex[:12]}"
                os.rename(out, old)
            finally:
                ScanStore._unlock(fd)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
