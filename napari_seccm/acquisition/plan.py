"""Scan plans: a validated, serialisable description of a hopping scan.

A :class:`ScanPlan` says *where* (area, pitch, order), *how to land* (approach,
surface prediction), *what to measure* at every landing (a potential program,
:class:`napari_seccm.model.Program`, and the readout window that gives the
pixel's map value), *with what* (the pipette's geometry, recorded for the
analysis) and *how to stay safe* (retract, Z floor, failures in a row). It round-trips through YAML and JSON,
and knows nothing of hardware: :func:`check_plan_against_core` compares it with
a live Micro-Manager core before a scan starts.

Every number carries its unit in its field name (``_um``, ``_nm``, ``_s``,
``_V``, ``_A``, ``_Hz``, ``_deg``, ``_S_per_cm``).
"""

from __future__ import annotations

import json
import math
import reprlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..model import PipetteGeometry, ProbeSpec, Program
from ._plan_file import (
    MAX_PLAN_BYTES,
    MAX_PLAN_DEPTH,
    MAX_PLAN_NODES,
    PlanInputError,
    load_json,
    load_yaml,
    read_plan_text,
)

if TYPE_CHECKING:
    from pymmcore_plus import CMMCorePlus


#: the most points a plan may have
MAX_POINTS = 10_000_000
#: the most pixels of a points or polygon area's map (its bounding box at the pitch)
MAX_MAP_PIXELS = 100_000_000


def _has_float(tp: Any) -> bool:
    return tp is float or any(_has_float(a) for a in get_args(tp))


def _non_finite(v: Any, where: str = "") -> tuple[str, Any] | None:
    """(where, value) of the first NaN or infinity in a raw field value (numbers,
    numeric strings such as "nan" or "1e999", lists and tuples of them)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        return None if math.isfinite(v) else (where, v)
    if isinstance(v, str):
        try:
            x = float(v.strip())
        except ValueError:
            return None
        return None if math.isfinite(x) else (where, v)
    if isinstance(v, (list, tuple)):
        for i, item in enumerate(v):
            bad = _non_finite(item, f"{where}[{i}]")
            if bad:
                return bad
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _finite(cls, data: Any, info: ValidationInfo) -> Any:
        """NaN and infinity are refused in every number of a plan, naming the
        field, before any range check (a NaN Z floor would disable the floor)."""
        if not isinstance(data, dict) or _stored(info):
            return data
        for name, field in cls.model_fields.items():
            if name in data and _has_float(field.annotation):
                bad = _non_finite(data[name])
                if bad:
                    unit = _unit(name)
                    raise ValueError(
                        f"{name}{bad[0]} must be finite{f' ({unit})' if unit else ''}, "
                        f"got {_short_repr(bad[1])}"
                    )
        return data


# ---------------------------------------------------------------------- area
class RectangleArea(_Model):
    """A rectangle given by its centre and size."""

    kind: Literal["rectangle"] = "rectangle"
    center_x_um: float = Field(0.0, description="x of the centre")
    center_y_um: float = Field(0.0, description="y of the centre")
    width_um: float = Field(12.0, gt=0, description="extent along x")
    height_um: float = Field(12.0, gt=0, description="extent along y")

    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max), um."""
        hw, hh = self.width_um / 2, self.height_um / 2
        return (
            self.center_x_um - hw,
            self.center_x_um + hw,
            self.center_y_um - hh,
            self.center_y_um + hh,
        )


class EdgesArea(_Model):
    """A rectangle given by its edges."""

    kind: Literal["edges"] = "edges"
    x_min_um: float
    x_max_um: float
    y_min_um: float
    y_max_um: float

    @model_validator(mode="after")
    def _ordered(self) -> EdgesArea:
        if not (self.x_max_um > self.x_min_um and self.y_max_um > self.y_min_um):
            raise ValueError(
                f"edges must satisfy x_min < x_max and y_min < y_max, got "
                f"x [{self.x_min_um}, {self.x_max_um}] um, y [{self.y_min_um}, {self.y_max_um}] um"
            )
        return self

    def bounds(self) -> tuple[float, float, float, float]:
        return self.x_min_um, self.x_max_um, self.y_min_um, self.y_max_um


class PointsArea(_Model):
    """An explicit list of (x, y) points, um; each lands in the map pixel under it."""

    kind: Literal["points"] = "points"
    points_um: list[tuple[float, float]] = Field(min_length=1)

    def bounds(self) -> tuple[float, float, float, float]:
        p = np.asarray(self.points_um)
        return p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()


class PolygonArea(_Model):
    """The grid points inside a polygon (vertices in um, e.g. drawn in napari)."""

    kind: Literal["polygon"] = "polygon"
    vertices_um: list[tuple[float, float]] = Field(min_length=3)

    def bounds(self) -> tuple[float, float, float, float]:
        p = np.asarray(self.vertices_um)
        return p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()


