"""One zarr v3 store per scan (``*.seccm.zarr``), written while scanning.

Layout (see ``docs/data-format.md``)::

    scan.seccm.zarr/
      zarr.json                 group attributes: {"seccm": {...}}  (plan, rig, status)
      points/{x_um,y_um,row,col}            planned points, in visiting order
      results/{done,status,value_A,contact_z_um,x_um,y_um,t_start_s,wall_time_s}
      traces/current_A  (n_points, n_samples) float32, NaN where not measured
      traces/potential_V (n_points, n_samples) float32
      traces/time_s      (n_samples,) float64: time from the start of the program
      approach/z_um      (n_points, 512) float32 approach curve i(z): Z, um (NaN-padded)
      approach/current_A (n_points, 512) float32 its current, A
      approach/manual    (n_points,) uint8: 1 where the contact was accepted by hand
      maps/current/0        (ny, nx) float32 map value, A; NaN = not measured
      maps/contact_height/0 (ny, nx) float32 contact height, um
      .lock                 OS-locked (flock / LockFileEx) by the process writing the scan
      .seccm-creating       present only while the store is being created

The maps are OME-Zarr (NGFF 0.5) images with their scale and translation in
micrometers, so other OME-Zarr readers place them in stage coordinates.

Crash safety: every chunk is written atomically (temporary file + rename, as
zarr's LocalStore does), and a point's ``done`` flag is written only after its
trace, results and map pixels. A killed scan therefore leaves every point
flagged done intact, and ``resume`` re-measures the rest. Nothing here
executes or unpickles anything when reading: metadata is JSON.

A store is created behind a marker file (``.seccm-creating``): it appears at
its path with the marker already in it (a hidden sibling folder renamed into
place) and the marker is removed last, so a store without the marker is
complete, and one killed mid-creation is recognized as such (opening it is
refused with a clear message; ``overwrite=True`` replaces it).

Reading never writes: no lock file, no metadata, no zarr consolidation, so a
store on read-only media opens for reading, analysis and export. Opening for
writing (``mode="r+"``, a resume) validates the whole store first: every
array with its shape and dtype, every chunk of the per-point arrays readable,
the plan giving exactly the recorded points (see :meth:`ScanStore.problems`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import queue
import shutil
import sys
import threading
import time
import uuid
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

#: present in a store from the first instant of its creation until the store
#: is complete (removed last): a store holding it was caught mid-creation
CREATING_MARKER = ".seccm-creating"
#: what a store folder may hold (a half-created store holds nothing else:
#: ``overwrite`` never removes a folder with anything else in it); ``approach``:
#: the approach curves (of a scan, or imported from another instrument)
_LAYOUT = frozenset(
    {"zarr.json", "points", "results", "traces", "approach", "maps", ".lock", CREATING_MARKER}
)

#: the samples kept of one approach curve (``approach/z_um``, ``approach/current_A``)
APPROACH_MAX_SAMPLES = 512
#: of which the last ones, nearest the contact, at full resolution
APPROACH_FULL_RES = 256

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
    #: the approach curve of this landing (Z in um, current in A), as recorded
    #: (decimated when written: :func:`decimate_approach`)
    approach_z_um: np.ndarray | None = None
    approach_current_A: np.ndarray | None = None
    #: the contact was accepted by hand during the approach
    manual_contact: bool = False


def decimate_approach(
    z_um: np.ndarray,
    current_A: np.ndarray,
    max_samples: int = APPROACH_MAX_SAMPLES,
    full_res: int = APPROACH_FULL_RES,
) -> tuple[np.ndarray, np.ndarray]:
    """An approach curve cut to at most ``max_samples`` (float32): the last
    ``full_res`` samples (nearest the contact) as recorded, the earlier part
    averaged in equal bins (mean Z and mean current of each) into the rest."""
    z = np.asarray(z_um, dtype=float).ravel()
    i = np.asarray(current_A, dtype=float).ravel()
    if z.size != i.size:
        raise ValueError(f"approach curve: {z.size} Z values but {i.size} currents")
    if z.size <= max_samples:
        return z.astype(np.float32), i.astype(np.float32)
    head = z.size - full_res
    bins = max_samples - full_res
    edges = np.linspace(0, head, bins + 1).round().astype(np.int64)
    counts = np.diff(edges)
    zs = np.add.reduceat(z[:head], edges[:-1]) / counts
    cs = np.add.reduceat(i[:head], edges[:-1]) / counts
    return (
        np.concatenate((zs, z[head:])).astype(np.float32),
        np.concatenate((cs, i[head:])).astype(np.float32),
    )


class StoreExistsError(FileExistsError):
    pass


class StoreLockedError(RuntimeError):
    pass


class StoreIncompleteError(ValueError):
    """The store was caught mid-creation (its creation was killed or failed):
    no point was measured; it can be removed or replaced (``overwrite=True``)."""


class StoreDamagedError(ValueError):
    """The store cannot be written (resumed): an array or chunk is missing or
    unreadable, or the plan no longer gives the recorded points.

    ``problems`` lists what is wrong, one line each; ``readable`` says whether
    the completed points can still be read and exported."""

    def __init__(self, message: str, problems: list[str], readable: bool) -> None:
        super().__init__(message)
        self.problems = problems
        self.readable = readable


def _creation_step(what: str) -> None:
    """Called before each step of :meth:`ScanStore.create` (tests interrupt
    creation here to check that every leftover is recognized)."""


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


def _lock_held(path: Path) -> bool | None:
    """Is ``path/.lock`` held by a writer? Read-only: creates and changes
    nothing (no lock file: nobody writes; None: it cannot be told, e.g. the
    file system has no such lock)."""
    try:
        fd = os.open(path / ".lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        try:
            if not lock_descriptor(fd, blocking=False):
                return True
        except OSError:
            return None
        unlock_descriptor(fd)
        return False
    finally:
        os.close(fd)


def _names(path: Path) -> set[str] | None:
    try:
        return {c.name for c in path.iterdir()}
    except OSError:
        return None


def _is_partial(name: str) -> bool:
    """A temporary file of an atomic write that was interrupted (zarr's)."""
    return name.endswith(".partial")


def _write_marker(folder: Path) -> None:
    """The creation marker: its existence is what counts (created in one
    step); its text says who was creating the store, for a person reading it."""
    import platform

    fd = os.open(folder / CREATING_MARKER, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(
            json.dumps(
                {
                    "seccm_store": "being created; removed once complete",
                    "pid": os.getpid(),
                    "host": platform.node(),
                    "started": _now_iso(),
                }
            )
        )


def half_created(path: str | Path) -> str | None:
    """Why ``path`` is a store caught mid-creation, or None if it is not one.

    Read-only: nothing is created or changed."""
    path = Path(path)
    if not (path / CREATING_MARKER).is_file():
        return None
    if _lock_held(path):
        return "this store is being created right now by another process"
    return (
        "this store was caught mid-creation (its creation was killed or failed before it was "
        "complete): no point was measured"
    )


def _remove_stale_siblings(path: Path) -> None:
    """Remove hidden folders that a killed creation of ``path`` left before it
    was renamed into place (they hold the creation marker and nothing else)."""
    prefix = f".{path.name}.creating-"
    with contextlib.suppress(OSError):
        for sib in path.parent.iterdir():
            if not sib.name.startswith(prefix) or not sib.is_dir() or sib.is_symlink():
                continue
            names = _names(sib)
            if names is None or CREATING_MARKER not in names:
                continue
            if not names <= {CREATING_MARKER, ".lock"} or _lock_held(sib) is not False:
                continue
            with contextlib.suppress(OSError):
                shutil.rmtree(sib)


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
        unless ``overwrite=True`` (and then only a scan store, or a store caught
        mid-creation, and only if nobody is writing it).

        The store appears at ``path`` already holding the creation marker,
        which is removed once everything is written: killed at any instant,
        creation leaves either nothing, a complete store, or a store that
        :meth:`open` reports as caught mid-creation and ``overwrite=True``
        replaces.
        """
        import zarr

        path = Path(path)
        cls.check_creatable(path, overwrite=overwrite)
        # everything computed from the plan first: a plan that fails leaves nothing
        pts = plan.points()
        n = len(pts)
        ns = plan.samples_per_point()
        g = pts.grid
        attrs = {
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
            # every chunk of results/done is on disk, zeros included: a chunk
            # file that goes missing is then damage, not "not measured yet"
            "done_chunks_written": True,
        }
        fd = cls._claim(path, overwrite=overwrite)  # path holds the marker, locked by fd
        try:
            _creation_step("group")
            root = zarr.create_group(str(path), zarr_format=3, attributes={"seccm": attrs})
            pchunk = min(max(n, 1), 1 << 16)
            grp = root.create_group("points")
            for name, arr in (
                ("x_um", pts.x_um),
                ("y_um", pts.y_um),
                ("row", pts.row),
                ("col", pts.col),
            ):
                _creation_step(f"points/{name}")
                a = grp.create_array(name, shape=(n,), chunks=(pchunk,), dtype=arr.dtype)
                a[:] = arr
            res = root.create_group("results")
            for name, (dtype, fill) in _RESULT_FIELDS.items():
                _creation_step(f"results/{name}")
                a = res.create_array(
                    name, shape=(n,), chunks=(pchunk,), dtype=dtype, fill_value=fill
                )
                if name == "done":
                    _every_chunk(a)[:] = 0  # every chunk written, zeros too
            tr = root.create_group("traces")
            cp = _chunk_points(ns, n)
            for name in ("current_A", "potential_V"):
                _creation_step(f"traces/{name}")
                # noisy float32 hardly compresses: store raw, spend no CPU on it
                tr.create_array(
                    name,
                    shape=(n, ns),
                    chunks=(cp, max(ns, 1)),
                    dtype="f4",
                    fill_value=np.nan,
                    compressors=None,
                )
            _creation_step("traces/time_s")
            t = tr.create_array("time_s", shape=(ns,), chunks=(max(ns, 1),), dtype="f8")
            t[:] = np.arange(ns) / plan.potentiostat.sample_rate_Hz
            ap = root.create_group(
                "approach",
                attributes={
                    "max_samples": APPROACH_MAX_SAMPLES,
                    "full_resolution_tail": APPROACH_FULL_RES,
                },
            )
            m = APPROACH_MAX_SAMPLES
            for name in ("z_um", "current_A"):
                _creation_step(f"approach/{name}")
                ap.create_array(
                    name,
                    shape=(n, m),
                    chunks=(_chunk_points(m, n), m),
                    dtype="f4",
                    fill_value=np.nan,
                    compressors=None,
                )
            _creation_step("approach/manual")
            ap.create_array("manual", shape=(n,), chunks=(pchunk,), dtype="u1", fill_value=0)
            maps = root.create_group("maps")
            mchunk = (min(g.ny, 256), min(g.nx, 256))
            for name, unit in (("current", "A"), ("contact_height", "um")):
                _creation_step(f"maps/{name}")
                m = maps.create_group(
                    name,
                    attributes=_ngff_attrs(
                        name, g.pitch_um, g.y0_um + g.pitch_um / 2, g.x0_um + g.pitch_um / 2, unit
                    ),
                )
                m.create_array(
                    "0",
                    shape=g.shape,
                    chunks=mchunk,
                    dtype="f4",
                    fill_value=np.nan,
                    dimension_names=("y", "x"),
                )
            _creation_step("complete")
            os.remove(path / CREATING_MARKER)  # the store is complete from here on
        except BaseException:
            cls._unlock(fd)
            raise
        store = cls(path, root, writable=True)
        store._lock_fd = fd
        return store

    @classmethod
    def _claim(cls, path: Path, *, overwrite: bool) -> int:
        """Make ``path`` an empty store folder holding the creation marker and
        locked by this process; the descriptor that holds the lock.

        A new path is made as a hidden sibling holding the marker, then renamed
        into place (atomically), so the store never exists without its marker.
        An existing store (``overwrite``) is locked, marked, then emptied.
        """
        _remove_stale_siblings(path)
        if path.exists():
            fd = cls._try_lock(path)
            if fd is None:
                raise StoreLockedError(f"{path} is being written by a running scan (lock held)")
            try:
                # checked again under the lock: only a store is ever emptied
                cls._check_replaceable(path)
                _creation_step("mark existing")
                _write_marker(path)
                for child in sorted(path.iterdir()):
                    if child.name in (".lock", CREATING_MARKER):
                        continue
                    _creation_step(f"remove {child.name}")
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            except BaseException:
                cls._unlock(fd)
                raise
            return fd
        tmp = path.parent / f".{path.name}.creating-{uuid.uuid4().hex[:12]}"
        _creation_step("mkdir")
        os.mkdir(tmp)
        fd: int | None = None
        try:
            _creation_step("marker")
            _write_marker(tmp)
            if sys.platform != "win32":  # Windows renames no folder with an open file in it
                fd = cls._try_lock(tmp)
            if path.exists():
                raise StoreExistsError(f"{path} appeared while the store was being created")
            _creation_step("rename")
            os.rename(tmp, path)
        except BaseException:
            if fd is not None:
                cls._unlock(fd)
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
            raise
        if fd is None:
            fd = cls._try_lock(path)
            if fd is None:
                raise StoreLockedError(f"{path} is being written by another process (lock held)")
        return fd

    @classmethod
    def remove_incomplete(cls, path: str | Path) -> None:
        """Remove a store caught mid-creation (no point was ever measured in
        it); anything else is refused and left as it is. Killed while
        removing, it leaves a store still recognized as caught mid-creation
        (the marker goes last), or an empty folder."""
        path = Path(path)
        if half_created(path) is None:
            raise ValueError(f"{path} is not a store caught mid-creation; nothing was removed")
        fd = cls._try_lock(path)
        if fd is None:
            raise StoreLockedError(f"{path} is being created right now (lock held)")
        try:
            cls._check_replaceable(path)  # the store's own files only
            for child in sorted(path.iterdir()):
                if child.name in (".lock", CREATING_MARKER):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        finally:
            cls._unlock(fd)
        (path / ".lock").unlink(missing_ok=True)
        (path / CREATING_MARKER).unlink()
        path.rmdir()

    @staticmethod
    def check_creatable(path: str | Path, *, overwrite: bool = False) -> None:
        """Raise unless a new store may be written at ``path`` (nothing is changed).

        An existing path is refused unless ``overwrite``; even then only a
        scan store (or one caught mid-creation) is replaced, never another
        file or folder.
        """
        path = Path(path)
        if not path.exists():
            if not path.parent.exists():
                raise FileNotFoundError(f"folder {path.parent} does not exist")
            return
        if not overwrite:
            half = half_created(path)
            if half is not None:
                raise StoreExistsError(
                    f"{path} exists: {half}; remove it, or pass overwrite=True (--overwrite) "
                    "to replace it"
                )
            raise StoreExistsError(
                f"{path} already exists; choose another name, resume it, or pass "
                "overwrite=True (--overwrite) to replace it"
            )
        ScanStore._check_replaceable(path)

    @staticmethod
    def _check_replaceable(path: Path) -> None:
        """Raise unless ``path`` may be replaced by a new store: a scan store,
        a store caught mid-creation, or a folder holding no data at all (empty,
        or an empty zarr group: what an older version left when killed at the
        very start of creating a store)."""
        names = _names(path) if path.is_dir() and not path.is_symlink() else None
        if names is None:
            raise StoreExistsError(
                f"{path} exists and is not a SECCM scan store; it is never replaced"
            )
        if CREATING_MARKER in names:
            foreign = sorted(n for n in names - _LAYOUT if not _is_partial(n))
            if foreign:
                raise StoreExistsError(
                    f"{path} holds a creation marker but also {', '.join(foreign)}: "
                    "not a SECCM scan store; it is never replaced"
                )
            return
        if not {n for n in names if not _is_partial(n)} - {".lock", "zarr.json"}:
            with contextlib.suppress(OSError, ValueError):
                zj = path / "zarr.json"
                if not zj.exists():
                    return  # an empty folder
                meta = json.loads(zj.read_text())
                if meta.get("node_type") == "group" and not meta.get("attributes"):
                    return  # an empty zarr group
        is_store = False
        with contextlib.suppress(OSError, ValueError):
            zj = path / "zarr.json"
            is_store = zj.is_file() and "seccm" in json.loads(zj.read_text()).get("attributes", {})
        if not is_store:
            raise StoreExistsError(
                f"{path} exists and is not a SECCM scan store; it is never replaced"
            )

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", *, validate: bool = True) -> ScanStore:
        """Open an existing store; ``mode="r+"`` to continue writing it.

        Reading (``mode="r"``) writes nothing at all: a store on read-only
        media opens. Writing first takes the store's lock, then (unless
        ``validate=False``) checks the whole store (:meth:`problems`) and
        raises :class:`StoreDamagedError` naming what is wrong. A store caught
        mid-creation raises :class:`StoreIncompleteError` in either mode.
        """
        import zarr

        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', not {mode!r}")
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        half = half_created(path)
        if half is not None:
            raise StoreIncompleteError(
                f"{path}: {half}; remove it or recreate it with --overwrite (overwrite=True)"
            )
        if not (path / "zarr.json").exists():
            raise FileNotFoundError(f"{path} is not a SECCM scan store (no zarr.json)")
        root = zarr.open_group(str(path), mode=mode, zarr_format=3)
        if "seccm" not in root.attrs:
            raise ValueError(f"{path} is a zarr store but not a SECCM scan (no 'seccm' attributes)")
        store = cls(path, root, writable=(mode == "r+"))
        if mode == "r+":
            store.acquire_lock()
            if validate:
                try:
                    store.validate()
                except BaseException:
                    store.release_lock()
                    raise
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
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise OSError(
                e.errno,
                f"cannot lock {lock_path} ({e.strerror or e}): the store cannot be written "
                "here (read-only media or folder?); it can still be read",
            ) from e
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
        """Is another process writing this store? A reader only looks (no lock
        file is created, nothing is written); where that cannot be told (no
        operating-system lock there), nobody can be writing either."""
        if self._lock_fd is not None:
            return False
        if not self.writable:
            return bool(_lock_held(self.path))
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
            try:
                a = self.root[name]
                self._cache[name] = _every_chunk(a) if name in _EVERY_CHUNK else a
            except KeyError:
                problem = f"array {name} is missing"
                raise StoreDamagedError(
                    f"{self.path} is damaged: {problem} (ScanStore.problems() lists "
                    "everything that is wrong; the other arrays can still be read)",
                    [problem],
                    readable=False,
                ) from None
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

    def has_approach(self) -> bool:
        """Does this store hold approach curves (stores written before them do not)?"""
        if "_has_approach" not in self._cache:
            try:
                self._cache["_has_approach"] = "approach" in self.root and (
                    "z_um" in self.root["approach"] and "current_A" in self.root["approach"]
                )
            except Exception:
                self._cache["_has_approach"] = False
        return self._cache["_has_approach"]

    def _approach_names(self) -> list[str]:
        """The approach arrays this store has: none in a store written before
        approach curves; z_um and current_A always together (a group holding
        one of them lacks the other: both are listed, so the missing one is
        reported)."""
        try:
            if "approach" not in self.root:
                return []
            grp = self.root["approach"]
            names = [k for k in ("z_um", "current_A", "manual") if k in grp]
        except Exception:
            return ["approach/z_um", "approach/current_A"]
        if {"z_um", "current_A"} & set(names):
            names = sorted({*names, "z_um", "current_A"})
        return [f"approach/{k}" for k in names]

    def approach_curve(self, i: int) -> dict[str, Any] | None:
        """The approach curve of point ``i``: ``z_um``, ``current_A`` (the
        recorded samples, padding removed) and ``manual`` (the contact was
        accepted by hand); None if the store holds no approach curves."""
        if not self.has_approach():
            return None
        z = np.asarray(self.array("approach/z_um")[i], dtype=float)
        cur = np.asarray(self.array("approach/current_A")[i], dtype=float)
        keep = np.isfinite(z) & np.isfinite(cur)
        manual = False
        if "manual" in self.root["approach"]:
            manual = bool(self.array("approach/manual")[i])
        return {"z_um": z[keep], "current_A": cur[keep], "manual": manual}

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
        starts = self.array("results/t_start_s")[:][self.done_mask()]
        starts = starts[np.isfinite(starts)]  # NaN: not known (an imported map)
        if starts.size:
            t = max(t, float(starts.max()))
        return t

    # ------------------------------------------------------------ validation
    def problems(self) -> list[str]:
        """Everything that stops this store from being written (resumed), one
        line each; empty if it is whole. Reads, never writes. See :meth:`validate`."""
        return self._check()[0]

    def validate(self) -> None:
        """Raise :class:`StoreDamagedError` unless the store is whole.

        Checked: the metadata (format version, status, counts, grid); that its
        plan is valid and gives exactly the recorded points (count, positions,
        map pixels, grid, samples per point, sample rate, readout window);
        every array present with its shape and dtype; every chunk of the
        points, results and maps readable; every point flagged done with its
        status and time; and the trace chunk of every completed point present
        and whole (traces are stored uncompressed: checked by size).
        """
        problems, readable = self._check()
        if not problems:
            return
        lines = "\n  - ".join(problems)
        if readable:
            k = int(self.done_mask().sum())
            tail = (
                f"The results and traces of the {k} completed point{'s' if k != 1 else ''} "
                "are intact and can still be read and exported."
            )
        else:
            tail = (
                "Completed points are damaged too (see above); whatever is intact can still "
                "be read with any zarr v3 reader."
            )
        raise StoreDamagedError(
            f"{self.path} cannot be resumed (written): it is damaged or does not match its "
            f"plan:\n  - {lines}\n{tail}",
            problems,
            readable,
        )

    def _check(self) -> tuple[list[str], bool]:
        """(problems, whether the completed points can all still be read)."""
        import zarr

        from .plan import MapGrid

        probs: list[str] = []
        readable = True
        meta = self.root.attrs.get("seccm")
        if not isinstance(meta, dict):
            return ["the 'seccm' attributes are not a JSON object"], False

        # ---- metadata
        fv = meta.get("format_version")
        if fv != FORMAT_VERSION:
            probs.append(f"format_version is {fv!r}; this software writes version {FORMAT_VERSION}")
        if meta.get("status") not in SCAN_STATUSES:
            probs.append(f"status {meta.get('status')!r} is not one of {', '.join(SCAN_STATUSES)}")

        def count(key: str) -> int | None:
            v = meta.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                return v
            probs.append(f"metadata {key} is {v!r}, not a count")
            return None

        n, ns = count("n_points"), count("n_samples")
        grid: MapGrid | None = None
        try:
            grid = MapGrid(**meta["grid"])
            if not (
                isinstance(grid.nx, int)
                and isinstance(grid.ny, int)
                and grid.nx > 0
                and grid.ny > 0
                and float(grid.pitch_um) > 0
                and math.isfinite(float(grid.x0_um) + float(grid.y0_um))
            ):
                raise ValueError(grid)
        except Exception:
            probs.append(f"metadata grid {meta.get('grid')!r} is not a map grid")
            grid = None
        fs = meta.get("sample_rate_Hz")
        if not isinstance(fs, (int, float)) or isinstance(fs, bool) or not fs > 0:
            probs.append(f"metadata sample_rate_Hz is {fs!r}, not a rate")
            fs = None
        rw = meta.get("readout_window_s")
        if not (isinstance(rw, list) and len(rw) == 2):
            probs.append(f"metadata readout_window_s is {rw!r}, not [start, end]")
            rw = None
        for key, typ in (("sessions", list), ("rig", dict)):
            if key in meta and not isinstance(meta[key], typ):
                probs.append(f"metadata {key} is not a JSON {typ.__name__}")

        # ---- the plan: it must give exactly what the store records
        pts = None
        try:
            plan = self.plan()
            pts = plan.points()
            p_ns = plan.samples_per_point()
            p_rw = plan.readout_window_s()
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            probs.append(f"the plan in the metadata is not a valid plan ({first})")
        else:
            bad = _first_non_finite(meta.get("plan"))
            if bad:
                at = f" at {bad[0]}" if bad[0] else ""
                probs.append(
                    f"the plan in the metadata holds {bad[1]!r}{at} (was it edited?): a scan "
                    "is never run with a number that is not finite (a NaN Z floor would "
                    "switch the floor off)"
                )
            if n is not None and len(pts) != n:
                probs.append(
                    f"the plan gives {len(pts)} points but the store records {n} (was the plan "
                    "edited?)"
                )
            if ns is not None and p_ns != ns:
                probs.append(
                    f"the plan gives {p_ns} samples per point but the store records {ns} "
                    "(was the plan edited?)"
                )
            g = pts.grid
            if grid is not None and not (
                (g.nx, g.ny) == (grid.nx, grid.ny)
                and np.allclose(
                    [g.x0_um, g.y0_um, g.pitch_um],
                    [grid.x0_um, grid.y0_um, grid.pitch_um],
                    rtol=1e-12,
                    atol=1e-9,
                )
            ):
                probs.append(
                    f"the plan gives the map grid {g.nx} x {g.ny} px at {g.pitch_um:g} um from "
                    f"({g.x0_um:g}, {g.y0_um:g}) um but the store records {grid.nx} x {grid.ny} "
                    f"px at {grid.pitch_um:g} um from ({grid.x0_um:g}, {grid.y0_um:g}) um"
                )
            if fs is not None and not math.isclose(plan.potentiostat.sample_rate_Hz, fs):
                probs.append(
                    f"the plan samples at {plan.potentiostat.sample_rate_Hz:g} Hz but the store "
                    f"records {fs:g} Hz"
                )
            if rw is not None and not np.allclose(p_rw, rw, rtol=1e-12, atol=1e-12):
                probs.append(
                    f"the plan's readout window is {list(p_rw)} s but the store records {rw} s"
                )

        # ---- arrays: present, shape, dtype
        expected: dict[str, tuple[tuple[int, ...] | None, str]] = {
            "points/x_um": ((n,) if n is not None else None, "f8"),
            "points/y_um": ((n,) if n is not None else None, "f8"),
            "points/row": ((n,) if n is not None else None, "int"),
            "points/col": ((n,) if n is not None else None, "int"),
        }
        for name, (dtype, _) in _RESULT_FIELDS.items():
            expected[f"results/{name}"] = ((n,) if n is not None else None, dtype)
        tshape = (n, ns) if n is not None and ns is not None else None
        expected["traces/current_A"] = (tshape, "f4")
        expected["traces/potential_V"] = (tshape, "f4")
        expected["traces/time_s"] = ((ns,) if ns is not None else None, "f8")
        # approach curves: checked only in stores that have them (older ones do not)
        ap_names = self._approach_names()
        if ap_names:
            width = None
            with contextlib.suppress(Exception):
                width = int(self.root["approach/z_um"].shape[1])
            for name in ap_names:
                if name == "approach/manual":
                    expected[name] = ((n,) if n is not None else None, "u1")
                else:
                    ashape = (n, width) if n is not None and width is not None else None
                    expected[name] = (ashape, "f4")
        for name in ("current", "contact_height"):
            expected[f"maps/{name}/0"] = (grid.shape if grid is not None else None, "f4")
        arrays: dict[str, zarr.Array] = {}
        for name, (shape, dtype) in expected.items():
            try:
                a = self.root[name]
            except KeyError:
                probs.append(f"array {name} is missing")
                continue
            except Exception as e:
                probs.append(f"array {name} cannot be opened ({type(e).__name__}: {e})")
                continue
            if not isinstance(a, zarr.Array):
                probs.append(f"{name} is not an array")
                continue
            if shape is not None and tuple(a.shape) != tuple(shape):
                probs.append(f"array {name} has shape {tuple(a.shape)}, expected {tuple(shape)}")
                continue
            ok = (
                np.issubdtype(a.dtype, np.integer)
                if dtype == "int"
                else np.dtype(a.dtype) == np.dtype(dtype)
            )
            if not ok:
                probs.append(f"array {name} has dtype {a.dtype}, expected {np.dtype(dtype)}")
                continue
            arrays[name] = a
        if any(k.startswith("results/") and k not in arrays for k in expected):
            readable = False

        def read(name: str) -> np.ndarray | None:
            a = arrays.get(name)
            if a is None:
                return None
            data, bad = _read_by_chunks(a)
            for key, err in bad:
                probs.append(f"chunk file {name}/{key} cannot be read ({err})")
            return None if bad else data

        def chunk_note(name: str, i: int) -> str:
            a = arrays[name]
            key = a.metadata.encode_chunk_key((i // a.chunks[0],) + (0,) * (a.ndim - 1))
            return (
                ""
                if (self.path / name / key).is_file()
                else f" (chunk file {name}/{key} is missing)"
            )

        # ---- points: the plan's, exactly
        px, py = read("points/x_um"), read("points/y_um")
        prow, pcol = read("points/row"), read("points/col")
        if pts is not None and n is not None and len(pts) == n:
            if px is not None and py is not None:
                off = (np.abs(px - pts.x_um) > 1e-6) | (np.abs(py - pts.y_um) > 1e-6)
                if off.any():
                    i = int(np.flatnonzero(off)[0])
                    probs.append(
                        f"the plan no longer gives the recorded points: {int(off.sum())} of {n} "
                        f"differ, e.g. point {i} is planned at ({pts.x_um[i]:g}, {pts.y_um[i]:g}) "
                        f"um but recorded at ({px[i]:g}, {py[i]:g}) um"
                        + chunk_note("points/x_um", i)
                        + " (was the plan edited?)"
                    )
            if prow is not None and pcol is not None:
                off = (prow != pts.row) | (pcol != pts.col)
                if off.any():
                    i = int(np.flatnonzero(off)[0])
                    probs.append(
                        f"the plan no longer gives the recorded map pixels: {int(off.sum())} of "
                        f"{n} differ, e.g. point {i} is planned at (row {pts.row[i]}, col "
                        f"{pts.col[i]}) but recorded at (row {prow[i]}, col {pcol[i]})"
                        + chunk_note("points/row", i)
                    )
        if (
            prow is not None
            and pcol is not None
            and grid is not None
            and prow.size
            and (prow.min() < 0 or pcol.min() < 0 or prow.max() >= grid.ny or pcol.max() >= grid.nx)
        ):
            probs.append(f"points/row or points/col lie outside the {grid.nx} x {grid.ny} map")
            prow = pcol = None

        # ---- results: every chunk readable; a done point has its status and time
        res = {k: read(f"results/{k}") for k in _RESULT_FIELDS}
        if any(v is None for v in res.values()):
            readable = False
        done = res["done"]
        ok_done = None
        if done is not None and meta.get("done_chunks_written") and "results/done" in arrays:
            a = arrays["results/done"]
            lost = [
                a.metadata.encode_chunk_key((c,))
                for c in range(a.cdata_shape[0])
                if not (self.path / "results/done" / a.metadata.encode_chunk_key((c,))).is_file()
            ]
            if lost:
                probs.append(
                    f"chunk file{'s' if len(lost) > 1 else ''} results/done/"
                    f"{', '.join(lost)} {'are' if len(lost) > 1 else 'is'} missing: which of "
                    f"{'their' if len(lost) > 1 else 'its'} points were measured is lost "
                    "(they would read as not measured, and a resume would land on them again)"
                )
                readable = False
        if done is not None:
            if not np.isin(done, (0, 1)).all():
                probs.append("results/done holds values other than 0 and 1")
                readable = False
            done = done.astype(bool)
            st = res["status"]
            if st is not None:
                bad = ~np.isin(st, list(STATUS_NAMES))
                if bad.any():
                    probs.append(
                        f"results/status holds unknown codes {sorted(set(st[bad].tolist()))[:5]}"
                    )
                missing = done & (st == PENDING)
                if missing.any():
                    i = int(np.flatnonzero(missing)[0])
                    probs.append(
                        f"{int(missing.sum())} points are flagged done but have no landing "
                        f"status, e.g. point {i}" + chunk_note("results/status", i)
                    )
                    readable = False
                ok_done = done & (st == OK)
            wt = res["wall_time_s"]
            if wt is not None:
                missing = done & ~np.isfinite(wt)
                if missing.any():
                    i = int(np.flatnonzero(missing)[0])
                    probs.append(
                        f"{int(missing.sum())} points are flagged done but have no time of "
                        f"measurement, e.g. point {i}" + chunk_note("results/wall_time_s", i)
                    )
                    readable = False

        # ---- traces: time axis; every stored chunk whole; completed points' present
        t = read("traces/time_s")
        if t is not None and fs is not None and not np.allclose(t, np.arange(t.size) / fs):
            probs.append(
                "traces/time_s is not the program's time axis" + chunk_note("traces/time_s", 0)
            )
        # a completed point's trace chunk must be there; but a store written
        # through the API may hold points without traces (none stored at all)
        present: dict[str, set[int]] = {}
        for name in ("traces/current_A", "traces/potential_V"):
            a = arrays.get(name)
            if a is None:
                readable = False
                continue
            bad_chunks, present[name] = _check_row_chunks(self.path / name, a)
            probs.extend(bad_chunks)
            if bad_chunks:
                readable = False
        for name in ap_names:
            a = arrays.get(name)
            if a is not None and a.ndim == 2:
                bad_chunks, _ = _check_row_chunks(self.path / name, a)
                probs.extend(bad_chunks)
            elif a is not None:
                read(name)
        if ok_done is not None and any(present.values()):
            for name, have in present.items():
                a = arrays[name]
                need = {int(i) // a.chunks[0] for i in np.flatnonzero(ok_done)}
                missing = sorted(need - have)
                if missing:
                    key = a.metadata.encode_chunk_key((missing[0],) + (0,) * (a.ndim - 1))
                    probs.append(
                        f"chunk file {name}/{key} of completed points is missing"
                        + (f" ({len(missing)} such chunks)" if len(missing) > 1 else "")
                    )
                    readable = False

        # ---- maps: every chunk readable; the chunk of a completed point's pixel present
        for name, field in (
            ("maps/current/0", "value_A"),
            ("maps/contact_height/0", "contact_z_um"),
        ):
            if read(name) is None or ok_done is None or prow is None or pcol is None:
                continue
            vals = res.get(field)
            if vals is None or grid is None:
                continue
            if np.unique(prow.astype(np.int64) * grid.nx + pcol).size != prow.size:
                continue  # points share pixels: a later point may have cleared one
            mapped = ok_done & np.isfinite(vals)
            a = arrays[name]
            cy, cx = a.chunks
            for ry, rx in sorted(
                {
                    (int(r) // cy, int(c) // cx)
                    for r, c in zip(prow[mapped], pcol[mapped], strict=True)
                }
            ):
                key = a.metadata.encode_chunk_key((ry, rx))
                if not (self.path / name / key).is_file():
                    probs.append(f"chunk file {name}/{key} of completed points is missing")
        return probs, readable

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
        # metadata only: no need to check the arrays (a resume still does)
        store = cls.open(path, mode="r+", validate=False)
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
        if self.has_approach():
            self._write_approach(records, idx)
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

    def _write_approach(self, records: Sequence[PointRecord], idx: np.ndarray) -> None:
        """The approach curves (decimated to the arrays' width) and manual flags."""
        with_ap = [r for r in records if r.approach_z_um is not None]
        if with_ap:
            m = int(self.array("approach/z_um").shape[1])
            zz = np.full((len(with_ap), m), np.nan, dtype=np.float32)
            cc = np.full((len(with_ap), m), np.nan, dtype=np.float32)
            for k, r in enumerate(with_ap):
                z, c = decimate_approach(r.approach_z_um, r.approach_current_A, m, m // 2)
                zz[k, : z.size] = z
                cc[k, : c.size] = c
            aidx = np.fromiter((r.i for r in with_ap), dtype=np.int64)
            self._write_rows("approach/z_um", aidx, zz)
            self._write_rows("approach/current_A", aidx, cc)
        if "manual" in self.root["approach"]:
            flags = np.array([1 if r.manual_contact else 0 for r in records], dtype="u1")
            self._write_1d("approach/manual", idx, flags)

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


#: arrays whose every written chunk must reach the disk, even one equal to the
#: fill value (zarr leaves such chunks out): the done flags (a reset point keeps
#: its chunk file) and the traces (a completed point's trace chunk is checked
#: for; a trace recorded without a potential is all NaN, the fill value)
_EVERY_CHUNK = frozenset({"results/done", "traces/current_A", "traces/potential_V"})


def _every_chunk(a: zarr.Array) -> zarr.Array:
    """The array writing every chunk, fill-value ones too (see _EVERY_CHUNK)."""
    return a.with_config({"write_empty_chunks": True})


def _read_by_chunks(a: zarr.Array) -> tuple[np.ndarray | None, list[tuple[str, str]]]:
    """Read a whole array; if that fails, chunk by chunk, naming each chunk
    that cannot be read: (data or None, [(chunk key, error)])."""
    try:
        return a[...], []
    except Exception:
        pass
    bad = []
    for coords in np.ndindex(*a.cdata_shape):
        sel = tuple(
            slice(c * ch, min((c + 1) * ch, size))
            for c, ch, size in zip(coords, a.chunks, a.shape, strict=True)
        )
        try:
            a[sel]
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            bad.append((a.metadata.encode_chunk_key(coords), f"{type(e).__name__}: {msg}"))
    return None, bad or [("?", "the array cannot be read")]


def _check_row_chunks(folder: Path, a: zarr.Array) -> tuple[list[str], set[int]]:
    """Check the stored chunks of a (points, samples) trace array: (problems,
    the chunk rows stored). An uncompressed chunk is checked by its size (no
    reading: a trace array can be GiBs), any other by decoding it."""
    name = "/".join(folder.parts[-2:])
    raw = (
        not a.compressors
        and not a.filters
        and type(a.serializer).__name__ == "BytesCodec"
        and getattr(a, "shards", None) is None
    )
    size = int(np.prod(a.chunks)) * np.dtype(a.dtype).itemsize
    out: list[str] = []
    present: set[int] = set()
    for r in range(a.cdata_shape[0]):
        key = a.metadata.encode_chunk_key((r,) + (0,) * (a.ndim - 1))
        try:
            st = (folder / key).stat()
        except FileNotFoundError:
            continue
        except OSError as e:
            out.append(f"chunk file {name}/{key} cannot be read ({e})")
            continue
        present.add(r)
        if raw:
            if st.st_size != size:
                out.append(
                    f"chunk file {name}/{key} is truncated or damaged ({st.st_size} bytes, "
                    f"expected {size})"
                )
        else:
            start = r * a.chunks[0]
            try:
                a[start : min(start + a.chunks[0], a.shape[0])]
            except Exception as e:
                out.append(f"chunk file {name}/{key} cannot be read ({type(e).__name__}: {e})")
    return out, present


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


def _first_non_finite(v: Any, where: str = "") -> tuple[str, float] | None:
    """(path, value) of the first NaN or infinity among the numbers of a JSON
    value (dicts and lists walked), or None."""
    if isinstance(v, float) and not math.isfinite(v):
        return where, v
    items = v.items() if isinstance(v, dict) else enumerate(v) if isinstance(v, list) else ()
    for k, item in items:
        bad = _first_non_finite(item, f"{where}.{k}" if where else str(k))
        if bad:
            return bad
    return None
