"""The asynchronous device contract, the interlocks and the emergency stop,
through the real pymmcore-plus core only (no device object is touched).

At ``TimeScale`` 1 the simulated instrument runs in real time, so a move, an
approach and a waveform take their physical time: ``busy()`` must be true
meanwhile, and ``core.stop`` / ``Acquire = Abort`` / the emergency stop must end
them within 100 ms of wall time.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
from _scan_helpers import in_contact, loaded_core, small_plan

import napari_seccm
from napari_seccm.acquisition.control import latched_devices, wait_idle
from napari_seccm.acquisition.plan import ApproachSettings, SafetySettings
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import ScanStore

#: an abort must take effect within this much wall time, s
ABORT_S = 0.1


@pytest.fixture
def core():
    yield from loaded_core()


def surface(core) -> float:
    return float(core.getProperty("SECCM", "SurfaceHeight_um"))


def busy_for(core, dev: str, timeout_s: float = 5.0) -> float:
    """Wall time until ``dev`` is idle, s."""
    t0 = time.perf_counter()
    while core.deviceBusy(dev):
        assert time.perf_counter() - t0 < timeout_s, f"{dev} still busy"
        time.sleep(0.0005)
    return time.perf_counter() - t0


def land(core) -> float:
    """Land the pipette (fast mode); the contact height."""
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    core.setPosition(surface(core) + 1.0)
    core.waitForSystem()
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface(core) - 0.02)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForSystem()
    assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
    return float(core.getProperty("PiezoZ", "Approach_ContactZ_um"))


# ------------------------------------------------------- busy and stop
def test_a_z_move_is_busy_until_it_ends_and_stop_ends_it_at_once(core):
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Speed_um_per_s", 10.0)
    z0 = core.getPosition()
    t0 = time.perf_counter()
    core.setPosition(z0 + 5.0)  # 0.5 s at 10 um/s
    assert time.perf_counter() - t0 < 0.05, "the move must return at once"
    assert core.deviceBusy("PiezoZ")
    time.sleep(0.2)
    mid = core.getPosition()
    assert z0 + 0.5 < mid < z0 + 4.5  # the position is live while moving
    t_stop = time.perf_counter()
    core.stop("PiezoZ")
    assert busy_for(core, "PiezoZ") < ABORT_S
    assert time.perf_counter() - t_stop < ABORT_S
    stopped = core.getPosition()
    assert z0 + 1.0 < stopped < z0 + 4.0
    time.sleep(0.3)
    assert core.getPosition() == stopped  # nothing moves after the stop


def test_an_xy_move_is_busy_and_stops(core):
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoXY", "Speed_um_per_s", 10.0)
    core.setXYPosition(10.0, 0.0)
    assert core.deviceBusy("PiezoXY")
    time.sleep(0.3)
    core.stop("PiezoXY")
    assert busy_for(core, "PiezoXY") < ABORT_S
    x, y = core.getXYPosition()
    assert 1.0 < x < 6.0 and y == 0.0


def test_an_approach_is_busy_and_stop_leaves_the_pipette_above_the_film(core):
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    core.setPosition(surface(core) + 5.0)
    core.waitForSystem()
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 1.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface(core) - 0.02)
    core.setProperty("PiezoZ", "Approach", "Start")  # 5 s to the surface
    assert core.deviceBusy("PiezoZ")
    assert core.getProperty("PiezoZ", "Approach_Result") == "running"
    time.sleep(0.3)
    core.stop("PiezoZ")
    assert busy_for(core, "PiezoZ") < ABORT_S
    assert core.getProperty("PiezoZ", "Approach_Result") == "aborted"
    z = core.getPosition()
    assert surface(core) + 4.0 < z < surface(core) + 4.9
    assert not in_contact()


def test_a_waveform_is_busy_and_abort_ends_the_trace_there(core):
    land(core)
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("Potentiostat", "Waveform", '[{"ramp": [0.0, 1.0], "t": 2.0}]')
    core.setProperty("Potentiostat", "Acquire", "Run")
    assert core.deviceBusy("Potentiostat")
    assert core.getProperty("Potentiostat", "Acquire") == "Run"
    time.sleep(0.4)
    core.setProperty("Potentiostat", "Acquire", "Abort")
    assert busy_for(core, "Potentiostat") < ABORT_S
    n = core.getProperty("Potentiostat", "LastTrace_Samples")
    fs = core.getProperty("Potentiostat", "SampleRate_Hz")
    assert 0.3 * fs < n < 0.8 * fs  # about 0.4 s of a 2 s program


def test_a_second_operation_while_busy_is_refused(core):
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Speed_um_per_s", 10.0)
    z0 = core.getPosition()
    core.setPosition(z0 + 3.0)
    with pytest.raises(RuntimeError, match="still busy"):
        core.setPosition(z0 + 1.0)
    core.stop("PiezoZ")
    busy_for(core, "PiezoZ")


def test_completion_is_announced_through_the_core_events(core):
    seen: list[tuple] = []
    core.events.stagePositionChanged.connect(lambda d, z: seen.append(("z", d, z)))
    core.events.propertyChanged.connect(lambda d, p, v: seen.append(("prop", d, p, v)))
    land(core)
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForSystem()
    assert any(e[0] == "z" and e[1] == "PiezoZ" for e in seen)
    assert ("prop", "PiezoZ", "Approach_Result", "contact") in seen
    n = str(core.getProperty("Potentiostat", "LastTrace_Samples"))
    assert ("prop", "Potentiostat", "LastTrace_Samples", n) in seen


# ------------------------------------------------------------ interlocks
def test_interlocks_refuse_a_script_and_change_nothing(core):
    cz = land(core)
    z, xy = core.getPosition(), core.getXYPosition()
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setPosition(cz - 10.0)
    with pytest.raises(ValueError, match="lateral move refused"):
        core.setXYPosition(xy[0] + 1.0, xy[1])
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setRelativePosition(-1.0)
    assert core.getPosition() == z and core.getXYPosition() == xy
    assert core.getProperty("SECCM", "Pipette_State") == "ok"
    # lifted above the margin: lateral moves are allowed again, lower Z still not
    core.setPosition(cz + 1.0)
    core.waitForSystem()
    core.setXYPosition(xy[0] + 1.0, xy[1])
    core.waitForSystem()
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setPosition(cz - 0.5)
    # 1 um from the contact the surface may be up to tan(3 deg) x 1 um higher
    tilt = math.tan(math.radians(core.getProperty("SECCM", "Interlock_MaxTilt_deg")))
    floor = cz + tilt * 1.0
    assert core.getProperty("PiezoZ", "Interlock_MinZ_um") == pytest.approx(floor, abs=1e-6)
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setPosition(floor - 0.01)


def test_an_expert_can_lift_the_interlock_and_it_is_logged(core, caplog):
    cz = land(core)
    core.setPosition(cz + 1.0)
    core.waitForSystem()
    core.setProperty("SECCM", "Interlock", "Off")
    assert "interlocks switched OFF" in caplog.text
    assert math.isnan(core.getProperty("PiezoZ", "Interlock_MinZ_um"))
    core.setPosition(cz - 0.01)  # allowed now (a shallow dip, the tip survives)
    core.waitForSystem()
    assert core.getProperty("PiezoZ", "LastError") == ""
    core.setProperty("SECCM", "Interlock", "On")


@pytest.mark.gui
def test_interlocks_hold_against_pymmcore_widgets_stage_widget(core, qtbot, caplog, monkeypatch):
    """The standard stage control of the Micro-Manager / napari world, built
    offline (its icons drawn by napari-seccm) and clicked as a user would: the
    devices refuse, nothing moves, the pipette stays whole."""
    # importing pymmcore-widgets sets PYMM_SIGNALS_BACKEND=qt for the whole
    # process (and its children): keep that to this test
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "psygnal")
    from pymmcore_widgets import StageWidget
    from pymmcore_widgets.control._stage_widget import MoveStageButton

    from napari_seccm.widgets.offline_icons import provide_offline_icons

    provide_offline_icons()
    cz = land(core)
    z = core.getPosition()
    w = StageWidget("PiezoZ", mmcore=core)
    qtbot.addWidget(w)
    w.setStep(10.0)
    down = next(b for b in w.findChildren(MoveStageButton) if b.ymag == -1)
    down.click()
    qtbot.wait(200)  # the widget polls its move in 20 ms steps
    # pymmcore-plus's move accumulator logs the device's refusal
    assert "below the last contact height" in caplog.text
    core.waitForSystem()
    assert core.getPosition() == z
    assert core.getProperty("SECCM", "Pipette_State") == "ok"
    # lifting with the widget is fine
    up = next(b for b in w.findChildren(MoveStageButton) if b.ymag == 1)
    w.setStep(2.0)
    up.click()
    qtbot.waitUntil(lambda: core.getPosition() > z + 1.9, timeout=3000)
    assert core.getPosition() == pytest.approx(z + 2.0)
    assert cz < core.getPosition()


# ------------------------------------------------------- emergency stop
def _moving(core, dev: str) -> bool:
    a = core.getPosition() if dev == "PiezoZ" else core.getXYPosition()
    time.sleep(0.05)
    b = core.getPosition() if dev == "PiezoZ" else core.getXYPosition()
    return a != b


@pytest.mark.parametrize("what", ["z move", "approach", "cv"])
def test_emergency_stop_halts_latches_and_resets(core, what):
    if what == "cv":
        land(core)
    core.setProperty("SECCM", "TimeScale", 1.0)
    if what == "z move":
        core.setProperty("PiezoZ", "Speed_um_per_s", 50.0)
        core.setPosition(core.getPosition() - 20.0)
        dev = "PiezoZ"
    elif what == "approach":
        core.setProperty("Potentiostat", "Cell", "On")
        core.setProperty("Potentiostat", "Potential_V", 1.0)
        core.setProperty("PiezoZ", "Approach_StopZ_um", surface(core) - 0.02)
        core.setProperty("PiezoZ", "Approach", "Start")
        dev = "PiezoZ"
    else:
        cv = '[{"ramp": [1.0, -1.0], "t": 2.0}, {"ramp": [-1.0, 1.0], "t": 2.0}]'
        core.setProperty("Potentiostat", "Waveform", cv)
        core.setProperty("Potentiostat", "Acquire", "Run")
        dev = "Potentiostat"
    time.sleep(0.2)
    assert core.deviceBusy(dev)
    t0 = time.perf_counter()
    done = napari_seccm.emergency_stop(core)
    assert "SECCM: latched" in done
    assert busy_for(core, dev) < ABORT_S
    assert time.perf_counter() - t0 < ABORT_S + 0.05
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    z, xy = core.getPosition(), core.getXYPosition()
    assert not _moving(core, "PiezoZ")
    # latched: every move and waveform is refused, naming the latch
    for act in (
        lambda: core.setPosition(z + 1.0),
        lambda: core.setXYPosition(xy[0] + 1.0, xy[1]),
        lambda: core.setProperty("PiezoZ", "Approach", "Start"),
        lambda: core.setProperty("Potentiostat", "Acquire", "Run"),
        lambda: core.setProperty("Potentiostat", "Cell", "On"),
    ):
        with pytest.raises(RuntimeError, match="emergency stop of SECCM is latched"):
            act()
    time.sleep(0.2)
    assert core.getPosition() == z and core.getXYPosition() == xy
    assert latched_devices(core) == ["SECCM"]
    assert napari_seccm.reset_emergency_stop(core) == ["SECCM"]
    core.setPosition(z + 1.0)
    assert wait_idle(core, "PiezoZ", 5.0)
    assert core.getPosition() == pytest.approx(z + 1.0)


# -------------------------------------------------- the engine on top of it
def test_cancel_during_a_50_um_search_ends_retracted_within_a_second(core, tmp_path):
    start = surface(core) + 45.0
    core.setPosition(start)
    core.waitForSystem()
    core.setProperty("SECCM", "TimeScale", 1.0)
    plan = small_plan(approach=ApproachSettings(search_depth_um=50.0, search_speed_um_per_s=5.0))
    scan = Scan.create(core, plan, tmp_path / "search.seccm.zarr")
    scan.start()
    t_end = time.perf_counter() + 10
    while core.getProperty("PiezoZ", "Approach_Result") != "running":
        assert time.perf_counter() < t_end, "the search did not start"
        time.sleep(0.005)
    time.sleep(0.5)
    t0 = time.perf_counter()
    scan.cancel()
    assert scan.wait(5) == "canceled"
    assert time.perf_counter() - t0 < 1.0
    assert core.getPosition() == pytest.approx(start, abs=1e-6)  # back at the start
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    with ScanStore.open(scan.store.path) as s:
        assert s.done_mask().sum() == 0  # nothing half-measured was kept


def test_a_device_that_never_finishes_is_a_fault_not_a_hang(core, tmp_path):
    plan = small_plan(safety=SafetySettings(deadline_margin_s=0.3))
    scan = Scan.create(core, plan, tmp_path / "hang.seccm.zarr")
    hit = threading.Event()

    def inject(*_):
        if not hit.is_set():
            hit.set()
            core.setProperty("SECCM", "InjectFailure", "potentiostat-hang")

    core.mda.events.frameReady.connect(inject)
    t0 = time.perf_counter()
    status = scan.run()
    core.mda.events.frameReady.disconnect(inject)
    assert status == "fault"
    assert time.perf_counter() - t0 < 30
    with ScanStore.open(scan.store.path) as s:
        reason = s.meta["reason"]
        assert s.done_mask().sum() == 1  # the point measured before is kept
    assert "Potentiostat did not finish the measurement program" in reason
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not in_contact()


def test_the_emergency_stop_during_a_scan_ends_it_as_a_fault(core, tmp_path):
    core.setProperty("SECCM", "TimeScale", 0.05)
    scan = Scan.create(core, small_plan(), tmp_path / "estop.seccm.zarr")
    scan.start()
    t_end = time.perf_counter() + 20
    while scan.points_done < 3:
        assert time.perf_counter() < t_end
        time.sleep(0.01)
    napari_seccm.emergency_stop(core)
    assert scan.wait(5) == "fault"
    z = core.getPosition()
    with ScanStore.open(scan.store.path) as s:
        assert "emergency stop" in s.meta["reason"]
        assert s.done_mask().sum() >= 3
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    time.sleep(0.2)
    assert core.getPosition() == z  # nothing moves until reset, not even the retract
    napari_seccm.reset_emergency_stop(core)


def test_a_scan_started_in_contact_after_a_landing_by_hand_lifts_first(core, tmp_path):
    """The interlock remembers a landing made by hand; the engine lifts clear of
    it before its first lateral move instead of being refused."""
    cz = land(core)
    assert in_contact()
    plan = small_plan(width_um=2.0, pitch_um=1.0, retract_um=0.3)  # less than the margin
    scan = Scan.create(core, plan, tmp_path / "after_hand.seccm.zarr")
    assert scan.run() == "complete", scan.store.meta["reason"]
    assert not in_contact()
    assert core.getPosition() > cz


# ----------------------------------------------------- found in review
def test_a_listener_may_ask_the_core_about_the_device_from_its_event(core):
    """At TimeScale 0 a move ends inside the call that started it; a listener
    of its event that asks the core about the device must not deadlock."""
    seen = []
    z_target = core.getPosition() + 1.0

    def on_z(label, z):
        seen.append((core.getPosition(label), core.deviceBusy(label)))

    def on_trace(dev, prop, value):
        if prop == "LastTrace_Samples":
            seen.append(core.getProperty(dev, "LastTrace").shape)

    core.events.stagePositionChanged.connect(on_z)
    core.events.propertyChanged.connect(on_trace)
    done = threading.Event()

    def act():
        core.setPosition(z_target)
        core.setProperty("Potentiostat", "Acquire", "Run")
        done.set()

    threading.Thread(target=act, daemon=True).start()
    assert done.wait(5), "a listener deadlocked the device"
    z_seen, busy_seen = seen[0]
    assert z_seen == pytest.approx(z_target)
    assert not busy_seen  # the event comes once the device is idle
    assert seen[1][0] == 3


def test_axes_do_not_overlap_lateral_during_approach_and_approach_during_lateral(core):
    cz = land(core)
    core.setPosition(cz + 5.0)
    core.waitForSystem()
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface(core) - 0.02)
    core.setProperty("PiezoZ", "Approach", "Start")
    with pytest.raises(ValueError, match="lateral move refused while PiezoZ is moving"):
        core.setXYPosition(5.0, 0.0)
    core.stop("PiezoZ")
    busy_for(core, "PiezoZ")
    core.setProperty("PiezoXY", "Speed_um_per_s", 10.0)
    core.setXYPosition(5.0, 0.0)
    with pytest.raises(ValueError, match="while PiezoXY is moving laterally"):
        core.setProperty("PiezoZ", "Approach", "Start")
    assert core.getProperty("PiezoZ", "Approach_Result") == "aborted"  # unchanged
    with pytest.raises(ValueError, match="while PiezoXY is moving laterally"):
        core.setPosition(core.getPosition() - 1.0)
    core.stop("PiezoXY")
    busy_for(core, "PiezoXY")
    assert core.getProperty("PiezoXY", "LastError").endswith("was stopped before its end")


def test_a_contact_reported_too_low_does_not_open_the_way_into_the_film(core):
    core.setProperty("SECCM", "InjectFailure", "contact-low")
    land(core)
    assert core.getProperty("PiezoZ", "Approach_ContactZ_um") < surface(core) - 4.0
    # the interlock keeps where the stage stopped, not the reported height
    assert core.getProperty("PiezoZ", "Interlock_MinZ_um") > surface(core)
    with pytest.raises(ValueError, match="below the last contact height"):
        core.setPosition(surface(core) - 2.0)
    assert core.getProperty("SECCM", "Pipette_State") == "ok"


def test_a_broken_pipette_ends_the_scan_as_a_fault(core, tmp_path):
    # hops that take wall time, as on an instrument (the engine reads the
    # pipette's health at most every 20 ms)
    core.setProperty("SECCM", "TimeScale", 0.2)
    scan = Scan.create(core, small_plan(width_um=2.0, pitch_um=0.5), tmp_path / "b.seccm.zarr")
    hit = threading.Event()

    def brk(*_):
        if not hit.is_set():
            hit.set()
            core.setProperty("SECCM", "Pipette_State", "broken")

    core.mda.events.frameReady.connect(brk)
    assert scan.run() == "fault"
    core.mda.events.frameReady.disconnect(brk)
    with ScanStore.open(scan.store.path) as s:
        assert "pipette broken" in s.meta["reason"]
        assert s.done_mask().sum() == 1  # nothing measured with the broken tip
    assert core.getProperty("Potentiostat", "Cell") == "Off"


def test_a_step_stopped_by_another_client_is_never_a_point(core, tmp_path):
    """A stage widget's STOP during the approach, or Acquire = Abort from a
    script: the scan ends as a fault, and that point is not recorded (a resume
    measures it); the points before are kept."""
    core.setProperty("SECCM", "TimeScale", 0.2)
    plan = small_plan(width_um=2.0, pitch_um=0.5)
    scan = Scan.create(core, plan, tmp_path / "foreign.seccm.zarr")
    scan.start()
    t_end = time.perf_counter() + 30
    while not (
        scan.points_done >= 2 and core.getProperty("PiezoZ", "Approach_Result") == "running"
    ):
        assert time.perf_counter() < t_end
        time.sleep(0.002)
    core.stop("PiezoZ")
    assert scan.wait(10) == "fault"
    with ScanStore.open(scan.store.path) as s:
        done = int(s.done_mask().sum())
        assert "stopped before its end" in s.meta["reason"]
    assert done == scan.points_done
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not in_contact()


def test_two_devices_on_one_probe_are_refused(tmp_path):
    from napari_seccm.configs import SIMULATED, config_path, load_core

    text = config_path(SIMULATED).read_text()
    text = text.replace(
        "#py Parent,PiezoZ,SECCM\n",
        "#py Parent,PiezoZ,SECCM\n#py pyDevice,PiezoZ2,napari_seccm.devices,PiezoZ\n"
        "#py Parent,PiezoZ2,SECCM\n",
    )
    cfg = tmp_path / "two_z.cfg"
    cfg.write_text(text)
    from napari_seccm.devices._hub import live_hubs

    before = sum(1 for h in live_hubs() if h.controller is not None)
    # the second Z stage on probe A is refused at initialization, and the
    # load with it: no rig with one of its stages uninitialized
    with pytest.raises(RuntimeError, match=r"would both drive probe 'A'.*nothing is loaded"):
        load_core(cfg, signals="psygnal")
    assert sum(1 for h in live_hubs() if h.controller is not None) == before
