"""napari-micromanager and the SECCM widgets in one viewer drive one core
(napari under Xvfb, napari-micromanager and pymmcore-widgets really loaded).

- either plugin opened first, the other after: one core, nothing opened twice;
- a config loaded in either plugin reaches both;
- napari-micromanager's preview (snap) is placed in micrometres where the
  camera looks, below the SECCM maps, so the maps stay visible and napari sees
  one unit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qtpy.QtCore import Qt

pytest.importorskip("napari")

from _scan_helpers import pump

pytest.importorskip("napari_micromanager")

from napari_seccm.configs import config_path
from napari_seccm.devices._hub import live_hubs

pytestmark = pytest.mark.gui

SIM = str(config_path("seccm_simulated.cfg"))


def hubs_named(label: str) -> int:
    """Loaded, initialized SECCM hubs with this label (in any core)."""
    return sum(1 for h in live_hubs() if h.get_label() == label and h.controller is not None)


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Any:
    v = make_napari_viewer(show=True)
    yield v
    from napari_seccm.widgets._session import _SESSIONS

    for s in list(_SESSIONS.values()):
        if s.core is not None:
            s.core.unloadAllDevices()
            s.core = None


def names_of(viewer: Any) -> list[str]:
    """The SECCM layers and the preview (nothing else is expected)."""
    return [lay.name for lay in viewer.layers if "seccm" in lay.metadata or lay.name == "preview"]


def open_mm(viewer: Any) -> Any:
    from napari_micromanager.main_window import MainWindow

    from napari_seccm.widgets.offline_icons import provide_offline_icons

    provide_offline_icons()
    # napari's test viewer stands a bare QWidget in for its console, to which
    # napari-micromanager pushes its variables
    console = getattr(viewer.window._qt_viewer, "console", None)
    if console is not None and not hasattr(console, "push"):
        console.push = lambda *_a, **_k: None
    win = MainWindow(viewer)
    viewer.window.add_dock_widget(win, name="Micro-Manager", area="top")
    return win


def both_on_one_core(viewer: Any) -> tuple[Any, Any]:
    """napari-micromanager, then the Rig loading the simulated SECCM: (Rig, the core)."""
    win = open_mm(viewer)
    rig = open_seccm(viewer)
    rig.config_edit.setText(SIM)
    rig._load()
    core = rig.session.core
    assert win.core is core
    return rig, core


def open_seccm(viewer: Any, name: str = "Rig") -> Any:
    _dock, w = viewer.window.add_plugin_dock_widget("napari-seccm", name)
    return w


def test_micromanager_first_then_the_rig_loads_a_config_into_the_one_core(viewer: Any) -> None:
    win = open_mm(viewer)
    theirs = win.core
    rig = open_seccm(viewer)
    rig.config_edit.setText(SIM)
    rig._load()
    pump()
    core = rig.session.core
    assert win.core is core  # one core
    assert core is not theirs
    assert theirs.getLoadedDevices() == ("Core",)  # the old one holds nothing
    assert "PiezoXY" in win.core.getLoadedDevices()
    assert hubs_named("SECCM") == 1
    assert rig.session.mm_link.linked
    # napari-micromanager's own config field shows what the shared core loaded
    from pymmcore_widgets import ConfigurationWidget

    fields = [w.cfg_LineEdit.text() for w in win.findChildren(ConfigurationWidget)]
    assert fields and all(Path(f).name == "seccm_simulated.cfg" for f in fields)


def test_micromanager_with_a_config_then_seccm_adopts_it_without_opening_it_twice(
    viewer: Any,
) -> None:
    win = open_mm(viewer)
    win.core.loadSystemConfiguration(SIM)  # napari-micromanager's own load (#py: a UniMMCore)
    pump()
    assert hubs_named("SECCM") == 1
    first = win.core
    rig = open_seccm(viewer)
    rig.session.mm_link.check()  # (its timer does this within 0.5 s)
    pump()
    core = rig.session.core
    assert win.core is core is not first
    assert first.getLoadedDevices() == ("Core",)  # freed before ours opened them
    assert "Potentiostat" in core.getLoadedDevices()
    assert hubs_named("SECCM") == 1
    assert Path(rig.session.config_path).name == "seccm_simulated.cfg"
    assert "PiezoXY" in rig.devices_label.text()


def test_the_rig_first_then_micromanager_drives_the_rigs_core(viewer: Any) -> None:
    rig = open_seccm(viewer)
    rig.config_edit.setText(SIM)
    rig._load()
    core = rig.session.core
    win = open_mm(viewer)
    rig.session.mm_link.check()
    pump()
    assert win.core is core
    assert hubs_named("SECCM") == 1
    # a config loaded in napari-micromanager reaches the SECCM widgets
    other = str(config_path("seccm_with_demo_microscope.cfg"))
    win.core.loadSystemConfiguration(other)
    pump(0.5)
    assert rig.session.core is win.core
    assert Path(rig.session.config_path).name == "seccm_with_demo_microscope.cfg"
    assert Path(rig.config_edit.text()).name == "seccm_with_demo_microscope.cfg"
    assert (
        "Camera" in " ".join(rig.session.core.getLoadedDevices())
        or len(rig.session.core.getLoadedDevices()) > 6
    )
    assert "devices:" in rig.devices_label.text()
    assert hubs_named("SECCM") == 1


def test_the_preview_is_placed_in_um_below_the_maps(viewer: Any, tmp_path: Path) -> None:
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.acquisition.scan import Scan

    _rig, core = both_on_one_core(viewer)
    # a small map, shown as the SECCM plugin shows stores
    store = tmp_path / "m.seccm.zarr"
    scan = Scan.create(
        core, ScanPlan(area=RectangleArea(width_um=2.0, height_um=2.0), pitch_um=0.5), store
    )
    assert scan.run(handle_signals=False) == "complete"
    viewer.open(str(store), plugin="napari-seccm")
    core.setXYPosition(5.0, 3.0)
    core.waitForSystem()
    pump()
    core.snap()  # napari-micromanager shows it as its 'preview' layer
    t_end = time.monotonic() + 10
    while not ("preview" in viewer.layers and viewer.layers["preview"].visible):
        assert time.monotonic() < t_end, "no snapped image reached the preview"
        pump(0.05)
    prev = viewer.layers["preview"]
    assert float(np.asarray(prev.data).max()) > 0  # the camera's image, not a placeholder
    # the scan's traces never reached napari-micromanager's preview: the
    # camera image is there, and the scan made no layers of its own there
    assert prev.data.shape[-2:] == (core.getImageHeight(), core.getImageWidth())
    assert {lay.name for lay in viewer.layers} <= {"preview", *(n for n in names_of(viewer))}
    assert tuple(str(u) for u in prev.units) == ("micrometer", "micrometer")
    ps = core.getPixelSizeUm()
    h, w = prev.data.shape[-2:]
    # the image centre maps to the stage position (x 5, y 3)
    centre = prev.data_to_world(((h - 1) / 2, (w - 1) / 2))
    np.testing.assert_allclose(np.asarray(centre)[-2:], (3.0, 5.0), atol=ps)
    names = [lay.name for lay in viewer.layers]
    maps = [i for i, n in enumerate(names) if "current" in n]
    assert maps and names.index("preview") < min(maps)  # below: the map stays visible
    # one unit for every layer: napari never warns "Inconsistent units"
    assert viewer.layers.extent.units is not None
    # a new position, a new snap: it follows
    core.setXYPosition(-4.0, 1.0)
    core.waitForSystem()
    core.snap()
    pump(0.5)
    centre = prev.data_to_world(((h - 1) / 2, (w - 1) / 2))
    np.testing.assert_allclose(np.asarray(centre)[-2:], (1.0, -4.0), atol=ps)


def test_a_scan_started_by_a_script_in_a_thread_never_reaches_the_preview(
    viewer: Any, tmp_path: Path
) -> None:
    """A hopping scan run from the console in a thread of its own, on the
    shared core, while the GUI thread is busy: napari-micromanager's frame
    handler is off from before the first landing (muted in the runner's
    thread, not when the GUI thread gets to it) and back on after the last,
    so the current traces never become a napari-micromanager layer, and a
    snap afterwards still reaches the preview."""
    import threading

    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.acquisition.scan import Scan

    rig, core = both_on_one_core(viewer)
    pump()
    link = rig.session.mm_link
    frames_seen_muted: list[bool] = []
    core.mda.events.frameReady.connect(
        lambda *_: frames_seen_muted.append(link._muted is not None),
        Qt.ConnectionType.DirectConnection,
    )
    before = {lay.name for lay in viewer.layers}
    scan = Scan.create(
        core,
        ScanPlan(area=RectangleArea(width_um=2.0, height_um=2.0), pitch_um=0.5),
        tmp_path / "t.seccm.zarr",
    )
    result: list[str] = []
    th = threading.Thread(target=lambda: result.append(scan.run(handle_signals=False)))
    th.start()
    # the GUI thread busy meanwhile (no events handled): the scan needs no
    # GUI, and the handler must be off anyway
    th.join(timeout=60)
    assert not th.is_alive(), "the scan did not finish"
    pump(0.3)
    assert result == ["complete"]
    assert len(frames_seen_muted) == 16 and all(frames_seen_muted), frames_seen_muted
    assert link._muted is None  # napari-micromanager's handler is back
    assert {lay.name for lay in viewer.layers} <= before | {"preview"}
    core.snap()
    t_end = time.monotonic() + 10
    while not ("preview" in viewer.layers and viewer.layers["preview"].visible):
        assert time.monotonic() < t_end, "no snapped image reached the preview after the scan"
        pump(0.05)
