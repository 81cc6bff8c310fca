"""Align widget: put an optical or TEM image and a scan map into one frame (um).

Click corresponding landmarks on the reference (e.g. a scan map or the
optical image, already in stage coordinates) and on the moving image (e.g. a
TEM image): the n-th moving point pairs with the n-th reference point. The
chosen transform model is estimated with scikit-image and applied as the
moving layer's affine; residuals per landmark and their rms are shown in um.
The alignment can be saved with a scan and comes back when the scan is
reopened.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..analysis.registration import MODELS, RegistrationError, estimate
from ._qt import group, guarded, says_failures, scroll_layout, spin, status_label

if TYPE_CHECKING:
    import napari

from ..io.layers import LANDMARKS_MOVING as MOV_POINTS
from ..io.layers import LANDMARKS_REFERENCE as REF_POINTS


def data_to_world_matrix(layer: Any) -> np.ndarray:
    """The 3 x 3 matrix a 2-D layer applies from data (row, col) to world (y, x)."""
    o = np.asarray(layer.data_to_world((0.0, 0.0)), dtype=float)[-2:]
    e0 = np.asarray(layer.data_to_world((1.0, 0.0)), dtype=float)[-2:] - o
    e1 = np.asarray(layer.data_to_world((0.0, 1.0)), dtype=float)[-2:] - o
    m = np.eye(3)
    m[:2, 0], m[:2, 1], m[:2, 2] = e0, e1, o
    return m


def _transform_state(layer: Any) -> dict[str, Any]:
    return {
        "scale": np.array(layer.scale),
        "translate": np.array(layer.translate),
        "rotate": np.array(layer.rotate),
        "shear": np.array(layer.shear),
        "affine": np.array(layer.affine.affine_matrix),
    }


def _set_transform_state(layer: Any, st: dict[str, Any]) -> None:
    layer.scale = st["scale"]
    layer.translate = st["translate"]
    layer.rotate = st["rotate"]
    layer.shear = st["shear"]
    layer.affine = st["affine"]


def set_data_to_world(layer: Any, matrix: np.ndarray) -> None:
    """Make ``matrix`` the layer's whole data -> world transform."""
    n = layer.ndim
    layer.scale = np.ones(n)
    layer.translate = np.zeros(n)
    layer.rotate = np.eye(n)
    layer.shear = np.zeros(n * (n - 1) // 2)
    layer.affine = matrix


def _pixel_size(layer: Any) -> tuple[float, float]:
    """The layer's pixel size (row, col) in um: from its file, else as placed."""
    info = layer.metadata.get("seccm_image") or {}
    ps = info.get("pixel_size_um")
    if ps is not None and len(ps) == 2 and all(v and v > 0 for v in ps):
        return float(ps[0]), float(ps[1])
    norms = np.linalg.norm(data_to_world_matrix(layer)[:2, :2], axis=0)
    return float(norms[0]), float(norms[1])


def _level_and_matrix(layer: Any) -> tuple[Any, np.ndarray]:
    """A 2-D image layer's data (its smallest level if multiscale) and that
    level's data -> world matrix."""
    m = data_to_world_matrix(layer)
    data = layer.data
    if getattr(layer, "multiscale", False):
        full, data = data[0], data[-1]
        f = np.asarray(full.shape[:2], float) / np.asarray(data.shape[:2], float)
        m = m @ np.diag([f[0], f[1], 1.0])
    if len(data.shape) - (1 if getattr(layer, "rgb", False) else 0) != 2:
        raise RegistrationError(
            f"layer {layer.name!r} has {layer.ndim} dimensions; the first guess needs a 2-D image"
        )
    return data, m


#: the longer side of an exported figure at most, px (napari's canvas fails far above)
MAX_FIGURE_SIDE_PX = 8000


class AlignWidget(QWidget):
    """Landmark alignment of a moving image onto a reference layer."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ._session import prefer_store_reader

        prefer_store_reader()  # stores dropped on the viewer open without asking
        self.viewer = napari_viewer
        # -- images: open with a scale, or give an unscaled one its scale
        self.open_btn = QPushButton("Open image…")
        self.open_btn.setToolTip("TEM/STEM (DM3, DM4, EMD), TIFF, PNG/JPEG; converted to um")
        self.open_btn.clicked.connect(guarded(self, "opening an image", self._open_dialog))
        self.pixel_spin = spin(
            0.0,
            0.0,
            1e4,
            step=0.001,
            decimals=6,
            suffix="um/px",
            tooltip="pixel size for files without a length unit (0: use the file's)",
        )
        self.scale_btn = QPushButton("Set scale of moving")
        self.scale_btn.setToolTip("give the moving layer this pixel size (um per pixel)")
        self.scale_btn.clicked.connect(guarded(self, "setting the scale", self.set_moving_scale))
        # two rows: side by side they would be wider than a dock on a small screen
        srow = QHBoxLayout()
        srow.addWidget(self.pixel_spin, 1)
        srow.addWidget(self.scale_btn)
        img_box = group("Images", layout=QVBoxLayout())
        img_box.layout().addWidget(self.open_btn)
        img_box.layout().addLayout(srow)

        self.ref_combo = QComboBox()
        self.mov_combo = QComboBox()
        #: the moving layer was picked by the user (a SECCM map may then be moved)
        self._mov_by_user = False
        self.mov_combo.activated.connect(lambda *_: setattr(self, "_mov_by_user", True))
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODELS)
        self.model_combo.setCurrentText("similarity")
        form = QFormLayout()
        form.addRow("reference (stays)", self.ref_combo)
        form.addRow("moving (aligned)", self.mov_combo)
        form.addRow("transform", self.model_combo)
        pick_box = group("Layers", layout=form)

        self.points_btn = QPushButton("Add landmark layers")
        self.points_btn.setToolTip(
            "click points on the reference, then the same features in the same order on "
            "the moving image"
        )
        self.points_btn.clicked.connect(
            guarded(self, "adding the landmark layers", self.add_landmark_layers)
        )
        self.apply_btn = QPushButton("Estimate and apply")
        self.apply_btn.clicked.connect(guarded(self, "estimate and apply", self.estimate_and_apply))
        self.undo_btn = QPushButton("Undo")
        self.undo_btn.clicked.connect(guarded(self, "undo", self.undo))
        row = QHBoxLayout()
        for b in (self.points_btn, self.apply_btn, self.undo_btn):
            row.addWidget(b)
        self.guess_btn = QPushButton("Automatic first guess")
        self.guess_btn.setToolTip(
            "turn and shift the moving image to where it correlates best with the "
            "reference (pixel sizes kept); then refine with landmarks"
        )
        self.guess_btn.clicked.connect(guarded(self, "the first guess", self.first_guess))
        self.next_btn = QPushButton("Next guess")
        self.next_btn.setToolTip("the next best distinct placement (a stripe film repeats)")
        self.next_btn.clicked.connect(guarded(self, "the next guess", self.next_guess))
        self.next_btn.setEnabled(False)
        self.mirror_check = QCheckBox("try mirrored")
        self.mirror_check.setToolTip("also try the moving image flipped (seen from the back)")
        grow = QHBoxLayout()
        for w in (self.guess_btn, self.next_btn, self.mirror_check):
            grow.addWidget(w)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["landmark", "residual (um)"])
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(120)
        self.rms_label = QLabel("")
        self.rms_label.setWordWrap(True)
        fit_box = group("Landmarks", layout=QVBoxLayout())
        fit_box.layout().addLayout(grow)
        fit_box.layout().addLayout(row)
        fit_box.layout().addWidget(self.table)
        fit_box.layout().addWidget(self.rms_label)

        self.save_btn = QPushButton("Save alignment with the scan")
        self.save_btn.clicked.connect(guarded(self, "saving with the scan", self.save_with_scan))
        self.export_btn = QPushButton("Export figure…")
        self.export_btn.clicked.connect(guarded(self, "exporting the figure", self._export_dialog))
        srow = QHBoxLayout()
        srow.addWidget(self.save_btn)
        srow.addWidget(self.export_btn)
        save_box = group("Keep it", layout=QVBoxLayout())
        save_box.layout().addLayout(srow)

        self.status = status_label()
        # the status line stays in view below the scrolling form
        lay = scroll_layout(self, footer=(self.status,))
        for w in (img_box, pick_box, fit_box, save_box):
            lay.addWidget(w)
        lay.addStretch()

        # (layer, its placement before the change): by object, names may change
        self._undo: list[tuple[Any, dict[str, Any]]] = []
        self.last = None
        # candidates of the last automatic first guess, and the one shown
        self.guesses: list[Any] = []
        self._guess_i = 0
        self._guess_layer: Any = None
        self._worker: Any = None
        self._refresh_layers()
        self._choose_defaults()
        self.mov_combo.currentTextChanged.connect(self._forget_guesses)
        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._refresh_layers)

    # ------------------------------------------------------------- helpers
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e06c6c;" if error else "")

    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [lay for lay in self.viewer.layers if isinstance(lay, Image)]

    @says_failures("listing the layers")
    def _refresh_layers(self, *_: Any) -> None:
        names = [lay.name for lay in self._image_layers()]
        for combo in (self.ref_combo, self.mov_combo):
            cur = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if cur in names:
                combo.setCurrentText(cur)
            combo.blockSignals(False)
        mov = self._layer_meta(self.mov_combo.currentText())
        if self.mov_combo.currentText() == self.ref_combo.currentText() or (
            "seccm" in mov and not self._mov_by_user
        ):
            movable = self._movable()
            self._set_moving_default(movable[-1] if movable else None)

    def _choose_defaults(self) -> None:
        """Opened on a viewer that already has layers: a scan's current map as
        the reference, the last image opened from a file as the moving one."""
        images = self._image_layers()
        cur = [lay for lay in images if lay.metadata.get("seccm", {}).get("kind") == "current"]
        files = [lay for lay in images if "seccm_image" in lay.metadata]
        if cur:
            self.ref_combo.setCurrentText(cur[-1].name)
        if files:
            self._set_moving_default(files[-1].name)

    def _layer_meta(self, name: str) -> dict[str, Any]:
        return dict(self.viewer.layers[name].metadata) if name in self.viewer.layers else {}

    def _forget_guesses(self, *_: Any) -> None:
        """Candidates belong to the layer they were found for."""
        if self.guesses and self.mov_combo.currentText() != getattr(
            self._guess_layer, "name", None
        ):
            self.guesses = []
            self.next_btn.setEnabled(False)

    @says_failures("taking in the new layer")
    def _on_inserted(self, event: Any = None) -> None:
        """New layers fill the lists; a newly opened image becomes the moving
        layer, and a scan's current map the reference unless one is chosen."""
        self._refresh_layers()
        layer = getattr(event, "value", None)
        meta = getattr(layer, "metadata", None) or {}
        names = [lay.name for lay in self._image_layers()]
        if layer is None or layer.name not in names:
            return
        if "seccm_image" in meta:
            self._set_moving_default(layer.name)
        elif meta.get("seccm", {}).get("kind") == "current":
            ref = self.ref_combo.currentText()
            ref_meta = self.viewer.layers[ref].metadata if ref in self.viewer.layers else {}
            if ref_meta.get("seccm", {}).get("kind") != "current":
                self.ref_combo.setCurrentText(layer.name)
        if self.mov_combo.currentText() == self.ref_combo.currentText() or (
            "seccm" in self._layer_meta(self.mov_combo.currentText()) and not self._mov_by_user
        ):
            movable = self._movable()
            self._set_moving_default(movable[-1] if movable else None)

    def _layer(self, name: str) -> Any:
        if name not in self.viewer.layers:
            raise RegistrationError(f"no layer named {name!r}")
        return self.viewer.layers[name]

    def _moving(self) -> Any:
        """The moving layer; a SECCM map only when the user chose it here (a map
        is placed by its scan: re-placing it by default would move the data)."""
        name = self.mov_combo.currentText()
        if not name:
            raise RegistrationError(
                "choose the moving layer (the image to place, e.g. an opened TEM image)"
            )
        layer = self._layer(name)
        if "seccm" in layer.metadata and not self._mov_by_user:
            raise RegistrationError(
                f"{name} is a SECCM map, placed by its scan: choose it as the moving layer "
                "yourself to re-place it, or choose the image to align"
            )
        return layer

    def _set_moving_default(self, name: str | None) -> None:
        """A default choice of the moving layer (not the user's): never a map."""
        self.mov_combo.blockSignals(True)
        if name is None:
            self.mov_combo.setCurrentIndex(-1)
        else:
            self.mov_combo.setCurrentText(name)
        self.mov_combo.blockSignals(False)
        self._mov_by_user = False
        self._forget_guesses()

    def _movable(self) -> list[str]:
        """Image layers that may be the moving one by default: not the
        reference, not a SECCM map."""
        ref = self.ref_combo.currentText()
        return [
            lay.name
            for lay in self._image_layers()
            if lay.name != ref and "seccm" not in lay.metadata
        ]

    # -------------------------------------------------------------- images
    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Image",
            str(Path.home()),
            "Images (*.dm3 *.dm4 *.emd *.tif *.tiff *.png *.jpg *.jpeg)",
        )
        if path:
            self.open_image(path)

    def open_image(self, path: str | Path, signal: int | str | None = None) -> Any:
        """Open an image with its scale in um; a file without a length unit needs
        the pixel size entered here first (it is never taken as um silently)."""
        from ..io.images import MissingScaleError, load_image

        ps = self.pixel_spin.value() or None
        try:
            img = load_image(path, pixel_size_um=ps, signal=signal)
        except MissingScaleError as e:
            self._say(
                f"{e.problem} Enter its pixel size (um/px) in the field above and open it again",
                error=True,
            )
            self.pixel_spin.setFocus()
            return None
        except (OSError, ValueError) as e:
            self._say(f"could not open {path}: {e}", error=True)
            return None
        data, kw, _ = img.layer_data()
        layer = self.viewer.add_image(data, **kw)
        self.mov_combo.setCurrentText(layer.name)
        py, px = img.pixel_size_um
        self._say(f"opened {layer.name}: {py:.6g} x {px:.6g} um/px ({img.unit_source})")
        return layer

    def set_moving_scale(self) -> None:
        """Give the moving layer (e.g. an unscaled image) the pixel size entered."""
        ps = self.pixel_spin.value()
        try:
            layer = self._layer(self.mov_combo.currentText())
        except RegistrationError as e:
            self._say(str(e), error=True)
            return
        if ps <= 0:
            self._say("enter a pixel size (um/px) first", error=True)
            return
        self._undo.append((layer, _transform_state(layer)))
        set_data_to_world(layer, np.diag([ps, ps, 1.0]))
        layer.units = ("micrometer", "micrometer")
        info = layer.metadata.get("seccm_image")
        if info is not None:
            info["pixel_size_um"] = [ps, ps]
            info["unit_source"] = "user"
        if layer.name.endswith(" [unscaled]"):
            layer.name = layer.name.removesuffix(" [unscaled]")
        self._say(f"{layer.name}: {ps:g} um/px")

    # ------------------------------------------------------------- actions
    def add_landmark_layers(self) -> None:
        """Points layers for the landmarks: the moving one rides on the moving image."""
        try:
            mov = self._layer(self.mov_combo.currentText())
        except RegistrationError as e:
            self._say(str(e), error=True)
            return
        if REF_POINTS not in self.viewer.layers:
            self.viewer.add_points(
                np.empty((0, 2)),
                name=REF_POINTS,
                face_color="cyan",
                size=0.3,
                border_color="black",
                units=("micrometer", "micrometer"),
            )
        if MOV_POINTS in self.viewer.layers:
            # kept (e.g. restored with a scan): they ride on the moving image
            pts = self.viewer.layers[MOV_POINTS]
            set_data_to_world(pts, data_to_world_matrix(mov))
            self.viewer.layers.selection.active = self.viewer.layers[REF_POINTS]
            self._say(
                f"{len(pts.data)} landmark pairs kept: add, move or delete points, then estimate"
            )
            return
        pts = self.viewer.add_points(
            np.empty((0, 2)),
            name=MOV_POINTS,
            face_color="magenta",
            size=0.3,
            border_color="black",
            units=("micrometer", "micrometer"),
        )
        set_data_to_world(pts, data_to_world_matrix(mov))
        self.viewer.layers.selection.active = self.viewer.layers[REF_POINTS]
        self.viewer.layers[REF_POINTS].mode = "add"
        self._say(
            "click landmarks on the reference (cyan), then the same features in the "
            "same order on the moving image (magenta, select its layer first)"
        )

    def first_guess(self, block: bool = False) -> None:
        """Search rotations and shifts of the moving image on the reference (on a
        worker thread; ``block`` waits, for scripts) and apply the best."""
        from ..analysis.autoalign import first_guesses

        try:
            if self.ref_combo.currentText() == self.mov_combo.currentText():
                raise RegistrationError("choose two different layers (names are unique)")
            ref = self._layer(self.ref_combo.currentText())
            mov = self._moving()
            ref_data, ref_m = _level_and_matrix(ref)
            mov_data, mov_m = _level_and_matrix(mov)
        except RegistrationError as e:
            self._say(str(e), error=True)
            return
        mirror = self.mirror_check.isChecked()

        def work() -> list[Any]:
            return first_guesses(
                np.asarray(ref_data[...]),
                ref_m,
                np.asarray(mov_data[...]),
                mov_m,
                n=3,
                mirror=mirror,
            )

        def done(guesses: list[Any]) -> None:
            if mov not in self.viewer.layers:
                self._say(f"layer {mov.name!r} was removed during the search", error=True)
                return
            self._undo.append((mov, _transform_state(mov)))
            self.guesses, self._guess_i, self._guess_layer = guesses, 0, mov
            self._show_guess()

        def failed(e: BaseException) -> None:
            self.rms_label.setText("")
            self._say(f"no first guess: {e}", error=True)

        def finished() -> None:
            self.guess_btn.setEnabled(True)

        self.guess_btn.setEnabled(False)
        self.next_btn.setEnabled(False)
        self._say(f"searching rotations and shifts of {mov.name!r} on {ref.name!r}…")
        if block:
            try:
                result = work()
            except ValueError as e:
                failed(e)
            else:
                done(result)
            finished()
            return
        from ._qt import run_in_thread

        self._worker = run_in_thread(work, done, failed, finished)

    def next_guess(self) -> None:
        """Show the next candidate of the last first guess (cycles)."""
        if not self.guesses:
            self._say("no first guess yet")
            return
        self._guess_i = (self._guess_i + 1) % len(self.guesses)
        self._show_guess()

    def _show_guess(self) -> None:
        layer = self._guess_layer
        if layer not in self.viewer.layers:
            self._say(f"layer {layer.name!r} is no longer in the viewer", error=True)
            return
        g = self.guesses[self._guess_i]
        set_data_to_world(layer, g.matrix)
        if MOV_POINTS in self.viewer.layers:
            set_data_to_world(self.viewer.layers[MOV_POINTS], g.matrix)
        self.last = None
        self.table.setRowCount(0)
        k = len(self.guesses)
        self.rms_label.setText(f"first guess {self._guess_i + 1} of {k}: {g.describe()}")
        self.next_btn.setEnabled(k > 1)
        if g.ambiguous:
            self._say(
                f"placements up to {g.uncertainty_um:.2g} um apart match almost as well "
                "(a repeating pattern such as stripes): check it, try Next guess, and "
                "refine with landmarks",
                error=True,
            )
        else:
            self._say("first guess applied: refine it with landmarks, or Undo")

    def estimate_and_apply(self) -> Any:
        """Estimate the transform from the landmark pairs and apply it."""
        try:
            mov_layer = self._moving()
            ref_pts = np.asarray(self._layer(REF_POINTS).data, dtype=float)[:, -2:]
            pts_layer = self._layer(MOV_POINTS)
            mov_pts = np.asarray(pts_layer.data, dtype=float)[:, -2:]  # moving data coords
            if len(ref_pts) != len(mov_pts):
                raise RegistrationError(
                    f"{len(ref_pts)} reference and {len(mov_pts)} moving landmarks: "
                    "click the same number on each, in the same order"
                )
            reg = estimate(mov_pts, ref_pts, self.model_combo.currentText(), _pixel_size(mov_layer))
        except RegistrationError as e:
            self._say(str(e), error=True)
            return None
        self._undo.append((mov_layer, _transform_state(mov_layer)))
        set_data_to_world(mov_layer, reg.matrix)
        set_data_to_world(pts_layer, reg.matrix)
        self.last = reg
        # the fit replaces the first guess: its candidates no longer apply
        self.guesses = []
        self.next_btn.setEnabled(False)
        info = mov_layer.metadata.get("seccm_image") or {}
        file_ps = info.get("pixel_size_um")
        if file_ps and reg.model in ("similarity", "affine") and info.get("unit_source") != "user":
            ratio = reg.scale / float(np.sqrt(abs(file_ps[0] * file_ps[1])))
            if not 0.8 < ratio < 1.25:
                reg.warnings.append(
                    f"the fit makes the image {reg.scale:.4g} um/px, {ratio:.3g} x the "
                    f"{float(np.sqrt(abs(file_ps[0] * file_ps[1]))):.4g} um/px in its file: check "
                    "the landmarks, or use a Euclidean fit to keep the file's scale"
                )
        self._show(reg)
        return reg

    def _show(self, reg: Any) -> None:
        self.table.setRowCount(len(reg.residuals))
        for i, r in enumerate(reg.residuals):
            self.table.setItem(i, 0, QTableWidgetItem(str(i + 1)))
            self.table.setItem(i, 1, QTableWidgetItem(f"{r:.4f}"))
        self.rms_label.setText(
            f"{reg.model}: rms residual {reg.rms:.4f} um; scale {reg.scale:.5g} um/px, "
            f"rotation {reg.rotation_deg:.2f} deg"
        )
        self._say("; ".join(reg.warnings), error=bool(reg.warnings))

    def undo(self) -> None:
        if not self._undo:
            self._say("nothing to undo")
            return
        layer, st = self._undo.pop()
        if layer not in self.viewer.layers:
            self._say(f"layer {layer.name!r} is no longer in the viewer")
            return
        _set_transform_state(layer, st)
        if MOV_POINTS in self.viewer.layers:
            set_data_to_world(self.viewer.layers[MOV_POINTS], data_to_world_matrix(layer))
        self.last = None
        self.guesses = []
        self.next_btn.setEnabled(False)
        self.table.setRowCount(0)
        self.rms_label.setText("")
        self._say(f"restored the previous placement of {layer.name!r}")

    # ----------------------------------------------------------- keep it
    def _scan_store_path(self) -> str | None:
        for lay in self.viewer.layers:
            meta = lay.metadata.get("seccm") if hasattr(lay, "metadata") else None
            if meta and meta.get("store"):
                return str(meta["store"])
        return None

    def alignment_record(self) -> dict[str, Any]:
        mov = self._layer(self.mov_combo.currentText())
        info = mov.metadata.get("seccm_image", {})
        rec: dict[str, Any] = {
            "image": mov.name,
            "path": info.get("path", ""),
            "sha256": info.get("sha256", ""),
            "signal": info.get("signal"),
            "pixel_size_um": info.get("pixel_size_um"),
            "matrix": data_to_world_matrix(mov).tolist(),
            "reference": self.ref_combo.currentText(),
        }
        if self.last is not None:
            rec.update(
                model=self.last.model,
                rms_um=self.last.rms,
                residuals_um=[float(r) for r in self.last.residuals],
            )
        if REF_POINTS in self.viewer.layers and MOV_POINTS in self.viewer.layers:
            rec["landmarks_reference_um"] = np.asarray(self.viewer.layers[REF_POINTS].data)[
                :, -2:
            ].tolist()
            rec["landmarks_moving_px"] = np.asarray(self.viewer.layers[MOV_POINTS].data)[
                :, -2:
            ].tolist()
        return rec

    def save_with_scan(self, store_path: str | None = None) -> bool:
        from ..acquisition.store import ScanStore

        store_path = store_path or self._scan_store_path()
        if not store_path:
            self._say(
                "open or run a scan first: the alignment is saved with a scan store", error=True
            )
            return False
        try:
            rec = self.alignment_record()
            if not rec["path"]:
                raise ValueError(
                    f"layer {rec['image']!r} was not opened from a file; open the image "
                    "through napari-seccm (File > Open) so the alignment can find it again"
                )
            ScanStore.save_alignment(store_path, rec)
        except Exception as e:
            self._say(f"not saved: {e}", error=True)
            return False
        self._say(f"saved the alignment of {rec['image']!r} with {Path(store_path).name}")
        return True

    def _export_dialog(self) -> None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path, _ = QFileDialog.getSaveFileName(
            self, "Aligned figure", str(Path.home() / f"seccm-aligned-{stamp}.png"), "PNG (*.png)"
        )
        if path:
            with contextlib.suppress(Exception):  # export_figure says why in the status line
                self.export_figure(path)

    def export_figure(self, path: str | Path, max_side_px: int = MAX_FIGURE_SIDE_PX) -> Path:
        """Save the aligned layers as they are shown (all visible layers), PNG.

        napari renders one figure pixel per pixel of the finest layer: a TEM
        image of nm pixels beside a 50 um optical image asks for a canvas of
        hundreds of thousands of pixels, which fails. The figure is scaled
        down so that its longer side is at most ``max_side_px`` (the status
        line gives the resolution). Every failure is said in the status line."""
        path = Path(path)
        try:
            if path.exists():
                raise FileExistsError(f"{path} exists; choose another name")
            side, finest = _figure_side_px(self.viewer)
            factor = min(1.0, max_side_px / side) if side > 0 else 1.0
            self.viewer.export_figure(str(path), scale_factor=factor)
        except Exception as e:
            self._say(f"figure not exported: {e}", error=True)
            raise
        note = (
            f" at {finest / factor * 1e3:.3g} nm/px (scaled to {max_side_px} px: the finest layer "
            f"has {finest * 1e3:.3g} nm/px)"
            if factor < 1
            else ""
        )
        self._say(f"exported {path}{note}")
        return path


def _figure_side_px(viewer: Any) -> tuple[float, float]:
    """The longer side of napari's full-resolution figure of the visible
    layers (px), and the finest pixel (world units, um)."""
    extent = np.asarray(viewer.layers.extent.world, dtype=float)[:, -2:]
    size = extent[1] - extent[0]
    finest = np.inf
    for lay in viewer.layers:
        if not lay.visible:
            continue
        with contextlib.suppress(Exception):
            m = np.asarray(lay.affine.affine_matrix)[-3:-1, -3:-1] @ np.diag(
                np.asarray(lay.scale[-2:], float)
            )
            px = float(np.min(np.linalg.norm(m, axis=0)))
            if px > 0:
                finest = min(finest, px)
    if not np.isfinite(finest):
        return 0.0, 0.0
    return float(np.max(size) / finest), finest
