"""Analysis widget: run the analysis of an open scan; results as layers and plots.

The work (fits, FFT, segmentation, bootstrap) runs on a worker thread; the
results come back as layers in stage coordinates (um) with their units in the
names, a summary, and plots of a line profile and the histogram by domain.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ._qt import group, guarded, run_in_thread, says_failures, scroll_layout, spin, status_label

if TYPE_CHECKING:
    import napari

#: analysis maps shown as layers: key -> (layer suffix, display factor, colormap)
RESULT_LAYERS = {
    "conductance_S": ("conductance (nS)", 1e9, "viridis"),
    "conductivity_S_per_cm": ("local conductivity (mS/cm)", 1e3, "cividis"),
    "height_flat_um": ("height, plane removed (nm)", 1e3, "magma"),
}
EXPORT_FORMATS = ("gsf", "gwy", "tiff", "csv", "png")


class AnalysisWidget(QWidget):
    """Conductance, stripes, domains, profiles and export of a scan store."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from ._session import prefer_store_reader

        prefer_store_reader()  # stores dropped on the viewer open without asking
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.store_combo = QComboBox()
        self.r2_spin = spin(
            0.9, 0.0, 1.0, step=0.05, decimals=2, tooltip="I-V fits below this R² are masked (NaN)"
        )
        self.run_btn = QPushButton("Analyze")
        self.run_btn.clicked.connect(guarded(self, "the analysis", self.analyze))
        form = QFormLayout()
        form.addRow("scan", self.store_combo)
        form.addRow("min R²", self.r2_spin)
        form.addRow(self.run_btn)
        run_box = group("Scan", layout=form)

        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        self.summary.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        font = self.summary.font()
        font.setFamily("monospace")
        self.summary.setFont(font)
        self.summary.setMinimumHeight(160)
        #: the analysis's warnings (code: message), one per line; empty when
        #: the numbers carry none
        self.warnings_label = QLabel("")
        self.warnings_label.setWordWrap(True)
        self.warnings_label.setStyleSheet("color: #e0a040;")
        self.warnings_label.setTextInteractionFlags(
            self.warnings_label.textInteractionFlags()
            | Qt.TextInteractionFlag.TextSelectableByMouse
        )
        self.warnings_label.setVisible(False)
        res_box = group("Results", self.warnings_label, self.summary)

        self.width_spin = spin(
            0.0,
            0.0,
            100.0,
            step=0.1,
            decimals=2,
            suffix="um",
            tooltip="average the map across this width around the line (0: along the line)",
        )
        self.profile_btn = QPushButton("Profile along the last line")
        self.profile_btn.clicked.connect(guarded(self, "the profile", self.profile_from_shapes))
        self.hist_btn = QPushButton("Histogram by domain")
        self.hist_btn.clicked.connect(guarded(self, "the histogram", self.plot_histogram))
        prow = QHBoxLayout()
        prow.addWidget(QLabel("profile width"))
        prow.addWidget(self.width_spin, 1)
        brow = QHBoxLayout()
        brow.addWidget(self.profile_btn)
        brow.addWidget(self.hist_btn)
        self.figure = Figure(figsize=(4, 3), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(260)
        self.ax = self.figure.add_subplot(111)
        self.plot_info = QLabel("")
        self.plot_info.setWordWrap(True)
        plot_box = group("Profiles and histograms", layout=QVBoxLayout())
        plot_box.layout().addLayout(prow)
        plot_box.layout().addLayout(brow)
        plot_box.layout().addWidget(self.canvas)
        plot_box.layout().addWidget(self.plot_info)

        self.fmt_combo = QComboBox()
        self.fmt_combo.addItems(EXPORT_FORMATS)
        self.channel_combo = QComboBox()
        self.channel_combo.addItems(["current", "conductance", "height", "height_flat"])
        self.export_btn = QPushButton("Export…")
        self.export_btn.clicked.connect(guarded(self, "the export", self._export_dialog))
        erow = QHBoxLayout()
        erow.addWidget(self.fmt_combo)
        erow.addWidget(self.channel_combo)
        erow.addWidget(self.export_btn)
        exp_box = group("Export (Gwyddion, TIFF, CSV, PNG)", layout=QVBoxLayout())
        exp_box.layout().addLayout(erow)
        movie_box = self._movie_box()

        self.status = status_label()
        # the status line stays in view below the scrolling form
        lay = scroll_layout(self, footer=(self.status,))
        for w in (run_box, res_box, plot_box, exp_box, movie_box):
            lay.addWidget(w)
        lay.addStretch()

        self.result: dict[str, Any] | None = None
        self._worker: Any = None
        self._movie_worker: Any = None
        self.store_combo.currentIndexChanged.connect(self._refresh_movie_segments)
        self._refresh_stores()
        napari_viewer.layers.events.inserted.connect(self._refresh_stores)
        napari_viewer.layers.events.removed.connect(self._refresh_stores)

    # -------------------------------------------------------------- helpers
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e06c6c;" if error else "")

    def stores(self) -> list[str]:
        seen: list[str] = []
        for lay in self.viewer.layers:
            meta = lay.metadata.get("seccm") if hasattr(lay, "metadata") else None
            if meta and meta.get("store") and meta["store"] not in seen:
                seen.append(meta["store"])
        return seen

    @says_failures("listing the scans")
    def _refresh_stores(self, *_: Any) -> None:
        cur = self.store_combo.currentData()
        self.store_combo.blockSignals(True)
        self.store_combo.clear()
        for s in self.stores():
            self.store_combo.addItem(Path(s).name, s)
        idx = self.store_combo.findData(cur)
        if idx >= 0:
            self.store_combo.setCurrentIndex(idx)
        self.store_combo.blockSignals(False)
        self._refresh_movie_segments()

    def _store(self) -> str | None:
        s = self.store_combo.currentData()
        if not s:
            self._say("open or run a scan first (File > Open a .seccm.zarr)", error=True)
        return s

    # -------------------------------------------------------------- analyze
    def analyze(self) -> None:
        """Analyze the chosen store on a worker thread."""
        from ..analysis import analyze_store

        store = self._store()
        if store is None:
            return
        if self._worker is not None:
            self._say("an analysis is already running", error=True)
            return
        r2 = self.r2_spin.value()
        self.run_btn.setEnabled(False)
        self._say(f"analyzing {Path(store).name}…")

        def done(result: dict[str, Any]) -> None:
            self.show_result(result)

        def error(exc: BaseException) -> None:
            self._say(f"analysis failed: {exc}", error=True)

        def finished() -> None:
            self._worker = None
            self.run_btn.setEnabled(True)

        self._worker = run_in_thread(
            lambda: analyze_store(store, r2_min=r2, return_maps=True), done, error, finished
        )

    def show_result(self, result: dict[str, Any]) -> None:
        """Summary text and result layers (main thread)."""
        from ..analysis.report import summary_text

        self.result = result
        # the store's name is enough here (the full path is in the layer list)
        self.summary.setPlainText(summary_text({**result, "store": Path(result["store"]).name}))
        warns = result.get("warnings") or []
        self.warnings_label.setText("\n".join(f"\u26a0 {w['code']}: {w['message']}" for w in warns))
        self.warnings_label.setVisible(bool(warns))
        g = result["grid"]
        p = g["pitch_um"]
        stem = Path(result["store"]).name.removesuffix(".seccm.zarr")
        maps = result.get("maps", {})
        kw = {
            "scale": (p, p),
            "translate": (g["y0_um"] + p / 2, g["x0_um"] + p / 2),
            "units": ("micrometer", "micrometer"),
        }
        for key, (suffix, factor, cmap) in RESULT_LAYERS.items():
            if key not in maps:
                continue
            name = f"{stem} {suffix}"
            data = np.asarray(maps[key], dtype=np.float32) * factor
            meta = {"seccm_analysis": {"store": result["store"], "key": key}}
            finite = data[np.isfinite(data)]
            lims = (
                (float(np.percentile(finite, 1)), float(np.percentile(finite, 99)))
                if finite.size
                else (0.0, 1.0)
            )
            if lims[1] <= lims[0]:
                lims = (lims[0] - 0.5, lims[1] + 0.5)
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = data
                layer.contrast_limits = lims
            else:
                self.viewer.add_image(
                    data,
                    name=name,
                    colormap=cmap,
                    contrast_limits=lims,
                    metadata=meta,
                    visible=False,
                    **kw,
                )
        if "labels" in maps:
            labels = np.asarray(maps["labels"])
            lab = np.where(labels < 0, 0, labels + 1).astype(np.uint8)  # 0 none, 1 [100], 2 [001]
            if "boundary_lines" in maps:  # 3: thin low-current lines (grain boundaries)
                lab[np.asarray(maps["boundary_lines"], bool)] = 3
            name = f"{stem} domains (1 = [100], 2 = [001], 3 = boundary line)"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = lab
            else:
                self.viewer.add_labels(
                    lab,
                    name=name,
                    opacity=0.4,
                    metadata={"seccm_analysis": {"store": result["store"], "key": "labels"}},
                    **kw,
                )
        n_w = len(warns)
        self._say(
            f"analysis of {stem}: {result.get('n_valid', 0)} valid pixels"
            + (f", {n_w} warning{'s' if n_w != 1 else ''} (see Results)" if n_w else "")
        )

    # ------------------------------------------------------------- profiles
    def _map_for_profile(self) -> tuple[np.ndarray, dict[str, Any], str]:
        if self.result is None or "maps" not in self.result:
            raise ValueError("run Analyze first")
        g = self.result["grid"]
        return np.asarray(self.result["maps"]["conductance_S"]) * 1e9, g, "conductance (nS)"

    def profile(self, start_xy: tuple[float, float], end_xy: tuple[float, float]) -> dict[str, Any]:
        """Plot the conductance along a line (x, y in um) with its boundary contrast."""
        from ..analysis.profiles import boundary_contrast, line_profile

        image, g, label = self._map_for_profile()
        geo = {"x0_um": g["x0_um"], "y0_um": g["y0_um"], "pitch_um": g["pitch_um"]}
        width = self.width_spin.value()
        prof = line_profile(image, start_xy, end_xy, width_um=width, **geo)
        self.ax.clear()
        d = prof["distance_um"]
        self.ax.plot(d, prof["value"], "-", lw=1.2)
        if "std" in prof and width > 0:
            self.ax.fill_between(
                d, prof["value"] - prof["std"], prof["value"] + prof["std"], alpha=0.25
            )
        self.ax.set_xlabel("distance along the line (um)")
        self.ax.set_ylabel(label)
        try:
            a_um = self._footprint_radius_um()
            bc = boundary_contrast(
                image, start_xy, end_xy, width_um=width, footprint_radius_um=a_um, **geo
            )
            self.ax.axvline(bc["position_um"], color="gray", ls=":", lw=1)
            res = bc.get("resolution") or {}
            narrow = res.get("resolution_um") if isinstance(res, dict) else None
            self.plot_info.setText(
                f"deepest dip at {bc['position_um']:.2f} um: depth {bc['depth']:.3g} nS "
                f"({100 * bc['relative_depth']:.1f} %), noise {bc['noise']:.3g} nS, "
                f"contrast/noise {bc['contrast_to_noise']:.1f}"
                f"{' (significant)' if bc['significant'] else ' (not significant)'}"
                + (f"; narrowest feature the footprint resolves ~{narrow:.3g} um" if narrow else "")
            )
            prof["boundary"] = bc
        except (ValueError, KeyError) as e:
            self.plot_info.setText(f"no boundary contrast: {e}")
        self.canvas.draw_idle()
        return prof

    def _footprint_radius_um(self) -> float | None:
        """The droplet footprint radius the scan recorded (its plan's pipette;
        the rig snapshot of an older store), um."""
        if self.result is None:
            return None
        try:
            from ..acquisition.store import ScanStore
            from ..analysis.series import pipette_from_meta

            with ScanStore.open(self.result["store"]) as s:
                v = pipette_from_meta(s.meta).get("footprint_radius_nm")
            return v * 1e-3 if v is not None else None
        except (OSError, ValueError, KeyError):
            return None

    def profile_from_shapes(self) -> None:
        from napari.layers import Shapes

        self._say("")  # an earlier message no longer applies

        layer = next(
            (
                lay
                for lay in reversed(self.viewer.layers)
                if isinstance(lay, Shapes) and len(lay.data)
            ),
            None,
        )
        if layer is None:
            self._say("draw a line on a Shapes layer (line tool) first", error=True)
            return
        idx = len(layer.data) - 1
        if layer.shape_type[idx] not in ("line", "path"):
            self._say("the last shape is not a line: use the line tool", error=True)
            return
        verts = np.asarray(layer.data[idx])[:, -2:]
        world = np.array([layer.data_to_world(v) for v in verts])[:, -2:]
        (y0, x0), (y1, x1) = world[0], world[-1]
        try:
            self.profile((float(x0), float(y0)), (float(x1), float(y1)))
        except ValueError as e:
            self._say(str(e), error=True)

    def plot_histogram(self) -> None:
        from ..analysis.domains import histogram

        self._say("")

        try:
            image, _g, label = self._map_for_profile()
            labels = self.result["maps"].get("labels") if self.result else None
            h = histogram(
                image.ravel(), labels=None if labels is None else np.asarray(labels).ravel()
            )
        except ValueError as e:
            self._say(str(e), error=True)
            return
        self.ax.clear()
        edges = h["edges"]
        centers = (edges[:-1] + edges[1:]) / 2
        w = np.diff(edges)
        if "counts_100" in h:
            self.ax.bar(centers, h["counts_100"], width=w, alpha=0.6, label="[100]")
            self.ax.bar(centers, h["counts_001"], width=w, alpha=0.6, label="[001]")
            self.ax.legend()
        else:
            self.ax.bar(centers, h["counts"], width=w)
        self.ax.set_xlabel(label)
        self.ax.set_ylabel("pixels")
        self.canvas.draw_idle()

    # --------------------------------------------------------------- export
    def _export_dialog(self) -> None:
        store = self._store()
        if store is None:
            return
        fmt = self.fmt_combo.currentText()
        suggestion = str(Path(store).with_suffix("").with_suffix(f".{fmt}"))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export", suggestion, f"{fmt.upper()} (*.{fmt})"
        )
        if path:
            self.export(path, fmt, self.channel_combo.currentText())

    def export(self, path: str | Path, fmt: str, channel: str = "current") -> Path | None:
        from ..analysis.export import export_store

        store = self._store()
        if store is None:
            return None
        try:
            out = export_store(store, path, fmt=fmt, channel=channel)
        except Exception as e:
            self._say(f"not exported: {e}", error=True)
            return None
        self._say(f"exported {out}")
        return out

    # ---------------------------------------------------------------- movie
    def _movie_box(self) -> QWidget:
        """A movie of the current map as the potential sweeps (voltammetric scans)."""
        from qtpy.QtWidgets import QSpinBox

        self.movie_segment = QComboBox()
        self.movie_frames = QSpinBox()
        self.movie_frames.setRange(2, 2000)
        self.movie_frames.setValue(40)
        self.movie_frames.setSuffix(" frames/segment")
        self.movie_fps = spin(10.0, 0.1, 60.0, step=1.0, decimals=1, suffix="frames/s")
        self.movie_btn = QPushButton("Movie (GIF, MP4)…")
        self.movie_btn.clicked.connect(guarded(self, "the movie", self._movie_dialog))
        form = QFormLayout()
        form.addRow("segment", self.movie_segment)
        form.addRow("frames", self.movie_frames)
        form.addRow("speed", self.movie_fps)
        form.addRow(self.movie_btn)
        self.movie_box = group("Map movie (LSV, CV, staircase scans)", layout=form)
        return self.movie_box

    def _refresh_movie_segments(self, *_: Any) -> None:
        """The chosen store's segments; the box is off for one held potential."""
        from ..acquisition.store import ScanStore
        from ..analysis.voltammetry import VoltammetryTable

        self.movie_segment.clear()
        store = self.store_combo.currentData()
        sweeps: tuple = ()
        if store:
            try:
                with ScanStore.open(store) as s:
                    sweeps = VoltammetryTable.from_store(s).sweeps
            except (OSError, ValueError, KeyError):
                sweeps = ()
        if sweeps:
            self.movie_segment.addItem("every segment", None)
            for sw in sweeps:
                self.movie_segment.addItem(sw.short(), sw.index)
        self.movie_box.setEnabled(bool(sweeps))
        self.movie_box.setToolTip(
            "" if sweeps else "for a scan whose program sweeps the potential (LSV, CV, staircase)"
        )

    def _movie_dialog(self) -> None:
        store = self._store()
        if store is None:
            return
        suggestion = str(Path(store).with_suffix("").with_suffix(".gif"))
        path, _ = QFileDialog.getSaveFileName(
            self, "Map movie", suggestion, "GIF (*.gif);;MP4 (*.mp4)"
        )
        if path:
            self.movie(path)

    def movie(self, path: str | Path) -> None:
        """Write the movie of the chosen store on a worker thread."""
        from ..analysis.movie import write_movie

        store = self._store()
        if store is None:
            return
        if self._movie_worker is not None:
            self._say("a movie is already being written", error=True)
            return
        kw = {
            "segment": self.movie_segment.currentData(),
            "frames_per_segment": self.movie_frames.value(),
            "fps": self.movie_fps.value(),
        }
        self.movie_btn.setEnabled(False)
        self._say(f"writing {Path(path).name}…")

        def done(res: dict[str, Any]) -> None:
            w, h = res["size_px"]
            lo, hi = res["clim_nA"]
            self._say(
                f"wrote {res['path']}: {res['frames']} frames of {w} x {h} px at "
                f"{res['fps']:g} frames/s, colour scale {lo:.4g} to {hi:.4g} nA"
            )

        def error(exc: BaseException) -> None:
            self._say(f"no movie: {exc}", error=True)

        def finished() -> None:
            self._movie_worker = None
            self.movie_btn.setEnabled(True)

        self._movie_worker = run_in_thread(
            lambda: write_movie(store, path, **kw), done, error, finished
        )
