"""Aligning images onto scan maps: registration maths, the Align widget, and
alignments that survive closing and reopening a scan (issue: overlay and align)."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from napari_seccm.analysis.registration import MIN_POINTS, RegistrationError, apply, estimate


def _similarity(scale: float, deg: float, t: tuple[float, float]) -> np.ndarray:
    th = np.radians(deg)
    return np.array(
        [
            [scale * np.cos(th), -scale * np.sin(th), t[0]],
            [scale * np.sin(th), scale * np.cos(th), t[1]],
            [0.0, 0.0, 1.0],
        ]
    )


@pytest.mark.parametrize("model", ["translation", "euclidean", "similarity", "affine"])
def test_known_transform_is_recovered_exactly(model: str) -> None:
    rng = np.random.default_rng(3)
    if model == "translation":
        truth = np.eye(3)
        truth[:2, 2] = (4.5, -2.25)
    elif model == "euclidean":
        truth = _similarity(1.0, 31.0, (1.0, 2.0))
    elif model == "similarity":
        truth = _similarity(0.018, 23.0, (-3.0, 5.0))
    else:
        truth = np.array([[0.02, 0.004, 1.0], [-0.003, 0.017, -2.0], [0, 0, 1.0]])
    src = rng.uniform(0, 500, size=(6, 2))
    reg = estimate(src, apply(truth, src), model)
    np.testing.assert_allclose(reg.matrix, truth, atol=1e-10)
    assert reg.rms < 1e-9


def test_noisy_landmarks_recovered_within_the_noise() -> None:
    rng = np.random.default_rng(7)
    truth = _similarity(0.018, 23.0, (-3.0, 5.0))
    src = rng.uniform(0, 512, size=(12, 2))
    sigma = 0.02  # um of click error on the reference
    dst = apply(truth, src) + rng.normal(0, sigma, size=(12, 2))
    reg = estimate(src, dst, "similarity")
    # a point in the middle of the landmarks lands within ~the noise
    mid = np.array([[256.0, 256.0]])
    err = np.linalg.norm(apply(reg.matrix, mid) - apply(truth, mid))
    assert err < 2 * sigma
    # the residual rms estimates the click noise (4 fitted parameters of 24 numbers)
    assert 0.5 * sigma < reg.rms < 1.5 * sigma
    assert abs(reg.rotation_deg - 23.0) < 0.5
    assert reg.scale == pytest.approx(0.018, rel=0.01)


@pytest.mark.parametrize("model", ["translation", "euclidean"])
def test_rigid_fits_keep_the_moving_pixel_size(model: str) -> None:
    """Pixel landmarks onto um ones: a rigid model keeps the image's um/px."""
    deg = 0.0 if model == "translation" else 23.0
    truth = _similarity(1.0, deg, (1.5, -2.0)) @ np.diag([0.018, 0.018, 1.0])
    src = np.array([[40.0, 60.0], [450.0, 90.0], [300.0, 470.0], [120.0, 380.0]])
    reg = estimate(src, apply(truth, src), model, src_pixel_size=(0.018, 0.018))
    np.testing.assert_allclose(reg.matrix, truth, atol=1e-9)
    assert reg.scale == pytest.approx(0.018) and reg.rms < 1e-9 and not reg.warnings
    # without the pixel size the fit is meaningless, and says so
    bad = estimate(src, apply(truth, src), model)
    assert bad.rms > 10 and any("poorly" in w for w in bad.warnings)
    with pytest.raises(RegistrationError, match="pixel size must be positive"):
        estimate(src, apply(truth, src), model, src_pixel_size=(0.0, 0.018))


def test_pairs_in_the_wrong_order_are_flagged() -> None:
    truth = _similarity(0.018, 23.0, (-3.0, 5.0))
    src = np.array([[40.0, 60.0], [450.0, 90.0], [300.0, 470.0], [120.0, 380.0]])
    dst = apply(truth, src)[[1, 0, 2, 3]]  # two reference clicks swapped
    reg = estimate(src, dst, "similarity")
    assert any("same order" in w for w in reg.warnings), reg.warnings
    assert not estimate(src, apply(truth, src), "similarity").warnings


@pytest.mark.parametrize("model", ["euclidean", "similarity", "affine"])
def test_too_few_landmarks_are_refused_by_name(model: str) -> None:
    n = MIN_POINTS[model] - 1
    pts = np.arange(2 * n, dtype=float).reshape(n, 2)
    with pytest.raises(RegistrationError, match=f"at least {MIN_POINTS[model]}"):
        estimate(pts, pts, model)


