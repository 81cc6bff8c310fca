"""The PalmSens hub (MethodSCRIPT over a serial port) against the fake EmStat.

Through the real pymmcore-plus core: a config loads ``PalmSensHub`` and the
generic ``Potentiostat`` with the hub's Port on the fake's pseudo-terminal;
pyserial opens it as it would open /dev/ttyACM0. The fake runs scripts in wall
time against a FakeWorld whose pipette sits in the droplet (a few nA at 1 V).
"""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_seccm.acquisition.control import emergency_stop, reset_emergency_stop, wait_idle
from napari_seccm.configs import load_core
from napari_seccm.devices._hub import loaded_hub
from napari_seccm.devices.palmsens import (
    MethodScriptError,
    PalmSensHub,
    decode_package,
    decode_value,
    script_number,
)
from napari_seccm.fakes.methodscript import FakeEmStat, encode_value, parse_number
from napari_seccm.fakes.world import FakeWorld
from napari_seccm.model.program import Program
from napari_seccm.simulation.rig import SimulatedRig

RATE = 200.0
TIMEOUT_S = 0.5
#: an abort must end a waveform within this much wall time, s (measured: ~30 ms)
ABORT_S = 0.25


def config_text(port: str) -> str:
    return f"""# EmStat through MethodSCRIPT (test)
Property,Core,Initialize,0
#py pyDevice,EmStat,napari_seccm.devices.palmsens,PalmSensHub
#py pyDevice,Potentiostat,napari_seccm.devices.palmsens,Potentiostat
#py Parent,Potentiostat,EmStat
#py Property,EmStat,Port,{port}
#py Property,EmStat,Timeout_s,{TIMEOUT_S}
Property,Core,Initialize,1
#py Property,Potentiostat,CurrentRange_A,1e-07
#py Property,Potentiostat,Filter_Hz,40.0
#py Property,Potentiostat,SampleRate_Hz,{RATE}
"""


def landed_world() -> FakeWorld:
    """A world whose pipette has landed: the cell passes a few nA at 1 V."""
    rig = SimulatedRig()
    world = FakeWorld(rig, z_start_um=rig.surface_um() + 0.05)
    assert rig.probe("A").contact is not None
    world.sample_current("A", 10, RATE)  # the first computation is the slow one
    return world


@pytest.fixture
def world():
    return landed_world()


@pytest.fixture
def fake(world):
    with FakeEmStat(world) as f:
        yield f


def load(tmp_path, port: str, name: str = "emstat.cfg"):
    cfg = tmp_path / name
    cfg.write_text(config_text(port))
    return load_core(cfg, signals="psygnal")


@pytest.fixture
def core(fake, tmp_path):
    c = load(tmp_path, fake.port)
    yield c
    reset_emergency_stop(c)
    c.unloadAllDevices()


def run(core, program: Program, timeout_s: float = 10.0) -> np.ndarray:
    core.setProperty("Potentiostat", "Waveform", program.to_json())
    core.setProperty("Potentiostat", "Acquire", "Run")
    wait_idle(core, "Potentiostat", timeout_s)
    return np.asarray(core.getProperty("Potentiostat", "LastTrace"))


def cell_on(core, volts: float = 1.0) -> None:
    core.setProperty("Potentiostat", "Potential_V", volts)
    core.setProperty("Potentiostat", "Cell", "On")


def busy_for(core, timeout_s: float = 5.0) -> float:
    t0 = time.perf_counter()
    while core.deviceBusy("Potentiostat"):
        assert time.perf_counter() - t0 < timeout_s, "still busy"
        time.sleep(0.001)
    return time.perf_counter() - t0


def start(core, program: Program) -> None:
    core.setProperty("Potentiostat", "Waveform", program.to_json())
    core.setProperty("Potentiostat", "Acquire", "Run")
    assert core.deviceBusy("Potentiostat")


# ------------------------------------------------------------- connection


