"""The shipped real-hardware configs against the fake instruments
(``napari-seccm fake-hardware``): a whole hopping scan through the real PI
and NI-DAQ drivers and the unmodified pipython and nidaqmx clients, a link lost
in the middle of it, and the resume after reconnecting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_seccm.acquisition.plan import (
    ApproachSettings,
    Chronoamperometry,
    PotentiostatSettings,
    RectangleArea,
    ScanPlan,
)
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import ScanStore
from napari_seccm.configs import config_path, load_core
from napari_seccm.fakes import serve

pytest.importorskip("pipython")
pytest.importorskip("nidaqmx")

REPO = Path(__file__).resolve().parents[1]


def plan(core, n: int = 3) -> ScanPlan:
    """n x n landings 1 um apart, found at 1 um/s within 0.3 um of the
    predicted height (the first one searched from 2 um above the surface);
    the potentiostat's settings as the config set them (an EmStat's are not
    an NI-DAQ's)."""
    pst = PotentiostatSettings(
        sample_rate_Hz=float(core.getProperty("Potentiostat", "SampleRate_Hz")),
        filter_Hz=float(core.getProperty("Potentiostat", "Filter_Hz")),
        current_range_A=float(core.getProperty("Potentiostat", "CurrentRange_A")),
    )
    return ScanPlan(
        area=RectangleArea(width_um=float(n), height_um=float(n)),
        pitch_um=1.0,
        approach=ApproachSettings(threshold_A=5e-11, search_depth_um=4.0),
        potentiostat=pst,
        measurement=Chronoamperometry(duration_s=0.05),
    )


def near_surface(core, world) -> None:
    """Bring the pipette 2 um above the film (the fakes start it 40 um up: a
    50 um search at 5 um/s would take 8 s of the test)."""
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("PiezoZ", "Speed_um_per_s", 100.0)
    core.setPosition("PiezoZ", world.surface_um() + 2.0)
    core.waitForDevice("PiezoZ")


@pytest.fixture(params=["seccm_pi_nidaq.cfg", "seccm_pi_emstat.cfg"])
def rehearsal(request, tmp_path):
    with serve.start(config_path(request.param), tmp_path / "rehearsal.cfg") as reh:
        yield reh


@pytest.fixture
def core(rehearsal):
    c = load_core(rehearsal.config, signals="psygnal")
    yield c
    c.unloadAllDevices()


def test_the_rehearsal_config_points_every_hub_at_a_fake(rehearsal) -> None:
    text = rehearsal.config.read_text()
    assert "#py Property,PI,Host,127.0.0.1" in text
    for hub, props in rehearsal.settings.items():
        for k, v in props.items():
            assert f"#py Property,{hub},{k},{v}" in text
    assert "192.168.0.10" not in text  # the real address is replaced, not doubled
    assert "/dev/ttyACM0" not in text
    # the settings come before the initialization
    lines = text.splitlines()
    assert lines.index("Property,Core,Initialize,1") > lines.index("#py Property,PI,Host,127.0.0.1")


def test_a_hopping_scan_runs_through_the_fakes(core, rehearsal, tmp_path) -> None:
    world = rehearsal.world
    near_surface(core, world)
    path = tmp_path / "map.seccm.zarr"
    scan = Scan.create(core, plan(core), path)
    assert scan.run(handle_signals=False) == "complete"
    with ScanStore.open(path) as s:
        assert s.meta["status"] == "complete"
        assert int(s.done_mask().sum()) == 9
        cur = np.asarray(s.current_map())
        z = np.asarray(s.height_map())
    # the fake cell's current at 1 V: nA, every landing
    assert np.isfinite(cur).all() and (cur > 1e-10).all() and (cur < 1e-7).all()
    # landed where the film is: within the meniscus (0.1 um) plus tilt of the surface
    assert np.nanmax(np.abs(z - world.surface_um())) < 0.5
    # the PI axes really went there, and the pipette is whole
    assert world.probe_state() == "ok"
    assert any(line.startswith("MOV 1") for line in rehearsal.fakes["PI"].log)


