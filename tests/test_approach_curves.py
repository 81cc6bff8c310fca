"""Approach curves i(z): decimated, stored per point by a real scan, read
back with plain zarr, validated only where present, shown in the Inspector;
a contact accepted by hand during an approach."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import zarr
from _scan_helpers import at_approach
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import (
    APPROACH_FULL_RES,
    APPROACH_MAX_SAMPLES,
    OK,
    ScanStore,
    decimate_approach,
)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 20_000), z0=st.floats(1.0, 100.0), speed=st.floats(0.01, 10.0))
def test_decimation_keeps_the_contact_end_and_the_descent(n, z0, speed):
    z = z0 - speed * np.arange(n) / 5000.0
    i = np.random.default_rng(n).normal(size=n) * 1e-13
    zd, idd = decimate_approach(z, i)
    assert zd.dtype == idd.dtype == np.float32
    assert zd.size == idd.size == min(n, APPROACH_MAX_SAMPLES)
    k = min(n, APPROACH_FULL_RES)
    np.testing.assert_array_equal(zd[-k:], z[-k:].astype(np.float32))
    np.testing.assert_array_equal(idd[-k:], i[-k:].astype(np.float32))
    assert np.all(np.diff(zd.astype(float)) <= 1e-5)  # still a descent
    assert zd[0] <= z0 + 1e-4 and zd[-1] == np.float32(z[-1])


def _scan(core, path, **plan_kw):
    plan = ScanPlan(area=RectangleArea(width_um=2.0, height_um=2.0), pitch_um=0.5, **plan_kw)
    scan = Scan.create(core, plan, path)
    assert scan.run() == "complete", scan.store.meta.get("reason")
    return plan


def test_a_scan_stores_every_landings_approach_curve(core, tmp_path):
    path = tmp_path / "ap.seccm.zarr"
    plan = _scan(core, path)
    root = zarr.open_group(str(path), mode="r")
    n = plan.n_points()
    z = root["approach/z_um"][:]
    cur = root["approach/current_A"][:]
    assert z.shape == cur.shape == (n, APPROACH_MAX_SAMPLES) and z.dtype == np.float32
    assert root["approach/manual"][:].tolist() == [0] * n
    st_ = root["results/status"][:]
    cz = root["results/contact_z_um"][:]
    thr = plan.approach.threshold_A
    for k in np.flatnonzero(st_ == OK):
        zk, ck = z[k][np.isfinite(z[k])], cur[k][np.isfinite(cur[k])]
        assert zk.size == ck.size > 10
        # the curve descends to the contact and ends with the confirmed rise
        assert np.all(np.diff(zk) <= 1e-6)
        assert zk[0] > cz[k] and abs(zk[-1] - cz[k]) < 0.01
        assert np.all(np.abs(ck[-(plan.approach.confirm_samples + 1) :]) >= thr)
        assert np.all(np.abs(ck[: ck.size // 2]) < thr)  # in air above it
    with ScanStore.open(path) as s:
        assert s.problems() == []
        got = s.approach_curve(0)
        np.testing.assert_array_equal(got["z_um"], z[0][np.isfinite(z[0])])


def test_an_older_store_without_approach_curves_reads_and_resumes(core, tmp_path):
    """A store written before approach curves (no approach/ group, as that
    version wrote it) opens, validates and says it has no curve."""
    path = tmp_path / "old.seccm.zarr"
    _scan(core, path)
    shutil.rmtree(path / "approach")
    with ScanStore.open(path) as s:
        assert not s.has_approach()
        assert s.approach_curve(0) is None
        assert s.problems() == []
    ScanStore.open(path, "r+").close()  # validation for writing passes too


def test_damaged_approach_arrays_are_named(core, tmp_path):
    path = tmp_path / "bad.seccm.zarr"
    _scan(core, path)
    chunk = next((path / "approach" / "z_um").rglob("c/*/*"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    shutil.rmtree(path / "approach" / "current_A")
    with ScanStore.open(path) as s:
        probs = s.problems()
    assert any("approach/z_um" in p and "truncated" in p for p in probs), probs
    assert any(p == "array approach/current_A is missing" for p in probs), probs
    from napari_seccm.acquisition.store import StoreDamagedError

    with pytest.raises(StoreDamagedError, match="approach/current_A is missing"):
        ScanStore.open(path, "r+")


def test_a_contact_accepted_by_hand_during_a_scan(make_core, tmp_path):
    """Real time: while the slow approach of the second point comes down,
    Accept contact stops it; the point is recorded as a manual contact at
    where the stage stopped, and the scan goes on."""
    from napari_seccm.acquisition.control import accept_contact

    core = make_core()
    core.setProperty("SECCM", "TimeScale", 1.0)
    with pytest.raises(ValueError, match="no approach is in progress"):
        accept_contact(core)
    data = ScanPlan(area=RectangleArea(width_um=1.0, height_um=0.5), pitch_um=0.5).model_dump()
    data["approach"].update(search_speed_um_per_s=100.0, slow_speed_um_per_s=0.5, slow_zone_um=1.0)
    plan = ScanPlan.model_validate(data)
    path = tmp_path / "manual.seccm.zarr"
    scan = Scan.create(core, plan, path)
    starts: list[float] = []

    def accept_soon() -> None:
        time.sleep(0.2)
        starts.append(core.getPosition())
        accept_contact(core)

    # the search, the first point's approach, the second point's
    with at_approach(core, 3, accept_soon):
        assert scan.run() == "complete"
    assert starts, "the approach of the second point was never seen"
    with ScanStore.open(path) as s:
        manual = s.array("approach/manual")[:]
        cz = s.array("results/contact_z_um")[:]
        assert manual.tolist() == [0, 1]
        curve = s.approach_curve(1)
        assert curve["manual"]
        # accepted above the meniscus' height: higher than the automatic landing
        assert cz[1] > cz[0] + 0.1
        assert abs(curve["z_um"][-1] - cz[1]) < 0.01
        assert any("accepted by hand" in n for n in [s.meta.get("reason", ""), *scan_notes(scan)])


def scan_notes(scan) -> list[str]:
    return list(scan.engine.notes) if scan.engine is not None else []


@pytest.mark.gui
def test_inspector_plots_the_approach_curve(make_napari_viewer, core, tmp_path):
    path = tmp_path / "insp.seccm.zarr"
    _scan(core, path)
    viewer = make_napari_viewer(show=False)
    _, insp = viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    facts = insp.inspect(path, 1, 1)
    with ScanStore.open(path) as s:
        curve = s.approach_curve(facts["index"])
    assert facts["approach_samples"] == curve["z_um"].size > 10
    curve_line, contact_line = insp.ax_ap.get_lines()
    np.testing.assert_array_equal(curve_line.get_xdata(), curve["z_um"])
    assert contact_line.get_xdata()[0] == pytest.approx(facts["contact_z_um"])
    assert insp.ax_ap.get_xlabel() == "Z (um)"
    assert insp.ax_ap.xaxis_inverted()
    # an older store: said in the plot, not an error
    old = tmp_path / "old.seccm.zarr"
    shutil.copytree(path, old)
    shutil.rmtree(old / "approach")
    facts = insp.inspect(old, 1, 1)
    assert facts["approach_samples"] == 0
    texts = [t.get_text() for t in insp.ax_ap.texts]
    assert any("written before" in t for t in texts)
    insp.set_plots_folded(True)
    assert not insp.approach_canvas.isVisibleTo(insp)