Area = Annotated[RectangleArea | EdgesArea | PointsArea | PolygonArea, Field(discriminator="kind")]


def _stored(info: ValidationInfo) -> bool:
    """Validating a plan read back from a store (``context={"stored": True}``):
    checks added since it was measured must not make its store unreadable."""
    return bool(info.context and info.context.get("stored"))


def _two_potentials(sweep: Any, other: str, info: ValidationInfo) -> None:
    """A sweep from ``start_V`` to ``other`` needs two different potentials."""
    if getattr(sweep, other) == sweep.start_V and not _stored(info):
        raise ValueError(
            f"start_V and {other} are both {sweep.start_V:g} V: a sweep needs two "
            "different potentials (to hold one potential, use kind: ca)"
        )


def _runnable(measurement: Any, info: ValidationInfo) -> None:
    """The measurement makes a valid :class:`Program` (finite potentials, ...);
    the program's ValueError names the bad value. Not checked on a stored plan."""
    if not _stored(info):
        measurement.program()


# --------------------------------------------------------------- measurement
class Chronoamperometry(_Model):
    """Hold one potential and record the current (the report's map: 1.0 V)."""

    kind: Literal["ca"] = "ca"
    potential_V: float = Field(1.0, description="potential held during the measurement")
    duration_s: float = Field(0.02, gt=0, description="length of the recording")

    @model_validator(mode="after")
    def _valid(self, info: ValidationInfo) -> Chronoamperometry:
        _runnable(self, info)
        return self

    def program(self) -> Program:
        return Program.chronoamperometry(self.potential_V, self.duration_s)

    def segments(self) -> list[dict[str, Any]]:
        """The program's JSON segments (see :meth:`program`)."""
        return self.program().to_segments()


class LinearSweep(_Model):
    """Linear sweep voltammetry from start to end at a scan rate."""

    kind: Literal["lsv"] = "lsv"
    start_V: float = Field(0.0, description="start potential")
    end_V: float = Field(1.0, description="end potential")
    scan_rate_V_per_s: float = Field(2.0, gt=0, description="sweep rate")

    @model_validator(mode="after")
    def _sweeps(self, info: ValidationInfo) -> LinearSweep:
        _two_potentials(self, "end_V", info)
        _runnable(self, info)
        return self

    def program(self) -> Program:
        return Program.linear_sweep(self.start_V, self.end_V, self.scan_rate_V_per_s)

    def segments(self) -> list[dict[str, Any]]:
        """The program's JSON segments (see :meth:`program`)."""
        return self.program().to_segments()


class CyclicVoltammetry(_Model):
    """Cyclic voltammetry: start -> vertex -> start, repeated ``cycles`` times."""

    kind: Literal["cv"] = "cv"
    start_V: float = Field(0.0, description="start (and end) potential")
    vertex_V: float = Field(1.0, description="turning potential")
    scan_rate_V_per_s: float = Field(2.0, gt=0, description="sweep rate")
    cycles: int = Field(1, ge=1, le=1000, description="number of cycles")

    @model_validator(mode="after")
    def _sweeps(self, info: ValidationInfo) -> CyclicVoltammetry:
        _two_potentials(self, "vertex_V", info)
        _runnable(self, info)
        return self

    def program(self) -> Program:
        return Program.cyclic_voltammetry(
            self.start_V, self.vertex_V, self.scan_rate_V_per_s, self.cycles
        )

    def segments(self) -> list[dict[str, Any]]:
        """The program's JSON segments (see :meth:`program`)."""
        return self.program().to_segments()


class Staircase(_Model):
    """An I-V staircase: equal steps from start to end, each held ``hold_s``."""

    kind: Literal["staircase"] = "staircase"
    start_V: float = Field(0.0, description="first step potential")
    end_V: float = Field(1.0, description="last step potential")
    steps: int = Field(11, ge=2, le=10_000, description="number of steps")
    hold_s: float = Field(0.01, gt=0, description="time at each step")

    @model_validator(mode="after")
    def _valid(self, info: ValidationInfo) -> Staircase:
        _runnable(self, info)
        return self

    def potentials_V(self) -> np.ndarray:
        return np.linspace(self.start_V, self.end_V, self.steps)

    def program(self) -> Program:
        return Program.staircase(self.start_V, self.end_V, self.steps, self.hold_s)

    def segments(self) -> list[dict[str, Any]]:
        """The program's JSON segments (see :meth:`program`)."""
        return self.program().to_segments()


