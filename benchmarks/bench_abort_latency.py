"""How fast an abort reaches a device in flight, through the core only.

On the simulated rig in real time (``TimeScale`` 1), starts each operation,
lets it run, then aborts it and measures the wall time until the device is
no longer busy (``deviceBusy`` polled every 0.2 ms):

- ``core.stop`` during a Z move (10 um/s), an XY move and an approach;
- ``Acquire = Abort`` during a 4 s cyclic voltammogram;
- ``napari_seccm.emergency_stop`` during each of them;
- ``Scan.cancel`` during the first landing's 50 um search, until the scan has
  ended with the pipette back at its start height and the cell off.

Target: every device idle within 100 ms; a canceled search retracted within 1 s.

Run: .venv/bin/python benchmarks/bench_abort_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import napari_seccm
from napari_seccm.acquisition.plan import ApproachSettings, RectangleArea, ScanPlan
from napari_seccm.acquisition.scan import Scan
from napari_seccm.configs import load_core


def _idle_after(core, dev: str, abort) -> float:
    t0 = time.perf_counter()
    abort()
    while core.deviceBusy(dev):
        time.sleep(0.0002)
    return time.perf_counter() - t0


def _surface(core) -> float:
    return float(core.getProperty("SECCM", "SurfaceHeight_um"))


def _start(core, what: str) -> str:
    if what == "z move":
        core.setProperty("PiezoZ", "Speed_um_per_s", 10.0)
        core.setPosition(core.getPosition() + 5.0)
        return "PiezoZ"
    if what == "xy move":
        core.setProperty("PiezoXY", "Speed_um_per_s", 10.0)
        x, y = core.getXYPosition()
        core.setXYPosition(x + 5.0, y)
        return "PiezoXY"
    if what == "approach":
        core.setProperty("Potentiostat", "Cell", "On")
        core.setProperty("Potentiostat", "Potential_V", 1.0)
        core.setProperty("PiezoZ", "Approach_StopZ_um", _surface(core) - 0.02)
        core.setProperty("PiezoZ", "Approach", "Start")
        return "PiezoZ"
    core.setProperty(
        "Potentiostat",
        "Waveform",
        '[{"ramp": [1.0, -1.0], "t": 2.0}, {"ramp": [-1.0, 1.0], "t": 2.0}]',
    )
    core.setProperty("Potentiostat", "Acquire", "Run")
    return "Potentiostat"


def _aborter(core, dev: str, how: str):
    """The call that aborts ``dev``: the emergency stop, or the device's own abort."""
    if how == "emergency stop":
        return lambda: napari_seccm.emergency_stop(core)
    if dev == "Potentiostat":
        return lambda: core.setProperty("Potentiostat", "Acquire", "Abort")
    return lambda: core.stop(dev)


def device_aborts(repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for what in ("z move", "xy move", "approach", "cv"):
        for how in ("stop", "emergency stop"):
            times = []
            for _ in range(repeat):
                core = load_core()
                core.setPosition(_surface(core) + 10.0)
                core.waitForSystem()
                core.setProperty("SECCM", "TimeScale", 1.0)
                dev = _start(core, what)
                time.sleep(0.2)
                assert core.deviceBusy(dev), what
                times.append(_idle_after(core, dev, _aborter(core, dev, how)))
                core.unloadAllDevices()
                del core
                gc.collect()
            out[f"{how} during {what}"] = times
    return out


def cancel_search(repeat: int, tmp: Path) -> list[float]:
    times = []
    for k in range(repeat):
        core = load_core()
        start = _surface(core) + 45.0
        core.setPosition(start)
        core.waitForSystem()
        core.setProperty("SECCM", "TimeScale", 1.0)
        plan = ScanPlan(
            area=RectangleArea(width_um=2, height_um=2),
            pitch_um=1.0,
            approach=ApproachSettings(search_depth_um=50.0, search_speed_um_per_s=5.0),
        )
        scan = Scan.create(core, plan, tmp / f"search{k}.seccm.zarr")
        scan.start()
        while core.getProperty("PiezoZ", "Approach_Result") != "running":
            time.sleep(0.002)
        time.sleep(0.5)
        t0 = time.perf_counter()
        scan.cancel()
        status = scan.wait(10)
        times.append(time.perf_counter() - t0)
        assert status == "canceled", status
        assert abs(core.getPosition() - start) < 1e-6
        assert core.getProperty("Potentiostat", "Cell") == "Off"
        core.unloadAllDevices()
        del core
        gc.collect()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}; python {platform.python_version()}")
    worst = 0.0
    for name, t in device_aborts(args.repeat).items():
        worst = max(worst, max(t))
        print(
            f"{name:32s} idle after median {statistics.median(t) * 1e3:6.2f} ms, "
            f"max {max(t) * 1e3:6.2f} ms ({len(t)} runs)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-"))
    try:
        t = cancel_search(args.repeat, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{'cancel during a 50 um search':32s} ended retracted after median "
        f"{statistics.median(t) * 1e3:6.1f} ms, max {max(t) * 1e3:6.1f} ms"
    )
    ok = worst <= 0.1 and max(t) <= 1.0
    print(f"targets (device idle <= 100 ms, search retracted <= 1 s): {'MET' if ok else 'NOT MET'}")


if __name__ == "__main__":
    main()
