"""The npe2 reader and sample data in a real napari viewer (Qt, under Xvfb).

A ``.seccm.zarr`` store opens into the same two map layers the Scan widget
shows while scanning (current in nA, contact height in um), placed in stage
coordinates and backed lazily by the store; by ``viewer.open(...,
plugin='napari-seccm')``, by drag and drop, and by File > Open Folder.
"""

from __future__ import annotations

import gc
import shutil
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

pytest.importorskip("napari")

from _scan_helpers import scan_to_store

from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
from napari_seccm.acquisition.store import ScanStore
from napari_seccm.io.layers import ScaledArray
from napari_seccm.io.reader import get_reader

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.gui

PLUGIN = "napari-seccm"


def _scan(path: Path, plan: ScanPlan) -> Path:
    return scan_to_store(path, plan)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two complete scans: 'a', 4 x 3 um at 0.5 um around (0, 0); 'b', 2.4 x 2.4 um
    at 0.4 um around (5, -3)."""
    d = tmp_path_factory.mktemp("stores")
    area_a = RectangleArea(width_um=4.0, height_um=3.0)
    area_b = RectangleArea(center_x_um=5.0, center_y_um=-3.0, width_um=2.4, height_um=2.4)
    return {
        "a": _scan(d / "a.seccm.zarr", ScanPlan(area=area_a, pitch_um=0.5)),
        "b": _scan(d / "b.seccm.zarr", ScanPlan(area=area_b, pitch_um=0.4)),
    }


@pytest.fixture
def viewer(make_napari_viewer: Any) -> Iterator[Any]:
    v = make_napari_viewer(show=False)
    yield v
    gc.collect()


def _by_kind(layers: list[Any]) -> dict[str, Any]:
    return {lay.metadata["seccm"]["kind"]: lay for lay in layers}


def check_map_layers(layers: list[Any], path: Path) -> None:
    """The two map layers of a store: lazy, in stage um, with names and units."""
    assert len(layers) == 2, [lay.name for lay in layers]
    by = _by_kind(layers)
    assert set(by) == {"current", "contact_height"}
    stem = path.name.removesuffix(".seccm.zarr")
    assert by["current"].name == f"{stem} current (nA)"
    assert by["contact_height"].name == f"{stem} contact height (um)"
    with ScanStore.open(path) as st:
        g = st.grid
        ref = {"current": st.current_map() * 1e9, "contact_height": st.height_map()}
    for kind, layer in by.items():
        assert layer._type_string == "image"
        # lazy: napari holds the store-backed view, not a copy in memory
        assert isinstance(layer.data, ScaledArray), type(layer.data)
        assert not isinstance(layer.data, np.ndarray)
        assert layer.data.shape == (g.ny, g.nx)
        assert layer.metadata["seccm"]["store"] == str(path.resolve())
        assert layer.metadata["seccm"]["unit"] == ("nA" if kind == "current" else "um")
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
        assert tuple(layer.axis_labels) == ("y", "x")
        np.testing.assert_allclose(layer.scale, (g.pitch_um, g.pitch_um))
        np.testing.assert_allclose(
            layer.translate, (g.y0_um + g.pitch_um / 2, g.x0_um + g.pitch_um / 2)
        )
        # pixel (row, col) sits at the stage position the scan measured there
        x_c, y_c = g.centers(np.array([g.ny - 1]), np.array([0]))
        np.testing.assert_allclose(layer.data_to_world((g.ny - 1, 0)), (y_c[0], x_c[0]))
        data = np.asarray(layer.data[...])
        np.testing.assert_allclose(data, ref[kind], rtol=1e-6)
        assert np.isfinite(data).all()
        lo, hi = layer.contrast_limits
        assert np.isfinite(lo) and np.isfinite(hi) and hi > lo


# --------------------------------------------------------------- get_reader
def test_get_reader_claims_only_seccm_stores(stores: dict[str, Path], tmp_path: Path) -> None:
    import zarr

    a, b = str(stores["a"]), str(stores["b"])
    assert callable(get_reader(a))
    assert callable(get_reader(a + "/"))
    assert callable(get_reader([a, b]))

    plain_dir = tmp_path / "folder"
    plain_dir.mkdir()
    other_zarr = tmp_path / "other.zarr"
    zarr.open_group(str(other_zarr), mode="w", zarr_format=3)
    empty_named = tmp_path / "empty.seccm.zarr"
    empty_named.mkdir()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a scan")
    for p in (
        plain_dir,
        other_zarr,
        empty_named,
        text_file,
        tmp_path / "missing.seccm.zarr",
    ):
        assert get_reader(str(p)) is None, p
    assert get_reader([]) is None
    assert get_reader([a, str(plain_dir)]) is None


def test_get_reader_declines_a_zarr_that_is_not_a_scan(tmp_path: Path) -> None:
    """A zarr group named like a scan but without the SECCM metadata is someone
    else's: the reader returns None so napari can ask other readers."""
    import zarr

    fake = tmp_path / "fake.seccm.zarr"
    zarr.open_group(str(fake), mode="w", zarr_format=3).attrs["something"] = 1
    assert get_reader(str(fake)) is None


