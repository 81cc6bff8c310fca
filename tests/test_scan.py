"""Hopping scans end to end on the simulated rig, through the real core's MDA runner.

Ground truth comes from the simulator (the ``Sample`` device's read-only
``SurfaceHeight_um``, and the simulated film's domain labels), never from the
code under test.
"""

from __future__ import annotations

import gc
import math
import time
from pathlib import Path

import numpy as np
import pytest
from _scan_helpers import (
    FrameCounter,
    angle_diff_mod180,
    assert_done_points_intact,
    close_core,
    detrend_plane,
    dominant_wavevector,
    done_count,
    in_contact,
    loaded_core,
    small_plan,
    wait_for,
)

from napari_seccm.acquisition.plan import (
    ApproachSettings,
    RectangleArea,
    SafetySettings,
    ScanPlan,
)
from napari_seccm.acquisition.scan import Scan, run_scan
from napari_seccm.acquisition.store import NO_CONTACT, OK, ScanStore
from napari_seccm.configs import load_core


@pytest.fixture
def seccm_core():
    """The simulated SECCM (``seccm_simulated.cfg``) in a fresh UniMMCore."""
    yield from loaded_core()


STRIPE_PERIOD_UM = 2.0
# not the simulator's default (60 deg), so the test sees what it set
STRIPE_ANGLE_DEG = 30.0


# ------------------------------------------------------- one map, many checks
@pytest.fixture(scope="module")
def stripe_scan(tmp_path_factory):
    """A 12 x 12 um map at 0.5 um of a film with 2 um stripes at 30 deg.

    Scans once for the module, records the simulator's truth, and unloads the
    core before the tests run (one core at a time per process).
    """
    from napari_seccm.devices.simulated import simulated_rig

    path = tmp_path_factory.mktemp("stripes") / "map.seccm.zarr"
    core = load_core()
    try:
        core.setProperty("SECCM", "StripePeriod_um", STRIPE_PERIOD_UM)
        core.setProperty("SECCM", "StripeAngle_deg", STRIPE_ANGLE_DEG)
        # every meniscus lands at its height: the contact heights are checked
        # against the simulated surface
        core.setProperty("SECCM", "Pipette_LateLandingProbability", 0.0)
        plan = ScanPlan(area=RectangleArea(width_um=12.0, height_um=12.0), pitch_um=0.5)
        calls: list[tuple[int, int]] = []
        scan = run_scan(core, plan, path, on_point=lambda done, total: calls.append((done, total)))
        # keep facts, not the Scan (it holds the core, which must be released)
        outcome = {
            "final_status": scan.final_status,
            "error": scan.error,
            "points_done": scan.points_done,
            "n_total": scan.n_total,
        }
        del scan
        end_state = {
            "z": core.getPosition(),
            "cell": core.getProperty("Potentiostat", "Cell"),
            "in_contact": in_contact(),
        }
        with ScanStore.open(path) as s:
            res = s.results()
        film = simulated_rig().film
        truth = {
            "period": core.getProperty("SECCM", "StripePeriod_um"),
            "angle": core.getProperty("SECCM", "StripeAngle_deg"),
            "meniscus": core.getProperty("SECCM", "Pipette_MeniscusHeight_um"),
            "label": film.domain_label(res["x_um"], res["y_um"]),
            "surface": film.surface_height_um(res["x_um"], res["y_um"]),
            "probe": {},
        }
        # the Sample device's own reading of the surface under the pipette, a few points
        for i in (0, 37, 300, len(res["x_um"]) - 1):
            core.setXYPosition(float(res["x_um"][i]), float(res["y_um"][i]))
            core.waitForSystem()
            truth["probe"][i] = core.getProperty("SECCM", "SurfaceHeight_um")
    finally:
        close_core(core)
        del core
        gc.collect()
    return {
        "path": path,
        "plan": plan,
        "scan": outcome,
        "calls": calls,
        "end": end_state,
        "truth": truth,
    }