def test_degenerate_landmarks_are_refused_or_warned() -> None:
    line = np.array([[0, 0], [1, 1], [2, 2.0]])
    with pytest.raises(RegistrationError, match="collinear"):
        estimate(line, line * 2, "affine")
    with pytest.raises(RegistrationError, match="coincide"):
        estimate(np.zeros((3, 2)), np.ones((3, 2)), "similarity")
    with pytest.raises(RegistrationError, match="pairs"):
        estimate(np.zeros((3, 2)), np.ones((2, 2)), "similarity")
    exact = estimate(np.array([[0, 0], [1, 0.0]]), np.array([[1, 1], [1, 2.0]]), "similarity")
    assert any("exactly determine" in w for w in exact.warnings)


# ------------------------------------------------------------------ GUI
@pytest.fixture
def scan_and_tem(tmp_path: Path):
    from napari_seccm.acquisition.plan import RectangleArea, ScanPlan
    from napari_seccm.acquisition.scan import Scan
    from napari_seccm.configs import load_core
    from napari_seccm.devices.simulated import simulated_rig
    from napari_seccm.simulation.tem import write_tem_tiff

    core = load_core()
    store = tmp_path / "map.seccm.zarr"
    scan = Scan.create(
        core, ScanPlan(area=RectangleArea(width_um=8, height_um=8), pitch_um=0.4), store
    )
    assert scan.run() == "complete"
    tem = tmp_path / "tem.tif"
    hidden = write_tem_tiff(tem, simulated_rig().film)
    core.unloadAllDevices()
    del core
    gc.collect()
    return store, tem, hidden


def _align_tem(viewer, widget, hidden: np.ndarray, noise: float = 0.0) -> None:
    from napari_seccm.widgets.align import MOV_POINTS, REF_POINTS

    tem = next(lay for lay in viewer.layers if lay.name.startswith("tem"))
    cur = next(lay for lay in viewer.layers if "current" in lay.name)
    widget.ref_combo.setCurrentText(cur.name)
    widget.mov_combo.setCurrentText(tem.name)
    widget.add_landmark_layers()
    px = np.array([[40.0, 60.0], [450.0, 90.0], [300.0, 470.0], [120.0, 380.0]])
    stage = apply(hidden, px) + np.random.default_rng(0).normal(0, noise, (4, 2))
    viewer.layers[REF_POINTS].data = stage  # clicked on the map (world, um)
    viewer.layers[MOV_POINTS].data = px  # clicked on the TEM image (its pixels)
    widget.model_combo.setCurrentText("similarity")
    assert widget.estimate_and_apply() is not None


@pytest.mark.gui
def test_align_widget_places_tem_image_and_keeps_it_with_the_scan(
    make_napari_viewer, scan_and_tem, tmp_path: Path
) -> None:
    from napari_seccm.widgets.align import AlignWidget, data_to_world_matrix

    store, tem_path, hidden = scan_and_tem
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    assert isinstance(widget, AlignWidget)
    viewer.open(str(store), plugin="napari-seccm")
    viewer.open(str(tem_path), plugin="napari-seccm")
    tem = next(lay for lay in viewer.layers if lay.name.startswith("tem"))
    # imported with its scale from the file (nm -> um), but not its hidden pose
    assert np.allclose(
        np.abs(np.diag(data_to_world_matrix(tem))[:2]), np.hypot(*hidden[:2, 0]), rtol=1e-6
    )

    _align_tem(viewer, widget, hidden)
    np.testing.assert_allclose(data_to_world_matrix(tem), hidden, atol=1e-9)
    assert widget.table.rowCount() == 4
    assert "rms residual 0.0000 um" in widget.rms_label.text()
    # a Euclidean fit keeps the file's pixel size: the same placement
    widget.undo()
    widget.model_combo.setCurrentText("euclidean")
    assert widget.estimate_and_apply() is not None
    np.testing.assert_allclose(data_to_world_matrix(tem), hidden, atol=1e-9)
    assert widget.status.text() == ""  # no warning
    widget.model_combo.setCurrentText("similarity")
    # undo goes back to the imported placement, redo by estimating again
    widget.undo()
    assert not np.allclose(data_to_world_matrix(tem), hidden, atol=1e-3)
    assert widget.estimate_and_apply() is not None

    assert widget.save_with_scan()
    fig = widget.export_figure(tmp_path / "aligned.png")
    assert fig.stat().st_size > 10_000
    with pytest.raises(FileExistsError):
        widget.export_figure(fig)
    viewer.close()

    # reopen the scan in a fresh viewer: the TEM image is back where it was left
    viewer2 = make_napari_viewer(show=False)
    viewer2.open(str(store), plugin="napari-seccm")
    names = [lay.name for lay in viewer2.layers]
    tem2 = viewer2.layers[tem.name]
    assert names.index(tem.name) < min(i for i, n in enumerate(names) if "current" in n)
    np.testing.assert_allclose(data_to_world_matrix(tem2), hidden, atol=1e-9)
    # the landmarks come back too, above the maps, and refine the same placement
    from napari_seccm.widgets.align import MOV_POINTS, REF_POINTS

    assert names.index(REF_POINTS) > max(i for i, n in enumerate(names) if "current" in n)
    ref_pts = np.asarray(viewer2.layers[REF_POINTS].data)
    mov_pts = np.asarray(viewer2.layers[MOV_POINTS].data)
    assert len(ref_pts) == len(mov_pts) == 4
    np.testing.assert_allclose(apply(hidden, mov_pts), ref_pts, atol=1e-9)
    _, w2 = viewer2.window.add_plugin_dock_widget("napari-seccm", "Align")
    assert w2.mov_combo.currentText() == tem.name
    w2.add_landmark_layers()  # keeps the restored pairs
    assert len(viewer2.layers[MOV_POINTS].data) == 4
    w2.model_combo.setCurrentText("similarity")
    assert w2.estimate_and_apply() is not None
    np.testing.assert_allclose(data_to_world_matrix(tem2), hidden, atol=1e-9)


