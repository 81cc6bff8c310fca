"""Scan widget: edit the plan, take the area from a drawn shape, run the scan.

The scan runs on the core's MDA runner in a background thread; this widget
only polls its progress on a timer and never waits on hardware.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .._format import format_duration
from ..acquisition.plan import (
    Chronoamperometry,
    CyclicVoltammetry,
    LinearSweep,
    PolygonArea,
    RectangleArea,
    ScanPlan,
    Staircase,
)
from ._estop import EmergencyStopBar
from ._qt import (
    fill_ranges,
    group,
    guarded,
    readout_label,
    says_failures,
    scroll_layout,
    spin,
    status_label,
)
from ._session import get_session

if TYPE_CHECKING:
    import napari

    from ..acquisition.scan import Scan


def _fmt_s(s: float) -> str:
    return format_duration(s)


def default_output_path() -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / "seccm-scans" / f"scan-{stamp}.seccm.zarr"


class ScanWidget(QWidget):
    """Plan and run a hopping scan; watch the maps fill in."""

    #: a potentiostat setting shown here changed (queued to the GUI thread)
    _shown_changed = Signal(str, str, object)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self.base_plan = ScanPlan()
        self.scan: Scan | None = None
        self.live: Any = None  # the LiveScanLayers of the running scan
        self._starting = False
        self._polygon: list[tuple[float, float]] | None = None
        self._t_start = 0.0
        #: time spent paused (not counted as elapsed), and since when paused
        self._paused_s = 0.0
        self._paused_at: float | None = None
        self._done_start = 0

        p = self.base_plan
        area = p.area
        assert isinstance(area, RectangleArea)
        # -- area
        self.cx = spin(area.center_x_um, -1e4, 1e4, step=1.0, suffix="um")
        self.cy = spin(area.center_y_um, -1e4, 1e4, step=1.0, suffix="um")
        self.w = spin(area.width_um, 0.01, 1e4, step=1.0, suffix="um")
        self.h = spin(area.height_um, 0.01, 1e4, step=1.0, suffix="um")
        self.pitch = spin(p.pitch_um, 0.01, 100.0, step=0.05, suffix="um")
        self.order = QComboBox()
        self.order.addItems(["serpentine", "raster", "shuffled"])
        from_shape = QPushButton("Area from selected shape")
        from_shape.setToolTip(
            "rectangle or polygon drawn on a Shapes layer (stage coordinates, um)"
        )
        from_shape.clicked.connect(guarded(self, "the area from a shape", self.area_from_shapes))
        self.area_label = QLabel("rectangle")
        af = QFormLayout()
        af.addRow("centre x", self.cx)
        af.addRow("centre y", self.cy)
        af.addRow("width", self.w)
        af.addRow("height", self.h)
        af.addRow("pitch", self.pitch)
        af.addRow("order", self.order)
        af.addRow(from_shape, self.area_label)
        area_box = group("Area", layout=af)

        # -- measurement
        self.kind = QComboBox()
        for label, key in (
            ("Chronoamperometry (hold E)", "ca"),
            ("Linear sweep", "lsv"),
            ("Cyclic voltammetry", "cv"),
            ("I-V staircase", "staircase"),
        ):
            self.kind.addItem(label, key)
        self.e_hold = spin(1.0, -5.0, 5.0, step=0.1, suffix="V")
        self.duration = spin(0.02, 0.0002, 100.0, step=0.01, decimals=4, suffix="s")
        self.e_start = spin(0.0, -5.0, 5.0, step=0.1, suffix="V")
        self.e_end = spin(1.0, -5.0, 5.0, step=0.1, suffix="V")
        self.rate = spin(2.0, 0.001, 1000.0, step=0.5, suffix="V/s")
        self.steps = spin(11, 2, 10000, step=1, decimals=0, suffix="steps")
        self.step_hold = spin(0.01, 0.0002, 100.0, step=0.01, decimals=4, suffix="s")
        mf = QFormLayout()
        mf.addRow("program", self.kind)
        mf.addRow("E (hold)", self.e_hold)
        mf.addRow("duration", self.duration)
        mf.addRow("E start", self.e_start)
        mf.addRow("E end / vertex", self.e_end)
        mf.addRow("scan rate", self.rate)
        mf.addRow("staircase", self.steps)
        mf.addRow("step hold", self.step_hold)
        meas_box = group("Measurement at each landing", layout=mf)

        # -- potentiostat: part of the plan (the scan sets them), shown, and
        # following what the Rig (or anything else) sets on the instrument
        pst = p.potentiostat
        self.range_combo = QComboBox()
        self.range_combo.setToolTip(
            "full-scale current range the scan sets on the potentiostat (the instrument's "
            "ranges; follows the Rig until edited here)"
        )
        self._set_ranges([pst.current_range_A], pst.current_range_A)
        self.filter_spin = spin(pst.filter_Hz, 1.0, 50_000.0, step=100.0, decimals=1, suffix="Hz")
        self.srate_spin = spin(
            pst.sample_rate_Hz, 100.0, 100_000.0, step=500.0, decimals=0, suffix="Hz"
        )
        pf = QFormLayout()
        pf.addRow("current range", self.range_combo)
        pf.addRow("filter", self.filter_spin)
        pf.addRow("sample rate", self.srate_spin)
        pst_box = group("Potentiostat (set by the scan)", layout=pf)

        # -- approach
        self.slow = spin(p.approach.slow_speed_um_per_s, 0.01, 20.0, step=0.1, suffix="um/s")
        self.threshold = spin(
            p.approach.threshold_A * 1e12, 0.01, 1e6, step=0.5, decimals=2, suffix="pA"
        )
        self.retract = spin(p.retract_um, 0.1, 100.0, step=0.5, suffix="um")
        self.e_approach = spin(p.approach.potential_V, -5.0, 5.0, step=0.1, suffix="V")
        apf = QFormLayout()
        apf.addRow("approach E", self.e_approach)
        apf.addRow("slow speed", self.slow)
        apf.addRow("threshold", self.threshold)
        apf.addRow("retract", self.retract)
        app_box = group("Approach", layout=apf)

        # -- output and plan files
        self.out_edit = QLineEdit(str(default_output_path()))
        browse = QPushButton("…")
        browse.clicked.connect(guarded(self, "browsing", self._browse_out))
        orow = QHBoxLayout()
        orow.addWidget(self.out_edit)
        orow.addWidget(browse)
        load_plan = QPushButton("Load plan…")
        load_plan.clicked.connect(guarded(self, "loading the plan", self._load_plan))
        save_plan = QPushButton("Save plan…")
        save_plan.clicked.connect(guarded(self, "saving the plan", self._save_plan))
        prow = QHBoxLayout()
        prow.addWidget(load_plan)
        prow.addWidget(save_plan)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)  # long estimates must not widen the dock
        out_box = group("Output", layout=QVBoxLayout())
        out_box.layout().addLayout(orow)
        out_box.layout().addLayout(prow)
        out_box.layout().addWidget(self.estimate_label)

        # -- run controls
        self.start_btn = QPushButton("Start")
        self.start_btn.clicked.connect(guarded(self, "starting the scan", self.start))
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setCheckable(True)
        self.pause_btn.toggled.connect(
            guarded(self, "pausing", lambda: self.set_paused(self.pause_btn.isChecked()))
        )
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.clicked.connect(guarded(self, "stopping the scan", self.stop))
        crow = QHBoxLayout()
        for b in (self.start_btn, self.pause_btn, self.stop_btn):
            crow.addWidget(b)
        self.continue_btn = QPushButton("Continue a scan…")
        self.continue_btn.setToolTip(
            "measure the remaining points of an interrupted or stopped scan store"
        )
        self.continue_btn.clicked.connect(guarded(self, "continuing a scan", self._continue_dialog))
        crow.addWidget(self.continue_btn)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m points")
        self.time_label = readout_label("")
        self.status = status_label()
        run_box = group("Run", layout=QVBoxLayout())
        run_box.layout().addLayout(crow)
        run_box.layout().addWidget(self.progress)
        run_box.layout().addWidget(self.time_label)

        # the run controls, progress and messages stay in view (not scrolled)
        self.estop = EmergencyStopBar(napari_viewer)
        # the live traces head the scrolling body: the footer stays short, so
        # the run controls, status and emergency stop fit a 1280 x 800 screen
        self.live_traces = LiveTracePanel(self)
        lay = scroll_layout(self, footer=(run_box, self.status, self.estop))
        for wdg in (self.live_traces, area_box, meas_box, pst_box, app_box, out_box):
            lay.addWidget(wdg)
        lay.addStretch()

        for s in (
            self.cx,
            self.cy,
            self.w,
            self.h,
            self.pitch,
            self.e_hold,
            self.duration,
            self.e_start,
            self.e_end,
            self.rate,
            self.steps,
            self.step_hold,
            self.slow,
            self.threshold,
            self.retract,
            self.e_approach,
            self.filter_spin,
            self.srate_spin,
        ):
            s.valueChanged.connect(self._on_edit)
        for c in (self.order, self.kind, self.range_combo):
            c.currentIndexChanged.connect(self._on_edit)
        self._pst_events: Any = None
        self._shown_changed.connect(self._on_property)
        self.session.coreChanged.connect(self._follow_potentiostat)
        self.session.thresholdSuggested.connect(self._take_threshold)
        if self.session.core is not None:
            self._follow_potentiostat(self.session.core)
        for s in (self.cx, self.cy, self.w, self.h):
            s.valueChanged.connect(self._forget_polygon)
        self._timer = QTimer(self)
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._poll)
        self._set_running(False)
        self._on_edit()

    # -------------------------------------------------------- potentiostat
    def _ranges(self) -> list[float]:
        return [float(self.range_combo.itemData(i)) for i in range(self.range_combo.count())]

    def _set_ranges(self, ranges: list[float], current: float) -> None:
        fill_ranges(self.range_combo, ranges, current)

    def _follow_potentiostat(self, core: Any) -> None:
        """Take the instrument's ranges and present settings (a config loaded,
        the Rig changing the range): the plan shows what the scan will set."""
        ps = self.base_plan.potentiostat.label
        with contextlib.suppress(Exception):
            if ps not in core.getLoadedDevices():
                return
            ranges = [
                float(v)
                for v in str(core.getProperty(ps, "CurrentRanges_A")).split(",")
                if v.strip()
            ]
            cur = float(core.getProperty(ps, "CurrentRange_A"))
            self._set_ranges(ranges, cur)
            self.filter_spin.setValue(float(core.getProperty(ps, "Filter_Hz")))
            self.srate_spin.setValue(float(core.getProperty(ps, "SampleRate_Hz")))
            self._on_edit()
        if self._pst_events is not core.events:
            old, self._pst_events = self._pst_events, core.events
            if old is not None:
                with contextlib.suppress(TypeError, RuntimeError, ValueError):
                    old.propertyChanged.disconnect(self._filter_property)
            # filtered in the emitting thread (a scan announces several sets per
            # landing): only the settings shown here reach the GUI thread
            from qtpy.QtCore import QObject, Qt

            direct = (
                (Qt.ConnectionType.DirectConnection,) if isinstance(core.events, QObject) else ()
            )
            core.events.propertyChanged.connect(self._filter_property, *direct)

    def _filter_property(self, dev: str, prop: str, value: Any) -> None:
        """(Any thread.) Pass the potentiostat settings shown here to the GUI thread."""
        if dev == self.base_plan.potentiostat.label and prop in (
            "CurrentRange_A",
            "Filter_Hz",
            "SampleRate_Hz",
        ):
            self._shown_changed.emit(dev, prop, value)

    def _on_property(self, dev: str, prop: str, value: Any) -> None:
        if dev != self.base_plan.potentiostat.label or self._running():
            return
        with contextlib.suppress(ValueError, TypeError):
            if prop == "CurrentRange_A":
                self._set_ranges(self._ranges(), float(value))
            elif prop == "Filter_Hz":
                self.filter_spin.setValue(float(value))
            elif prop == "SampleRate_Hz":
                self.srate_spin.setValue(float(value))
            else:
                return
            self._on_edit()

    # ----------------------------------------------------------------- plan
    def _forget_polygon(self) -> None:
        """Editing the rectangle fields replaces a polygon area by the rectangle."""
        if self._polygon is not None and self.sender() is not None:
            self._polygon = None
            self.area_label.setText("rectangle")
            self._on_edit()

    def plan(self) -> ScanPlan:
        """The plan as the form shows it (raises ValueError if invalid)."""
        kind = self.kind.currentData()
        if kind == "ca":
            meas: Any = Chronoamperometry(
                potential_V=self.e_hold.value(), duration_s=self.duration.value()
            )
        elif kind == "lsv":
            meas = LinearSweep(
                start_V=self.e_start.value(),
                end_V=self.e_end.value(),
                scan_rate_V_per_s=self.rate.value(),
            )
        elif kind == "cv":
            meas = CyclicVoltammetry(
                start_V=self.e_start.value(),
                vertex_V=self.e_end.value(),
                scan_rate_V_per_s=self.rate.value(),
            )
        else:
            meas = Staircase(
                start_V=self.e_start.value(),
                end_V=self.e_end.value(),
                steps=int(self.steps.value()),
                hold_s=self.step_hold.value(),
            )
        area: Any
        if self._polygon is not None:
            area = PolygonArea(vertices_um=self._polygon)
        else:
            area = RectangleArea(
                center_x_um=self.cx.value(),
                center_y_um=self.cy.value(),
                width_um=self.w.value(),
                height_um=self.h.value(),
            )
        base = self.base_plan
        data = base.model_dump()
        data.update(
            area=area.model_dump(),
            pitch_um=self.pitch.value(),
            order=self.order.currentText(),
            measurement=meas.model_dump(),
            retract_um=self.retract.value(),
        )
        data["potentiostat"].update(
            current_range_A=float(self.range_combo.currentData()),
            filter_Hz=self.filter_spin.value(),
            sample_rate_Hz=self.srate_spin.value(),
        )
        data["approach"].update(
            slow_speed_um_per_s=self.slow.value(),
            threshold_A=self.threshold.value() * 1e-12,
            potential_V=self.e_approach.value(),
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = ScanPlan.model_validate(data)
        self._warnings = [str(w.message) for w in caught]
        return plan

    def _on_edit(self, *_: Any) -> None:
        kind = self.kind.currentData()
        for w, kinds in (
            (self.e_hold, "ca"),
            (self.duration, "ca"),
            (self.e_start, "lsv cv staircase"),
            (self.e_end, "lsv cv staircase"),
            (self.rate, "lsv cv"),
            (self.steps, "staircase"),
            (self.step_hold, "staircase"),
        ):
            w.setEnabled(kind in kinds.split())
        try:
            plan = self.plan()
        except Exception as e:
            self.estimate_label.setText("")
            self._say(_short_error(e), error=True)
            if not self._running():
                self.start_btn.setEnabled(False)
            return
        n = plan.n_points()
        g = plan.grid()
        self.estimate_label.setText(
            f"{n} points ({g.ny} x {g.nx} px map), {plan.samples_per_point()} samples each; "
            f"estimated instrument time {_fmt_s(plan.estimate_time_s())}"
        )
        self._say("; ".join(self._warnings) if self._warnings else "", error=bool(self._warnings))
        if not self._running():
            self.start_btn.setEnabled(True)

    def _take_threshold(self, threshold_A: float) -> None:
        """The Rig's preflight chose the approach threshold: the plan takes it
        (the next scan's; a running scan keeps its own)."""
        if self._running():
            self._say(
                f"the preflight's threshold {threshold_A * 1e12:.3g} pA applies to the next "
                "scan; this one keeps its own",
            )
        self.threshold.setValue(threshold_A * 1e12)

    def set_plan(self, plan: ScanPlan) -> None:
        """Show a plan in the form (rectangle areas; polygons keep their vertices)."""
        self.base_plan = plan
        widgets = [self.cx, self.cy, self.w, self.h, self.pitch, self.order, self.kind]
        for w in widgets:
            w.blockSignals(True)
        a = plan.area
        if isinstance(a, PolygonArea):
            self._polygon = [tuple(v) for v in a.vertices_um]
            self.area_label.setText(f"polygon, {len(a.vertices_um)} vertices")
        else:
            self._polygon = None
            x0, x1, y0, y1 = a.bounds()
            self.cx.setValue((x0 + x1) / 2)
            self.cy.setValue((y0 + y1) / 2)
            self.w.setValue(x1 - x0)
            self.h.setValue(y1 - y0)
            self.area_label.setText("rectangle")
        self.pitch.setValue(plan.pitch_um)
        self.order.setCurrentText(plan.order)
        m = plan.measurement
        self.kind.setCurrentIndex(self.kind.findData(m.kind))
        for w in widgets:
            w.blockSignals(False)
        if isinstance(m, Chronoamperometry):
            self.e_hold.setValue(m.potential_V)
            self.duration.setValue(m.duration_s)
        elif isinstance(m, (LinearSweep, Staircase)):
            self.e_start.setValue(m.start_V)
            self.e_end.setValue(m.end_V)
        elif isinstance(m, CyclicVoltammetry):
            self.e_start.setValue(m.start_V)
            self.e_end.setValue(m.vertex_V)
        if isinstance(m, (LinearSweep, CyclicVoltammetry)):
            self.rate.setValue(m.scan_rate_V_per_s)
        if isinstance(m, Staircase):
            self.steps.setValue(m.steps)
            self.step_hold.setValue(m.hold_s)
        pst = plan.potentiostat
        self._set_ranges(self._ranges(), pst.current_range_A)
        self.filter_spin.setValue(pst.filter_Hz)
        self.srate_spin.setValue(pst.sample_rate_Hz)
        self.slow.setValue(plan.approach.slow_speed_um_per_s)
        self.threshold.setValue(plan.approach.threshold_A * 1e12)
        self.retract.setValue(plan.retract_um)
        self.e_approach.setValue(plan.approach.potential_V)
        self._on_edit()

    def area_from_shapes(self) -> None:
        """Use the selected (or last) rectangle/polygon of the active Shapes layer."""
        from napari.layers import Shapes

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Shapes):
            layer = next(
                (lay for lay in reversed(self.viewer.layers) if isinstance(lay, Shapes)), None
            )
        if layer is None or len(layer.data) == 0:
            self._say("draw a rectangle or polygon on a Shapes layer first", error=True)
            return
        idx = sorted(layer.selected_data)[-1] if layer.selected_data else len(layer.data) - 1
        verts = np.asarray(layer.data[idx])[:, -2:]
        world = np.array([layer.data_to_world(v) for v in verts])[:, -2:]  # (y, x)
        xy = world[:, ::-1]
        stype = layer.shape_type[idx]
        if stype == "rectangle":
            self._polygon = None
            x0, y0 = xy.min(0)
            x1, y1 = xy.max(0)
            for w, v in (
                (self.cx, (x0 + x1) / 2),
                (self.cy, (y0 + y1) / 2),
                (self.w, x1 - x0),
                (self.h, y1 - y0),
            ):
                w.blockSignals(True)
                w.setValue(float(v))
                w.blockSignals(False)
            self.area_label.setText(f"rectangle from '{layer.name}'")
        elif stype == "polygon":
            self._polygon = [(float(x), float(y)) for x, y in xy]
            self.area_label.setText(f"polygon from '{layer.name}', {len(xy)} vertices")
        else:
            self._say(f"a {stype} cannot be a scan area: draw a rectangle or polygon", error=True)
            return
        self._on_edit()

    def _browse_out(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Scan store", self.out_edit.text(), "SECCM store (*.seccm.zarr)"
        )
        if path:
            if not path.endswith(".seccm.zarr"):
                path += ".seccm.zarr"
            self.out_edit.setText(path)

    def _load_plan(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Plan", str(Path.home()), "Plan (*.yaml *.yml *.json)"
        )
        if path:
            try:
                self.set_plan(ScanPlan.load(path))
            except Exception as e:
                self._say(f"could not load {path}: {_short_error(e)}", error=True)

    def _save_plan(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Plan", str(Path.home() / "plan.yaml"), "Plan (*.yaml *.json)"
        )
        if path:
            try:
                self.plan().save(path)
                self._say(f"saved {path}")
            except Exception as e:
                self._say(f"could not save: {_short_error(e)}", error=True)

    # ------------------------------------------------------------------ run
    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e06c6c;" if error else "")

    def _running(self) -> bool:
        return self.scan is not None and self.scan.is_running()

    def _set_running(self, running: bool) -> None:
        self.start_btn.setEnabled(not running)
        self.continue_btn.setEnabled(not running)
        self.pause_btn.setEnabled(running)
        self.stop_btn.setEnabled(running)
        if not running:
            self.pause_btn.blockSignals(True)
            self.pause_btn.setChecked(False)
            self.pause_btn.setText("Pause")
            self.pause_btn.blockSignals(False)

    def start(self) -> None:
        """Check the plan against the rig, then create the store and start the
        scan; the store (rig snapshot, zarr arrays) is made on a worker thread."""
        from ..acquisition.plan import check_plan_against_core
        from ..acquisition.scan import Scan
        from ..acquisition.store import ScanStore
        from ._qt import run_in_thread

        if self._running() or self._starting:
            return
        try:
            plan = self.plan()
            core = self.session.ensure_core()
            out = Path(self.out_edit.text()).expanduser()
            out.parent.mkdir(parents=True, exist_ok=True)
            # bad input is refused at once, before anything is written or moved
            check_plan_against_core(plan, core)
            ScanStore.check_creatable(out)
        except Exception as e:
            self._say(f"not started: {_short_error(e)}", error=True)
            return
        self._starting = True
        self.start_btn.setEnabled(False)
        self._simulated = _simulated_note(core)
        self._say(f"preparing {out.name}{self._simulated}…")

        def failed(e: BaseException) -> None:
            self._say(f"not started: {_short_error(e)}", error=True)
            self._set_running(False)

        def finished() -> None:
            self._starting = False

        self._start_worker = run_in_thread(
            lambda: Scan.create(core, plan, out), self._begin, failed, finished
        )

    def _continue_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(
            self, "Scan store to continue (*.seccm.zarr)", str(default_output_path().parent)
        )
        if path:
            self.continue_scan(path)

    def continue_scan(self, path: str | Path) -> None:
        """Reopen an interrupted or stopped store and measure its remaining points."""
        from ..acquisition.scan import Scan
        from ._qt import run_in_thread

        if self._running() or self._starting:
            return
        try:
            core = self.session.ensure_core()
        except Exception as e:
            self._say(f"not continued: {_short_error(e)}", error=True)
            return
        self._simulated = _simulated_note(core)
        self._starting = True
        self.start_btn.setEnabled(False)
        self._say(f"reopening {Path(path).name}…")

        def failed(e: BaseException) -> None:
            self._say(f"not continued: {_short_error(e)}", error=True)
            self._set_running(False)

        def finished() -> None:
            self._starting = False

        self._start_worker = run_in_thread(
            lambda: Scan.resume(core, path), self._begin, failed, finished
        )

    def _begin(self, scan: Scan) -> None:
        """The store exists: show its layers and run (main thread)."""
        from ._live import LiveScanLayers

        out = scan.store.path
        self.scan = scan
        self.session.scan = scan
        self.progress.setRange(0, scan.n_total)
        self.progress.setValue(scan.points_done)
        self._t_start = time.monotonic()
        self._paused_s, self._paused_at = 0.0, None
        self._done_start = scan.points_done
        self.live = LiveScanLayers(self.viewer, scan)
        self.session.live = self.live
        scan.start()
        self.session.scanStarted.emit(scan)
        self._set_running(True)
        self._say(f"scanning into {out}{getattr(self, '_simulated', '')}")
        self._timer.start()
        self.live_traces.follow(scan)

    def set_paused(self, paused: bool) -> None:
        if self.scan is None or not self._running():
            return
        self.scan.set_paused(paused)
        now = time.monotonic()
        if paused and self._paused_at is None:
            self._paused_at = now
        elif not paused and self._paused_at is not None:
            self._paused_s += now - self._paused_at
            self._paused_at = None
        self.pause_btn.setText("Resume" if paused else "Pause")
        self._say(
            "paused after the point in progress (pipette retracted)" if paused else "scanning"
        )

    def stop(self) -> None:
        if self.scan is not None and self._running():
            self.scan.cancel()
            self._say("stopping after the point in progress (retract, cell off, flush)…")

    @says_failures("showing the progress")
    def _poll(self) -> None:
        scan = self.scan
        if scan is None:
            return
        done = scan.points_done
        self.progress.setValue(done)
        now = time.monotonic()
        paused = self._paused_s + (now - self._paused_at if self._paused_at is not None else 0.0)
        dt = now - self._t_start - paused  # scanning time: a pause does not count
        rate = (done - self._done_start) / dt if dt > 0 else 0.0
        left = (scan.n_total - done) / rate if rate > 0 else float("nan")
        self.time_label.setText(
            f"elapsed {_fmt_s(dt)}, time left {_fmt_s(left)}"
            + (f" (paused {_fmt_s(now - self._paused_at)})" if self._paused_at is not None else "")
        )
        if not scan.is_running() and scan.final_status is not None:
            self._timer.stop()
            self.time_label.setText(f"{done} of {scan.n_total} points, took {_fmt_s(dt)}")
            if self.live is not None:
                # the layers show the whole store before the status says so
                self.live.stop()
            self._set_running(False)
            reason = scan.store.meta.get("reason", "")
            self._say(
                f"scan {scan.final_status}" + (f": {reason}" if reason else ""),
                error=scan.final_status in ("error", "fault"),
            )
            self.session.scanFinished.emit(scan.final_status)
            self.out_edit.setText(str(default_output_path()))