def test_the_hub_reads_the_firmware_and_offers_the_picos_ranges(core, fake):
    assert "espico" in core.getProperty("EmStat", "Firmware")
    assert core.getProperty("EmStat", "Connection") == "Connected"
    ranges = [float(r) for r in core.getProperty("Potentiostat", "CurrentRanges_A").split(",")]
    assert ranges[:3] == [1e-7, 2e-6, 4e-6] and ranges[-1] == 1e-3
    # the connection began with an abort (a script left running would end) and the version
    assert fake.commands[:3] == ["", "Z", "t"]
    assert isinstance(loaded_hub("EmStat", PalmSensHub).controller.runs_inline, bool)


# --------------------------------------------------------------- programs


def test_a_chronoamperometry_records_the_cells_current(core, fake, world):
    cell_on(core, 1.0)
    p = Program.chronoamperometry(1.0, 0.5)
    t0 = time.perf_counter()
    trace = run(core, p)
    wall = time.perf_counter() - t0
    n = p.n_samples(RATE)
    assert trace.shape == (3, n) == (3, 100)
    assert 0.5 <= wall < 2.0  # hardware-timed, in wall time
    np.testing.assert_allclose(trace[0], np.arange(n) / RATE)
    np.testing.assert_allclose(trace[1], 1.0, atol=1e-6)
    # what the instrument measured arrives as it was measured (the codec loses ~1e-8)
    np.testing.assert_allclose(trace[2], fake.last_points[1], rtol=1e-6, atol=1e-15)
    # and it is the cell's current: a few nA, as the world passes at 1 V
    expect = world.sample_current("A", 100, RATE).mean()
    assert expect > 1e-9
    assert abs(trace[2][20:].mean() - expect) < 0.05 * expect
    assert core.getProperty("Potentiostat", "LastError") == ""
    assert "meas_loop_ca p c 1 5m 502500u" in fake.scripts[-1]


def test_a_linear_sweep_follows_the_program(core, fake):
    cell_on(core, 0.0)
    p = Program.linear_sweep(0.0, 1.0, 2.0)
    trace = run(core, p)
    assert trace.shape == (3, p.n_samples(RATE)) == (3, 100)
    np.testing.assert_allclose(trace[1], p.sample(RATE), atol=1e-6)
    np.testing.assert_allclose(trace[2], fake.last_points[1], rtol=1e-6, atol=1e-15)
    # an ohmic droplet cell: the current rises with the potential
    assert np.corrcoef(trace[1], trace[2])[0, 1] > 0.98
    assert trace[2][-10:].mean() > 1e-9 > abs(trace[2][:5].mean())


def test_a_cyclic_voltammogram_keeps_its_vertices_and_cycles(core, fake):
    cell_on(core, 0.2)
    p = Program.cyclic_voltammetry(0.2, 1.2, 4.0, cycles=2)
    trace = run(core, p)
    assert trace.shape == (3, p.n_samples(RATE)) == (3, 200)
    e = p.sample(RATE)
    np.testing.assert_allclose(trace[1], e, atol=1e-6)
    # the samples sit at the middles of their 20 mV steps: half a step inside the vertices
    assert trace[1].max() == pytest.approx(1.19, abs=1e-6)
    assert trace[1].min() == pytest.approx(0.21, abs=1e-6)
    # four sweeps, one measurement loop each
    assert sum(line.startswith("meas_loop_lsv") for line in fake.scripts[-1]) == 4
    # the current retraces itself on the way back (ohmic, within the cell's noise)
    up, down = trace[2][:50], trace[2][50:100][::-1]
    assert np.abs(up - down).mean() < 0.1 * np.abs(up).mean()


def test_a_staircase_and_a_custom_program_run_as_their_segments(core, fake):
    cell_on(core, 0.0)
    for p in (
        Program.staircase(0.0, 0.9, 4, 0.05),
        Program.custom([{"hold": 0.3, "t": 0.05}, {"ramp": [0.3, 0.8], "t": 0.1}]),
    ):
        trace = run(core, p)
        assert trace.shape == (3, p.n_samples(RATE))
        np.testing.assert_allclose(trace[1], p.sample(RATE), atol=1e-6)


