"""The scan store on disk: creation rules, the writer's lock, OME-Zarr maps,
traces, metadata, and that nothing in it needs unpickling."""

from __future__ import annotations

import datetime as dt
import errno
import gc
import json
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import zarr
from _scan_helpers import (
    SIMULATED_CFG,
    assert_done_points_intact,
    close_core,
    loaded_core,
    rig_state,
    small_plan,
    tree_snapshot,
)

from napari_seccm.acquisition.plan import ScanPlan
from napari_seccm.acquisition.scan import Scan, run_scan
from napari_seccm.acquisition.store import (
    FAULT,
    OK,
    PENDING,
    SCAN_STATUSES,
    STATUS_NAMES,
    PointRecord,
    ScanStore,
    StoreExistsError,
    StoreLockedError,
)
from napari_seccm.analysis.maps import QUALITY_NAMES, point_quality
from napari_seccm.configs import load_core


@pytest.fixture
def seccm_core():
    """The simulated SECCM (``seccm_simulated.cfg``) in a fresh UniMMCore."""
    yield from loaded_core()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """One finished 6 x 6 um scan (shuffled order), made once for the module."""
    path = tmp_path_factory.mktemp("store") / "scan.seccm.zarr"
    plan = small_plan(order="shuffled", shuffle_seed=3)
    core = load_core()
    try:
        scan = run_scan(core, plan, path)
        assert scan.final_status == "complete"
    finally:
        close_core(core)
        del core
        gc.collect()
    return path, plan


@pytest.fixture
def scan_copy(scanned, tmp_path):
    """A private copy of the finished scan, for tests that try to damage it."""
    src, plan = scanned
    dst = tmp_path / "copy.seccm.zarr"
    shutil.copytree(src, dst)
    return dst, plan


# ---------------------------------------------------------------- creation
def test_create_refuses_an_existing_store_and_leaves_it_untouched(scan_copy):
    path, plan = scan_copy
    before = tree_snapshot(path)
    other = small_plan(width_um=2.0)
    with pytest.raises(StoreExistsError, match=r"already exists.*overwrite=True") as e:
        ScanStore.create(path, other)
    assert str(path) in str(e.value)
    assert tree_snapshot(path) == before
    with ScanStore.open(path) as s:
        assert s.status == "complete"
        assert s.plan() == plan


def test_create_refuses_any_existing_path(tmp_path):
    path = tmp_path / "notes"
    path.mkdir()
    (path / "important.txt").write_text("keep me")
    with pytest.raises(StoreExistsError):
        ScanStore.create(path, small_plan())
    assert (path / "important.txt").read_text() == "keep me"
    assert sorted(p.name for p in path.iterdir()) == ["important.txt"]


def test_overwrite_replaces_a_store(scan_copy):
    path, _ = scan_copy
    other = small_plan(width_um=2.0)
    with ScanStore.create(path, other, overwrite=True) as s:
        assert s.meta["status"] == "created"
        assert s.plan() == other
        assert s.n_points == 16
        assert not s.done_mask().any()
        assert np.isnan(s.current_map()).all()
        assert s.current_map().shape == (4, 4)


def test_overwrite_refuses_a_store_being_written(scan_copy):
    path, _ = scan_copy
    writer = ScanStore.open(path, mode="r+")
    try:
        before = tree_snapshot(path)
        with pytest.raises(StoreLockedError, match="being written by a running scan"):
            ScanStore.create(path, small_plan(width_um=2.0), overwrite=True)
        assert tree_snapshot(path) == before
    finally:
        writer.close()


def test_scan_create_on_an_existing_store_changes_nothing(seccm_core, scan_copy):
    path, _ = scan_copy
    before_files = tree_snapshot(path)
    before_rig = rig_state(seccm_core)
    with pytest.raises(StoreExistsError):
        Scan.create(seccm_core, small_plan(width_um=2.0), path)
    assert tree_snapshot(path) == before_files
    after_rig = rig_state(seccm_core)
    # nothing moved and the cell was not switched (the rig snapshot taken before the
    # refusal reads Current_A, one amplifier sample, so the clock may tick by that)
    assert after_rig["sim_time"] - before_rig["sim_time"] < 1e-3
    del after_rig["sim_time"], before_rig["sim_time"]
    assert after_rig == before_rig