Measurement = Annotated[
    Chronoamperometry | LinearSweep | CyclicVoltammetry | Staircase,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------ approach
class ApproachSettings(_Model):
    """How the pipette comes down to each landing."""

    potential_V: float = Field(1.0, description="potential applied while approaching")
    fast_speed_um_per_s: float = Field(
        20.0,
        gt=0,
        le=500,
        description="ordinary moves far from the surface (retract, fast descent)",
    )
    search_speed_um_per_s: float = Field(
        5.0, gt=0, le=100, description="the first landing, with no surface prediction yet"
    )
    slow_speed_um_per_s: float = Field(
        1.0, gt=0, le=20, description="near the surface; above 1 um/s risks a crash"
    )
    slow_zone_um: float = Field(
        0.3,
        ge=0.01,
        le=100,
        description="the slow approach starts this far above the predicted contact height",
    )
    detection: Literal["absolute", "rise", "either"] = Field(
        "absolute",
        description="contact when |I| >= threshold (absolute), I - baseline >= threshold "
        "(rise) or |I - baseline| >= threshold (either)",
    )
    threshold_A: float = Field(3e-12, gt=0, le=1e-6, description="contact threshold")
    confirm_samples: int = Field(
        3, ge=0, le=1000, description="further samples that must confirm a contact"
    )
    max_depth_um: float = Field(
        1.5,
        gt=0,
        le=100,
        description="give up this far below the predicted contact height (no contact)",
    )
    search_depth_um: float = Field(
        50.0,
        gt=0,
        le=1000,
        description="a search with no prediction (the first landing of a scan or of a "
        "resumed session) goes at most this far below where it starts; a miss on the "
        "first landing stops the scan",
    )
    method: Literal["auto", "device", "software"] = Field(
        "auto",
        description="where contact detection runs: the device's own loop, or steps + reads through the core; ``auto`` uses the device when it offers one",
    )
    software_step_um: float = Field(
        0.005, gt=0, le=1, description="software fallback: Z step between current reads"
    )

    @field_validator("slow_speed_um_per_s")
    @classmethod
    def _warn_fast(cls, v: float) -> float:
        if v > 1.0:
            warnings.warn(
                f"slow approach speed {v} um/s is above 1 um/s: risk of crashing the pipette",
                stacklevel=2,
            )
        return v


class SurfaceSettings(_Model):
    """Prediction of the next landing height from the previous ones."""

    model: Literal["none", "plane"] = Field(
        "plane", description="none: last height only; plane: least-squares plane of the landings"
    )
    min_landings: int = Field(
        3, ge=1, description="landings needed before the plane is trusted (fewer: the last height)"
    )


class SafetySettings(_Model):
    z_floor_um: float | None = Field(
        None,
        description="the engine never commands Z below this, um (None: the stage's lower travel)",
    )
    max_consecutive_failures: int = Field(
        5, ge=1, le=1_000_000, description="stop the scan after this many misses in a row"
    )
    max_consecutive_saturated: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="stop the scan after this many saturated points in a row (the current "
        "range is too small: a larger one keeps the rest of the map)",
    )
    max_tilt_deg: float = Field(
        3.0,
        ge=0,
        le=45,
        description="steepest surface slope assumed until the plane model is trusted: the "
        "lift before a hop and the slow zone after it grow by tan(tilt) x hop distance",
    )
    max_consecutive_faults: int = Field(
        3,
        ge=1,
        le=1_000_000,
        description="stop the scan (status fault) after this many points in a row whose "
        "readings cannot be trusted (stage not at its target, contact height disagreeing "
        "with the stage, no or non-finite samples)",
    )
    deadline_margin_s: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="a step (move, approach, program) that takes longer than twice its "
        "expected time plus this is a device fault: it is aborted and the scan ends, s",
    )


class PotentiostatSettings(_Model):
    label: str = Field("Potentiostat", description="Micro-Manager label of the potentiostat")
    sample_rate_Hz: float = Field(5000.0, ge=100, le=100_000, description="samples per second")
    filter_Hz: float = Field(1000.0, ge=1, le=50_000, description="low-pass filter cut-off")
    current_range_A: float = Field(1e-8, description="full-scale current range")