# --------------------------------------------------------------- readings


def test_potential_and_current_readings(core, fake, world):
    core.setProperty("Potentiostat", "Potential_V", 0.8)
    core.setProperty("Potentiostat", "Cell", "On")
    assert fake.cell_on
    assert world.rig.probe("A").potential_V == pytest.approx(0.8)
    i = float(core.getProperty("Potentiostat", "Current_A"))
    expect = world.sample_current("A", 50, RATE).mean()
    assert i == pytest.approx(expect, rel=0.1)
    core.setProperty("Potentiostat", "Cell", "Off")
    assert not fake.cell_on
    assert float(core.getProperty("Potentiostat", "Current_A")) == 0.0


# ------------------------------------------------------------------ stops


def test_abort_ends_a_waveform_within_the_bound_and_keeps_its_samples(core, fake):
    cell_on(core, 1.0)
    start(core, Program.chronoamperometry(1.0, 3.0))
    time.sleep(0.5)
    t0 = time.perf_counter()
    core.setProperty("Potentiostat", "Acquire", "Abort")
    latency = busy_for(core, 2.0)
    t_abort = time.perf_counter() - t0
    assert latency < ABORT_S, f"abort took {t_abort * 1e3:.0f} ms"
    trace = np.asarray(core.getProperty("Potentiostat", "LastTrace"))
    assert 0.3 * RATE < trace.shape[1] < 3.0 * RATE
    assert "stopped before its end" in core.getProperty("Potentiostat", "LastError")
    assert not fake.running and fake.cell_on  # an abort ends the program, not the cell
    # the instrument is ready for the next one
    assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)


def test_the_emergency_stop_switches_the_cell_off_and_latches(core, fake):
    cell_on(core, 1.0)
    start(core, Program.chronoamperometry(1.0, 3.0))
    time.sleep(0.3)
    t0 = time.perf_counter()
    emergency_stop(core, "test")
    assert busy_for(core, 2.0) < 1.0
    assert time.perf_counter() - t0 < 1.0
    assert not fake.cell_on and not fake.running
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert "stopped before its end" in core.getProperty("Potentiostat", "LastError")
    with pytest.raises(RuntimeError, match="emergency stop of EmStat is latched"):
        core.setProperty("Potentiostat", "Acquire", "Run")
    with pytest.raises(RuntimeError, match="latched"):
        core.setProperty("Potentiostat", "Cell", "On")
    assert not fake.cell_on
    reset_emergency_stop(core)
    cell_on(core, 1.0)
    assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)


# ------------------------------------------------------------------ faults


def test_a_device_error_is_reported_with_its_code_and_meaning(core, fake):
    cell_on(core, 1.0)
    fake.inject_error(0x0032, after_points=20)
    start(core, Program.chronoamperometry(1.0, 1.0))
    assert busy_for(core) < 1.0
    err = core.getProperty("Potentiostat", "LastError")
    assert "!0032" in err and "severely overloaded" in err and "line" in err
    assert core.getProperty("Potentiostat", "LastTrace_Samples") == 0
    # the next program runs
    assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)
    assert core.getProperty("Potentiostat", "LastError") == ""


def test_a_script_the_instrument_refuses_names_the_code_and_line(core):
    ctrl = loaded_hub("EmStat", PalmSensHub).controller
    with pytest.raises(MethodScriptError, match=r"!4001 \(script command not recognized\)"):
        ctrl._run_script(["var p", "do_something 1"], "a test script")
    with pytest.raises(MethodScriptError, match=r"!420B.*line 1"):
        ctrl._run_script(["set_e x"], "a test script")


