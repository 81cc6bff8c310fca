"""Voltammetric maps: a CV, LSV or staircase at every landing, browsed by potential.

The sweeps come from the plan's :class:`~napari_seccm.model.Program` (never
from the noisy recorded potential), so that a sample index maps exactly to
(segment, cycle, potential):

- a *segment* is one monotonic sweep: a run of ramps in one direction, or a
  staircase of holds stepping one way. A change of direction ends a segment;
  so does a lone hold (the settling hold before the program, a hold at a
  vertex), which belongs to no segment;
- a *cycle* ends where a segment comes back to the program's first sweep
  potential (``start -> vertex -> start`` is one cycle of two segments).

The current at a potential E in a segment interpolates linearly between the
two samples whose programmed potentials bracket E (a ramp's samples sit at
the middle of each sample interval, as :meth:`Program.sample` says; within
half a sample of a segment's end the end sample is taken). A staircase step
counts with the mean of its settled part (the last half of the step, as the
I-V fit's default ``settle_fraction``); E between two steps interpolates
between them. Points whose landing is not ``ok`` are NaN, never 0.

:class:`PotentialStack` is the lazy array napari browses: shape
``(segment, E step, y, x)`` on one regular potential grid for every segment,
so that a step of the potential slider is the same potential in every
segment. A slider move needs two sample columns of every point; the store's
trace chunks hold whole points (every sample of a block of points), so a
column cannot be read alone: the stack reads bands of whole-chunk rows once
(all the traces when they fit its memory budget) and keeps them, and then
a frame is a gather of two columns and one scatter of points to pixels
through precomputed indices, ~0.1 ms for 10^4 points.

numpy and zarr only; no Qt, no napari, no Micro-Manager.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

    from ..acquisition.store import ScanStore
    from ..model import Program

#: the staircase's leading fraction of each step left out (capacitive settling)
SETTLE_FRACTION = 0.5
#: most potential steps of the browsing grid (a slow sweep sampled fast would
#: otherwise give millions of steps finer than anything measured)
MAX_STEPS = 4096
#: memory the lazy stack may keep of the traces, bytes
CACHE_BYTES = 512 << 20


# ------------------------------------------------------------------ segments
@dataclass(frozen=True, eq=False)
class Sweep:
    """One segment: a monotonic sweep of the program.

    ``node_V`` are the potentials of its nodes in time order (a ramp's
    samples, or a staircase's steps); ``node_cols`` the trace samples of each
    node (one sample for a ramp's node, a step's settled samples for a
    staircase), averaged with equal weights.
    """

    index: int
    cycle: int
    kind: str  # "ramp" or "staircase"
    start_V: float
    end_V: float
    sample_start: int
    sample_stop: int
    duration_s: float
    node_V: np.ndarray = field(repr=False)
    node_cols: tuple[np.ndarray, ...] = field(repr=False)

    @property
    def direction(self) -> int:
        """+1 rising, -1 falling."""
        return 1 if self.end_V > self.start_V else -1

    @property
    def lo_V(self) -> float:
        return min(self.start_V, self.end_V)

    @property
    def hi_V(self) -> float:
        return max(self.start_V, self.end_V)

    @property
    def rate_V_per_s(self) -> float:
        """Mean sweep rate, V/s (negative when falling)."""
        return (self.end_V - self.start_V) / self.duration_s

    def describe(self) -> str:
        """``segment 1 (cycle 0): 1 -> 0 V, falling, 2 V/s``."""
        way = "rising" if self.direction > 0 else "falling"
        how = "staircase" if self.kind == "staircase" else f"{abs(self.rate_V_per_s):.3g} V/s"
        return (
            f"segment {self.index} (cycle {self.cycle}): {self.start_V:g} -> {self.end_V:g} V, "
            f"{way}, {how}"
        )

    def short(self) -> str:
        """``segment 1 (cycle 0, falling 1 -> 0 V)``."""
        way = "rising" if self.direction > 0 else "falling"
        return (
            f"segment {self.index} (cycle {self.cycle}, {way} {self.start_V:g} -> {self.end_V:g} V)"
        )

    def contains(self, potential_V: float) -> bool:
        tol = 1e-9 * max(self.hi_V - self.lo_V, 1e-12)
        return self.lo_V - tol <= potential_V <= self.hi_V + tol

    def weights(self, potential_V: float) -> tuple[np.ndarray, np.ndarray]:
        """Trace columns and weights whose weighted sum is the current at
        ``potential_V``; a ValueError names the value and this segment's range."""
        E = float(potential_V)
        if not math.isfinite(E) or not self.contains(E):
            raise ValueError(
                f"potential {E:g} V is outside {self.describe()}: choose E in "
                f"[{self.lo_V:g}, {self.hi_V:g}] V"
            )
        v = self.node_V if self.direction > 0 else self.node_V[::-1]
        m = v.size
        j = int(np.searchsorted(v, E))
        if j <= 0:
            a, b, w = 0, 0, 0.0
        elif j >= m:
            a, b, w = m - 1, m - 1, 0.0
        else:
            a, b = j - 1, j
            w = float((E - v[a]) / (v[b] - v[a]))
            # a potential on a node (within rounding) is that node alone
            w = 0.0 if w < 1e-9 else 1.0 if w > 1.0 - 1e-9 else w
        if self.direction < 0:  # back to time order
            a, b = m - 1 - a, m - 1 - b
        ca, cb = self.node_cols[a], self.node_cols[b]
        cols = np.concatenate([ca, cb])
        wts = np.concatenate([np.full(ca.size, (1.0 - w) / ca.size), np.full(cb.size, w / cb.size)])
        keep = wts != 0
        return cols[keep], wts[keep]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-3)


