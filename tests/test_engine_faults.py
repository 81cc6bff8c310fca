"""The hop, state by state, against a scripted rig with no physics.

Every fault of items 10-11 of the device contract: a stage that does not reach
its target, a contact height that disagrees with the stage, a potentiostat that
returns no samples or NaN, a device that never finishes (or ignores the stop),
a cell that cannot be switched off. Each scan must end with the probe lifted
and the cell off wherever the devices still answer, say honestly where they do
not, and never record an untrusted reading as an ``ok`` point.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from _fake_rig import SURFACE_Z_UM, controller, fake_config
from _scan_helpers import small_plan

from napari_seccm.acquisition.plan import SafetySettings
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import FAULT, OK, ScanStore
from napari_seccm.configs import load_core

RETRACT = 1.0  # the plan's retract, um


@pytest.fixture
def rig(tmp_path):
    core = load_core(fake_config(tmp_path), signals="psygnal")
    ctrl = controller()
    yield core, ctrl
    ctrl.release.set()
    core.unloadAllDevices()
    del core
    gc.collect()


def scan(core, path, n_side: int = 3, **safety) -> tuple[str, dict, dict]:
    plan = small_plan(
        width_um=float(n_side),
        pitch_um=1.0,
        retract_um=RETRACT,
        safety=SafetySettings(deadline_margin_s=0.2, **safety),
    )
    status = Scan.create(core, plan, path).run()
    with ScanStore.open(path) as s:
        return status, dict(s.meta), s.results()


def lateral_moves_were_high(ctrl) -> bool:
    return all(
        not in_contact and z >= SURFACE_Z_UM + 0.5
        for op, z, (x, y, in_contact) in (e for e in ctrl.log if e[0] == "xy")
    )


def ends_safe(ctrl) -> bool:
    return not ctrl.cell and not ctrl.in_contact and ctrl.z >= SURFACE_Z_UM + RETRACT - 1e-6


def test_a_clean_scan_on_the_scripted_rig(rig, tmp_path):
    core, ctrl = rig
    status, meta, res = scan(core, tmp_path / "ok.seccm.zarr")
    assert status == "complete", meta["reason"]
    assert (res["status"] == OK).all()
    np.testing.assert_allclose(res["contact_z_um"], SURFACE_Z_UM)
    np.testing.assert_allclose(res["value_A"], 1e-9)
    assert lateral_moves_were_high(ctrl)
    assert ends_safe(ctrl)


def test_a_stuck_xy_stage_gives_fault_points_never_ok_ones(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["xy"] = ["ok", "ok", "ok"]  # three points, then it sticks
    ctrl.fault["xy"] = "stuck"
    status, meta, res = scan(core, tmp_path / "stuck.seccm.zarr", max_consecutive_faults=3)
    assert status == "fault"
    assert "points in a row with readings that cannot be trusted" in meta["reason"]
    assert "ended" in meta["reason"] and "from" in meta["reason"]
    st = res["status"]
    assert (st[:3] == OK).all()
    assert (st[3:6] == FAULT).all()
    assert np.isnan(res["value_A"][3:6]).all()  # nothing measured at the wrong place
    assert [e[0] for e in ctrl.log].count("program") == 3
    assert ends_safe(ctrl)


def test_a_contact_height_reported_5_um_low_never_drives_the_pipette_down(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["approach"] = ["ok"] * 3  # the first landing's search, points 0 and 1
    ctrl.fault["approach"] = "low"
    status, meta, res = scan(core, tmp_path / "low.seccm.zarr", max_consecutive_faults=3)
    assert status == "fault"
    assert "disagrees with where" in meta["reason"] or "outside the range" in meta["reason"]
    assert (res["status"][2:5] == FAULT).all()
    # the pipette was never commanded below where the approach stopped it
    assert min(z for op, _, z in ctrl.log if op == "z") >= SURFACE_Z_UM - 0.01
    assert lateral_moves_were_high(ctrl)
    assert ends_safe(ctrl)


@pytest.mark.parametrize("fault", ["nan", "empty"])
def test_samples_that_are_not_numbers_are_faults(rig, tmp_path, fault):
    core, ctrl = rig
    ctrl.next["program"] = ["ok"]
    ctrl.fault["program"] = fault
    status, _, res = scan(core, tmp_path / f"{fault}.seccm.zarr", max_consecutive_faults=2)
    assert status == "fault"
    assert res["status"][0] == OK
    assert (res["status"][1:3] == FAULT).all()
    assert np.isnan(res["value_A"][1:3]).all()
    assert ends_safe(ctrl)


@pytest.mark.parametrize("op", ["program", "approach", "xy", "z"])
def test_a_device_that_never_finishes_is_stopped_and_the_scan_ends_fault(rig, tmp_path, op):
    core, ctrl = rig
    ctrl.next[op] = ["ok"] * 4  # the first point (and its moves) go through
    ctrl.fault[op] = "hang"
    status, meta, _ = scan(core, tmp_path / f"hang-{op}.seccm.zarr")
    assert status == "fault"
    assert "did not finish" in meta["reason"]
    assert "still busy" not in meta["reason"]  # it obeyed the stop
    if op != "z":
        assert ends_safe(ctrl)
    else:  # the hung Z stage was stopped; the retract then works
        assert not ctrl.cell


def test_a_z_stage_deaf_to_the_stop_is_reported_honestly(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["approach"] = ["ok"] * 2  # the first landing's search and point 0
    ctrl.fault["approach"] = "hang-forever"
    status, meta, res = scan(core, tmp_path / "deaf.seccm.zarr")
    assert status == "fault"
    reason = meta["reason"]
    assert "still busy" in reason
    assert "retract failed" in reason  # the probe may still be low: said, not hidden
    assert not ctrl.cell  # the potentiostat still answers: the cell is off
    assert res["status"][0] == OK


def test_a_cell_that_cannot_be_switched_off_is_never_complete(rig, tmp_path):
    core, ctrl = rig
    ctrl.fault["cell-off"] = "error"
    status, meta, res = scan(core, tmp_path / "cell.seccm.zarr", n_side=2)
    assert (res["status"] == OK).all()  # every point measured...
    assert status == "fault"  # ...but the rig is not safe: never 'complete'
    assert "switching the cell off failed" in meta["reason"]


def test_a_z_move_that_ends_short_is_a_fault(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["z"] = ["ok"] * 3
    ctrl.fault["z"] = "short"
    status, meta, _ = scan(core, tmp_path / "short.seccm.zarr")
    assert status == "fault"
    assert "instead of" in meta["reason"]
    assert not ctrl.cell


def test_an_xy_stage_error_is_a_fault_with_its_message(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["xy"] = ["ok"]
    ctrl.fault["xy"] = "error"
    status, meta, _ = scan(core, tmp_path / "xyerr.seccm.zarr")
    assert status == "fault"
    assert "scripted xy error" in meta["reason"]
    assert ends_safe(ctrl)


def test_misses_are_recorded_and_stop_the_scan_lifted(rig, tmp_path):
    from napari_seccm.acquisition.store import NO_CONTACT

    core, ctrl = rig
    ctrl.next["approach"] = ["ok"] * 2
    ctrl.fault["approach"] = "miss"
    status, meta, res = scan(core, tmp_path / "miss.seccm.zarr")
    assert status == "error"  # the plan's limit of misses in a row, not a device fault
    assert "points in a row without contact" in meta["reason"]
    assert res["status"][0] == OK
    assert (res["status"][1:6] == NO_CONTACT).all()
    assert np.isnan(res["contact_z_um"][1:6]).all()
    assert lateral_moves_were_high(ctrl)
    assert ends_safe(ctrl)


def test_a_contact_reported_above_where_the_search_started_is_a_fault(rig, tmp_path):
    core, ctrl = rig
    ctrl.next["approach"] = ["ok"] * 2
    ctrl.fault["approach"] = "high"
    status, meta, res = scan(core, tmp_path / "high.seccm.zarr")
    assert status == "fault"
    assert (res["status"][1:4] == FAULT).all()
    assert "outside the range searched" in meta["reason"]
    assert ends_safe(ctrl)


def test_stop_during_a_program_that_never_ends_cancels_not_faults(rig, tmp_path):
    """Stop is not a fault: the hung program is aborted at once, the point is
    not recorded (a resume measures it), the pipette retracted, the cell off."""
    import threading
    import time

    core, ctrl = rig
    ctrl.next["program"] = ["ok"]
    ctrl.fault["program"] = "hang"
    plan = small_plan(width_um=3.0, pitch_um=1.0, retract_um=RETRACT)
    s = Scan.create(core, plan, tmp_path / "stop.seccm.zarr")
    s.start()
    t_end = time.monotonic() + 10
    while not (core.deviceBusy("Potentiostat") and s.points_done == 1):
        assert time.monotonic() < t_end
        time.sleep(0.005)
    t0 = time.monotonic()
    threading.Timer(0.05, s.cancel).start()
    assert s.wait(10) == "canceled"
    assert time.monotonic() - t0 < 5.0  # well inside the 5 s deadline margin
    with ScanStore.open(s.store.path) as st:
        assert st.done_mask().sum() == 1
        assert st.meta["reason"] == "stopped by the user"
    assert ends_safe(ctrl)
