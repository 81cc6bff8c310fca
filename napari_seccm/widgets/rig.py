"""Rig widget: load a config, move the stages, set the potentiostat, approach
and retract by hand, snap the optical camera into a layer in stage coordinates.

Everything that waits on hardware runs on a worker thread; the GUI thread
only updates labels from the core's (Qt) signals and a slow poll.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..configs import SIMULATED, config_dir
from ._estop import EmergencyStopBar
from ._mm_controls import on_gui_refusal, refusal_text
from ._qt import (
    fill_ranges,
    group,
    guarded,
    readout_label,
    run_in_thread,
    scroll_layout,
    spin,
    status_label,
)
from ._session import get_session

if TYPE_CHECKING:
    from collections.abc import Callable

    import napari
    from pymmcore_plus import CMMCorePlus

CURRENT_RANGES = (
    ("100 pA", 1e-10),
    ("1 nA", 1e-9),
    ("10 nA", 1e-8),
    ("100 nA", 1e-7),
    ("1 uA", 1e-6),
)


#: below this |E| a landing gives no current to detect (V)
MIN_APPROACH_V = 0.05
#: a move that ends farther than this from its target did not reach it (um)
REACHED_UM = 0.01
#: a manual move may take its expected time x this + MOVE_MARGIN_S
MOVE_FACTOR, MOVE_MARGIN_S = 2.0, 5.0


def _pipette_note(core: Any) -> str:
    """'; the pipette is broken' when the focus stage reports its probe's
    health (``ProbeHealth``) and it is not ok, else ''."""
    z = core.getFocusDevice()
    if z and core.hasProperty(z, "ProbeHealth"):
        state = core.getProperty(z, "ProbeHealth")
        if state not in ("ok", "unknown"):
            return f"; the pipette is {state} ({z} ProbeHealth)"
    return ""


def _fmt_current(a: float) -> str:
    if not math.isfinite(a):
        return "—"
    for unit, f in (("nA", 1e-9), ("pA", 1e-12)):
        if abs(a) >= f or unit == "pA":
            return f"{a / f:.3f} {unit}"
    return f"{a:.3g} A"


class RigWidget(QWidget):
    """Control the SECCM rig by hand."""

    #: a potentiostat setting the Rig shows changed (queued to the GUI thread)
    _shown_changed = Signal(str, str, object)

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = get_session(napari_viewer)
        self._busy = False
        #: set by Stop: the waiting job aborts its device
        self._stop_requested = False
        self._workers: list[Any] = []

        # -- config
        self.config_edit = QLineEdit(str(config_dir() / SIMULATED))
        self.config_edit.setToolTip("Micro-Manager config (.cfg); the simulated SECCM by default")
        browse = QPushButton("Browse…")
        browse.clicked.connect(guarded(self, "browsing", self._browse))
        self.load_btn = QPushButton("Load config")
        self.load_btn.clicked.connect(guarded(self, "loading the config", self._load))
        row = QHBoxLayout()
        row.addWidget(self.config_edit)
        row.addWidget(browse)
        row.addWidget(self.load_btn)
        cfg_box = group("Micro-Manager configuration", layout=QVBoxLayout())
        cfg_box.layout().addLayout(row)
        self.devices_label = QLabel("no config loaded")
        self.devices_label.setWordWrap(True)
        cfg_box.layout().addWidget(self.devices_label)

        # -- stage
        self.pos_label = readout_label("X — um   Y — um   Z — um")
        self.x_spin = spin(0.0, -1e4, 1e4, step=1.0, suffix="um", tooltip="target X")
        self.y_spin = spin(0.0, -1e4, 1e4, step=1.0, suffix="um", tooltip="target Y")
        self.z_spin = spin(
            50.0,
            -1e4,
            1e4,
            step=1.0,
            suffix="um",
            tooltip="target Z (larger is farther from the sample)",
        )
        self.step_spin = spin(
            1.0, 0.001, 100.0, step=0.1, suffix="um", tooltip="step of the arrow buttons"
        )
        move_xy = QPushButton("Move XY")
        move_xy.clicked.connect(
            guarded(
                self, "the XY move", lambda: self._move_xy(self.x_spin.value(), self.y_spin.value())
            )
        )
        move_z = QPushButton("Move Z")
        move_z.clicked.connect(
            guarded(self, "the Z move", lambda: self._move_z(self.z_spin.value()))
        )
        grid = QGridLayout()
        grid.addWidget(self.pos_label, 0, 0, 1, 4)
        grid.addWidget(QLabel("X"), 1, 0)
        grid.addWidget(self.x_spin, 1, 1)
        grid.addWidget(QLabel("Y"), 1, 2)
        grid.addWidget(self.y_spin, 1, 3)
        grid.addWidget(move_xy, 2, 3)
        grid.addWidget(QLabel("Z"), 3, 0)
        grid.addWidget(self.z_spin, 3, 1)
        grid.addWidget(move_z, 3, 3)
        # text arrows (no icon downloads: instrument PCs are often offline)
        arrows = QHBoxLayout()
        for text, dx, dy in (("← x", -1, 0), ("x →", 1, 0), ("↑ y", 0, -1), ("y ↓", 0, 1)):
            b = QPushButton(text)
            b.clicked.connect(
                guarded(self, "the XY step", lambda dx=dx, dy=dy: self._step_xy(dx, dy))
            )
            arrows.addWidget(b)
        grid.addWidget(QLabel("step"), 4, 0)
        grid.addWidget(self.step_spin, 4, 1)
        grid.addLayout(arrows, 5, 0, 1, 4)
        stage_box = group("Stages (stage frame, um)", layout=grid)

        # -- potentiostat
        self.pot_spin = spin(
            1.0, -5.0, 5.0, step=0.1, decimals=3, suffix="V", tooltip="potential vs Li/Li+ QRCE"
        )
        set_pot = QPushButton("Set")
        set_pot.clicked.connect(guarded(self, "setting the potential", self._set_potential))
        self.cell_check = QCheckBox("Cell on")
        self.cell_check.toggled.connect(
            guarded(self, "switching the cell", lambda: self._set_cell(self.cell_check.isChecked()))
        )
        self.range_combo = QComboBox()
        # the instrument's own ranges once a config is loaded
        fill_ranges(self.range_combo, [v for _t, v in CURRENT_RANGES], 1e-8)
        self.range_combo.currentIndexChanged.connect(
            guarded(self, "setting the current range", lambda: self._set_range(0))
        )
        self.current_label = QLabel("I = —")
        read = QPushButton("Read current")
        read.clicked.connect(guarded(self, "reading the current", self._read_current))
        pgrid = QGridLayout()
        pgrid.addWidget(QLabel("Potential"), 0, 0)
        pgrid.addWidget(self.pot_spin, 0, 1)
        pgrid.addWidget(set_pot, 0, 2)
        pgrid.addWidget(self.cell_check, 1, 0)
        pgrid.addWidget(QLabel("Range"), 1, 1)
        pgrid.addWidget(self.range_combo, 1, 2)
        pgrid.addWidget(self.current_label, 2, 0, 1, 2)
        pgrid.addWidget(read, 2, 2)
        pot_box = group("Potentiostat", layout=pgrid)

        # -- approach / retract
        self.speed_spin = spin(
            1.0,
            0.01,
            20.0,
            step=0.1,
            suffix="um/s",
            tooltip="approach speed (above 1 um/s risks a crash)",
        )
        self.depth_spin = spin(
            30.0, 0.1, 100.0, step=1.0, suffix="um", tooltip="give up after descending this far"
        )
        self.thr_spin = spin(
            3.0, 0.01, 1e6, step=0.5, decimals=2, suffix="pA", tooltip="contact threshold"
        )
        self.retract_spin = spin(1.0, 0.1, 100.0, step=0.5, suffix="um", tooltip="lift on retract")
        self.approach_btn = QPushButton("Approach")
        self.approach_btn.clicked.connect(guarded(self, "the approach", self._approach))
        self.retract_btn = QPushButton("Retract")
        self.retract_btn.clicked.connect(guarded(self, "the retract", self._retract))
        # one setting per row: four spin boxes side by side clip their values
        # in a dock of ordinary width
        agrid = QGridLayout()
        for r, (label, box) in enumerate(
            (
                ("speed", self.speed_spin),
                ("max depth", self.depth_spin),
                ("threshold", self.thr_spin),
                ("retract", self.retract_spin),
            )
        ):
            agrid.addWidget(QLabel(label), r, 0)
            agrid.addWidget(box, r, 1, 1, 2)
        agrid.addWidget(self.approach_btn, 4, 0, 1, 2)
        agrid.addWidget(self.retract_btn, 4, 2)
        # enabled while the Rig's approach runs; the Z stage refuses it otherwise
        self.accept_btn = QPushButton("Accept contact")
        self.accept_btn.setToolTip(
            "during a slow approach: stop and take where the pipette is as the contact"
        )
        self.accept_btn.setEnabled(False)
        self.accept_btn.clicked.connect(guarded(self, "accepting the contact", self._accept))
        agrid.addWidget(self.accept_btn, 5, 0, 1, 3)
        # the approach in progress, while it comes down (from a buffer that
        # the approach's job fills; the GUI thread never asks the hardware)
        self.ap_live_label = readout_label("approach: —")
        self.ap_live_label.setToolTip(
            "the current and Z of the approach in progress, as the Z stage records them"
        )
        agrid.addWidget(self.ap_live_label, 6, 0, 1, 3)
        self._ap_live: Any = None  # the LiveTrace of the Rig's approach
        self._ap_seen = -1
        agrid.setColumnStretch(1, 1)
        app_box = group("Approach (cell on, at the set potential)", layout=agrid)

        # -- optical
        self.snap_btn = QPushButton("Snap optical image")
        self.snap_btn.clicked.connect(guarded(self, "the snap", self._snap))
        self.props_btn = QPushButton("Micro-Manager controls…")
        self.props_btn.setToolTip(
            "pymmcore-widgets on this core: every device property, the stages (with "
            "'Set as default'), the configuration groups"
        )
        self.props_btn.clicked.connect(
            guarded(self, "the Micro-Manager controls", self._show_properties)
        )
        orow = QHBoxLayout()
        orow.addWidget(self.snap_btn)
        self.mosaic_spin = spin(
            100.0,
            1.0,
            1000.0,
            step=10.0,
            suffix="um",
            tooltip="side of the square area around the current XY to cover with snaps",
        )
        self.mosaic_btn = QPushButton("Mosaic")
        self.mosaic_btn.setToolTip("snap a grid of optical images over the area and stitch them")
        self.mosaic_btn.clicked.connect(guarded(self, "the mosaic", self._mosaic))
        orow.addWidget(self.props_btn)
        mrow = QHBoxLayout()
        mrow.addWidget(QLabel("mosaic area"))
        mrow.addWidget(self.mosaic_spin)
        mrow.addWidget(self.mosaic_btn)
        opt_box = group("Camera and devices", layout=QVBoxLayout())
        opt_box.layout().addLayout(orow)
        opt_box.layout().addLayout(mrow)

        self.status = status_label()
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setToolTip("abort the move or approach in progress (the stage stops there)")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(guarded(self, "stop", self._stop))
        self.estop = EmergencyStopBar(napari_viewer)
        foot = QWidget()
        frow = QHBoxLayout(foot)
        frow.setContentsMargins(0, 0, 0, 0)
        frow.addWidget(self.status, 1)
        frow.addWidget(self.stop_btn)
        # the status (refusals), Stop and the emergency stop stay in view
        lay = scroll_layout(self, footer=(foot, self.estop))
        for w in (cfg_box, stage_box, pot_box, app_box, self._build_preflight(), opt_box):
            lay.addWidget(w)
        lay.addStretch()

        self._buttons = [
            move_xy,
            move_z,
            set_pot,
            read,
            self.approach_btn,
            self.retract_btn,
            self.snap_btn,
            self.mosaic_btn,
            self.pf_btn,
        ]
        self.session.coreChanged.connect(self._on_core)
        self.session.estopChanged.connect(self._on_estop)
        # positions come from the core's events (which carry them) and are drawn
        # at most 10 times a second: the slot never calls the core, which may
        # hold a device lock while it emits, or be busy with a scan
        self._pos = [math.nan, math.nan, math.nan]
        self._xy = self._focus = ""
        self._pos_dirty = False
        self._core_events: Any = None
        self._refusals_off: Any = None
        self._shown_changed.connect(self._on_property)
        self._redraw = QTimer(self)
        self._redraw.setInterval(100)
        self._redraw.timeout.connect(self._draw_positions)
        self._redraw.start()
        self.destroyed.connect(lambda *_: self._disconnect_core())
        if self.session.core is not None:
            self._on_core(self.session.core)

    # ------------------------------------------------------------- helpers
    @property
    def core(self) -> CMMCorePlus:
        return self.session.ensure_core()

    @property
    def ps(self) -> str:
        return "Potentiostat"

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #e06c6c;" if error else "")

    def _run(self, what: str, func: Any, on_done: Any = None) -> None:
        """Run hardware work off the GUI thread, one job at a time."""
        if self._busy:
            self._say("busy: wait for the current operation to finish", error=True)
            return
        if self.session.scan is not None and self.session.scan.is_running():
            self._say("a scan is running: manual control is locked", error=True)
            return
        self._busy = True
        self._stop_requested = False
        for b in self._buttons:
            b.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self._say(f"{what}…")

        def done(result: Any) -> None:
            if self._estop_latched():
                self._say(f"EMERGENCY STOP latched: {what} ended early", error=True)
                return
            self._say(f"{what}: done" if result is None else f"{what}: {result}")
            if on_done is not None:
                on_done(result)

        def error(exc: BaseException) -> None:
            prefix = "EMERGENCY STOP latched: " if self._estop_latched() else ""
            self._say(f"{prefix}{what} failed: {exc}", error=True)

        def finished() -> None:
            self._busy = False
            self.accept_btn.setEnabled(False)
            for b in self._buttons:
                b.setEnabled(True)
            self.stop_btn.setEnabled(False)
            self._update_positions()

        self._workers.append(run_in_thread(func, done, error, finished))
        self._workers = self._workers[-8:]

    # ---------------------------------------------------------------- config
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Micro-Manager config", str(config_dir()), "Config (*.cfg)"
        )
        if path:
            self.config_edit.setText(path)

    def _load(self) -> None:
        try:
            self.session.load_config(self.config_edit.text())
        except Exception as e:
            self._say(f"could not load {self.config_edit.text()!r}: {e}", error=True)
            return
        self._say(f"loaded {self.session.config_path}")

    def _on_core(self, core: CMMCorePlus) -> None:
        if self.session.config_path:  # also a config loaded elsewhere on this core
            self.config_edit.setText(self.session.config_path)
        devs = [d for d in core.getLoadedDevices() if d != "Core"]
        self.devices_label.setText(
            f"{len(devs)} devices: {', '.join(devs)}\nXY stage: {core.getXYStageDevice() or '—'}, "
            f"focus: {core.getFocusDevice() or '—'}, camera: {core.getCameraDevice() or '—'}"
        )
        self._disconnect_core()
        # direct connections: a scan moves the stages thousands of times; the
        # slots only store the numbers (the timer draws them), so they run in
        # the emitting thread instead of queueing an event per move for the
        # GUI thread
        from qtpy.QtCore import QObject, Qt

        direct = (Qt.ConnectionType.DirectConnection,) if isinstance(core.events, QObject) else ()
        core.events.XYStagePositionChanged.connect(self._on_xy_event, *direct)
        core.events.stagePositionChanged.connect(self._on_z_event, *direct)
        self._core_events = core.events
        self._focus = core.getFocusDevice()
        self._xy = core.getXYStageDevice()
        self._update_positions()
        # every property set of a scan is announced (several per landing):
        # filtered in the emitting thread, only the Rig's own reach the GUI
        core.events.propertyChanged.connect(self._filter_property, *direct)
        # a refusal met by a client without a status line (pymmcore-widgets,
        # napari-micromanager, the console) is said here
        self._refusals_off = on_gui_refusal(
            core, lambda what, why: self._say(refusal_text(what, why), error=True)
        )
        if self.ps in core.getLoadedDevices():
            with contextlib.suppress(RuntimeError, ValueError):
                ranges = str(core.getProperty(self.ps, "CurrentRanges_A")).split(",")
                fill_ranges(
                    self.range_combo,
                    [float(r) for r in ranges if r.strip()],
                    float(core.getProperty(self.ps, "CurrentRange_A")),
                )
                for prop in ("Potential_V", "Cell"):
                    self._on_property(self.ps, prop, core.getProperty(self.ps, prop))

    def _filter_property(self, dev: str, prop: str, value: Any) -> None:
        """(Any thread.) Pass the potentiostat settings the Rig shows to the GUI thread."""
        if dev == self.ps and prop in ("Potential_V", "Cell", "CurrentRange_A"):
            self._shown_changed.emit(dev, prop, value)

    def _on_property(self, dev: str, prop: str, value: Any) -> None:
        """A potentiostat setting changed (here, by a scan, a script, another
        plugin): shown at once, nothing set back."""
        if dev != self.ps:
            return
        with contextlib.suppress(ValueError, TypeError, RuntimeError):
            if prop == "Potential_V":
                self.pot_spin.blockSignals(True)
                self.pot_spin.setValue(float(value))
                self.pot_spin.blockSignals(False)
            elif prop == "Cell":
                self.cell_check.blockSignals(True)
                self.cell_check.setChecked(str(value) == "On")
                self.cell_check.blockSignals(False)
            elif prop == "CurrentRange_A":
                items = [
                    float(self.range_combo.itemData(i)) for i in range(self.range_combo.count())
                ]
                fill_ranges(self.range_combo, items, float(value))

    def _disconnect_core(self) -> None:
        off, self._refusals_off = self._refusals_off, None
        if off is not None:
            off()
        ev, self._core_events = self._core_events, None
        if ev is not None:
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                ev.XYStagePositionChanged.disconnect(self._on_xy_event)
                ev.stagePositionChanged.disconnect(self._on_z_event)
                ev.propertyChanged.disconnect(self._filter_property)

    def _on_xy_event(self, label: str, x: float, y: float) -> None:
        if label == self._xy:
            self._pos[0], self._pos[1] = float(x), float(y)
            self._pos_dirty = True

    def _on_z_event(self, label: str, z: float) -> None:
        if label == self._focus:
            self._pos[2] = float(z)
            self._pos_dirty = True

    def _update_positions(self, *_: Any) -> None:
        """Ask the core for the positions (only when no scan is running)."""
        core = self.session.core
        if core is None or (self.session.scan is not None and self.session.scan.is_running()):
            return
        with contextlib.suppress(RuntimeError, ValueError):
            if core.getXYStageDevice():
                self._pos[0], self._pos[1] = core.getXYPosition()
            if core.getFocusDevice():
                self._pos[2] = core.getPosition()
            self._pos_dirty = True
        self._draw_positions()

    def _draw_positions(self) -> None:
        self._draw_approach()
        if self._pos_dirty:
            self._pos_dirty = False
            x, y, z = self._pos
            self.pos_label.setText(f"X {x:.3f} um   Y {y:.3f} um   Z {z:.3f} um")

    def _draw_approach(self) -> None:
        """The newest sample of the Rig's approach, and the largest current so
        far (kept by the buffer as samples arrive: nothing here scans it)."""
        live = self._ap_live
        if live is None or live.version == self._ap_seen:
            return
        self._ap_seen = live.version
        t, z, i = live.latest(0.0)  # the newest sample(s) only
        if t.size == 0:
            return
        peak = live.peak_current_A
        self.ap_live_label.setText(
            f"approach: I {_fmt_current(float(i[-1]))}   Z {z[-1]:.3f} um   "
            f"t {t[-1]:.2f} s   (peak {_fmt_current(peak)}, {live.version} samples)"
        )

    # ------------------------------------------------------------- actions
    def _estop_latched(self) -> bool:
        try:
            return bool(self.session.latched_devices())
        except Exception:
            return False

    def _on_estop(self, latched: bool) -> None:
        if latched:
            failed = [line for line in self.session.estop_report if "failed" in line]
            self._say(
                "EMERGENCY STOP: latched where it could be, but NOT everything stopped "
                "(below); nothing that latched moves until Reset"
                if failed
                else "EMERGENCY STOP: every motion and waveform halted, cell off; nothing "
                "moves until Reset",
                error=True,
            )
            self.cell_check.blockSignals(True)
            self.cell_check.setChecked(False)
            self.cell_check.blockSignals(False)
        else:
            self._say("emergency stop reset: moves are accepted again")

    def _stop(self) -> None:
        """Abort the manual operation in progress (the waiting job sees it)."""
        self._stop_requested = True
        core = self.session.core
        if core is not None:
            from ..acquisition.control import abort

            for dev in (core.getXYStageDevice(), core.getFocusDevice()):
                if dev:
                    abort(core, dev)

    def _await(
        self, dev: str, what: str, expected_s: float, on_poll: Callable[[], None] | None = None
    ) -> bool:
        """On the job's thread: wait for ``dev``; False if Stop was pressed."""
        from ..acquisition.control import wait_idle

        ok = wait_idle(
            self.core,
            dev,
            expected_s * MOVE_FACTOR + MOVE_MARGIN_S,
            what,
            should_stop=lambda: self._stop_requested,
            on_poll=on_poll,
        )
        if not ok:
            raise RuntimeError("stopped: the stage stopped where it was")
        return ok

    def _speed(self, dev: str, default: float) -> float:
        core = self.core
        if dev and core.hasProperty(dev, "Speed_um_per_s"):
            return float(core.getProperty(dev, "Speed_um_per_s"))
        return default

    def _move_xy(self, x: float, y: float) -> None:
        """Move laterally; the devices refuse a move near the surface
        (their interlocks), and the refusal is shown here."""
        core = self.core

        def move() -> None:
            dev = core.getXYStageDevice()
            x0, y0 = core.getXYPosition()
            core.setXYPosition(x, y)
            self._await(dev, "the move", math.hypot(x - x0, y - y0) / self._speed(dev, 10.0))
            xa, ya = core.getXYPosition()
            if math.hypot(xa - x, ya - y) > REACHED_UM:
                raise RuntimeError(f"XY stopped at ({xa:.3f}, {ya:.3f}) um, short of the target")

        self._run(f"move XY to ({x:g}, {y:g}) um", move)

    def _step_xy(self, dx: int, dy: int) -> None:
        """Step from the last known position (kept from the core's events), so
        the GUI thread never waits on the stage, e.g. while a scan holds it."""
        self.session.ensure_core()
        if self.session.scan is None or not self.session.scan.is_running():
            self._update_positions()
        x, y = self._pos[0], self._pos[1]
        if not (math.isfinite(x) and math.isfinite(y)):
            self._say("the XY position is not known yet", error=True)
            return
        step = self.step_spin.value()
        self._move_xy(x + dx * step, y + dy * step)

    def _move_z(self, z: float) -> None:
        """Move Z; the devices refuse a move below the last contact (their
        interlock: only the approach goes toward the surface)."""
        core = self.core

        def move() -> None:
            dev = core.getFocusDevice()
            z0 = core.getPosition()
            core.setPosition(z)
            self._await(dev, "the Z move", abs(z - z0) / self._speed(dev, 1.0))
            got = core.getPosition()
            if abs(got - z) > REACHED_UM:
                raise RuntimeError(f"Z stopped at {got:.3f} um, short of {z:g} um")
            note = _pipette_note(core)
            if note:
                raise RuntimeError(f"Z = {z:g} um reached{note}")

        self._run(f"move Z to {z:g} um", move)

    def _set_potential(self) -> None:
        core, v = self.core, self.pot_spin.value()
        self._run(f"set potential {v:g} V", lambda: core.setProperty(self.ps, "Potential_V", v))

    def _set_cell(self, on: bool) -> None:
        core = self.core
        self._run(
            f"cell {'on' if on else 'off'}",
            lambda: core.setProperty(self.ps, "Cell", "On" if on else "Off"),
        )

    def _set_range(self, _idx: int) -> None:
        core, val = self.core, self.range_combo.currentData()
        self._run(
            f"current range {self.range_combo.currentText()}",
            lambda: core.setProperty(self.ps, "CurrentRange_A", val),
        )

    def _read_current(self) -> None:
        core = self.core

        def read() -> str:
            return _fmt_current(float(core.getProperty(self.ps, "Current_A")))

        self._run("current", read, lambda r: self.current_label.setText(f"I = {r}"))

    def _approach(self) -> None:
        from ..acquisition.live import ApproachFeed, LiveTrace

        core = self.core
        zdev = core.getFocusDevice()
        speed, depth = self.speed_spin.value(), self.depth_spin.value()
        thr = self.thr_spin.value() * 1e-12

        def approach() -> str:
            if not core.hasProperty(zdev, "Approach"):
                raise RuntimeError(
                    f"{zdev} has no device-side approach; use a scan's software approach"
                )
            if core.getProperty(self.ps, "Cell") != "On":
                raise RuntimeError(
                    "switch the cell on first: with no potential there is no contact current"
                )
            e = float(core.getProperty(self.ps, "Potential_V"))
            if abs(e) < MIN_APPROACH_V:
                raise RuntimeError(
                    f"the potential is {e:g} V: a landing gives no current to detect below "
                    f"|E| = {MIN_APPROACH_V:g} V, and the pipette would crash. Set the "
                    "approach potential (e.g. 1 V) first"
                )
            z = core.getPosition()
            zmin = (
                float(core.getProperty(zdev, "ZMin_um"))
                if core.hasProperty(zdev, "ZMin_um")
                else z - depth
            )
            stop = max(z - depth, zmin)
            core.setProperty(zdev, "Approach_StopZ_um", stop)
            core.setProperty(zdev, "Approach_Speed_um_per_s", speed)
            core.setProperty(zdev, "Approach_Threshold_A", thr)
            # its samples are shown while it comes down (Approach_Progress)
            read = None
            if core.hasProperty(zdev, "Approach_Progress"):
                read = lambda: core.getProperty(zdev, "Approach_Progress")  # noqa: E731
            live = LiveTrace(capacity=1 << 16)
            feed = ApproachFeed(live, 0.0, read)
            self._ap_live, self._ap_seen = live, -1
            core.setProperty(zdev, "Approach", "Start")
            self._await(zdev, "the approach", (z - stop) / speed, feed.poll)
            if core.hasProperty(zdev, "Approach_Trace"):
                feed.finish(core.getProperty(zdev, "Approach_Trace"))
            result = core.getProperty(zdev, "Approach_Result")
            if result in ("contact", "manual contact"):
                cz = float(core.getProperty(zdev, "Approach_ContactZ_um"))
                how = "accepted by hand" if result == "manual contact" else "detected"
                return f"contact at Z = {cz:.3f} um ({how})" + _pipette_note(core)
            raise RuntimeError(
                f"{result} down to Z = {core.getPosition():.3f} um (max depth {depth:g} um): "
                "check the potential, the cell and the threshold; the pipette may have "
                "touched the film without a signal" + _pipette_note(core)
            )

        self._run("approach", approach)
        if self._busy:
            self.accept_btn.setEnabled(True)

    def _accept(self) -> None:
        """Take where the pipette is as the contact of the approach in
        progress (the Z stage refuses when none is)."""
        from ..acquisition.control import accept_contact

        core = self.session.core
        if core is None:
            self._say("accepting a contact is refused: no config is loaded", error=True)
            return
        accept_contact(core)

    # ------------------------------------------------------------ preflight
    def _build_preflight(self) -> QWidget:
        """The Preflight group: noise, a threshold with its false-trigger
        rate, and (landing once) the capacitance and the pipette's aperture."""
        self.pf_noise_spin = spin(
            1.0, 0.05, 60.0, step=0.5, suffix="s", tooltip="how long to record the noise in air"
        )
        self.pf_landing = QCheckBox("land once (capacitance, aperture)")
        self.pf_landing.setToolTip(
            "approach until contact from here (max depth above), step the potential, retract"
        )
        self.pf_btn = QPushButton("Run preflight")
        self.pf_btn.clicked.connect(guarded(self, "the preflight", self._preflight))
        self.pf_result = QLabel("")
        self.pf_result.setWordWrap(True)
        self.pf_result.setTextInteractionFlags(
            self.pf_result.textInteractionFlags() | Qt.TextInteractionFlag.TextSelectableByMouse
        )
        grid = QGridLayout()
        grid.addWidget(QLabel("noise record"), 0, 0)
        grid.addWidget(self.pf_noise_spin, 0, 1)
        grid.addWidget(self.pf_landing, 1, 0, 1, 2)
        self.pf_use_btn = QPushButton("Use the suggested threshold")
        self.pf_use_btn.setToolTip(
            "set the preflight's threshold as the Rig's approach threshold and the Scan's"
        )
        self.pf_use_btn.setEnabled(False)
        self.pf_use_btn.clicked.connect(
            guarded(self, "using the suggested threshold", self._use_suggested_threshold)
        )
        grid.addWidget(self.pf_btn, 2, 0)
        grid.addWidget(self.pf_use_btn, 2, 1)
        grid.addWidget(self.pf_result, 3, 0, 1, 2)
        box = group("Preflight", layout=grid)
        # what it uses, said where it does not widen the dock
        box.setToolTip("at the range and filter set above; the threshold, speed and E above")
        return box

    def preflight_plan(self) -> Any:
        """A plan holding what the Rig shows: the potentiostat's range, filter
        and rate as set on the instrument, the approach potential, speed,
        depth and threshold from the Approach group."""
        from ..acquisition.plan import ScanPlan

        core = self.core
        data = ScanPlan().model_dump()
        data["potentiostat"].update(
            current_range_A=float(core.getProperty(self.ps, "CurrentRange_A")),
            filter_Hz=float(core.getProperty(self.ps, "Filter_Hz")),
            sample_rate_Hz=float(core.getProperty(self.ps, "SampleRate_Hz")),
        )
        data["approach"].update(
            potential_V=self.pot_spin.value(),
            search_speed_um_per_s=self.speed_spin.value(),
            search_depth_um=self.depth_spin.value(),
            threshold_A=self.thr_spin.value() * 1e-12,
        )
        data["retract_um"] = self.retract_spin.value()
        return ScanPlan.model_validate(data)

    def _preflight(self) -> None:
        from ..acquisition.preflight import run_preflight

        plan = self.preflight_plan()
        noise_s, landing = self.pf_noise_spin.value(), self.pf_landing.isChecked()
        core = self.core

        def run() -> Any:
            return run_preflight(
                core,
                plan,
                noise_s=noise_s,
                landing=landing,
                should_stop=lambda: self._stop_requested,
            )

        def show(report: Any) -> None:
            self.preflight_report = report
            self.pf_result.setText("\n".join(report.lines()))
            self.pf_use_btn.setEnabled(True)
            t = report.threshold
            self._say(
                f"preflight: suggested threshold {t.threshold_A * 1e12:.3g} pA "
                f"({len(report.warnings)} warning{'s' if len(report.warnings) != 1 else ''})",
                error=bool(report.warnings),
            )

        self._run("preflight", run, show)

    def _use_suggested_threshold(self) -> None:
        """The last preflight's threshold for the Rig's approach and, through
        the session, the Scan widget's plan."""
        report = getattr(self, "preflight_report", None)
        if report is None:
            self._say("run the preflight first: there is no suggested threshold yet", error=True)
            return
        thr_A = float(report.threshold.threshold_A)
        self.thr_spin.setValue(thr_A * 1e12)
        self.session.thresholdSuggested.emit(thr_A)
        self._say(f"threshold {thr_A * 1e12:.3g} pA for the approach here and the scan's plan")

    def _retract(self) -> None:
        self._move_z_by(self.retract_spin.value(), "retract")

    def _move_z_by(self, d: float, what: str) -> None:
        core = self.core

        def move() -> None:
            dev = core.getFocusDevice()
            core.setPosition(core.getPosition() + d)
            self._await(dev, what, abs(d) / self._speed(dev, 1.0))

        self._run(f"{what} {d:g} um", move)

    def _snap(self) -> None:
        core = self.core

        def snap() -> tuple:
            core.snapImage()
            img = core.getImage()
            x, y = core.getXYPosition()
            ps = core.getPixelSizeUm() or 1.0
            aff = tuple(core.getPixelSizeAffine())
            return img, x, y, ps, aff

        def show(result: tuple) -> None:
            from ..io.layers import optical_affine

            img, x, y, ps, aff = result
            affine = optical_affine(x, y, img.shape, ps, aff)
            name = "optical"
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data = img
                layer.affine = affine
            else:
                layer = self.viewer.add_image(
                    img,
                    name=name,
                    affine=affine,
                    colormap="gray",
                    units=("micrometer", "micrometer"),
                )
                self.viewer.layers.move(self.viewer.layers.index(layer), 0)  # keep it below maps
            self._say(f"snapped optical image at ({x:.2f}, {y:.2f}) um, {ps:g} um/px")

        self._run("snap", snap, show)

    def _mosaic(self) -> None:
        """Snap a grid of images over a square around the current XY; one layer."""
        from ..io.images import optical_mosaic

        core, side = self.core, self.mosaic_spin.value()

        def run() -> tuple:
            x, y = core.getXYPosition()
            img, affine = optical_mosaic(
                core, (x - side / 2, x + side / 2), (y - side / 2, y + side / 2)
            )
            return img, affine, x, y

        def show(result: tuple) -> None:
            img, affine, x, y = result
            name = "optical mosaic"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = img
                self.viewer.layers[name].affine = affine
            else:
                layer = self.viewer.add_image(
                    img,
                    name=name,
                    affine=affine,
                    colormap="gray",
                    units=("micrometer", "micrometer"),
                )
                self.viewer.layers.move(self.viewer.layers.index(layer), 0)
            self._say(f"mosaic of {side:g} x {side:g} um around ({x:.1f}, {y:.1f}) um")

        self._run("mosaic", run, show)

    def _show_properties(self) -> None:
        """pymmcore-widgets' property browser, stages and configuration groups
        on this core (icons without a network; read-only during a scan)."""
        from ._mm_controls import MicroManagerControls

        self._browser = MicroManagerControls(self.session, parent=self.window())
        self._browser.resize(820, 640)
        self._browser.show()