@dataclass(frozen=True, eq=False)
class VoltammetryTable:
    """The segments of a program sampled at a rate, and the browsing grid."""

    sweeps: tuple[Sweep, ...]
    n_samples: int
    sample_rate_Hz: float
    #: the regular potential grid of the browsing stack, V (ascending)
    grid_V: np.ndarray = field(repr=False)

    # ------------------------------------------------------------ building
    @classmethod
    def from_program(
        cls, program: Program, sample_rate_Hz: float, *, settle_fraction: float = SETTLE_FRACTION
    ) -> VoltammetryTable:
        """Segments and cycles of ``program`` sampled at ``sample_rate_Hz``."""
        counts = program.sample_counts(sample_rate_Hz)
        starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        pot = program.sample(sample_rate_Hz)
        runs = _runs(program)
        e_first = next((r.start_V for r in runs if r.moved), None)
        sweeps: list[Sweep] = []
        cycle = 0
        for run in runs:
            segs = run.segs
            s0, s1 = int(starts[segs[0]]), int(starts[segs[-1] + 1])
            if run.kind == "ramp":
                if s1 - s0 < 2:
                    continue  # too few samples to interpolate
                node_V = pot[s0:s1].astype(np.float64)
                cols = tuple(np.array([c], dtype=np.int64) for c in range(s0, s1))
            else:
                # one node per level: the last hold at that potential, its settled part
                levels: list[tuple[float, np.ndarray]] = []
                for i in segs:
                    a, b = int(starts[i]), int(starts[i + 1])
                    if b <= a:
                        continue
                    settled = np.arange(a + int(math.floor((b - a) * settle_fraction)), b)
                    v = program.segments[i].potential_V
                    if levels and _close(levels[-1][0], v):
                        levels[-1] = (v, settled)
                    else:
                        levels.append((v, settled))
                if len(levels) < 2:
                    continue  # a lone hold: no sweep
                node_V = np.array([v for v, _ in levels])
                cols = tuple(c for _, c in levels)
            e0, e1 = float(node_V[0]), float(node_V[-1])
            if run.kind == "ramp":  # the programmed ends (the samples sit half a sample in)
                e0, e1 = run.start_V, run.end_V
            dur = sum(program.segments[i].duration_s for i in segs)
            sweeps.append(Sweep(len(sweeps), cycle, run.kind, e0, e1, s0, s1, dur, node_V, cols))
            if e_first is not None and _close(e1, e_first):
                cycle += 1  # back at the start: the next sweep begins a new cycle
        n = int(starts[-1])
        return cls(tuple(sweeps), n, float(sample_rate_Hz), _grid(sweeps))

    @classmethod
    def from_store(cls, store: ScanStore) -> VoltammetryTable:
        plan = store.plan()
        table = cls.from_program(plan.program(), float(store.meta["sample_rate_Hz"]))
        if table.n_samples != store.n_samples:
            raise ValueError(
                f"{store.path}: the plan's program gives {table.n_samples} samples a point, "
                f"the store holds {store.n_samples}: the segments cannot be placed"
            )
        return table

    # ------------------------------------------------------------- queries
    @property
    def n_cycles(self) -> int:
        return self.sweeps[-1].cycle + 1 if self.sweeps else 0

    @property
    def is_voltammetric(self) -> bool:
        return bool(self.sweeps)

    @property
    def step_V(self) -> float:
        g = self.grid_V
        return float(g[1] - g[0]) if g.size > 1 else 1.0

    def lines(self) -> list[str]:
        """One line per segment, for messages and ``info``."""
        return [s.describe() for s in self.sweeps]

    def sweep(self, segment: int) -> Sweep:
        """Segment ``segment``; a ValueError lists the segments there are."""
        if not self.sweeps:
            raise ValueError("this program has no sweep (one potential held): no segment")
        if isinstance(segment, bool) or not isinstance(segment, (int, np.integer)):
            raise ValueError(f"a segment is an integer, got {segment!r}")
        if not 0 <= int(segment) < len(self.sweeps):
            raise ValueError(
                f"segment {segment} does not exist: this program has segments "
                f"0-{len(self.sweeps) - 1} ({'; '.join(self.lines())})"
            )
        return self.sweeps[int(segment)]

    def find(self, potential_V: float, segment: int | None = None) -> Sweep:
        """The segment to take ``potential_V`` from: ``segment``, or the first
        one whose range holds it. A ValueError names the value and the ranges."""
        if segment is not None:
            sw = self.sweep(segment)
            sw.weights(potential_V)  # raises, naming the range
            return sw
        if not self.sweeps:
            raise ValueError("this program has no sweep (one potential held): no potential axis")
        E = float(potential_V)
        for sw in self.sweeps:
            if math.isfinite(E) and sw.contains(E):
                return sw
        lo = min(s.lo_V for s in self.sweeps)
        hi = max(s.hi_V for s in self.sweeps)
        raise ValueError(
            f"potential {E:g} V is outside the program's sweeps: choose E in [{lo:g}, {hi:g}] V"
        )

    def grid_weights(self, segment: int, step: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Columns and weights of grid step ``step`` in ``segment``; None where
        the segment does not reach that potential."""
        sw = self.sweeps[segment]
        E = float(self.grid_V[step])
        return sw.weights(E) if sw.contains(E) else None


@dataclass
class _Run:
    """Program segments that make one monotonic sweep (while it is built)."""

    kind: str  # "ramp" or "staircase"
    segs: list[int]
    start_V: float
    end_V: float

    @property
    def moved(self) -> bool:
        return not _close(self.start_V, self.end_V)

    @property
    def direction(self) -> int:
        return 0 if not self.moved else (1 if self.end_V > self.start_V else -1)


def _runs(program: Program) -> list[_Run]:
    """Split a program into monotonic runs: a ramp joins the run before it if
    that is a ramp going the same way and ending where it starts; a hold joins
    a staircase at the same level or one more step the same way. A run that
    has come back to the first sweep's start potential is closed (a cycle
    ends there)."""
    from ..model import Hold

    runs: list[_Run] = []
    e_first: float | None = None
    for i, seg in enumerate(program.segments):
        cur = runs[-1] if runs else None
        closed = (
            cur is not None and cur.moved and e_first is not None and _close(cur.end_V, e_first)
        )
        if isinstance(seg, Hold):
            v = seg.potential_V
            step = 0 if cur is None or _close(v, cur.end_V) else (1 if v > cur.end_V else -1)
            joins = (
                cur is not None
                and cur.kind == "staircase"
                and (step == 0 or (not closed and cur.direction in (0, step)))
            )
            if joins:
                cur.segs.append(i)
                cur.end_V = v
            else:
                runs.append(_Run("staircase", [i], v, v))
        else:
            d = 1 if seg.end_V > seg.start_V else -1
            joins = (
                cur is not None
                and cur.kind == "ramp"
                and not closed
                and cur.direction == d
                and _close(seg.start_V, cur.end_V)
            )
            if joins:
                cur.segs.append(i)
                cur.end_V = seg.end_V
            else:
                runs.append(_Run("ramp", [i], seg.start_V, seg.end_V))
        if e_first is None and runs[-1].moved:
            e_first = runs[-1].start_V
    return runs


def _grid(sweeps: list[Sweep]) -> np.ndarray:
    """A regular potential grid over every segment, as fine as the finest
    node spacing (at most ``MAX_STEPS`` steps)."""
    if not sweeps:
        return np.empty(0)
    lo = min(s.lo_V for s in sweeps)
    hi = max(s.hi_V for s in sweeps)
    d = min(float(np.min(np.abs(np.diff(s.node_V)))) for s in sweeps if s.node_V.size > 1)
    d = d if d > 0 else (hi - lo)
    n = int(min(max(round((hi - lo) / d) + 1, 2), MAX_STEPS))
    return np.linspace(lo, hi, n)


# ---------------------------------------------------------------- the maps
def _ok_points(store: ScanStore) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the points that are done and ``ok``, and their flat pixel index."""
    from ..acquisition.store import OK

    done = store.done_mask()
    ok = np.flatnonzero(done & (store.array("results/status")[:] == OK))
    pts = store.points()
    g = store.grid
    pix = pts["row"][ok].astype(np.int64) * g.nx + pts["col"][ok].astype(np.int64)
    return ok, pix