def test_scan_completes_every_point(stripe_scan):
    scan, plan, path = stripe_scan["scan"], stripe_scan["plan"], stripe_scan["path"]
    n = plan.n_points()
    assert n == 576
    assert scan["final_status"] == "complete"
    assert scan["error"] is None
    assert scan["points_done"] == scan["n_total"] == n
    with ScanStore.open(path) as s:
        meta = s.meta
        assert s.status == "complete"
        assert meta["reason"] == ""
        assert s.done_mask().all()
        assert s.status_counts() == {
            "pending": 0,
            "ok": n,
            "no_contact": 0,
            "saturated": 0,
            "false_trigger": 0,
            "failed": 0,
            "fault": 0,
        }
        m, h = s.current_map(), s.height_map()
        assert m.shape == h.shape == (24, 24)
        assert not np.isnan(m).any() and not np.isnan(h).any()
        # currents are nA-scale, positive at +1 V, well inside the 10 nA range
        assert float(m.min()) > 1e-9 and float(m.max()) < 1e-8
        assert [x["status"] for x in meta["sessions"]] == ["complete"]
        # the scan reports the simulator's instrument time; the plan's estimate is close
        inst = meta["instrument_time_s"]
        assert inst > meta["wall_time_s"] > 0
        assert inst == pytest.approx(plan.estimate_time_s(), rel=0.25)
    assert_done_points_intact(path)
    # run_scan's progress callback: once per point, in order
    assert stripe_scan["calls"] == [(k, n) for k in range(1, n + 1)]


def test_scan_ends_retracted_with_the_cell_off(stripe_scan):
    end = stripe_scan["end"]
    plan = stripe_scan["plan"]
    with ScanStore.open(stripe_scan["path"]) as s:
        top = float(np.nanmax(s.results()["contact_z_um"]))
    assert end["cell"] == "Off"
    assert not end["in_contact"]
    assert end["z"] >= top + plan.retract_um + plan.flyback_extra_um - 1e-9


def test_contact_heights_follow_the_simulated_surface(stripe_scan):
    t = stripe_scan["truth"]
    with ScanStore.open(stripe_scan["path"]) as s:
        cz = s.results()["contact_z_um"]
        hmap = s.height_map()
        pts = s.points()
    # the Sample device's SurfaceHeight_um where the pipette landed
    for i, surface in t["probe"].items():
        assert cz[i] == pytest.approx(surface + t["meniscus"], abs=0.02), f"point {i}"
    # and every landing against the simulated film
    np.testing.assert_allclose(cz, t["surface"] + t["meniscus"], atol=0.02)
    np.testing.assert_allclose(hmap[pts["row"], pts["col"]], cz.astype(np.float32), atol=1e-4)
    # the surface is tilted: the heights really vary (the test is not trivially true)
    assert np.ptp(cz) > 0.05


def test_map_shows_the_stripes_at_the_simulated_period_and_angle(stripe_scan):
    t = stripe_scan["truth"]
    assert (t["period"], t["angle"]) == (STRIPE_PERIOD_UM, STRIPE_ANGLE_DEG)
    with ScanStore.open(stripe_scan["path"]) as s:
        m = s.current_map().astype(np.float64)
        g = s.grid
    period, k_angle = dominant_wavevector(m, g.pitch_um)
    assert period == pytest.approx(t["period"], rel=0.10)
    # the stripes run perpendicular to their wave vector
    assert angle_diff_mod180(k_angle + 90.0, t["angle"]) < 5.0


def test_001_stripes_conduct_less_than_100(stripe_scan):
    t = stripe_scan["truth"]
    with ScanStore.open(stripe_scan["path"]) as s:
        value = s.results()["value_A"]
        pts = s.points()
        m = s.current_map()
    label = t["label"]  # 1 = [001], 0 = [100] at each landing
    assert 0.2 < label.mean() < 0.5  # both domains sampled (35 % of a period is [001])
    i001, i100 = value[label == 1].mean(), value[label == 0].mean()
    assert i001 < 0.95 * i100
    # pixel by pixel: the (detrended) map follows the domain labels
    lab_img = np.zeros(m.shape)
    lab_img[pts["row"], pts["col"]] = label
    r = detrend_plane(m.astype(np.float64))
    corr = np.corrcoef(r.ravel(), lab_img.ravel())[0, 1]
    assert corr < -0.7