# ------------------------------------------------------------ live traces
class LiveTracePanel(QWidget):
    """The current and Z of the hop in progress, scrolling: the last
    ``window_s`` seconds of instrument time, polled at 5 Hz from the
    engine's ring buffer (:class:`napari_seccm.acquisition.live.LiveTrace`)
    and decimated to the plot's width in pixels (min/max per pixel, so spikes
    stay). The GUI thread only copies the buffer; it never waits on hardware.
    Folds away (like the Inspector's plots) so that the status, Stop and the
    emergency stop keep their room on a small screen. ``Accept contact``
    takes where the pipette is as the contact of the approach in progress."""

    def __init__(self, owner: ScanWidget, window_s: float = 5.0, interval_ms: int = 200) -> None:
        super().__init__()
        from ._stripchart import StripChart

        self.owner = owner
        self.window_s = window_s
        self.scan: Scan | None = None
        self._seen = -1
        self.redraws = 0
        self.fold = QCheckBox("Live traces (current, Z)")
        self.fold.setChecked(True)
        self.fold.toggled.connect(self.set_shown)
        self.accept_btn = QPushButton("Accept contact")
        self.accept_btn.setToolTip(
            "during an approach: stop and take where the pipette is as the contact "
            "(refused when no approach is in progress)"
        )
        self.accept_btn.clicked.connect(guarded(owner, "accepting the contact", self.accept))
        self.accept_btn.setEnabled(False)
        top = QHBoxLayout()
        top.addWidget(self.fold, 1)
        top.addWidget(self.accept_btn)
        self.canvas = StripChart(
            (("current", "A", "#1f77b4"), ("Z", "um", "#ff7f0e")), window_s=window_s
        )
        self.line_i, self.line_z = self.canvas.channels
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.canvas)
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.refresh)

    def set_shown(self, shown: bool) -> None:
        """Show the plot, or fold it away (nothing is drawn while folded)."""
        self.canvas.setVisible(shown)
        self.fold.blockSignals(True)
        self.fold.setChecked(shown)
        self.fold.blockSignals(False)
        if shown:
            self._seen = -1
            self.refresh()

    def follow(self, scan: Scan) -> None:
        """Plot this scan's hops until it ends."""
        self.scan = scan
        self._seen = -1
        self.accept_btn.setEnabled(True)
        self.timer.start()

    def accept(self) -> None:
        from ..acquisition.control import accept_contact

        scan = self.scan
        core = self.owner.session.core
        if scan is None or not scan.is_running() or core is None or scan.engine is None:
            self.owner._say("accepting a contact is refused: no scan is running", error=True)
            return
        accept_contact(core, scan.engine.probe.z_dev)
        self.owner._say("contact accepted by hand: the point is recorded as a manual contact")

    def refresh(self) -> None:
        scan = self.scan
        if scan is None or scan.engine is None:
            return
        running = scan.is_running() or scan.final_status is None
        if not running:
            self.timer.stop()
            self.accept_btn.setEnabled(False)
        live = scan.engine.live
        if not self.canvas.isVisible() or live.version == self._seen:
            return
        self._seen = live.version
        self.draw(live.latest(self.window_s))

    def draw(self, rows: np.ndarray) -> None:
        """Draw rows [t_s, z_um, I_A], decimated to the canvas' width in pixels."""
        from ..acquisition.live import decimate_minmax

        px = self.canvas.plot_width_px()
        t, z, i = rows
        self.canvas.set_channel(0, *decimate_minmax(t, i, px))
        self.canvas.set_channel(1, *decimate_minmax(t, z, px))
        self.canvas.show_until(float(t[-1]) if t.size else float("nan"))
        self.redraws += 1


def _short_error(e: BaseException) -> str:
    from ..acquisition.plan import validation_lines

    return "; ".join(validation_lines(e))


def _simulated_note(core: Any) -> str:
    """' on the SIMULATED instrument (...)' when the core's devices say they
    are a simulation (the store records it too), else ''."""
    from ..acquisition.control import simulated_devices

    try:
        sim = simulated_devices(core)
    except Exception:
        return ""
    if not sim:
        return ""
    return f" on the SIMULATED instrument ({', '.join(sim)}: no sample is measured)"
