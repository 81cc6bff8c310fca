"""What keeps the pipette whole on a real rig: bounded searches, a safe height
before any landing, a resume after the pipette was changed, hops on a tilted
film before the plane is known, and Ctrl-C in the middle of a scan.

All on the simulated rig through the real core; the ground truth (the
pipette's state, the true surface) comes from the simulator's Sample device.
"""

from __future__ import annotations

import _thread
import threading

import numpy as np
import pytest
from _scan_helpers import (
    FrameCounter,
    assert_done_points_intact,
    in_contact,
    loaded_core,
    small_plan,
)

from napari_seccm.acquisition.plan import ApproachSettings
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import OK, ScanStore


@pytest.fixture
def seccm_core():
    yield from loaded_core()


def _surface(core) -> float:
    return float(core.getProperty("SECCM", "SurfaceHeight_um"))


def test_a_miss_on_the_first_landing_stops_the_scan_above_the_film(seccm_core, tmp_path):
    """A clogged pipette gives no current: the first search goes no deeper
    than search_depth_um, the scan stops with a message that says what to
    check, the pipette goes back to where it started, the cell off, and the
    point is not recorded (a resume retries it)."""
    core = seccm_core
    core.setXYPosition(-2.75, -2.75)  # the first point of the plan below
    start = _surface(core) + 10.0
    core.setPosition(start)
    core.waitForSystem()
    core.setProperty("SECCM", "Pipette_State", "clogged")
    plan = small_plan(approach=ApproachSettings(search_depth_um=6.0))
    path = tmp_path / "clogged.seccm.zarr"
    scan = Scan.create(core, plan, path)
    assert scan.run() == "error"
    with ScanStore.open(path) as s:
        reason = s.meta["reason"]
        assert s.done_mask().sum() == 0
    assert "no contact on the first landing" in reason, reason
    assert f"{start:.3f} um down to {start - 6.0:.3f} um" in reason, reason
    assert core.getPosition() == pytest.approx(start)
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert core.getProperty("SECCM", "Pipette_State") == "clogged"  # not broken


def test_an_error_before_any_landing_leaves_the_pipette_at_its_start(seccm_core, tmp_path):
    core = seccm_core
    start = _surface(core) + 8.0
    core.setPosition(start)
    core.waitForSystem()
    scan = Scan.create(core, small_plan(), tmp_path / "early.seccm.zarr")
    # the potentiostat fails on its first use in the first hop's measurement
    counter = FrameCounter(core)
    core.setProperty("SECCM", "InjectFailure", "potentiostat")
    try:
        assert scan.run() == "error"
    finally:
        core.setProperty("SECCM", "InjectFailure", "none")
        counter.disconnect()
    assert counter.n == 0
    assert not in_contact()
    assert core.getPosition() >= start - 1e-9
    assert core.getProperty("Potentiostat", "Cell") == "Off"


def test_a_resume_after_a_pipette_change_searches_and_forgets_old_heights(seccm_core, tmp_path):
    """The new pipette reaches 5 um less far (the surface is 5 um 'higher' in Z):
    the resumed session searches its first landing slowly from the safe height
    instead of diving to the old prediction, notes the offset, and completes
    without breaking the pipette."""
    core = seccm_core
    plan = small_plan()
    n = plan.n_points()
    path = tmp_path / "swap.seccm.zarr"
    scan = Scan.create(core, plan, path)
    counter = FrameCounter(core, at=30, action=scan.cancel)
    assert scan.run() == "canceled"
    counter.disconnect()
    old = float(core.getProperty("SECCM", "HeightOffset_um"))
    core.setProperty("SECCM", "HeightOffset_um", old + 5.0)  # the new pipette
    core.setPosition(core.getPosition() + 10.0)  # the user lifts after the swap
    resumed = Scan.resume(core, path)
    assert resumed.run() == "complete", resumed.store.meta.get("reason")
    # the resumed session records its rig and how it differs from the first
    assert resumed.rig_changes == [f"SECCM HeightOffset_um {old!r} -> {old + 5.0!r}"]
    assert core.getProperty("SECCM", "Pipette_State") == "ok"
    with ScanStore.open(path) as s:
        res = s.results()
        reason = s.meta["reason"]
        assert s.done_mask().all()
    assert "earlier landings are no longer used" in reason and "+5.0" in reason, reason
    with ScanStore.open(path) as s:
        last = s.meta["sessions"][-1]
    assert last["rig_changes"] == resumed.rig_changes and "devices" in last["rig"]
    assert (res["status"][30:] == OK).all()
    # the second session's landings are ~5 um above the first session's
    step = np.nanmedian(res["contact_z_um"][30:]) - np.nanmedian(res["contact_z_um"][:30])
    assert step == pytest.approx(5.0, abs=0.2)
    assert_done_points_intact(path)
    assert n == res["status"].size


