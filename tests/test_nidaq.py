"""The NI-DAQ hub through the real pymmcore-plus core, against a fake NI gRPC
Device Server on localhost: the unmodified ``nidaqmx`` client, real gRPC,
and the fake board's wall-time clocks with one simulated cell behind it.

Wiring of the fake and of the config (they must agree): ao0 -> cell potential
(1:1), cell current x 1e9 V/A -> ai0 (+/-10 V), ao1 -> Z piezo amplifier
(10 um/V, 0 um at 0 V, slewing at 2000 um/s).
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nidaqmx")
pytest.importorskip("grpc")

from napari_seccm.configs import new_core  # noqa: E402
from napari_seccm.devices._hub import loaded_hub  # noqa: E402
from napari_seccm.devices.nidaq import NIDAQHub  # noqa: E402
from napari_seccm.fakes.nidaq_grpc import FakeNIDAQServer  # noqa: E402
from napari_seccm.fakes.world import FakeWorld  # noqa: E402
from napari_seccm.simulation.rig import SimulatedRig  # noqa: E402

GAIN = 1e9
#: the meniscus lands this far above the surface (the fake's pipette), um
MENISCUS_UM = 0.1


def write_config(path: Path, address: str, **extra: object) -> Path:
    props = {"GrpcAddress": address, "AmplifierGain_V_per_A": GAIN, **extra}
    lines = [
        "Property,Core,Initialize,0",
        "#py pyDevice,DAQ,napari_seccm.devices.nidaq,NIDAQHub",
        "#py pyDevice,Potentiostat,napari_seccm.devices.nidaq,Potentiostat",
        "#py pyDevice,PiezoZ,napari_seccm.devices.nidaq,PiezoZ",
        "#py Parent,Potentiostat,DAQ",
        "#py Parent,PiezoZ,DAQ",
        *(f"#py Property,DAQ,{k},{v}" for k, v in props.items()),
        "#py Property,PiezoZ,ZMin_um,0.0",
        "#py Property,PiezoZ,ZMax_um,100.0",
        "Property,Core,Initialize,1",
        "#py Property,Core,Focus,PiezoZ",
        "#py Property,Potentiostat,SampleRate_Hz,5000.0",
        "#py Property,Potentiostat,Filter_Hz,1000.0",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def ideal_world() -> FakeWorld:
    """A fake cell with no landing scatter, wetting faults, drift or pickup."""
    rig = SimulatedRig(seed=3)
    p = rig.probe("A")
    pip = p.pipette
    for name in (
        "footprint_scatter",
        "partial_wetting_probability",
        "late_landing_probability",
        "miss_probability",
        "residue_wetting_gain",
        "evaporation_per_h",
    ):
        setattr(pip, name, 0.0)
    p.amplifier.mains_A = 0.0
    p.amplifier.flicker_rel = 0.0
    return FakeWorld(rig, z_start_um=60.0)


@pytest.fixture
def fake():
    server = FakeNIDAQServer(ideal_world())
    server.start()
    yield server
    server.stop()


def _core():
    old = os.environ.get("PYMM_SIGNALS_BACKEND")
    os.environ["PYMM_SIGNALS_BACKEND"] = "psygnal"
    try:
        return new_core()
    finally:
        if old is None:
            os.environ.pop("PYMM_SIGNALS_BACKEND", None)
        else:
            os.environ["PYMM_SIGNALS_BACKEND"] = old


@pytest.fixture
def core(fake, tmp_path):
    c = _core()
    c.loadSystemConfiguration(str(write_config(tmp_path / "daq.cfg", fake.address)))
    yield c
    c.unloadAllDevices()
    gc.collect()


def wait_idle(core, label: str, timeout_s: float = 10.0) -> float:
    t0 = time.perf_counter()
    while core.deviceBusy(label):
        assert time.perf_counter() - t0 < timeout_s, f"{label} still busy"
        time.sleep(0.001)
    return time.perf_counter() - t0


def surface(fake: FakeNIDAQServer) -> float:
    return fake.world.surface_um()


def go_near(core, fake, height_um: float = 2.0) -> None:
    """Z to ``height_um`` above the surface (a fast plain move)."""
    core.setProperty("PiezoZ", "Speed_um_per_s", 400.0)
    core.setPosition(surface(fake) + height_um)
    wait_idle(core, "PiezoZ")
    # the piezo amplifier slews to the last command
    assert fake.world.wait_until(
        lambda: abs(fake.world.position("Z") - core.getPosition()) < 1e-3, 2.0
    )


def land(core, fake, speed: float = 2.0) -> float:
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    go_near(core, fake, 1.0)
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", speed)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface(fake) - 0.5)
    core.setProperty("PiezoZ", "Approach", "Start")
    wait_idle(core, "PiezoZ")
    assert core.getProperty("PiezoZ", "Approach_Result") == "contact", core.getProperty(
        "PiezoZ", "LastError"
    )
    return float(core.getProperty("PiezoZ", "Approach_ContactZ_um"))


# ------------------------------------------------------------------ tests
def test_the_hub_connects_and_holds_safe_outputs(core, fake):
    assert loaded_hub("DAQ", NIDAQHub).controller.address == fake.address
    assert fake.ao_volts("ao0") == 0.0  # cell off: 0 V
    assert fake.ao_volts("ao1") == 10.0  # Z retracted to the top of its span
    assert core.getPosition() == pytest.approx(100.0)
    ranges = core.getProperty("Potentiostat", "CurrentRanges_A")
    assert ranges.split(",")[-1] == "1e-08"


def test_an_approach_lands_near_the_surface_with_the_measured_overshoot(core, fake):
    speed = 2.0
    contact = land(core, fake, speed)
    s = surface(fake)
    # the meniscus lands at the surface + its height (within a few nm of noise
    # detection and the 1 kHz Z steps)
    assert s + MENISCUS_UM - 0.03 < contact < s + MENISCUS_UM + 0.01
    latency = float(core.getProperty("DAQ", "DetectionLatency_s"))
    assert 0 < latency < 0.05
    final = core.getPosition()
    overshoot = contact - final
    # the overshoot is speed x latency (the Z output stopped when the board
    # had generated its last update)
    assert overshoot == pytest.approx(speed * latency, abs=speed / 1000 + 1e-4)
    # the true Z (the piezo followed the output) agrees with the reported stop
    assert fake.world.wait_until(lambda: abs(fake.world.position("Z") - final) < 1e-3, 1.0)
    trace = core.getProperty("PiezoZ", "Approach_Trace")
    assert trace.shape[0] == 3 and trace.shape[1] > 100
    assert abs(trace[2, -1]) >= 3e-12
