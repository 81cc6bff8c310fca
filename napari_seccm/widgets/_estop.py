"""The emergency stop bar: always visible at the foot of every SECCM widget.

One red button (and the F12 key anywhere in the napari window) halts every
motion and waveform, switches the cell off and latches the controllers
(:func:`napari_seccm.emergency_stop`); nothing moves until **Reset**. Nothing
here waits on hardware: the stop and the reset return at once.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QShortcut, QVBoxLayout, QWidget

from ._session import get_session

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import napari

#: the key that triggers the emergency stop anywhere in the viewer's window
ESTOP_KEY = "F12"


class EmergencyStopBar(QWidget):
    """EMERGENCY STOP button, latch state and Reset."""

    def __init__(self, viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = get_session(viewer)
        self.button = QPushButton(f"EMERGENCY STOP ({ESTOP_KEY})")
        self.button.setToolTip(
            "halt every motion and waveform, switch the cell off, and refuse every "
            f"move until Reset ({ESTOP_KEY} anywhere in this window)"
        )
        self.button.setStyleSheet(
            "QPushButton { background: #c62828; color: white; font-weight: bold; "
            "padding: 6px; border-radius: 3px; }"
            "QPushButton:pressed { background: #8e0000; }"
        )
        self.button.clicked.connect(self.trigger)
        self.reset_btn = QPushButton("Reset")
        self.reset_btn.setToolTip("clear the latch: moves are accepted again")
        self.reset_btn.clicked.connect(self.reset)
        self.reset_btn.setEnabled(False)
        #: what the emergency stop could not do (hidden when it did everything)
        self.failures = QLabel("")
        self.failures.setWordWrap(True)
        self.failures.setStyleSheet("color: #e06c6c; font-weight: bold;")
        self.failures.hide()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        row = QHBoxLayout()
        row.addWidget(self.button, 1)
        row.addWidget(self.reset_btn)
        lay.addLayout(row)
        lay.addWidget(self.failures)
        _install_shortcut(viewer, self.session)
        self.session.coreChanged.connect(self._watch)
        self.session.estopChanged.connect(self._show)
        self._events: Any = None
        if self.session.core is not None:
            self._watch(self.session.core)
        self.destroyed.connect(lambda *_: self._unwatch())

    # ------------------------------------------------------------- actions
    def trigger(self) -> None:
        try:
            self.session.emergency_stop("the EMERGENCY STOP button")
        except Exception as e:  # said in the bar, never only logged
            log.exception("the emergency stop failed")
            self.session.estop_report = [f"the emergency stop failed: {e}"]
            self._show(True)

    def reset(self) -> None:
        try:
            self.session.reset_emergency_stop()
        except Exception as e:
            log.exception("resetting the emergency stop failed")
            self.failures.setText(f"the reset failed: {e}")
            self.failures.show()

    # --------------------------------------------------------------- state
    def _watch(self, core: Any) -> None:
        self._unwatch()
        core.events.propertyChanged.connect(self._on_prop)
        self._events = core.events
        self._show(bool(self.session.latched_devices()))

    def _unwatch(self) -> None:
        ev, self._events = self._events, None
        if ev is not None:
            with contextlib.suppress(TypeError, RuntimeError, ValueError):
                ev.propertyChanged.disconnect(self._on_prop)

    def _on_prop(self, dev: str, prop: str, value: Any) -> None:
        if prop == "EmergencyStop":
            self.session.estopChanged.emit(str(value) == "Latched")

    def _show(self, latched: bool) -> None:
        failed = [line for line in self.session.estop_report if "failed" in line] if latched else []
        self.failures.setText(
            "NOT EVERYTHING STOPPED: " + "; ".join(failed) + ". Switch these off at the controller."
            if failed
            else ""
        )
        self.failures.setVisible(bool(failed))
        self.reset_btn.setEnabled(latched)
        self.button.setText(
            "STOPPED: nothing moves until Reset" if latched else f"EMERGENCY STOP ({ESTOP_KEY})"
        )


def _install_shortcut(viewer: napari.Viewer, session: Any) -> None:
    """One application-wide shortcut per window (two would be ambiguous and
    Qt would fire neither)."""
    if getattr(session, "_estop_shortcut", None) is not None:
        return
    viewer = getattr(viewer, "__wrapped__", viewer)
    try:
        window = viewer.window._qt_window
    except AttributeError:
        return
    sc = QShortcut(QKeySequence(ESTOP_KEY), window)
    sc.setContext(Qt.ShortcutContext.ApplicationShortcut)
    sc.activated.connect(lambda: session.emergency_stop(f"the {ESTOP_KEY} key"))
    session._estop_shortcut = sc