# -------------------------------------------------------------------- lock
def test_the_writer_holds_a_lock(tmp_path):
    path = tmp_path / "locked.seccm.zarr"
    writer = ScanStore.create(path, small_plan(width_um=2.0))
    try:
        writer.update_meta(status="running")
        with pytest.raises(StoreLockedError, match="being written by a running scan"):
            ScanStore.open(path, mode="r+")
        # readers are welcome, and see a live scan
        with ScanStore.open(path) as reader:
            assert reader.status == "running"
            assert reader.is_locked_by_other()
            assert reader.n_points == 16
            with pytest.raises(PermissionError, match="read-only"):
                reader.write_points([PointRecord(0, 1, 1e-9, 20.0, 0.0, 0.0, 0.0, 0.0)])
    finally:
        writer.close()
    # the writer is gone without finishing: the scan is interrupted, can be taken over
    with ScanStore.open(path) as reader:
        assert reader.status == "interrupted"
        assert not reader.is_locked_by_other()
    with ScanStore.open(path, mode="r+") as again:
        assert again.writable


def test_the_lock_holds_across_processes(tmp_path):
    path = tmp_path / "locked.seccm.zarr"
    code = textwrap.dedent(
        f"""
        from napari_seccm.acquisition.store import ScanStore, StoreLockedError
        try:
            ScanStore.open({str(path)!r}, mode="r+")
        except StoreLockedError as e:
            print("locked:", e)
        else:
            print("opened")
        """
    )
    with ScanStore.create(path, small_plan(width_um=2.0)):
        held = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert held.stdout.startswith("locked:"), held.stderr
    assert free.stdout.strip() == "opened", free.stderr


