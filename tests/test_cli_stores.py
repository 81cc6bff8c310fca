"""The CLI on stores that are half-created, damaged or read-only: it says
what they are, removes only what is safe to remove, and a resume it would
refuse never loads the rig."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _scan_helpers import scan_to_store, small_plan

from napari_seccm.acquisition.store import ScanStore
from napari_seccm.cli import main
from napari_seccm.devices._hub import live_hubs


@pytest.fixture(scope="module")
def done_store(tmp_path_factory) -> Path:
    return scan_to_store(tmp_path_factory.mktemp("s") / "m.seccm.zarr", small_plan(2.0, 0.5))


def test_a_half_created_store_is_named_and_removed(tmp_path: Path, capsys) -> None:
    p = tmp_path / "h.seccm.zarr"
    p.mkdir()
    (p / ".seccm-creating").write_text("")
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "half-created" in out and "remove-incomplete" in out
    assert main(["info", str(p), "--json"]) == 0
    assert '"half-created"' in capsys.readouterr().out
    assert main(["remove-incomplete", str(p)]) == 0
    assert not p.exists()


def test_remove_incomplete_refuses_a_real_store(done_store: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "c.seccm.zarr"
    shutil.copytree(done_store, copy)
    assert main(["remove-incomplete", str(copy)]) == 2
    assert "nothing was removed" in capsys.readouterr().err
    assert (copy / "zarr.json").exists()
    with ScanStore.open(copy) as s:
        assert s.done_mask().all()


def test_a_damaged_store_is_reported_and_resume_never_loads_the_rig(
    done_store: Path, tmp_path: Path, capsys
) -> None:
    copy = tmp_path / "d.seccm.zarr"
    shutil.copytree(done_store, copy)
    with ScanStore.open(copy, mode="r+") as s:
        s.update_meta(status="canceled")
    shutil.rmtree(copy / "results" / "status")
    assert main(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "problem" in out and "results/status" in out and "resume will refuse" in out
    hubs = len(live_hubs())
    assert main(["resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert "results/status" in err
    assert len(live_hubs()) == hubs  # no simulated rig was loaded


def test_a_store_whose_plan_holds_a_nan_is_never_resumed(
    done_store: Path, tmp_path: Path, capsys
) -> None:
    """Reading keeps working; resume refuses, naming the field (a NaN Z floor
    would switch the floor off)."""
    copy = tmp_path / "n.seccm.zarr"
    shutil.copytree(done_store, copy)
    with ScanStore.open(copy, mode="r+") as s:
        plan = dict(s.meta["plan"])
        plan["safety"] = {**plan.get("safety", {}), "z_floor_um": float("nan")}
        s.update_meta(plan=plan, status="canceled")
    assert main(["info", str(copy)]) == 0
    assert "z_floor_um" in capsys.readouterr().out
    assert main(["resume", str(copy)]) == 2
    assert "safety.z_floor_um" in capsys.readouterr().err