def test_an_unresponsive_instrument_is_an_error_not_a_hang(core, fake):
    cell_on(core, 1.0)
    start(core, Program.chronoamperometry(1.0, 2.0))
    time.sleep(0.2)
    fake.unresponsive = True
    # silence beyond Timeout_s (0.5 s) + 2 sample intervals is an error
    assert busy_for(core, 5.0) < 2.0
    err = core.getProperty("Potentiostat", "LastError")
    assert "stopped answering" in err and "may still be running" in err
    # a setting sent meanwhile fails clearly too, within the timeout
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError, match="did not answer"):
        core.setProperty("Potentiostat", "Potential_V", 0.9)
    assert time.perf_counter() - t0 < 4 * TIMEOUT_S
    # it answers again (its old script still running): the next operation ends
    # that script first (Z) and drops its output
    fake.unresponsive = False
    assert fake.running
    assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)


def test_a_dropped_connection_says_what_the_instrument_may_do_and_reconnects(
    core, fake, world, tmp_path
):
    cell_on(core, 1.0)
    start(core, Program.chronoamperometry(1.0, 3.0))
    time.sleep(0.3)
    fake.drop()
    assert busy_for(core, 3.0) < 1.0
    err = core.getProperty("Potentiostat", "LastError")
    assert "connection to the EmStat" in err and "was lost" in err
    assert "may still be running" in err and "E = 1 V" in err
    assert core.getProperty("EmStat", "Connection") == "Lost"
    assert "was lost" in core.getProperty("EmStat", "Connection_Error")
    with pytest.raises(RuntimeError, match="was lost"):
        core.setProperty("Potentiostat", "Potential_V", 0.5)
    # a fresh instrument (the cable back), the config reloaded: it works again
    with FakeEmStat(world) as again:
        core.loadSystemConfiguration(str(_write(tmp_path, again.port)))
        assert core.getProperty("EmStat", "Connection") == "Connected"
        cell_on(core, 1.0)
        assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)
        assert core.getProperty("Potentiostat", "LastError") == ""
        core.unloadAllDevices()


def test_over_tcp_the_hub_reconnects_in_place_after_a_drop(world, tmp_path):
    with FakeEmStat(world).start(tcp=True) as fake:
        assert fake.port.startswith("socket://")
        core = load(tmp_path, fake.port, "tcp.cfg")
        try:
            cell_on(core, 1.0)
            start(core, Program.chronoamperometry(1.0, 3.0))
            time.sleep(0.3)
            fake.drop()
            assert busy_for(core, 3.0) < 1.0
            assert "was lost" in core.getProperty("Potentiostat", "LastError")
            assert core.getProperty("EmStat", "Connection") == "Lost"
            assert fake.running  # the instrument goes on with its script, unheard
            # the link is back: reconnecting aborts that script and switches the cell off
            core.setProperty("EmStat", "Connection", "Connected")
            assert core.getProperty("EmStat", "Connection") == "Connected"
            assert not fake.running and not fake.cell_on
            cell_on(core, 1.0)
            assert run(core, Program.chronoamperometry(1.0, 0.1)).shape == (3, 20)
        finally:
            core.unloadAllDevices()


def _write(tmp_path, port: str):
    cfg = tmp_path / "again.cfg"
    cfg.write_text(config_text(port))
    return cfg


def test_bad_settings_are_refused_naming_the_value_and_the_limit(core):
    with pytest.raises(ValueError, match=r"1e-08 A is not a .*range.*\[1e-07, 2e-06"):
        core.setProperty("Potentiostat", "CurrentRange_A", 1e-8)
    with pytest.raises(ValueError, match=r"5000 Hz.*maximum of 500 Hz"):
        core.setProperty("Potentiostat", "SampleRate_Hz", 5000.0)
    with pytest.raises(ValueError, match=r"3 V is outside.*maximum 2 V"):
        core.setProperty("Potentiostat", "Potential_V", 3.0)
    assert core.getProperty("Potentiostat", "CurrentRange_A") == 1e-7
    assert core.getProperty("Potentiostat", "SampleRate_Hz") == RATE
    # a program beyond the instrument's range: refused before anything runs
    cell_on(core, 1.0)
    start(core, Program.linear_sweep(0.0, 2.5, 10.0))
    busy_for(core)
    assert "2.5 V is outside" in core.getProperty("Potentiostat", "LastError")


