"""HEKA PatchMaster / PotMaster MATLAB exports: one sweep per landing.

HEKA's "Export > MATLAB" writes one variable per trace, named
``Trace_<group>_<series>_<sweep>_<trace>`` (numbers from 1), each an
N x 2 array of [time (s), value] in SI units (A for a current, V for a
potential). A landing is a sweep (group, series, sweep, in that order); its
current is trace 1 and its potential trace 2 (``--current-channel N``,
``--potential-channel N`` choose others). A MATLAB v7.3 file (HDF5) is read
too (there the arrays are stored transposed, 2 x N).

The export holds no positions and no sweep start times. Positions come,
in this order, from ``--positions FILE``, a CSV or JSON given with the
.mat, ``<stem>.positions.csv`` / ``<stem>.positions.json`` next to it, or
``--grid NX NY --pitch UM`` (``--grid-order raster|serpentine``,
``--origin X Y``); without any, the import is refused saying so. A CSV of
positions has ``x (um)``, ``y (um)`` columns, one row per sweep in order; a
JSON holds ``{"x_um": [...], "y_um": [...]}`` or ``{"points_um": [[x, y],
...]}``. Sweeps are laid end to end in time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    ImportedScan,
    ImportInputError,
    ImportOptions,
    Landing,
    json_safe,
    sample_rate,
)

TRACE = re.compile(r"^Trace_(\d+)_(\d+)_(\d+)_(\d+)$")


def _variables(path: Path) -> dict[str, Any]:
    """The file's variables: a v5/v7 MAT file through scipy, a v7.3 (HDF5)
    one through h5py (its arrays transposed back)."""
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
    except NotImplementedError:  # v7.3: HDF5
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k]).T for k in f if isinstance(f[k], h5py.Dataset)}
        except OSError as e:
            raise ImportInputError(
                f"{path}: a MATLAB v7.3 file that cannot be read ({e})"
            ) from None
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ImportInputError(
            f"{path}: not a readable MATLAB file ({type(e).__name__}: {msg})"
        ) from None


def has_traces(path: Path) -> bool:
    try:
        return any(TRACE.match(k) for k in _variables(path))
    except ImportInputError:
        return False


def _positions_from(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix.lower() == ".json":
        from .csv_table import _load_json

        data = _load_json(path)
        if "points_um" in data:
            p = np.asarray(data["points_um"], dtype=float).reshape(-1, 2)
            x, y = p[:, 0], p[:, 1]
        elif "x_um" in data and "y_um" in data:
            x = np.asarray(data["x_um"], dtype=float)
            y = np.asarray(data["y_um"], dtype=float)
        else:
            raise ImportInputError(
                f"{path}: a positions JSON holds 'x_um' and 'y_um' lists or 'points_um'; "
                f"found keys {', '.join(data) or 'none'}"
            )
    else:
        from .csv_table import _col, _require, read_table, resolve_columns

        names, rows, _c = read_table(path)
        cols = resolve_columns(names, {}, path)
        _require(cols, ("x", "y"), path, "sweep (positions)", names)
        x, y = _col(rows, cols, "x"), _col(rows, cols, "y")
    if x.size != n or y.size != n:
        raise ImportInputError(
            f"{path}: {x.size} positions for {n} sweeps: one position per sweep, in order"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ImportInputError(f"{path}: a position is NaN or infinite")
    return x, y


def _positions(
    mat: Path, companions: list[Path], opts: ImportOptions, n: int
) -> tuple[np.ndarray, np.ndarray, str, list[Path]]:
    """(x, y, where they came from, the files read)."""
    cands = []
    if opts.positions:
        cands = [Path(opts.positions)]
        if not cands[0].is_file():
            raise FileNotFoundError(f"--positions {cands[0]} does not exist")
    elif companions:
        cands = companions[:1]
    else:
        for suffix in (".positions.csv", ".positions.json"):
            side = mat.with_name(mat.stem + suffix)
            if side.is_file():
                cands = [side]
                break
    if cands:
        x, y = _positions_from(cands[0], n)
        return x, y, f"from {cands[0].name}", cands
    if opts.grid is not None:
        nx, ny = opts.grid
        if opts.pitch_um is None:
            raise ImportInputError("--grid needs --pitch UM (the distance between the points)")
        if nx * ny != n:
            raise ImportInputError(f"{mat}: --grid {nx} {ny} gives {nx * ny} points for {n} sweeps")
        rows, cols = np.divmod(np.arange(n), nx)
        if opts.grid_order == "serpentine":
            cols = np.where(rows % 2 == 1, nx - 1 - cols, cols)
        x = opts.origin_um[0] + cols * opts.pitch_um
        y = opts.origin_um[1] + rows * opts.pitch_um
        return x, y, f"--grid {nx} x {ny} ({opts.grid_order}) at {opts.pitch_um:g} um", []
    raise ImportInputError(
        f"{mat}: {n} sweeps but no positions (a HEKA export holds none): give --positions "
        f"FILE (CSV with x (um), y (um), one row per sweep), put {mat.stem}.positions.csv "
        "next to it, or give --grid NX NY --pitch UM"
    )


def read(paths: list[Path], opts: ImportOptions) -> ImportedScan:
    mats = [p for p in paths if p.suffix.lower() == ".mat"]
    companions = [p for p in paths if p.suffix.lower() != ".mat"]
    if len(mats) != 1:
        raise ImportInputError(f"a HEKA import reads one .mat file, got {len(mats)}")
    mat = mats[0]
    variables = _variables(mat)
    traces: dict[tuple[int, ...], np.ndarray] = {}
    for name, v in variables.items():
        m = TRACE.match(name)
        if not m:
            continue
        a = np.asarray(v)
        if a.ndim != 2 or a.shape[1] != 2 or not np.issubdtype(a.dtype, np.number):
            raise ImportInputError(
                f"{mat}: variable {name} has shape {a.shape} ({a.dtype}); HEKA exports a "
                "trace as N x 2 numbers [time (s), value]"
            )
        traces[tuple(int(g) for g in m.groups())] = a.astype(float)
    if not traces:
        found = ", ".join(sorted(variables)[:10]) or "none"
        raise ImportInputError(
            f"{mat}: no variable named Trace_<group>_<series>_<sweep>_<trace> (HEKA's MATLAB "
            f"export); variables found: {found}"
        )
    try:
        i_tr = int(opts.current_channel or 1)
        e_tr = int(opts.potential_channel or 2)
    except ValueError:
        raise ImportInputError(
            "--current-channel and --potential-channel of a HEKA export are trace numbers "
            f"(1, 2, ...), got {opts.current_channel!r} / {opts.potential_channel!r}"
        ) from None
    sweeps = sorted({k[:3] for k in traces if k[3] == i_tr})
    if not sweeps:
        have = sorted({k[3] for k in traces})
        raise ImportInputError(
            f"{mat}: no trace {i_tr} (the current); the export holds traces {have}"
        )
    has_e = any((*s, e_tr) in traces for s in sweeps)
    if opts.potential_channel is not None and not has_e:
        raise ImportInputError(f"{mat}: no trace {e_tr} (the potential given)")
    x, y, where, pos_files = _positions(mat, companions, opts, len(sweeps))
    steps = []
    landings = []
    t0 = 0.0
    for k, s in enumerate(sweeps):
        a = traces[(*s, i_tr)]
        name = "Trace_" + "_".join(str(v) for v in (*s, i_tr))
        if not np.isfinite(a[:, 0]).all():
            raise ImportInputError(f"{mat}: {name} has a NaN or infinite time")
        steps.append(np.diff(a[:, 0]))
        e = None
        if has_e:
            b = traces.get((*s, e_tr))
            if b is None or b.shape[0] != a.shape[0]:
                raise ImportInputError(
                    f"{mat}: sweep {s} has {a.shape[0]} current samples but "
                    f"{0 if b is None else b.shape[0]} potential samples (trace {e_tr})"
                )
            e = b[:, 1].astype(np.float32)
        landings.append(
            Landing(
                x_um=float(x[k]),
                y_um=float(y[k]),
                current_A=a[:, 1].astype(np.float32),
                potential_V=e,
                t_start_s=t0,
            )
        )
        t0 += a.shape[0] * (float(np.median(np.diff(a[:, 0]))) if a.shape[0] > 1 else 0.0)
    fs = sample_rate(np.concatenate(steps), f"{mat}: the time column of the traces")
    scan = ImportedScan(
        fmt="heka-mat",
        sources=[mat, *pos_files],
        landings=landings,
        sample_rate_Hz=fs,
        source_metadata=json_safe(
            {
                "variables": sorted(variables),
                "sweeps": [list(s) for s in sweeps],
                "traces": sorted({k[3] for k in traces}),
            }
        ),
        notes=["the export holds no sweep start times: the sweeps are laid end to end"],
    )
    scan.inferred.update(
        map_channel=f"trace {i_tr}",
        potential_channel=f"trace {e_tr}" if has_e else None,
        positions=where,
        landing_rule="one sweep (group, series, sweep) per landing",
    )
    return scan
