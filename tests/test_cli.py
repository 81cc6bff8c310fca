"""The ``napari-seccm`` command line, run as real subprocesses."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from _scan_helpers import (
    assert_done_points_intact,
    cli_info,
    done_count,
    run_cli,
    start_cli,
    stop_process,
    tree_snapshot,
    wait_for,
)

from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
from napari_seccm.acquisition.store import ScanStore, StoreLockedError

# a plan that runs a couple of seconds on the simulated rig: 25 x 25 = 625 points
LONG_PLAN = ScanPlan(name="long", area=RectangleArea(width_um=10.0, height_um=10.0), pitch_um=0.4)


def test_plan_scan_info_and_refusing_to_overwrite(tmp_path):
    plan_file = tmp_path / "f.yaml"
    r = run_cli("plan", "--out", str(plan_file))
    assert r.returncode == 0, r.stderr
    assert ScanPlan.load(plan_file) == ScanPlan()  # the template is the default plan
    r = run_cli("plan", "--out", str(plan_file))
    assert r.returncode == 2
    assert "exists; pass --overwrite" in r.stderr
    # make it small: a 3 x 3 um map (the comments of the template stay)
    text = plan_file.read_text()
    assert "width_um: 12.0" in text and "height_um: 12.0" in text
    plan_file.write_text(
        text.replace("width_um: 12.0", "width_um: 3.0").replace("height_um: 12.0", "height_um: 3.0")
    )
    assert ScanPlan.load(plan_file).n_points() == 100

    out = tmp_path / "o.seccm.zarr"
    r = run_cli("scan", "--plan", str(plan_file), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "complete" in r.stderr
    info = cli_info(out)
    assert info["status"] == "complete"
    assert info["reason"] == ""
    assert info["map_shape"] == [10, 10]
    assert info["pitch_um"] == pytest.approx(0.3)
    assert info["points_done"] == info["points_total"] == 100
    assert info["landing_status"] == {
        "ok": 100,
        "no_contact": 0,
        "saturated": 0,
        "false_trigger": 0,
        "failed": 0,
        "fault": 0,
    }
    assert info["instrument_time_s"] > info["wall_time_s"] > 0
    assert info["name"] == "seccm scan"
    assert_done_points_intact(out)

    # a second scan to the same store is refused, and the store is untouched;
    # there is nothing to resume either
    before = tree_snapshot(out)
    again = start_cli("scan", "--plan", str(plan_file), "--out", str(out))
    resume = start_cli("resume", str(out))
    _, err = again.communicate(timeout=120)
    _, err2 = resume.communicate(timeout=120)
    assert again.returncode == 2
    assert err.startswith("error: ")
    assert "already exists" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert resume.returncode == 2
    assert "already complete" in err2
    assert tree_snapshot(out) == before
    assert cli_info(out)["status"] == "complete"


def test_bad_plans_are_rejected_with_clear_messages(tmp_path):
    cases = {
        "negative-pitch.yaml": (
            "pitch_um: -1.0\n",
            ["pitch_um", "greater than 0", "-1.0"],
        ),
        "travel.yaml": (
            "area: {kind: rectangle, center_x_um: 48.0, width_um: 6.0, height_um: 6.0}\n",
            ["scan area X up to 51 um is beyond the stage travel", "maximum is 50 um"],
        ),
        "filter.json": (
            '{"potentiostat": {"sample_rate_Hz": 1000, "filter_Hz": 800}}',
            ["filter 800 Hz is above half the sample rate (500 Hz)"],
        ),
        "compliance.yaml": (
            "measurement: {kind: ca, potential_V: 7.5}\n",
            ["potential 7.5 V is beyond the potentiostat's compliance (maximum 5 V)"],
        ),
    }
    procs = {}
    for name, (text, _) in cases.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"{name}.seccm.zarr"
        procs[name] = (
            start_cli("scan", "--plan", str(tmp_path / name), "--out", str(out)),
            out,
        )
    for name, (proc, out) in procs.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, err)
        assert err.startswith("error: "), err
        assert "Traceback" not in err
        for fragment in cases[name][1]:
            assert fragment in err, (name, err)
        assert not out.exists(), name  # no store created


def _kill_when_running(proc, store, sig: int, min_points: int = 20) -> int:
    """Send ``sig`` to the CLI once more than ``min_points`` points are on disk."""
    wait_for(
        lambda: done_count(store) > min_points or proc.poll() is not None,
        90,
        "points on disk",
    )
    assert proc.poll() is None, "the scan ended before it could be interrupted"
    os.kill(proc.pid, sig)
    return done_count(store)


def test_sigkill_leaves_a_readable_store_that_resume_completes(tmp_path):
    plan_file = tmp_path / "long.json"
    LONG_PLAN.save(plan_file)
    n = LONG_PLAN.n_points()
    victim = tmp_path / "killed.seccm.zarr"
    reference = tmp_path / "reference.seccm.zarr"
    # an idealized simulated film and droplet: the resumed map is compared point
    # for point with a reference scan (realistic landings scatter from run to run)
    from _ideal import ideal_config

    cfg = str(ideal_config(tmp_path))
    ref = start_cli(
        "scan", "--config", cfg, "--plan", str(plan_file), "--out", str(reference), "--quiet"
    )
    proc = start_cli(
        "scan", "--config", cfg, "--plan", str(plan_file), "--out", str(victim), "--quiet"
    )
    try:
        wait_for(
            lambda: done_count(victim) > 20 or proc.poll() is not None,
            90,
            "points on disk",
        )
        # while it runs: readable, running, and locked against a second writer
        with ScanStore.open(victim) as s:
            assert s.status == "running"
        with pytest.raises(StoreLockedError):
            ScanStore.open(victim, mode="r+")
        at_kill = _kill_when_running(proc, victim, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        stop_process(proc)

    info = cli_info(victim)
    assert info["status"] == "interrupted"
    done = info["points_done"]
    assert at_kill <= done < n
    assert info["points_total"] == n
    mask = assert_done_points_intact(victim)
    assert mask.sum() == done
    with ScanStore.open(victim) as s:
        before = s.results()

    r = run_cli("resume", str(victim), "--quiet")
    assert r.returncode == 0, r.stderr
    _, ref_err = ref.communicate(timeout=120)
    assert ref.returncode == 0, ref_err

    info = cli_info(victim)
    assert info["status"] == "complete"
    assert info["points_done"] == n
    assert_done_points_intact(victim)
    with ScanStore.open(victim) as s, ScanStore.open(reference) as r_s:
        after = s.results()
        sessions = s.meta["sessions"]
        m, m_ref = s.current_map(), r_s.current_map()
        h, h_ref = s.height_map(), r_s.height_map()
    assert [x["points_pending"] for x in sessions] == [n, n - done]
    assert sessions[-1]["status"] == "complete"
    # the points measured before the kill were kept as they were
    np.testing.assert_array_equal(after["value_A"][mask], before["value_A"][mask])
    # the same map as an uninterrupted scan (fresh simulated rig: other noise)
    assert not np.isnan(m).any()
    rel = np.abs(m - m_ref) / np.abs(m_ref)
    assert float(rel.max()) < 0.01
    np.testing.assert_allclose(h, h_ref, atol=0.01)


def test_ctrl_c_cancels_cleanly(tmp_path):
    plan_file = tmp_path / "long.yaml"
    LONG_PLAN.save(plan_file)
    store = tmp_path / "ctrlc.seccm.zarr"
    proc = start_cli("scan", "--plan", str(plan_file), "--out", str(store))
    try:
        _kill_when_running(proc, store, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        stop_process(proc)
    assert proc.returncode == 130, err
    # Stop aborts the step in progress (the devices are asynchronous)
    assert "stopping (Ctrl-C): aborting the step in progress" in err
    assert "scan canceled: stopped by the user" in err
    assert "MDA Canceled" not in err and "\x1b[" not in err  # no repeated, coloured log line
    assert "Traceback" not in err
    info = cli_info(store)
    assert info["status"] == "canceled"
    # retract and cell off succeeded (a failure there would be added to the reason)
    assert info["reason"] == "stopped by the user"
    assert 20 < info["points_done"] < info["points_total"]
    assert_done_points_intact(store)
    # the lock went with the process: the scan can be resumed
    with ScanStore.open(store, mode="r+") as s:
        assert s.writable


def test_invalid_plan_fields_are_named_with_their_value(tmp_path, capsys):
    """Bad plan fields come back one per line, with the value given; nothing is created."""
    from napari_seccm.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("pitch_um: -1\norder: zigzag\n")
    out = tmp_path / "never.seccm.zarr"
    assert main(["scan", "--plan", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "plan field pitch_um: Input should be greater than 0 (got -1)" in err
    assert "plan field order:" in err and "'zigzag'" in err
    assert "errors.pydantic.dev" not in err
    assert not out.exists()


# ------------------------------------------- refused before anything is made
def small_plan_file(tmp_path, width_um: float = 2.0, pitch_um: float = 1.0, **kw):
    """A small plan saved as YAML (2 x 2 um at 1 um by default: 4 points)."""
    path = tmp_path / "p.yaml"
    ScanPlan(
        area=RectangleArea(width_um=width_um, height_um=width_um), pitch_um=pitch_um, **kw
    ).save(path)
    return path


def test_bad_demo_arguments_leave_no_run_folder(tmp_path):
    for args in (["--pitch", "-1"], ["--iv-x", "500"], ["--config", "nope.cfg"]):
        r = run_cli("demo", "--out", str(tmp_path / "d"), "--quiet", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: "), r.stderr
        assert not (tmp_path / "d").exists() or not any((tmp_path / "d").iterdir()), args
    r = run_cli("demo", "--out", str(tmp_path / "d"), "--quiet", "--pitch", "-1")
    assert "--pitch must be above 0 um, got -1 um" in r.stderr
    r = run_cli("demo", "--out", str(tmp_path / "d"), "--quiet", "--iv-x", "500")
    assert "500" in r.stderr and "travel" in r.stderr, r.stderr


def test_a_range_the_amplifier_lacks_is_refused_before_the_store_exists(tmp_path):
    plan = small_plan_file(tmp_path, potentiostat={"current_range_A": 3e-8})
    out = tmp_path / "o.seccm.zarr"
    r = run_cli("scan", "--plan", str(plan), "--out", str(out), "--quiet")
    assert r.returncode == 2, r.stderr
    assert "current range 3e-08 A is not a range of Potentiostat; choose one of" in r.stderr
    assert "1e-08" in r.stderr and not out.exists()


def test_a_store_name_gets_its_suffix_and_the_end_says_what_was_measured(tmp_path):
    plan = small_plan_file(tmp_path)
    r = run_cli("scan", "--plan", str(plan), "--out", str(tmp_path / "mymap"))
    assert r.returncode == 0, r.stderr
    assert "the store is named" in r.stderr and "mymap.seccm.zarr" in r.stderr
    assert (tmp_path / "mymap.seccm.zarr" / "zarr.json").exists()
    assert "scan complete" in r.stderr  # progress and outcome go to stderr
    assert "4 of 4 points in" in r.stderr and "instrument time" in r.stderr
    r = run_cli("info", str(tmp_path / "missing.seccm.zarr"))
    assert r.returncode == 2 and "missing.seccm.zarr does not exist" in r.stderr


def test_a_map_that_saturates_stops_and_says_to_raise_the_range(tmp_path):
    plan = small_plan_file(
        tmp_path, 6.0, potentiostat={"current_range_A": 1e-9}, approach={"threshold_A": 3e-12}
    )
    out = tmp_path / "sat.seccm.zarr"
    r = run_cli("scan", "--plan", str(plan), "--out", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "10 points in a row saturated the 1 nA current range" in r.stderr, r.stderr
    with ScanStore.open(out) as s:
        counts = s.status_counts()
    assert counts["saturated"] == 10 and counts["pending"] == 36 - 10
    r = run_cli("analyze", str(out))
    assert r.returncode == 2, r.stderr
    assert "no pixel has a valid conductance" in r.stderr and "saturated 10" in r.stderr
    assert "measure again with a larger one" in r.stderr


def test_analysis_options_out_of_range_are_refused_by_name(tmp_path):
    plan = small_plan_file(tmp_path)
    store = tmp_path / "s.seccm.zarr"
    assert run_cli("scan", "--plan", str(plan), "--out", str(store), "--quiet").returncode == 0
    for args, msg in (
        (["--n-boot", "0"], "--n-boot must be at least 1 (bootstrap resamples), got 0"),
        (["--r2-min", "2"], "--r2-min must lie in [0, 1], got 2"),
        (["--potential-range-V", "1", "0"], "--potential-range-V needs LO < HI, got 1 0 V"),
        (["--settle-fraction", "1"], "--settle-fraction must lie in [0, 1), got 1"),
    ):
        r = run_cli("analyze", str(store), *args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("napari-seccm ")


def test_a_plan_far_longer_than_intended_is_refused_before_anything_is_made(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "d"), "--quiet", "--pitch", "0.01")
    assert r.returncode == 2, r.stderr
    assert "1,440,000 points" in r.stderr and "above --max-hours 48" in r.stderr, r.stderr
    assert not (tmp_path / "d").exists()
    plan = small_plan_file(tmp_path)
    out = tmp_path / "o.seccm.zarr"
    r = run_cli("scan", "--plan", str(plan), "--out", str(out), "--max-hours", "0.0001")
    assert r.returncode == 2 and "above --max-hours 0.0001" in r.stderr and not out.exists()


def test_analyze_json_keeps_its_keys_and_lists_warnings_with_codes(tmp_path):
    """A map too small for the map analysis: the old keys are there (null),
    and the warnings list says why, with a stable code; the text says it too."""
    import json

    plan = small_plan_file(tmp_path)  # 2 x 2 points
    store = tmp_path / "s.seccm.zarr"
    assert run_cli("scan", "--plan", str(plan), "--out", str(store), "--quiet").returncode == 0
    r = run_cli("analyze", str(store), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in (
        "period_um",
        "angle_deg",
        "conductance_ratio",
        "conductance_ratio_ci95",
        "spreading_conductance_ratio",
        "fraction_001",
    ):
        assert key in out and out[key] is None
    assert out["warnings"] == [{"code": "too_few_pixels", "message": out["warnings"][0]["message"]}]
    assert "4 valid pixels" in out["warnings"][0]["message"]
    r = run_cli("analyze", str(store))
    assert r.returncode == 0 and "warning          [too_few_pixels]" in r.stdout
