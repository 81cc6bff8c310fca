"""The napari Analysis widget on a real scan store (issue: analysis, item 6)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def striped_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.acquisition.scan import Scan
    from napari_seccm.configs import load_core

    path = tmp_path_factory.mktemp("anw") / "stripes.seccm.zarr"
    core = load_core()
    try:
        core.setProperty("SECCM", "StripePeriod_um", 2.0)
        core.setProperty("SECCM", "StripeAngle_deg", 60.0)
        # finely sampled for the domain segmentation; the plan says it may overlap
        with pytest.warns(UserWarning, match="neighbouring droplets may overlap"):
            plan = ScanPlan(area=RectangleArea(width_um=10, height_um=10), pitch_um=0.25)
        assert Scan.create(core, plan, path).run() == "complete"
    finally:
        core.unloadAllDevices()
        del core
        gc.collect()
    return path


def test_analysis_widget_adds_result_layers_profiles_and_exports(
    make_napari_viewer, qtbot, striped_store: Path, tmp_path: Path
) -> None:
    viewer = make_napari_viewer(show=False)
    viewer.open(str(striped_store), plugin="napari-seccm")
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Analysis")
    assert widget.store_combo.currentData() == str(striped_store.resolve())
    widget.analyze()
    qtbot.waitUntil(lambda: widget.result is not None, timeout=60_000)
    res = widget.result
    assert res["period_um"] == pytest.approx(2.0, rel=0.05)
    assert abs(res["angle_deg"] - 60.0) < 2.0
    text = widget.summary.toPlainText()
    assert "period" in text and "um" in text and "S/cm" in text
    names = [lay.name for lay in viewer.layers]
    cond = next(lay for lay in viewer.layers if "conductance (nS)" in lay.name)
    cur = next(lay for lay in viewer.layers if "current (nA)" in lay.name)
    # result layers sit exactly on the scan's maps (same pixel grid in um)
    np.testing.assert_allclose(cond.scale, cur.scale)
    np.testing.assert_allclose(cond.translate, cur.translate)
    assert np.nanmedian(cond.data) == pytest.approx(np.nanmedian(np.asarray(cur.data[:])), rel=0.05)
    assert any("domains" in n for n in names)

    # a profile across the stripes (perpendicular to 60 deg) shows the bands
    ux, uy = np.cos(np.radians(150.0)), np.sin(np.radians(150.0))
    prof = widget.profile((-3.0 * ux, -3.0 * uy), (3.0 * ux, 3.0 * uy))
    v = prof["value"][np.isfinite(prof["value"])]
    assert v.max() - v.min() > 0.1 * np.median(v)
    assert "contrast/noise" in widget.plot_info.text()
    assert widget.ax.lines

    widget.plot_histogram()
    assert len(widget.ax.patches) > 4

    out = widget.export(tmp_path / "cond.tiff", "tiff", "conductance")
    assert out is not None and out.stat().st_size > 0
    import tifffile

    with tifffile.TiffFile(out) as tif:
        assert tif.asarray().shape == cond.data.shape
    # an existing file is never overwritten
    assert widget.export(out, "tiff", "conductance") is None
    assert "not exported" in widget.status.text()


def test_analysis_widget_without_a_scan_says_so(make_napari_viewer) -> None:
    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Analysis")
    widget.analyze()
    assert "open or run a scan first" in widget.status.text()
    widget.plot_histogram()
    assert "Analyze first" in widget.status.text()


def test_analysis_widget_shows_the_warnings(make_napari_viewer, qtbot, striped_store: Path) -> None:
    """The analysis's warnings (code and message) show above the summary, in
    the summary, and as a count in the status line; none, nothing shows."""
    from napari_seccm.analysis.report import analyze_store

    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Analysis")
    res = analyze_store(striped_store, return_maps=True)
    warn = {"code": "possible_aliasing", "message": "the stripes may fold"}
    widget.show_result({**res, "warnings": [warn]})
    assert "possible_aliasing: the stripes may fold" in widget.warnings_label.text()
    assert widget.warnings_label.isVisibleTo(widget)
    assert "warning          [possible_aliasing] the stripes may fold" in (
        widget.summary.toPlainText()
    )
    assert "1 warning" in widget.status.text()
    widget.show_result({**res, "warnings": []})
    assert widget.warnings_label.text() == "" and not widget.warnings_label.isVisibleTo(widget)
    # boundary lines show as a third label in the domains layer
    lines = np.zeros_like(np.asarray(res["maps"]["labels"]), dtype=bool)
    lines[0, :3] = True
    widget.show_result({**res, "maps": {**res["maps"], "boundary_lines": lines}})
    layer = next(lay for lay in viewer.layers if "domains" in lay.name)
    assert (np.asarray(layer.data)[0, :3] == 3).all()