@pytest.mark.gui
def test_first_guess_turns_the_tem_image_onto_the_map_then_landmarks_refine(
    make_napari_viewer, scan_and_tem, qtbot
) -> None:
    """The automatic first guess (on a worker thread) turns the TEM image to
    the stripes' orientation on the map, says the stripes make the shift
    ambiguous, offers other candidates, undoes in one step, and landmarks
    clicked after it give the exact placement."""
    from napari_seccm.widgets.align import data_to_world_matrix

    store, tem_path, hidden = scan_and_tem
    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    viewer.open(str(store), plugin="napari-seccm")
    viewer.open(str(tem_path), plugin="napari-seccm")
    tem = next(lay for lay in viewer.layers if lay.name.startswith("tem"))
    cur = next(lay for lay in viewer.layers if "current" in lay.name)
    imported = data_to_world_matrix(tem)
    # opened as they were, the scan's current map is the reference and the
    # image opened last the moving layer
    assert widget.ref_combo.currentText() == cur.name
    assert widget.mov_combo.currentText() == tem.name
    assert not widget.next_btn.isEnabled()

    widget.guess_btn.click()
    assert not widget.guess_btn.isEnabled()  # searching, off the GUI thread
    qtbot.waitUntil(lambda: widget.guess_btn.isEnabled(), timeout=30000)
    assert len(widget.guesses) == 3, widget.status.text()
    first = data_to_world_matrix(tem)
    np.testing.assert_allclose(first, widget.guesses[0].matrix, atol=1e-9)
    # the pixel size is kept, the orientation is the hidden one (modulo the
    # stripes' 180 deg symmetry)
    assert abs(np.linalg.det(first[:2, :2])) == pytest.approx(np.linalg.det(hidden[:2, :2]))

    def angle(m: np.ndarray) -> float:
        return float(np.degrees(np.arctan2(-m[0, 1], m[1, 1])))

    off = (angle(first) - angle(hidden) + 90.0) % 180.0 - 90.0
    assert abs(off) < 3.0, (angle(first), angle(hidden))
    assert "first guess 1 of 3" in widget.rms_label.text()
    assert "match almost as well" in widget.status.text()
    # the other candidates, in turn, then back to the first
    assert widget.next_btn.isEnabled()
    widget.next_btn.click()
    assert "first guess 2 of 3" in widget.rms_label.text()
    assert not np.allclose(data_to_world_matrix(tem), first)
    widget.next_guess()
    widget.next_guess()
    np.testing.assert_allclose(data_to_world_matrix(tem), first, atol=1e-9)
    # one Undo goes back to the imported placement, whichever guess is shown
    widget.next_guess()
    widget.undo()
    np.testing.assert_allclose(data_to_world_matrix(tem), imported, atol=1e-12)
    assert not widget.next_btn.isEnabled()

    # guess again, then refine with landmarks (clicked on the guessed image)
    widget.first_guess(block=True)
    _align_tem(viewer, widget, hidden)
    np.testing.assert_allclose(data_to_world_matrix(tem), hidden, atol=1e-9)

    # the same layer twice is refused, nothing moves
    widget.ref_combo.setCurrentText(tem.name)
    widget.first_guess(block=True)
    assert "two different layers" in widget.status.text()
    np.testing.assert_allclose(data_to_world_matrix(tem), hidden, atol=1e-9)


@pytest.mark.gui
def test_changed_image_is_not_placed_on_reopen(make_napari_viewer, scan_and_tem) -> None:
    store, tem_path, hidden = scan_and_tem
    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    viewer.open(str(store), plugin="napari-seccm")
    viewer.open(str(tem_path), plugin="napari-seccm")
    _align_tem(viewer, widget, hidden, noise=0.01)
    assert widget.save_with_scan()
    # the file changes afterwards: its saved matrix no longer applies
    tem_path.write_bytes(tem_path.read_bytes() + b"\0")
    viewer2 = make_napari_viewer(show=False)
    viewer2.open(str(store), plugin="napari-seccm")
    assert not any(lay.name.startswith("tem") for lay in viewer2.layers)
    assert any("current" in lay.name for lay in viewer2.layers)


