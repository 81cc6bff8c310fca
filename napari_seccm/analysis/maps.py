"""Maps from a scan store: current, conductance (I-V fits), quality, height.

Everything that touches the traces (``traces/current_A`` and
``traces/potential_V``, ``n_points x n_samples``) goes through dask arrays
read from the zarr store chunk by chunk, so a million-point voltammetric map
is processed out of core with flat memory, and the same call runs on a
``dask.distributed`` cluster when a ``Client`` is active (or pass
``scheduler=``). Per-point results are small (a few numbers a point) and come
back as numpy arrays; maps are ``(ny, nx)`` arrays with NaN where a pixel was
not measured or failed a quality check, never 0.

Every function takes a :class:`~napari_seccm.acquisition.store.ScanStore` or
a path to one, and returns plain dicts of arrays whose keys carry their units.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ..acquisition.store import (
    FAILED,
    FALSE_TRIGGER,
    FAULT,
    NO_CONTACT,
    OK,
    PENDING,
    SATURATED,
    ScanStore,
)
from .geometry import plane_fit
from .iv import fit_iv, iv_sample_mask, program_samples

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import dask.array as da

# ------------------------------------------------------------------- quality
#: quality codes of a pixel (the ``quality`` map); 2-5 and 8 are the store's
#: landing status codes
QUALITY_OK = 0
QUALITY_NOT_MEASURED = 1
QUALITY_NO_CONTACT = NO_CONTACT  # 2
QUALITY_SATURATED = SATURATED  # 3
QUALITY_FALSE_TRIGGER = FALSE_TRIGGER  # 4
QUALITY_FAILED = FAILED  # 5
QUALITY_POOR_FIT = 6
QUALITY_NON_POSITIVE = 7
QUALITY_FAULT = FAULT  # 8
QUALITY_NAMES = {
    QUALITY_OK: "ok",
    QUALITY_NOT_MEASURED: "not_measured",
    QUALITY_NO_CONTACT: "no_contact",
    QUALITY_SATURATED: "saturated",
    QUALITY_FALSE_TRIGGER: "false_trigger",
    QUALITY_FAILED: "failed",
    QUALITY_POOR_FIT: "poor_fit",
    QUALITY_NON_POSITIVE: "non_positive_conductance",
    QUALITY_FAULT: "fault",
}

#: statuses at which the droplet touched the surface (a contact height exists)
_LANDED = (OK, SATURATED, FAILED)

#: target size of one dask chunk of traces, bytes
CHUNK_BYTES = 32 << 20


@contextlib.contextmanager
def open_store(store: ScanStore | str | Path) -> Iterator[ScanStore]:
    """Use a ScanStore as is, or open (and afterwards close) a path read-only."""
    if isinstance(store, ScanStore):
        yield store
        return
    s = ScanStore.open(store)
    try:
        yield s
    finally:
        s.close()


def quality_counts(quality: np.ndarray) -> dict[str, int]:
    """How many pixels have each quality code (by name)."""
    q = np.asarray(quality)
    return {name: int((q == code).sum()) for code, name in QUALITY_NAMES.items()}


def point_quality(store: ScanStore | str | Path) -> np.ndarray:
    """Quality code of each point from its landing status (uint8, ``n_points``)."""
    with open_store(store) as s:
        done = s.done_mask()
        status = s.array("results/status")[:]
    q = status.astype(np.uint8)  # 2-5, 8: the landing status codes as they are
    q[status == OK] = QUALITY_OK
    q[(status == PENDING) | ~done] = QUALITY_NOT_MEASURED
    return q


def points_to_map(
    store: ScanStore | str | Path,
    values: np.ndarray,
    *,
    valid: np.ndarray | None = None,
    fill: float = np.nan,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Scatter per-point ``values`` onto the map grid (``valid`` points only;
    the last visit of a pixel wins, as in the store's maps)."""
    with open_store(store) as s:
        g = s.grid
        pts = s.points()
    out = np.full(g.shape, fill, dtype=dtype)
    v = np.asarray(values)
    sel = np.ones(v.shape[0], bool) if valid is None else np.asarray(valid, bool)
    out[pts["row"][sel], pts["col"][sel]] = v[sel]
    return out


