"""Live traces: the ring buffer (bounded, ordered, thread-safe), the min/max
decimation, and the Scan widget's scrolling panel under Xvfb."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_seccm.acquisition.live import LiveTrace, decimate_minmax


@settings(max_examples=50, deadline=None)
@given(
    cap=st.integers(5, 300),
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=20),
)
def test_ring_buffer_keeps_the_newest_samples_in_order(cap, sizes):
    buf = LiveTrace(capacity=cap)
    t_all = []
    t0 = 0.0
    for m in sizes:
        t = t0 + np.arange(m, dtype=float)
        t0 += m
        buf.push(t, -t, 2 * t)
        t_all.extend(t)
    out = buf.latest(np.inf)
    want = np.array(t_all[-cap:]) if t_all else np.empty(0)
    np.testing.assert_array_equal(out[0], want)
    np.testing.assert_array_equal(out[1], -want)
    np.testing.assert_array_equal(out[2], 2 * want)
    assert buf.version == len(t_all)
    # the largest current ever pushed, kept as it came (not only what the ring holds)
    if t_all:
        assert buf.peak_current_A == 2 * max(t_all)
    else:
        assert np.isnan(buf.peak_current_A)
    if t_all:
        w = buf.latest(10.0)
        assert w[0].size and w[0][0] >= t_all[-1] - 10.0 and w[0][-1] == t_all[-1]
        # exactly the newest samples of the last 10 s (found by bisection)
        np.testing.assert_array_equal(w, out[:, out[0] >= out[0][-1] - 10.0])


def test_reader_never_sees_a_torn_or_disordered_snapshot():
    buf = LiveTrace(capacity=5000)
    stop = threading.Event()

    def writer() -> None:
        t = 0.0
        while not stop.is_set():
            m = 777
            tt = t + np.arange(m)
            buf.push(tt, tt, tt)
            buf.push_one(tt[-1] + 1, tt[-1] + 1, tt[-1] + 1)
            t = tt[-1] + 2

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(2000):
            out = buf.latest(np.inf)
            if out.shape[1] > 1:
                assert np.all(np.diff(out[0]) == 1.0)
                assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    finally:
        stop.set()
        th.join()


def test_minmax_decimation_keeps_spikes_and_bounds_the_points():
    t = np.arange(100_000) / 5000.0
    y = np.zeros_like(t)
    y[54_321] = 7.0  # one-sample spike
    y[11] = -3.0
    tt, yy = decimate_minmax(t, y, 300)
    assert yy.size <= 600 and tt.size == yy.size
    assert yy.max() == 7.0 and yy.min() == -3.0
    assert np.all(np.diff(tt) >= 0)
    # NaNs (Z moves carry no current) are left out; short input is unchanged
    y2 = np.array([1.0, np.nan, 2.0])
    np.testing.assert_array_equal(decimate_minmax(np.arange(3.0), y2, 10)[1], [1.0, 2.0])


@pytest.mark.gui
def test_scan_widget_shows_the_hop_in_progress(make_napari_viewer, qtbot, tmp_path):
    """A scan from the widget: the panel redraws from the engine's buffer,
    its current and Z lines hold the last seconds of samples (at most two
    points per pixel), Z in um near the landings, the current up to the
    landing currents; folding stops the drawing; Accept contact is refused
    when no approach runs."""
    from napari_seccm.acquisition.store import ScanStore

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    _, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    panel = sw.live_traces
    sw.w.setValue(3.0)
    sw.h.setValue(3.0)
    sw.pitch.setValue(0.3)
    out = tmp_path / "live.seccm.zarr"
    sw.out_edit.setText(str(out))
    sw.start()
    qtbot.waitUntil(
        lambda: sw.scan is not None and sw.scan.final_status is not None, timeout=60_000
    )
    qtbot.waitUntil(lambda: panel.redraws > 0 and not panel.timer.isActive(), timeout=10_000)
    core = sw.session.core
    try:
        t, i = panel.line_i.get_data()
        tz, z = panel.line_z.get_data()
        px = panel.canvas.plot_width_px()
        assert 0 < t.size <= 2 * px and 0 < tz.size <= 2 * px
        assert np.all(np.diff(t) >= 0)
        assert t[-1] - t[0] <= panel.window_s + 1e-9
        with ScanStore.open(out) as s:
            cz = s.array("results/contact_z_um")[:]
            val = s.array("results/value_A")[:]
        # Z: between the lowest landing and the lifts above it
        assert np.nanmin(z) >= np.nanmin(cz) - 0.5 and np.nanmax(z) <= np.nanmax(cz) + 5
        # the current reaches the landings' currents (nA) and the air's (~0)
        assert np.nanmax(i) >= 0.5 * np.nanmin(val) and np.nanmin(np.abs(i)) < 1e-11
        assert (panel.line_i.unit, panel.line_z.unit) == ("A", "um")
        # the status, Stop and the emergency stop stay inside the window
        from qtpy.QtCore import QPoint

        win = viewer.window._qt_window
        for c in (sw.status, sw.stop_btn, sw.estop):
            br = c.mapTo(win, QPoint(c.width() - 1, c.height() - 1))
            assert win.rect().contains(br), (c, br)
        # folded: nothing drawn, even when new samples arrive
        panel.set_shown(False)
        assert not panel.canvas.isVisible()
        n = panel.redraws
        sw.scan.engine.live.push_one(1e6, 0.0, 0.0)
        panel.refresh()
        assert panel.redraws == n
        panel.set_shown(True)
        assert panel.redraws == n + 1
        # Accept contact outside an approach: refused, said in the status line
        panel.scan = sw.scan
        panel.accept()
        assert "refused" in sw.status.text()
    finally:
        core.unloadAllDevices()