def _open(store: ScanStore | str | Path) -> ScanStore:
    from ..acquisition.store import ScanStore

    return store if isinstance(store, ScanStore) else ScanStore.open(store)


def map_at(
    store: ScanStore | str | Path, potential_V: float, segment: int | None = None
) -> dict[str, Any]:
    """The current map at ``potential_V`` in ``segment`` (default: the first
    segment that reaches it), A, ``(ny, nx)``; NaN where a point is not ok.

    Returns ``current_A``, ``point_current_A`` (per point, in visiting
    order), ``potential_V``, ``segment``, ``cycle``, ``description``,
    ``short`` and the grid (``x0_um``, ``y0_um``, ``pitch_um``).
    """
    s = _open(store)
    try:
        table = VoltammetryTable.from_store(s)
        try:
            sw = table.find(potential_V, segment)
            cols, wts = sw.weights(potential_V)
        except ValueError as e:  # the store named: the value, the field and the range are
            raise ValueError(f"{s.path}: {e}") from None
        ok, pix = _ok_points(s)
        g = s.grid
        out = np.full(g.ny * g.nx, np.nan)
        per_point = np.full(s.n_points, np.nan)
        if ok.size:
            arr = s.array("traces/current_A")
            block = arr.get_orthogonal_selection((slice(None), cols))
            per_point[ok] = block[ok].astype(np.float64) @ wts
            out[pix] = per_point[ok]
        return {
            "current_A": out.reshape(g.ny, g.nx),
            "point_current_A": per_point,
            "short": sw.short(),
            "potential_V": float(potential_V),
            "segment": sw.index,
            "cycle": sw.cycle,
            "description": sw.describe(),
            "x0_um": g.x0_um,
            "y0_um": g.y0_um,
            "pitch_um": g.pitch_um,
        }
    finally:
        if s is not store:
            s.close()


