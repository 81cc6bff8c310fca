"""Instrument time per point: this engine against a constant-speed baseline.

The report's map (12 x 12 um at 0.3 um pitch, 1.0 V, 20 ms chronoamperometry)
is scanned twice on the simulated rig, in one run:

- baseline, as LabVIEW-style hopping programs do it: lift 1 um at 0.5 um/s,
  hop, approach at a constant 1 um/s from there, settle 1 s, measure;
- this engine's defaults: lift 1 um fast, hop, fast descent to 0.3 um above
  the landing predicted by a plane fit of the previous ones, approach at
  1 um/s from there, measure.

Instrument time is the simulator's clock (moves at finite speed, sampling at
the sample rate). Target: >= 5x shorter per point, zero crashes (pipette
broken) and no missed landings.

Run: .venv/bin/python benchmarks/bench_instrument_time.py
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path

from napari_seccm.acquisition.plan import ApproachSettings, ScanPlan, SurfaceSettings
from napari_seccm.acquisition.scan import Scan
from napari_seccm.configs import load_core


def plans() -> dict[str, ScanPlan]:
    engine = ScanPlan(name="engine defaults")
    baseline = ScanPlan(
        name="constant-speed baseline",
        approach=ApproachSettings(
            fast_speed_um_per_s=0.5,  # lift at 0.5 um/s
            slow_speed_um_per_s=1.0,  # approach at 1 um/s ...
            slow_zone_um=2.0,  # ... all the way from the retract height
            max_depth_um=2.0,
        ),
        surface=SurfaceSettings(model="none"),  # no prediction: last height only
        retract_um=1.0,
        flyback_extra_um=0.0,
        hold_s=1.0,  # 1 s settle before measuring
    )
    return {"baseline": baseline, "engine": engine}


def run(plan: ScanPlan, out: Path) -> dict[str, float]:
    core = load_core()
    scan = Scan.create(core, plan, out)
    t0 = time.perf_counter()
    status = scan.run()
    wall = time.perf_counter() - t0
    broken = core.getProperty("SECCM", "Pipette_State") == "broken"
    meta = scan.store.meta
    counts = scan.store.status_counts()
    core.unloadAllDevices()
    del core
    gc.collect()
    n = plan.n_points()
    return {
        "status": status,
        "points": n,
        "instrument_s_per_point": meta["instrument_time_s"] / n,
        "instrument_total_s": meta["instrument_time_s"],
        "wall_s": wall,
        "ok": counts["ok"],
        "missed": n - counts["ok"],
        "crashed": int(broken),
    }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-"))
    try:
        res = {k: run(p, tmp / f"{k}.seccm.zarr") for k, p in plans().items()}
        for k, r in res.items():
            print(
                f"{k:9s}: {r['points']} points, {r['instrument_s_per_point']:.3f} s/point "
                f"(map {r['instrument_total_s'] / 60:.1f} min instrument time, {r['wall_s']:.1f} s wall), "
                f"ok {r['ok']}, missed {r['missed']}, crashes {r['crashed']}, status {r['status']}"
            )
        speedup = (
            res["baseline"]["instrument_s_per_point"] / res["engine"]["instrument_s_per_point"]
        )
        ok = speedup >= 5 and res["engine"]["missed"] == 0 and res["engine"]["crashed"] == 0
        print(
            f"speed-up per point: {speedup:.1f}x (target >= 5x, zero crashes, no misses): "
            f"{'MET' if ok else 'NOT MET'}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