def test_reader_returns_layer_data_for_several_stores(stores: dict[str, Path]) -> None:
    reader = get_reader([str(stores["a"]), str(stores["b"])])
    out = reader([str(stores["a"]), str(stores["b"])])
    assert len(out) == 4
    for data, kwargs, kind in out:
        assert kind == "image"
        assert isinstance(data, ScaledArray)
        assert kwargs["metadata"]["seccm"]["kind"] in ("current", "contact_height")
    assert {kw["metadata"]["seccm"]["store"] for _, kw, _ in out} == {
        str(stores["a"].resolve()),
        str(stores["b"].resolve()),
    }


# -------------------------------------------------------------- in a viewer
def test_viewer_open_with_the_plugin(viewer: Any, stores: dict[str, Path]) -> None:
    layers = viewer.open(str(stores["a"]), plugin=PLUGIN)
    check_map_layers(layers, stores["a"])
    assert all(lay in viewer.layers for lay in layers)

    # a second store lands beside the first, in stage coordinates
    layers_b = viewer.open(stores["b"], plugin=PLUGIN)
    check_map_layers(layers_b, stores["b"])
    cur_b = _by_kind(layers_b)["current"]
    np.testing.assert_allclose(cur_b.data_to_world((0, 0)), (-4.0, 4.0))
    assert len(viewer.layers) == 4


def test_layers_read_the_store_lazily(viewer: Any, stores: dict[str, Path], tmp_path: Path) -> None:
    """napari reads the store when it displays: a pixel written later shows
    after a refresh."""
    import zarr

    path = tmp_path / "copy.seccm.zarr"
    shutil.copytree(stores["a"], path)
    layers = _by_kind(viewer.open(str(path), plugin=PLUGIN))
    cur = layers["current"]
    before = float(np.asarray(cur.data[2, 3]))
    assert np.isfinite(before)
    arr = zarr.open_array(str(path / "maps" / "current" / "0"), mode="r+")
    arr[2, 3] = np.float32(7.5e-9)
    assert float(np.asarray(cur.data[2, 3])) == pytest.approx(7.5)  # nA, read on access
    cur.refresh()
    shown = np.asarray(cur._slice.image.raw)
    assert shown[2, 3] == pytest.approx(7.5)


def _drop(qt_viewer: Any, path: Path) -> None:
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10.0, 10.0),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    qt_viewer.dropEvent(event)


class _ReaderDialogAnswerer:
    """Accepts napari's 'Choose reader' dialog if it pops up (default choice)."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.default_choice: str | None = None
        self.offered: list[str] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def _poll(self) -> None:
        from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
        from qtpy.QtWidgets import QApplication

        for w in QApplication.topLevelWidgets():
            if isinstance(w, QtReaderDialog) and w.isVisible():
                self.offered = [b.text() for b in w.reader_btn_group.buttons()]
                self.default_choice = w._get_plugin_choice()
                # nothing is saved to the user's settings
                assert not w._get_persist_choice()
                self.timer.stop()
                w.accept()
                return

    def stop(self) -> None:
        self.timer.stop()


def test_drag_and_drop_opens_the_store(
    make_napari_viewer: Any, stores: dict[str, Path], qtbot: Any
) -> None:
    viewer = make_napari_viewer(show=True)
    answer = _ReaderDialogAnswerer()
    try:
        _drop(viewer.window._qt_viewer, stores["a"])
    finally:
        answer.stop()
    # napari's builtin reader claims *.zarr too: if napari asks, SECCM is the default
    if answer.offered:
        assert answer.default_choice == "SECCM", answer.offered
    check_map_layers(list(viewer.layers), stores["a"])


def test_once_a_widget_is_open_stores_open_without_asking_which_reader(
    make_napari_viewer: Any, stores: dict[str, Path], qtbot: Any
) -> None:
    """napari's builtin reader claims every *.zarr, so napari asks which plugin
    should open a store; a SECCM widget makes napari-seccm the reader of
    *.seccm.zarr (only), and a user's own choice is kept."""
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    from napari_seccm.widgets._session import STORE_READER_PATTERN, prefer_store_reader

    viewer = make_napari_viewer(show=True)  # fresh napari settings
    prefs = get_settings().plugins
    assert STORE_READER_PATTERN not in prefs.extension2reader
    with pytest.raises(MultipleReaderError):
        viewer.open(str(stores["a"]), plugin=None)  # None: napari chooses
    viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    assert prefs.extension2reader[STORE_READER_PATTERN] == "napari-seccm"
    assert set(prefs.extension2reader) == {STORE_READER_PATTERN}  # nothing else touched
    answer = _ReaderDialogAnswerer()
    try:
        _drop(viewer.window._qt_viewer, stores["a"])
        qtbot.wait(100)
    finally:
        answer.stop()
    assert answer.offered == [], "napari still asked which reader to use"
    check_map_layers(list(viewer.layers), stores["a"])
    viewer.layers.clear()
    viewer.open(str(stores["b"]), plugin=None)
    check_map_layers(list(viewer.layers), stores["b"])

    # a user who chose another reader keeps it
    prefs.extension2reader = {STORE_READER_PATTERN: "napari"}
    assert not prefer_store_reader()
    viewer.window.add_plugin_dock_widget("napari-seccm", "Analysis")
    assert prefs.extension2reader == {STORE_READER_PATTERN: "napari"}