def measured_positions(store: ScanStore | str | Path) -> dict[str, np.ndarray]:
    """Per point: the read-back position where measured, else the planned one, um."""
    with open_store(store) as s:
        pts = s.points()
        res = s.results()
    x = np.where(np.isfinite(res["x_um"]), res["x_um"], pts["x_um"])
    y = np.where(np.isfinite(res["y_um"]), res["y_um"], pts["y_um"])
    return {"x_um": x, "y_um": y}


# -------------------------------------------------------------------- traces
def trace_array(
    store: ScanStore, name: str = "current_A", chunk_bytes: int | None = None
) -> da.Array:
    """A trace array of the store (``current_A`` or ``potential_V``) as a dask
    array over the zarr array: chunks of about ``chunk_bytes``, made of whole
    zarr chunks of points (when that is not smaller), all samples of a point
    in one chunk."""
    import dask.array as da

    arr = store.array(f"traces/{name}")
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n, ns = arr.shape
    zrows = int(arr.chunks[0])
    want = max(chunk_bytes // max(4 * ns, 1), 1)
    # whole zarr chunks (each read once), unless asked for less than one
    per = want // zrows * zrows if want >= zrows else want
    per = min(per, max(n, 1))
    return da.from_zarr(arr, chunks=(per, max(ns, 1)))


def _columns(mask: np.ndarray) -> slice | np.ndarray:
    """The selected samples as a slice when they are contiguous (no copy of
    the chunk), else as indices."""
    cols = np.flatnonzero(mask)
    if cols.size and cols[-1] - cols[0] + 1 == cols.size:
        return slice(int(cols[0]), int(cols[-1]) + 1)
    return cols


def _compute(*arrays: Any, scheduler: Any = None) -> tuple[Any, ...]:
    import dask

    kw = {} if scheduler is None else {"scheduler": scheduler}
    return dask.compute(*arrays, **kw)


def _fit_chunk(pot: np.ndarray, cur: np.ndarray) -> np.ndarray:
    f = fit_iv(pot, cur, workers=1)
    return np.stack(
        [
            f["conductance_S"],
            f["offset_A"],
            f["r2"],
            f["residual_rms_A"],
            f["conductance_err_S"],
            f["n"].astype(np.float64),
        ],
        axis=1,
    )


def point_iv_fit(
    store: ScanStore | str | Path,
    *,
    settle_fraction: float = 0.5,
    settle_s: float | None = None,
    branch: str = "all",
    potential_range_V: tuple[float, float] | None = None,
    window_s: tuple[float, float] | None = None,
    scheduler: Any = None,
) -> dict[str, np.ndarray]:
    """Linear I-V fit of every point's trace (see :func:`iv_sample_mask` for
    which samples count), chunk by chunk with dask.

    Returns per-point arrays (``n_points``): ``conductance_S``, ``offset_A``,
    ``r2``, ``residual_rms_A``, ``conductance_err_S``, ``resistance_ohm``,
    ``n`` (samples used) and ``samples_used`` (the boolean sample mask).
    Points without a trace are NaN.
    """
    import dask.array as da

    with open_store(store) as s:
        plan = s.plan()
        mask = iv_sample_mask(
            plan,
            settle_fraction=settle_fraction,
            settle_s=settle_s,
            branch=branch,
            potential_range_V=potential_range_V,
            window_s=window_s,
        )
        if mask.size != s.n_samples:
            raise ValueError(
                f"the plan's program has {mask.size} samples but the store holds {s.n_samples}"
            )
        if mask.sum() < 2:
            raise ValueError(
                f"fewer than 2 samples of the program qualify for an I-V fit "
                f"(settle_fraction {settle_fraction:g}, settle_s "
                f"{'auto' if settle_s is None else format(settle_s, 'g')}, branch {branch!r}, "
                f"potential range {potential_range_V}); shorten the settling or widen the range"
            )
        sel = _columns(mask)
        cur = trace_array(s, "current_A")[:, sel]
        pot = trace_array(s, "potential_V")[:, sel]
        fitted = da.map_blocks(
            _fit_chunk,
            pot,
            cur,
            dtype=np.float64,
            chunks=(cur.chunks[0], (6,)),
        )
        (res,) = _compute(fitted, scheduler=scheduler)
    out = {
        "conductance_S": res[:, 0],
        "offset_A": res[:, 1],
        "r2": res[:, 2],
        "residual_rms_A": res[:, 3],
        "conductance_err_S": res[:, 4],
        "n": res[:, 5].astype(np.int64),
    }
    with np.errstate(divide="ignore"):
        out["resistance_ohm"] = 1.0 / out["conductance_S"]
    out["samples_used"] = mask
    return out


def point_mean_current(
    store: ScanStore | str | Path,
    *,
    window_s: tuple[float, float] | None = None,
    potential_V: float | None = None,
    tol_V: float | None = None,
    branch: str = "all",
    settle_fraction: float = 0.0,
    settle_s: float = 0.0,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Mean current of every point over chosen samples, A (``n_points``).

    ``window_s``: samples with time in ``[t0, t1)`` of the program;
    ``potential_V``: samples whose programmed potential is within ``tol_V``
    of it (default: half the potential step between neighbouring samples or
    staircase steps, at least 1 mV), on the chosen ``branch`` (``up``,
    ``down`` or ``all``) and after ``settle_fraction`` of each hold step
    and ``settle_s`` of each segment.
    Both together: samples satisfying both. Neither: the store's readout
    window. Returns ``current_A`` and the ``samples_used`` mask.
    """
    with open_store(store) as s:
        plan = s.plan()
        p = program_samples(plan)
        if p["time_s"].size != s.n_samples:
            raise ValueError(
                f"the plan's program has {p['time_s'].size} samples but the store holds {s.n_samples}"
            )
        if window_s is None and potential_V is None:
            window_s = tuple(s.meta["readout_window_s"])
        mask = np.ones(p["time_s"].size, bool)
        if window_s is not None:
            t0, t1 = (float(v) for v in window_s)
            if not t1 > t0:
                raise ValueError(f"time window must have end > start, got [{t0:g}, {t1:g}] s")
            mask &= (p["time_s"] >= t0 - 1e-12) & (p["time_s"] < t1 - 1e-12)
        if potential_V is not None:
            tol = tol_V if tol_V is not None else _default_tol_V(p["potential_V"])
            mask &= np.abs(p["potential_V"] - potential_V) <= tol + 1e-12
            mask &= iv_sample_mask(
                plan, settle_fraction=settle_fraction, settle_s=settle_s, branch=branch
            )
        if not mask.any():
            raise ValueError(
                "no sample of the program matches the chosen window/potential "
                f"(program potentials {p['potential_V'].min():g}..{p['potential_V'].max():g} V, "
                f"duration {p['time_s'][-1] if p['time_s'].size else 0:g} s)"
            )
        cur = trace_array(s, "current_A")[:, _columns(mask)].astype(np.float64).mean(axis=1)
        (vals,) = _compute(cur, scheduler=scheduler)
    return {"current_A": vals, "samples_used": mask}


def _default_tol_V(potential: np.ndarray) -> float:
    steps = np.abs(np.diff(np.unique(np.round(potential, 9))))
    return max(float(steps.min()) / 2 if steps.size else 0.0, 1e-3)


# ---------------------------------------------------------------------- maps
def current_map(
    store: ScanStore | str | Path,
    *,
    window_s: tuple[float, float] | None = None,
    potential_V: float | None = None,
    tol_V: float | None = None,
    branch: str = "all",
    settle_fraction: float = 0.0,
    settle_s: float = 0.0,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Map of the mean current over a time window or at a potential, A.

    Without a window or potential: the store's own map (the readout window).
    NaN where the landing was not ``ok``. Returns ``current_A`` (map),
    ``quality`` (codes, see ``QUALITY_NAMES``) and ``samples_used``.
    """
    with open_store(store) as s:
        q_pt = point_quality(s)
        if window_s is None and potential_V is None:
            vals = s.array("results/value_A")[:]
            used = None
        else:
            r = point_mean_current(
                s,
                window_s=window_s,
                potential_V=potential_V,
                tol_V=tol_V,
                branch=branch,
                settle_fraction=settle_fraction,
                settle_s=settle_s,
                scheduler=scheduler,
            )
            vals, used = r["current_A"], r["samples_used"]
        q_pt = np.where((q_pt == QUALITY_OK) & ~np.isfinite(vals), QUALITY_FAILED, q_pt)
        ok = q_pt == QUALITY_OK
        cmap = points_to_map(s, vals, valid=ok)
        qmap = points_to_map(s, q_pt, fill=QUALITY_NOT_MEASURED, dtype=np.uint8)
    return {"current_A": cmap, "quality": qmap, "samples_used": used}


def point_conductance(
    store: ScanStore | str | Path,
    *,
    r2_min: float = 0.9,
    rest_potential_V: float = 0.0,
    settle_fraction: float = 0.5,
    settle_s: float | None = None,
    branch: str = "all",
    potential_range_V: tuple[float, float] | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Conductance of every point (``n_points``), with its quality code.

    - voltammetric plans (``staircase``, ``lsv``, ``cv``): the per-point linear
      I-V fit (:func:`point_iv_fit`): ``conductance_S``, ``offset_A``, ``r2``,
      ``residual_rms_A``, ``conductance_err_S``; a fit with R^2 below
      ``r2_min`` is ``poor_fit``;
    - chronoamperometry (``ca``): ``G = I / (E - rest_potential_V)`` from the
      map value (mean current of the readout window) and the programmed
      potential there.

    Non-positive conductances are ``non_positive_conductance``. The values
    are NaN wherever ``quality`` is not ``ok`` (0). Also ``resistance_ohm``,
    ``method`` (``"iv_fit"``/``"ca"``) and ``potential_V`` (CA only).
    """
    with open_store(store) as s:
        plan = s.plan()
        kind = plan.measurement.kind
        q_pt = point_quality(s)
        value = s.array("results/value_A")[:]
        out: dict[str, Any] = {
            "method": "iv_fit" if kind != "ca" else "ca",
            "potential_V": None,
        }
        per: dict[str, np.ndarray] = {}
        if kind == "ca":
            p = program_samples(plan)
            t0, t1 = s.meta["readout_window_s"]
            win = (p["time_s"] >= t0 - 1e-12) & (p["time_s"] < t1 - 1e-12)
            e = (
                float(np.mean(p["potential_V"][win]))
                if win.any()
                else float(plan.measurement.potential_V)
            )
            de = e - rest_potential_V
            if abs(de) < 1e-9:
                raise ValueError(
                    f"the map was measured at {e:g} V, the rest potential is {rest_potential_V:g} V: "
                    "no driving force, no conductance"
                )
            per["conductance_S"] = value / de
            out["potential_V"] = e
        else:
            fit = point_iv_fit(
                s,
                settle_fraction=settle_fraction,
                settle_s=settle_s,
                branch=branch,
                potential_range_V=potential_range_V,
                scheduler=scheduler,
            )
            for k in (
                "conductance_S",
                "offset_A",
                "r2",
                "residual_rms_A",
                "conductance_err_S",
            ):
                per[k] = fit[k]
            with np.errstate(invalid="ignore"):
                poor = (q_pt == QUALITY_OK) & ~(fit["r2"] >= r2_min)
            q_pt = np.where(poor, QUALITY_POOR_FIT, q_pt)
    g = per["conductance_S"]
    with np.errstate(invalid="ignore"):
        nonpos = (q_pt == QUALITY_OK) & ~(g > 0)
    q_pt = np.where(nonpos, QUALITY_NON_POSITIVE, q_pt).astype(np.uint8)
    ok = q_pt == QUALITY_OK
    for k, v in per.items():
        out[k] = np.where(ok, v, np.nan)
    with np.errstate(divide="ignore"):
        out["resistance_ohm"] = 1.0 / out["conductance_S"]
    out["quality"] = q_pt
    return out


def conductance_maps(
    store: ScanStore | str | Path,
    *,
    r2_min: float = 0.9,
    rest_potential_V: float = 0.0,
    settle_fraction: float = 0.5,
    settle_s: float | None = None,
    branch: str = "all",
    potential_range_V: tuple[float, float] | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Maps of :func:`point_conductance` (NaN where the quality is not ok,
    never 0): ``conductance_S``, ``resistance_ohm`` and, for I-V fits,
    ``offset_A``, ``r2``, ``residual_rms_A``, ``conductance_err_S``.

    Also ``current_A`` (the store's map value, NaN where the landing was not
    ok), ``quality`` (uint8 codes, ``QUALITY_NAMES``), ``x_um``/``y_um``
    (where each pixel was measured; the planned centre if it was not),
    ``method`` and ``potential_V``, ``visit_index`` (each pixel's place in
    the plan's visiting order) and ``t_start_s`` (when it was measured, NaN if
    not: the drift along the acquisition).
    """
    from .geometry import pixel_centers

    with open_store(store) as s:
        pc = point_conductance(
            s,
            r2_min=r2_min,
            rest_potential_V=rest_potential_V,
            settle_fraction=settle_fraction,
            settle_s=settle_s,
            branch=branch,
            potential_range_V=potential_range_V,
            scheduler=scheduler,
        )
        q_land = point_quality(s)
        value = s.array("results/value_A")[:]
        pos = measured_positions(s)
        q_pt = pc["quality"]
        ok = q_pt == QUALITY_OK
        out: dict[str, Any] = {"method": pc["method"], "potential_V": pc["potential_V"]}
        for k, v in pc.items():
            if isinstance(v, np.ndarray) and k != "quality":
                out[k] = points_to_map(s, v, valid=ok)
        out["current_A"] = points_to_map(s, value, valid=q_land == QUALITY_OK)
        out["quality"] = points_to_map(s, q_pt, fill=QUALITY_NOT_MEASURED, dtype=np.uint8)
        measured = q_pt != QUALITY_NOT_MEASURED
        g_ = s.grid
        xc, yc = pixel_centers(g_.shape, g_.x0_um, g_.y0_um, g_.pitch_um)
        xm = points_to_map(s, pos["x_um"], valid=measured)
        ym = points_to_map(s, pos["y_um"], valid=measured)
        out["x_um"] = np.where(np.isfinite(xm), xm, xc)
        out["y_um"] = np.where(np.isfinite(ym), ym, yc)
        # when each pixel was measured (the drift along the acquisition)
        n_pts = s.array("points/row").shape[0]
        out["visit_index"] = points_to_map(s, np.arange(n_pts, dtype=float))
        t0 = s.array("results/t_start_s")[:].astype(float)
        out["t_start_s"] = points_to_map(s, t0, valid=measured & np.isfinite(t0))
    return out


def height_map(store: ScanStore | str | Path, *, robust: bool = True) -> dict[str, Any]:
    """Contact-height topography with the plane (tilt) removed.

    ``height_um``: the Z where each landing touched (NaN where the droplet did
    not land); ``height_flat_um``: minus the fitted plane (robust to outlier
    landings); ``slope_x_um_per_um``, ``slope_y_um_per_um``, ``offset_um``
    (plane value at the map centre) and ``roughness_rms_nm`` (rms of the
    flattened map).
    """
    with open_store(store) as s:
        status = s.array("results/status")[:]
        done = s.done_mask()
        cz = s.array("results/contact_z_um")[:]
        landed = done & np.isin(status, _LANDED) & np.isfinite(cz)
        h = points_to_map(s, cz, valid=landed)
        g = s.grid
    if np.isfinite(h).sum() < 3:
        raise ValueError("fewer than 3 landings: no topography")
    fit = plane_fit(h, x0_um=g.x0_um, y0_um=g.y0_um, pitch_um=g.pitch_um, robust=robust)
    flat = fit["residual"]
    return {
        "height_um": h,
        "height_flat_um": flat,
        "slope_x_um_per_um": fit["slope_x_per_um"],
        "slope_y_um_per_um": fit["slope_y_per_um"],
        "offset_um": fit["offset"],
        "roughness_rms_nm": float(np.sqrt(np.nanmean(flat[fit["used"]] ** 2)) * 1e3),
    }
