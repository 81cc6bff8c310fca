"""Inspector: click a pixel of a scan layer to see what happened there.

Plots the point's current trace and its I-E curve, with its landing status,
contact height and map value, and the landing's approach curve i(z). Works on a running scan (the store is read
while it is written) and on a reopened one.

A voltammetric store (LSV, CV, staircase) opens with a layer browsed by
potential: there the I-E plot is the point's voltammogram, the slider's
segment and cycle highlighted, with a marker at the slider's potential that
follows the slider (the potential and segment are also written on the canvas).
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QLabel, QPushButton, QTabWidget, QVBoxLayout, QWidget

from ._session import get_session

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import napari


def _num(value: float, factor: float, unit: str) -> str:
    """A value in ``unit`` (value x factor), or an em dash when not measured."""
    return f"{value * factor:.4f} {unit}" if math.isfinite(value) else "—"


def _text_overlay(viewer: napari.Viewer) -> Any:
    """The canvas's text overlay (``viewer.canvas.overlays.text`` since napari
    0.9; ``viewer.text_overlay`` before)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    text = getattr(overlays, "text", None)
    return text if text is not None else viewer.text_overlay


class InspectorWidget(QWidget):
    """Current trace and I-V of a clicked map pixel."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.info = QLabel("click a pixel of a SECCM map layer")
        self.info.setWordWrap(True)
        self.figure = Figure(figsize=(4, 5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(280)  # (with its tab bar: the room it had)
        self.ax_t = self.figure.add_subplot(211)
        self.ax_iv = self.figure.add_subplot(212)
        # the plots fold away on a small screen (the other widgets' status
        # lines and the emergency stop keep their room)
        self.plots_btn = QPushButton("Hide plots")
        self.plots_btn.setCheckable(True)
        self.plots_btn.toggled.connect(self.set_plots_folded)
        lay = QVBoxLayout(self)
        lay.addWidget(self.info)
        lay.addWidget(self.plots_btn)
        # the trace and I-E plots and the approach curve take turns in the
        # room there is (stacked, each would be too small to read at 1280 x 800)
        self.plot_tabs = QTabWidget()
        self.plot_tabs.addTab(self.canvas, "trace and I-E")
        self._build_approach_plot()
        self.plot_tabs.addTab(self.approach_canvas, "approach i(z)")
        lay.addWidget(self.plot_tabs, 1)
        self._stores: dict[str, Any] = {}
        self.last: dict[str, Any] | None = None
        #: the voltammogram on show: store, table, point, its trace, plot artists
        self._volt: dict[str, Any] | None = None
        napari_viewer.mouse_drag_callbacks.append(self._on_mouse)
        napari_viewer.dims.events.current_step.connect(self._follow_slider)
        self.destroyed.connect(lambda *_: self._disconnect())

    def set_plots_folded(self, folded: bool) -> None:
        """Fold the trace and I-V plots away (or show them again)."""
        self.plot_tabs.setVisible(not folded)
        self.plots_btn.blockSignals(True)
        self.plots_btn.setChecked(folded)
        self.plots_btn.blockSignals(False)
        self.plots_btn.setText("Show plots" if folded else "Hide plots")

    def _disconnect(self) -> None:
        with contextlib.suppress(ValueError, RuntimeError):
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        with contextlib.suppress(ValueError, RuntimeError, TypeError):
            self.viewer.dims.events.current_step.disconnect(self._follow_slider)

    def _on_mouse(self, viewer: napari.Viewer, event: Any) -> Any:
        # a click, not a drag (a pan keeps the world point under the cursor, so
        # movement is measured on the screen): more than 2 px is a drag
        start = np.asarray(event.pos, dtype=float)
        yield
        while event.type == "mouse_move":
            yield
        moved = np.linalg.norm(np.asarray(event.pos, dtype=float) - start) > 2.0
        if event.type == "mouse_release" and not moved:
            try:
                self.inspect_world(tuple(event.position))
            except Exception as e:  # said here, not as a napari toast
                log.exception("inspecting a pixel failed")
                self.info.setText(f"could not show this pixel: {e}")

    def _store(self, path: str) -> Any:
        from ..acquisition.store import ScanStore

        if path not in self._stores:
            self._stores[path] = ScanStore.open(path)
        return self._stores[path]

    def inspect_world(self, position: tuple[float, ...]) -> dict[str, Any] | None:
        """Show the point under a world position (y, x in um); returns its facts."""
        for layer in reversed(list(self.viewer.layers)):
            meta = layer.metadata.get("seccm") if hasattr(layer, "metadata") else None
            if not meta or not layer.visible:
                continue
            r, c = (int(math.floor(v + 0.5)) for v in layer.world_to_data(position)[-2:])
            ny, nx = layer.data.shape[-2:]
            if 0 <= r < ny and 0 <= c < nx:
                return self.inspect(meta["store"], r, c)
        y, x = (float(v) for v in position[-2:])
        self.info.setText(f"no scan map under (x = {x:.3f} um, y = {y:.3f} um)")
        return None

    def inspect(self, store_path: str | Path, row: int, col: int) -> dict[str, Any] | None:
        """Plot map pixel (row, col) of a store."""
        from ..acquisition.store import STATUS_NAMES

        store = self._store(str(store_path))
        i = store.point_at(row, col)
        if i is None:
            self.info.setText(f"pixel ({row}, {col}) is outside the scan area")
            return None
        status = int(store.array("results/status")[i])
        done = bool(store.array("results/done")[i])
        x = float(store.array("points/x_um")[i])
        y = float(store.array("points/y_um")[i])
        facts = {
            "store": str(store_path),
            "index": i,
            "row": row,
            "col": col,
            "x_um": x,
            "y_um": y,
            "done": done,
            "status": STATUS_NAMES[status] if done else "not measured yet",
            "value_A": float(store.array("results/value_A")[i]),
            "contact_z_um": float(store.array("results/contact_z_um")[i]),
        }
        tr = store.trace(i)
        t, e, cur = tr["time_s"], tr["potential_V"], tr["current_A"]
        facts["n_samples"] = int(np.isfinite(cur).sum())
        self.last = facts
        self.info.setText(
            f"{Path(str(store_path)).name}  point {i}  pixel (row {row}, col {col})\n"
            f"x = {x:.3f} um, y = {y:.3f} um   landing: {facts['status']}\n"
            f"contact height {_num(facts['contact_z_um'], 1.0, 'um')}   map value "
            f"{_num(facts['value_A'], 1e9, 'nA')}"
        )
        for ax in (self.ax_t, self.ax_iv):
            ax.clear()
        if facts["n_samples"]:
            self.ax_t.plot(t * 1e3, cur * 1e9, lw=1)
            w0, w1 = store.meta["readout_window_s"]
            self.ax_t.axvspan(w0 * 1e3, w1 * 1e3, color="orange", alpha=0.2, label="readout")
            self.ax_t.legend(loc="best", fontsize="small")
            if np.ptp(e[np.isfinite(e)]) > 1e-6:
                self.ax_iv.plot(e, cur * 1e9, ".", ms=2)
                self.ax_iv.set_xlabel("E (V)")
                self.ax_iv.set_ylabel("I (nA)")
            else:  # one potential held: an I-E plot would be a column of dots
                self.ax_iv.plot(t * 1e3, e, lw=1)
                self.ax_iv.set_title("constant potential: no I-E curve", fontsize="small")
                self.ax_iv.set_xlabel("t (ms)")
                self.ax_iv.set_ylabel("E (V)")
        else:
            self.ax_t.text(
                0.5, 0.5, "no trace", ha="center", va="center", transform=self.ax_t.transAxes
            )
        self.ax_t.set_xlabel("t (ms)")
        self.ax_t.set_ylabel("I (nA)")
        self._volt = None
        if facts["n_samples"]:
            self._show_voltammogram(store, facts, e, cur)
        self.canvas.draw_idle()
        facts.update(self._plot_approach(store, i, facts["contact_z_um"]))
        return facts

    # ------------------------------------------------------ approach curve
    def _build_approach_plot(self) -> None:
        """The approach curve i(z) of the clicked landing, in its own canvas
        (the plots' second tab)."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.approach_figure = Figure(figsize=(4, 2.2), tight_layout=True)
        self.approach_canvas = FigureCanvasQTAgg(self.approach_figure)
        self.ax_ap = self.approach_figure.add_subplot(111)

    def _plot_approach(self, store: Any, i: int, contact_z: float) -> dict[str, Any]:
        """Plot point ``i``'s approach curve; its facts (samples, manual contact)."""
        from matplotlib.ticker import EngFormatter

        ax = self.ax_ap
        ax.clear()
        curve = store.approach_curve(i)
        out: dict[str, Any] = {"approach_samples": 0, "manual_contact": False}
        if curve is None or not curve["z_um"].size:
            why = (
                "no approach curves in this store (written before they were recorded)"
                if curve is None
                else "no approach curve recorded for this point"
            )
            ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, wrap=True)
            ax.set_axis_off()
        else:
            z, cur = curve["z_um"], curve["current_A"]
            out = {"approach_samples": int(z.size), "manual_contact": curve["manual"]}
            ax.set_axis_on()
            ax.plot(z, cur, lw=1)
            if math.isfinite(contact_z):
                label = "contact (by hand)" if curve["manual"] else "contact"
                ax.axvline(contact_z, color="orange", lw=1, ls="--", label=label)
                ax.legend(loc="best", fontsize="small")
            ax.invert_xaxis()  # the pipette comes down: time runs to the right
            ax.yaxis.set_major_formatter(EngFormatter(unit="A"))
            ax.set_xlabel("Z (um)")
            ax.set_ylabel("I")
            ax.set_title("approach i(z)", fontsize="small")
        self.approach_canvas.draw_idle()
        return out

    # ---------------------------------------------------------- voltammetry
    def _voltammetric_layer(self, store_path: str) -> Any:
        """The store's layer browsed by potential, if it is open."""
        want = str(Path(store_path).resolve())
        for layer in self.viewer.layers:
            meta = layer.metadata.get("seccm") if hasattr(layer, "metadata") else None
            if meta and meta.get("kind") == "voltammetric" and meta.get("store") == want:
                return layer
        return None

    def slider_position(self, layer: Any) -> tuple[int, int]:
        """(segment, potential step) of the viewer's sliders in ``layer``."""
        idx = layer.world_to_data(self.viewer.dims.point)
        n_seg, n_e = layer.data.shape[:2]
        seg = min(max(int(round(idx[0])), 0), n_seg - 1)
        step = min(max(int(round(idx[1])), 0), n_e - 1)
        return seg, step

    def _show_voltammogram(
        self, store: Any, facts: dict[str, Any], e: np.ndarray, cur: np.ndarray
    ) -> None:
        """The point's I-E curve, for a store whose program sweeps, with the
        slider's segment highlighted and its potential marked."""
        from ..analysis.voltammetry import VoltammetryTable

        layer = self._voltammetric_layer(facts["store"])
        if layer is None:
            return
        table = VoltammetryTable.from_store(store)
        self._volt = {"table": table, "layer": layer, "facts": facts, "e": e, "cur": cur}
        self._draw_voltammogram()

    def _draw_voltammogram(self) -> None:
        v = self._volt
        assert v is not None
        table, e, cur = v["table"], v["e"], v["cur"]
        seg, step = self.slider_position(v["layer"])
        sw = table.sweeps[seg]
        E = float(table.grid_V[step])
        ax = self.ax_iv
        ax.clear()
        ax.plot(e, cur * 1e9, color="0.75", lw=0.8, label="whole program")
        for other in table.sweeps:
            if other.cycle == sw.cycle and other.index != seg:
                sl = slice(other.sample_start, other.sample_stop)
                ax.plot(e[sl], cur[sl] * 1e9, color="tab:blue", alpha=0.45, lw=1)
        sl = slice(sw.sample_start, sw.sample_stop)
        ax.plot(e[sl], cur[sl] * 1e9, color="tab:orange", lw=1.6, label=f"segment {seg}")
        v["marker"] = ax.axvline(E, color="tab:red", lw=1, ls="--")
        (v["dot"],) = ax.plot([], [], "o", color="tab:red", ms=5)
        ax.set_xlabel("E (V)")
        ax.set_ylabel("I (nA)")
        ax.legend(loc="best", fontsize="small")
        v["segment"] = seg
        self._mark(step)

    def _mark(self, step: int) -> None:
        """Move the marker to grid step ``step`` of the shown segment."""
        v = self._volt
        assert v is not None
        table, facts, cur = v["table"], v["facts"], v["cur"]
        seg = v["segment"]
        sw = table.sweeps[seg]
        E = float(table.grid_V[step])
        v["marker"].set_xdata([E, E])
        cw = table.grid_weights(seg, step)
        i_at = float(cur[cw[0]].astype(np.float64) @ cw[1]) if cw is not None else math.nan
        v["dot"].set_data([E] if cw else [], [i_at * 1e9] if cw else [])
        where = sw.short()
        reach = "" if cw is not None else f" (not reached: {sw.lo_V:g} to {sw.hi_V:g} V)"
        self.ax_iv.set_title(f"E = {E:.3f} V, {where}{reach}", fontsize="small")
        facts.update(segment=seg, cycle=sw.cycle, potential_V=E, current_at_potential_A=i_at)
        overlay = _text_overlay(self.viewer)
        overlay.text = f"E = {E:.3f} V   {where}{reach}"
        overlay.visible = True

    def _follow_slider(self, *_: Any) -> None:
        v = self._volt
        if v is None or v["layer"] not in self.viewer.layers:
            return
        try:
            seg, step = self.slider_position(v["layer"])
            if seg != v["segment"]:
                self._draw_voltammogram()
            else:
                self._mark(step)
            self.canvas.draw_idle()
        except Exception as e:  # said here, not lost in the event loop
            log.exception("following the potential slider failed")
            self.info.setText(f"could not follow the slider: {e}")