def test_a_killed_writer_leaves_a_store_that_can_be_resumed(tmp_path):
    """The lock is the operating system's: killing the writer (SIGKILL, no
    clean-up of any kind) frees it, and the store can be taken over."""
    path = tmp_path / "killed.seccm.zarr"
    plan = small_plan(width_um=1.0)  # 4 points
    plan_file = tmp_path / "plan.json"
    plan.save(plan_file)
    writer = textwrap.dedent(
        f"""
        import time
        import numpy as np
        from napari_seccm.acquisition.plan import ScanPlan
        from napari_seccm.acquisition.store import OK, PointRecord, ScanStore

        s = ScanStore.create({str(path)!r}, ScanPlan.load({str(plan_file)!r}))
        s.update_meta(status="running")
        n = s.n_samples
        s.write_points([PointRecord(1, OK, 1e-9, 20.0, 0.0, 0.0, 1.0, 2.0,
                                    np.full(n, 1e-9), np.full(n, 1.0))])
        print("locked", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
        with pytest.raises(StoreLockedError, match="being written by a running scan"):
            ScanStore.open(path, mode="r+")
        with ScanStore.open(path) as reader:
            assert reader.status == "running"
    finally:
        proc.kill()  # SIGKILL on POSIX: the writer runs no code of its own
        proc.communicate(timeout=30)
    if sys.platform != "win32":
        assert proc.returncode == -signal.SIGKILL
    with ScanStore.open(path) as reader:
        assert reader.status == "interrupted"
        assert not reader.is_locked_by_other()
    with ScanStore.open(path, mode="r+") as resumed:
        assert resumed.writable
        assert resumed.done_mask().tolist() == [False, True, False, False]
        assert resumed.status_counts()["ok"] == 1
        # the resumed writer holds the lock in turn: a second writer is refused
        with pytest.raises(StoreLockedError, match="being written by a running scan"):
            ScanStore.open(path, mode="r+")
        with pytest.raises(StoreLockedError, match="being written by a running scan"):
            ScanStore.create(path, plan, overwrite=True)


def test_without_fcntl_a_store_is_read_but_never_written_under_a_marker_file(tmp_path):
    """Where ``import fcntl`` fails (as on Windows), the store module still
    imports and reads stores; its lock is LockFileEx on Windows. A POSIX
    system without flock has no operating-system lock at all: the store then
    refuses to write rather than fall back to a marker file (which filelock's
    ``FileLock`` alias would do there, and which a killed scan would leave
    behind, blocking its resume)."""
    path = tmp_path / "nofcntl.seccm.zarr"
    plan = small_plan(width_um=1.0)
    with ScanStore.create(path, plan) as s:
        s.write_points([PointRecord(0, OK, 1e-9, 20.0, 0.0, 0.0, 1.0, 2.0)])
        s.update_meta(status="canceled")
    before = tree_snapshot(path)
    code = textwrap.dedent(
        f"""
        import sys, warnings
        sys.modules["fcntl"] = None  # import fcntl fails, as on Windows
        warnings.simplefilter("ignore")  # filelock: "only soft file lock is available"
        from napari_seccm.acquisition import store as st
        from napari_seccm.acquisition.store import ScanStore, StoreLockedError
        import filelock

        print("fcntl imported:", "fcntl" in vars(st))
        print("FileLock alias:", filelock.FileLock.__name__)
        with ScanStore.open({str(path)!r}) as s:
            print("read:", s.status, int(s.done_mask().sum()), s.status_counts()["ok"])
        for how in ("resume", "overwrite"):
            try:
                if how == "resume":
                    ScanStore.open({str(path)!r}, mode="r+")
                else:
                    ScanStore.create({str(path)!r}, s.plan(), overwrite=True)
            except StoreLockedError as e:
                print(how, "locked:", e)
            except OSError as e:
                print(how, "refused:", e.errno, e)
            else:
                print(how, "written")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "fcntl imported: False"
    assert lines[1] == "FileLock alias: SoftFileLock"  # the trap the store avoids
    assert lines[2] == "read: canceled 1 1"
    for how, line in zip(("resume", "overwrite"), lines[3:5], strict=True):
        assert line.startswith(f"{how} refused: {errno.ENOSYS} "), r.stdout
        assert "operating-system file lock" in line
    # nothing was written, no marker left: the lock file is empty and free
    assert tree_snapshot(path) == before
    assert (path / ".lock").read_bytes() == b""
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == [".lock"]
    with ScanStore.open(path, mode="r+") as again:
        assert again.done_mask().tolist() == [True, False, False, False]


def test_open_rejects_what_is_not_a_scan(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.zarr does not exist"):
        ScanStore.open(tmp_path / "nothing.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(FileNotFoundError, match="not a SECCM scan store"):
        ScanStore.open(tmp_path / "empty.zarr")
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(ValueError, match="not a SECCM scan"):
        ScanStore.open(tmp_path / "plain.zarr")


# ------------------------------------------------------------------- maps
@pytest.mark.parametrize(("name", "unit"), [("current", "A"), ("contact_height", "um")])
def test_maps_are_ome_zarr_0_5_in_micrometers(scanned, name, unit):
    path, plan = scanned
    g = plan.grid()
    group = zarr.open_group(str(path / "maps" / name), mode="r")
    raw = json.loads((path / "maps" / name / "zarr.json").read_text())
    assert raw["zarr_format"] == 3 and raw["node_type"] == "group"
    ome = raw["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [(a["name"], a["type"], a["unit"]) for a in ms["axes"]] == [
        ("y", "space", "micrometer"),
        ("x", "space", "micrometer"),
    ]
    (ds,) = ms["datasets"]
    assert ds["path"] == "0"
    tr = {t["type"]: t for t in ds["coordinateTransformations"]}
    assert [t["type"] for t in ds["coordinateTransformations"]] == [
        "scale",
        "translation",
    ]
    assert tr["scale"]["scale"] == pytest.approx([plan.pitch_um, plan.pitch_um])
    arr = group["0"]
    assert arr.shape == g.shape == (12, 12)
    # pixel (row, col) sits at translation + scale * (row, col): the planned point there
    with ScanStore.open(path) as s:
        pts = s.points()
        res = s.results()
    ty, tx = tr["translation"]["translation"]
    np.testing.assert_allclose(tx + plan.pitch_um * pts["col"], pts["x_um"], atol=1e-9)
    np.testing.assert_allclose(ty + plan.pitch_um * pts["row"], pts["y_um"], atol=1e-9)
    # and where the stage really was
    np.testing.assert_allclose(tx + plan.pitch_um * pts["col"], res["x_um"], atol=1e-6)
    assert ms["metadata"]["value_unit"] == unit
    # OME-Zarr 0.5: the array's dimension_names match the axes
    assert list(arr.metadata.dimension_names or ()) == ["y", "x"]
    from ome_zarr_models.v05.image import Image

    image = Image.from_zarr(group)
    assert image.attributes.ome.multiscales[0].axes[1].name == "x"


def test_map_pixels_hold_their_points_values(scanned):
    path, _ = scanned
    with ScanStore.open(path) as s:
        pts, res = s.points(), s.results()
        m, h = s.current_map(), s.height_map()
        for i in (0, 5, 77, s.n_points - 1):
            r, c = int(pts["row"][i]), int(pts["col"][i])
            assert s.point_at(r, c) == i
            assert m[r, c] == np.float32(res["value_A"][i])
            assert h[r, c] == np.float32(res["contact_z_um"][i])
    # shuffled: the visiting order is not the pixel order, yet every pixel filled once
    assert sorted(zip(pts["row"].tolist(), pts["col"].tolist(), strict=True)) == [
        (r, c) for r in range(12) for c in range(12)
    ]
    assert not np.isnan(m).any()


# ------------------------------------------------------------------ traces
def test_traces_are_readable_per_point(scanned):
    path, plan = scanned
    fs = plan.potentiostat.sample_rate_Hz
    n = plan.samples_per_point()
    assert n == round(plan.program_duration_s * fs) == 100
    with ScanStore.open(path) as s:
        res = s.results()
        t0 = s.trace(0)
        t1 = s.trace(1)
        assert s.n_samples == n
    np.testing.assert_allclose(t0["time_s"], np.arange(n) / fs)
    for tr in (t0, t1):
        assert tr["current_A"].shape == tr["potential_V"].shape == (n,)
        assert tr["current_A"].dtype == np.float32
        np.testing.assert_allclose(tr["potential_V"], 1.0)  # the 1.0 V hold
        assert np.isfinite(tr["current_A"]).all()
    assert not np.array_equal(t0["current_A"], t1["current_A"])
    # the point's map value is the mean of its trace over the readout window
    w0, w1 = plan.readout_window_s()
    win = (t0["time_s"] >= w0 - 1e-9) & (t0["time_s"] < w1 - 1e-9)
    assert win.sum() == 50
    assert float(np.mean(t0["current_A"][win], dtype=np.float64)) == pytest.approx(
        res["value_A"][0], rel=1e-5
    )
    assert_done_points_intact(path)


# ---------------------------------------------------------------- metadata
def test_metadata_holds_plan_rig_and_versions(scanned):
    path, plan = scanned
    with ScanStore.open(path) as s:
        meta = s.meta
    assert ScanPlan.model_validate(meta["plan"]) == plan
    g = plan.grid()
    assert meta["grid"] == {
        "x0_um": g.x0_um,
        "y0_um": g.y0_um,
        "pitch_um": g.pitch_um,
        "nx": g.nx,
        "ny": g.ny,
    }
    assert meta["n_points"] == 144
    assert meta["sample_rate_Hz"] == plan.potentiostat.sample_rate_Hz
    assert meta["readout_window_s"] == pytest.approx(list(plan.readout_window_s()))
    rig = meta["rig"]
    assert {"SECCM", "PiezoXY", "PiezoZ", "Potentiostat", "OpticalCamera"} <= set(rig["devices"])
    assert rig["devices"]["PiezoXY"]["XMax_um"] == 50.0
    assert rig["devices"]["Potentiostat"]["CurrentRange_A"] == plan.potentiostat.current_range_A
    assert rig["devices"]["SECCM"]["StripePeriod_um"] == 2.0
    assert Path(rig["config_file"]).resolve() == SIMULATED_CFG.resolve()
    assert rig["config_text"] == SIMULATED_CFG.read_text()
    assert rig["roles"] == {
        "xy_stage": "PiezoXY",
        "focus": "PiezoZ",
        "camera": "OpticalCamera",
    }
    sw = meta["software"]
    assert sw["python"] == platform.python_version()
    for pkg in ("napari-seccm", "pymmcore-plus", "zarr", "numpy", "useq-schema"):
        assert sw[pkg] == version(pkg)
    created, started, ended = (
        dt.datetime.fromisoformat(meta[k]) for k in ("created", "started", "ended")
    )
    assert created <= started <= ended
    assert meta["status"] == "complete"
    assert meta["format_version"] == 1


def test_nothing_is_pickled(scanned):
    """Every node is plain JSON, every array numeric; nothing else is stored."""
    path, _ = scanned
    numeric = {"bool", "uint8", "int32", "int64", "float32", "float64"}
    n_arrays = 0
    for f in sorted(path.rglob("*")):
        if f.is_dir():
            continue
        rel = f.relative_to(path).as_posix()
        if f.name == "zarr.json":
            node = json.loads(f.read_text())  # strict JSON
            assert node["zarr_format"] == 3
            if node["node_type"] == "array":
                n_arrays += 1
                assert node["data_type"] in numeric, rel
                names = json.dumps(node["codecs"]).lower()
                assert "pickle" not in names and "vlen" not in names, rel
            json.dumps(node.get("attributes", {}), allow_nan=True)
        elif f.name == ".lock":
            assert f.read_bytes() == b""
        else:
            # chunk files only (zarr v3 default keys: .../c/i/j)
            assert "/c/" in f"/{rel}" or rel.startswith("c/"), rel
        assert not rel.endswith((".pkl", ".pickle", ".zarray", ".zattrs", ".zgroup"))
    assert n_arrays == 20  # points 4, results 8, traces 3, approach 3, maps 2


def test_status_counts_and_point_records_round_trip(tmp_path):
    plan = small_plan(width_um=1.0)  # 4 points
    path = tmp_path / "records.seccm.zarr"
    n = plan.samples_per_point()
    with ScanStore.create(path, plan) as s:
        cur = np.linspace(1e-9, 2e-9, n)
        s.write_points(
            [
                PointRecord(2, 1, 1.5e-9, 20.1, 0.25, 0.25, 1.0, 2.0, cur, np.full(n, 1.0)),
                PointRecord(0, 2, np.nan, np.nan, -0.25, -0.25, 0.5, 1.0),
            ]
        )
        assert s.done_mask().tolist() == [True, False, True, False]
        assert s.status_counts() == {
            "pending": 2,
            "ok": 1,
            "no_contact": 1,
            "saturated": 0,
            "false_trigger": 0,
            "failed": 0,
            "fault": 0,
        }
        tr = s.trace(2)
        np.testing.assert_allclose(tr["current_A"], cur.astype(np.float32))
        assert np.isnan(s.trace(0)["current_A"]).all()  # a miss has no trace
        pts = s.points()
        m = s.current_map()
        assert m[pts["row"][2], pts["col"][2]] == np.float32(1.5e-9)
        assert np.isnan(m[pts["row"][0], pts["col"][0]])  # a miss leaves its pixel empty
        s.reset_points(np.array([2]))
        assert s.done_mask().tolist() == [True, False, False, False]


# ---------------------------------------------------------------- statuses
def test_a_fault_point_is_kept_but_never_a_measurement(tmp_path):
    """A point whose readings failed a plausibility check keeps its raw
    readings and trace for diagnosis, but maps, counts and the analysis's
    quality treat it as not measured (NaN), like a failed point."""
    plan = small_plan(width_um=1.0)
    path = tmp_path / "fault.seccm.zarr"
    n = plan.samples_per_point()
    cur = np.full(n, 3e-9)
    with ScanStore.create(path, plan) as s:
        s.write_points(
            [
                PointRecord(0, OK, 1e-9, 20.0, -0.25, -0.25, 0.5, 1.0, cur, np.full(n, 1.0)),
                # contact 35 um away from the surface the other points found
                PointRecord(1, FAULT, 3e-9, 55.0, 0.25, -0.25, 1.0, 2.0, cur, np.full(n, 1.0)),
            ]
        )
        s.update_meta(status="fault", reason="PiezoZ did not finish its move in time")
        counts = s.status_counts()
        res = s.results()
        pts = s.points()
        m, h = s.current_map(), s.height_map()
        np.testing.assert_allclose(s.trace(1)["current_A"], np.float32(3e-9))
    assert counts["fault"] == 1 and counts["ok"] == 1 and counts["pending"] == 2
    assert res["status"][1] == FAULT and res["contact_z_um"][1] == 55.0  # raw, for diagnosis
    r1, c1 = pts["row"][1], pts["col"][1]
    r0, c0 = pts["row"][0], pts["col"][0]
    assert np.isnan(m[r1, c1]) and np.isnan(h[r1, c1])
    assert m[r0, c0] == np.float32(1e-9) and h[r0, c0] == np.float32(20.0)
    q = point_quality(path)
    assert [QUALITY_NAMES[int(v)] for v in q] == ["ok", "fault", "not_measured", "not_measured"]
    # a scan ended by a device fault says so, is not mistaken for an
    # interrupted one, and can be resumed
    with ScanStore.open(path) as reader:
        assert reader.status == "fault"
    with ScanStore.open(path, mode="r+") as again:
        assert again.meta["reason"] == "PiezoZ did not finish its move in time"


def test_status_codes_are_unique_and_shared_with_the_quality_codes():
    """The analysis's quality codes take the landing codes as they are (2-5,
    8); the new fault code must not land on poor_fit (6) or
    non_positive_conductance (7)."""
    assert STATUS_NAMES[FAULT] == "fault"
    assert len(set(STATUS_NAMES.values())) == len(STATUS_NAMES)
    for code, name in STATUS_NAMES.items():
        if code not in (PENDING, OK):
            assert QUALITY_NAMES[code] == name
    assert "fault" in SCAN_STATUSES and len(set(SCAN_STATUSES)) == len(SCAN_STATUSES)