@pytest.mark.gui
def test_save_without_a_file_backed_image_is_refused(make_napari_viewer, scan_and_tem) -> None:
    store, _tem, _hidden = scan_and_tem
    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    viewer.open(str(store), plugin="napari-seccm")
    viewer.add_image(np.zeros((10, 10)), name="drawn")
    widget.mov_combo.setCurrentText("drawn")
    assert not widget.save_with_scan()
    assert "not opened from a file" in widget.status.text()
    from napari_seccm.acquisition.store import ScanStore

    assert ScanStore.open(store).alignments() == []


@pytest.mark.gui
def test_align_widget_opens_images_with_scale_and_asks_for_one(
    make_napari_viewer, tmp_path: Path
) -> None:
    """A file with no length unit is refused until a pixel size is entered; an
    unscaled layer can be given one; a scaled file opens in um."""
    import tifffile

    from napari_seccm.widgets.align import data_to_world_matrix

    viewer = make_napari_viewer(show=False)
    _, widget = viewer.window.add_plugin_dock_widget("napari-seccm", "Align")
    png = tmp_path / "optical.png"
    from skimage.io import imsave

    imsave(png, (np.random.default_rng(0).random((32, 48)) * 255).astype(np.uint8))
    assert widget.open_image(png) is None
    assert "pixel size" in widget.status.text()
    assert not any(lay.name.startswith("optical") for lay in viewer.layers)
    widget.pixel_spin.setValue(0.25)
    layer = widget.open_image(png)
    assert layer is not None
    np.testing.assert_allclose(data_to_world_matrix(layer)[:2, :2], np.diag([0.25, 0.25]))

    # a TIFF with its scale in the tags opens in um, whatever the spin box says
    tif = tmp_path / "scaled.tif"
    tifffile.imwrite(
        tif,
        np.zeros((16, 16), np.uint16),
        imagej=True,
        resolution=(1 / 0.02, 1 / 0.02),
        metadata={"unit": "um"},
    )
    widget.pixel_spin.setValue(0.0)
    t = widget.open_image(tif)
    np.testing.assert_allclose(np.diag(data_to_world_matrix(t))[:2], [0.02, 0.02], rtol=1e-6)

    # an unscaled layer (as the reader opens a unitless file) gets a scale
    viewer.add_image(np.zeros((8, 8)), name="dm4 [unscaled]", metadata={"seccm_image": {}})
    widget.mov_combo.setCurrentText("dm4 [unscaled]")
    widget.pixel_spin.setValue(0.5)
    widget.set_moving_scale()
    lay = viewer.layers["dm4"]
    np.testing.assert_allclose(data_to_world_matrix(lay)[:2, :2], np.diag([0.5, 0.5]))
    assert lay.metadata["seccm_image"]["pixel_size_um"] == [0.5, 0.5]
    widget.undo()
    np.testing.assert_allclose(data_to_world_matrix(lay)[:2, :2], np.eye(2))


@pytest.mark.gui
def test_rig_mosaic_covers_the_area_in_stage_coordinates(make_napari_viewer, qtbot) -> None:
    """Rig > Mosaic snaps tiles over a square around the stage and places one
    layer in um; the Au pad edge (x = -20 um) lands where the film says."""
    viewer = make_napari_viewer(show=False)
    _, rig = viewer.window.add_plugin_dock_widget("napari-seccm", "Rig")
    rig._load()
    rig.core.setXYPosition(-10.0, 0.0)
    rig.mosaic_spin.setValue(60.0)
    rig._mosaic()
    qtbot.waitUntil(lambda: not rig._busy, timeout=60_000)
    assert "optical mosaic" in viewer.layers, rig.status.text()
    layer = viewer.layers["optical mosaic"]
    h, w = layer.data.shape
    y0, x0 = layer.data_to_world((0, 0))
    y1, x1 = layer.data_to_world((h - 1, w - 1))
    assert x0 <= -40.0 and x1 >= 20.0 and y0 <= -30.0 and y1 >= 30.0
    # the bright Au pad covers x < -20 um: find the edge along the middle row
    row = np.asarray(layer.data[h // 2], dtype=float)
    xs = np.array([layer.data_to_world((h // 2, c))[1] for c in range(w)])
    bright = row > (np.nanmax(row) + np.nanmedian(row)) / 2
    edge = xs[np.flatnonzero(~bright & (xs > -30))[0]]
    assert edge == pytest.approx(-20.0, abs=0.5)
    rig.core.unloadAllDevices()
