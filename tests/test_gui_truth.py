"""The widgets tell the truth (napari under Xvfb): what the scan will set on
the potentiostat is shown and follows the instrument; a scan on the simulator
says so, before it starts and in its store; a change made elsewhere shows at
once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("napari")

from _scan_helpers import pump

from napari_seccm.acquisition.store import ScanStore
from napari_seccm.cli import main as cli_main
from napari_seccm.configs import config_path

pytestmark = pytest.mark.gui

SIM = str(config_path("seccm_simulated.cfg"))


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Any:
    v = make_napari_viewer(show=False)
    yield v
    from napari_seccm.widgets._session import _SESSIONS

    for s in list(_SESSIONS.values()):
        if s.scan is not None and s.scan.is_running():
            s.scan.cancel()
            s.scan.wait(30)
        if s.core is not None:
            s.core.unloadAllDevices()
            s.core = None


def widgets(viewer: Any) -> tuple[Any, Any]:
    _d, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    _d, sw = viewer.window.add_plugin_dock_widget("napari-seccm", "Scan")
    rig.config_edit.setText(SIM)
    rig._load()
    pump()
    return rig, sw


def test_the_scan_shows_and_follows_the_potentiostat_settings(viewer: Any, qtbot: Any) -> None:
    rig, sw = widgets(viewer)
    core = rig.session.core
    # the instrument's ranges, the present one selected
    ranges = [float(v) for v in core.getProperty("Potentiostat", "CurrentRanges_A").split(",")]
    assert sw._ranges() == sorted(ranges)
    assert float(sw.range_combo.currentData()) == float(
        core.getProperty("Potentiostat", "CurrentRange_A")
    )
    assert "nA" in sw.range_combo.currentText() or "uA" in sw.range_combo.currentText()
    # set elsewhere (a script, the Rig): shown at once, and what the plan will set
    other = next(r for r in ranges if r != float(sw.range_combo.currentData()))
    core.setProperty("Potentiostat", "CurrentRange_A", other)
    core.setProperty("Potentiostat", "Filter_Hz", 500.0)
    pump()
    assert float(sw.range_combo.currentData()) == other
    assert sw.filter_spin.value() == 500.0
    plan = sw.plan()
    assert plan.potentiostat.current_range_A == other
    assert plan.potentiostat.filter_Hz == 500.0
    # chosen in the Scan widget: the plan carries it
    sw.range_combo.setCurrentIndex(0)
    assert sw.plan().potentiostat.current_range_A == min(ranges)


def test_a_scan_on_the_simulator_says_so_before_and_in_its_store(
    viewer: Any, qtbot: Any, tmp_path: Path, capsys: Any
) -> None:
    _rig, sw = widgets(viewer)
    sw.w.setValue(1.0)
    sw.h.setValue(1.0)
    sw.pitch.setValue(0.5)
    out = tmp_path / "sim.seccm.zarr"
    sw.out_edit.setText(str(out))
    sw.start()
    assert "SIMULATED" in sw.status.text(), sw.status.text()
    qtbot.waitUntil(lambda: sw.scan is not None and sw.scan.final_status is not None, timeout=60000)
    assert "SIMULATED" in sw.status.text() or sw.scan.final_status == "complete"
    with ScanStore.open(out) as s:
        assert s.meta["rig"]["simulated"] == ["SECCM"]
    capsys.readouterr()
    assert cli_main(["info", str(out)]) == 0
    assert "SIMULATED (SECCM)" in capsys.readouterr().out


def test_align_never_re_places_a_map_unless_the_user_chose_it(viewer: Any, tmp_path: Path) -> None:
    """A reopened scan shows its maps; Align's moving layer is never a map by
    default, and applying refuses to move one that the user did not choose."""
    from _scan_helpers import scan_to_store, small_plan

    store = scan_to_store(tmp_path / "a.seccm.zarr", small_plan(2.0, 0.5))
    viewer.open(str(store), plugin="napari-seccm")
    maps = [lay.name for lay in viewer.layers if "seccm" in lay.metadata]
    assert len(maps) >= 2
    _d, align = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    assert align.mov_combo.currentText() not in maps
    before = {n: viewer.layers[n].affine.affine_matrix.copy() for n in maps}
    align.add_landmark_layers()
    align.estimate_and_apply()
    assert "choose the moving layer" in align.status.text(), align.status.text()
    # chosen by the user in the combo: allowed (then the landmarks are what is missing)
    name = maps[-1]
    align.mov_combo.setCurrentText(name)
    align.mov_combo.activated.emit(align.mov_combo.currentIndex())
    align.estimate_and_apply()
    assert "SECCM map" not in align.status.text()
    for n in maps:
        assert (viewer.layers[n].affine.affine_matrix == before[n]).all()


def test_export_figure_with_a_fine_tem_image_is_scaled_and_says_so(
    make_napari_viewer: Any, tmp_path: Path
) -> None:
    """A 1 nm/px HAADF-like image beside a 50 um optical one: napari would ask
    for a 50,000 px canvas; the figure is scaled to the limit, and the status
    line says at what resolution. A refusal is said there too."""
    import numpy as np

    viewer = make_napari_viewer(show=True)
    _d, align = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    viewer.add_image(np.random.default_rng(0).random((500, 500)), scale=(0.1, 0.1), name="optical")
    viewer.add_image(
        np.random.default_rng(1).random((1000, 1000)), scale=(0.001, 0.001), name="haadf"
    )
    out = align.export_figure(tmp_path / "fig.png", max_side_px=1500)
    from PIL import Image

    with Image.open(out) as im:
        assert max(im.size) <= 1500 * 1.05
        assert max(im.size) >= 1000
    assert "scaled" in align.status.text() and "nm/px" in align.status.text()
    with pytest.raises(FileExistsError):
        align.export_figure(out)
    assert "not exported" in align.status.text() and "exists" in align.status.text()


def test_status_stop_and_emergency_stop_in_view_at_1280x800(make_napari_viewer: Any) -> None:
    """All five SECCM widgets docked (two tab groups) in a 1280 x 800 window:
    whichever tab is shown, its status line, its Stop and the emergency stop
    are inside the window (not below the fold of a scrolled form)."""
    from qtpy.QtCore import QPoint

    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1280, 800)
    docks = {}
    for name, tab in (
        ("Rig", False),
        ("Scan", True),
        ("Inspector", False),
        ("Align", True),
        ("Analysis", True),
    ):
        docks[name] = viewer.window.add_plugin_dock_widget("napari-seccm", name, tabify=tab)
    pump(0.3)
    assert win.height() <= 800
    for name, (dock, w) in docks.items():
        dock.raise_()
        pump(0.1)
        for attr in ("status", "stop_btn", "estop"):
            c = getattr(w, attr, None)
            if c is None:
                continue
            tl = c.mapTo(win, QPoint(0, 0))
            br = c.mapTo(win, QPoint(c.width() - 1, c.height() - 1))
            assert c.isVisible() and c.height() > 5, (name, attr)
            assert win.rect().contains(tl) and win.rect().contains(br), (name, attr, tl, br)
        # and nothing in its form is wider than the dock: no sideways scrolling
        # (a long label without word wrap, a plot's own minimum width)
        from qtpy.QtWidgets import QScrollArea

        area = w.findChild(QScrollArea)
        if area is not None and area.widget() is not None:
            need = area.widget().minimumSizeHint().width()
            assert need <= area.viewport().width(), (name, need, area.viewport().width())


def test_the_rig_shows_what_the_scan_or_a_script_set(
    viewer: Any, qtbot: Any, tmp_path: Path
) -> None:
    """The potentiostat set elsewhere (a script on the core; a scan, which sets
    its plan's range) shows in the Rig at once: range, potential, cell."""
    rig, sw = widgets(viewer)
    core = rig.session.core
    ranges = [float(v) for v in core.getProperty("Potentiostat", "CurrentRanges_A").split(",")]
    assert [float(rig.range_combo.itemData(i)) for i in range(rig.range_combo.count())] == sorted(
        ranges
    )
    core.setProperty("Potentiostat", "Potential_V", 0.75)
    core.setProperty("Potentiostat", "Cell", "On")
    pump()
    assert rig.pot_spin.value() == 0.75 and rig.cell_check.isChecked()
    # a scan whose plan asks for another range: the Rig shows it during and after
    other = max(ranges)
    sw.range_combo.setCurrentIndex(sw._ranges().index(other))
    sw.w.setValue(1.0)
    sw.h.setValue(1.0)
    sw.pitch.setValue(0.5)
    sw.out_edit.setText(str(tmp_path / "r.seccm.zarr"))
    sw.start()
    qtbot.waitUntil(lambda: sw.scan is not None and sw.scan.final_status is not None, timeout=60000)
    pump()
    assert float(core.getProperty("Potentiostat", "CurrentRange_A")) == other
    assert float(rig.range_combo.currentData()) == other


def test_the_inspector_plots_fold_away(viewer: Any) -> None:
    _d, insp = viewer.window.add_plugin_dock_widget("napari-seccm", "Inspector")
    tall = insp.minimumSizeHint().height()
    insp.plots_btn.setChecked(True)
    assert not insp.canvas.isVisibleTo(insp)
    assert insp.plots_btn.text() == "Show plots"
    assert insp.minimumSizeHint().height() < tall - 200
    insp.plots_btn.setChecked(False)
    assert insp.canvas.isVisibleTo(insp)


def test_a_failing_button_says_so_in_the_status_line(viewer: Any, tmp_path: Path) -> None:
    """An error no slot foresaw (here: saving an alignment into a store that
    is not writable: a file in the way) shows in the status line, not only in
    a log or a console."""
    _d, align = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    # an export to a folder that cannot exist (a file is in its way)
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    import numpy as np

    viewer.add_image(np.zeros((10, 10)), name="img")
    from qtpy.QtWidgets import QFileDialog

    orig = QFileDialog.getSaveFileName
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(blocker / "fig.png"), ""))
    try:
        align.export_btn.click()
    finally:
        QFileDialog.getSaveFileName = orig
    assert "not exported" in align.status.text() or "failed" in align.status.text()
    assert "e06c6c" in align.status.styleSheet()