@pytest.mark.parametrize(
    ("order", "tilt_x", "tilt_y", "width_um", "pitch_um"),
    [
        ("shuffled", 0.035, 0.0, 40.0, 2.0),
        ("raster", 0.035, 0.0, 40.0, 2.0),
        # the first row alone fits a plane with no slope across the rows
        ("serpentine", 0.0, 0.05, 100.0, 10.0),
        ("raster", 0.0, 0.05, 100.0, 10.0),
    ],
)
def test_hops_on_a_tilted_film_do_not_crash(
    seccm_core, tmp_path, order, tilt_x, tilt_y, width_um, pitch_um
):
    """2-3 deg of tilt: long hops before the plane is trusted would arrive below
    the rising film, or dive into it, without the tilt allowance; the plane is
    trusted only once the landings spread in both directions. Every lateral
    move ends above the true surface."""
    from napari_seccm.devices.simulated import simulated_rig

    core = seccm_core
    core.setProperty("SECCM", "TiltX_um_per_um", tilt_x)
    core.setProperty("SECCM", "TiltY_um_per_um", tilt_y)
    rig = simulated_rig()
    gaps: list[float] = []  # pipette height above the true surface after each XY move
    record = lambda *_: gaps.append(rig.probe().z_um - rig.surface_um())  # noqa: E731
    core.events.XYStagePositionChanged.connect(record)
    plan = small_plan(width_um=width_um, pitch_um=pitch_um, order=order)
    scan = Scan.create(core, plan, tmp_path / f"tilt-{order}.seccm.zarr")
    try:
        assert scan.run() == "complete", scan.store.meta.get("reason")
    finally:
        core.events.XYStagePositionChanged.disconnect(record)
    assert core.getProperty("SECCM", "Pipette_State") == "ok"
    assert len(gaps) >= plan.n_points() and min(gaps) > 0, f"min gap {min(gaps):.3f} um"
    with ScanStore.open(scan.store.path) as s:
        assert (s.results()["status"] == OK).all()


def test_ctrl_c_in_a_scan_retracts_switches_off_and_stops_the_caller(seccm_core, tmp_path):
    """A KeyboardInterrupt (Ctrl-C in a script) during scan.run(): the pipette is
    retracted, the cell off, the store closed as 'canceled' with its points,
    the interrupt reaches the caller, and the core can run the next scan."""
    core = seccm_core
    plan = small_plan()
    path = tmp_path / "ctrlc.seccm.zarr"
    scan = Scan.create(core, plan, path)
    # Ctrl-C from another thread, as the terminal delivers it, after 15 points
    counter = FrameCounter(
        core, at=15, action=lambda: threading.Timer(0.0, _thread.interrupt_main).start()
    )
    with pytest.raises(KeyboardInterrupt):
        scan.run()
    counter.disconnect()
    assert not in_contact()
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not core.mda.is_running()
    with ScanStore.open(path) as s:
        assert s.status == "canceled"
        assert "interrupted (KeyboardInterrupt)" in s.meta["reason"]
        done = int(s.done_mask().sum())
    assert 15 <= done < plan.n_points()
    assert_done_points_intact(path)
    # the same core runs the rest
    assert Scan.resume(core, path).run() == "complete"


