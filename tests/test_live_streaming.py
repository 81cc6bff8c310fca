"""The approach in progress streams: the Z stage's ``Approach_Progress`` holds
the samples recorded so far while the pipette comes down (the simulated
controller at TimeScale 1, the PI software approach against the fake GCS
controller, the NI-DAQ's ramp against the fake gRPC server), never one from
the future, always a prefix of the final ``Approach_Trace``; the engine pushes
them into its live buffer while it waits, each once; the Scan widget's live
plot grows during an approach; Accept contact pressed while watching works,
in a scan and in the Rig."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _scan_helpers import at_approach
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seccm.acquisition.control import accept_contact
from napari_seccm.acquisition.live import ApproachFeed, LiveTrace
from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
from napari_seccm.acquisition.scan import Scan
from napari_seccm.acquisition.store import ScanStore


def watch_approach(core, timeout_s: float = 10.0, period_s: float = 0.03):
    """Start the approach and read ``Approach_Progress`` through the core
    until it ends. Returns the reads as (wall time since the start, after the
    read, s; rows copied) and the final trace."""
    reads: list[tuple[float, np.ndarray]] = []
    t0 = time.perf_counter()
    core.setProperty("PiezoZ", "Approach", "Start")
    while core.deviceBusy("PiezoZ"):
        rows = np.array(core.getProperty("PiezoZ", "Approach_Progress"))
        reads.append((time.perf_counter() - t0, rows))
        assert time.perf_counter() - t0 < timeout_s, "the approach did not end"
        time.sleep(period_s)
    return reads, np.asarray(core.getProperty("PiezoZ", "Approach_Trace"))


def check_streamed(reads, final: np.ndarray, time_scale: float, slack_s: float) -> None:
    """Samples came before the end, in time order, each read a prefix of the
    final trace, none later than the (scaled) wall time elapsed at its read."""
    assert final.ndim == 2 and final.shape[0] == 3 and final.shape[1] > 100
    assert np.all(np.diff(final[0]) > 0)
    counts = [rows.shape[1] for _, rows in reads]
    assert counts == sorted(counts), "a read held fewer samples than an earlier one"
    during = [c for c in counts if 0 < c < final.shape[1]]
    assert len(set(during)) >= 4, f"too few growing reads before the end: {counts}"
    for elapsed, rows in reads:
        n = rows.shape[1]
        np.testing.assert_array_equal(rows, final[:, :n])
        if n:
            # recorded by then: not from the instrument's future
            assert rows[0, -1] <= elapsed * time_scale + slack_s, (rows[0, -1], elapsed)


def near(core, gap_um: float) -> float:
    """Cell on at 1 V, the pipette ``gap_um`` above the simulated film (fast)."""
    core.setProperty("SECCM", "TimeScale", 0.0)
    core.setProperty("Potentiostat", "Cell", "On")
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    surface = core.getProperty("SECCM", "SurfaceHeight_um")
    core.setPosition(surface + gap_um)
    core.waitForSystem()
    return surface


def test_the_simulated_approach_publishes_only_what_has_happened(core):
    surface = near(core, 1.0)
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 1.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - 1.0)
    reads, final = watch_approach(core)
    assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
    check_streamed(reads, final, time_scale=1.0, slack_s=1e-3)
    # the descent took ~0.9 s: reads every 30 ms saw it come down
    assert len(reads) > 15
    zs = [rows[1, -1] for _, rows in reads if rows.shape[1]]
    assert zs[0] > zs[-1] and np.all(np.diff(zs) <= 0)
    # once it has ended, the progress is the trace
    np.testing.assert_array_equal(core.getProperty("PiezoZ", "Approach_Progress"), final)
    assert core.getProperty("PiezoZ", "Approach_Progress_Samples") == final.shape[1]


def test_an_aborted_simulated_approach_keeps_what_was_published(core):
    surface = near(core, 3.0)
    core.setProperty("SECCM", "TimeScale", 1.0)
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 2.0)
    core.setProperty("PiezoZ", "Approach_StopZ_um", surface - 1.0)
    core.setProperty("PiezoZ", "Approach", "Start")
    time.sleep(0.3)
    seen = np.array(core.getProperty("PiezoZ", "Approach_Progress"))
    core.stop("PiezoZ")
    core.waitForDevice("PiezoZ")
    assert core.getProperty("PiezoZ", "Approach_Result") == "aborted"
    final = np.asarray(core.getProperty("PiezoZ", "Approach_Trace"))
    assert 0 < seen.shape[1] <= final.shape[1]
    np.testing.assert_array_equal(seen, final[:, : seen.shape[1]])
    # cut at the abort: ~0.3 s of 5 kHz samples, not the whole precomputed descent
    assert final[0, -1] < 0.6


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    reads=st.lists(st.integers(0, 300), max_size=30),
    t0=st.floats(0.0, 1e4),
)
def test_the_feed_pushes_each_sample_once(n, reads, t0):
    """Reads of any length (a shorter one too: a stage between its
    controller and its result) and the final trace: every sample once, in
    order, on the live axis from ``t0``."""
    live = LiveTrace()
    final = np.vstack((np.arange(n) * 2e-4 + 0.5, 10.0 - np.arange(n) * 1e-3, np.sin(np.arange(n))))
    feed = ApproachFeed(live, t0, period_s=0.0)
    for k in reads:
        feed.add(final[:, : min(k, n)])
    feed.add("1,2,3")  # a C++ adapter's text: nothing
    feed.finish(final)
    feed.finish(final)
    out = live.latest(np.inf)
    np.testing.assert_allclose(out[0], t0 + final[0] - final[0, 0], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(out[1:], final[1:])
    assert feed.pushed == live.version == n


def _slow_plan() -> ScanPlan:
    data = ScanPlan(area=RectangleArea(width_um=1.0, height_um=0.5), pitch_um=0.5).model_dump()
    data["approach"].update(search_speed_um_per_s=100.0, slow_speed_um_per_s=0.5, slow_zone_um=1.0)
    return ScanPlan.model_validate(data)


def test_the_engine_streams_the_approach_and_a_contact_is_accepted_while_watching(
    make_core, tmp_path
):
    """Real time: during the second point's slow approach the engine's live
    buffer grows before it ends; Accept contact, pressed while watching,
    makes it a manual contact; every approach sample is in the buffer once,
    in time order."""
    core = make_core()
    core.setProperty("SECCM", "TimeScale", 1.0)
    path = tmp_path / "stream.seccm.zarr"
    scan = Scan.create(core, _slow_plan(), path)
    seen: dict[str, object] = {}

    def running() -> bool:
        return core.getProperty("PiezoZ", "Approach") == "Start"

    def watch_then_accept() -> None:
        live = scan.engine.live
        v0 = live.version
        t_end = time.monotonic() + 5.0
        while running() and live.version - v0 < 500 and time.monotonic() < t_end:
            time.sleep(0.005)
        seen["grew"] = live.version - v0
        seen["still_running"] = running()
        seen["rows"] = live.latest(np.inf)
        accept_contact(core)

    # a live plot reads the buffer while the scan runs (the engine pushes
    # only to a buffer someone reads)
    plotting = threading.Event()

    def plot() -> None:
        while not plotting.wait(0.05):
            eng = scan.engine
            if eng is not None:
                eng.live.latest(5.0)

    plotter = threading.Thread(target=plot, daemon=True)
    plotter.start()
    # the search, the first point's approach, the second point's
    try:
        with at_approach(core, 3, watch_then_accept):
            assert scan.run() == "complete"
    finally:
        plotting.set()
        plotter.join(5)
    assert seen.get("still_running"), f"the approach ended before its samples streamed: {seen}"
    assert seen["grew"] >= 500
    with ScanStore.open(path) as s:
        assert s.array("approach/manual")[:].tolist() == [0, 1]
    # the last approach's samples: each once in the buffer, in order
    z_tr, i_tr = scan.engine._ap_curve
    t, z, i = scan.engine.live.latest(np.inf)
    assert np.all(np.diff(t) >= 0)
    sampled = np.isfinite(i)  # not the ends of Z moves (no current)
    t, z, i = t[sampled], z[sampled], i[sampled]
    n = z_tr.size
    (k,) = np.flatnonzero(z == z_tr[0])  # its first sample once
    assert np.count_nonzero(z == z_tr[-1]) == 1  # its last one once
    np.testing.assert_array_equal(z[k : k + n], z_tr)
    np.testing.assert_array_equal(i[k : k + n], i_tr)
    # what was seen while it came down is the start of it
    _, z_mid, i_mid = seen["rows"][:, np.isfinite(seen["rows"][2])]
    (k,) = np.flatnonzero(z_mid == z_tr[0])
    m = z_mid.size - k
    assert 0 < m < n
    np.testing.assert_array_equal(z_mid[k:], z_tr[:m])
    np.testing.assert_array_equal(i_mid[k:], i_tr[:m])


# ------------------------------------------------------------ the fakes
def test_the_pi_software_approach_streams_against_the_fake_controller(tmp_path):
    pytest.importorskip("pipython")
    pytest.importorskip("nidaqmx")
    from napari_seccm.configs import config_path, load_core
    from napari_seccm.fakes import serve

    with serve.start(config_path("seccm_pi_nidaq.cfg"), tmp_path / "reh.cfg") as reh:
        core = load_core(reh.config, signals="psygnal")
        try:
            s = reh.world.surface_um()
            core.setProperty("Potentiostat", "Potential_V", 1.0)
            core.setProperty("Potentiostat", "Cell", "On")
            core.setProperty("PiezoZ", "Speed_um_per_s", 100.0)
            core.setPosition("PiezoZ", s + 1.0)
            core.waitForDevice("PiezoZ")
            core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 1.0)
            core.setProperty("PiezoZ", "Approach_StopZ_um", s - 0.3)
            core.setProperty("PiezoZ", "Approach_Threshold_A", 5e-11)
            reads, final = watch_approach(core)
            assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
            # sample times are the monitor's estimates of the DAQ's clock
            check_streamed(reads, final, time_scale=1.0, slack_s=0.02)
            assert any(line.startswith("MOV") for line in reh.fakes["PI"].log)
        finally:
            core.unloadAllDevices()


def test_the_nidaq_ramp_approach_streams_against_the_fake_server(tmp_path):
    pytest.importorskip("nidaqmx")
    pytest.importorskip("grpc")
    from test_nidaq import _core, go_near, ideal_world, surface, write_config

    from napari_seccm.fakes.nidaq_grpc import FakeNIDAQServer

    fake = FakeNIDAQServer(ideal_world())
    fake.start()
    core = _core()
    try:
        core.loadSystemConfiguration(str(write_config(tmp_path / "daq.cfg", fake.address)))
        core.setProperty("Potentiostat", "Cell", "On")
        core.setProperty("Potentiostat", "Potential_V", 1.0)
        go_near(core, fake, 1.0)
        core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 1.0)
        core.setProperty("PiezoZ", "Approach_StopZ_um", surface(fake) - 0.5)
        reads, final = watch_approach(core)
        assert core.getProperty("PiezoZ", "Approach_Result") == "contact"
        check_streamed(reads, final, time_scale=1.0, slack_s=0.01)
    finally:
        core.unloadAllDevices()
        fake.stop()


# --------------------------------------------------------------- widgets
@pytest.mark.gui
def test_the_scan_widgets_live_plot_grows_during_an_approach(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    _, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    panel = sw.live_traces
    core = sw.session.ensure_core()
    try:
        near(core, 1.0)
        core.setProperty("SECCM", "TimeScale", 1.0)
        sw.w.setValue(1.0)
        sw.h.setValue(0.5)
        sw.pitch.setValue(0.5)
        sw.slow.setValue(0.3)
        sw.out_edit.setText(str(tmp_path / "gui.seccm.zarr"))
        sw.start()
        qtbot.waitUntil(lambda: sw.scan is not None and sw.scan.engine is not None, timeout=10_000)

        def slow_running() -> bool:
            return core.getProperty("PiezoZ", "Approach") == "Start" and (
                core.getProperty("PiezoZ", "Approach_Speed_um_per_s") < 1.0
            )

        qtbot.waitUntil(slow_running, timeout=20_000)
        ends: list[float] = []
        while slow_running() and len(set(ends)) < 4:
            qtbot.wait(60)
            t, _ = panel.line_i.get_data()
            if len(t):
                ends.append(float(t[-1]))
        assert slow_running(), "the approach ended before the plot grew"
        assert len(set(ends)) >= 4 and ends == sorted(ends)
        panel.accept()  # the panel's Accept contact, while watching
        assert "accepted by hand" in sw.status.text()
        qtbot.waitUntil(lambda: sw.scan.final_status is not None, timeout=30_000)
        with ScanStore.open(tmp_path / "gui.seccm.zarr") as s:
            assert 1 in s.array("approach/manual")[:].tolist()
    finally:
        core.unloadAllDevices()


@pytest.mark.gui
def test_the_rig_shows_its_approach_and_accepts_a_contact(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=False)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    core = rig.session.ensure_core()
    try:
        near(core, 2.0)
        core.setProperty("SECCM", "TimeScale", 1.0)
        rig.speed_spin.setValue(1.0)
        rig.depth_spin.setValue(3.0)
        rig.approach_btn.click()
        qtbot.waitUntil(lambda: rig.accept_btn.isEnabled(), timeout=5_000)
        texts: list[str] = []
        qtbot.waitUntil(lambda: texts.append(rig.ap_live_label.text()) or len(set(texts)) >= 4)
        assert all("um" in t for t in texts[-3:]) and core.deviceBusy("PiezoZ")
        rig.accept_btn.click()
        qtbot.waitUntil(lambda: not rig._busy, timeout=5_000)
        assert "contact at Z" in rig.status.text()
        assert "(accepted by hand)" in rig.status.text()
        assert core.getProperty("PiezoZ", "Approach_Result") == "manual contact"
        # the readout holds the approach's last sample
        n = core.getProperty("PiezoZ", "Approach_Trace_Samples")
        qtbot.waitUntil(lambda: f"{n} samples" in rig.ap_live_label.text(), timeout=2_000)
    finally:
        core.unloadAllDevices()


def test_a_scan_nobody_watches_pushes_nothing_live_but_stores_its_curves(make_core, tmp_path):
    """A scan from a script or the command line (no plot reads the live
    buffer): the engine spends nothing on the live plot, and every landing's
    approach curve is stored all the same."""
    core = make_core()
    path = tmp_path / "quiet.seccm.zarr"
    scan = Scan.create(
        core, ScanPlan(area=RectangleArea(width_um=1.5, height_um=1.5), pitch_um=0.5), path
    )
    assert scan.run() == "complete"
    assert scan.engine.live.version == 0
    with ScanStore.open(path) as s:
        z = s.array("approach/z_um")[:]
        assert z.shape[0] == s.n_points == 9
        assert np.isfinite(z).any(axis=1).all()
