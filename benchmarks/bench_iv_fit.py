"""Per-pixel linear I-V fits: the vectorized fit against a per-pixel scipy loop.

1. In memory: 10^6 pixels x 64 potentials (float32 currents, one potential
   vector), :func:`napari_seccm.analysis.iv.fit_iv`, best of ``--repeat``.
2. The same run, per pixel, with ``scipy.stats.linregress`` and
   ``scipy.optimize.curve_fit`` on a random sample of pixels; the speed-up is
   per pixel (target >= 50x), and the slopes must agree.
3. Out of core (skip with ``--no-store``): a scan store with 10^6 points of a
   64-step staircase (2 x 256 MB of traces on disk), fitted chunk by chunk with
   dask by :func:`napari_seccm.analysis.maps.point_iv_fit`; prints the time and
   the peak memory that numpy allocated meanwhile (tracemalloc), to show that
   the map streams instead of loading.

Run: .venv/bin/python benchmarks/bench_iv_fit.py [--pixels N] [--no-store]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

from napari_seccm.analysis.iv import fit_iv


def machine_info() -> str:
    import dask
    import scipy
    import zarr

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = next(
            int(x.split()[1]) / 2**20
            for x in Path("/proc/meminfo").read_text().splitlines()
            if x.startswith("MemTotal")
        )
        mem_s = f"{mem:.1f} GiB"
    except (OSError, StopIteration):
        mem_s = "?"
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"machine: {platform.machine()}, {cpu}, {ncpu} CPUs usable, {mem_s} RAM, "
        f"load average {load}\n"
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"dask {dask.__version__}, zarr {zarr.__version__}"
    )


def make_data(n: int, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    E = np.linspace(0.0, 1.0, m)
    G = rng.uniform(2e-9, 5e-9, n)
    I = np.empty((n, m), dtype=np.float32)
    for s in range(0, n, 65536):
        e = min(s + 65536, n)
        I[s:e] = G[s:e, None] * E + 1e-12 + rng.normal(0.0, 2e-12, (e - s, m))
    return E, I, G


def bench_vectorized(
    E: np.ndarray, I: np.ndarray, repeat: int, workers: int | None
) -> tuple[float, dict]:
    times = []
    fit = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        fit = fit_iv(E, I, workers=workers)
        times.append(time.perf_counter() - t0)
    return min(times), fit


def bench_scipy(E: np.ndarray, I: np.ndarray, idx: np.ndarray, fit: dict) -> dict[str, float]:
    from scipy.optimize import curve_fit
    from scipy.stats import linregress

    Ed = E.astype(np.float64)
    t0 = time.perf_counter()
    slopes = np.array([linregress(Ed, I[i].astype(np.float64)).slope for i in idx])
    t_lr = (time.perf_counter() - t0) / idx.size
    sub = idx[: max(idx.size // 4, 1)]

    def line(x: np.ndarray, g: float, i0: float) -> np.ndarray:
        return g * x + i0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cf = np.array(
            [curve_fit(line, Ed, I[i].astype(np.float64) * 1e9)[0][0] * 1e-9 for i in sub]
        )
    t_cf = (time.perf_counter() - t0) / sub.size
    err_lr = float(np.max(np.abs(slopes / fit["conductance_S"][idx] - 1)))
    err_cf = float(np.max(np.abs(cf / fit["conductance_S"][sub] - 1)))
    return {
        "linregress_us": t_lr * 1e6,
        "curve_fit_us": t_cf * 1e6,
        "n_lr": idx.size,
        "n_cf": sub.size,
        "max_rel_diff_lr": err_lr,
        "max_rel_diff_cf": err_cf,
    }


def make_store(path: Path, side: int, steps: int) -> None:
    """A complete scan store of side x side points of a staircase (written
    directly: the physics is not the point here, the data volume is)."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan, Staircase
    from napari_seccm.acquisition.store import OK, ScanStore

    fs = 5000.0
    plan = ScanPlan(
        area=RectangleArea(width_um=side * 0.3, height_um=side * 0.3),
        pitch_um=0.3,
        measurement=Staircase(start_V=0.0, end_V=1.0, steps=steps, hold_s=1.0 / fs),
    )
    assert plan.samples_per_point() == steps
    s = ScanStore.create(path, plan)
    n = s.n_points
    rng = np.random.default_rng(1)
    E = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    cur, pot = s.array("traces/current_A"), s.array("traces/potential_V")
    block = cur.chunks[0] * 128
    for a in range(0, n, block):
        b = min(a + block, n)
        G = rng.uniform(2e-9, 5e-9, b - a).astype(np.float32)
        cur[a:b] = G[:, None] * E + rng.normal(0, 2e-12, (b - a, steps)).astype(np.float32)
        pot[a:b] = np.broadcast_to(E, (b - a, steps))
    s.array("results/status")[:] = np.full(n, OK, np.uint8)
    s.array("results/done")[:] = np.ones(n, np.uint8)
    s.update_meta(status="complete")
    s.close()


