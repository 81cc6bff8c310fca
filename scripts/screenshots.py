"""Make the README's screenshots: the simulated rig in napari, during and after a scan.

Run under a display (or xvfb-run):
    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py
Writes docs/images/napari_scan_running.png, napari_scan_done.png, napari_aligned.png,
napari_with_micromanager.png (napari-micromanager and the SECCM widgets on one core),
micromanager_controls.png and napari_rig_refusal.png (pymmcore-widgets on the SECCM core)
and napari_voltammetric.png (a CV map browsed by potential). Only the last one:
    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py voltammetric
"""

from __future__ import annotations

import shutil
import sys
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
    viewer.window._qt_window.resize(1280, 800)
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
    rig.core.setProperty("SECCM", "TimeScale", 0.004)
    scan.start()
    viewer.scene.camera.center = (0.0, 0.0)
    viewer.scene.camera.zoom = 26
    wait(lambda: scan.scan is not None and scan.scan.points_done > 800)
    QApplication.instance().processEvents()
    time.sleep(0.2)
    QApplication.instance().processEvents()
    viewer.screenshot(str(OUT / "napari_scan_running.png"), canvas_only=False)
    rig.core.setProperty("SECCM", "TimeScale", 0.0)
    wait(lambda: scan.scan.final_status is not None, 120)
    wait(lambda: False, 0.5)
    insp.inspect_world((1.05, -2.25))
    layer = next(lay for lay in viewer.layers if "current" in lay.name)
    viewer.layers.selection.active = layer
    wait(lambda: False, 0.5)
    viewer.screenshot(str(OUT / "napari_scan_done.png"), canvas_only=False)
    # the TEM-like image of the same film: an automatic first guess, refined
    # by four landmarks
    from napari_seccm.analysis.registration import apply
    from napari_seccm.devices.simulated import simulated_rig
    from napari_seccm.simulation.tem import write_tem_tiff
    from napari_seccm.widgets.align import MOV_POINTS, REF_POINTS

    hidden = write_tem_tiff(tmp / "llto_tem.tif", simulated_rig().film)
    viewer.open(str(tmp / "llto_tem.tif"), plugin="napari-seccm")
    tem = viewer.layers["llto_tem"]
    viewer.layers.move(viewer.layers.index(tem), 1)  # above the optical image
    _, align = viewer.window.add_plugin_dock_widget("napari-seccm", "Align", tabify=True)
    align.ref_combo.setCurrentText(layer.name)
    align.mov_combo.setCurrentText(tem.name)
    align.first_guess(block=True)
    align.add_landmark_layers()
    px = [[40.0, 60.0], [450.0, 90.0], [300.0, 470.0], [120.0, 380.0]]
    viewer.layers[REF_POINTS].data = apply(hidden, px)
    viewer.layers[MOV_POINTS].data = px
    align.estimate_and_apply()
    layer.opacity = 0.6
    viewer.layers.selection.active = tem
    viewer.scene.camera.center = (-2.0, 1.5)
    viewer.scene.camera.zoom = 32
    wait(lambda: False, 0.5)
    viewer.screenshot(str(OUT / "napari_aligned.png"), canvas_only=False)
    print(
        "wrote",
        OUT / "napari_scan_running.png",
        OUT / "napari_scan_done.png",
        OUT / "napari_aligned.png",
    )
    rig.core.unloadAllDevices()
    viewer.close()
    with_micromanager(tmp)
    micromanager_controls()
    voltammetric(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def with_micromanager(tmp: Path) -> None:
    """napari-micromanager and the SECCM widgets in one window at 1280 x 800:
    one core, its snap placed in um under a finished SECCM map."""
    from napari_micromanager.main_window import MainWindow

    viewer = napari.Viewer(title="napari-micromanager and napari-seccm on one core")
    viewer.window._qt_window.resize(1280, 800)
    win = MainWindow(viewer)
    viewer.window.add_dock_widget(win, name="Micro-Manager", area="top")
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    _, scan = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan", tabify=True)
    rig._load()
    core = rig.session.core
    assert win.core is core
    scan.w.setValue(6.0)
    scan.h.setValue(6.0)
    scan.pitch.setValue(0.3)
    scan.out_edit.setText(str(tmp / "mm.seccm.zarr"))
    scan.start()
    wait(lambda: scan.scan is not None and scan.scan.final_status is not None, 120)
    core.setXYPosition(0.0, 0.0)
    core.waitForSystem()
    core.snap()  # napari-micromanager's preview, placed in um by the link
    wait(lambda: "preview" in viewer.layers and viewer.layers["preview"].visible, 10)
    wait(lambda: False, 0.5)
    viewer.reset_view()
    viewer.scene.camera.center = (0.0, 0.0)
    viewer.scene.camera.zoom = 28
    wait(lambda: False, 0.5)
    out = OUT / "napari_with_micromanager.png"
    viewer.screenshot(str(out), canvas_only=False)
    print("wrote", out)
    core.unloadAllDevices()
    viewer.close()


def micromanager_controls() -> None:
    """Rig > Micro-Manager controls… at 1280 x 800: pymmcore-widgets' stage
    widgets on the SECCM core, a lateral jog refused in contact and said in the
    window's and the Rig's status lines."""
    viewer = napari.Viewer(title="pymmcore-widgets on the SECCM core")
    viewer.window._qt_window.resize(1280, 800)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    rig._load()
    core = rig.session.core
    core.setProperty("Potentiostat", "Potential_V", 1.0)
    core.setProperty("Potentiostat", "Cell", "On")
    rig._move_z(float(core.getProperty("SECCM", "SurfaceHeight_um")) + 2.0)
    wait(lambda: not rig._busy)
    rig._approach()
    wait(lambda: not rig._busy, 60)
    rig._show_properties()
    ctl = rig._browser
    ctl.resize(560, 700)
    ctl.move(viewer.window._qt_window.geometry().topLeft())
    ctl.tabs.setCurrentIndex(1)  # the stages
    wait(lambda: False, 0.5)
    ctl.stages[core.getXYStageDevice()]._on_move_requested(1.0, 0.0)
    wait(lambda: "refused" in ctl.status.text(), 5)
    wait(lambda: False, 0.5)
    out = OUT / "micromanager_controls.png"
    ctl.grab().save(str(out))
    print("wrote", out)
    out = OUT / "napari_rig_refusal.png"
    viewer.screenshot(str(out), canvas_only=False)
    print("wrote", out)
    ctl.close()
    core.unloadAllDevices()
    viewer.close()


def voltammetric(tmp: Path) -> None:
    """A CV at every landing of the simulated film (two cycles), opened in
    napari and browsed by potential; the Inspector shows a pixel's
    voltammogram with the slider's potential marked."""
    from napari_seccm.acquisition.plan import CyclicVoltammetry, RectangleArea, ScanPlan

    path = tmp / "llto_cv.seccm.zarr"
    plan = ScanPlan(
        name="LLTO CV map",
        area=RectangleArea(width_um=9.0, height_um=9.0),
        pitch_um=0.3,
        measurement=CyclicVoltammetry(start_V=0.0, vertex_V=1.0, scan_rate_V_per_s=10.0, cycles=2),
    )
    # scanned in its own process, as a user would (napari-seccm scan)
    import subprocess

    plan.save(tmp / "cv_plan.yaml")
    cli = [sys.executable, "-m", "napari_seccm.cli", "scan", "--quiet"]
    subprocess.run([*cli, "--plan", str(tmp / "cv_plan.yaml"), "--out", str(path)], check=True)
    viewer = napari.Viewer(title="napari-seccm: a CV map browsed by potential")
    viewer.window._qt_window.resize(1280, 800)
    viewer.open(str(path), plugin="napari-seccm")
    _, insp = viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    layer = viewer.layers[-1]
    step = int(0.75 * (layer.data.shape[1] - 1))  # 0.75 V
    viewer.dims.current_step = (1, step, 0, 0)
    wait(lambda: False, 0.5)
    y, x = layer.data_to_world((1, step, 14, 9))[-2:]
    insp.inspect_world((*viewer.dims.point[:2], y, x))
    viewer.dims.current_step = (2, step, 0, 0)  # cycle 1, rising: the marker follows
    wait(lambda: False, 0.3)
    viewer.reset_view()  # the whole map, in the canvas the docked Inspector leaves
    wait(lambda: False, 0.5)
    out = OUT / "napari_voltammetric.png"
    viewer.screenshot(str(out), canvas_only=False)
    print("wrote", out)
    viewer.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["voltammetric"]:
        tmp = Path(tempfile.mkdtemp(prefix="seccm-shots-"))
        voltammetric(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        main()
