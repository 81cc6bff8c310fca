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
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nidaqmx")
pytest.importorskip("grpc")

from napari_seccm.configs import new_core
from napari_seccm.devices._hub import loaded_hub
from napari_seccm.devices.nidaq import NIDAQHub
from napari_seccm.fakes.nidaq_grpc import FakeNIDAQServer
from napari_seccm.fakes.world import FakeWorld
from napari_seccm.simulation.rig import SimulatedRig

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


def run_waveform(core, program: list[dict], timeout_s: float = 10.0) -> np.ndarray:
    core.setProperty("Potentiostat", "Waveform", json.dumps(program))
    core.setProperty("Potentiostat", "Acquire", "Run")
    assert core.deviceBusy("Potentiostat")
    wait_idle(core, "Potentiostat", timeout_s)
    assert core.getProperty("Potentiostat", "LastError") == ""
    return core.getProperty("Potentiostat", "LastTrace")


def served(fake) -> np.ndarray:
    return np.concatenate(fake.served_current_A)


@pytest.mark.parametrize(
    ("name", "program"),
    [
        ("CA", [{"hold": 1.0, "t": 0.2}]),
        ("LSV", [{"ramp": [0.5, 1.5], "t": 0.3}]),
        ("CV", [{"ramp": [0.5, 1.5], "t": 0.2}, {"ramp": [1.5, 0.5], "t": 0.2}]),
    ],
)
def test_a_waveform_applies_the_program_and_records_the_cell_current(core, fake, name, program):
    from napari_seccm.model.program import Program

    land(core, fake)
    t0 = time.perf_counter()
    trace = run_waveform(core, program)
    took = time.perf_counter() - t0
    prog = Program.from_segments(program)
    n = prog.n_samples(5000.0)
    assert trace.shape == (3, n)
    # hardware-timed in wall time: it takes the program's duration
    assert prog.duration_s * 0.9 < took < prog.duration_s * 2 + 1.0
    np.testing.assert_allclose(trace[0], np.arange(n) / 5000.0)
    np.testing.assert_allclose(trace[1], prog.sample(5000.0))  # E follows the program
    # I is the fake cell's current, through the amplifier (x gain) and the AI
    # (/ gain), sample for sample, on the one clock
    np.testing.assert_allclose(trace[2], served(fake), rtol=1e-9, atol=1e-18)
    i = trace[2]
    assert np.all(np.isfinite(i)) and np.median(np.abs(i)) > 3e-12  # in contact: current flows
    if name == "LSV":
        assert np.corrcoef(trace[1], i)[0, 1] > 0.9  # more current at higher potential
    # the potential stays at the program's last value
    assert fake.ao_volts("ao0") == pytest.approx(prog.sample(5000.0)[-1])


def test_abort_ends_a_waveform_at_once_keeping_its_samples(core, fake):
    land(core, fake)
    core.setProperty("Potentiostat", "Waveform", '[{"ramp": [0.0, 1.0], "t": 3.0}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    time.sleep(0.3)
    t0 = time.perf_counter()
    core.setProperty("Potentiostat", "Acquire", "Abort")
    took = wait_idle(core, "Potentiostat", 2.0)
    assert took < 0.1 and time.perf_counter() - t0 < 0.15
    trace = core.getProperty("Potentiostat", "LastTrace")
    assert 0.15 * 5000 < trace.shape[1] < 1.0 * 5000
    assert "stopped before its end" in core.getProperty("Potentiostat", "LastError")
    assert fake.running_tasks() == []  # nothing left running on the board
    # the output holds the last applied potential
    assert fake.ao_volts("ao0") == pytest.approx(trace[1, -1], abs=1e-3)


def test_core_stop_ends_an_approach_above_the_film(core, fake):
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    go_near(core, fake, 5.0)
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 2.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface(fake) - 0.5)
    core.setProperty("PiezoZ", "Approach", "Start")
    assert core.getProperty("PiezoZ", "Approach_Result") == "running"
    time.sleep(0.3)
    z_mid = core.getPosition()
    assert surface(fake) + 3.9 < z_mid < surface(fake) + 4.8  # Z is live while it ramps
    core.stop("PiezoZ")
    assert wait_idle(core, "PiezoZ", 2.0) < 0.1
    assert core.getProperty("PiezoZ", "Approach_Result") == "aborted"
    z = core.getPosition()
    assert surface(fake) + 3.9 < z < surface(fake) + 4.8
    time.sleep(0.1)
    assert fake.world.position("Z") == pytest.approx(z, abs=1e-3)  # nothing moves after it
    assert fake.running_tasks() == []


def test_the_emergency_stop_switches_the_cell_off_and_refuses_until_reset(core, fake):
    import napari_seccm

    land(core, fake)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 1.2, "t": 3.0}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    time.sleep(0.2)
    t0 = time.perf_counter()
    napari_seccm.emergency_stop(core)
    assert time.perf_counter() - t0 < 1.0
    wait_idle(core, "Potentiostat", 1.0)
    assert fake.ao_volts("ao0") == 0.0  # the cell's potential off
    assert fake.running_tasks() == []
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    with pytest.raises(RuntimeError, match="emergency stop of DAQ is latched"):
        core.setProperty("Potentiostat", "Acquire", "Run")
    with pytest.raises(RuntimeError, match="latched"):
        core.setPosition(core.getPosition() + 1.0)
    with pytest.raises(RuntimeError, match="latched"):
        core.setProperty("Potentiostat", "Cell", "On")
    napari_seccm.reset_emergency_stop(core)
    core.setPosition(core.getPosition() + 1.0)
    wait_idle(core, "PiezoZ")


