"""Continue a stopped scan from the Scan widget (the GUI side of resume)."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_stop_then_continue_completes_the_same_store(make_napari_viewer, qtbot, tmp_path):
    from napari_seccm.acquisition.store import ScanStore

    viewer = make_napari_viewer(show=False)
    _, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    sw.w.setValue(9.0)
    sw.h.setValue(9.0)
    sw.pitch.setValue(0.3)
    out = tmp_path / "stopped.seccm.zarr"
    sw.out_edit.setText(str(out))
    sw.start()
    qtbot.waitUntil(lambda: sw.scan is not None and sw.scan.points_done > 50, timeout=30_000)
    sw.stop()
    qtbot.waitUntil(
        lambda: sw.scan.final_status is not None and not sw._timer.isActive(), timeout=30_000
    )
    assert sw.scan.final_status == "canceled"
    with ScanStore.open(out) as s:
        done_before = int(s.done_mask().sum())
        assert 0 < done_before < s.n_points
    first = sw.scan

    # continuing a complete or locked store is refused with a message; this one runs
    sw.continue_scan(out)
    t_end = time.monotonic() + 30
    while sw.scan is first and time.monotonic() < t_end:
        qtbot.wait(10)
    assert sw.scan is not first, sw.status.text()
    qtbot.waitUntil(
        lambda: sw.scan.final_status is not None and not sw._timer.isActive(), timeout=60_000
    )
    assert sw.scan.final_status == "complete", sw.status.text()
    with ScanStore.open(out) as s:
        assert s.done_mask().all()
        assert len(s.meta["sessions"]) == 2
        assert not np.isnan(s.current_map()).any()
    sw.continue_scan(out)
    qtbot.waitUntil(lambda: not sw._starting, timeout=10_000)
    assert "already complete" in sw.status.text()
    sw.session.core.unloadAllDevices()