# ---------------------------------------------------------------------- grid
@dataclass(frozen=True)
class MapGrid:
    """The map's pixel grid: pixel (row, col) is centred at
    ``(x0 + (col + 0.5) * pitch, y0 + (row + 0.5) * pitch)``."""

    x0_um: float
    y0_um: float
    pitch_um: float
    nx: int
    ny: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.ny, self.nx

    def centers(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (
            self.x0_um + (np.asarray(cols) + 0.5) * self.pitch_um,
            self.y0_um + (np.asarray(rows) + 0.5) * self.pitch_um,
        )


@dataclass(frozen=True)
class ScanPoints:
    """Points in visiting order."""

    x_um: np.ndarray
    y_um: np.ndarray
    row: np.ndarray
    col: np.ndarray
    grid: MapGrid

    def __len__(self) -> int:
        return int(self.x_um.shape[0])


# ---------------------------------------------------------------------- plan
class ScanPlan(_Model):
    """A hopping scan (defaults: the report's 12 x 12 um map at 1.0 V)."""

    name: str = Field("seccm scan", description="a name for the scan")
    area: Area = Field(default_factory=RectangleArea)
    pitch_um: float = Field(0.3, gt=0, le=1000, description="distance between neighbouring points")
    order: Literal["raster", "serpentine", "shuffled", "as_listed"] = Field(
        "serpentine",
        description="visiting order: raster, serpentine, shuffled (spreads residue effects), "
        "or as_listed (a points area's points in the order of its list, as a scan imported "
        "from another instrument was visited; a grid's own raster order for other areas)",
    )
    shuffle_seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the shuffled order")
    approach: ApproachSettings = Field(default_factory=ApproachSettings)
    surface: SurfaceSettings = Field(default_factory=SurfaceSettings)
    measurement: Measurement = Field(default_factory=Chronoamperometry)
    readout_start_s: float | None = Field(
        None,
        description="the map value is the mean current over [start, end] s of the program (None: the second half of the program)",
    )
    readout_end_s: float | None = Field(
        None, description="end of the readout window (None: the end of the program)"
    )
    hold_s: float = Field(
        0.0, ge=0, le=3600, description="wait after landing before the program starts (settling), s"
    )
    retract_um: float = Field(
        1.0,
        gt=0,
        le=100,
        description="lift above the contact height after each point (must clear the meniscus)",
    )
    flyback_extra_um: float = Field(
        2.0, ge=0, le=100, description="extra lift when a raster jumps back to the start of a row"
    )
    footprint_diameter_um: float = Field(
        0.15,
        gt=0,
        description="your estimate of the droplet footprint (diameter), for the pitch check",
    )
    potentiostat: PotentiostatSettings = Field(default_factory=PotentiostatSettings)
    pipette: PipetteGeometry = Field(
        default_factory=PipetteGeometry,
        description="your pipette's geometry, recorded with the scan for the analysis's "
        "series model",
    )
    safety: SafetySettings = Field(default_factory=SafetySettings)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ScanPlan:
        try:
            return self._check_all(info)
        except (ArithmeticError, TypeError) as e:  # OverflowError, ZeroDivisionError...
            # extreme values that passed every field's range: still one line
            raise ValueError(
                f"the plan's numbers cannot be combined ({type(e).__name__}: {e}): "
                "check the extreme values"
            ) from None

    def _check_all(self, info: ValidationInfo) -> ScanPlan:
        pst = self.potentiostat
        if pst.filter_Hz > pst.sample_rate_Hz / 2:
            raise ValueError(
                f"potentiostat filter {pst.filter_Hz:g} Hz is above half the sample rate "
                f"({pst.sample_rate_Hz / 2:g} Hz)"
            )
        stored = _stored(info)  # a plan read back from a store: it has been measured
        thr = self.approach.threshold_A
        if thr >= pst.current_range_A and not stored:
            raise ValueError(
                f"approach threshold {thr * 1e12:g} pA is at or above the full scale of the "
                f"current range ({pst.current_range_A * 1e12:g} pA): a landing could never be "
                "detected; lower the threshold or choose a larger range"
            )
        try:
            dur = self.program_duration_s
        except ValueError:
            if not stored:
                raise
            # measured by an earlier version that allowed it (a sweep between two
            # equal potentials): the store stays readable, the plan cannot run
            dur = None
        if dur is not None:
            meas = self.measurement.program().duration_s
            n_samples = meas * pst.sample_rate_Hz
            if n_samples < 1 and not stored:
                raise ValueError(
                    f"the measurement lasts {meas:g} s, {n_samples:.3g} samples at "
                    f"{pst.sample_rate_Hz:g} Hz: at least one sample is needed (a longer "
                    "program or a higher sample rate)"
                )
            start, end = self.readout_window_s()
            if not 0 <= start < end <= dur + 1e-12:
                raise ValueError(
                    f"readout window [{start:g}, {end:g}] s must lie inside the program "
                    f"[0, {dur:g}] s"
                )
        if self.pitch_um < 2 * self.footprint_diameter_um:
            warnings.warn(
                f"pitch {self.pitch_um:g} um is below {2 * self.footprint_diameter_um:g} um, "
                f"twice the droplet footprint ({self.footprint_diameter_um:g} um across): "
                "neighbouring droplets may overlap",
                stacklevel=2,
            )
        self._check_size(stored)  # arithmetic: before any grid array is built
        n = self.n_points()
        if n > MAX_POINTS:
            raise ValueError(f"the plan has {n:,} points, above the maximum of {MAX_POINTS:,}")
        return self

    def _check_size(self, stored: bool = False) -> None:
        """Refuse an area too large for its pitch from its extent alone, before
        a grid is built (a huge polygon would otherwise allocate gigabytes)."""
        bounds = [float(v) for v in self.area.bounds()]
        for label, v in zip(("x min", "x max", "y min", "y max"), bounds, strict=True):
            if not math.isfinite(v):
                raise ValueError(f"area {label} is {v:g} um: the area must be finite")
        x_min, x_max, y_min, y_max = bounds
        ex, ey, p = x_max - x_min, y_max - y_min, self.pitch_um
        kind = self.area.kind
        if not (math.isfinite(ex) and math.isfinite(ey)):
            raise ValueError(f"the {kind} area spans {ex:g} x {ey:g} um: too large to map")
        if not (math.isfinite(ex / p) and math.isfinite(ey / p)):
            raise ValueError(
                f"the {kind} area {ex:g} x {ey:g} um at pitch {p:g} um has more points "
                f"than the maximum of {MAX_POINTS:,}: check the pitch and the area"
            )
        if kind in ("rectangle", "edges"):
            n = max(1.0, float(np.rint(ex / p))) * max(1.0, float(np.rint(ey / p)))
            if n > MAX_POINTS:
                raise ValueError(
                    f"the {kind} area {ex:g} x {ey:g} um at pitch {p:g} um has {n:.4g} "
                    f"points, above the maximum of {MAX_POINTS:,}: check the pitch and the area"
                )
            return
        cells = (math.floor(ex / p + 1e-9) + 1.0) * (math.floor(ey / p + 1e-9) + 1.0)
        if cells > MAX_MAP_PIXELS and not stored:
            raise ValueError(
                f"the {kind} area spans {ex:g} x {ey:g} um: at pitch {p:g} um its map has "
                f"{cells:.4g} pixels, above the maximum of {MAX_MAP_PIXELS:,}"
            )
        if kind == "polygon":
            v = np.asarray(self.area.vertices_um, dtype=float)
            x, y = v[:, 0] - x_min, v[:, 1] - y_min
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
            n = area / p**2
            if n > 1.01 * MAX_POINTS + 2 * (ex + ey) / p:
                raise ValueError(
                    f"the polygon's area {area:.4g} um^2 at pitch {p:g} um holds about "
                    f"{n:.4g} points, above the maximum of {MAX_POINTS:,}"
                )

    # --------------------------------------------------------------- program
    def program(self) -> Program:
        """The potential program of every landing: the settling hold
        (``hold_s``, at the measurement's first potential), then the
        measurement."""
        return self.measurement.program().with_pre_hold(self.hold_s)

    def probe_spec(self) -> ProbeSpec:
        """The plan's one probe ("A"): the core's focus device, the plan's
        potentiostat and pipette."""
        return ProbeSpec(name="A", potentiostat=self.potentiostat.label, pipette=self.pipette)

    def waveform_segments(self) -> list[dict[str, Any]]:
        """The program's JSON segments (the potentiostat's ``Waveform``)."""
        return self.program().to_segments()

    def waveform_json(self) -> str:
        """The program as the potentiostat's ``Waveform`` property."""
        return self.program().to_json()

    @property
    def program_duration_s(self) -> float:
        return self.program().duration_s

    def readout_window_s(self) -> tuple[float, float]:
        dur = self.program_duration_s
        start = (
            self.readout_start_s
            if self.readout_start_s is not None
            else self.hold_s + (dur - self.hold_s) / 2
        )
        end = self.readout_end_s if self.readout_end_s is not None else dur
        return float(start), float(end)

    def samples_per_point(self) -> int:
        """Samples recorded per point (the trace length), at the sample rate."""
        return self.program().n_samples(self.potentiostat.sample_rate_Hz)

    def potential_limits_V(self) -> tuple[float, float]:
        """Lowest and highest potential of the scan: the program's and the
        approach's, V."""
        lo, hi = self.program().potential_limits()
        e = self.approach.potential_V
        return min(lo, e), max(hi, e)

    # ------------------------------------------------------------------ grid
    def grid(self) -> MapGrid:
        x_min, x_max, y_min, y_max = self.area.bounds()
        p = self.pitch_um
        if self.area.kind in ("rectangle", "edges"):
            nx = max(1, int(round((x_max - x_min) / p)))
            ny = max(1, int(round((y_max - y_min) / p)))
            cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
            return MapGrid(cx - nx * p / 2, cy - ny * p / 2, p, nx, ny)
        # points / polygon: pixels centred on the lower-left extreme
        nx = int(math.floor((x_max - x_min) / p + 1e-9)) + 1
        ny = int(math.floor((y_max - y_min) / p + 1e-9)) + 1
        return MapGrid(x_min - p / 2, y_min - p / 2, p, nx, ny)

    def n_points(self) -> int:
        if self.area.kind in ("rectangle", "edges"):
            g = self.grid()
            return g.nx * g.ny
        return len(self.points())

    def points(self) -> ScanPoints:
        """All points in visiting order."""
        g = self.grid()
        if self.area.kind == "points":
            pts = np.asarray(self.area.points_um, dtype=float)
            col = np.clip(np.floor((pts[:, 0] - g.x0_um) / g.pitch_um), 0, g.nx - 1).astype(
                np.int32
            )
            row = np.clip(np.floor((pts[:, 1] - g.y0_um) / g.pitch_um), 0, g.ny - 1).astype(
                np.int32
            )
            x, y = pts[:, 0], pts[:, 1]
            order = self._order(row, col)
            return ScanPoints(x[order], y[order], row[order], col[order], g)
        if self.area.kind == "polygon":
            row, col, x, y = self._polygon_points(g)
        else:
            rr, cc = np.mgrid[0 : g.ny, 0 : g.nx]
            row = rr.ravel().astype(np.int32)
            col = cc.ravel().astype(np.int32)
            x, y = g.centers(row, col)
        order = self._order(row, col)
        return ScanPoints(x[order], y[order], row[order], col[order], g)

    def _polygon_points(self, g: MapGrid) -> tuple[np.ndarray, ...]:
        """(row, col, x, y) of the grid points inside the polygon, tested a
        block of rows at a time (memory bounded by the block, not the map)."""
        from matplotlib.path import Path as MplPath

        poly = MplPath(np.asarray(self.area.vertices_um))
        block = max(1, 1_000_000 // g.nx)
        parts: list[tuple[np.ndarray, ...]] = []
        cols = np.arange(g.nx, dtype=np.int32)
        for r0 in range(0, g.ny, block):
            rows = np.arange(r0, min(r0 + block, g.ny), dtype=np.int32)
            row = np.repeat(rows, g.nx)
            col = np.tile(cols, rows.size)
            x, y = g.centers(row, col)
            inside = poly.contains_points(np.column_stack((x, y)))
            if inside.any():
                parts.append((row[inside], col[inside], x[inside], y[inside]))
        if not parts:
            raise ValueError(f"no grid point at pitch {self.pitch_um:g} um lies inside the polygon")
        return tuple(np.concatenate(a) for a in zip(*parts, strict=True))

    def useq_grid_plan(self) -> Any:
        """The same map as a useq-schema grid plan (``useq.GridFromEdges``, one
        field of view per pixel, ``row_wise_snake`` or ``row_wise``), for tools
        that speak useq (e.g. to show the scan's positions in an MDA widget).

        The engine keeps its own numpy grid: a million-pixel map is a few
        arrays instead of a million pydantic positions; maps need each point's
        row and column from the lower edge up (useq counts rows from the top);
        polygon maps put a pixel centre on the polygon's lower-left extreme
        (useq puts a field's edge there); and a shuffled order and a list of
        points have no useq grid. Rectangles and edges give the same points as
        this grid plan (a test checks it).
        """
        import useq

        if self.area.kind not in ("rectangle", "edges"):
            raise ValueError(
                f"a {self.area.kind} area has no useq grid plan (rectangles and edges have)"
            )
        if self.order == "shuffled":
            raise ValueError("a shuffled order has no useq grid plan")
        g = self.grid()
        p = g.pitch_um
        # edges a hair inside the map: useq counts fields by rounding up, and a
        # width of n pitches computed in floating point can exceed n * pitch
        e = 1e-9 * p
        return useq.GridFromEdges(
            top=g.y0_um + g.ny * p - e,
            bottom=g.y0_um + e,
            left=g.x0_um + e,
            right=g.x0_um + g.nx * p - e,
            fov_width=p,
            fov_height=p,
            mode="row_wise_snake" if self.order == "serpentine" else "row_wise",
        )

    def _order(self, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        if self.order == "as_listed":
            return np.arange(row.size)
        if self.order == "shuffled":
            return np.random.default_rng(self.shuffle_seed).permutation(row.size)
        key_col = col.astype(np.int64)
        if self.order == "serpentine":
            g = self.grid()
            key_col = np.where(row % 2 == 1, g.nx - 1 - col, col)
        return np.lexsort((key_col, row))

    # ------------------------------------------------------------- estimate
    def estimate_time_s(self, xy_speed_um_per_s: float = 50.0) -> float:
        """Estimated instrument time of the whole scan, s.

        Per point: lift by the retract height, the lateral hop, the fast
        descent to the slow zone, the slow approach through it, the program;
        plus one search approach from 30 um for the first landing.
        """
        a = self.approach
        n = self.n_points()
        lift = self.retract_um / a.fast_speed_um_per_s
        hop = self.pitch_um / xy_speed_um_per_s
        fast = max(self.retract_um - a.slow_zone_um, 0) / a.fast_speed_um_per_s
        slow = a.slow_zone_um / a.slow_speed_um_per_s
        per_point = lift + hop + fast + slow + self.program_duration_s
        search = 30.0 / a.search_speed_um_per_s
        return n * per_point + search

    # ------------------------------------------------------------------ I/O
    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        name: str = "",
        max_bytes: int = MAX_PLAN_BYTES,
        max_nodes: int = MAX_PLAN_NODES,
        max_depth: int = MAX_PLAN_DEPTH,
    ) -> ScanPlan:
        """A plan from YAML text: safe loading (no Python objects), bounded size,
        nesting and alias expansion, duplicate keys refused. Problems of the
        text raise :class:`PlanInputError` (one line naming ``name``, the line
        and the limit); problems of the values pydantic's ValidationError."""
        data = load_yaml(
            text, name=name, max_bytes=max_bytes, max_nodes=max_nodes, max_depth=max_depth
        )
        return cls._from_data(data, name)

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        name: str = "",
        max_bytes: int = MAX_PLAN_BYTES,
        max_depth: int = MAX_PLAN_DEPTH,
    ) -> ScanPlan:
        """A plan from JSON text, with the checks of :meth:`from_yaml`."""
        data = load_json(text, name=name, max_bytes=max_bytes, max_depth=max_depth)
        return cls._from_data(data, name)

    @classmethod
    def _from_data(cls, data: Any, name: str) -> ScanPlan:
        if not isinstance(data, dict):
            where = f"{name}: " if name else ""
            got = "nothing" if data is None else f"a {type(data).__name__}"
            raise PlanInputError(
                f"{where}a plan file must hold a mapping of fields (name: value), got {got}"
            )
        try:
            return cls.model_validate(data)
        except RecursionError:
            raise PlanInputError(f"{name or 'the plan'}: nested too deeply") from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def load(cls, path: str | Path, *, max_bytes: int = MAX_PLAN_BYTES, **limits: int) -> ScanPlan:
        """A plan from a .json or .yaml file. A file that is missing raises
        FileNotFoundError; one that is not a readable plan (a directory, binary,
        too large, broken YAML/JSON, duplicate keys...) :class:`PlanInputError`;
        a plan with bad values pydantic's ValidationError (both ValueErrors)."""
        path = Path(path)
        text = read_plan_text(path, max_bytes=max_bytes)
        if path.suffix.lower() == ".json":
            limits.pop("max_nodes", None)
            return cls.from_json(text, name=str(path), max_bytes=max_bytes, **limits)
        return cls.from_yaml(text, name=str(path), max_bytes=max_bytes, **limits)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.write_text(self.to_json() if path.suffix.lower() == ".json" else self.to_yaml())


# ---------------------------------------------------------------- core check
class PlanError(ValueError):
    """A plan that cannot run on this rig; the message names value and limit."""


def check_plan_against_core(plan: ScanPlan, core: CMMCorePlus) -> None:
    """Raise :class:`PlanError` if the plan does not fit the loaded rig.

    Checks that the XY stage, focus stage and potentiostat exist, that the area
    lies inside the XY travel (when the stage publishes it as ``XMin_um`` ...
    properties), and that every potential lies inside the potentiostat's
    ``Potential_V`` limits. Nothing is moved.
    """
    xy = core.getXYStageDevice()
    z = core.getFocusDevice()
    ps = plan.potentiostat.label
    if not xy:
        raise PlanError("no XY stage is set in the core (Core-XYStage)")
    if not z:
        raise PlanError("no focus (Z) stage is set in the core (Core-Focus)")
    if ps not in core.getLoadedDevices():
        raise PlanError(
            f"potentiostat device {ps!r} is not loaded; loaded devices: "
            f"{list(core.getLoadedDevices())}"
        )
    x_min, x_max, y_min, y_max = plan.area.bounds()
    for axis, lo, hi in (("X", x_min, x_max), ("Y", y_min, y_max)):
        pmin, pmax = f"{axis}Min_um", f"{axis}Max_um"
        if core.hasProperty(xy, pmin) and core.hasProperty(xy, pmax):
            tmin = float(core.getProperty(xy, pmin))
            tmax = float(core.getProperty(xy, pmax))
            if lo < tmin:
                raise PlanError(
                    f"scan area {axis} from {lo:g} um is beyond the stage travel: "
                    f"{xy} {axis} minimum is {tmin:g} um"
                )
            if hi > tmax:
                raise PlanError(
                    f"scan area {axis} up to {hi:g} um is beyond the stage travel: "
                    f"{xy} {axis} maximum is {tmax:g} um"
                )
    if core.hasPropertyLimits(ps, "Potential_V"):
        lo_v = core.getPropertyLowerLimit(ps, "Potential_V")
        hi_v = core.getPropertyUpperLimit(ps, "Potential_V")
        pmin_v, pmax_v = plan.potential_limits_V()
        if pmin_v < lo_v or pmax_v > hi_v:
            bad = pmin_v if pmin_v < lo_v else pmax_v
            lim = f"minimum {lo_v:g} V" if pmin_v < lo_v else f"maximum {hi_v:g} V"
            raise PlanError(f"potential {bad:g} V is beyond the potentiostat's compliance ({lim})")
    if core.hasProperty(ps, "CurrentRanges_A"):
        ranges = [float(v) for v in str(core.getProperty(ps, "CurrentRanges_A")).split(",") if v]
        want = plan.potentiostat.current_range_A
        if ranges and not any(abs(want / r - 1) < 1e-6 for r in ranges):
            raise PlanError(
                f"current range {want:g} A is not a range of {ps}; choose one of "
                f"{', '.join(f'{r:g}' for r in ranges)} A"
            )
    if core.hasProperty(ps, "SampleRate_Hz") and core.hasPropertyLimits(ps, "SampleRate_Hz"):
        hi_fs = core.getPropertyUpperLimit(ps, "SampleRate_Hz")
        if plan.potentiostat.sample_rate_Hz > hi_fs:
            raise PlanError(
                f"sample rate {plan.potentiostat.sample_rate_Hz:g} Hz is above the "
                f"potentiostat's maximum {hi_fs:g} Hz"
            )


# ---------------------------------------------------------- plan template
_UNITS = {
    "_S_per_cm": "S/cm",
    "_um_per_s": "um/s",
    "_V_per_s": "V/s",
    "_um": "um",
    "_nm": "nm",
    "_deg": "deg",
    "_s": "s",
    "_V": "V",
    "_A": "A",
    "_Hz": "Hz",
}


def _unit(name: str) -> str:
    return next((u for suf, u in _UNITS.items() if name.endswith(suf)), "")


def _emit(model: BaseModel, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        desc = field.description or ""
        if not desc and isinstance(value, BaseModel):
            desc = (type(value).__doc__ or "").strip().split("\n")[0]
        unit = _unit(name)
        note = "  # " + "; ".join(x for x in (desc, f"unit: {unit}" if unit else "") if x)
        note = note if note.strip() != "#" else ""
        if isinstance(value, BaseModel):
            out.append(f"{pad}{name}:{note}")
            _emit(value, indent + 1, out)
        else:
            import yaml

            text = yaml.safe_dump(
                json.loads(json.dumps(value, default=list)), default_flow_style=True
            ).strip()
            text = text.removesuffix("...").strip()
            out.append(f"{pad}{name}: {text}{note}")


def plan_template_yaml(plan: ScanPlan | None = None) -> str:
    """The plan as YAML with every field, its value, its meaning and its unit."""
    plan = plan or ScanPlan()
    out = [
        "# napari-seccm scan plan: every field with its default, meaning and unit.",
        "# Positions in um in the stage frame; Z larger is farther from the sample.",
        "# area.kind: rectangle (center/size) | edges (x_min_um..y_max_um) |",
        "#   points (points_um: [[x, y], ...]) | polygon (vertices_um: [[x, y], ...])",
        "# measurement.kind: ca (potential_V, duration_s) | lsv (start_V, end_V,",
        "#   scan_rate_V_per_s) | cv (start_V, vertex_V, scan_rate_V_per_s, cycles) |",
        "#   staircase (start_V, end_V, steps, hold_s)",
        "# pipette: your pipette's geometry; the analysis turns conductance into",
        "#   conductivity with it (recorded in the store with the plan)",
    ]
    _emit(plan, 0, out)
    return "\n".join(out) + "\n"


def validation_lines(
    e: BaseException, *, field_prefix: str = "", with_input: bool = False
) -> list[str]:
    """One readable line per problem of a plan's ValidationError (the field, the
    message without pydantic's "Value error, ", optionally the value given);
    ``[str(e)]`` for any other error."""
    from pydantic import ValidationError

    if not isinstance(e, ValidationError):
        return [str(e)]
    lines = []
    for err in e.errors():
        loc = ".".join(_loc_part(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        inp = err.get("input")
        if isinstance(inp, dict):
            # a check of a whole model (its input is the model's fields): the
            # message names the field itself
            head = msg.split(" ", 1)[0].split("[", 1)[0]
            if head in inp:
                loc = f"{loc}.{msg}" if loc else msg
                lines.append(f"{field_prefix}{loc}")
                continue
            with_input_here = False
        else:
            with_input_here = with_input
        got = (
            f" (got {_short_repr(err['input'])})"
            if with_input_here and loc and "input" in err
            else ""
        )
        lines.append(f"{field_prefix}{loc}: {msg}{got}" if loc else msg)
    return lines


def _short_repr(v: Any, limit: int = 80) -> str:
    """repr of a value given in a plan, cut to ``limit`` characters (a value
    can be a large nested list)."""
    try:
        r = reprlib.Repr()
        r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 3, 6, 4, limit, limit
        text = r.repr(v)
    except (RecursionError, ValueError):
        text = f"<{type(v).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _loc_part(p: Any) -> str:
    """A field name as written, or its repr when it is odd (blank, a newline)."""
    t = str(p)
    return t if t and t.isprintable() and not any(c.isspace() for c in t) else repr(p)