def test_a_daqmx_error_is_reported_with_its_code_and_message(core, fake):
    fake.inject_error("StartTask", -50103)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 0.5, "t": 0.1}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    wait_idle(core, "Potentiostat")
    err = core.getProperty("Potentiostat", "LastError")
    assert "DAQmx error -50103" in err and "resource is reserved" in err, err
    assert fake.running_tasks() == []
    # the error was the call's, not the connection's: the next run works
    trace = run_waveform(core, [{"hold": 0.5, "t": 0.1}])
    assert trace.shape == (3, 500)


def test_a_dropped_connection_says_what_the_hardware_may_still_do(core, fake, tmp_path):
    land(core, fake)
    core.setProperty("Potentiostat", "Waveform", '[{"hold": 0.8, "t": 3.0}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    time.sleep(0.3)
    fake.stop()  # the server goes away mid-waveform
    wait_idle(core, "Potentiostat", 8.0)
    err = core.getProperty("Potentiostat", "LastError")
    assert "connection to the NI gRPC Device Server" in err, err
    assert "the last AO values stay on the outputs" in err and "reload the config" in err
    # further operations are refused, naming why
    with pytest.raises(RuntimeError, match="connection"):
        core.setProperty("Potentiostat", "Potential_V", 0.2)
    # a fresh server on the same cell, and a reload: it works again
    fresh = FakeNIDAQServer(fake.world)
    try:
        addr = fresh.start()
        t0 = time.perf_counter()
        core.loadSystemConfiguration(str(write_config(tmp_path / "again.cfg", addr)))
        assert time.perf_counter() - t0 < 10.0  # unloading the dead hub did not hang
        trace = run_waveform(core, [{"hold": 0.2, "t": 0.1}])
        assert trace.shape == (3, 500)
    finally:
        core.unloadAllDevices()
        fresh.stop()


def test_a_server_that_stops_answering_does_not_hang_the_emergency_stop(core, fake):
    import napari_seccm

    fake.hang()
    t0 = time.perf_counter()
    report = napari_seccm.emergency_stop(core)
    assert time.perf_counter() - t0 < 3.0
    fake.hang(False)
    # latched all the same, and the report says the DAQ may not have stopped
    assert core.getProperty("DAQ", "EmergencyStop") == "Latched"
    why = core.getProperty("DAQ", "EmergencyStop_Unconfirmed")
    assert why, "a DAQ that did not answer the stop was taken as stopped"
    assert any(
        line.startswith("DAQ: latched, but stopping its controller failed") for line in report
    ), report


def test_bad_settings_are_refused_naming_the_value_and_the_limit(fake, tmp_path, caplog):
    c = _core()
    try:
        cfg = write_config(
            tmp_path / "a.cfg", fake.address, ZSlew_um_per_s=300.0, PotentialGain_V_per_V=0.4
        )
        c.loadSystemConfiguration(str(cfg))
        # a current range the gain and the AI ranges cannot give
        with pytest.raises(Exception, match=r"1e-07 A is not a range.*choose one of"):
            c.setProperty("Potentiostat", "CurrentRange_A", 1e-7)
        # a potential the AO cannot reach through the potentiostat's input gain
        with pytest.raises(Exception, match=r"potential 4.5 V needs 11.25 V.*\+/-10 V"):
            c.setProperty("Potentiostat", "Potential_V", 4.5)
        c.setProperty("Potentiostat", "Potential_V", 3.9)  # within it: taken
        assert fake.ao_volts("ao0") == 0.0  # (the cell is off: the output stays at 0 V)
        # a Z move faster than the piezo amplifier's slew: refused, nothing moves
        z0 = c.getPosition()
        c.setProperty("PiezoZ", "Speed_um_per_s", 400.0)
        c.setPosition(z0 - 10.0)
        wait_idle(c, "PiezoZ")
        err = c.getProperty("PiezoZ", "LastError")
        assert "Z speed 400 um/s" in err and "maximum 300 um/s" in err, err
        assert c.getPosition() == z0 and fake.ao_volts("ao1") == pytest.approx(z0 / 10.0)
    finally:
        c.unloadAllDevices()
    # an AI range the DAQ does not have, a device the server does not know:
    # the hub refuses to initialize, naming the value and the choices
    for extra, match in (
        ({"AIRange_V": 3.0}, r"AIRange_V 3 V is not an AI range.*\[0.1, 0.2"),
        ({"Device": "Dev7"}, r"'Dev7' is not known.*\['Dev1'\]"),
    ):
        c = _core()
        caplog.clear()
        try:
            with pytest.raises(Exception, match="not initialized"):
                c.loadSystemConfiguration(
                    str(write_config(tmp_path / "b.cfg", fake.address, **extra))
                )
            assert re.search(match, caplog.text), caplog.text[-2000:]
        finally:
            c.unloadAllDevices()


def test_the_current_monitor_streams_the_current_on_the_monotonic_clock(core, fake):
    land(core, fake)
    ctrl = loaded_hub("DAQ", NIDAQHub).controller
    with ctrl.current_monitor("A", 2000.0) as mon:
        assert mon.sample_rate_hz == 2000.0
        t_start = time.monotonic()
        chunks = []
        while time.monotonic() - t_start < 0.3:
            chunks.append(mon.read(0.1))
        data = np.hstack(chunks)
        with pytest.raises(RuntimeError, match="current monitor is streaming"):
            ctrl.set_potential("A", 0.5)
    assert data.shape[0] == 2
    assert 0.2 * 2000 < data.shape[1] < 0.5 * 2000
    assert np.all(np.diff(data[0]) > 0)
    assert abs(data[0, 0] - t_start) < 0.05
    assert np.median(data[1]) > 3e-12  # in contact at 1 V
    assert fake.running_tasks() == []
