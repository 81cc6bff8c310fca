"""One zarr v3 store per scan (``*.seccm.zarr``), written while scanning.

Layout (see ``docs/data-format.md``)::

    scan.seccm.zarr/
      zarr.json                 group attributes: {"seccm": {...}}  (plan, rig, status)
      points/{x_um,y_um,row,col}            planned points, in visiting order
      results/{done,status,value_A,contact_z_um,x_um,y_um,t_start_s,wall_time_s}
      traces/current_A  (n_points, n_samples) float32, NaN where not measured
      traces/potential_V (n_points, n_samples) float32
      traces/time_s      (n_samples,) float64: time from the start of the program
      maps/current/0        (ny, nx) float32 map value, A; NaN = not measured
      maps/contact_height/0 (ny, nx) float32 contact height, um
      .lock                 OS-locked (flock / LockFileEx) by the process writing the scan

The maps are OME-Zarr (NGFF 0.5) images with their scale and translation in
micrometers, so other OME-Zarr readers place them in stage coordinates.

Crash safety: every chunk is written atomically (temporary file + rename, as
zarr's LocalStore does), and a point's ``done`` flag is written only after its
trace, results and map pixels. A killed scan therefore leaves every point
flagged done intact, and ``resume`` re-measures the rest. Nothing here
executes or unpickles anything when reading: metadata is JSON.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from filelock import lock_descriptor, unlock_descriptor

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import zarr

    from .plan import ScanPlan

FORMAT_VERSION = 1

# landing status codes of a point
PENDING = 0
OK = 1
NO_CONTACT = 2
SATURATED = 3
FALSE_TRIGGER = 4
FAILED = 5
#: the point's readings failed a plausibility check (contact height far from
#: the prediction, XY stage not at its target, no or non-finite samples):
#: kept for diagnosis, never used as a measurement. Not 6: the analysis's
#: quality codes (napari_seccm.analysis.maps) share this code space, 2-5 and 8
#: mean the same there, and 6 and 7 are its poor_fit and non_positive_conductance
FAULT = 8
STATUS_NAMES = {
    PENDING: "pending",
    OK: "ok",
    NO_CONTACT: "no_contact",
    SATURATED: "saturated",
    FALSE_TRIGGER: "false_trigger",
    FAILED: "failed",
    FAULT: "fault",
}

# scan status values; "fault": a device fault ended the scan (a device did not
# finish in time, a reading that cannot be trusted, the emergency stop)
SCAN_STATUSES = ("created", "running", "interrupted", "complete", "canceled", "error", "fault")

_RESULT_FIELDS: dict[str, tuple[str, Any]] = {
    "done": ("u1", 0),
    "status": ("u1", PENDING),
    "value_A": ("f8", np.nan),
    "contact_z_um": ("f8", np.nan),
    "x_um": ("f8", np.nan),
    "y_um": ("f8", np.nan),
    "t_start_s": ("f8", np.nan),
    "wall_time_s": ("f8", np.nan),
}


@dataclass
class PointRecord:
    """Everything measured at one point (index ``i`` in visiting order)."""

    i: int
    status: int
    value_A: float
    contact_z_um: float
    x_um: float
    y_um: float
    t_start_s: float
    wall_time_s: float
    current_A: np.ndarray | None = None
    potential_V: np.ndarray | None = None


class StoreExistsError(FileExistsError):
    pass


class StoreLockedError(RuntimeError):
    pass


def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def software_versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("napari-seccm", "pymmcore-plus", "pymmcore", "zarr", "numpy", "useq-schema"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _ngff_attrs(name: str, pitch: float, y0: float, x0: float, unit: str) -> dict:
    return {
        "ome": {
            "version": "0.5",
            "multiscales": [
                {
                    "name": name,
                    "axes": [
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [pitch, pitch]},
                                {"type": "translation", "translation": [y0, x0]},
                            ],
                        }
                    ],
                    "metadata": {"value_unit": unit},
                }
            ],
        }
    }


def _chunk_points(n_samples: int, n_points: int) -> int:
    """Points per trace chunk: ~128 KiB of float32 (16 to 4096 points).

    Small chunks keep the writer's read-modify-write per batch small; a
    million-point scan still makes only ~10^4 chunk files per array.
    """
    per = (128 << 10) // max(4 * n_samples, 1)
    return int(min(max(per, 16), 4096, max(n_points, 1)))


class ScanStore:
    """A scan on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, root: zarr.Group, writable: bool) -> None:
        self.path = path
        self.root = root
        self.writable = writable
        self._lock_fd: int | None = None
        self._cache: dict[str, Any] = {}

    # ---------------------------------------------------------- create/open
    @classmethod
    def create(
        cls,
        path: str | Path,
        plan: ScanPlan,
        *,
        rig: dict[str, Any] | None = None,
        overwrite: bool = False,
    ) -> ScanStore:
        """Create a new store for ``plan``. An existing path is never replaced
        unless ``overwrite=True`` (and then only if nobody is writing it)."""
        import zarr

        path = Path(path)
        cls.check_creatable(path, overwrite=overwrite)
        if path.exists():
            probe = cls._try_lock(path)
            if probe is None:
                raise StoreLockedError(f"{path} is being written by a running scan (lock held)")
            cls._unlock(probe)
            shutil.rmtree(path)
        pts = plan.points()
        n = len(pts)
        ns = plan.samples_per_point()
        g = pts.grid
        root = zarr.open_group(str(path), mode="w-", zarr_format=3)
        root.attrs["seccm"] = {
            "format_version": FORMAT_VERSION,
            "status": "created",
            "reason": "",
            "created": _now_iso(),
            "started": None,
            "ended": None,
            "plan": json.loads(plan.to_json()),
            "grid": {
                "x0_um": g.x0_um,
                "y0_um": g.y0_um,
                "pitch_um": g.pitch_um,
                "nx": g.nx,
                "ny": g.ny,
            },
            "n_points": n,
            "n_samples": ns,
            "sample_rate_Hz": plan.potentiostat.sample_rate_Hz,
            "readout_window_s": list(plan.readout_window_s()),
            "rig": rig or {},
            "software": software_versions(),
            "instrument_time_s": 0.0,
            "wall_time_s": 0.0,
            "sessions": [],
        }
        pchunk = min(max(n, 1), 1 << 16)
        grp = root.create_group("points")
        for name, arr in (
            ("x_um", pts.x_um),
            ("y_um", pts.y_um),
            ("row", pts.row),
            ("col", pts.col),
        ):
            a = grp.create_array(name, shape=(n,), chunks=(pchunk,), dtype=arr.dtype)
            a[:] = arr
        res = root.create_group("results")
        for name, (dtype, fill) in _RESULT_FIELDS.items():
            res.create_array(name, shape=(n,), chunks=(pchunk,), dtype=dtype, fill_value=fill)
        tr = root.create_group("traces")
        cp = _chunk_points(ns, n)
        for name in ("current_A", "potential_V"):
            # noisy float32 hardly compresses: store raw, spend no CPU on it
            tr.create_array(
                name,
                shape=(n, ns),
                chunks=(cp, max(ns, 1)),
                dtype="f4",
                fill_value=np.nan,
                compressors=None,
            )
        t = tr.create_array("time_s", shape=(ns,), chunks=(max(ns, 1),), dtype="f8")
        t[:] = np.arange(ns) / plan.potentiostat.sample_rate_Hz
        maps = root.create_group("maps")
        mchunk = (min(g.ny, 256), min(g.nx, 256))
        for name, unit in (("current", "A"), ("contact_height", "um")):
            m = maps.create_group(name)
            m.attrs.update(
                _ngff_attrs(
                    name, g.pitch_um, g.y0_um + g.pitch_um / 2, g.x0_um + g.pitch_um / 2, unit
                )
            )
            m.create_array(
                "0",
                shape=g.shape,
                chunks=mchunk,
                dtype="f4",
                fill_value=np.nan,
                dimension_names=("y", "x"),
            )
        store = cls(path, root, writable=True)
        store.acquire_lock()
        return store

    @staticmethod
    def check_creatable(path: str | Path, *, overwrite: bool = False) -> None:
        """Raise unless a new store may be written at ``path`` (nothing is changed).

        An existing path is refused unless ``overwrite``; even then only a
        scan store is replaced, never another file or folder.
        """
        path = Path(path)
        if not path.exists():
            if not path.parent.exists():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return
        if not overwrite:
            raise StoreExistsError(
                f"{path} already exists; choose another name, resume it, or pass "
                "overwrite=True (--overwrite) to replace it"
            )
        is_store = (path / "zarr.json").is_file() and '"seccm"' in (path / "zarr.json").read_text()
        if not is_store:
            raise StoreExistsError(
                f"{path} exists and is not a SECCM scan store; it is never replaced"
            )

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> ScanStore:
        """Open an existing store; ``mode="r+"`` to continue writing it."""
        import zarr

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if not (path / "zarr.json").exists():
            raise FileNotFoundError(f"{path} is not a SECCM scan store (no zarr.json)")
        root = zarr.open_group(str(path), mode="r+" if mode == "r+" else "r", zarr_format=3)
        if "seccm" not in root.attrs:
            raise ValueError(f"{path} is a zarr store but not a SECCM scan (no 'seccm' attributes)")
        store = cls(path, root, writable=(mode == "r+"))
        if mode == "r+":
            store.acquire_lock()
        return store

    # ---------------------------------------------------------------- lock
    # The writer holds an operating-system lock on .lock (flock on Linux and
    # macOS, LockFileEx on Windows; filelock's descriptor lock): the OS drops
    # it when the process ends, however it ends, so a killed scan can be
    # resumed. Never a marker file, which a killed writer would leave behind:
    # where no OS lock exists, writing is refused.
    @staticmethod
    def _try_lock(path: Path) -> int | None:
        """Open and lock ``path/.lock`` without waiting: its descriptor, or
        None if another descriptor (in any process) holds the lock."""
        lock_path = path / ".lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = lock_descriptor(fd, blocking=False)
        except BaseException as e:
            os.close(fd)
            if isinstance(e, OSError):
                raise OSError(
                    e.errno,
                    f"cannot lock {lock_path} ({e.strerror or e}): a scan store is written "
                    "only under an operating-system file lock (flock or LockFileEx)",
                ) from e
            raise
        if not locked:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def _unlock(fd: int) -> None:
        try:
            unlock_descriptor(fd)
        finally:
            os.close(fd)

    def acquire_lock(self) -> None:
        fd = self._try_lock(self.path)
        if fd is None:
            raise StoreLockedError(f"{self.path} is being written by a running scan (lock held)")
        self._lock_fd = fd

    def release_lock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            self._unlock(fd)

    def is_locked_by_other(self) -> bool:
        if self._lock_fd is not None:
            return False
        fd = self._try_lock(self.path)
        if fd is None:
            return True
        self._unlock(fd)
        return False

    def close(self) -> None:
        self.release_lock()

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- metadata
    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.root.attrs["seccm"])

    def update_meta(self, **kwargs: Any) -> None:
        meta = self.meta
        meta.update(kwargs)
        self.root.attrs["seccm"] = meta

    @property
    def status(self) -> str:
        """Scan status; a ``running`` scan whose writer is gone is ``interrupted``."""
        st = self.meta["status"]
        if st == "running" and not self.writable and not self.is_locked_by_other():
            return "interrupted"
        return st

    def plan(self) -> ScanPlan:
        import warnings

        from .plan import ScanPlan

        with warnings.catch_warnings():  # warned when the scan was planned
            warnings.simplefilter("ignore", UserWarning)
            return ScanPlan.model_validate(self.meta["plan"], context={"stored": True})

    @property
    def n_points(self) -> int:
        return int(self.meta["n_points"])

    @property
    def n_samples(self) -> int:
        return int(self.meta["n_samples"])

    @property
    def grid(self):
        from .plan import MapGrid

        return MapGrid(**self.meta["grid"])

    # --------------------------------------------------------------- arrays
    def array(self, name: str) -> zarr.Array:
        if name not in self._cache:
            self._cache[name] = self.root[name]
        return self._cache[name]

    def done_mask(self) -> np.ndarray:
        return self.array("results/done")[:].astype(bool)

    def results(self) -> dict[str, np.ndarray]:
        return {k: self.array(f"results/{k}")[:] for k in _RESULT_FIELDS}

    def points(self) -> dict[str, np.ndarray]:
        return {k: self.array(f"points/{k}")[:] for k in ("x_um", "y_um", "row", "col")}

    def current_map(self) -> np.ndarray:
        return self.array("maps/current/0")[:]

    def height_map(self) -> np.ndarray:
        return self.array("maps/contact_height/0")[:]

    def trace(self, i: int) -> dict[str, np.ndarray]:
        """The recorded trace of point ``i``: time (s), potential (V), current (A)."""
        return {
            "time_s": self.array("traces/time_s")[:],
            "potential_V": self.array("traces/potential_V")[i],
            "current_A": self.array("traces/current_A")[i],
        }

    def point_at(self, row: int, col: int) -> int | None:
        """Index of the point measured at map pixel (row, col), if any."""
        pts = self.points()
        hits = np.flatnonzero((pts["row"] == row) & (pts["col"] == col))
        return int(hits[-1]) if hits.size else None

    def status_counts(self) -> dict[str, int]:
        """Landing outcomes of the points marked done (a point's status may be
        on disk before its done flag, if the process was killed in between);
        the others count as pending."""
        st = self.array("results/status")[:]
        done = self.done_mask()
        out = {STATUS_NAMES[k]: int(((st == k) & done).sum()) for k in STATUS_NAMES}
        out["pending"] = int((~done).sum())
        return out

    def instrument_time_s(self) -> float:
        """Instrument time spent so far, s: the recorded total, or, if the scan
        was killed before recording it, the start of the last done point."""
        t = float(self.meta.get("instrument_time_s", 0.0))
        done = self.done_mask()
        if done.any():
            t = max(t, float(np.nanmax(self.array("results/t_start_s")[:][done])))
        return t

    # ----------------------------------------------------------- alignments
    def alignments(self) -> list[dict[str, Any]]:
        """Images aligned onto this scan: path, sha256, model, matrix, landmarks."""
        return list(self.meta.get("alignments", []))

    @classmethod
    def save_alignment(cls, path: str | Path, record: dict[str, Any]) -> None:
        """Store (or replace, for the same image) an alignment with a scan.

        ``record`` holds JSON values: ``image`` (layer name), ``path``,
        ``sha256``, ``model``, ``matrix`` (3 x 3, image data -> stage (y, x)
        um), landmarks and residuals. Refused while the scan is being written.
        """
        json.dumps(record)  # JSON only: nothing executable goes into a store
        store = cls.open(path, mode="r+")
        try:
            recs = [r for r in store.alignments() if r.get("image") != record.get("image")]
            recs.append({**record, "saved": _now_iso()})
            store.update_meta(alignments=recs)
        finally:
            store.close()

    # ---------------------------------------------------------------- write
    def write_points(self, records: Sequence[PointRecord]) -> None:
        """Write a batch of points; their ``done`` flags go last."""
        if not records:
            return
        if not self.writable:
            raise PermissionError(f"{self.path} is open read-only")
        records = sorted(records, key=lambda r: r.i)
        idx = np.fromiter((r.i for r in records), dtype=np.int64, count=len(records))
        ns = self.n_samples
        with_trace = [r for r in records if r.current_A is not None]
        if with_trace and ns:
            cur = np.full((len(with_trace), ns), np.nan, dtype=np.float32)
            pot = np.full((len(with_trace), ns), np.nan, dtype=np.float32)
            for k, r in enumerate(with_trace):
                m = min(ns, r.current_A.shape[0])
                cur[k, :m] = r.current_A[:m]
                pot[k, :m] = r.potential_V[:m]
            tidx = np.fromiter((r.i for r in with_trace), dtype=np.int64)
            self._write_rows("traces/current_A", tidx, cur)
            self._write_rows("traces/potential_V", tidx, pot)
        for name in (
            "status",
            "value_A",
            "contact_z_um",
            "x_um",
            "y_um",
            "t_start_s",
            "wall_time_s",
        ):
            vals = np.array([getattr(r, name) for r in records])
            self._write_1d(f"results/{name}", idx, vals)
        rows, cols = self._rows_cols(idx)
        value = np.array([r.value_A if r.status == OK else np.nan for r in records], dtype="f4")
        # a fault's contact height cannot be trusted: kept in results, not mapped
        height = np.array(
            [np.nan if r.status == FAULT else r.contact_z_um for r in records], dtype="f4"
        )
        self.array("maps/current/0").set_coordinate_selection((rows, cols), value)
        self.array("maps/contact_height/0").set_coordinate_selection((rows, cols), height)
        self._write_1d("results/done", idx, np.ones(idx.size, dtype="u1"))

    def _rows_cols(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel of each point (the planned grid is cached: it never changes)."""
        if "_rowcol" not in self._cache:
            self._cache["_rowcol"] = (self.array("points/row")[:], self.array("points/col")[:])
        row, col = self._cache["_rowcol"]
        return row[idx], col[idx]

    def _write_1d(self, name: str, idx: np.ndarray, vals: np.ndarray) -> None:
        arr = self.array(name)
        if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size:  # contiguous
            arr[int(idx[0]) : int(idx[-1]) + 1] = vals
        else:
            arr.set_coordinate_selection(idx, vals)

    def _write_rows(self, name: str, idx: np.ndarray, data: np.ndarray) -> None:
        arr = self.array(name)
        # contiguous runs are written as slices (one read-modify-write per chunk)
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        for run_idx, run_data in zip(np.split(idx, breaks), np.split(data, breaks), strict=True):
            arr[int(run_idx[0]) : int(run_idx[-1]) + 1] = run_data

    def reset_points(self, idx: np.ndarray) -> None:
        """Mark points as not done (e.g. to re-measure them)."""
        self.array("results/done").set_coordinate_selection(idx, np.zeros(idx.size, dtype="u1"))


class StoreWriter:
    """Drains point records into the store on a worker thread.

    The acquisition thread only queues (bounded, so memory stays flat); the
    worker writes whatever has accumulated in one batch, so a slow point rate
    is written point by point and a fast one in batches.
    """

    def __init__(
        self,
        store: ScanStore,
        maxsize: int = 8192,
        max_batch: int = 4096,
        min_interval_s: float = 0.2,
        on_batch: Callable[[list[PointRecord]], None] | None = None,
    ) -> None:
        self.store = store
        #: called on the writer thread after each batch is on disk
        self.on_batch = on_batch
        self.max_batch = max_batch
        #: at most one batch per interval: a zarr write costs ~2 ms whatever
        #: its size, so fast scans write in batches; a point still reaches the
        #: disk within about this time after it was measured
        self.min_interval_s = min_interval_s
        self._closing = threading.Event()
        self._q: queue.Queue[PointRecord | None] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="seccm-store-writer", daemon=True)
        self._thread.start()

    def put(self, record: PointRecord) -> None:
        if self._error is not None:
            raise RuntimeError(f"writing the scan store failed: {self._error}") from self._error
        self._q.put(record)

    def _run(self) -> None:
        last = 0.0
        while True:
            item = self._q.get()
            wait = self.min_interval_s - (time.monotonic() - last)
            if wait > 0 and item is not None:
                self._closing.wait(wait)  # let points accumulate (unless closing)
            batch: list[PointRecord] = []
            stop = item is None
            if item is not None:
                batch.append(item)
            while not stop and len(batch) < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                else:
                    batch.append(nxt)
            if batch and self._error is None:
                last = time.monotonic()
                try:
                    self.store.write_points(batch)
                    self.written += len(batch)
                    if self.on_batch is not None:
                        self.on_batch(batch)
                except BaseException as e:  # keep draining so producers never block
                    self._error = e
            for _ in range(len(batch) + (1 if stop else 0)):
                self._q.task_done()
            if stop:
                return

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the worker."""
        self._closing.set()
        self._q.put(None)
        self._thread.join(timeout)
        if self._error is not None:
            raise RuntimeError(f"writing the scan store failed: {self._error}") from self._error

    def flush(self) -> None:
        """Block until everything queued so far is on disk."""
        self._q.join()
        if self._error is not None:
            raise RuntimeError(f"writing the scan store failed: {self._error}") from self._error