# ---------------------------------------------------------- pause / resume
def test_pause_waits_retracted_then_resumes_to_completion(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan()  # 144 points
    path = tmp_path / "pause.seccm.zarr"
    scan = Scan.create(core, plan, path)
    counter = FrameCounter(core, at=10, action=lambda: scan.set_paused(True))
    scan.start()
    with pytest.raises(RuntimeError, match="already been started"):
        scan.start()
    assert counter.fired.wait(30), "the scan never reached 10 points"
    wait_for(core.mda.is_paused, 10, "the runner to pause")
    wait_for(lambda: done_count(path) == 10, 10, "the 10 points on disk")
    assert scan.is_running()
    last = counter.metas[-1]
    # paused: no further point, the pipette up above the last contact, off the surface
    time.sleep(0.35)  # > 3 pause-poll intervals of the runner
    assert counter.n == 10
    assert done_count(path) == 10
    assert scan.points_done == 10
    assert core.getPosition() >= last["contact_z_um"] + plan.retract_um - 1e-9
    assert not in_contact()
    assert core.getXYPosition() == pytest.approx((last["x_um"], last["y_um"]))
    with ScanStore.open(path) as s:
        assert s.status == "running"
    scan.set_paused(False)
    assert scan.wait(60) == "complete"
    assert not scan.is_running()
    assert counter.n == plan.n_points()
    with ScanStore.open(path) as s:
        assert s.status == "complete"
        assert s.done_mask().all()
        assert not np.isnan(s.current_map()).any()
    assert_done_points_intact(path)
    assert core.getProperty("Potentiostat", "Cell") == "Off"


def test_cancel_while_paused_ends_safe(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan()
    path = tmp_path / "pause-cancel.seccm.zarr"
    scan = Scan.create(core, plan, path)
    counter = FrameCounter(core, at=5, action=lambda: scan.set_paused(True))
    scan.start()
    assert counter.fired.wait(30)
    wait_for(core.mda.is_paused, 10, "the runner to pause")
    scan.cancel()
    assert scan.wait(30) == "canceled"
    assert counter.n == 5
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not in_contact()
    top = max(m["contact_z_um"] for m in counter.metas)
    assert core.getPosition() >= top + plan.retract_um + plan.flyback_extra_um - 1e-9
    with ScanStore.open(path) as s:
        assert s.status == "canceled"
        assert s.done_mask().sum() == 5
    assert_done_points_intact(path)


# ------------------------------------------------------------------ cancel
def test_cancel_retracts_switches_off_keeps_data_and_resume_completes(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan()
    n = plan.n_points()
    path = tmp_path / "cancel.seccm.zarr"
    scan = Scan.create(core, plan, path)
    counter = FrameCounter(core, at=20, action=scan.cancel)
    assert scan.run() == "canceled"
    counter.disconnect()
    assert counter.n == 20  # nothing measured after the cancel
    contacts = [m["contact_z_um"] for m in counter.metas]
    assert core.getPosition() >= max(contacts) + plan.retract_um - 1e-9
    assert core.getPosition() >= contacts[-1] + plan.retract_um
    assert not in_contact()
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    with ScanStore.open(path) as s:
        assert s.status == "canceled"
        assert s.meta["reason"] == "stopped by the user"
        done = s.done_mask()
        before = s.results()
    assert np.flatnonzero(done).tolist() == list(range(20))  # the first 20 in visiting order
    assert_done_points_intact(path)
    np.testing.assert_allclose(before["value_A"][:20], [m["value_A"] for m in counter.metas])

    resumed = Scan.resume(core, path)
    assert resumed.pending.size == n - 20
    assert resumed.run() == "complete"
    with ScanStore.open(path) as s:
        assert s.status == "complete"
        assert s.done_mask().all()
        after = s.results()
        assert [x["status"] for x in s.meta["sessions"]] == ["canceled", "complete"]
        assert [x["points_pending"] for x in s.meta["sessions"]] == [n, n - 20]
        assert not np.isnan(s.current_map()).any()
    # the points of the first session were not measured again
    for k in ("value_A", "contact_z_um", "t_start_s", "wall_time_s"):
        np.testing.assert_array_equal(after[k][:20], before[k][:20])
    assert_done_points_intact(path)
    with pytest.raises(ValueError, match="already complete"):
        Scan.resume(core, path)


# ------------------------------------------------------- injected failures
@pytest.mark.parametrize("device", ["xy", "potentiostat", "z"])
def test_injected_device_failure_ends_safe_with_data_intact(seccm_core, tmp_path, device):
    core = seccm_core
    plan = small_plan()
    path = tmp_path / f"fail-{device}.seccm.zarr"
    scan = Scan.create(core, plan, path)
    counter = FrameCounter(
        core, at=12, action=lambda: core.setProperty("SECCM", "InjectFailure", device)
    )
    # a device failure is a fault of the rig (not an error of the software)
    assert scan.run() == "fault"
    counter.disconnect()
    assert counter.fired.is_set()
    assert counter.n == 12
    assert core.getProperty("SECCM", "InjectFailure") == device  # still failing
    # safe: cell off, pipette off the surface and above the last landing
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not in_contact()
    contacts = [m["contact_z_um"] for m in counter.metas]
    z = core.getPosition()
    assert z >= contacts[-1] + plan.retract_um - 1e-9
    with ScanStore.open(path) as s:
        assert s.status == "fault"
        reason = s.meta["reason"]
        done = s.done_mask()
        res = s.results()
    assert f"simulated {device} failure" in reason
    if device == "z":
        # Z cannot move at all: the report says the final retract failed too
        assert "retract failed" in reason
    else:
        assert "failed" not in reason.replace(f"simulated {device} failure", "")
        assert z >= max(contacts) + plan.retract_um + plan.flyback_extra_um - 1e-9
    # the points measured before the failure are all there, and only they
    assert np.flatnonzero(done).tolist() == list(range(12))
    assert (res["status"][:12] == OK).all()
    np.testing.assert_allclose(res["value_A"][:12], [m["value_A"] for m in counter.metas])
    np.testing.assert_allclose(res["contact_z_um"][:12], contacts)
    assert_done_points_intact(path)
    # repaired, the scan resumes to the end
    core.setProperty("SECCM", "InjectFailure", "none")
    assert Scan.resume(core, path).run() == "complete"
    with ScanStore.open(path) as s:
        assert s.done_mask().all()
        np.testing.assert_array_equal(s.results()["value_A"][:12], res["value_A"][:12])


# ----------------------------------------------------------------- misses
def test_consecutive_misses_abort_the_scan_safely(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan(safety=SafetySettings(max_consecutive_failures=3))
    path = tmp_path / "miss.seccm.zarr"
    scan = Scan.create(core, plan, path)
    # after 15 landings the surface drops 5 um: out of reach of the approach
    surface0 = core.getProperty("SECCM", "HeightOffset_um")
    counter = FrameCounter(
        core,
        at=15,
        action=lambda: core.setProperty("SECCM", "HeightOffset_um", surface0 - 5.0),
    )
    assert scan.run() == "error"
    counter.disconnect()
    with ScanStore.open(path) as s:
        reason = s.meta["reason"]
        res = s.results()
        m = s.current_map()
        pts = s.points()
    assert "3 points in a row without contact" in reason
    assert "max_consecutive_failures = 3" in reason
    assert np.flatnonzero(res["done"]).tolist() == list(range(18))
    assert (res["status"][:15] == OK).all()
    assert (res["status"][15:18] == NO_CONTACT).all()
    assert np.isnan(res["value_A"][15:18]).all()
    assert np.isnan(m[pts["row"][15:18], pts["col"][15:18]]).all()
    assert_done_points_intact(path)
    assert core.getProperty("Potentiostat", "Cell") == "Off"
    assert not in_contact()
    assert core.getProperty("SECCM", "Pipette_State") == "ok"  # no crash on the way


# ------------------------------------------------- software contact detection
def test_software_approach_without_the_device_loop(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan(width_um=1.0, approach=ApproachSettings(method="software"))
    path = tmp_path / "soft.seccm.zarr"
    scan = run_scan(core, plan, path)
    assert scan.final_status == "complete"
    # the device-side approach was never started
    assert core.getProperty("PiezoZ", "Approach_Result") == "idle"
    with ScanStore.open(path) as s:
        res = s.results()
        assert s.done_mask().all()
    meniscus = core.getProperty("SECCM", "Pipette_MeniscusHeight_um")
    for i in range(len(res["x_um"])):
        core.setXYPosition(float(res["x_um"][i]), float(res["y_um"][i]))
        core.waitForSystem()
        surface = core.getProperty("SECCM", "SurfaceHeight_um")
        assert res["contact_z_um"][i] == pytest.approx(surface + meniscus, abs=0.02)
    assert_done_points_intact(path)


# --------------------------------------------------------- run_scan callbacks
def test_run_scan_progress_callback_belongs_to_its_own_scan(seccm_core, tmp_path):
    core = seccm_core
    plan = small_plan(width_um=2.0)  # 16 points
    first: list[tuple[int, int]] = []
    second: list[tuple[int, int]] = []
    run_scan(
        core,
        plan,
        tmp_path / "a.seccm.zarr",
        on_point=lambda d, t: first.append((d, t)),
    )
    run_scan(
        core,
        plan,
        tmp_path / "b.seccm.zarr",
        on_point=lambda d, t: second.append((d, t)),
    )
    expected = [(k, 16) for k in range(1, 17)]
    assert second == expected
    # the first scan's callback must not hear about the second scan
    assert first == expected


# ------------------------------------------------ the demo-microscope config
def test_engine_runs_with_the_demo_microscope_config(tmp_path):
    plan = small_plan(width_um=3.0)  # 36 points
    maps = {}
    for cfg in ("seccm_simulated.cfg", "seccm_with_demo_microscope.cfg"):
        core = load_core(cfg)
        scan = None
        try:
            if cfg != "seccm_simulated.cfg":
                assert {"Camera", "DHub", "Z", "XY"} <= set(core.getLoadedDevices())
                assert (core.getXYStageDevice(), core.getFocusDevice()) == (
                    "PiezoXY",
                    "PiezoZ",
                )
                demo_z, demo_xy = core.getPosition("Z"), core.getXYPosition("XY")
            path = tmp_path / f"{Path(cfg).stem}.seccm.zarr"
            scan = run_scan(core, plan, path)
            assert scan.final_status == "complete", scan.store.meta["reason"]
            assert core.getProperty("Potentiostat", "Cell") == "Off"
            if cfg != "seccm_simulated.cfg":
                # the demo microscope's own stages were left alone
                assert core.getPosition("Z") == demo_z
                assert core.getXYPosition("XY") == pytest.approx(demo_xy)
            with ScanStore.open(path) as s:
                assert s.done_mask().all()
                maps[cfg] = s.current_map()
                rig = s.meta["rig"]
                assert Path(rig["config_file"]).name == cfg
                assert rig["roles"]["xy_stage"] == "PiezoXY"
                assert rig["roles"]["focus"] == "PiezoZ"
                if cfg != "seccm_simulated.cfg":
                    assert {"DHub", "Camera", "Objective"} <= set(rig["devices"])
                    assert rig["roles"]["camera"] == "Camera"
            assert_done_points_intact(path)
        finally:
            del scan  # it holds the core
            close_core(core)
            del core
            gc.collect()
    # the same sample, the same map (noise differs: well under 1 % per pixel)
    a, b = maps.values()
    rel = np.abs(a - b) / np.abs(a)
    assert float(rel.max()) < 0.01
    assert math.isfinite(float(rel.max()))
