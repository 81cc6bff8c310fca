"""Detection and abort latencies of the real-hardware paths, against the fakes.

Each shipped hardware config is pointed at the fake instruments
(:mod:`napari_seccm.fakes.serve`, as ``napari-seccm fake-hardware`` does) and
driven through the core only, with the real drivers and the unmodified vendor
clients (pipython, nidaqmx over gRPC, pyserial):

- the approach: ``Approach_DetectionLatency_s`` (from the first current
  sample over the threshold to the Z stage stopped) and the overshoot past
  the first detection, at 1, 3 and 10 um/s; the fastest safe approach speed
  is the meniscus height (100 nm) over the worst latency;
- stops: ``core.stop`` during a Z move, ``Acquire = Abort`` during a 2 s CV,
  until the device is idle.

Paths: the PI Z axis watched by the NI-DAQ's current stream
(``seccm_pi_nidaq.cfg``), the PI Z axis watched by the EmStat's MethodSCRIPT
stream (``seccm_pi_emstat.cfg``), and the NI-DAQ's own Z output (a config
with the DAQ driving Z through a piezo amplifier).

The fakes answer on localhost: a real controller, a network and the DAQ's
transfers add their own delays; re-measure on the rig.

Run: .venv/bin/python benchmarks/bench_hardware_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

from napari_seccm.configs import config_path, load_core
from napari_seccm.fakes import serve
from napari_seccm.model.program import Program

MENISCUS_UM = 0.1

NIDAQ_Z = """# the NI-DAQ drives the potential, reads the current and drives Z
Property,Core,Initialize,0
#py pyDevice,DAQ,napari_seccm.devices,NIDAQHub
#py pyDevice,Potentiostat,napari_seccm.devices,Potentiostat
#py pyDevice,PiezoZ,napari_seccm.devices,PiezoZ
#py Parent,Potentiostat,DAQ
#py Parent,PiezoZ,DAQ
#py Property,DAQ,ZChannel,ao1
#py Property,PiezoZ,ZMin_um,0.0
#py Property,PiezoZ,ZMax_um,100.0
Property,Core,Initialize,1
#py Property,Core,Focus,PiezoZ
"""


def _idle(core, dev: str, timeout_s: float = 60.0) -> float:
    t0 = time.perf_counter()
    while core.deviceBusy(dev):
        if time.perf_counter() - t0 > timeout_s:
            raise RuntimeError(f"{dev} still busy after {timeout_s} s")
        time.sleep(0.0002)
    return time.perf_counter() - t0


def approaches(core, world, speeds, repeat: int) -> list[tuple[float, float, float]]:
    """(speed, latency s, overshoot um) of each approach."""
    out = []
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    core.setProperty("Potentiostat", "Cell", "On")
    for v in speeds:
        for _ in range(repeat):
            s = world.surface_um()
            core.setProperty("PiezoZ", "Speed_um_per_s", 50.0)
            core.setPosition("PiezoZ", s + 0.3 + 2 * v * 0.01)
            _idle(core, "PiezoZ")
            core.setProperty("PiezoZ", "Approach_Speed_um_per_s", v)
            core.setProperty("PiezoZ", "Approach_StopZ_um", s - 0.3)
            core.setProperty("PiezoZ", "Approach_Threshold_A", 5e-11)
            core.setProperty("PiezoZ", "Approach", "Start")
            _idle(core, "PiezoZ")
            if core.getProperty("PiezoZ", "Approach_Result") != "contact":
                raise RuntimeError(core.getProperty("PiezoZ", "Approach_Result"))
            lat = float(core.getProperty("PiezoZ", "Approach_DetectionLatency_s"))
            cz = float(core.getProperty("PiezoZ", "Approach_ContactZ_um"))
            out.append((v, lat, cz - core.getPosition("PiezoZ")))
    return out


def stops(core, repeat: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"core.stop (Z move)": [], "Acquire = Abort (CV)": []}
    for _ in range(repeat):
        z = core.getPosition("PiezoZ")
        core.setProperty("PiezoZ", "Speed_um_per_s", 5.0)
        core.setPosition("PiezoZ", z + 2.0)
        time.sleep(0.1)
        t0 = time.perf_counter()
        core.stop("PiezoZ")
        _idle(core, "PiezoZ")
        out["core.stop (Z move)"].append(time.perf_counter() - t0)
        cv = Program.cyclic_voltammetry(0.0, 1.0, 1.0, cycles=1)  # 2 s
        core.setProperty("Potentiostat", "Waveform", cv.to_json())
        core.setProperty("Potentiostat", "Acquire", "Run")
        time.sleep(0.2)
        t0 = time.perf_counter()
        core.setProperty("Potentiostat", "Acquire", "Abort")
        _idle(core, "Potentiostat")
        out["Acquire = Abort (CV)"].append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="seccm-hw-bench-"))
    (tmp / "nidaq_z.cfg").write_text(NIDAQ_Z)
    paths = [
        ("PI Z + NI-DAQ current stream", config_path("seccm_pi_nidaq.cfg")),
        ("PI Z + EmStat MethodSCRIPT stream", config_path("seccm_pi_emstat.cfg")),
        ("NI-DAQ Z output + its own current", tmp / "nidaq_z.cfg"),
    ]
    for name, cfg in paths:
        with serve.start(cfg, tmp / f"{cfg.stem}-rehearsal.cfg") as reh:
            core = load_core(reh.config, signals="psygnal")
            try:
                res = approaches(core, reh.world, (1.0, 3.0, 10.0), a.repeat)
                lat = [r[1] for r in res]
                worst = max(lat)
                print(f"\n{name}:")
                for v in (1.0, 3.0, 10.0):
                    ls = [r[1] * 1e3 for r in res if r[0] == v]
                    os_ = [r[2] * 1e3 for r in res if r[0] == v]
                    print(
                        f"  approach at {v:4.1f} um/s: detection latency median "
                        f"{statistics.median(ls):.1f} ms (max {max(ls):.1f}), overshoot median "
                        f"{statistics.median(os_):.0f} nm (max {max(os_):.0f})"
                    )
                print(
                    f"  fastest safe approach (overshoot < {MENISCUS_UM * 1e3:.0f} nm at the "
                    f"worst latency {worst * 1e3:.1f} ms): {MENISCUS_UM / worst:.0f} um/s; "
                    f"with a 2x margin {MENISCUS_UM / worst / 2:.0f} um/s"
                )
                for what, ts in stops(core, a.repeat).items():
                    print(
                        f"  {what}: idle after median {statistics.median(ts) * 1e3:.1f} ms "
                        f"(max {max(ts) * 1e3:.1f})"
                    )
            finally:
                core.unloadAllDevices()


if __name__ == "__main__":
    main()