def test_the_defaults_the_potentiostat_starts_with_are_refused_at_run(fake, tmp_path):
    cfg = tmp_path / "bare.cfg"
    head = config_text(fake.port).split("Property,Core,Initialize,1")[0]
    cfg.write_text(head + "Property,Core,Initialize,1\n")
    core = load_core(cfg, signals="psygnal")
    try:
        core.setProperty("Potentiostat", "Cell", "On")
        with pytest.raises(ValueError, match="CurrentRange_A 1e-08 A is not a current range"):
            core.setProperty("Potentiostat", "Acquire", "Run")
    finally:
        core.unloadAllDevices()


# ---------------------------------------------------------- current monitor


def test_the_current_monitor_streams_timed_samples(core, fake, world):
    cell_on(core, 1.0)
    ctrl = loaded_hub("EmStat", PalmSensHub).controller
    got = []
    with ctrl.current_monitor("A", 100.0) as mon:
        assert mon.sample_rate_hz == 100.0
        t_end = time.monotonic() + 0.6
        while time.monotonic() < t_end:
            got.append(mon.read(0.2))
        with pytest.raises(RuntimeError, match="current monitor"):
            core.setProperty("Potentiostat", "Potential_V", 0.5)
        now = time.monotonic()
    data = np.hstack(got)
    # every sample arrived, none twice: the count matches the span at 100 Hz
    assert data.shape[0] == 2 and data.shape[1] >= 20
    assert data.shape[1] == round((data[0, -1] - data[0, 0]) / 0.01) + 1
    # the hardware's sample times, placed by the earliest arrival seen so far
    # (so a read may shift its samples a little earlier than the last read's)
    np.testing.assert_allclose(np.diff(data[0]), 0.01, atol=0.002)
    np.testing.assert_allclose(np.diff(got[-1][0]), 0.01, rtol=1e-9)
    # the last sample is recent (its transport delay is a few ms here)
    assert now - 0.5 < data[0, -1] <= now + 0.011
    expect = world.sample_current("A", 50, 100.0).mean()
    assert data[1].mean() == pytest.approx(expect, rel=0.1)
    assert not fake.running and fake.cell_on
    # a stage controller asking for 10 kHz gets the Pico's fastest, and is told so
    with ctrl.current_monitor("A", 10_000.0) as mon:
        assert mon.sample_rate_hz == 500.0
        assert mon.read(1.0).shape[1] >= 1


# --------------------------------------------------------------- the codec


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_package_values_round_trip(x):
    y = decode_value(encode_value(x))
    # 7 hex digits: the resolution is 1 in 1.3e8 at best, 1 in 1.3e5 just past a prefix
    assert y == pytest.approx(x, rel=8e-6, abs=1e-18)


@given(st.floats(min_value=-10.0, max_value=10.0, allow_nan=False))
def test_script_numbers_round_trip(x):
    text = script_number(x)
    assert "." not in text and "e" not in text.lower().rstrip("m")
    # exact when a prefix writes it exactly; else rounded to 1 nV (1 uV beyond 2.1 V)
    assert parse_number(text) == pytest.approx(x, rel=1e-9, abs=5e-7 if abs(x) > 2.1 else 5e-10)


def test_the_documented_package_form_decodes():
    pkg = decode_package("Pda7F85E36u;ba8000064p,14,203")
    assert [v.type for v in pkg] == ["da", "ba"]
    assert pkg[0].value == pytest.approx((0x7F85E36 - 2**27) * 1e-6)
    assert pkg[1].value == pytest.approx(100e-12) and pkg[1].status == 4 and pkg[1].range_index == 3
    assert math.isnan(decode_value("     nan"))
    assert script_number(0.5) == "500m" and script_number(1 / 300) == "3333333n"
    assert json.loads(Program.chronoamperometry(1.0, 0.1).to_json())  # the Waveform form
    assert threading.active_count() >= 1