def test_a_lost_link_mid_scan_ends_it_fault_keeping_the_points_and_resume_finishes(
    core, rehearsal, tmp_path
) -> None:
    world = rehearsal.world
    near_surface(core, world)
    path = tmp_path / "map.seccm.zarr"
    scan = Scan.create(core, plan(core, 4), path)
    scan.start(handle_signals=False)
    t_end = time.monotonic() + 60
    while scan.points_done < 4:
        assert time.monotonic() < t_end and scan.is_running, scan.final_status
        time.sleep(0.01)
    rehearsal.fakes["PI"].drop()  # the Ethernet link goes
    status = scan.wait(60)
    assert status == "fault", (status, scan.error)
    done = scan.points_done
    assert done >= 4
    with ScanStore.open(path) as s:
        assert s.meta["status"] == "fault"
        reason = str(s.meta.get("reason", "")) + str(s.meta.get("fault", ""))
        kept = int(s.done_mask().sum())
    assert kept == done
    msg = str(scan.error) + reason
    assert "lost" in msg and "last target" in msg, msg
    # reconnect: reload the config; the rest of the map is measured
    core.unloadAllDevices()
    core.loadSystemConfiguration(str(rehearsal.config))
    core.setProperty("Potentiostat", "Cell", "On")
    again = Scan.resume(core, path)
    assert again.run(handle_signals=False) == "complete"
    with ScanStore.open(path) as s:
        assert int(s.done_mask().sum()) == 16
        assert np.isfinite(np.asarray(s.current_map())).all()


def test_the_fake_hardware_command_serves_until_stopped(tmp_path) -> None:
    out = tmp_path / "reh.cfg"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "napari_seccm.cli",
            "fake-hardware",
            "seccm_pi_nidaq.cfg",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    try:
        lines = []
        t_end = time.monotonic() + 60
        while not any("Ctrl-C" in line for line in lines):
            assert time.monotonic() < t_end and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        assert out.exists()
        core = load_core(out, signals="psygnal")
        try:
            assert core.getProperty("PI", "Model") == "E-727"
            assert core.getPosition("PiezoZ") > 0
        finally:
            core.unloadAllDevices()
        proc.send_signal(2)  # SIGINT, as Ctrl-C
        assert proc.wait(20) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    # an existing --out is not replaced
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_seccm.cli",
            "fake-hardware",
            "seccm_pi_nidaq.cfg",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "exists" in r.stderr


def test_a_cv_at_a_landing_through_the_core(core, rehearsal) -> None:
    """Land with the PI axis watched by the other hub's current stream, then
    one cyclic voltammogram there: E follows the program, I the cell's."""
    from napari_seccm.model.program import Program

    world = rehearsal.world
    s = world.surface_um()
    core.setProperty("Potentiostat", "Potential_V", 0.5)
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("PiezoZ", "Speed_um_per_s", 50.0)
    core.setPosition("PiezoZ", s + 0.5)
    core.waitForDevice("PiezoZ")
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 1.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", s - 0.3)
    core.setProperty("PiezoZ", "Approach_Threshold_A", 5e-11)
    core.setProperty("PiezoZ", "Approach", "Start")
    core.waitForDevice("PiezoZ")
    assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
    cz = float(core.getProperty("PiezoZ", "Approach_ContactZ_um"))
    assert s - 0.02 < cz < s + 0.15  # the meniscus touches 0.1 um above the film
    lat = float(core.getProperty("PiezoZ", "Approach_DetectionLatency_s"))
    assert 0 < lat < 0.1
    cv = Program.cyclic_voltammetry(0.2, 1.0, 2.0)  # 0.8 s
    core.setProperty("Potentiostat", "Waveform", cv.to_json())
    core.setProperty("Potentiostat", "Acquire", "Run")
    core.waitForDevice("Potentiostat")
    assert core.getProperty("Potentiostat", "LastError") == ""
    _t, e, i = np.asarray(core.getProperty("Potentiostat", "LastTrace"))
    rate = float(core.getProperty("Potentiostat", "SampleRate_Hz"))
    assert e.size == cv.n_samples(rate)
    np.testing.assert_allclose(e, cv.sample(rate), atol=2e-3)
    # ohmic contact: I rises with E, nA at 1 V, and comes back on the way down
    top = np.argmax(e)
    assert 1e-10 < i[top] < 1e-7
    assert i[top] > 2 * abs(i[0])
    assert world.probe_state() == "ok"