def bench_store(side: int, steps: int, tmp: Path) -> dict[str, float]:
    from napari_seccm.analysis.maps import conductance_maps, point_iv_fit

    path = tmp / "bench.seccm.zarr"
    t0 = time.perf_counter()
    make_store(path, side, steps)
    t_make = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    point_iv_fit(path, settle_fraction=0.0, settle_s=0.0)  # warm the page cache
    t0 = time.perf_counter()
    fit = point_iv_fit(path, settle_fraction=0.0, settle_s=0.0)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = conductance_maps(path, settle_fraction=0.0, settle_s=0.0)
    t_maps = time.perf_counter() - t0
    tracemalloc.start()
    point_iv_fit(path, settle_fraction=0.0, settle_s=0.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.isfinite(fit["conductance_S"]).all()
    assert np.isfinite(maps["conductance_S"]).all()
    return {
        "points": side * side,
        "store_MiB": size / 2**20,
        "make_s": t_make,
        "fit_s": t_fit,
        "maps_s": t_maps,
        "peak_MiB": peak / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=1_000_000)
    ap.add_argument("--potentials", type=int, default=64)
    ap.add_argument("--sample", type=int, default=2000, help="pixels fitted by the scipy loop")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="threads of fit_iv (default: CPUs)")
    ap.add_argument("--no-store", action="store_true", help="skip the out-of-core store run")
    args = ap.parse_args()

    print(machine_info())
    n, m = args.pixels, args.potentials
    E, I, G = make_data(n, m)
    print(f"\ndata: {n:,} pixels x {m} potentials, float32 currents ({I.nbytes / 2**20:.0f} MiB)")
    t1, fit1 = bench_vectorized(E, I, args.repeat, 1)
    tv, fit = bench_vectorized(E, I, args.repeat, args.workers)
    print(f"fit_iv, 1 thread:        {t1:.3f} s  ({t1 / n * 1e6:.3f} us/pixel)")
    print(f"fit_iv, all threads:     {tv:.3f} s  ({tv / n * 1e6:.3f} us/pixel)")
    rng = np.random.default_rng(2)
    idx = rng.choice(n, min(args.sample, n), replace=False)
    sc = bench_scipy(E, I, idx, fit)
    per_v = tv / n * 1e6
    print(
        f"scipy.stats.linregress:  {sc['linregress_us']:.1f} us/pixel on {sc['n_lr']} pixels "
        f"-> {sc['linregress_us'] * n / 1e6:.0f} s for the map; slopes agree to "
        f"{sc['max_rel_diff_lr']:.1e}"
    )
    print(
        f"scipy.optimize.curve_fit: {sc['curve_fit_us']:.1f} us/pixel on {sc['n_cf']} pixels "
        f"-> {sc['curve_fit_us'] * n / 1e6:.0f} s for the map; slopes agree to "
        f"{sc['max_rel_diff_cf']:.1e}"
    )
    s_lr = sc["linregress_us"] / per_v
    s_cf = sc["curve_fit_us"] / per_v
    ok = s_lr >= 50 and tv < 5.0
    print(
        f"speed-up per pixel: {s_lr:.0f}x vs linregress, {s_cf:.0f}x vs curve_fit "
        f"(target >= 50x; full map {tv:.2f} s, target a few s): {'PASS' if ok else 'FAIL'}"
    )
    print(
        f"fitted G vs truth: median |rel. error| {np.median(np.abs(fit['conductance_S'] / G - 1)):.1e}"
    )
    del I, fit, fit1

    if not args.no_store:
        side = round(n**0.5)
        tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-iv-"))
        try:
            r = bench_store(side, m, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(
            f"\nout of core: store of {r['points']:,} points x {m} samples, {r['store_MiB']:.0f} MiB "
            f"on disk (written in {r['make_s']:.1f} s)"
        )
        print(
            f"point_iv_fit (dask, chunk by chunk): {r['fit_s']:.2f} s; conductance_maps: "
            f"{r['maps_s']:.2f} s; peak numpy memory during the fit {r['peak_MiB']:.0f} MiB "
            f"(the traces are {2 * r['points'] * m * 4 / 2**20:.0f} MiB)"
        )


if __name__ == "__main__":
    main()
