"""Peak memory of a 1000 x 1000-point scan with 256 samples per point.

Scans a 1000 x 1000 grid (pitch 0.05 um, 50 x 50 um... inside the simulated
XY travel) with a 256-sample chronoamperometry per point on the simulated
rig, sampling the process's resident memory (RSS) as the scan runs. The
store streams: memory must stay flat. Target: peak <= 500 MB.

Run: .venv/bin/python benchmarks/bench_memory.py [--side 1000]
(the full million points take ~15-20 min of wall time on 2 cores)
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

from napari_seccm.acquisition.plan import Chronoamperometry, RectangleArea, ScanPlan
from napari_seccm.acquisition.scan import Scan
from napari_seccm.configs import load_core


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--side", type=int, default=1000)
    args = ap.parse_args()
    n_side = args.side
    pitch = 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pitch below 2x footprint: fine for this test
        plan = ScanPlan(
            area=RectangleArea(width_um=n_side * pitch, height_um=n_side * pitch),
            pitch_um=pitch,
            measurement=Chronoamperometry(duration_s=256 / 5000),
        )
    assert plan.samples_per_point() == 256, plan.samples_per_point()
    tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-mem-"))
    try:
        core = load_core()
        gc.collect()
        base = rss_mb()
        scan = Scan.create(core, plan, tmp / "big.seccm.zarr")
        samples: list[tuple[int, float]] = []
        stop = threading.Event()

        def sampler() -> None:
            while not stop.is_set():
                samples.append((scan.points_done, rss_mb()))
                stop.wait(1.0)

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        t0 = time.perf_counter()
        status = scan.run()
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = plan.n_points()
        print(
            f"{n} points x 256 samples: status {status}, wall {wall / 60:.1f} min "
            f"({wall / n * 1e3:.2f} ms/point)"
        )
        print(f"RSS before the scan {base:.0f} MB; during the scan:")
        step = max(1, len(samples) // 10)
        for done, mb in samples[::step] + samples[-1:]:
            print(f"  {done:8d} points done: {mb:6.0f} MB")
        size = sum(f.stat().st_size for f in (tmp / "big.seccm.zarr").rglob("*") if f.is_file())
        print(f"store on disk: {size / 2**30:.2f} GiB")
        ok = peak <= 500
        print(f"peak RSS {peak:.0f} MB (target <= 500 MB): {'MET' if ok else 'NOT MET'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