def test_exiting_during_a_background_scan_cancels_it_cleanly(tmp_path):
    """A script (or napari) that exits while Scan.start()'s thread runs: the
    scan is canceled at exit (before the core unloads its devices), so the
    store is closed as canceled, not left 'running', with every measured
    point in it, and the exit does not hang."""
    import subprocess
    import sys
    import time

    path = tmp_path / "exit.seccm.zarr"
    script = tmp_path / "exit_mid_scan.py"
    script.write_text(
        "import sys, time\n"
        "from napari_seccm.configs import load_core\n"
        "from napari_seccm.acquisition.plan import ScanPlan, RectangleArea\n"
        "from napari_seccm.acquisition.scan import Scan\n"
        "core = load_core(signals='psygnal')\n"
        "plan = ScanPlan(area=RectangleArea(width_um=12, height_um=12), pitch_um=0.3)\n"
        f"scan = Scan.create(core, plan, {str(path)!r})\n"
        "core.setProperty('SECCM', 'TimeScale', 0.002)  # slow enough to exit mid-way\n"
        "scan.start()\n"
        "while scan.points_done < 40:\n"
        "    time.sleep(0.01)\n"
        "sys.exit(0)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exiting during a scan: canceling" in proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 30, f"the exit took {elapsed:.0f} s"
    with ScanStore.open(path) as s:
        assert s.status == "canceled", s.meta.get("reason")
        assert "retract failed" not in s.meta["reason"]
        assert "cell off failed" not in s.meta["reason"]
        done = int(s.done_mask().sum())
    assert 40 <= done < plan_points(12, 0.3)
    assert_done_points_intact(path)


def plan_points(width_um: float, pitch_um: float) -> int:
    return round(width_um / pitch_um) ** 2


def test_a_fault_while_measuring_lifts_above_that_landing(seccm_core, tmp_path):
    """On a tilted film the landing being measured can be the highest so far:
    a fault during its measurement must lift above it, not only above the
    earlier landings (0.5 um retract, no fly-back extra: little margin)."""
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan

    core = seccm_core
    core.setProperty("SECCM", "TiltX_um_per_um", 0.035)
    plan = ScanPlan(
        area=RectangleArea(width_um=40, height_um=40),
        pitch_um=10.0,
        order="serpentine",
        retract_um=0.5,
        flyback_extra_um=0.0,
    )
    scan = Scan.create(core, plan, tmp_path / "fault.seccm.zarr")
    counter = FrameCounter(
        core, at=2, action=lambda: core.setProperty("SECCM", "InjectFailure", "potentiostat")
    )
    try:
        assert scan.run() == "fault"  # a device failure: a fault of the rig
    finally:
        counter.disconnect()
        core.setProperty("SECCM", "InjectFailure", "none")
    assert not in_contact()
    z, surface = core.getPosition(), _surface(core)
    assert z - surface >= plan.retract_um - 0.05, (z, surface)
    assert core.getProperty("Potentiostat", "Cell") == "Off"


def test_cancel_right_after_start_measures_nothing(seccm_core, tmp_path):
    """Stop pressed while the scan is still being prepared (the runner not yet
    running) is not lost."""
    scan = Scan.create(core := seccm_core, small_plan(), tmp_path / "early.seccm.zarr")
    scan.start()
    scan.cancel()
    assert scan.wait(60) == "canceled"
    with ScanStore.open(scan.store.path) as s:
        assert s.meta["reason"] == "stopped by the user"
        assert s.done_mask().sum() <= 1
    assert core.getProperty("Potentiostat", "Cell") == "Off"


def test_a_store_planned_before_a_check_was_added_still_opens(seccm_core, tmp_path):
    """Plans are re-read from their store: a check added later (here: a
    threshold above the range's full scale) refuses new plans but does not
    lock old stores out."""
    import zarr

    scan = Scan.create(seccm_core, small_plan(width_um=1.0), tmp_path / "old.seccm.zarr")
    root = zarr.open_group(str(scan.store.path), mode="r+")
    attrs = dict(root.attrs["seccm"])
    plan = dict(attrs["plan"])
    plan["approach"] = {**plan["approach"], "threshold_A": 5e-8}  # above the 10 nA range
    attrs["plan"] = plan
    root.attrs["seccm"] = attrs
    scan.store.close()
    with ScanStore.open(scan.store.path) as s:
        assert s.plan().approach.threshold_A == 5e-8
