"""Make the README's screenshots: the simulated rig in napari, during and after a scan.

Run under a display (or xvfb-run):
    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py
Writes docs/images/napari_scan_running.png and docs/images/napari_scan_done.png.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def wait(cond, timeout: float = 60.0) -> None:
    app = QApplication.instance()
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout:
        app.processEvents()
        time.sleep(0.01)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="seccm-shots-"))
    viewer = napari.Viewer(title="napari-seccm: simulated SECCM on an LLTO film")
    viewer.window._qt_window.resize(1700, 1050)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    _, scan = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan", tabify=True)
    _, insp = viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    rig._load()
    rig._snap()
    wait(lambda: not rig._busy)
    scan.w.setValue(12.0)
    scan.h.setValue(12.0)
    scan.pitch.setValue(0.3)
    scan.out_edit.setText(str(tmp / "llto_map.seccm.zarr"))
    # a real-time-paced scan would take 11 min; slow the simulation just enough
    # to catch it half-way
    rig.core.setProperty("Sample", "TimeScale", 0.004)
    scan.start()
    viewer.camera.center = (0.0, 0.0)
    viewer.camera.zoom = 38
    wait(lambda: scan.scan.points_done > 800)
    QApplication.instance().processEvents()
    time.sleep(0.2)
    QApplication.instance().processEvents()
    viewer.screenshot(str(OUT / "napari_scan_running.png"), canvas_only=False)
    rig.core.setProperty("Sample", "TimeScale", 0.0)
    wait(lambda: scan.scan.final_status is not None, 120)
    wait(lambda: False, 0.5)
    insp.inspect_world((1.05, -2.25))
    layer = next(lay for lay in viewer.layers if "current" in lay.name)
    viewer.layers.selection.active = layer
    wait(lambda: False, 0.5)
    viewer.screenshot(str(OUT / "napari_scan_done.png"), canvas_only=False)
    print("wrote", OUT / "napari_scan_running.png", OUT / "napari_scan_done.png")
    rig.core.unloadAllDevices()
    viewer.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
