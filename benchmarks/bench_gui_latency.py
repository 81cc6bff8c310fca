"""GUI responsiveness while a scan fills its layers in napari.

A 10 ms main-thread timer runs while the Scan widget runs a map on the
simulated rig in fast mode (the hardest case: points arrive every ~0.5 ms),
with the Rig, Scan and Inspector widgets docked as a user has them. Its
lateness (how late each tick fires) is what a user feels as a frozen window.
For comparison the same timer runs while the same layers are only redrawn at
the live rate (25 Hz), with no scan: what rendering alone costs here.

Needs a display; without one an Xvfb server is started (pyvirtualdisplay).
Prints one line per map size. Target: lateness p99 < 50 ms.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SIZES = tuple(
    (int(n), float(p))
    for n, p in (s.split(":") for s in os.environ.get("BENCH_SIZES", "48:0.3,96:0.15").split(","))
)  # points per side : pitch um


def lateness_ms(until, timeout_s: float) -> np.ndarray:
    from qtpy.QtWidgets import QApplication

    from napari_seccm.widgets._timing import timer_lateness_ms

    app = QApplication.instance()

    def run_events() -> None:
        t_end = time.monotonic() + timeout_s
        while not until() and time.monotonic() < t_end:
            app.processEvents()
            time.sleep(0.001)

    return timer_lateness_ms(run_events)


def stats(lat: np.ndarray) -> str:
    from napari_seccm.widgets._timing import lateness_stats

    return lateness_stats(lat)


def main() -> None:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    tmp = Path(tempfile.mkdtemp(prefix="seccm-bench-gui-"))
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    add = viewer.window.add_plugin_dock_widget
    _, rig = add("napari-seccm", "Rig")
    _, sw = add("napari-seccm", "Scan")
    add("napari-seccm", "Inspector")
    rig._load()
    app = QApplication.instance()
    for n, pitch in SIZES:
        for lay in list(viewer.layers):
            viewer.layers.remove(lay)
        sw.pitch.setValue(pitch)
        sw.w.setValue(n * pitch)
        sw.h.setValue(n * pitch)
        sw.out_edit.setText(str(tmp / f"gui_{n}.seccm.zarr"))
        sw.start()
        while sw._starting or sw.scan is None:
            app.processEvents()
            time.sleep(0.002)
        scan = sw.scan
        t0 = time.perf_counter()
        lat = lateness_ms(
            lambda s=scan: s.final_status is not None and not sw._timer.isActive(), 600
        )
        wall = time.perf_counter() - t0
        live = sw.session.live
        refresh = QTimer()
        refresh.setInterval(live.timer.interval())
        refresh.timeout.connect(lambda lv=live: [lay.refresh() for lay in lv.layers])
        refresh.start()
        t_base = time.perf_counter()
        base = lateness_ms(lambda t=t_base: time.perf_counter() - t > 2.0, 10)
        refresh.stop()
        print(
            f"{scan.n_total:5d}-point scan ({scan.final_status}) in {wall:5.1f} s: "
            f"{stats(lat)}; {live.refreshes} layer refreshes | "
            f"rendering alone at 25 Hz: {stats(base)}"
        )
    rig.core.unloadAllDevices()
    viewer.close()


if __name__ == "__main__":
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        from pyvirtualdisplay import Display

        with Display(visible=False, size=(1600, 1000), color_depth=24):
            main()
    else:
        main()
