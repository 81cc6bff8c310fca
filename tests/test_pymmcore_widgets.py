"""pymmcore-widgets on the SECCM devices, offline: the property browser, the
config-group widget and the stage widget's "Set as default" (Qt under Xvfb),
and a watch on the Core-role routing that napari-seccm's core works around.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from napari_seccm.configs import config_path, load_core

pytest.importorskip("pymmcore_widgets")

pytestmark = pytest.mark.gui

SIM = str(config_path("seccm_simulated.cfg"))


@pytest.fixture
def core(monkeypatch, qapp):
    # importing pymmcore-widgets sets PYMM_SIGNALS_BACKEND=qt process-wide
    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "qt")
    c = load_core(SIM, signals="qt")
    yield c
    c.unloadAllDevices()


@pytest.fixture(autouse=True)
def _offline_icons():
    from napari_seccm.widgets.offline_icons import fail_fast_when_offline, provide_offline_icons

    provide_offline_icons()
    fail_fast_when_offline()


def test_upstream_still_refuses_core_roles_for_python_devices() -> None:
    """pymmcore-plus 0.18.1's UniMMCore passes ``setProperty('Core', 'Focus',
    <Python device>)`` to the C++ core, which refuses; ``configs.new_core``
    routes it. When this test fails, pymmcore-plus routes it itself: the
    override in ``napari_seccm.configs.new_core`` can go."""
    from pymmcore_plus.experimental.unicore import UniMMCore

    plain = UniMMCore()
    try:
        plain.loadSystemConfiguration(SIM)
        with pytest.raises((RuntimeError, ValueError), match="invalid value"):
            plain.setProperty("Core", "Focus", "PiezoZ")
        # nor does it announce a Python device's property set (the C++ core
        # does for its devices); napari-seccm's core does
        seen: list[tuple] = []
        plain.events.propertyChanged.connect(lambda *a: seen.append(a))
        plain.setProperty("Potentiostat", "Potential_V", 0.5)
        assert seen == [], "UniMMCore announces Python property sets now: drop the override"
        # nor does it give a role back to a C++ device (or none) once a Python
        # device held it
        plain.setFocusDevice("PiezoZ")
        plain.setFocusDevice("")
        assert plain.getFocusDevice() == "PiezoZ", "UniMMCore clears Python roles now"
    finally:
        plain.unloadAllDevices()
    ours = load_core(SIM, signals="psygnal")
    try:
        heard: list[tuple] = []
        ours.events.propertyChanged.connect(lambda *a: heard.append(a))
        ours.setProperty("Potentiostat", "Potential_V", 0.5)
        assert heard == [("Potentiostat", "Potential_V", 0.5)]
        ours.setProperty("Core", "Focus", "")
        ours.setProperty("Core", "Focus", "PiezoZ")
        assert ours.getFocusDevice() == "PiezoZ"
        ours.setProperty("Core", "XYStage", "PiezoXY")
        assert ours.getXYStageDevice() == "PiezoXY"
    finally:
        ours.unloadAllDevices()


def test_the_property_browser_shows_and_sets_seccm_properties_offline(core, qtbot) -> None:
    from pymmcore_widgets import PropertyBrowser

    t0 = time.perf_counter()
    w = PropertyBrowser(mmcore=core)
    qtbot.addWidget(w)
    built = time.perf_counter() - t0
    # one icon per row would have cost pyconify's 2 s timeout each offline
    assert built < 20, built
    table = w._prop_table
    rows = {(table.item(r, 0).text() if table.item(r, 0) else "") for r in range(table.rowCount())}
    assert any("PiezoZ-Approach_Speed_um_per_s" in r for r in rows), sorted(rows)[:10]
    # a value set through the core shows in the browser's widget for it
    core.setProperty("PiezoZ", "Approach_Speed_um_per_s", 0.25)
    qtbot.wait(50)
    row = next(
        r for r in range(table.rowCount()) if "PiezoZ-Approach_Speed" in table.item(r, 0).text()
    )
    editor = table.cellWidget(row, 1)
    assert float(editor.value()) == pytest.approx(0.25)
    # and one set in the browser reaches the device, limits kept
    editor.setValue(0.5)
    qtbot.waitUntil(
        lambda: float(core.getProperty("PiezoZ", "Approach_Speed_um_per_s")) == pytest.approx(0.5),
        timeout=2000,
    )


def test_the_config_group_widget_switches_the_potential(core, qtbot) -> None:
    from pymmcore_widgets import GroupPresetTableWidget

    w = GroupPresetTableWidget(mmcore=core)
    qtbot.addWidget(w)
    groups = [w.table_wdg.item(r, 0).text() for r in range(w.table_wdg.rowCount())]
    assert "Potential" in groups
    core.setConfig("Potential", "1.5 V")
    core.waitForConfig("Potential", "1.5 V")
    assert float(core.getProperty("Potentiostat", "Potential_V")) == pytest.approx(1.5)
    qtbot.wait(50)
    row = groups.index("Potential")
    combo: Any = w.table_wdg.cellWidget(row, 1)
    assert combo.value() == "1.5 V"
    combo.setValue("0.5 V")
    qtbot.waitUntil(
        lambda: float(core.getProperty("Potentiostat", "Potential_V")) == pytest.approx(0.5),
        timeout=2000,
    )


def test_set_as_default_in_the_stage_widget_makes_piezoz_the_focus(
    qapp, qtbot, monkeypatch
) -> None:
    """With Micro-Manager's demo Z stage beside the SECCM's: the focus given
    to the demo stage, then "Set as default" on PiezoZ's stage widget."""
    from pymmcore_widgets import StageWidget

    monkeypatch.setenv("PYMM_SIGNALS_BACKEND", "qt")
    core = load_core("seccm_with_demo_microscope.cfg", signals="qt")
    try:
        core.setProperty("Core", "Focus", "Z")
        assert core.getFocusDevice() == "Z"
        w = StageWidget("PiezoZ", mmcore=core)
        qtbot.addWidget(w)
        assert not w._set_as_default_btn.isChecked()
        w._set_as_default_btn.setChecked(True)
        qtbot.waitUntil(lambda: core.getFocusDevice() == "PiezoZ", timeout=2000)
        core.setProperty("Core", "Focus", "Z")
        qtbot.waitUntil(lambda: not w._set_as_default_btn.isChecked(), timeout=2000)
    finally:
        core.unloadAllDevices()