def test_file_open_folder_opens_the_store(
    make_napari_viewer: Any,
    stores: dict[str, Path],
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qtpy.QtWidgets import QFileDialog

    viewer = make_napari_viewer(show=True)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(stores["b"]))
    answer = _ReaderDialogAnswerer()
    try:
        viewer.window._qt_viewer._open_folder_dialog()
    finally:
        answer.stop()
    if answer.offered:
        assert answer.default_choice == "SECCM", answer.offered
    check_map_layers(list(viewer.layers), stores["b"])


def test_a_reopened_scan_shows_an_interrupted_scan_as_nan(
    viewer: Any, stores: dict[str, Path], tmp_path: Path
) -> None:
    """Points not measured (an interrupted scan) stay NaN, i.e. transparent."""
    path = tmp_path / "partial.seccm.zarr"
    shutil.copytree(stores["a"], path)
    with ScanStore.open(path, mode="r+") as st:
        pts = st.points()
        idx = np.arange(5, st.n_points)
        st.reset_points(idx)
        st.array("maps/current/0").set_coordinate_selection(
            (pts["row"][idx], pts["col"][idx]), np.full(idx.size, np.nan, "f4")
        )
        st.array("maps/contact_height/0").set_coordinate_selection(
            (pts["row"][idx], pts["col"][idx]), np.full(idx.size, np.nan, "f4")
        )
    layers = _by_kind(viewer.open(str(path), plugin=PLUGIN))
    for layer in layers.values():
        data = np.asarray(layer.data[...])
        assert int(np.isfinite(data).sum()) == 5
        lo, hi = layer.contrast_limits
        assert np.isfinite(lo) and np.isfinite(hi) and hi > lo


# --------------------------------------------------------------- sample data
def test_sample_data_opens_an_optical_image_and_the_maps(viewer: Any) -> None:
    layers = viewer.open_sample(PLUGIN, "llto_scan")
    names = [lay.name for lay in layers]
    assert len(layers) == 3, names
    optical = next(lay for lay in layers if "optical" in lay.name)
    maps = _by_kind([lay for lay in layers if "seccm" in lay.metadata])
    assert set(maps) == {"current", "contact_height"}
    for layer in maps.values():
        assert isinstance(layer.data, ScaledArray)
        assert np.isfinite(np.asarray(layer.data[...])).all()
    # 12 x 12 um at 0.4 um around (0, 0)
    cur = maps["current"]
    assert cur.data.shape == (30, 30)
    np.testing.assert_allclose(cur.scale, (0.4, 0.4))
    np.testing.assert_allclose(cur.data_to_world((0, 0)), (-5.8, -5.8))
    # the optical image is centred on the stage origin, in um, and covers the map
    h, w = optical.data.shape[:2]
    np.testing.assert_allclose(
        optical.data_to_world(((h - 1) / 2, (w - 1) / 2)), (0.0, 0.0), atol=1e-9
    )
    corners = np.array([optical.data_to_world(c) for c in ((0, 0), (h - 1, w - 1))])
    assert corners.min() < -6.0 and corners.max() > 6.0
    assert [str(u) for u in optical.units] == ["micrometer", "micrometer"]
    # the image is below the maps
    assert viewer.layers.index(optical) < viewer.layers.index(cur)