def export_potential_map(
    store: ScanStore | str | Path,
    out: str | Path,
    potential_V: float,
    segment: int | None = None,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the current map at ``potential_V`` (in ``segment``; default the
    first that reaches it) as GSF, GWY, TIFF or PNG, or the per-point table
    as CSV. The potential and the segment are checked before anything is
    written: a bad one writes nothing."""
    from ..acquisition.store import STATUS_NAMES
    from .export import CHANNELS, check_writable, resolve_format, write_map, write_point_table

    fmt = resolve_format(out, fmt)
    check_writable(out, overwrite)
    s = _open(store)
    try:
        m = map_at(s, potential_V, segment)
        if fmt == "csv":
            pts = s.points()
            res = s.results()
            cols = {
                "index": np.arange(s.n_points),
                "row": pts["row"],
                "col": pts["col"],
                "x_um": pts["x_um"],
                "y_um": pts["y_um"],
                "status_name": np.array([STATUS_NAMES.get(int(v), "?") for v in res["status"]]),
                "segment": np.full(s.n_points, m["segment"]),
                "potential_V": np.full(s.n_points, m["potential_V"]),
                "current_A": m["point_current_A"],
            }
            return write_point_table(out, cols, overwrite=overwrite)
    finally:
        if s is not store:
            s.close()
    title = f"Current at {m['potential_V']:g} V, {m['short']}"
    geo = {k: m[k] for k in ("x0_um", "y0_um", "pitch_um")}
    return write_map(
        out, fmt, m["current_A"], CHANNELS["current"], title=title, overwrite=overwrite, **geo
    )


class _Bands:
    """Column bands of a trace array (every point, a band of samples), read
    as whole chunks and kept, transposed, in a bounded LRU: all of it in one
    band when it fits the budget."""

    def __init__(self, arr: Any, budget_bytes: int) -> None:
        self.arr = arr
        n, ns = arr.shape
        col_bytes = 4 * max(n, 1)
        if col_bytes * ns <= budget_bytes:
            self.width, self.keep = max(ns, 1), 1
        else:  # four bands fit in the budget
            self.width, self.keep = max(budget_bytes // (4 * col_bytes), 1), 4
        self.bands: OrderedDict[int, np.ndarray] = OrderedDict()
        self.reads = 0

    def band(self, b: int) -> np.ndarray:
        got = self.bands.get(b)
        if got is None:
            a = b * self.width
            # kept sample-major: a column of every point is one contiguous row
            got = np.ascontiguousarray(
                np.asarray(self.arr[:, a : a + self.width], dtype=np.float32).T
            )
            self.reads += 1
            self.bands[b] = got
            while len(self.bands) > self.keep:
                self.bands.popitem(last=False)
        else:
            self.bands.move_to_end(b)
        return got

    def columns(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """``arr[rows][:, cols]`` as float32, (len(rows), len(cols))."""
        out = np.empty((rows.size, cols.size), dtype=np.float32)
        bands = cols // self.width
        for b in np.unique(bands):
            sel = np.flatnonzero(bands == b)
            # the few columns (contiguous rows of the band) first, then the points
            out[:, sel] = self.band(int(b))[cols[sel] - int(b) * self.width][:, rows].T
        return out

    def clear(self) -> None:
        self.bands.clear()


class PotentialStack:
    """A lazy ``(segment, E step, y, x)`` float32 array of the current at each
    potential of a regular grid (``factor`` x A: 1e9 gives nA), for napari.

    Indexing computes only the frames asked for; see the module's notes on
    what a frame reads. ``grid_V`` gives the potential of each step.
    """

    def __init__(
        self,
        store: ScanStore | str | Path,
        *,
        factor: float = 1.0,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.store = _open(store)
        self.table = VoltammetryTable.from_store(self.store)
        if not self.table.is_voltammetric:
            raise ValueError(
                f"{self.store.path}: its program holds one potential (no sweep): "
                "there is no potential axis to browse"
            )
        self.factor = float(factor)
        g = self.store.grid
        self.grid = g
        self.grid_V = self.table.grid_V
        self.shape = (len(self.table.sweeps), self.grid_V.size, g.ny, g.nx)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4
        self._bands = _Bands(self.store.array("traces/current_A"), cache_bytes)
        self.refresh()

    def refresh(self) -> None:
        """Read which points are ok again (a store still being written) and
        forget the traces read so far."""
        self._ok, self._pix = _ok_points(self.store)
        self._bands.clear()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def point_values(self, segment: int, step: int) -> np.ndarray:
        """Current of every ok point at grid step ``step`` of ``segment``
        (``factor`` x A, float32, in ``ok`` order); NaN when the segment
        does not reach that potential."""
        cw = self.table.grid_weights(segment, step)
        if cw is None or not self._ok.size:
            return np.full(self._ok.size, np.nan, dtype=np.float32)
        cols, wts = cw
        block = self._bands.columns(self._ok, cols)
        return (block @ (wts * self.factor).astype(np.float32)).astype(np.float32)

    def at(self, segment: int, potential_V: float) -> np.ndarray:
        """The ``(ny, nx)`` map at any potential of ``segment`` (not only the
        grid's), ``factor`` x A; a ValueError names a potential out of range."""
        cols, wts = self.table.sweep(segment).weights(potential_V)
        out = np.full(self.grid.ny * self.grid.nx, np.nan, dtype=np.float32)
        if self._ok.size:
            block = self._bands.columns(self._ok, cols)
            out[self._pix] = block @ (wts * self.factor).astype(np.float32)
        return out.reshape(self.grid.ny, self.grid.nx)

    def frame(self, segment: int, step: int) -> np.ndarray:
        """The ``(ny, nx)`` map of one step."""
        out = np.full(self.grid.ny * self.grid.nx, np.nan, dtype=np.float32)
        out[self._pix] = self.point_values(segment, step)
        return out.reshape(self.grid.ny, self.grid.nx)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = _expand(key, self.ndim)
        picks = []
        squeeze = []
        for ax in (0, 1):
            k = key[ax]
            n = self.shape[ax]
            if isinstance(k, (int, np.integer)):
                i = int(k) + (n if k < 0 else 0)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of bounds for axis {ax} with size {n}")
                picks.append([i])
                squeeze.append(ax)
            elif isinstance(k, slice):
                picks.append(list(range(*k.indices(n))))
            else:
                picks.append([int(v) + (n if v < 0 else 0) for v in np.asarray(k).ravel()])
        yx = (key[2], key[3])
        frames = [[self.frame(k, j)[yx] for j in picks[1]] for k in picks[0]]
        shape_yx = np.empty(self.shape[2:], dtype=np.float32)[yx].shape
        out = np.array(frames, dtype=np.float32).reshape(len(picks[0]), len(picks[1]), *shape_yx)
        for ax in reversed(squeeze):
            out = out.squeeze(ax)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def contrast_limits(self, max_chunks: int = 16) -> tuple[float, float]:
        """1st and 99th percentile of the ok points' current over the sweeps
        (``factor`` x A), from at most ``max_chunks`` trace chunks spread over
        the scan: opening stays quick however big the store."""
        arr = self.store.array("traces/current_A")
        if not self._ok.size:
            return (0.0, 1.0)
        cp = int(arr.chunks[0])
        chunks = np.unique(self._ok // cp)
        chunks = chunks[np.linspace(0, chunks.size - 1, min(max_chunks, chunks.size)).astype(int)]
        cols = np.concatenate([np.arange(s.sample_start, s.sample_stop) for s in self.table.sweeps])
        vals = []
        for c in np.unique(chunks):
            rows = self._ok[(self._ok >= c * cp) & (self._ok < (c + 1) * cp)] - c * cp
            block = np.asarray(arr[c * cp : (c + 1) * cp])
            vals.append(block[rows][:, cols].ravel())
        v = np.concatenate(vals) * self.factor
        v = v[np.isfinite(v)]
        if not v.size:
            return (0.0, 1.0)
        lo, hi = (float(x) for x in np.percentile(v, [1, 99]))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi

    @property
    def bytes_read_bands(self) -> int:
        """How many bands have been read from the store so far."""
        return self._bands.reads


def _expand(key: Any, ndim: int) -> tuple[Any, ...]:
    """An index as a tuple of ``ndim`` entries (Ellipsis expanded)."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    if len(key) > ndim:
        raise IndexError(f"too many indices: {len(key)} for {ndim} dimensions")
    return key + (slice(None),) * (ndim - len(key))


def is_voltammetric(store: ScanStore) -> bool:
    """Does the store's program sweep the potential (LSV, CV, staircase)?"""
    try:
        return VoltammetryTable.from_store(store).is_voltammetric
    except ValueError:
        return False
